//! Fault simulations in tokio's paused time with the core mock backend (seeded, deterministic).
//!
//! Properties:
//! 1. the backend never sees more calls in flight than the largest limit the bulkhead had, and
//!    every slot comes back (completions, failures, cancellations, panics, timeouts);
//! 2. waiters are admitted in FIFO order, and give up exactly at `max_wait` — checked against
//!    a reference model of a one-slot FIFO queue.

#![cfg(not(loom))]

use palisade_bulkhead::{Bulkhead, BulkheadFull, WaitTimeout};
use palisade_core::test_util::{MockBackend, RandomProfile, Script, Step};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tower::{Layer, ServiceExt};

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0xB01C_4EAD),
        failure_persistence: None,
        ..Config::default()
    }
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

#[derive(Debug, Clone)]
struct Scenario {
    limit: usize,
    later_limit: usize,
    change_at_ms: u64,
    wait: Option<u64>,
    max_waiters: usize,
    seed: u64,
    calls: usize,
    failure_rate: f64,
    hang_rate: f64,
    panic_rate: f64,
    slow_rate: f64,
    outage: (u64, u64),
    give_up_ms: Vec<u64>,
    arrival_gap_ms: u64,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        (1usize..8, 1usize..8, 0u64..200),
        (prop::option::of(1u64..80), 0usize..10, any::<u64>()),
        (
            10usize..60,
            0.0..0.3f64,
            0.0..0.1f64,
            0.0..0.05f64,
            0.0..0.3f64,
        ),
        (0u64..300, 0u64..100),
        prop::collection::vec(1u64..400, 60),
        0u64..5,
    )
        .prop_map(
            |(
                (limit, later_limit, change_at_ms),
                (wait, max_waiters, seed),
                (calls, failure_rate, hang_rate, panic_rate, slow_rate),
                (outage_from, outage_len),
                give_up_ms,
                arrival_gap_ms,
            )| Scenario {
                limit,
                later_limit,
                change_at_ms,
                wait,
                max_waiters,
                seed,
                calls,
                failure_rate,
                hang_rate,
                panic_rate,
                slow_rate,
                outage: (outage_from, outage_from + outage_len),
                give_up_ms,
                arrival_gap_ms,
            },
        )
}

proptest! {
    #![proptest_config(config(96))]

    /// Peak in flight at the backend ≤ the largest limit; every permit comes back.
    #[test]
    fn peak_never_exceeds_the_limit_and_every_permit_returns(s in scenario()) {
        paused_runtime().block_on(async move {
            let backend = MockBackend::new(Script::random(s.seed, RandomProfile {
                failure_rate: s.failure_rate,
                hang_rate: s.hang_rate,
                panic_rate: s.panic_rate,
                latency: (Duration::from_millis(1), Duration::from_millis(20)),
                slow_rate: s.slow_rate,
                slow_latency: Duration::from_millis(150),
            }))
            .with_outage(Duration::from_millis(s.outage.0), Duration::from_millis(s.outage.1));
            let mut builder = Bulkhead::builder().max_concurrent_calls(s.limit);
            if let Some(wait) = s.wait {
                builder = builder
                    .max_wait(Duration::from_millis(wait))
                    .max_waiting_calls(s.max_waiters);
            }
            let bulkhead = builder.build().unwrap();
            let svc = bulkhead.layer().layer(backend.clone());
            let rejected = Arc::new(AtomicU64::new(0));
            let mut tasks = Vec::new();
            for i in 0..s.calls {
                let svc = svc.clone();
                let rejected = rejected.clone();
                let give_up = Duration::from_millis(s.give_up_ms[i]);
                tasks.push(tokio::spawn(async move {
                    // Callers give up (cancel) after a while: hangs and slow calls get dropped.
                    let result = tokio::time::timeout(give_up, svc.oneshot(i)).await;
                    if let Ok(Err(e)) = result
                        && (e.is::<BulkheadFull>() || e.is::<WaitTimeout>())
                    {
                        // Relaxed: read after every task is joined.
                        rejected.fetch_add(1, Ordering::Relaxed);
                    }
                }));
                tokio::time::sleep(Duration::from_millis(s.arrival_gap_ms)).await;
            }
            let changer = {
                let bulkhead = bulkhead.clone();
                let (at, to) = (s.change_at_ms, s.later_limit);
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(at)).await;
                    bulkhead.set_limit(to);
                })
            };
            for t in tasks {
                // A scripted panic ends its task with a JoinError; that is part of the test.
                let _ = t.await;
            }
            changer.await.unwrap();
            let stats = backend.stats();
            let max_limit = s.limit.max(s.later_limit) as u64;
            prop_assert!(stats.peak_in_flight <= max_limit,
                "peak {} > limit {}", stats.peak_in_flight, max_limit);
            prop_assert_eq!(bulkhead.in_flight(), 0, "a permit was lost");
            prop_assert_eq!(bulkhead.waiting(), 0, "a waiter was left behind");
            prop_assert_eq!(stats.in_flight, 0);
            // Every rejection the bulkhead counted reached its caller as an error.
            prop_assert_eq!(rejected.load(Ordering::Relaxed), bulkhead.rejected_calls());
            prop_assert_eq!(bulkhead.available(), s.later_limit);
            Ok(())
        })?;
    }

    /// One slot, latency 10 ms per call: admissions follow arrival order, and a waiter either
    /// gets the slot before `max_wait` or fails with `WaitTimeout` exactly at `max_wait`, as a
    /// reference FIFO model predicts.
    #[test]
    fn waiters_are_fifo_and_give_up_at_max_wait(
        gaps in prop::collection::vec(1u64..12, 2..20),
        wait_ms in 1u64..60,
    ) {
        // tokio's timer has a 1 ms resolution, so every time here is whole milliseconds.
        let max_wait = Duration::from_millis(wait_ms);
        let latency = Duration::from_millis(10);
        // Reference model.
        let mut arrivals = Vec::new();
        let mut t = Duration::ZERO;
        for g in &gaps {
            t += Duration::from_millis(*g);
            arrivals.push(t);
        }
        let mut free_at = Duration::ZERO;
        let mut expected = Vec::new(); // Some(start) if admitted
        for &a in &arrivals {
            let start = a.max(free_at);
            // A release at the very instant of a deadline is a tie the model does not decide.
            prop_assume!(start - a != max_wait);
            if start - a < max_wait {
                free_at = start + latency;
                expected.push(Some(start));
            } else {
                expected.push(None);
            }
        }
        paused_runtime().block_on(async move {
            let origin = tokio::time::Instant::now();
            let backend = MockBackend::new(Script::always(Step::ok().after(latency)));
            let bulkhead = Bulkhead::builder()
                .max_concurrent_calls(1)
                .max_wait(max_wait)
                .build()
                .unwrap();
            let svc = bulkhead.layer().layer(backend.clone());
            let tasks: Vec<_> = arrivals.iter().enumerate().map(|(i, &a)| {
                let svc = svc.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(origin + a).await;
                    match svc.oneshot(i).await {
                        Ok(reply) => Ok((reply.call, origin.elapsed() - latency)),
                        Err(e) => {
                            assert!(e.is::<WaitTimeout>(), "{e}");
                            Err(origin.elapsed() - a)
                        }
                    }
                })
            }).collect();
            let mut admitted_calls = Vec::new();
            for (i, t) in tasks.into_iter().enumerate() {
                match (t.await.unwrap(), expected[i]) {
                    (Ok((call, started)), Some(start)) => {
                        prop_assert_eq!(started, start, "caller {} started late", i);
                        admitted_calls.push(call);
                    }
                    (Err(waited), None) => prop_assert_eq!(waited, max_wait),
                    (got, want) => prop_assert!(false, "caller {}: got {:?}, model {:?}", i, got, want),
                }
            }
            let mut sorted = admitted_calls.clone();
            sorted.sort_unstable();
            prop_assert_eq!(admitted_calls, sorted, "admissions out of arrival order");
            prop_assert_eq!(backend.stats().peak_in_flight, 1);
            prop_assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (0, 0));
            Ok(())
        })?;
    }
}
