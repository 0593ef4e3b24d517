//! Retry-storm simulation: N clients, a backend that fails every call for 10 s and then
//! recovers. Without a budget the backend sees about `max_attempts` times its load while it is
//! down; with the default budget at most `(1 + percent_can_retry) ×` plus the floor.
//!
//! Run with `--nocapture` to see the numbers.

#![cfg(not(loom))]

use palisade_core::clock::Clock;
use palisade_core::test_util::{MockBackend, Script, Step};
use palisade_retry::{Backoff, RetryPolicy, RetryPolicyBuilder};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tower::{Layer, ServiceExt};

const CLIENTS: u64 = 50;
const PERIOD: Duration = Duration::from_millis(100);
const RUN: Duration = Duration::from_secs(20);
const OUTAGE: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Load {
    originals_down: u64,
    calls_down: u64,
    originals_up: u64,
    calls_up: u64,
    failed_total: u64,
}

async fn storm(policy: RetryPolicyBuilder) -> Load {
    let policy = policy
        .clock(Clock::tokio())
        .max_attempts(3)
        .backoff(Backoff::exponential(
            Duration::from_millis(20),
            Duration::from_millis(200),
        ))
        .seed(6)
        .build()
        .unwrap();
    let backend = MockBackend::new(Script::always(Step::ok().after(Duration::from_millis(5))))
        .with_outage(Duration::ZERO, OUTAGE);
    let svc = policy.layer().layer(backend.clone());
    let originals = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let svc = svc.clone();
        let originals = originals.clone();
        let failed = failed.clone();
        clients.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(c * 2)).await;
            let mut calls = Vec::new();
            for _ in 0..(RUN.as_millis() / PERIOD.as_millis()) {
                // Relaxed: a counter read after the clients are joined or at a quiet instant.
                originals.fetch_add(1, Ordering::Relaxed);
                let svc = svc.clone();
                let failed = failed.clone();
                calls.push(tokio::spawn(async move {
                    if svc.oneshot(()).await.is_err() {
                        // Relaxed: as above.
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }));
                tokio::time::sleep(PERIOD).await;
            }
            for call in calls {
                call.await.unwrap();
            }
        }));
    }
    // Sample just before the recovery: nothing is scheduled at exactly OUTAGE - 1 ms.
    tokio::time::sleep(OUTAGE - Duration::from_millis(1)).await;
    let originals_down = originals.load(Ordering::Relaxed);
    let calls_down = backend.stats().calls;
    for client in clients {
        client.await.unwrap();
    }
    Load {
        originals_down,
        calls_down,
        originals_up: originals.load(Ordering::Relaxed) - originals_down,
        calls_up: backend.stats().calls - calls_down,
        failed_total: failed.load(Ordering::Relaxed),
    }
}

fn report(label: &str, load: &Load) {
    println!(
        "{label:>16}: down {:>5} originals -> {:>5} backend calls ({:.2}x) | up {:>5} -> {:>5} ({:.2}x) | {} calls failed",
        load.originals_down,
        load.calls_down,
        load.calls_down as f64 / load.originals_down as f64,
        load.originals_up,
        load.calls_up,
        load.calls_up as f64 / load.originals_up as f64,
        load.failed_total,
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_budget_the_outage_sees_max_attempts_times_the_load() {
    let load = storm(RetryPolicy::builder().unlimited()).await;
    report("no budget", &load);
    assert!(load.calls_down as f64 >= 2.9 * load.originals_down as f64);
    // Once healthy, only the retries of calls that failed just before the recovery remain.
    assert!(load.calls_up <= load.originals_up + 2 * CLIENTS);
}

#[tokio::test(start_paused = true)]
async fn the_default_budget_caps_the_outage_load() {
    let load = storm(RetryPolicy::builder()).await;
    report("default budget", &load);
    // Finagle defaults: 20 % of requests, floor 10/s over a 10 s ttl = 100 retries.
    let bound = 1.2 * load.originals_down as f64 + 100.0;
    assert!(
        (load.calls_down as f64) <= bound,
        "{} calls > bound {bound}",
        load.calls_down
    );
    assert!(
        load.calls_down as f64 >= 1.15 * load.originals_down as f64,
        "the budget is used, not hoarded"
    );
    assert!(load.calls_up <= load.originals_up + 2 * CLIENTS);
}
