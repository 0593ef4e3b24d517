//! The `tracing` feature: transitions at INFO (into Open at WARN), per-call events at TRACE,
//! with structured fields rather than one Debug string (issue 9 §6).
#![cfg(all(feature = "tracing", not(loom)))]

use palisade_circuit_breaker::CircuitBreaker;
use std::fmt;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// One event: its level and its fields as `name=value` strings.
type Seen = (Level, Vec<String>);

/// Every event seen.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Seen>>>);

struct Fields(Vec<String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push(format!("{}={value:?}", field.name()));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push(format!("{}={value}", field.name()));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        assert_eq!(event.metadata().target(), "palisade");
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), fields.0));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn events_are_traced_at_their_levels_with_structured_fields() {
    let capture = Capture::default();
    tracing::subscriber::with_default(capture.clone(), || {
        let breaker = CircuitBreaker::builder()
            .name("inventory")
            .count_window(3)
            .minimum_calls(3)
            .build()
            .unwrap();
        breaker.try_acquire().unwrap().success();
        breaker.try_acquire().unwrap().failure();
        breaker.try_acquire().unwrap().failure();
        assert!(breaker.try_acquire().is_err());
        breaker.transition_to_half_open();
    });
    let seen = capture.0.lock().unwrap();
    let find = |needle: &str| {
        seen.iter()
            .find(|(_, fields)| fields.iter().any(|f| f == needle))
            .unwrap_or_else(|| panic!("no event with {needle}: {seen:?}"))
    };
    let (level, fields) = find("to=open");
    assert_eq!(*level, Level::WARN);
    for field in ["layer=circuit_breaker", "name=inventory", "from=closed"] {
        assert!(fields.iter().any(|f| f == field), "{fields:?}");
    }
    assert_eq!(find("to=half_open").0, Level::INFO);
    assert_eq!(find("outcome=success").0, Level::TRACE);
    assert_eq!(find("outcome=failure").0, Level::TRACE);
    assert_eq!(find("reason=circuit_open").0, Level::TRACE);
}
