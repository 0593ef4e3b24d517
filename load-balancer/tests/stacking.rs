//! The balancer among other layers: per-endpoint breakers (gate and reject mode) below it,
//! tower's middleware above it.
#![cfg(not(loom))]

use palisade_circuit_breaker::CircuitBreaker;
use palisade_core::BoxError;
use palisade_core::clock::Clock;
use palisade_load_balancer::{
    Balancer, EndpointMeta, OutlierDetection, P2cPeakEwma, Random, Strategy,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

/// An endpoint answering its id after 5 ms, or failing in 1 ms while `failing`.
#[derive(Clone)]
struct Endpoint {
    id: usize,
    failing: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
}

impl Service<u32> for Endpoint {
    type Response = usize;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<usize, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: u32) -> Self::Future {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let (id, failing) = (self.id, self.failing.load(Ordering::Relaxed));
        Box::pin(async move {
            if failing {
                tokio::time::sleep(Duration::from_millis(1)).await;
                Err("endpoint failed".into())
            } else {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok(id)
            }
        })
    }
}

fn endpoints() -> Vec<Endpoint> {
    (0..3)
        .map(|id| Endpoint {
            id,
            failing: Arc::new(AtomicBool::new(id == 2)),
            calls: Arc::default(),
        })
        .collect()
}

fn breaker() -> CircuitBreaker {
    CircuitBreaker::builder()
        .consecutive_failures(3)
        .wait_duration_in_open(Duration::from_millis(500))
        .clock(Clock::tokio())
        .build()
        .unwrap()
}

/// Per-endpoint breakers; a load-blind strategy and no ejection, so that only the breakers
/// protect: the failing endpoint's breaker opens, and the balancer routes around it.
async fn run_with_breakers(gate: bool, strategy: impl Strategy) -> (u64, u64, CircuitBreaker) {
    let endpoints = endpoints();
    let breakers: Vec<_> = endpoints.iter().map(|_| breaker()).collect();
    let balancer = Balancer::builder()
        .clock(Clock::tokio())
        .seed(5)
        .strategy(strategy)
        .outlier_detection(OutlierDetection::disabled())
        .build()
        .unwrap();
    for (endpoint, breaker) in endpoints.iter().zip(&breakers) {
        let layer = if gate {
            breaker.layer().gate()
        } else {
            breaker.layer()
        };
        balancer.insert(
            endpoint.id,
            layer.layer(endpoint.clone()),
            EndpointMeta::new(),
        );
    }
    let retry = palisade_retry::RetryPolicy::builder()
        .clock(Clock::tokio())
        .seed(5)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(retry.layer())
        .service(balancer.service());
    let mut failed = 0;
    for _ in 0..1_000 {
        if svc.clone().oneshot(0).await.is_err() {
            failed += 1;
        }
    }
    (
        failed,
        endpoints[2].calls.load(Ordering::Relaxed),
        breakers[2].clone(),
    )
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_in_gate_mode_is_passed_over() {
    let (failed, failing_calls, breaker) = run_with_breakers(true, Random).await;
    println!(
        "gate: {failed} failed, {failing_calls} calls to the failing endpoint, {:?}",
        breaker.snapshot().state
    );
    assert_eq!(failed, 0);
    assert!(
        failing_calls < 60,
        "the failing endpoint got {failing_calls} calls"
    );
    // Without the gate, a load-blind strategy sends it a third of the calls (about 333).
    assert_eq!(
        breaker.snapshot().state,
        palisade_circuit_breaker::State::Open
    );
}

#[tokio::test(start_paused = true)]
async fn with_breakers_in_reject_mode_the_default_strategy_avoids_the_failing_endpoint() {
    let (failed, failing_calls, breaker) = run_with_breakers(false, P2cPeakEwma).await;
    println!(
        "reject: {failed} failed, {failing_calls} calls to the failing endpoint, {:?}",
        breaker.snapshot().state
    );
    assert_eq!(failed, 0);
    assert!(
        failing_calls < 30,
        "the failing endpoint got {failing_calls} calls"
    );
}

#[tokio::test(start_paused = true)]
async fn works_under_buffer_load_shed_and_concurrency_limit() {
    let endpoints = endpoints();
    let balancer = Balancer::builder().clock(Clock::tokio()).build().unwrap();
    // An empty set first: a burst of local rejections must not break the stack.
    let svc = ServiceBuilder::new()
        .buffer(64)
        .load_shed()
        .concurrency_limit(8)
        .service(balancer.service());
    for _ in 0..20 {
        let err = svc.clone().oneshot(0).await.unwrap_err();
        assert!(palisade_core::is_local_rejection(&*err), "{err}");
    }
    for e in &endpoints[..2] {
        balancer.insert(e.id, e.clone(), EndpointMeta::new());
    }
    for _ in 0..20 {
        assert!(svc.clone().oneshot(0).await.unwrap() < 2, "still serves");
    }
}
