//! The built-in per-endpoint circuit breakers (`BalancerBuilder::endpoint_breaker`), in
//! tokio's paused time: availability filtering, half-open probes, no pick ever waiting on an
//! open breaker, events and snapshot.
#![cfg(not(loom))]

use palisade_circuit_breaker::{CircuitBreakerEvent, State};
use palisade_core::clock::Clock;
use palisade_load_balancer::{
    Balancer, EndpointMeta, NoHealthyEndpoints, OutlierDetection, RoundRobin, fleet_breaker,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Service, ServiceExt};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Answers its id after 5 ms; fails fast while `failing`; its `poll_ready` fails while
/// `broken`; counts calls.
#[derive(Clone, Default)]
struct Endpoint {
    id: usize,
    failing: Arc<AtomicBool>,
    broken: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
}

impl Endpoint {
    fn new(id: usize) -> Endpoint {
        Endpoint {
            id,
            ..Endpoint::default()
        }
    }
    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<()> for Endpoint {
    type Response = usize;
    type Error = std::io::Error;
    type Future = BoxFuture<Result<usize, std::io::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        if self.broken.load(Ordering::SeqCst) {
            return Poll::Ready(Err(std::io::Error::other("broken")));
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let failing = self.failing.load(Ordering::SeqCst);
        let id = self.id;
        Box::pin(async move {
            if failing {
                tokio::time::sleep(Duration::from_millis(1)).await;
                return Err(std::io::Error::other("failing"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(id)
        })
    }
}

/// A round-robin balancer with fleet breakers and no outlier ejection, so the breaker alone
/// decides availability.
fn balancer(endpoints: &[Endpoint]) -> Balancer<usize, Endpoint> {
    let balancer = Balancer::builder()
        .clock(Clock::tokio())
        .seed(7)
        .strategy(RoundRobin::new())
        .outlier_detection(OutlierDetection::disabled())
        .endpoint_breaker(fleet_breaker())
        .build()
        .unwrap();
    for e in endpoints {
        balancer.insert(e.id, e.clone(), EndpointMeta::new());
    }
    balancer
}

async fn call(balancer: &Balancer<usize, Endpoint>) -> Result<usize, tower::BoxError> {
    balancer.service().oneshot(()).await
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_takes_its_endpoint_out_of_the_candidates() {
    let endpoints = [Endpoint::new(0), Endpoint::new(1), Endpoint::new(2)];
    endpoints[1].failing.store(true, Ordering::SeqCst);
    let balancer = balancer(&endpoints);
    let mut failures = 0;
    for _ in 0..60 {
        if call(&balancer).await.is_err() {
            failures += 1;
        }
    }
    // Round robin sends every third call to endpoint 1 until five failures in a row trip it.
    assert_eq!(failures, 5);
    assert_eq!(endpoints[1].calls(), 5);
    let breaker = balancer.endpoint_breaker(&1).unwrap();
    assert_eq!(breaker.state(), State::Open);
    // The pick filters it out: the first pick to find it open is refused once and remembers
    // the open wait; no later pick asks it.
    assert_eq!(breaker.snapshot().rejected_calls, 1);
    let snapshot = balancer.snapshot();
    let states: Vec<_> = snapshot.endpoints.iter().map(|e| e.breaker).collect();
    assert_eq!(
        states,
        vec![Some(State::Closed), Some(State::Open), Some(State::Closed)]
    );
}

#[tokio::test(start_paused = true)]
async fn no_pick_waits_on_an_open_breaker_while_another_endpoint_can_answer() {
    let endpoints = [Endpoint::new(0), Endpoint::new(1)];
    endpoints[0].failing.store(true, Ordering::SeqCst);
    let balancer = balancer(&endpoints);
    for _ in 0..10 {
        let _ = call(&balancer).await;
    }
    assert_eq!(balancer.endpoint_breaker(&0).unwrap().state(), State::Open);
    // Every readiness check is answered at once, every call by endpoint 1.
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    for _ in 0..20 {
        let mut svc = balancer.service();
        assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
        let start = tokio::time::Instant::now();
        assert_eq!(svc.call(()).await.unwrap(), 1);
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(5),
            "no wait for a breaker"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_recovered_endpoint_is_probed_half_open_and_closes() {
    let endpoints = [Endpoint::new(0), Endpoint::new(1)];
    endpoints[0].failing.store(true, Ordering::SeqCst);
    let balancer = balancer(&endpoints);
    let breaker = balancer.endpoint_breaker(&0).unwrap();
    let transitions = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&transitions);
    breaker.subscribe(move |event: &CircuitBreakerEvent| {
        if let CircuitBreakerEvent::StateTransition { to, .. } = event {
            seen.lock().unwrap().push(*to);
        }
    });
    for _ in 0..10 {
        let _ = call(&balancer).await;
    }
    assert_eq!(breaker.state(), State::Open);
    endpoints[0].failing.store(false, Ordering::SeqCst);
    let before = endpoints[0].calls();
    // Within the open wait (1 s, jitter up to -20 %) nothing reaches it.
    tokio::time::advance(Duration::from_millis(700)).await;
    for _ in 0..10 {
        assert_eq!(call(&balancer).await.unwrap(), 1);
    }
    assert_eq!(endpoints[0].calls(), before);
    // After the wait (at most 1.2 s) a pick takes the half-open probe; its success closes it.
    tokio::time::advance(Duration::from_millis(600)).await;
    for _ in 0..20 {
        call(&balancer).await.unwrap();
    }
    assert_eq!(breaker.state(), State::Closed);
    assert!(
        endpoints[0].calls() >= before + 5,
        "probed and back in rotation"
    );
    assert_eq!(
        *transitions.lock().unwrap(),
        vec![State::Open, State::HalfOpen, State::Closed]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_for_a_longer_wait() {
    let endpoints = [Endpoint::new(0), Endpoint::new(1)];
    endpoints[0].failing.store(true, Ordering::SeqCst);
    let balancer = balancer(&endpoints);
    for _ in 0..10 {
        let _ = call(&balancer).await;
    }
    let breaker = balancer.endpoint_breaker(&0).unwrap();
    assert_eq!(breaker.state(), State::Open);
    tokio::time::advance(Duration::from_millis(1_300)).await;
    let before = endpoints[0].calls();
    for _ in 0..10 {
        let _ = call(&balancer).await;
    }
    // One probe failed and re-opened it; the second wait is twice the first (>= 1.6 s).
    assert_eq!(endpoints[0].calls(), before + 1, "{:?}", breaker.snapshot());
    assert_eq!(breaker.state(), State::Open);
    endpoints[0].failing.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_millis(1_300)).await;
    for _ in 0..10 {
        assert_eq!(call(&balancer).await.unwrap(), 1);
    }
    assert_eq!(endpoints[0].calls(), before + 1, "still open after 1.3 s");
}

#[tokio::test(start_paused = true)]
async fn with_every_breaker_open_the_call_is_rejected_locally_at_once() {
    let endpoints = [Endpoint::new(0), Endpoint::new(1)];
    for e in &endpoints {
        e.failing.store(true, Ordering::SeqCst);
    }
    let balancer = balancer(&endpoints);
    for _ in 0..10 {
        let _ = call(&balancer).await;
    }
    let start = tokio::time::Instant::now();
    let err = call(&balancer).await.unwrap_err();
    assert!(err.downcast_ref::<NoHealthyEndpoints>().is_some(), "{err}");
    assert!(palisade_core::is_local_rejection(&*err));
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn failed_readiness_counts_and_cancelled_calls_do_not() {
    let endpoints = [Endpoint::new(0), Endpoint::new(1)];
    let balancer = balancer(&endpoints);
    let breaker = balancer.endpoint_breaker(&0).unwrap();
    // A cancelled call (future dropped) is not an outcome.
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    for _ in 0..10 {
        let mut svc = balancer.service();
        assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
        drop(svc.call(()));
    }
    assert_eq!(breaker.snapshot().calls, 0);
    assert_eq!(breaker.state(), State::Closed);
    // Readiness failures are failures: five trip it.
    endpoints[0].broken.store(true, Ordering::SeqCst);
    for _ in 0..10 {
        assert_eq!(call(&balancer).await.unwrap(), 1);
    }
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(
        endpoints[0].calls(),
        5,
        "only the cancelled calls reached it"
    );
}

#[test]
fn an_invalid_template_is_a_config_error() {
    let err = Balancer::builder()
        .endpoint_breaker(fleet_breaker().open_backoff_jitter(2.0))
        .build::<usize, Endpoint>()
        .unwrap_err();
    assert!(err.to_string().contains("open_backoff_jitter"), "{err}");
    let plain = Balancer::new([(0, Endpoint::new(0))]);
    assert!(plain.endpoint_breaker(&0).is_none());
    assert_eq!(plain.snapshot().endpoints[0].breaker, None);
}
