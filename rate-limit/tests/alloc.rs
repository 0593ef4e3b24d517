//! Zero allocations on the hot paths, counted by a counting allocator.

#![cfg(not(loom))]

mod support;

use palisade_core::clock::Clock;
use palisade_rate_limit::{KeyedRateLimiter, RateLimiter};
use std::time::Duration;
use support::{Echo, call_now};
use tower::Layer;

#[test]
fn the_direct_limiter_and_its_service_allocate_nothing_per_call() {
    for clock in [Clock::default(), Clock::coarse()] {
        let limiter = RateLimiter::builder()
            .rate(1_000_000_000, Duration::from_secs(1))
            .clock(clock)
            .build()
            .unwrap();
        let mut svc = limiter.layer().layer(Echo);
        // Warm up once-initialized statics (clock calibration).
        let _ = limiter.check();
        let info = allocation_counter::measure(|| {
            for i in 0..1_000u32 {
                let _ = limiter.check();
                assert_eq!(call_now(&mut svc, i).unwrap().unwrap(), i);
            }
        });
        assert_eq!(info.count_total, 0, "allocated on the admit path");
    }
}

#[test]
fn the_keyed_limiter_allocates_nothing_for_a_known_key() {
    let limiter = KeyedRateLimiter::<u64>::builder()
        .rate(1_000_000_000, Duration::from_secs(1))
        .build()
        .unwrap();
    for key in 0..100u64 {
        limiter.check(&key).unwrap();
    }
    let info = allocation_counter::measure(|| {
        for i in 0..10_000u64 {
            let _ = limiter.check(&(i % 100));
        }
    });
    assert_eq!(info.count_total, 0, "allocated on a known key");
}
