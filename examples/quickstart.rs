//! Quickstart: the pieces every Palisade layer is built from, on a simulated flaky backend.
//!
//! A mock dependency answers in 20 ms, fails one call in five, and is down from t = 2 s to
//! t = 4 s. A client sends a request every 100 ms for 6 s of *virtual* time (the program runs in
//! well under a second), classifies each result with the default classifier, times it with a
//! `Clock` in tokio's paused time, publishes it on an event bus, and prints a timeline of what
//! happened per second.
//!
//! Run it with `cargo run --example quickstart`.

use palisade::common::classify::{Classify, ErrorIsFailure, Outcome};
use palisade::common::clock::Clock;
use palisade::common::events::EventBus;
use palisade::common::test_util::{MockBackend, RandomProfile, Script};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::{Service, ServiceExt};

#[derive(Debug, Clone, Copy)]
struct CallEnded {
    at: Duration,
    outcome: Outcome,
    latency: Duration,
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let clock = Clock::tokio();
    let backend = MockBackend::new(Script::random(
        7,
        RandomProfile {
            failure_rate: 0.2,
            latency: (Duration::from_millis(15), Duration::from_millis(25)),
            ..RandomProfile::default()
        },
    ))
    .with_outage(Duration::from_secs(2), Duration::from_secs(4));

    let events: EventBus<CallEnded> = EventBus::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    events.subscribe(move |e: &CallEnded| sink.lock().expect("log lock").push(*e));

    let origin = clock.now();
    let mut service = backend.clone();
    for i in 0..60u32 {
        let started = clock.now();
        let ready = ServiceExt::<u32>::ready(&mut service)
            .await
            .expect("mock backend is always ready");
        let result = ready.call(i).await;
        let latency = clock.elapsed_since(started);
        let outcome = ErrorIsFailure.classify_timed(result.as_ref(), latency);
        events.emit(CallEnded {
            at: started.saturating_duration_since(origin),
            outcome,
            latency,
        });
        tokio::time::sleep(Duration::from_millis(100).saturating_sub(latency)).await;
    }

    println!("second  calls  ok  failed  mean latency");
    let log = log.lock().expect("log lock");
    for second in 0..6u64 {
        let in_second: Vec<&CallEnded> = log.iter().filter(|e| e.at.as_secs() == second).collect();
        let ok = in_second.iter().filter(|e| e.outcome.is_success()).count();
        let failed = in_second.iter().filter(|e| e.outcome.is_failure()).count();
        let total: Duration = in_second.iter().map(|e| e.latency).sum();
        let mean = total / u32::try_from(in_second.len().max(1)).unwrap_or(1);
        let note = if backend_was_down(second) {
            "  <- outage"
        } else {
            ""
        };
        println!(
            "{second:>6}  {:>5}  {ok:>2}  {failed:>6}  {mean:>12.1?}{note}",
            in_second.len()
        );
    }
    let stats = backend.stats();
    println!(
        "\nbackend saw {} calls: {} succeeded, {} failed ({} while down), peak in flight {}",
        stats.calls, stats.succeeded, stats.failed, stats.down, stats.peak_in_flight
    );
    println!("virtual time elapsed: {:?}", clock.elapsed_since(origin));
}

fn backend_was_down(second: u64) -> bool {
    (2..4).contains(&second)
}
