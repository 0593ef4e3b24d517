//! Issue 9 §2, readiness: a full bulkhead is busy, not broken. Its `poll_ready` never fails
//! for "full" (tower discards a service whose `poll_ready` fails), so it keeps serving under
//! tower's `Buffer` and p2c `Balance` after a burst of rejections.

#![cfg(not(loom))]

use palisade_bulkhead::{Bulkhead, BulkheadFull, WaitTimeout};
use palisade_core::test_util::{MockBackend, Script, Step};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::ServiceList;
use tower::load::Constant;
use tower::{BoxError, Layer, Service, ServiceExt};

fn slow() -> MockBackend {
    MockBackend::new(Script::always(Step::ok().after(Duration::from_millis(50))))
}

/// Regression: a full reject-mode bulkhead used to fail `poll_ready`. Now `poll_ready` is
/// ready, and the rejection comes from the response future without reaching the backend.
#[tokio::test(start_paused = true)]
async fn full_in_reject_mode_is_ready_and_rejects_from_the_future() {
    let bulkhead = Bulkhead::builder().max_concurrent_calls(1).build().unwrap();
    let backend = slow();
    let mut svc = bulkhead.layer().layer(backend.clone());
    let held = ServiceExt::<u32>::ready(&mut svc).await.unwrap().call(0);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(
        Service::<u32>::poll_ready(&mut svc, &mut cx),
        Poll::Ready(Ok(()))
    ));
    assert_eq!(
        bulkhead.rejected_calls(),
        0,
        "counted when the call is answered"
    );
    let err = svc.call(1).await.unwrap_err();
    assert!(err.is::<BulkheadFull>(), "{err}");
    assert_eq!((bulkhead.rejected_calls(), backend.stats().calls), (1, 1));

    // A service that was told "full" decides again at its next `poll_ready`: a slot freed
    // in between serves the call.
    assert!(matches!(
        Service::<u32>::poll_ready(&mut svc, &mut cx),
        Poll::Ready(Ok(()))
    ));
    held.await.unwrap();
    ServiceExt::<u32>::ready(&mut svc).await.unwrap();
    assert_eq!(svc.call(2).await.unwrap().request, 2);
    assert_eq!(bulkhead.in_flight(), 0);
}

/// Regression (issue 9): under `Buffer`, one full moment failed the worker for good
/// ("buffered service failed: bulkhead full" on every later call, even idle).
#[tokio::test(start_paused = true)]
async fn under_buffer_a_burst_of_rejections_then_idle_capacity_serves_again() {
    let bulkhead = Bulkhead::builder().max_concurrent_calls(2).build().unwrap();
    let backend = slow();
    let buffer = Buffer::new(bulkhead.layer().layer(backend.clone()), 64);
    let burst: Vec<_> = (0..20u32)
        .map(|i| tokio::spawn(buffer.clone().oneshot(i)))
        .collect();
    let (mut ok, mut full) = (0, 0);
    for call in burst {
        match call.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) if e.is::<BulkheadFull>() => full += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!((ok, full), (2, 18));
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..5 {
        let reply = buffer.clone().oneshot(100 + i).await.expect("serves again");
        assert_eq!(reply.request, 100 + i);
    }
    assert_eq!(bulkhead.in_flight(), 0);
    assert_eq!(backend.stats().calls, 7);
}

/// Wait mode under `Buffer`: the worker waits (`Pending`, woken when a slot frees); a wait
/// that runs out fails only that call, and the buffer keeps serving.
#[tokio::test(start_paused = true)]
async fn under_buffer_wait_mode_waits_times_out_per_call_and_serves_again() {
    let bulkhead = Bulkhead::builder()
        .max_concurrent_calls(1)
        .max_wait(Duration::from_millis(80))
        .build()
        .unwrap();
    let backend = slow();
    let buffer = Buffer::new(bulkhead.layer().layer(backend.clone()), 64);
    // 50 ms each, one at a time: the second waits 50 ms (< 80 ms) and is served.
    let first = tokio::spawn(buffer.clone().oneshot(0));
    let second = tokio::spawn(buffer.clone().oneshot(1));
    let start = tokio::time::Instant::now();
    assert_eq!(first.await.unwrap().unwrap().request, 0);
    assert_eq!(second.await.unwrap().unwrap().request, 1);
    assert_eq!(start.elapsed(), Duration::from_millis(100));

    // A holder longer than max_wait: the waiter fails with WaitTimeout at 80 ms.
    let hanging = MockBackend::new(Script::sequence([Step::hang(), Step::ok()]));
    let bulkhead = Bulkhead::builder()
        .max_concurrent_calls(1)
        .max_wait(Duration::from_millis(80))
        .build()
        .unwrap();
    let buffer = Buffer::new(bulkhead.layer().layer(hanging.clone()), 64);
    let held = tokio::spawn(buffer.clone().oneshot(0));
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(bulkhead.in_flight(), 1);
    let start = tokio::time::Instant::now();
    let err = buffer.clone().oneshot(1).await.unwrap_err();
    assert!(err.is::<WaitTimeout>(), "{err}");
    assert_eq!(start.elapsed(), Duration::from_millis(80));
    held.abort();
    let _ = held.await;
    assert_eq!(bulkhead.in_flight(), 0);
    let reply = buffer
        .clone()
        .oneshot(2)
        .await
        .expect("the buffer still serves");
    assert_eq!(reply.request, 2);
}

/// Readiness with a bound: a balancer that dropped its endpoints stays `Pending` for ever,
/// which must fail the test rather than hang it.
async fn ready_within_1s<S: Service<u32>>(svc: &mut S) -> &mut S
where
    S::Error: std::fmt::Debug,
{
    tokio::time::timeout(Duration::from_secs(1), ServiceExt::<u32>::ready(svc))
        .await
        .expect("the balancer lost its endpoints")
        .unwrap()
}

/// Regression (issue 9): under p2c `Balance`, an endpoint whose bulkhead was full once was
/// dropped from the balancer for good. Now both endpoints stay, and serve again.
#[tokio::test(start_paused = true)]
async fn under_p2c_balance_a_full_endpoint_is_not_dropped() {
    let bulkheads: Vec<Bulkhead> = (0..2)
        .map(|_| Bulkhead::builder().max_concurrent_calls(1).build().unwrap())
        .collect();
    let endpoints: Vec<_> = bulkheads
        .iter()
        .map(|b| Constant::new(b.layer().layer(slow()), 0u32))
        .collect();
    let mut balance: Balance<_, u32> = Balance::new(ServiceList::new::<u32>(endpoints));
    let mut pending = Vec::new();
    for i in 0..8u32 {
        let svc = ready_within_1s(&mut balance).await;
        pending.push(svc.call(i));
    }
    assert_eq!(balance.len(), 2, "no endpoint dropped while full");
    let mut full = 0;
    for call in pending {
        match call.await {
            Ok(_) => {}
            Err(e) if e.is::<BulkheadFull>() => full += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert!(full >= 6, "two slots for eight calls: {full} rejections");
    for i in 0..6u32 {
        let svc = ready_within_1s(&mut balance).await;
        let reply: Result<_, BoxError> = svc.call(100 + i).await;
        assert_eq!(reply.expect("serves again").request, 100 + i);
    }
    assert_eq!(balance.len(), 2);
    // Endpoints in the balancer's ready cache hold the slot their `poll_ready` reserved;
    // dropping the balancer gives them back.
    drop(balance);
    assert!(bulkheads.iter().all(|b| b.in_flight() == 0));
}
