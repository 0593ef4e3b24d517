//! Real threads on one limiter (the loom models explore the interleavings; these run the
//! release-speed code with many more operations). Time is frozen with a manual clock, so the
//! exact number admitted is known.

#![cfg(not(loom))]

use palisade_core::clock::ManualClock;
use palisade_rate_limit::{KeyedRateLimiter, Quota, RateLimiter};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[test]
fn four_threads_take_exactly_the_burst() {
    let manual = ManualClock::new();
    let limiter = RateLimiter::builder()
        .rate(1, Duration::from_secs(1))
        .burst(10_000)
        .clock(manual.clock())
        .build()
        .unwrap();
    let admitted = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..5_000 {
                    if limiter.check().is_ok() {
                        // Relaxed: read after the scope joins the threads.
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(admitted.load(Ordering::Relaxed), 10_000);
    assert_eq!(limiter.remaining_burst(), 0);
}

#[test]
fn quota_changes_racing_acquirers_never_hand_out_a_burst() {
    let manual = ManualClock::new();
    let limiter = RateLimiter::builder()
        .rate(1, Duration::from_secs(1))
        .burst(1_000)
        .clock(manual.clock())
        .build()
        .unwrap();
    let admitted = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                for _ in 0..2_000 {
                    if limiter.check().is_ok() {
                        // Relaxed: read after the scope joins the threads.
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        s.spawn(|| {
            for i in 0..500u32 {
                let burst = 500 + (i * 37) % 2_000;
                limiter.set_quota(Quota::per_second(1).unwrap().with_burst(burst).unwrap());
            }
        });
    });
    // Time is frozen: no token ever comes back, and no change adds one. So at most the
    // initial 1000 pass, whatever the interleaving.
    assert!(admitted.load(Ordering::Relaxed) <= 1_000);
}

#[test]
fn keyed_threads_take_exactly_each_keys_burst() {
    let manual = ManualClock::new();
    let limiter = KeyedRateLimiter::<u32>::builder()
        .rate(1, Duration::from_secs(1))
        .burst(100)
        .max_keys(1_024) // far above 32 keys, however the random hash spreads them
        .shards(4)
        .clock(manual.clock())
        .build()
        .unwrap();
    let admitted = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let (limiter, admitted) = (&limiter, &admitted);
            s.spawn(move || {
                for i in 0..4_000u32 {
                    if limiter.check(&((i + t) % 32)).is_ok() {
                        // Relaxed: read after the scope joins the threads.
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(admitted.load(Ordering::Relaxed), 32 * 100);
    assert_eq!(limiter.len(), 32);
}
