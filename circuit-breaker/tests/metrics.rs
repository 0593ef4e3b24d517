//! The `metrics` feature: events reach the `metrics` facade under Palisade's names and labels.
#![cfg(all(feature = "metrics", not(loom)))]

use palisade_circuit_breaker::{CircuitBreaker, State};
use palisade_core::clock::ManualClock;
use palisade_core::test_util::TestRecorder;
use std::time::Duration;

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

/// Regression (issue 9 §6): a breaker without slow-call detection times no call, yet it
/// exported all-zero `call_duration_seconds` series (and a `slow_calls_total` that could never
/// move).
#[test]
fn a_breaker_without_slow_call_detection_registers_no_timing_series() {
    let recorder = TestRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        let breaker = CircuitBreaker::builder().name("untimed").build().unwrap();
        breaker.try_acquire().unwrap().success();
        breaker.try_acquire().unwrap().failure();
    });
    for outcome in ["success", "failure", "ignore"] {
        let series = format!(
            "palisade_circuit_breaker_call_duration_seconds{{name=untimed,outcome={outcome}}}"
        );
        assert!(!recorder.is_registered(&series), "{series} is registered");
    }
    assert!(!recorder.is_registered("palisade_circuit_breaker_slow_calls_total{name=untimed}"));
    let registered = recorder.registered();
    assert!(!registered.contains_key("palisade_circuit_breaker_call_duration_seconds"));
    assert!(!registered.contains_key("palisade_circuit_breaker_slow_calls_total"));
    // The rest is there from build.
    assert!(
        recorder.is_registered("palisade_circuit_breaker_calls_total{name=untimed,outcome=ignore}")
    );
}

/// With slow-call detection the breaker times every call: the histogram and the slow-call
/// counter are registered and fed, also when the recorder comes after the breaker.
#[test]
fn a_breaker_with_slow_call_detection_records_call_durations() {
    let clock = ManualClock::new();
    let build = |name: &str| {
        CircuitBreaker::builder()
            .name(name)
            .slow_call_duration(Duration::from_millis(10))
            .clock(clock.clock())
            .build()
            .unwrap()
    };
    let late = build("late");
    let recorder = TestRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        let timed = build("timed");
        for breaker in [&timed, &late] {
            let permit = breaker.try_acquire().unwrap();
            clock.advance(Duration::from_millis(3));
            permit.success();
            let permit = breaker.try_acquire().unwrap();
            clock.advance(Duration::from_millis(30));
            permit.failure();
        }
    });
    for name in ["timed", "late"] {
        let get = |what: &str| recorder.get(&format!("palisade_circuit_breaker_{what}"));
        assert_eq!(
            get(&format!(
                "call_duration_seconds{{name={name},outcome=success}}"
            )),
            Some(1.0),
            "{name}"
        );
        assert_eq!(
            get(&format!(
                "call_duration_seconds{{name={name},outcome=failure}}"
            )),
            Some(1.0),
            "{name}"
        );
        assert!(recorder.is_registered(&format!(
            "palisade_circuit_breaker_call_duration_seconds{{name={name},outcome=ignore}}"
        )));
        assert_eq!(
            get(&format!("slow_calls_total{{name={name}}}")),
            Some(1.0),
            "{name}"
        );
    }
    assert!(recorder.is_described("palisade_circuit_breaker_call_duration_seconds"));
    assert!(recorder.is_described("palisade_circuit_breaker_slow_calls_total"));
}
