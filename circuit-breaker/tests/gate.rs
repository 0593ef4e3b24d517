//! Gate mode (issue 9 §2): an open breaker makes its service *not ready*, with a wake-up when
//! probes may start, instead of ready-then-rejected. In tokio's paused time.
#![cfg(not(loom))]

use palisade_circuit_breaker::{CircuitBreaker, CircuitBreakerService, Mode, State};
use palisade_core::clock::Clock;
use std::future::{Ready, ready};
use std::time::Duration;
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::{BoxError, Layer, Service, ServiceExt, service_fn, util::ServiceFn};

type Backend = ServiceFn<fn(u32) -> Ready<Result<u32, BoxError>>>;

fn ok(x: u32) -> Ready<Result<u32, BoxError>> {
    ready(Ok(x))
}

fn fail(_: u32) -> Ready<Result<u32, BoxError>> {
    ready(Err("backend down".into()))
}

fn breaker(probes: u32) -> CircuitBreaker {
    CircuitBreaker::builder()
        .clock(Clock::tokio())
        .count_window(4)
        .minimum_calls(2)
        .wait_duration_in_open(Duration::from_secs(5))
        .fixed_open_wait()
        .permitted_calls_in_half_open(probes)
        .build()
        .unwrap()
}

fn gated(
    breaker: &CircuitBreaker,
    f: fn(u32) -> Ready<Result<u32, BoxError>>,
) -> CircuitBreakerService<Backend> {
    breaker.layer().gate().layer(service_fn(f))
}

#[tokio::test(start_paused = true)]
async fn an_open_gate_is_pending_and_wakes_when_probes_may_start() {
    let breaker = breaker(1);
    let mut svc = gated(&breaker, ok);
    assert_eq!(svc.mode(), Mode::Gate);
    breaker.transition_to_open();
    let mut poller = task::spawn(());
    assert_pending!(poller.enter(|cx, _| svc.poll_ready(cx)));
    tokio::time::advance(Duration::from_millis(4_999)).await;
    assert!(!poller.is_woken(), "woken before the open wait's end");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(
        poller.is_woken(),
        "the timer wakes the task at the open wait's end"
    );
    assert_ready_ok!(poller.enter(|cx, _| svc.poll_ready(cx)));
    assert_eq!(breaker.state(), State::HalfOpen, "the probe is admitted");
    assert_eq!(svc.call(1).await.unwrap(), 1);
    assert_eq!(breaker.state(), State::Closed, "the probe's success closes");
    assert_eq!(
        breaker.snapshot().rejected_calls,
        0,
        "waiting is not a rejected call"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_and_the_gate_stays_shut() {
    let breaker = breaker(1);
    let mut svc = gated(&breaker, fail);
    breaker.transition_to_open();
    tokio::time::advance(Duration::from_secs(5)).await;
    let mut poller = task::spawn(());
    assert_ready_ok!(poller.enter(|cx, _| svc.poll_ready(cx)));
    svc.call(1).await.unwrap_err();
    assert_eq!(breaker.state(), State::Open);
    assert_pending!(poller.enter(|cx, _| svc.poll_ready(cx)));
    tokio::time::advance(Duration::from_millis(4_999)).await;
    assert!(!poller.is_woken());
    assert_pending!(
        poller.enter(|cx, _| svc.poll_ready(cx)),
        "a spurious poll stays shut"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(poller.is_woken());
    assert_ready_ok!(poller.enter(|cx, _| svc.poll_ready(cx)));
}

/// An open gate tells the poller it is *shut*, with the rest of its wait (core's readiness
/// note, read by Palisade's balancer to pass it over); half-open with its probe out is only
/// busy, and says nothing.
#[tokio::test(start_paused = true)]
async fn an_open_gate_reports_itself_shut_for_the_rest_of_its_wait() {
    use palisade_core::readiness::poll_observing;
    let breaker = breaker(1);
    let mut a = gated(&breaker, ok);
    let mut b = gated(&breaker, ok);
    breaker.transition_to_open();
    tokio::time::advance(Duration::from_secs(2)).await;
    let mut poller = task::spawn(());
    let (answer, shut) = poller.enter(|cx, _| poll_observing(|| a.poll_ready(cx)));
    assert!(answer.is_pending());
    assert_eq!(shut, Some(Duration::from_secs(3)));

    breaker.force_open();
    let (answer, shut) = poller.enter(|cx, _| poll_observing(|| a.poll_ready(cx)));
    assert!(answer.is_pending());
    assert_eq!(shut, Some(Duration::ZERO), "forced open: shut, end unknown");

    breaker.transition_to_half_open();
    let (answer, shut) = poller.enter(|cx, _| poll_observing(|| a.poll_ready(cx)));
    assert!(answer.is_ready(), "the probe is admitted");
    assert_eq!(shut, None);
    let (answer, shut) = poller.enter(|cx, _| poll_observing(|| b.poll_ready(cx)));
    assert!(answer.is_pending(), "the only probe is out");
    assert_eq!(shut, None, "waiting for a probe's answer is busy, not shut");
}

/// Half-open with every probe taken is `Pending` until the probe completes, which wakes the
/// waiters (no deadlock: the waiting service holds nothing).
#[tokio::test(start_paused = true)]
async fn half_open_with_the_probe_taken_waits_for_it_to_complete() {
    let breaker = breaker(1);
    let mut a = gated(&breaker, ok);
    let mut b = gated(&breaker, ok);
    breaker.transition_to_half_open();
    let (mut pa, mut pb) = (task::spawn(()), task::spawn(()));
    assert_ready_ok!(pa.enter(|cx, _| a.poll_ready(cx)));
    assert_pending!(pb.enter(|cx, _| b.poll_ready(cx)));
    assert!(!pb.is_woken());
    a.call(1).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
    assert!(pb.is_woken(), "the decision wakes the waiter");
    assert_ready_ok!(pb.enter(|cx, _| b.poll_ready(cx)));
    assert_eq!(b.call(2).await.unwrap(), 2);
}

/// A ready service dropped without calling gives its probe back, and the waiter gets it.
#[tokio::test(start_paused = true)]
async fn a_dropped_ready_service_returns_its_probe() {
    let breaker = breaker(1);
    let mut a = gated(&breaker, ok);
    let mut b = gated(&breaker, ok);
    breaker.transition_to_half_open();
    let (mut pa, mut pb) = (task::spawn(()), task::spawn(()));
    assert_ready_ok!(pa.enter(|cx, _| a.poll_ready(cx)));
    assert_pending!(pb.enter(|cx, _| b.poll_ready(cx)));
    drop(a);
    assert!(pb.is_woken(), "the returned probe wakes the waiter");
    assert_ready_ok!(pb.enter(|cx, _| b.poll_ready(cx)));
    assert_eq!(breaker.state(), State::HalfOpen);
    b.call(3).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
}

/// Forced open waits for a person: a manual transition wakes the gate.
#[tokio::test(start_paused = true)]
async fn a_forced_open_gate_waits_for_a_manual_transition() {
    let breaker = breaker(1);
    let mut svc = gated(&breaker, ok);
    breaker.force_open();
    let mut poller = task::spawn(());
    assert_pending!(poller.enter(|cx, _| svc.poll_ready(cx)));
    tokio::time::advance(Duration::from_secs(3_600)).await;
    assert!(!poller.is_woken());
    breaker.reset();
    assert!(poller.is_woken());
    assert_eq!(svc.ready().await.unwrap().call(4).await.unwrap(), 4);
}

/// Reject mode stays the default and fails fast: ready at once, the call is rejected.
#[tokio::test(start_paused = true)]
async fn reject_mode_is_the_default() {
    let breaker = breaker(1);
    let mut svc = breaker.layer().layer(service_fn(ok));
    assert_eq!(svc.mode(), Mode::Reject);
    breaker.transition_to_open();
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(err.is::<palisade_circuit_breaker::CircuitOpen>());
    assert_eq!(breaker.snapshot().rejected_calls, 1);
}

/// The breaker's own trip through a gated service, then recovery, end to end.
#[tokio::test(start_paused = true)]
async fn a_gated_service_trips_waits_and_recovers() {
    let breaker = breaker(1);
    let failing = gated(&breaker, fail);
    for _ in 0..2 {
        failing.clone().oneshot(1).await.unwrap_err();
    }
    assert_eq!(breaker.state(), State::Open);
    let healthy = gated(&breaker, ok);
    let started = tokio::time::Instant::now();
    assert_eq!(healthy.oneshot(9).await.unwrap(), 9, "waited, then probed");
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert_eq!(breaker.state(), State::Closed);
}
