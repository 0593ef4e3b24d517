//! Unit tests of every rule, runtime-free, in manual time.

use super::*;
use crate::config::SlidingWindow;
use palisade_core::classify::Outcome;
use palisade_core::clock::ManualClock;
use std::sync::Mutex;
use std::time::Duration;

fn manual() -> (ManualClock, CircuitBreakerBuilder) {
    let clock = ManualClock::new();
    let builder = CircuitBreaker::builder()
        .clock(clock.clock())
        .count_window(10)
        .minimum_calls(4)
        .failure_rate_threshold(50.0)
        .wait_duration_in_open(Duration::from_secs(10))
        .fixed_open_wait()
        .permitted_calls_in_half_open(2);
    (clock, builder)
}

fn events(breaker: &CircuitBreaker) -> Arc<Mutex<Vec<CircuitBreakerEvent>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    breaker.subscribe(move |e: &CircuitBreakerEvent| sink.lock().unwrap().push(*e));
    log
}

fn transitions(log: &Mutex<Vec<CircuitBreakerEvent>>) -> Vec<(State, State)> {
    log.lock()
        .unwrap()
        .iter()
        .filter_map(|e| match *e {
            CircuitBreakerEvent::StateTransition { from, to } => Some((from, to)),
            _ => None,
        })
        .collect()
}

fn call(breaker: &CircuitBreaker, outcome: Outcome) -> Result<(), CircuitOpen> {
    breaker.try_acquire().map(|permit| permit.record(outcome))
}

fn trip(breaker: &CircuitBreaker) {
    for _ in 0..4 {
        call(breaker, Outcome::Failure).unwrap();
    }
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn trips_at_the_failure_rate_once_minimum_calls_are_in() {
    let (_, builder) = manual();
    let breaker = builder.build().unwrap();
    let log = events(&breaker);
    for _ in 0..3 {
        call(&breaker, Outcome::Failure).unwrap();
    }
    assert_eq!(
        breaker.state(),
        State::Closed,
        "3 calls are below minimum_calls"
    );
    call(&breaker, Outcome::Success).unwrap();
    assert_eq!(breaker.state(), State::Open, "3 of 4 failed: 75% ≥ 50%");
    assert_eq!(transitions(&log), vec![(State::Closed, State::Open)]);
}

#[test]
fn stays_closed_below_the_threshold_and_at_it_trips() {
    let (_, builder) = manual();
    let breaker = builder.build().unwrap();
    for outcome in [
        Outcome::Failure,
        Outcome::Success,
        Outcome::Success,
        Outcome::Success,
    ] {
        call(&breaker, outcome).unwrap();
    }
    assert_eq!(breaker.state(), State::Closed, "25%");
    call(&breaker, Outcome::Failure).unwrap();
    assert_eq!(breaker.state(), State::Closed, "40%");
    call(&breaker, Outcome::Failure).unwrap();
    assert_eq!(breaker.state(), State::Open, "3 of 6 = 50% trips");
}

#[test]
fn ignored_outcomes_do_not_count() {
    let (_, builder) = manual();
    let breaker = builder.build().unwrap();
    for _ in 0..10 {
        call(&breaker, Outcome::Ignore).unwrap();
    }
    assert_eq!(breaker.snapshot().calls, 0);
    let permit = breaker.try_acquire().unwrap();
    drop(permit); // cancelled
    assert_eq!(breaker.snapshot().calls, 0);
    assert_eq!(breaker.state(), State::Closed);
}

#[test]
fn the_count_window_forgets_old_calls() {
    let (_, builder) = manual();
    let breaker = builder.count_window(4).minimum_calls(4).build().unwrap();
    call(&breaker, Outcome::Failure).unwrap();
    for _ in 0..6 {
        call(&breaker, Outcome::Success).unwrap();
    }
    call(&breaker, Outcome::Failure).unwrap();
    let m = breaker.snapshot();
    assert_eq!((m.calls, m.failed_calls), (4, 1));
    assert_eq!(m.failure_rate, 25.0);
    assert_eq!(breaker.state(), State::Closed);
}

#[test]
fn slow_calls_trip_at_the_slow_rate_whether_they_succeed_or_not() {
    let (clock, builder) = manual();
    let breaker = builder
        .slow_call_duration(Duration::from_millis(100))
        .slow_call_rate_threshold(75.0)
        .failure_rate_threshold(100.0)
        .build()
        .unwrap();
    let log = events(&breaker);
    let slow = |outcome| {
        let permit = breaker.try_acquire().unwrap();
        clock.advance(Duration::from_millis(150));
        permit.record(outcome);
    };
    slow(Outcome::Success);
    slow(Outcome::Failure);
    call(&breaker, Outcome::Success).unwrap();
    assert_eq!(breaker.snapshot().slow_calls, 2);
    slow(Outcome::Success);
    assert_eq!(breaker.state(), State::Open, "3 of 4 slow = 75%");
    let recorded = log.lock().unwrap();
    assert_eq!(
        recorded
            .iter()
            .filter(|e| matches!(e, CircuitBreakerEvent::SlowCallRecorded { elapsed } if *elapsed == Duration::from_millis(150)))
            .count(),
        3
    );
    assert!(recorded.contains(&CircuitBreakerEvent::ErrorRecorded {
        elapsed: Some(Duration::from_millis(150))
    }));
}

#[test]
fn a_call_exactly_at_the_slow_duration_is_not_slow() {
    let (clock, builder) = manual();
    let breaker = builder
        .slow_call_duration(Duration::from_millis(100))
        .build()
        .unwrap();
    let permit = breaker.try_acquire().unwrap();
    clock.advance(Duration::from_millis(100));
    permit.success();
    assert_eq!(breaker.snapshot().slow_calls, 0);
}

#[test]
fn consecutive_failures_alone() {
    let (_, builder) = manual();
    let breaker = builder
        .trip_on_rates(false)
        .consecutive_failures(3)
        .build()
        .unwrap();
    for _ in 0..20 {
        call(&breaker, Outcome::Failure).unwrap();
        call(&breaker, Outcome::Failure).unwrap();
        call(&breaker, Outcome::Success).unwrap();
    }
    assert_eq!(
        breaker.state(),
        State::Closed,
        "67% failures, never 3 in a row"
    );
    call(&breaker, Outcome::Failure).unwrap();
    call(&breaker, Outcome::Failure).unwrap();
    assert_eq!(breaker.snapshot().consecutive_failures, 2);
    call(&breaker, Outcome::Failure).unwrap();
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn consecutive_failures_with_the_rate_trips_before_minimum_calls() {
    let (_, builder) = manual();
    let breaker = builder
        .minimum_calls(10)
        .consecutive_failures(2)
        .build()
        .unwrap();
    call(&breaker, Outcome::Failure).unwrap();
    call(&breaker, Outcome::Failure).unwrap();
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn open_rejects_with_a_hint_then_half_opens_lazily() {
    let (clock, builder) = manual();
    let breaker = builder.build().unwrap();
    let log = events(&breaker);
    trip(&breaker);
    clock.advance(Duration::from_secs(4));
    let open = breaker.try_acquire().unwrap_err();
    assert_eq!(open.state(), State::Open);
    assert_eq!(open.retry_after(), Some(Duration::from_secs(6)));
    clock.advance(Duration::from_secs(6));
    assert_eq!(
        breaker.state(),
        State::Open,
        "no timer: still open until a call"
    );
    let probe = breaker.try_acquire().unwrap();
    assert!(probe.is_probe());
    assert_eq!(breaker.state(), State::HalfOpen);
    assert_eq!(breaker.snapshot().rejected_calls, 1);
    drop(probe);
    assert_eq!(
        transitions(&log),
        vec![(State::Closed, State::Open), (State::Open, State::HalfOpen)]
    );
    assert!(
        log.lock()
            .unwrap()
            .contains(&CircuitBreakerEvent::CallRejected { state: State::Open })
    );
}

#[test]
fn half_open_admits_only_the_permitted_probes_then_closes() {
    let (clock, builder) = manual();
    let breaker = builder.build().unwrap();
    trip(&breaker);
    clock.advance(Duration::from_secs(10));
    let a = breaker.try_acquire().unwrap();
    let b = breaker.try_acquire().unwrap();
    let rejected = breaker.try_acquire().unwrap_err();
    assert_eq!(rejected.state(), State::HalfOpen);
    assert_eq!(rejected.retry_after(), None);
    a.success();
    assert_eq!(breaker.state(), State::HalfOpen, "one probe still out");
    assert!(
        breaker.try_acquire().is_err(),
        "a recorded probe keeps its slot"
    );
    b.success();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(
        breaker.snapshot().calls,
        0,
        "closed starts with an empty window"
    );
}

#[test]
fn failed_probes_reopen() {
    let (clock, builder) = manual();
    let breaker = builder.build().unwrap();
    trip(&breaker);
    clock.advance(Duration::from_secs(10));
    let a = breaker.try_acquire().unwrap();
    let b = breaker.try_acquire().unwrap();
    a.success();
    b.failure();
    assert_eq!(breaker.state(), State::Open, "1 of 2 failed: 50%");
    assert_eq!(
        breaker.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_secs(10))
    );
}

#[test]
fn cancelled_and_ignored_probes_give_their_permit_back() {
    let (clock, builder) = manual();
    let breaker = builder.build().unwrap();
    trip(&breaker);
    clock.advance(Duration::from_secs(10));
    let a = breaker.try_acquire().unwrap();
    let b = breaker.try_acquire().unwrap();
    drop(a);
    b.record(Outcome::Ignore);
    let c = breaker.try_acquire().unwrap();
    let d = breaker.try_acquire().unwrap();
    assert!(breaker.try_acquire().is_err());
    c.success();
    d.success();
    assert_eq!(breaker.state(), State::Closed);
}

/// Regression (issue 9 §3): the permit's `Drop` checked `thread::panicking()`, so a caller
/// panicking for its own reasons while holding a permit counted as a failure and opened a
/// healthy breaker. A permit dropped unrecorded is a cancelled call, panic or not.
#[test]
fn a_callers_panic_while_holding_a_permit_is_not_a_failure() {
    let (_, builder) = manual();
    let breaker = builder.minimum_calls(1).build().unwrap();
    let clone = breaker.clone();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _permit = clone.try_acquire().unwrap();
        panic!("the caller panicked for its own reasons");
    }));
    assert!(result.is_err());
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().failed_calls, 0);
    // A half-open probe held through a caller's panic is given back, not leaked.
    breaker.transition_to_half_open();
    let clone = breaker.clone();
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _probe = clone.try_acquire().unwrap();
        panic!("again");
    }));
    assert_eq!(breaker.shared().load().probes(), 0);
}

#[test]
fn max_wait_in_half_open_reopens_when_probes_never_return() {
    let (clock, builder) = manual();
    let breaker = builder
        .max_wait_in_half_open(Duration::from_secs(5))
        .build()
        .unwrap();
    trip(&breaker);
    clock.advance(Duration::from_secs(10));
    let hung_a = breaker.try_acquire().unwrap();
    let hung_b = breaker.try_acquire().unwrap();
    clock.advance(Duration::from_secs(4));
    assert_eq!(breaker.try_acquire().unwrap_err().state(), State::HalfOpen);
    clock.advance(Duration::from_secs(2));
    let open = breaker.try_acquire().unwrap_err();
    assert_eq!(open.state(), State::Open);
    assert_eq!(breaker.state(), State::Open);
    // The hung probes finally return: they are stale and change nothing.
    hung_a.success();
    hung_b.success();
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn a_stale_result_from_an_earlier_closed_period_does_not_count() {
    let (clock, builder) = manual();
    let breaker = builder.build().unwrap();
    let late: Vec<_> = (0..5).map(|_| breaker.try_acquire().unwrap()).collect();
    trip(&breaker);
    clock.advance(Duration::from_secs(10));
    let a = breaker.try_acquire().unwrap();
    let b = breaker.try_acquire().unwrap();
    a.success();
    b.success();
    assert_eq!(breaker.state(), State::Closed);
    // Five failures admitted in the first closed period arrive now.
    for permit in late {
        permit.failure();
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().calls, 0);
}

#[test]
fn a_stale_probe_result_does_not_count_in_the_next_half_open() {
    let (clock, builder) = manual();
    let breaker = builder
        .max_wait_in_half_open(Duration::from_secs(1))
        .build()
        .unwrap();
    trip(&breaker);
    clock.advance(Duration::from_secs(10));
    let old_a = breaker.try_acquire().unwrap();
    let old_b = breaker.try_acquire().unwrap();
    clock.advance(Duration::from_secs(1));
    assert!(breaker.try_acquire().is_err()); // re-opens
    clock.advance(Duration::from_secs(10));
    let new_a = breaker.try_acquire().unwrap();
    old_a.failure();
    old_b.failure();
    assert_eq!(breaker.state(), State::HalfOpen);
    let new_b = breaker.try_acquire().unwrap();
    new_a.success();
    new_b.success();
    assert_eq!(breaker.state(), State::Closed);
}

#[test]
fn manual_states() {
    let (clock, builder) = manual();
    let breaker = builder.build().unwrap();
    let log = events(&breaker);

    breaker.force_open();
    assert_eq!(
        breaker.try_acquire().unwrap_err().state(),
        State::ForcedOpen
    );
    clock.advance(Duration::from_secs(3600));
    assert_eq!(breaker.try_acquire().unwrap_err().retry_after(), None);
    assert_eq!(breaker.state(), State::ForcedOpen);

    breaker.disable();
    for _ in 0..20 {
        call(&breaker, Outcome::Failure).unwrap();
    }
    assert_eq!(breaker.state(), State::Disabled);
    assert_eq!(breaker.snapshot().calls, 0, "disabled records nothing");

    breaker.metrics_only();
    for _ in 0..20 {
        call(&breaker, Outcome::Failure).unwrap();
    }
    assert_eq!(
        breaker.state(),
        State::MetricsOnly,
        "metrics-only never trips"
    );
    assert_eq!(breaker.snapshot().failed_calls, 10);
    assert_eq!(breaker.snapshot().failure_rate, 100.0);

    breaker.transition_to_open();
    assert_eq!(
        breaker.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_secs(10))
    );
    breaker.transition_to_half_open();
    assert!(breaker.try_acquire().unwrap().is_probe());
    breaker.transition_to_closed();
    assert_eq!(breaker.state(), State::Closed);

    trip(&breaker);
    breaker.reset();
    assert_eq!(breaker.state(), State::Closed);
    let m = breaker.snapshot();
    assert_eq!((m.calls, m.rejected_calls), (0, 0));
    let seen = log.lock().unwrap().clone();
    assert!(seen.contains(&CircuitBreakerEvent::Reset));
    assert!(
        seen.iter()
            .filter(|e| matches!(e, CircuitBreakerEvent::ErrorRecorded { elapsed: None }))
            .count()
            >= 20
    );
    drop(seen);
    assert_eq!(
        transitions(&log),
        vec![
            (State::Closed, State::ForcedOpen),
            (State::ForcedOpen, State::Disabled),
            (State::Disabled, State::MetricsOnly),
            (State::MetricsOnly, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Closed),
            (State::Closed, State::Open),
            (State::Open, State::Closed),
        ]
    );
}

#[test]
fn the_open_wait_backs_off_with_a_cap() {
    let (clock, builder) = manual();
    let breaker = builder
        .permitted_calls_in_half_open(1)
        .open_backoff(2.0, Duration::from_secs(50))
        .open_backoff_jitter(0.0)
        .build()
        .unwrap();
    trip(&breaker);
    let mut waits = Vec::new();
    for _ in 0..5 {
        let wait = breaker.try_acquire().unwrap_err().retry_after().unwrap();
        waits.push(wait.as_secs());
        clock.advance(wait);
        breaker.try_acquire().unwrap().failure();
    }
    assert_eq!(waits, vec![10, 20, 40, 50, 50]);
    // A success closes and the next trip starts from the base wait again.
    let wait = breaker.try_acquire().unwrap_err().retry_after().unwrap();
    clock.advance(wait);
    breaker.try_acquire().unwrap().success();
    assert_eq!(breaker.state(), State::Closed);
    trip(&breaker);
    assert_eq!(
        breaker.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_secs(10))
    );
}

#[test]
fn jitter_spreads_the_wait_within_its_bounds_and_is_seeded() {
    let waits = |seed| {
        let (clock, builder) = manual();
        let breaker = builder
            .permitted_calls_in_half_open(1)
            .open_backoff(1.0, Duration::from_secs(12))
            .open_backoff_jitter(0.5)
            .jitter_seed(seed)
            .build()
            .unwrap();
        trip(&breaker);
        let mut waits = Vec::new();
        for _ in 0..20 {
            let wait = breaker.try_acquire().unwrap_err().retry_after().unwrap();
            waits.push(wait);
            clock.advance(wait);
            breaker.try_acquire().unwrap().failure();
        }
        waits
    };
    let a = waits(7);
    assert_eq!(a, waits(7), "same seed, same waits");
    assert_ne!(a, waits(8));
    for wait in &a {
        assert!(
            *wait >= Duration::from_secs(5) && *wait <= Duration::from_secs(12),
            "{wait:?}"
        );
    }
    assert!(a.iter().any(|w| *w != a[0]), "jitter varies");
}

#[test]
fn the_time_window_trips_and_forgets_with_the_clock() {
    let (clock, builder) = manual();
    let breaker = builder
        .sliding_window(SlidingWindow::Time {
            size: Duration::from_secs(10),
            buckets: 10,
        })
        .minimum_calls(4)
        .build()
        .unwrap();
    for _ in 0..3 {
        call(&breaker, Outcome::Failure).unwrap();
    }
    clock.advance(Duration::from_secs(11));
    call(&breaker, Outcome::Failure).unwrap();
    assert_eq!(breaker.snapshot().calls, 1, "the first three aged out");
    assert_eq!(breaker.state(), State::Closed);
    clock.advance(Duration::from_secs(3));
    for _ in 0..3 {
        call(&breaker, Outcome::Success).unwrap();
    }
    assert_eq!(breaker.state(), State::Closed);
    call(&breaker, Outcome::Failure).unwrap();
    call(&breaker, Outcome::Failure).unwrap();
    assert_eq!(breaker.state(), State::Open, "3 of 6 in the last 10 s");
}

#[test]
fn clones_share_one_breaker() {
    let (_, builder) = manual();
    let a = builder.build().unwrap();
    let b = a.clone();
    for _ in 0..4 {
        call(&b, Outcome::Failure).unwrap();
    }
    assert_eq!(a.state(), State::Open);
    assert_eq!(a.name(), "circuit_breaker");
    assert!(format!("{a:?}").contains("Open"));
}

#[test]
fn listeners_can_be_removed() {
    let (_, builder) = manual();
    let breaker = builder.build().unwrap();
    let log = Arc::new(Mutex::new(0));
    let sink = log.clone();
    let id = breaker.subscribe(move |_: &CircuitBreakerEvent| *sink.lock().unwrap() += 1);
    breaker.force_open();
    assert!(breaker.unsubscribe(id));
    breaker.disable();
    assert_eq!(*log.lock().unwrap(), 1);
}

#[test]
fn an_owned_permit_moves_to_another_thread() {
    let (_, builder) = manual();
    let breaker = builder.minimum_calls(1).build().unwrap();
    let permit = breaker.try_acquire_owned().unwrap();
    assert!(!permit.is_probe());
    std::thread::spawn(move || permit.failure()).join().unwrap();
    assert_eq!(breaker.state(), State::Open);
    assert!(format!("{:?}", breaker.try_acquire()).contains("Err"));
}

#[test]
fn an_open_breaker_reports_the_window_that_tripped_it() {
    let (clock, builder) = manual();
    let breaker = builder.build().unwrap();
    for outcome in [
        Outcome::Success,
        Outcome::Failure,
        Outcome::Failure,
        Outcome::Failure,
    ] {
        call(&breaker, outcome).unwrap();
    }
    let m = breaker.snapshot();
    assert_eq!(m.state, State::Open);
    assert_eq!((m.calls, m.failed_calls, m.failure_rate), (4, 3, 75.0));
    clock.advance(Duration::from_secs(10));
    let a = breaker.try_acquire().unwrap();
    let b = breaker.try_acquire().unwrap();
    a.failure();
    assert_eq!(breaker.snapshot().calls, 1, "half-open reports its probes");
    b.failure();
    let m = breaker.snapshot();
    assert_eq!((m.state, m.calls, m.failed_calls), (State::Open, 2, 2));
}

/// Regression (issue 9 §3): an open-backoff cap below 1 ms panicked on the first trip
/// (`clamp(0.001, max)` with `max < 0.001`).
#[test]
fn an_open_backoff_cap_below_a_millisecond_does_not_panic() {
    let (clock, builder) = manual();
    let breaker = builder
        .wait_duration_in_open(Duration::from_micros(100))
        .open_backoff(2.0, Duration::from_micros(500))
        .permitted_calls_in_half_open(1)
        .build()
        .unwrap();
    trip(&breaker);
    for _ in 0..5 {
        clock.advance(Duration::from_millis(1));
        let probe = breaker.try_acquire().expect("the wait is over");
        probe.failure();
        assert_eq!(breaker.state(), State::Open);
    }
}

/// Regression (issue 9 §3): a wait or cap near `Duration::MAX` panicked in
/// `Duration::from_secs_f64`, and on a re-open the panic left the breaker half-open with its
/// probe taken, rejecting forever.
#[test]
fn waits_near_duration_max_trip_and_reopen_without_panicking() {
    let (_, builder) = manual();
    let breaker = builder
        .wait_duration_in_open(Duration::MAX)
        .open_backoff(3.0, Duration::MAX)
        .open_backoff_jitter(1.0)
        .permitted_calls_in_half_open(1)
        .build()
        .unwrap();
    trip(&breaker);
    let open = breaker.try_acquire().unwrap_err();
    assert!(open.retry_after().unwrap() > Duration::from_secs(100 * 365 * 86_400));
    breaker.transition_to_half_open();
    breaker.try_acquire().unwrap().failure();
    assert_eq!(
        breaker.state(),
        State::Open,
        "re-opened, not stuck half-open"
    );
    assert_eq!(breaker.try_acquire().unwrap_err().state(), State::Open);
}

/// Regression (issue 9 §3): a listener that panicked on Open → HalfOpen unwound out of the
/// admission after the probe was taken and before a permit held it: the probe leaked and the
/// breaker rejected forever. Listeners can no longer break the breaker.
#[test]
fn a_panicking_listener_cannot_leak_a_probe() {
    let (clock, builder) = manual();
    let breaker = builder.permitted_calls_in_half_open(1).build().unwrap();
    breaker.subscribe(|e: &CircuitBreakerEvent| {
        if matches!(
            e,
            CircuitBreakerEvent::StateTransition { .. } | CircuitBreakerEvent::CallRejected { .. }
        ) {
            panic!("a listener's bug");
        }
    });
    trip(&breaker);
    assert!(breaker.try_acquire().is_err());
    clock.advance(Duration::from_secs(10));
    let probe = breaker
        .try_acquire()
        .expect("the probe is admitted despite the listener");
    assert_eq!(breaker.state(), State::HalfOpen);
    drop(probe); // cancelled: given back
    assert_eq!(breaker.shared().load().probes(), 0);
    breaker.try_acquire().unwrap().success();
    assert_eq!(breaker.state(), State::Closed);
}

/// Regression (issue 9 §3): `max_wait_in_half_open` applied only once every probe permit was
/// taken. resilience4j's semantics: after the wait the breaker re-opens even with permits left.
#[test]
fn max_wait_in_half_open_reopens_even_with_permits_left() {
    let (clock, builder) = manual();
    let breaker = builder
        .permitted_calls_in_half_open(3)
        .max_wait_in_half_open(Duration::from_secs(5))
        .build()
        .unwrap();
    trip(&breaker);
    clock.advance(Duration::from_secs(10));
    let hung = breaker.try_acquire().unwrap();
    assert_eq!(breaker.state(), State::HalfOpen);
    clock.advance(Duration::from_secs(5));
    let open = breaker.try_acquire().unwrap_err();
    assert_eq!(
        open.state(),
        State::Open,
        "two permits were left, yet the wait is over"
    );
    assert_eq!(breaker.state(), State::Open);
    hung.success();
    assert_eq!(breaker.state(), State::Open, "the late probe is stale");
}

/// A probe that completes after `max_wait_in_half_open` ran out (with nobody asking for a
/// permit in between) ends the period too: back to Open, not Closed.
#[test]
fn a_probe_recorded_after_the_half_open_wait_reopens() {
    let (clock, builder) = manual();
    let breaker = builder
        .permitted_calls_in_half_open(1)
        .max_wait_in_half_open(Duration::from_secs(5))
        .build()
        .unwrap();
    trip(&breaker);
    clock.advance(Duration::from_secs(10));
    let probe = breaker.try_acquire().unwrap();
    clock.advance(Duration::from_secs(6));
    probe.success();
    assert_eq!(breaker.state(), State::Open);
}

/// Regression (issue 9 §3): `opened()` drew a random number (and bumped the re-open count) on
/// every attempt of its CAS loop. The wait is now a pure function of the seed, the generation
/// and the re-open count: the same history gives the same waits, however the calls race.
#[test]
fn the_jittered_wait_is_a_function_of_seed_and_history() {
    let waits = |seed| {
        let (clock, builder) = manual();
        let breaker = builder
            .permitted_calls_in_half_open(1)
            .open_backoff(2.0, Duration::from_secs(60))
            .open_backoff_jitter(0.5)
            .jitter_seed(seed)
            .build()
            .unwrap();
        trip(&breaker);
        let mut waits = Vec::new();
        for _ in 0..6 {
            let wait = breaker.try_acquire().unwrap_err().retry_after().unwrap();
            // Rejections in between draw nothing and change nothing.
            for _ in 0..3 {
                assert_eq!(breaker.try_acquire().unwrap_err().retry_after(), Some(wait));
            }
            waits.push(wait);
            clock.advance(wait);
            breaker.try_acquire().unwrap().failure();
        }
        waits
    };
    let a = waits(11);
    assert_eq!(a, waits(11));
    for (n, wait) in a.iter().enumerate() {
        let grown = (10.0 * 2f64.powi(n as i32)).min(60.0);
        let secs = wait.as_secs_f64();
        assert!(
            secs >= grown * 0.5 - 0.001 && secs <= (grown * 1.5).min(60.0) + 0.001,
            "{n}: {wait:?}"
        );
    }
}

/// A time window's healthy path (a success counted without a tally) must not hide the trip
/// a success causes when the window rolls past older successes: what is left is mostly
/// failures, and the success that finds it so trips the breaker.
#[test]
fn a_success_trips_a_time_window_once_older_successes_roll_out() {
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder()
        .clock(clock.clock())
        .time_window(Duration::from_secs(10))
        .minimum_calls(20)
        .failure_rate_threshold(50.0)
        .build()
        .unwrap();
    for _ in 0..40 {
        call(&breaker, Outcome::Success).unwrap();
    }
    clock.advance(Duration::from_secs(5));
    for _ in 0..12 {
        call(&breaker, Outcome::Failure).unwrap();
    }
    for _ in 0..8 {
        call(&breaker, Outcome::Success).unwrap();
    }
    assert_eq!(breaker.state(), State::Closed, "12 of 60 failed");
    // The first second's bucket leaves the window: 12 failures of 21 calls with this one.
    clock.advance(Duration::from_millis(5_500));
    call(&breaker, Outcome::Success).unwrap();
    assert_eq!(breaker.state(), State::Open, "12 of 21 failed: 57 % ≥ 50 %");
    // After a close, the failures of the old period are not in the new one's window: the
    // healthy path counts successes again.
    breaker.reset();
    for _ in 0..30 {
        call(&breaker, Outcome::Success).unwrap();
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().calls, 30);
}

/// The defaults (issue 9 §4): Hystrix's 10 s time window, 20 calls minimum, 50 %, 5 s open,
/// growing ×2 per re-open up to 30 s with ±20 % jitter, reset by a close.
#[test]
fn the_defaults_follow_hystrix_and_back_off() {
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder()
        .clock(clock.clock())
        .jitter_seed(5)
        .build()
        .unwrap();
    assert_eq!(breaker.name(), "circuit_breaker");
    for _ in 0..19 {
        call(&breaker, Outcome::Failure).unwrap();
    }
    assert_eq!(
        breaker.state(),
        State::Closed,
        "19 calls are below the minimum of 20"
    );
    call(&breaker, Outcome::Success).unwrap();
    assert_eq!(breaker.state(), State::Open, "19 of 20 failed");
    let mut waits = Vec::new();
    for _ in 0..6 {
        let wait = breaker.try_acquire().unwrap_err().retry_after().unwrap();
        waits.push(wait.as_secs_f64());
        clock.advance(wait);
        // Ten probes (resilience4j's default), all failing: re-open.
        for _ in 0..10 {
            breaker.try_acquire().unwrap().failure();
        }
        assert_eq!(breaker.state(), State::Open);
    }
    for (wait, base) in waits.iter().zip([5.0, 10.0, 20.0, 30.0, 30.0, 30.0]) {
        assert!(
            *wait >= base * 0.8 - 0.001 && *wait <= (base * 1.2f64).min(30.0) + 0.001,
            "{waits:?}"
        );
    }
    // A close starts over from 5 s.
    clock.advance(Duration::from_secs(30));
    for _ in 0..10 {
        breaker.try_acquire().unwrap().success();
    }
    assert_eq!(breaker.state(), State::Closed);
    for _ in 0..20 {
        call(&breaker, Outcome::Failure).unwrap();
    }
    let wait = breaker.try_acquire().unwrap_err().retry_after().unwrap();
    assert!(
        wait >= Duration::from_secs(4) && wait <= Duration::from_secs(6),
        "{wait:?}"
    );
    // The time window forgets after 10 s.
    breaker.reset();
    for _ in 0..19 {
        call(&breaker, Outcome::Failure).unwrap();
    }
    clock.advance(Duration::from_secs(11));
    call(&breaker, Outcome::Failure).unwrap();
    assert_eq!(breaker.state(), State::Closed, "the 19 failures aged out");
}

/// Regression (issue 9 §3): generations were 16 bits, so a permit held across 65 536
/// transitions carried the current generation again: a probe of a long-gone half-open period
/// closed a fresh one, and a failure of a long-gone closed period tripped a fresh window.
#[test]
fn a_permit_from_65_536_transitions_ago_is_stale() {
    let (_, builder) = manual();
    let breaker = builder
        .permitted_calls_in_half_open(1)
        .minimum_calls(1)
        .build()
        .unwrap();
    breaker.transition_to_half_open();
    let old_probe = breaker.try_acquire().unwrap();
    for _ in 0..65_536 {
        breaker.transition_to_half_open();
    }
    assert_eq!(breaker.state(), State::HalfOpen);
    old_probe.success();
    assert_eq!(
        breaker.state(),
        State::HalfOpen,
        "the old probe must not decide the fresh half-open period"
    );
    assert_eq!(breaker.shared().load().probes(), 0);
    let fresh = breaker
        .try_acquire()
        .expect("the fresh period's probe is still free");
    fresh.failure();
    assert_eq!(breaker.state(), State::Open);

    breaker.transition_to_closed();
    let old_call = breaker.try_acquire().unwrap();
    for _ in 0..65_536 {
        breaker.transition_to_closed();
    }
    old_call.failure();
    assert_eq!(
        breaker.state(),
        State::Closed,
        "a stale failure cannot trip"
    );
    assert_eq!(breaker.snapshot().calls, 0);
}

/// A transition's winner descheduled between its CAS and publishing the period's time (or
/// refused because a later time came first) must not leave an open breaker that never learns
/// its wait: the next caller fills in a stand-in (the base wait from now), and the breaker
/// half-opens after it.
#[test]
fn an_open_period_whose_time_was_never_published_still_ends() {
    let (clock, builder) = manual();
    let breaker = builder.permitted_calls_in_half_open(1).build().unwrap();
    let shared = breaker.shared();
    shared.cas_only(shared.load().next(State::Open));
    let open = breaker.try_acquire().unwrap_err();
    assert_eq!(open.state(), State::Open);
    assert_eq!(open.retry_after(), None, "its wait is not known yet");
    assert_eq!(
        breaker.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_secs(10)),
        "the first caller published a stand-in"
    );
    clock.advance(Duration::from_secs(10));
    assert!(breaker.try_acquire().unwrap().is_probe());
    // The same for a half-open period's entry time (max_wait_in_half_open needs it).
    let (clock, builder) = manual();
    let breaker = builder
        .max_wait_in_half_open(Duration::from_secs(1))
        .permitted_calls_in_half_open(1)
        .build()
        .unwrap();
    let shared = breaker.shared();
    shared.cas_only(shared.load().next(State::HalfOpen).with_probes(1));
    assert_eq!(breaker.try_acquire().unwrap_err().state(), State::HalfOpen);
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        breaker.try_acquire().unwrap_err().state(),
        State::Open,
        "the hung half-open period ends after max_wait_in_half_open"
    );
}

/// The default cap is a multiple of the base wait: a 1 s wait grows 1, 2, 4, then 6 s.
#[test]
fn the_default_backoff_cap_scales_with_the_base_wait() {
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder()
        .clock(clock.clock())
        .count_window(10)
        .minimum_calls(4)
        .wait_duration_in_open(Duration::from_secs(1))
        .open_backoff_jitter(0.0)
        .permitted_calls_in_half_open(1)
        .build()
        .unwrap();
    trip(&breaker);
    let mut waits = Vec::new();
    for _ in 0..5 {
        let wait = breaker.try_acquire().unwrap_err().retry_after().unwrap();
        waits.push(wait.as_secs());
        clock.advance(wait);
        breaker.try_acquire().unwrap().failure();
    }
    assert_eq!(waits, vec![1, 2, 4, 6, 6]);
}
