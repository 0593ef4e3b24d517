//! Adversarial configuration (issue 9 §7): extreme values for every setter of
//! `CircuitBreakerBuilder` (0, MAX, NaN, ±inf, `Duration::MAX`, caps below bases). Each
//! configuration is either refused with a `ConfigError` naming one of the builder's fields,
//! or it builds a breaker that takes 10⁴ calls (with extreme clock jumps, every outcome,
//! cancellations and manual transitions) without panicking.
#![cfg(not(loom))]

use palisade_circuit_breaker::{CircuitBreaker, CircuitBreakerBuilder, SlidingWindow, State};
use palisade_core::classify::Outcome;
use palisade_core::clock::ManualClock;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use std::time::Duration;

const FIELDS: &[&str] = &[
    "failure_rate_threshold",
    "slow_call_rate_threshold",
    "slow_call_duration",
    "count_window",
    "time_window",
    "minimum_calls",
    "wait_duration_in_open",
    "open_backoff",
    "open_backoff_jitter",
    "permitted_calls_in_half_open",
    "max_wait_in_half_open",
    "consecutive_failures",
    "trip_on_rates",
];

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(-0.0),
        Just(1e-300),
        Just(0.5),
        Just(1.0),
        Just(2.0),
        Just(50.0),
        Just(100.0),
        Just(100.000_001),
        Just(1e300),
        Just(f64::MAX),
        Just(f64::MIN),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        -10.0..200.0f64,
    ]
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_micros(1)),
        Just(Duration::from_micros(999)),
        Just(Duration::from_millis(1)),
        Just(Duration::from_secs(1)),
        Just(Duration::from_secs(5)),
        Just(Duration::from_secs(10 * 365 * 86_400)),
        Just(Duration::from_nanos(u64::MAX)),
        Just(Duration::MAX),
        (0u64..10_000_000_000).prop_map(Duration::from_nanos),
    ]
}

fn count() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(2),
        Just(4_095),
        Just(4_096),
        Just(10_000),
        Just(10_001),
        Just(u32::MAX),
        0u32..50,
    ]
}

/// One optional setter call.
#[derive(Clone, Debug)]
enum Set {
    FailureRate(f64),
    SlowRate(f64),
    SlowCall(Duration),
    Count(u32),
    Time(Duration, u32),
    Minimum(u32),
    Wait(Duration),
    Backoff(f64, Duration),
    Fixed,
    Jitter(f64),
    Probes(u32),
    MaxHalfOpen(Duration),
    Consecutive(u32),
    Rates(bool),
}

fn set() -> impl Strategy<Value = Set> {
    prop_oneof![
        float().prop_map(Set::FailureRate),
        float().prop_map(Set::SlowRate),
        duration().prop_map(Set::SlowCall),
        count().prop_map(Set::Count),
        (duration(), count()).prop_map(|(d, n)| Set::Time(d, n)),
        count().prop_map(Set::Minimum),
        duration().prop_map(Set::Wait),
        (float(), duration()).prop_map(|(m, d)| Set::Backoff(m, d)),
        Just(Set::Fixed),
        float().prop_map(Set::Jitter),
        count().prop_map(Set::Probes),
        duration().prop_map(Set::MaxHalfOpen),
        count().prop_map(Set::Consecutive),
        any::<bool>().prop_map(Set::Rates),
    ]
}

fn apply(builder: CircuitBreakerBuilder, set: &Set) -> CircuitBreakerBuilder {
    match *set {
        Set::FailureRate(x) => builder.failure_rate_threshold(x),
        Set::SlowRate(x) => builder.slow_call_rate_threshold(x),
        Set::SlowCall(d) => builder.slow_call_duration(d),
        Set::Count(n) => builder.count_window(n),
        Set::Time(size, buckets) => builder.sliding_window(SlidingWindow::Time { size, buckets }),
        Set::Minimum(n) => builder.minimum_calls(n),
        Set::Wait(d) => builder.wait_duration_in_open(d),
        Set::Backoff(m, d) => builder.open_backoff(m, d),
        Set::Fixed => builder.fixed_open_wait(),
        Set::Jitter(j) => builder.open_backoff_jitter(j),
        Set::Probes(n) => builder.permitted_calls_in_half_open(n),
        Set::MaxHalfOpen(d) => builder.max_wait_in_half_open(d),
        Set::Consecutive(n) => builder.consecutive_failures(n),
        Set::Rates(on) => builder.trip_on_rates(on),
    }
}

/// One step of the workload.
#[derive(Clone, Copy, Debug)]
enum Step {
    Call(Outcome),
    Cancel,
    Advance(Duration),
    Manual(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => prop_oneof![Just(Outcome::Success), Just(Outcome::Failure), Just(Outcome::Ignore)]
            .prop_map(Step::Call),
        1 => Just(Step::Cancel),
        2 => duration().prop_map(Step::Advance),
        1 => (0u8..6).prop_map(Step::Manual),
    ]
}

fn run(breaker: &CircuitBreaker, clock: &ManualClock, steps: &[Step]) {
    for i in 0..10_000 {
        match steps[i % steps.len()] {
            Step::Call(outcome) => {
                if let Ok(permit) = breaker.try_acquire() {
                    permit.record(outcome);
                }
            }
            Step::Cancel => drop(breaker.try_acquire_owned()),
            // Saturates at the clock's end of time: the breaker must still answer.
            Step::Advance(d) => clock.advance(d),
            Step::Manual(0) => breaker.reset(),
            Step::Manual(1) => breaker.transition_to_open(),
            Step::Manual(2) => breaker.transition_to_half_open(),
            Step::Manual(3) => breaker.metrics_only(),
            Step::Manual(4) => breaker.transition_to_closed(),
            Step::Manual(_) => {
                let _ = breaker.snapshot();
            }
        }
    }
    let s = breaker.snapshot();
    assert!(
        s.failed_calls <= s.calls && s.slow_calls <= s.calls,
        "{s:?}"
    );
    assert!(s.failure_rate.is_finite() && s.slow_call_rate.is_finite());
    if s.state == State::HalfOpen {
        // Whatever happened, a half-open breaker still admits or rejects without panicking.
        let _ = breaker.try_acquire();
    }
}

proptest! {
    #![proptest_config(Config {
        cases: 96,
        rng_seed: RngSeed::Fixed(0xc0f1_6bad),
        failure_persistence: None,
        ..Config::default()
    })]

    #[test]
    fn extreme_configs_are_refused_by_field_or_work(
        sets in prop::collection::vec(set(), 0..6),
        steps in prop::collection::vec(step(), 1..40),
        seed in any::<u64>(),
    ) {
        let clock = ManualClock::new();
        let builder = sets.iter().fold(
            CircuitBreaker::builder().clock(clock.clock()).jitter_seed(seed),
            apply,
        );
        match builder.build() {
            Err(e) => prop_assert!(FIELDS.contains(&e.field()), "unknown field {:?}: {e}", e.field()),
            Ok(breaker) => run(&breaker, &clock, &steps),
        }
    }
}

/// The named extremes, each on its own (the proptest mixes them).
#[test]
fn each_extreme_alone_is_refused_or_works() {
    let clock = ManualClock::new();
    let steps = [
        Step::Call(Outcome::Failure),
        Step::Call(Outcome::Failure),
        Step::Advance(Duration::MAX),
        Step::Call(Outcome::Success),
        Step::Cancel,
    ];
    let mut built = 0;
    for set in [
        Set::Wait(Duration::MAX),
        Set::Backoff(f64::MAX, Duration::MAX),
        Set::Backoff(1.0, Duration::from_nanos(1)),
        Set::Jitter(1.0),
        Set::SlowCall(Duration::MAX),
        Set::SlowCall(Duration::from_nanos(1)),
        Set::Time(Duration::MAX, 1_000),
        Set::Time(Duration::MAX, u32::MAX),
        Set::MaxHalfOpen(Duration::MAX),
        Set::MaxHalfOpen(Duration::from_nanos(1)),
        Set::Consecutive(u32::MAX),
        Set::Probes(4_095),
        Set::Minimum(u32::MAX),
        Set::FailureRate(f64::NAN),
        Set::FailureRate(f64::INFINITY),
        Set::Jitter(f64::NEG_INFINITY),
    ] {
        match apply(CircuitBreaker::builder().clock(clock.clock()), &set).build() {
            Err(e) => assert!(FIELDS.contains(&e.field()), "{set:?}: {e}"),
            Ok(breaker) => {
                run(&breaker, &clock, &steps);
                built += 1;
            }
        }
    }
    assert!(
        built >= 10,
        "most extremes are valid and must work: {built}"
    );
}
