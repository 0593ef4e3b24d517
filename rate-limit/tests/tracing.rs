//! The `tracing` feature: quota changes at INFO, per-call events at TRACE, structured fields.

#![cfg(all(feature = "tracing", not(loom)))]

use palisade_core::clock::ManualClock;
use palisade_core::test_util::TraceCapture;
use palisade_rate_limit::{Quota, RateLimiter};
use std::time::Duration;
use tracing::Level;

#[test]
fn quota_changes_at_info_and_calls_at_trace_with_structured_fields() {
    let capture = TraceCapture::new();
    let manual = ManualClock::new();
    tracing::subscriber::with_default(capture.clone(), || {
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
    // (level, message, field names) of every event.
    let seen: Vec<(Level, String, Vec<String>)> = capture
        .events()
        .into_iter()
        .map(|e| {
            let message = e.message().unwrap_or_default().to_owned();
            let names = e.fields.into_keys().filter(|k| k != "message").collect();
            (e.level, message, names)
        })
        .collect();
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
