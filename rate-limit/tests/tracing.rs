//! The `tracing` feature: quota changes at INFO, per-call events at TRACE, structured fields.

#![cfg(all(feature = "tracing", not(loom)))]

use palisade_core::clock::ManualClock;
use palisade_rate_limit::{Quota, RateLimiter};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// (level, message, field names) of every event.
type Seen = Arc<Mutex<Vec<(Level, String, Vec<String>)>>>;

struct Collect(Seen);

struct Fields {
    message: String,
    names: Vec<String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.names.push(field.name().to_owned());
        }
    }
}

impl Subscriber for Collect {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields {
            message: String::new(),
            names: Vec::new(),
        };
        event.record(&mut fields);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), fields.message, fields.names));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn quota_changes_at_info_and_calls_at_trace_with_structured_fields() {
    let seen: Seen = Arc::default();
    let manual = ManualClock::new();
    tracing::subscriber::with_default(Collect(seen.clone()), || {
        let limiter = RateLimiter::builder()
            .name("orders")
            .rate(1, Duration::from_secs(1))
            .clock(manual.clock())
            .build()
            .unwrap();
        limiter.check().unwrap();
        limiter.check().unwrap_err();
        limiter.set_quota(Quota::per_second(5).unwrap());
    });
    let seen = seen.lock().unwrap();
    let find = |message: &str| {
        seen.iter()
            .find(|(_, m, _)| m == message)
            .unwrap_or_else(|| panic!("no {message:?} in {seen:?}"))
            .clone()
    };
    let (level, _, fields) = find("request permitted");
    assert_eq!(level, Level::TRACE);
    assert!(fields.iter().any(|f| f == "cost"), "{fields:?}");
    let (level, _, fields) = find("request rejected");
    assert_eq!(level, Level::TRACE);
    for field in ["layer", "name", "reason", "retry_after_ms"] {
        assert!(fields.iter().any(|f| f == field), "{field} in {fields:?}");
    }
    let (level, _, fields) = find("rate limit quota changed");
    assert_eq!(level, Level::INFO);
    for field in ["from_rate", "to_rate", "to_burst"] {
        assert!(fields.iter().any(|f| f == field), "{field} in {fields:?}");
    }
}
