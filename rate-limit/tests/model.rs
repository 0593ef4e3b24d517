//! The limiter against a reference token bucket: exact arithmetic at chosen times, and
//! proptest over random arrivals and costs, through the handle and through the tower layer.

#![cfg(not(loom))]

mod support;

use palisade_core::clock::ManualClock;
use palisade_rate_limit::{CostExceedsBurst, Quota, RateLimited, RateLimiter};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use std::time::Duration;
use support::{Echo, ModelBucket, call_now};

const MS: u64 = 1_000_000;

fn limiter(rate: u32, period: Duration, burst: u32) -> (RateLimiter, ManualClock) {
    let manual = ManualClock::new();
    let limiter = RateLimiter::builder()
        .rate(rate, period)
        .burst(burst)
        .clock(manual.clock())
        .build()
        .unwrap();
    (limiter, manual)
}

/// 10 per second (one token per 100 ms), burst 3: which calls pass, precisely.
#[test]
fn exact_admissions_at_rate_10_per_second_burst_3() {
    let (limiter, manual) = limiter(10, Duration::from_secs(1), 3);
    let mut model = ModelBucket::new(100 * MS, 3);
    // (time in ms, cost, admitted?)
    let script: &[(u64, u32, bool)] = &[
        (0, 1, true),
        (0, 1, true),
        (0, 1, true),
        (0, 1, false),  // burst used up
        (99, 1, false), // 1 ns short of... 1 ms short of the first token
        (100, 1, true), // the first token is back
        (100, 1, false),
        (250, 1, true), // 1.5 tokens back at 250 ms: one passes
        (250, 1, false),
        (300, 1, true),   // the half token completed at 300 ms
        (1_000, 3, true), // 7 intervals idle: full bucket, 3 at once
        (1_000, 1, false),
        (1_150, 2, false), // 1.5 tokens: not 2
        (1_200, 2, true),
        (1_200, 4, false), // above the burst: never
    ];
    for &(at, cost, expected) in script {
        manual.set(palisade_core::Instant::from_nanos(at * MS));
        let got = limiter.check_n(cost);
        let admitted = matches!(got, Ok(Ok(())));
        assert_eq!(admitted, expected, "at {at} ms, cost {cost}: {got:?}");
        assert_eq!(
            model.try_take(at * MS, cost),
            expected,
            "the model agrees at {at} ms"
        );
    }
    let too_costly: CostExceedsBurst = limiter.check_n(4).unwrap_err();
    assert_eq!((too_costly.cost(), too_costly.burst()), (4, 3));
}

#[test]
fn retry_after_is_exactly_when_the_tokens_are_back() {
    let (limiter, manual) = limiter(10, Duration::from_secs(1), 2);
    limiter.check().unwrap();
    limiter.check().unwrap();
    manual.advance(Duration::from_millis(30));
    let err: RateLimited = limiter.check().unwrap_err();
    assert_eq!(err.retry_after(), Duration::from_millis(70));
    let err = limiter.check_n(2).unwrap().unwrap_err();
    assert_eq!(err.retry_after(), Duration::from_millis(170));
    manual.advance(err.retry_after());
    assert_eq!(limiter.check_n(2), Ok(Ok(())));
}

#[test]
fn remaining_burst_counts_whole_tokens() {
    let (limiter, manual) = limiter(4, Duration::from_secs(1), 4);
    assert_eq!(limiter.remaining_burst(), 4);
    limiter.check_n(3).unwrap().unwrap();
    assert_eq!(limiter.remaining_burst(), 1);
    manual.advance(Duration::from_millis(249));
    assert_eq!(limiter.remaining_burst(), 1);
    manual.advance(Duration::from_millis(1));
    assert_eq!(limiter.snapshot().remaining_burst, 2);
    assert_eq!(limiter.snapshot().quota.burst(), 4);
}

#[test]
fn a_quota_change_keeps_the_tokens_available_and_lets_no_burst_through() {
    let (limiter, manual) = limiter(10, Duration::from_secs(1), 10);
    for _ in 0..10 {
        limiter.check().unwrap();
    }
    // Empty bucket. Raise to 1000/s with a burst of 1000: still empty, not a fresh burst.
    limiter.set_quota(Quota::per_second(1000).unwrap());
    assert_eq!(limiter.remaining_burst(), 0);
    assert!(limiter.check().is_err());
    // Tokens now come back at the new rate: one per millisecond.
    manual.advance(Duration::from_millis(5));
    assert_eq!(limiter.remaining_burst(), 5);
    // Lower the burst below what is available: the bucket is trimmed to it.
    limiter.set_quota(Quota::per_second(1000).unwrap().with_burst(2).unwrap());
    assert_eq!(limiter.remaining_burst(), 2);
    assert_eq!(limiter.quota().burst(), 2);
    // A half-full bucket keeps its tokens across a rate change.
    manual.advance(Duration::from_secs(1));
    limiter.set_quota(Quota::per_second(1).unwrap().with_burst(6).unwrap());
    assert_eq!(limiter.remaining_burst(), 2);
    manual.advance(Duration::from_secs(1));
    assert_eq!(limiter.remaining_burst(), 3);
}

/// One arrival: time since the previous arrival (ns) and cost.
fn arrivals(interval: u64, burst: u32) -> impl Strategy<Value = Vec<(u64, u32)>> {
    prop::collection::vec((0..3 * interval, 0..=burst + 1), 1..120)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        rng_seed: RngSeed::Fixed(0x5EED_0005),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// The handle and the layer admit exactly what the reference bucket admits, and in any
    /// window [s, s + W] the admitted tokens never exceed burst + W / interval.
    #[test]
    fn admits_exactly_what_the_model_admits(
        (interval, burst, steps) in (1u64..1_000, 1u32..8)
            .prop_flat_map(|(i, b)| (Just(i), Just(b), arrivals(i, b)))
    ) {
        let rate = 7u32;
        let period = Duration::from_nanos(interval * u64::from(rate));
        let manual = ManualClock::new();
        let build = || RateLimiter::builder()
            .rate(rate, period)
            .burst(burst)
            .clock(manual.clock())
            .build()
            .unwrap();
        let (handle, layered) = (build(), build());
        let mut svc = tower::Layer::layer(&layered.layer().cost(|c: &u32| *c), Echo);
        let mut unit = tower::Layer::layer(&build().layer(), Echo);
        let mut unit_model = ModelBucket::new(interval, burst);
        let mut model = ModelBucket::new(interval, burst);
        let mut now = 0u64;
        let mut admitted: Vec<(u64, u32)> = Vec::new();
        for (dt, cost) in steps {
            now += dt;
            manual.set(palisade_core::Instant::from_nanos(now));
            let expected = model.try_take(now, cost);
            let got = handle.check_n(cost);
            prop_assert_eq!(matches!(got, Ok(Ok(()))), expected, "handle at {} cost {}", now, cost);
            prop_assert_eq!(got.is_err(), cost > burst, "cost above the burst is its own error");
            let through_layer = call_now(&mut svc, cost).expect("reject mode never pends");
            prop_assert_eq!(through_layer.is_ok(), expected, "layer at {} cost {}", now, cost);
            let unit_expected = unit_model.try_take(now, 1);
            let unit_got = call_now(&mut unit, ()).expect("reject mode never pends");
            prop_assert_eq!(unit_got.is_ok(), unit_expected);
            if expected {
                admitted.push((now, cost));
            }
        }
        for i in 0..admitted.len() {
            let mut tokens = 0u64;
            for j in i..admitted.len() {
                tokens += u64::from(admitted[j].1);
                let window = admitted[j].0 - admitted[i].0;
                prop_assert!(
                    tokens <= u64::from(burst) + window / interval,
                    "{} tokens in a window of {} ns", tokens, window
                );
            }
        }
    }

    /// Quota changes at random moments never hand out more than the tokens that were there:
    /// right after a change, the bucket holds min(tokens before, new burst).
    #[test]
    fn quota_changes_carry_the_tokens_over(
        changes in prop::collection::vec((0u64..50 * MS, 1u32..20, 1u32..20, 0u32..20), 1..30)
    ) {
        let (limiter, manual) = limiter(10, Duration::from_secs(1), 10);
        for (dt, rate, burst, take) in changes {
            manual.advance(Duration::from_nanos(dt));
            for _ in 0..take {
                let _ = limiter.check();
            }
            let before = limiter.remaining_burst();
            limiter.set_quota(Quota::per_second(rate).unwrap().with_burst(burst).unwrap());
            prop_assert_eq!(limiter.remaining_burst(), before.min(burst));
        }
    }
}

/// Regression (issue 9 §3): the limiter froze after 2^59 ns (18 years) of uptime or virtual
/// time: tokens never came back. With a manual clock set near the limits of its range, the
/// handle still admits exactly one token per interval.
#[test]
fn the_limiter_works_for_the_whole_range_of_the_clock() {
    let (limiter, manual) = limiter(10, Duration::from_secs(1), 1);
    for at in [
        1u64 << 59,
        (1 << 59) + 1_000 * MS,
        1 << 60,
        1 << 63,
        u64::MAX - 1_000 * MS,
    ] {
        manual.set(palisade_core::Instant::from_nanos(at));
        let first = limiter.check();
        assert!(first.is_ok(), "at {at}: {first:?}");
        let refused = limiter.check().unwrap_err();
        assert_eq!(refused.retry_after(), Duration::from_millis(100));
        manual.set(palisade_core::Instant::from_nanos(at + 100 * MS));
        assert!(limiter.check().is_ok(), "100 ms after {at}");
        assert_eq!(limiter.remaining_burst(), 0);
    }
}
