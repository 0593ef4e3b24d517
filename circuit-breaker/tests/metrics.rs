//! The `metrics` feature: events reach the `metrics` facade under Palisade's names and labels.
#![cfg(all(feature = "metrics", not(loom)))]

use palisade_circuit_breaker::{CircuitBreaker, State};
use palisade_core::test_util::TestRecorder;

#[test]
fn events_are_recorded_under_palisade_names() {
    let recorder = TestRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        let breaker = CircuitBreaker::builder()
            .name("payments")
            .count_window(4)
            .minimum_calls(3)
            .build()
            .unwrap();
        breaker.try_acquire().unwrap().success();
        drop(breaker.try_acquire().unwrap()); // cancelled: ignored
        breaker.try_acquire().unwrap().failure();
        breaker.try_acquire().unwrap().failure();
        assert_eq!(breaker.state(), State::Open);
        assert!(breaker.try_acquire().is_err());
        breaker.reset();
    });
    let get = |key: &str| recorder.get(key);
    let calls = |outcome: &str| {
        get(&format!(
            "palisade_circuit_breaker_calls_total{{name=payments,outcome={outcome}}}"
        ))
    };
    assert_eq!(calls("success"), Some(1.0));
    assert_eq!(calls("ignore"), Some(1.0));
    assert_eq!(calls("failure"), Some(2.0));
    assert_eq!(calls("rejected"), Some(1.0));
    assert_eq!(
        get("palisade_circuit_breaker_rejections_total{name=payments,reason=circuit_open}"),
        Some(1.0)
    );
    assert_eq!(
        get("palisade_circuit_breaker_transitions_total{name=payments,state=open}"),
        Some(1.0)
    );
    assert_eq!(
        get("palisade_circuit_breaker_transitions_total{name=payments,state=closed}"),
        Some(1.0)
    );
    assert_eq!(
        get("palisade_circuit_breaker_resets_total{name=payments}"),
        Some(1.0)
    );
    assert_eq!(
        get("palisade_circuit_breaker_state{name=payments,state=closed}"),
        Some(1.0)
    );
    assert_eq!(
        get("palisade_circuit_breaker_state{name=payments,state=open}"),
        Some(0.0)
    );
}

/// Regression (issue 9 §6): the state gauge was written only at the first transition, so a
/// healthy breaker exported no state at all.
#[test]
fn the_state_gauge_is_right_from_build_and_the_name_defaults_to_the_layer() {
    let recorder = TestRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        let _breaker = CircuitBreaker::new();
    });
    let get = |key: &str| recorder.get(key);
    assert_eq!(
        get("palisade_circuit_breaker_state{name=circuit_breaker,state=closed}"),
        Some(1.0)
    );
    for state in [
        "open",
        "half_open",
        "forced_open",
        "disabled",
        "metrics_only",
    ] {
        assert_eq!(
            get(&format!(
                "palisade_circuit_breaker_state{{name=circuit_breaker,state={state}}}"
            )),
            Some(0.0),
            "{state}"
        );
    }
}

/// A breaker built before the recorder is installed still exports: its handles register at
/// the first event after the recorder arrives, and the state gauge is set from the state it
/// is in then.
#[test]
fn a_breaker_built_before_the_recorder_still_exports_its_state() {
    let breaker = CircuitBreaker::builder()
        .name("early")
        .count_window(2)
        .minimum_calls(2)
        .build()
        .unwrap();
    breaker.force_open();
    let recorder = TestRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        assert!(breaker.try_acquire().is_err());
    });
    let get = |key: &str| recorder.get(key);
    assert_eq!(
        get("palisade_circuit_breaker_state{name=early,state=forced_open}"),
        Some(1.0)
    );
    assert_eq!(
        get("palisade_circuit_breaker_state{name=early,state=closed}"),
        Some(0.0)
    );
    assert_eq!(
        get("palisade_circuit_breaker_calls_total{name=early,outcome=rejected}"),
        Some(1.0)
    );
}
