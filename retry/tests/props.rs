//! Property-based fault simulations of the retry layer in tokio's paused time.

#![cfg(not(loom))]

use palisade_core::clock::Clock;
use palisade_core::test_util::{MockBackend, RandomProfile, Script};
use palisade_retry::{Backoff, RetryBudget, RetryEvent, RetryPolicy};
use proptest::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tower::{Layer, ServiceExt};

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x7e7_0006),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Whatever the backend does: no request gets more than `max_attempts` attempts, the
    /// retries sent stay within the budget, and a request fails only if its last attempt did.
    #[test]
    fn retries_respect_attempts_and_budget(
        seed: u64,
        failure_rate in 0.0f64..=1.0,
        max_attempts in 1u32..6,
        percent in 0u32..=100,
        requests in 1u64..60,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async move {
            let budget = RetryBudget::builder()
                .min_retries_per_sec(0)
                .percent_can_retry(f64::from(percent) / 100.0)
                .clock(Clock::tokio())
                .build()
                .unwrap();
            let policy = RetryPolicy::builder()
                .clock(Clock::tokio())
                .budget(budget)
                .max_attempts(max_attempts)
                .backoff(Backoff::decorrelated_jitter(Duration::from_millis(1), Duration::from_millis(20)))
                .seed(seed)
                .build()
                .unwrap();
            let scheduled = Arc::new(AtomicU64::new(0));
            let s = scheduled.clone();
            policy.subscribe(move |e: &RetryEvent| {
                if matches!(e, RetryEvent::RetryScheduled { .. }) {
                    // Relaxed: a test counter read after the run on this thread.
                    s.fetch_add(1, Ordering::Relaxed);
                }
            });
            let backend = MockBackend::new(Script::random(seed, RandomProfile {
                failure_rate,
                latency: (Duration::from_millis(1), Duration::from_millis(5)),
                ..RandomProfile::default()
            }));
            let svc = policy.layer().layer(backend.clone());
            let mut failed = 0;
            for _ in 0..requests {
                let before = backend.stats();
                let result = svc.clone().oneshot(()).await;
                let after = backend.stats();
                let attempts = after.calls - before.calls;
                prop_assert!(attempts >= 1 && attempts <= u64::from(max_attempts));
                match result {
                    Ok(reply) => prop_assert_eq!(reply.call, after.calls - 1, "the last attempt answers"),
                    Err(_) => {
                        failed += 1;
                        prop_assert_eq!(after.failed - before.failed, attempts, "every attempt failed");
                    }
                }
            }
            // All within one ttl (10 s): retries ≤ percent · requests, rounded down.
            let retries = backend.stats().calls - requests;
            prop_assert!(retries <= u64::from(percent) * requests / 100, "{retries} retries for {requests} requests at {percent}%");
            prop_assert_eq!(retries, scheduled.load(Ordering::Relaxed));
            prop_assert!(failed <= requests);
            Ok(())
        })?;
    }
}
