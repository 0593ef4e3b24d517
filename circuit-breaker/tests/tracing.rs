//! The `tracing` feature: transitions at INFO (into Open at WARN), per-call events at TRACE,
//! with structured fields rather than one Debug string (issue 9 §6).
#![cfg(all(feature = "tracing", not(loom)))]

use palisade_circuit_breaker::CircuitBreaker;
use palisade_core::test_util::TraceCapture;
use tracing::Level;

#[test]
fn events_are_traced_at_their_levels_with_structured_fields() {
    let capture = TraceCapture::new();
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
    let events = capture.events();
    for event in &events {
        assert_eq!(event.target, "palisade");
    }
    // Each event: its level and its fields as `name=value` strings.
    let seen: Vec<(Level, Vec<String>)> = events
        .into_iter()
        .map(|e| {
            let fields = e.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            (e.level, fields)
        })
        .collect();
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
