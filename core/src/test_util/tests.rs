//! Tests of the mock backend, in tokio's paused time.

use super::*;
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

async fn call(backend: &MockBackend, request: u32) -> Result<Reply<u32>, MockError> {
    let mut svc = backend.clone();
    ServiceExt::<u32>::ready(&mut svc)
        .await
        .expect("always ready")
        .call(request)
        .await
}

#[tokio::test(start_paused = true)]
async fn succeeds_after_its_latency_and_counts_the_call_in_flight_meanwhile() {
    let backend = MockBackend::new(Script::always(Step::ok().after(Duration::from_millis(50))));
    let start = Instant::now();
    let mut svc = backend.clone();
    let future = Service::<u32>::call(&mut svc, 7);
    assert_eq!(backend.stats().in_flight, 1);
    let reply = future.await.expect("scripted success");
    assert_eq!(
        reply,
        Reply {
            request: 7,
            call: 0
        }
    );
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    let stats = backend.stats();
    assert_eq!(
        stats,
        BackendStats {
            calls: 1,
            in_flight: 0,
            peak_in_flight: 1,
            succeeded: 1,
            ..BackendStats::default()
        }
    );
    assert_eq!(stats.finished(), 1);
}

#[tokio::test(start_paused = true)]
async fn fails_with_the_call_index() {
    let backend = MockBackend::new(Script::sequence([Step::ok(), Step::fail()]));
    assert!(call(&backend, 1).await.is_ok());
    let err = call(&backend, 2).await.expect_err("scripted failure");
    assert_eq!(
        err,
        MockError {
            kind: MockErrorKind::Failed,
            call: 1
        }
    );
    assert_eq!(err.to_string(), "mock backend failed call 1");
    // The sequence is exhausted: the default fallback succeeds.
    assert!(call(&backend, 3).await.is_ok());
    let stats = backend.stats();
    assert_eq!((stats.succeeded, stats.failed), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn hang_lasts_until_the_future_is_dropped_and_counts_as_cancelled() {
    let backend = MockBackend::new(Script::always(Step::hang()));
    let outcome = tokio::time::timeout(Duration::from_secs(3600), call(&backend, 1)).await;
    assert!(outcome.is_err(), "a hung call never answers");
    let stats = backend.stats();
    assert_eq!(stats.calls, 1);
    assert_eq!(stats.in_flight, 0, "dropping the future ends the call");
    assert_eq!(stats.cancelled, 1);
    assert_eq!(stats.finished(), 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_slow_call_counts_it_cancelled() {
    let backend = MockBackend::new(Script::always(Step::ok().after(Duration::from_secs(10))));
    let outcome = tokio::time::timeout(Duration::from_secs(1), call(&backend, 1)).await;
    assert!(outcome.is_err());
    let stats = backend.stats();
    assert_eq!(
        (stats.cancelled, stats.succeeded, stats.in_flight),
        (1, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn panics_when_polled_and_leaves_nothing_in_flight() {
    let backend = MockBackend::new(Script::always(
        Step::panic().after(Duration::from_millis(5)),
    ));
    let task = {
        let backend = backend.clone();
        tokio::spawn(async move { call(&backend, 1).await })
    };
    let err = task.await.expect_err("the task panicked");
    assert!(err.is_panic());
    let stats = backend.stats();
    assert_eq!(
        (stats.panicked, stats.in_flight, stats.cancelled),
        (1, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn panics_inside_call() {
    let backend = MockBackend::new(Script::always(Step::panic_in_call()));
    let mut svc = backend.clone();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let _future = Service::<u32>::call(&mut svc, 1);
    }));
    assert!(result.is_err());
    let stats = backend.stats();
    assert_eq!((stats.calls, stats.panicked, stats.in_flight), (1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn outage_intervals_take_the_backend_down_then_it_recovers() {
    let backend =
        MockBackend::healthy().with_outage(Duration::from_secs(1), Duration::from_secs(2));
    assert!(call(&backend, 0).await.is_ok());
    tokio::time::advance(Duration::from_millis(1500)).await;
    assert!(backend.is_down());
    let err = call(&backend, 1).await.expect_err("down");
    assert_eq!(err.kind, MockErrorKind::Down);
    assert_eq!(err.to_string(), "mock backend is down (call 1)");
    tokio::time::advance(Duration::from_millis(500)).await;
    assert!(!backend.is_down(), "the interval is half-open");
    assert!(call(&backend, 2).await.is_ok());
    let stats = backend.stats();
    assert_eq!((stats.calls, stats.failed, stats.down), (3, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn set_down_by_hand() {
    let backend = MockBackend::healthy();
    backend.set_down(true);
    assert_eq!(
        call(&backend, 0).await.unwrap_err().kind,
        MockErrorKind::Down
    );
    backend.set_down(false);
    assert!(call(&backend, 1).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn counts_the_peak_of_concurrent_calls() {
    let backend = MockBackend::new(Script::always(Step::ok().after(Duration::from_millis(100))));
    let calls: Vec<_> = (0..5)
        .map(|i| {
            let backend = backend.clone();
            tokio::spawn(async move { call(&backend, i).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(backend.stats().in_flight, 5);
    for c in calls {
        c.await.expect("no panic").expect("success");
    }
    let stats = backend.stats();
    assert_eq!((stats.peak_in_flight, stats.in_flight), (5, 0));
    backend.reset_peak();
    assert_eq!(backend.stats().peak_in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn from_fn_scripts_latency_that_grows_with_concurrency() {
    // Past 2 concurrent calls, each extra call in flight adds 10 ms.
    let backend = MockBackend::new(Script::from_fn(|ctx| {
        let extra = ctx.in_flight.saturating_sub(2);
        Step::ok().after(Duration::from_millis(10 + 10 * extra))
    }));
    let start = Instant::now();
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let backend = backend.clone();
            tokio::spawn(async move { call(&backend, i).await })
        })
        .collect();
    for c in calls {
        c.await.expect("no panic").expect("success");
    }
    // The fourth call saw 4 in flight: 10 + 2 * 10 ms.
    assert_eq!(start.elapsed(), Duration::from_millis(30));
}

#[tokio::test(start_paused = true)]
async fn random_scripts_replay_identically_for_a_seed() {
    let profile = RandomProfile {
        failure_rate: 0.5,
        latency: (Duration::from_millis(1), Duration::from_millis(9)),
        ..RandomProfile::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let backend = MockBackend::new(Script::random(99, profile));
        let start = Instant::now();
        let mut outcomes = Vec::new();
        for i in 0..50 {
            outcomes.push(call(&backend, i).await.is_ok());
        }
        runs.push((outcomes, start.elapsed()));
    }
    assert_eq!(runs[0], runs[1]);
}
