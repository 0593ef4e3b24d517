//! Adversarial configuration (issue 9 §7): extreme values for every setting of the builders
//! and of `Quota` are either refused with a `ConfigError` naming a field the caller set, or
//! yield a limiter that serves 10^4 calls, quota changes included, without a panic.

#![cfg(not(loom))]

mod support;

use palisade_core::clock::{Instant, ManualClock};
use palisade_rate_limit::{KeyedRateLimiter, Mode, Quota, RateLimiter};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use std::time::Duration;
use support::{Echo, call_now};
use tower::Layer;

const YEAR: u64 = 365 * 24 * 3600;

fn rate() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(2),
        Just(u32::MAX),
        Just(u32::MAX - 1),
        any::<u32>(),
        1u32..1_000,
        1u32..1_000,
        1u32..1_000,
    ]
}

fn period() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_nanos(3)),
        Just(Duration::from_secs(1)),
        Just(Duration::from_secs(4 * YEAR)),
        Just(Duration::from_secs(5 * YEAR)),
        Just(Duration::from_nanos(u64::MAX)),
        Just(Duration::from_nanos(u64::MAX) + Duration::from_nanos(1)),
        Just(Duration::MAX),
        (0u64..u64::MAX).prop_map(Duration::from_nanos),
        (1u64..1 << 40).prop_map(Duration::from_nanos),
        (1u64..1 << 40).prop_map(Duration::from_nanos),
        (1u64..1 << 40).prop_map(Duration::from_nanos),
    ]
}

fn burst() -> impl Strategy<Value = Option<u32>> {
    prop_oneof![
        Just(None),
        Just(Some(0)),
        Just(Some(1)),
        Just(Some(u32::MAX)),
        any::<u32>().prop_map(Some),
        (1u32..100).prop_map(Some),
        (1u32..100).prop_map(Some),
    ]
}

fn max_wait() -> impl Strategy<Value = Option<Duration>> {
    prop_oneof![
        Just(None),
        Just(Some(Duration::ZERO)),
        Just(Some(Duration::from_nanos(1))),
        Just(Some(Duration::MAX)),
        (0u64..u64::MAX).prop_map(|n| Some(Duration::from_nanos(n))),
    ]
}

/// A clock step: tiny, ordinary, or huge (up to the end of the clock's range).
fn step() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..1_000,
        2 => 0u64..10_000_000_000,
        1 => Just(u64::MAX / 3),
        1 => Just(1 << 58),
    ]
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        rng_seed: RngSeed::Fixed(0x00C0_FF1C),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Cases that built a limiter (printed with `--nocapture`: the properties must exercise the
/// 10^4 calls often, not only the refusals).
static BUILT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static KEYED_BUILT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

const FIELDS: [&str; 6] = ["rate", "period", "burst", "quota", "max_keys", "shards"];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn quotas_are_valid_or_refused_naming_the_field(
        rate in rate(), period in period(), burst in burst(),
    ) {
        match Quota::new(rate, period) {
            Err(e) => prop_assert!(["rate", "period"].contains(&e.field()), "{e}"),
            Ok(q) => {
                prop_assert!(q.interval() >= Duration::from_nanos(1));
                prop_assert_eq!(q.burst(), rate);
                if let Some(burst) = burst {
                    match q.with_burst(burst) {
                        Err(e) => prop_assert_eq!(e.field(), "burst", "{}", e),
                        Ok(q) => prop_assert_eq!(q.burst(), burst),
                    }
                }
            }
        }
    }

    #[test]
    fn a_limiter_is_refused_naming_a_field_or_serves_ten_thousand_calls(
        rate in rate(), period in period(), burst in burst(), wait in max_wait(),
        start in prop_oneof![Just(0u64), Just(u64::MAX - 1_000_000), any::<u64>()],
        steps in prop::collection::vec((step(), 0u32..4), 16),
        new_quota in (rate(), period(), burst()),
    ) {
        let manual = ManualClock::new();
        manual.set(Instant::from_nanos(start));
        let mut builder = RateLimiter::builder().rate(rate, period).clock(manual.clock());
        if let Some(burst) = burst {
            builder = builder.burst(burst);
        }
        if let Some(max_wait) = wait {
            builder = builder.mode(Mode::Wait { max_wait });
        }
        let limiter = match builder.build() {
            Err(e) => {
                prop_assert!(FIELDS.contains(&e.field()), "{e}");
                if burst.is_none() {
                    prop_assert_ne!(e.field(), "burst", "named a field never set: {}", e);
                }
                return Ok(());
            }
            Ok(limiter) => limiter,
        };
        BUILT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut svc = limiter.layer().layer(Echo);
        for i in 0..10_000u32 {
            let (dt, cost) = steps[i as usize % steps.len()];
            manual.advance(Duration::from_nanos(dt % (u64::MAX / 8)));
            let _ = limiter.check_n(cost);
            if i % 16 == 0 && wait.is_none() {
                let _ = call_now(&mut svc, i);
            }
            if i == 5_000 {
                let (r, p, b) = new_quota;
                if let Ok(q) = Quota::new(r, p) {
                    limiter.set_quota(b.and_then(|b| q.with_burst(b).ok()).unwrap_or(q));
                }
            }
        }
        eprintln!("built {}", BUILT.load(std::sync::atomic::Ordering::Relaxed));
        let snapshot = limiter.snapshot();
        prop_assert!(snapshot.remaining_burst <= snapshot.quota.burst());
    }

    #[test]
    fn a_keyed_limiter_is_refused_naming_a_field_or_serves_ten_thousand_calls(
        rate in rate(), period in period(), burst in burst(),
        max_keys in prop_oneof![
            Just(0usize),
            Just(1),
            Just(7),
            Just(usize::MAX),
            0usize..5_000,
            1_024usize..5_000,
            1_024usize..5_000,
        ],
        shards in prop_oneof![
            Just(0usize),
            Just(1),
            Just(3),
            Just(64),
            Just(1024),
            Just(2048),
            Just(1),
            Just(16),
        ],
        steps in prop::collection::vec((step(), 0u32..4, any::<u16>()), 16),
    ) {
        let manual = ManualClock::new();
        let mut builder = KeyedRateLimiter::<u16>::builder()
            .rate(rate, period)
            .max_keys(max_keys)
            .shards(shards)
            .clock(manual.clock());
        if let Some(burst) = burst {
            builder = builder.burst(burst);
        }
        let limiter = match builder.build() {
            Err(e) => {
                prop_assert!(FIELDS.contains(&e.field()), "{e}");
                return Ok(());
            }
            Ok(limiter) => limiter,
        };
        KEYED_BUILT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for i in 0..10_000usize {
            let (dt, cost, key) = steps[i % steps.len()];
            manual.advance(Duration::from_nanos(dt % (u64::MAX / 8)));
            let _ = limiter.check_n(&key.wrapping_add(i as u16), cost);
            prop_assert!(limiter.snapshot().keys <= max_keys);
        }
        prop_assert!(limiter.len() <= max_keys);
        let _ = limiter.evict_idle();
        eprintln!("keyed built {}", KEYED_BUILT.load(std::sync::atomic::Ordering::Relaxed));
    }
}
