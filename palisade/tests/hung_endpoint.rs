//! One endpoint of three hangs (it takes every call and never answers), under the recommended
//! stack with its documented settings: retry (deadline 2 s, per-attempt timeout 500 ms) →
//! bulkhead → Palisade's balancer. The retry's attempt timeout sits above the balancer, so
//! every call to the hung endpoint ends by being dropped there: the balancer sees only
//! cancellations. It must still learn that the endpoint is slow, as tower's peak-EWMA does
//! (a dropped call's time so far is a latency sample, a lower bound of the real one), and
//! stop sending it attempts; otherwise each attempt it gets costs its caller the whole attempt
//! timeout and a retry from the budget. The last test shows what an adaptive limit sees of a
//! hang, with and without a per-endpoint timeout below the balancer.

#![cfg(all(
    feature = "bulkhead",
    feature = "circuit-breaker",
    feature = "retry",
    feature = "load-balancer"
))]

use palisade_bulkhead::Bulkhead;
use palisade_bulkhead::adaptive::Aimd;
use palisade_circuit_breaker::CircuitBreaker;
use palisade_core::test_util::run_paused;
use palisade_load_balancer::Balancer;
use palisade_retry::RetryPolicy;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::timeout::TimeoutLayer;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};

/// Endpoint `key`: never answers when `hung`, else answers in 5 ms.
#[derive(Clone)]
struct Endpoint {
    key: usize,
    hung: bool,
    calls: Arc<[AtomicU64; 3]>,
}

impl Service<u32> for Endpoint {
    type Response = usize;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<usize, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: u32) -> Self::Future {
        // Relaxed: a counter, read after every task has ended.
        self.calls[self.key].fetch_add(1, Ordering::Relaxed);
        let key = self.key;
        let latency = if self.hung {
            Duration::from_secs(3600)
        } else {
            Duration::from_millis(5)
        };
        Box::pin(async move {
            tokio::time::sleep(latency).await;
            Ok(key)
        })
    }
}

/// What the run saw.
#[derive(Debug, Default)]
struct Seen {
    /// Attempts each endpoint received.
    calls: [u64; 3],
    /// Attempts the hung endpoint received in the last half of the run.
    hung_calls_late: u64,
    ok: u64,
    failed: u64,
    /// Callers that waited at least one attempt timeout.
    slow: u64,
}

/// The facade's retry (deadline 2 s, per-attempt timeout 500 ms).
fn documented_retry() -> RetryPolicy {
    RetryPolicy::builder()
        .deadline(Duration::from_secs(2))
        .attempt_timeout(Duration::from_millis(500))
        .seed(7)
        .build()
        .expect("the documented retry")
}

/// 100 requests a second for 20 s (virtual time) through `client`, over endpoints that count
/// their attempts in `calls`.
async fn drive<S>(client: S, calls: &[AtomicU64; 3]) -> Seen
where
    S: Service<u32, Response = usize, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    let mut hung_at_half = 0;
    for i in 0..2000u32 {
        if i == 1000 {
            // Relaxed: a counter; the calls it counts ran on this thread (paused runtime).
            hung_at_half = calls[0].load(Ordering::Relaxed);
        }
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let result = client.oneshot(i).await;
            (result.is_ok(), sent.elapsed())
        }));
        tokio::time::sleep_until(start + Duration::from_millis(10) * (i + 1)).await;
    }
    let mut seen = Seen::default();
    for task in tasks {
        let (ok, took) = task.await.expect("no caller panicked");
        if ok {
            seen.ok += 1;
        } else {
            seen.failed += 1;
        }
        if took >= Duration::from_millis(500) {
            seen.slow += 1;
        }
    }
    // Relaxed: every task has ended.
    seen.calls = std::array::from_fn(|key| calls[key].load(Ordering::Relaxed));
    seen.hung_calls_late = seen.calls[0] - hung_at_half;
    seen
}

/// The facade's stack: retry → default bulkhead → default balancer → the endpoints, with
/// nothing per endpoint. Every attempt on the hung endpoint is dropped by the retry's timer.
#[test]
fn a_hung_endpoint_behind_the_retrys_attempt_timeout_is_priced_out() {
    let seen = run_paused(async {
        let calls: Arc<[AtomicU64; 3]> = Arc::default();
        let bulkhead = Bulkhead::builder().build().expect("the default bulkhead");
        let balancer = Balancer::builder()
            .seed(7)
            .build()
            .expect("the default balancer");
        for key in 0..3usize {
            let calls = Arc::clone(&calls);
            let endpoint = Endpoint {
                key,
                hung: key == 0,
                calls,
            };
            balancer.insert(key, endpoint, Default::default());
        }
        let client = ServiceBuilder::new()
            .layer(documented_retry().layer())
            .layer(bulkhead.layer())
            .service(balancer.service());
        drive(client, &calls).await
    });
    // Every request succeeds: an attempt stuck on the hung endpoint times out and the retry
    // goes to another endpoint. Before the balancer took a dropped call's wait as a latency,
    // the hung endpoint got 803 of the 1 676 attempts, 637 callers waited 500 ms or more, and
    // 1 127 requests failed: the stuck attempts held the bulkhead's 25 slots, which refused
    // the rest.
    assert_eq!(seen.failed, 0, "{seen:?}");
    // The balancer learns from the first dropped attempts: the hung endpoint gets a handful
    // (the first ones, then a probe now and then as its estimate decays), not its share.
    assert!(seen.calls[0] <= 10, "{seen:?}");
    assert!(seen.hung_calls_late <= 3, "{seen:?}");
    assert!(seen.slow <= 10, "{seen:?}");
}

/// Per endpoint a gate-mode breaker over a timeout shorter than the retry's attempt timeout:
/// a hang is then the endpoint's own failure, which its breaker and the balancer's outlier
/// detection count (with a timeout longer than the attempt's, the endpoint's never fires:
/// with 1 s here, the hung endpoint's snapshot shows 0 failures). The README's stack has no
/// such timeout: one below the deadline also fails every call when the whole fleet slows
/// down past it (`tests/status_failures.rs`).
#[test]
fn a_timeout_per_endpoint_counts_a_hang_against_the_endpoint() {
    let (seen, hung) = run_paused(async {
        let calls: Arc<[AtomicU64; 3]> = Arc::default();
        let bulkhead = Bulkhead::builder()
            .max_concurrent_calls(64)
            .build()
            .expect("the README's bulkhead");
        let endpoints = (0..3usize).map(|key| {
            let breaker = CircuitBreaker::builder()
                .build()
                .expect("a default breaker");
            let calls = Arc::clone(&calls);
            let endpoint = TimeoutLayer::new(Duration::from_millis(400)).layer(Endpoint {
                key,
                hung: key == 0,
                calls,
            });
            (key, breaker.layer().gate().layer(endpoint))
        });
        let balancer = Balancer::new(endpoints);
        let client = ServiceBuilder::new()
            .layer(documented_retry().layer())
            .layer(bulkhead.layer())
            .service(balancer.service());
        let seen = drive(client, &calls).await;
        (seen, balancer.snapshot().endpoints[0].clone())
    });
    assert_eq!(seen.failed, 0, "{seen:?}");
    assert!(seen.calls[0] <= 10, "{seen:?}");
    assert!(seen.slow <= 10, "{seen:?}");
    assert!(
        hung.failures >= 1 && hung.failures == seen.calls[0],
        "every attempt on the hung endpoint is its failure: {hung:?}\n{seen:?}"
    );
}

/// The whole dependency hangs, under an adaptive (AIMD) limit: with a per-endpoint timeout
/// below the balancer, each hang comes back as a failure through the bulkhead, a drop, and
/// the limit shrinks; with only the retry's attempt timeout above the bulkhead, every attempt
/// is dropped from above, which the limit does not count, and it stays where it was (the
/// facade's docs, "The order of layers", step 6, say to set the per-endpoint timeout).
#[test]
fn an_adaptive_limit_sees_a_hung_dependency_only_through_a_per_endpoint_timeout() {
    let limit_after = |per_endpoint_timeout: bool| {
        run_paused(async move {
            let calls: Arc<[AtomicU64; 3]> = Arc::default();
            let aimd = Aimd::builder()
                .initial_limit(40)
                .min_limit(1)
                .build()
                .expect("an AIMD limit");
            let bulkhead = Bulkhead::builder()
                .adaptive(aimd)
                .build()
                .expect("an adaptive bulkhead");
            let endpoint = |key| Endpoint {
                key,
                hung: true,
                calls: Arc::clone(&calls),
            };
            let timeout = TimeoutLayer::new(Duration::from_millis(400));
            let client = if per_endpoint_timeout {
                let balancer = Balancer::new((0..3).map(|key| (key, timeout.layer(endpoint(key)))));
                let client = ServiceBuilder::new()
                    .layer(documented_retry().layer())
                    .layer(bulkhead.layer())
                    .service(balancer.service());
                tower::util::BoxCloneSyncService::new(client)
            } else {
                let balancer = Balancer::new((0..3).map(|key| (key, endpoint(key))));
                let client = ServiceBuilder::new()
                    .layer(documented_retry().layer())
                    .layer(bulkhead.layer())
                    .service(balancer.service());
                tower::util::BoxCloneSyncService::new(client)
            };
            let seen = drive(client, &calls).await;
            assert_eq!(seen.ok, 0, "nothing answers: {seen:?}");
            bulkhead.limit()
        })
    };
    let with_timeout = limit_after(true);
    assert!(
        with_timeout < 10,
        "AIMD backs off on the timeouts: {with_timeout}"
    );
    assert_eq!(limit_after(false), 40, "dropped attempts are not drops");
}
