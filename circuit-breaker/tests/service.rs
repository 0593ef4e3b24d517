//! The tower layer in tokio's paused time, against the core mock backend.
#![cfg(not(loom))]

use palisade_circuit_breaker::{CircuitBreaker, CircuitOpen, State};
use palisade_core::classify::Outcome;
use palisade_core::clock::Clock;
use palisade_core::test_util::{MockBackend, MockError, MockErrorKind, Reply, Script, Step};
use std::future::poll_fn;
use std::time::Duration;
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};

fn breaker() -> CircuitBreaker {
    CircuitBreaker::builder()
        .clock(Clock::tokio())
        .count_window(10)
        .minimum_calls(4)
        .wait_duration_in_open(Duration::from_secs(5))
        .fixed_open_wait()
        .permitted_calls_in_half_open(2)
        .build()
        .unwrap()
}

async fn call<S>(svc: &mut S) -> Result<Reply<u32>, BoxError>
where
    S: Service<u32, Response = Reply<u32>, Error = BoxError>,
{
    svc.ready().await?.call(7).await
}

fn is_open(err: &BoxError) -> bool {
    err.downcast_ref::<CircuitOpen>().is_some()
}

#[tokio::test(start_paused = true)]
async fn trips_rejects_without_calling_and_recovers() {
    let backend = MockBackend::new(
        Script::sequence([Step::fail(), Step::fail(), Step::fail(), Step::fail()])
            .then(Script::always(Step::ok())),
    );
    let breaker = breaker();
    let mut svc = ServiceBuilder::new()
        .layer(breaker.layer())
        .service(backend.clone());
    for _ in 0..4 {
        let err = call(&mut svc).await.unwrap_err();
        assert!(
            err.downcast_ref::<MockError>().is_some(),
            "inner errors pass through"
        );
    }
    assert_eq!(breaker.state(), State::Open);
    let err = call(&mut svc).await.unwrap_err();
    assert!(is_open(&err));
    assert_eq!(
        palisade_core::retry_after(&*err),
        Some(Duration::from_secs(5))
    );
    assert_eq!(
        backend.stats().calls,
        4,
        "a rejected call never reaches the backend"
    );

    tokio::time::sleep(Duration::from_secs(5)).await;
    call(&mut svc).await.unwrap();
    assert_eq!(breaker.state(), State::HalfOpen);
    call(&mut svc).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().rejected_calls, 1);
}

#[tokio::test(start_paused = true)]
async fn every_service_from_one_handle_shares_the_breaker() {
    let breaker = breaker();
    let layer = breaker.layer();
    let failing = MockBackend::new(Script::always(Step::fail()));
    let healthy = MockBackend::healthy();
    let mut a = ServiceBuilder::new().layer(layer.clone()).service(failing);
    let mut b = ServiceBuilder::new().layer(layer).service(healthy.clone());
    for _ in 0..4 {
        let _ = call(&mut a).await;
    }
    assert!(is_open(&call(&mut b).await.unwrap_err()));
    let mut c = b.clone();
    assert!(is_open(&call(&mut c).await.unwrap_err()));
    assert_eq!(healthy.stats().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_gives_its_permit_back_and_does_not_count() {
    let backend = MockBackend::new(Script::always(Step::hang()));
    let breaker = breaker();
    breaker.transition_to_half_open();
    let mut svc = breaker.layer().layer(backend.clone());
    let first = ServiceExt::<u32>::ready(&mut svc).await.unwrap().call(1);
    let second = ServiceExt::<u32>::ready(&mut svc).await.unwrap().call(2);
    assert!(
        is_open(&call(&mut svc).await.unwrap_err()),
        "both probes are out"
    );
    drop(first);
    drop(second);
    assert_eq!(backend.stats().cancelled, 2);
    assert_eq!(breaker.snapshot().calls, 0, "cancelled calls are ignored");
    let third = ServiceExt::<u32>::ready(&mut svc).await.unwrap().call(3);
    let fourth = ServiceExt::<u32>::ready(&mut svc).await.unwrap().call(4);
    assert_eq!(breaker.state(), State::HalfOpen);
    drop((third, fourth));
}

#[tokio::test(start_paused = true)]
async fn a_reserved_permit_is_given_back_when_the_service_is_dropped() {
    let breaker = breaker();
    breaker.transition_to_half_open();
    let mut svc = breaker.layer().layer(MockBackend::healthy());
    let mut other = svc.clone();
    ServiceExt::<u32>::ready(&mut svc).await.unwrap();
    ServiceExt::<u32>::ready(&mut other).await.unwrap();
    assert!(
        breaker.try_acquire().is_err(),
        "two reservations hold both probes"
    );
    drop(svc);
    drop(breaker.try_acquire().unwrap());
    drop(other);
}

/// An inner service that is broken for good: its `poll_ready` fails.
#[derive(Clone, Copy)]
struct Broken;

impl Service<u32> for Broken {
    type Response = u32;
    type Error = MockError;
    type Future = std::future::Ready<Result<u32, MockError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), MockError>> {
        std::task::Poll::Ready(Err(MockError {
            kind: MockErrorKind::Down,
            call: 0,
        }))
    }

    fn call(&mut self, request: u32) -> Self::Future {
        std::future::ready(Ok(request))
    }
}

/// The probe a ready check reserved comes back when the inner service turns out broken (its
/// `poll_ready` fails), and when the service is unwrapped with `into_inner`, in both modes.
#[tokio::test(start_paused = true)]
async fn a_reservation_comes_back_when_the_inner_service_is_broken_or_unwrapped() {
    for gate in [false, true] {
        let breaker = breaker();
        breaker.transition_to_half_open();
        let layer = if gate {
            breaker.layer().gate()
        } else {
            breaker.layer()
        };
        let mut broken = layer.clone().layer(Broken);
        for _ in 0..3 {
            assert!(ServiceExt::<u32>::ready(&mut broken).await.is_err());
        }
        let mut healthy = layer.layer(MockBackend::healthy());
        ServiceExt::<u32>::ready(&mut healthy).await.unwrap();
        let held = breaker
            .try_acquire()
            .expect("the broken service holds no probe");
        assert!(
            breaker.try_acquire().is_err(),
            "gate {gate}: two probes out"
        );
        drop(held);
        let _backend = healthy.into_inner();
        drop(
            breaker
                .try_acquire()
                .expect("into_inner gave the probe back"),
        );
        assert_eq!(breaker.snapshot().calls, 0, "nothing was recorded");
    }
}

#[tokio::test(start_paused = true)]
async fn a_clone_does_not_clone_a_reservation() {
    let breaker = breaker();
    breaker.transition_to_half_open();
    let mut svc = breaker.layer().layer(MockBackend::healthy());
    ServiceExt::<u32>::ready(&mut svc).await.unwrap();
    let mut clone = svc.clone();
    let mut fut = task::spawn(poll_fn(|cx| Service::<u32>::poll_ready(&mut clone, cx)));
    assert_ready_ok!(fut.poll(), "the clone reserves its own probe");
    drop(fut);
    let mut third = svc.clone();
    let mut ready = task::spawn(poll_fn(|cx| Service::<u32>::poll_ready(&mut third, cx)));
    assert_ready_ok!(ready.poll(), "rejections are ready at once");
    drop(ready);
    assert!(is_open(&third.call(1).await.unwrap_err()));
}

#[tokio::test(start_paused = true)]
async fn panics_count_as_failures_and_free_the_probe() {
    for step in [Step::panic(), Step::panic_in_call()] {
        let backend = MockBackend::new(Script::always(step));
        let breaker = breaker();
        breaker.transition_to_half_open();
        let svc = breaker.layer().layer(backend.clone());
        for _ in 0..2 {
            let svc = svc.clone();
            let joined = tokio::spawn(async move { svc.oneshot(1u32).await }).await;
            assert!(joined.unwrap_err().is_panic());
        }
        assert_eq!(backend.stats().panicked, 2);
        assert_eq!(
            breaker.state(),
            State::Open,
            "two failed probes re-open ({step:?})"
        );
    }
}

/// Regression (issue 9 §3): the permit's `Drop` checked `thread::panicking()`, so every call
/// whose response future was dropped while the *caller* panicked for its own reasons counted
/// as a failure, and a task panicking in its own code opened a healthy breaker.
#[tokio::test(start_paused = true)]
async fn a_callers_own_panic_is_not_a_failure_of_the_dependency() {
    let backend = MockBackend::new(Script::always(Step::ok().after(Duration::from_secs(1))));
    let breaker = CircuitBreaker::builder()
        .clock(Clock::tokio())
        .count_window(4)
        .minimum_calls(1)
        .build()
        .unwrap();
    let svc = breaker.layer().layer(backend.clone());
    for _ in 0..4 {
        let mut svc = svc.clone();
        let joined = tokio::spawn(async move {
            let future = ServiceExt::<u32>::ready(&mut svc).await.unwrap().call(1u32);
            let _held = future;
            panic!("the caller's own bug, with the call in flight");
        })
        .await;
        assert!(joined.unwrap_err().is_panic());
    }
    assert_eq!(breaker.state(), State::Closed);
    let m = breaker.snapshot();
    assert_eq!(
        (m.calls, m.failed_calls),
        (0, 0),
        "cancelled calls, not failures"
    );
    // The dependency's own panic still counts.
    breaker.transition_to_half_open();
    let panicking = breaker
        .layer()
        .layer(MockBackend::new(Script::always(Step::panic())));
    let joined = tokio::spawn(async move { panicking.oneshot(1u32).await }).await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!(breaker.snapshot().failed_calls, 1);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_are_measured_in_virtual_time() {
    let backend = MockBackend::new(Script::always(Step::ok().after(Duration::from_secs(3))));
    let breaker = CircuitBreaker::builder()
        .clock(Clock::tokio())
        .count_window(4)
        .minimum_calls(4)
        .slow_call_duration(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut svc = breaker.layer().layer(backend);
    for _ in 0..4 {
        call(&mut svc).await.unwrap();
    }
    assert_eq!(
        breaker.state(),
        State::Open,
        "100% slow calls at the default threshold"
    );
}

#[tokio::test(start_paused = true)]
async fn a_classifier_decides_what_counts() {
    let backend = MockBackend::new(Script::always(Step::fail()));
    let breaker = breaker();
    let ignore_errors = |_: Result<&Reply<u32>, &MockError>| Outcome::Ignore;
    let mut svc = breaker.layer_with(ignore_errors).layer(backend);
    for _ in 0..10 {
        assert!(call(&mut svc).await.is_err());
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn pending_inner_readiness_keeps_the_reservation() {
    let (inner, mut handle) = tower_test_pair();
    let breaker = breaker();
    breaker.transition_to_half_open();
    let mut svc = breaker.layer().layer(inner);
    let mut ready = task::spawn(poll_fn(|cx| Service::<u32>::poll_ready(&mut svc, cx)));
    assert_pending!(ready.poll());
    drop(ready);
    let other = breaker.try_acquire().unwrap();
    assert!(
        breaker.try_acquire().is_err(),
        "the pending service holds a probe"
    );
    handle.allow(1);
    let mut ready = task::spawn(poll_fn(|cx| Service::<u32>::poll_ready(&mut svc, cx)));
    assert_ready_ok!(ready.poll(), "the same reservation, now ready");
    drop(ready);
    assert_eq!(svc.call(5).await.unwrap(), 5);
    other.success();
    assert_eq!(breaker.state(), State::Closed);
}

/// `poll_ready` answered with a rejection while open; asked again after the breaker closed,
/// it reserves a permit instead, and the call reaches the backend.
#[tokio::test(start_paused = true)]
async fn a_rejection_is_not_kept_past_the_next_poll_ready() {
    let backend = MockBackend::new(Script::always(Step::ok()));
    let breaker = breaker();
    breaker.transition_to_open();
    let mut svc = breaker.layer().layer(backend.clone());
    ServiceExt::<u32>::ready(&mut svc).await.unwrap();
    breaker.transition_to_closed();
    ServiceExt::<u32>::ready(&mut svc).await.unwrap();
    svc.call(7).await.unwrap();
    assert_eq!(backend.stats().calls, 1);
    // And the other way round: a reserved permit is kept, not traded for a rejection.
    ServiceExt::<u32>::ready(&mut svc).await.unwrap();
    breaker.transition_to_open();
    ServiceExt::<u32>::ready(&mut svc).await.unwrap();
    svc.call(7).await.unwrap();
    assert_eq!(backend.stats().calls, 2);
    let err = call(&mut svc).await.unwrap_err();
    assert!(is_open(&err));
    assert_eq!(backend.stats().calls, 2);
}

/// A tiny stand-in for tower-test's mock: ready only when allowed.
fn tower_test_pair() -> (Gate, GateHandle) {
    let allowed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    (Gate(allowed.clone()), GateHandle(allowed))
}

#[derive(Clone)]
struct Gate(std::sync::Arc<std::sync::atomic::AtomicUsize>);
struct GateHandle(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl GateHandle {
    fn allow(&mut self, n: usize) {
        // SeqCst: test bookkeeping.
        self.0.store(n, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Service<u32> for Gate {
    type Response = u32;
    type Error = BoxError;
    type Future = std::future::Ready<Result<u32, BoxError>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        // SeqCst: test bookkeeping.
        if self.0.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            std::task::Poll::Ready(Ok(()))
        } else {
            std::task::Poll::Pending
        }
    }

    fn call(&mut self, request: u32) -> Self::Future {
        std::future::ready(Ok(request))
    }
}
