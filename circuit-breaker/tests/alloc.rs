//! Zero allocations per call on the Closed success path, counted by a global allocator.
#![cfg(not(loom))]

use palisade_circuit_breaker::CircuitBreaker;
use palisade_core::test_util::{Echo, call_now};
use std::time::Duration;
use tower::{Layer, Service};

/// `poll_ready`, `call` and one poll succeeded at once.
fn call_ok<S: Service<u64>>(svc: &mut S, request: u64) -> bool {
    matches!(call_now(svc, request), Some(Ok(_)))
}

fn assert_no_allocations(breaker: &CircuitBreaker) {
    let mut svc = breaker.layer().layer(Echo);
    // Warm up: fill the window, initialise the clock's process-wide origin.
    for i in 0..300 {
        assert!(call_ok(&mut svc, i));
    }
    let info = allocation_counter::measure(|| {
        for i in 0..10_000 {
            assert!(call_ok(&mut svc, i));
        }
    });
    assert_eq!(info.count_total, 0, "the success path allocated");
    let info = allocation_counter::measure(|| {
        for _ in 0..1_000 {
            breaker.try_acquire().unwrap().success();
        }
    });
    assert_eq!(info.count_total, 0, "try_acquire allocated");
}

/// A rejection through the service allocates once: the `BoxError` it is returned as (the
/// rejection carries its `retry_after`, so it is not zero-sized).
#[test]
fn a_rejection_through_the_service_allocates_only_its_box_error() {
    let breaker = CircuitBreaker::builder()
        .wait_duration_in_open(Duration::from_secs(3_600))
        .build()
        .unwrap();
    breaker.transition_to_open();
    let mut svc = breaker.layer().layer(Echo);
    assert!(matches!(call_now(&mut svc, 1), Some(Err(_))));
    let info = allocation_counter::measure(|| {
        for i in 0..1_000 {
            let Some(Err(err)) = call_now(&mut svc, i) else {
                panic!("the open breaker let a call through")
            };
            assert!(err.is::<palisade_circuit_breaker::CircuitOpen>());
        }
    });
    assert_eq!(info.count_total, 1_000, "one allocation per rejection");
}

/// Regression: cloning a service allocated a fresh padded reference count, so every stack
/// that clones per call (tower's `Retry`, `oneshot` on a clone) allocated per call.
#[test]
fn cloning_a_service_allocates_nothing() {
    let breaker = CircuitBreaker::builder().count_window(100).build().unwrap();
    let svc = breaker.layer().layer(Echo);
    let info = allocation_counter::measure(|| {
        for i in 0..1_000 {
            let mut clone = svc.clone();
            assert!(call_ok(&mut clone, i));
        }
    });
    assert_eq!(info.count_total, 0, "a service clone allocated");
}

#[test]
fn count_window_success_path_allocates_nothing() {
    assert_no_allocations(&CircuitBreaker::builder().count_window(100).build().unwrap());
}

#[test]
fn time_window_with_slow_calls_allocates_nothing() {
    assert_no_allocations(
        &CircuitBreaker::builder()
            .time_window(Duration::from_secs(10))
            .slow_call_duration(Duration::from_secs(1))
            .build()
            .unwrap(),
    );
}

/// With or without the `metrics` feature: its handles are registered once at build time, so
/// recording a failure event allocates nothing (it used to copy the `name` label per event).
#[test]
fn a_window_with_failures_records_without_allocating() {
    let breaker = CircuitBreaker::builder()
        .count_window(100)
        .failure_rate_threshold(90.0)
        .consecutive_failures(1_000)
        .build()
        .unwrap();
    for i in 0..200 {
        let permit = breaker.try_acquire().unwrap();
        if i % 10 == 0 {
            permit.failure();
        } else {
            permit.success();
        }
    }
    let info = allocation_counter::measure(|| {
        for i in 0..10_000 {
            let permit = breaker.try_acquire().unwrap();
            if i % 10 == 0 {
                permit.failure();
            } else {
                permit.success();
            }
        }
    });
    assert_eq!(info.count_total, 0);
}

/// With the `metrics` feature and a recorder installed, every call emits an outcome event
/// recorded on handles registered once: still no allocation per call, success or failure,
/// admitted or rejected (issue 9 §6).
#[cfg(feature = "metrics")]
#[test]
fn recording_metrics_per_call_allocates_nothing() {
    // Its handles are atomics: recording allocates nothing.
    let recorder = palisade_core::test_util::TestRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        let breaker = CircuitBreaker::builder()
            .count_window(100)
            .failure_rate_threshold(90.0)
            .slow_call_duration(Duration::from_secs(1))
            .build()
            .unwrap();
        let mut svc = breaker.layer().layer(Echo);
        for i in 0..300 {
            assert!(call_ok(&mut svc, i));
        }
        let info = allocation_counter::measure(|| {
            for i in 0..10_000 {
                assert!(call_ok(&mut svc, i));
                let permit = breaker.try_acquire().unwrap();
                if i % 10 == 0 {
                    permit.failure();
                } else {
                    permit.success();
                }
            }
        });
        assert_eq!(info.count_total, 0, "recording a call's metrics allocated");
    });
    let calls: f64 = recorder
        .values()
        .iter()
        .filter(|(series, _)| series.starts_with("palisade_circuit_breaker_calls_total{"))
        .map(|(_, calls)| calls)
        .sum();
    assert!(calls >= 20_300.0, "the calls were recorded: {calls}");
}
