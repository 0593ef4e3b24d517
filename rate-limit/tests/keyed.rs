//! The keyed limiter: bounded memory under a million distinct keys, eviction that never lets a
//! key exceed its quota (proptest against per-key reference buckets).

#![cfg(not(loom))]

mod support;

use palisade_core::clock::{Instant, ManualClock};
use palisade_rate_limit::{KeyedRateLimiter, KeyedRejection};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use std::collections::HashMap;
use std::time::Duration;
use support::ModelBucket;

/// One million distinct keys (a scan, or an attacker rotating client IPs) arriving at 100 000
/// per second, with a cap of 10 000 keys: the table never exceeds the cap, no key is refused
/// (idle keys are swept out as they refill), and the table's allocation stays bounded.
#[test]
fn a_million_distinct_keys_stay_under_the_cap() {
    let manual = ManualClock::new();
    let limiter = KeyedRateLimiter::<u64>::builder()
        .rate(10, Duration::from_secs(1)) // bucket refills in 100 ms: ~10 000 keys busy at once
        .burst(1)
        .max_keys(16_384)
        .shards(16)
        .clock(manual.clock())
        .build()
        .unwrap();
    let mut peak_len = 0;
    let mut peak_capacity = 0;
    for key in 0..1_000_000u64 {
        manual.advance(Duration::from_micros(10));
        assert_eq!(limiter.check(&key), Ok(()), "key {key} refused");
        if key % 1024 == 0 {
            peak_len = peak_len.max(limiter.len());
            peak_capacity = peak_capacity.max(limiter.capacity());
        }
    }
    println!("1M keys: peak len {peak_len}, peak slots {peak_capacity}, cap 16384");
    assert!(peak_len <= 16_384);
    // The hash tables' slots: under 4 per key of the cap (hashbrown's load factor, and a
    // table may double once when deletions leave tombstones, until the next sweep shrinks it).
    assert!(
        peak_capacity <= 4 * 16_384,
        "allocated {peak_capacity} slots"
    );
    // All keys refill after 100 ms; an explicit sweep then frees everything.
    manual.advance(Duration::from_millis(100));
    assert_eq!(limiter.evict_idle(), 0);
    assert!(limiter.is_empty());
}

/// The same flood with no time passing: every key stays busy, so the cap is hit and new keys
/// are refused (the documented policy), while known keys keep their own quota.
#[test]
fn at_the_cap_new_keys_are_refused_and_known_keys_unaffected() {
    let manual = ManualClock::new();
    let limiter = KeyedRateLimiter::<u64>::builder()
        .rate(1, Duration::from_secs(1))
        .burst(2)
        .max_keys(1_000)
        .shards(4)
        .clock(manual.clock())
        .build()
        .unwrap();
    let mut refused = 0;
    for key in 0..100_000u64 {
        match limiter.check(&key) {
            Ok(()) => {}
            Err(KeyedRejection::TooManyKeys(e)) => {
                assert_eq!(e.max_keys(), 1_000);
                refused += 1;
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert!(limiter.len() <= 1_000);
    assert!(refused >= 99_000);
    let known = (0..100_000u64)
        .find(|k| limiter.remaining_burst(k) == 1)
        .unwrap();
    assert_eq!(limiter.check(&known), Ok(()));
    assert!(matches!(
        limiter.check(&known),
        Err(KeyedRejection::RateLimited(_))
    ));
    // One second on, the buckets of the held keys refill: they go idle, new keys fit again.
    manual.advance(Duration::from_secs(1));
    assert_eq!(limiter.check(&1_000_000), Ok(()));
}

/// Regression (issue 9 §3): the cap was split per shard (`max_keys / shards`), so with
/// `max_keys(127)` and 64 shards the first refusal came at 4 to 24 keys, while `TooManyKeys`
/// claimed the maximum of 127 was held. The cap is now the limiter's: the first refusal comes
/// at key 128, when 127 busy keys are held, and it says when a key goes idle.
#[test]
fn the_cap_is_max_keys_for_the_whole_limiter() {
    let manual = ManualClock::new();
    let limiter = KeyedRateLimiter::<u64>::builder()
        .rate(1, Duration::from_secs(1))
        .max_keys(127)
        .clock(manual.clock())
        .build()
        .unwrap();
    for key in 0..127u64 {
        assert_eq!(limiter.check(&key), Ok(()), "key {key} of 127 refused");
    }
    assert_eq!(limiter.len(), 127);
    assert_eq!(limiter.snapshot().keys, 127);
    assert_eq!(limiter.snapshot().max_keys, 127);
    match limiter.check(&1_000) {
        Err(KeyedRejection::TooManyKeys(e)) => {
            assert_eq!(e.max_keys(), 127);
            assert_eq!(
                e.retry_after(),
                Duration::from_secs(1),
                "when the first key goes idle"
            );
            assert_eq!(palisade_core::retry_after(&e), Some(Duration::from_secs(1)));
        }
        other => panic!("expected TooManyKeys, got {other:?}"),
    }
    manual.advance(Duration::from_secs(1));
    assert_eq!(limiter.check(&1_000), Ok(()), "idle keys make room at once");
}

/// Regression (issue 9 §3): under a flood of new keys, a key that stayed within its quota
/// and went idle was swept and then refused `TooManyKeys` 9 times in 10. A key whose state
/// equals a fresh key's is now admitted exactly as a fresh key would be: while fewer than
/// `max_keys` keys are busy, never refused.
#[test]
fn an_idle_key_returning_during_a_flood_below_the_cap_is_always_admitted() {
    let manual = ManualClock::new();
    let limiter = KeyedRateLimiter::<u64>::builder()
        .rate(1, Duration::from_secs(1)) // each flood key is busy for 1 s
        .max_keys(127)
        .clock(manual.clock())
        .build()
        .unwrap();
    let legit = u64::MAX;
    // 60 s of a flood of 100 new keys per second (about 100 busy at once, under the cap of
    // 127), and a well-behaved key asking once every 2 s.
    for (flood, ms) in (0..60_000u64).step_by(10).enumerate() {
        let flood = flood as u64;
        manual.set(Instant::from_nanos(ms * 1_000_000));
        assert_eq!(
            limiter.check(&flood),
            Ok(()),
            "flood key {flood} at {ms} ms"
        );
        if ms % 2_000 == 0 {
            assert_eq!(limiter.check(&legit), Ok(()), "the idle key at {ms} ms");
        }
        assert!(limiter.len() <= 127);
    }
}

/// A keyed call that a layer below rejects locally gets its key's token back.
#[tokio::test(start_paused = true)]
async fn a_keyed_call_rejected_below_gets_its_token_back() {
    use tower::{Service, ServiceBuilder, ServiceExt};
    let limiter = KeyedRateLimiter::<u8>::builder()
        .rate(1, Duration::from_secs(1))
        .clock(palisade_core::Clock::tokio())
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(limiter.layer(|req: &u8| *req))
        .service(support::RejectsLocally);
    for _ in 0..10 {
        let err = svc.ready().await.unwrap().call(7).await.unwrap_err();
        assert!(palisade_core::is_local_rejection(&*err));
        assert!(!err.is::<palisade_rate_limit::RateLimited>());
    }
    assert_eq!(limiter.remaining_burst(&7), 1);
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 200,
        rng_seed: RngSeed::Fixed(0x5EED_0015),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Every decision of a small, often full, constantly evicting keyed limiter matches an
    /// independent reference bucket per key; the only difference allowed is refusing a new
    /// key, and only when the table really is full of busy keys.
    #[test]
    fn eviction_never_lets_a_key_exceed_its_quota(
        burst in 1u32..4,
        max_keys in 1usize..5,
        steps in prop::collection::vec((0u64..250, 0u8..8, 0u32..5), 1..300),
    ) {
        let interval = 100u64;
        let manual = ManualClock::new();
        let limiter = KeyedRateLimiter::<u8>::builder()
            .rate(10, Duration::from_nanos(10 * interval))
            .burst(burst)
            .max_keys(max_keys)
            .shards(1)
            .clock(manual.clock())
            .build()
            .unwrap();
        let mut models: HashMap<u8, ModelBucket> = HashMap::new();
        let mut now = 0;
        for (dt, key, cost) in steps {
            now += dt;
            manual.set(Instant::from_nanos(now));
            let got = limiter.check_n(&key, cost);
            prop_assert!(limiter.len() <= max_keys);
            let busy = models
                .iter_mut()
                .filter_map(|(k, m)| (*k != key && !m.is_full(now)).then_some(()))
                .count();
            let model = models.entry(key).or_insert_with(|| ModelBucket::new(interval, burst));
            match got {
                Err(KeyedRejection::TooManyKeys(_)) => {
                    prop_assert!(model.is_full(now), "a busy key was refused as new");
                    prop_assert!(busy >= max_keys, "refused with {} busy keys", busy);
                }
                Ok(()) => prop_assert!(model.try_take(now, cost), "admitted over the quota"),
                Err(KeyedRejection::RateLimited(_)) => {
                    prop_assert!(!model.clone().try_take(now, cost), "refused within the quota");
                }
                Err(KeyedRejection::CostExceedsBurst(_)) => prop_assert!(cost > burst),
                Err(other) => prop_assert!(false, "unexpected {}", other),
            }
        }
    }
}
