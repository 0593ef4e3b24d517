//! The tower service: readiness, rejection, waiting, permits on every exit path, events.

#![cfg(not(loom))]

use futures::FutureExt;
use palisade_bulkhead::{Bulkhead, BulkheadEvent, BulkheadFull, RejectReason, WaitTimeout};
use palisade_core::classify::Outcome;
use palisade_core::test_util::{MockBackend, Script, Step};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::{Layer, Service, ServiceExt};

async fn ready_svc<S: Service<u32>>(svc: &mut S) -> Result<&mut S, S::Error> {
    ServiceExt::<u32>::ready(svc).await
}

fn hanging() -> MockBackend {
    MockBackend::new(Script::always(Step::hang()))
}

#[tokio::test(start_paused = true)]
async fn full_bulkhead_rejects_at_once_and_frees_on_completion() {
    let bulkhead = Bulkhead::builder().max_concurrent_calls(2).build().unwrap();
    let backend = hanging();
    let mut svc = bulkhead.layer().layer(backend.clone());
    let a = ready_svc(&mut svc).await.unwrap().call(1);
    let b = ready_svc(&mut svc).await.unwrap().call(2);
    assert_eq!(bulkhead.in_flight(), 2);
    // Full is not broken: ready, and the call fails at once without reaching the backend.
    let err = ready_svc(&mut svc)
        .await
        .unwrap()
        .call(9)
        .await
        .unwrap_err();
    assert!(err.is::<BulkheadFull>(), "{err}");
    assert_eq!(bulkhead.rejected_calls(), 1);
    assert_eq!(backend.stats().calls, 2);
    drop(a); // cancellation frees a slot
    assert_eq!(bulkhead.in_flight(), 1);
    let c = ready_svc(&mut svc).await.unwrap().call(3);
    drop((b, c));
    assert_eq!(bulkhead.in_flight(), 0);
    assert_eq!(backend.stats().cancelled, 3);
}

#[tokio::test(start_paused = true)]
async fn a_reserved_slot_is_not_cloned_and_is_freed_with_the_service() {
    let bulkhead = Bulkhead::builder().max_concurrent_calls(1).build().unwrap();
    let mut svc = bulkhead.layer().layer(MockBackend::healthy());
    ready_svc(&mut svc).await.unwrap();
    assert_eq!(bulkhead.in_flight(), 1);
    let mut clone = svc.clone();
    let err = ready_svc(&mut clone)
        .await
        .unwrap()
        .call(1)
        .await
        .unwrap_err();
    assert!(err.is::<BulkheadFull>());
    drop(svc);
    assert_eq!(bulkhead.in_flight(), 0);
    ready_svc(&mut clone).await.unwrap();
    let reply = clone.call(7).await.unwrap();
    assert_eq!(reply.request, 7);
    assert_eq!(bulkhead.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "poll_ready must be called first")]
async fn call_without_poll_ready_panics() {
    let bulkhead = Bulkhead::builder().build().unwrap();
    let mut svc = bulkhead.layer().layer(MockBackend::healthy());
    drop(svc.call(1));
}

#[tokio::test(start_paused = true)]
async fn permits_come_back_on_errors_and_panics() {
    let bulkhead = Bulkhead::builder().max_concurrent_calls(1).build().unwrap();
    let backend = MockBackend::new(Script::sequence([
        Step::fail(),
        Step::panic(),
        Step::panic_in_call(),
        Step::ok(),
    ]));
    let mut svc = bulkhead.layer().layer(backend.clone());
    assert!(ready_svc(&mut svc).await.unwrap().call(1).await.is_err());
    assert_eq!(bulkhead.in_flight(), 0);
    let fut = ready_svc(&mut svc).await.unwrap().call(2);
    assert!(AssertUnwindSafe(fut).catch_unwind().await.is_err());
    assert_eq!(bulkhead.in_flight(), 0, "panic in the inner future");
    ready_svc(&mut svc).await.unwrap();
    let in_call = std::panic::catch_unwind(AssertUnwindSafe(|| svc.call(3)));
    assert!(in_call.is_err());
    assert_eq!(bulkhead.in_flight(), 0, "panic in the inner call");
    assert!(ready_svc(&mut svc).await.unwrap().call(4).await.is_ok());
    assert_eq!(backend.stats().panicked, 2);
}

#[tokio::test(start_paused = true)]
async fn waiters_are_woken_in_fifo_order() {
    let bulkhead = Bulkhead::builder()
        .max_concurrent_calls(1)
        .max_wait(Duration::from_secs(10))
        .build()
        .unwrap();
    let backend = MockBackend::new(Script::always(Step::ok().after(Duration::from_millis(10))));
    let svc = bulkhead.layer().layer(backend.clone());
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..5u32 {
        let svc = svc.clone();
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let reply = svc.oneshot(i).await.unwrap();
            order.lock().unwrap().push(reply.request);
        }));
        tokio::task::yield_now().await; // arrive in index order
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    assert_eq!(backend.stats().peak_in_flight, 1);
    assert_eq!(bulkhead.waiting(), 0);
}

#[tokio::test(start_paused = true)]
async fn waiting_is_woken_not_polled_and_gives_up_at_max_wait() {
    let bulkhead = Bulkhead::builder()
        .max_concurrent_calls(1)
        .max_wait(Duration::from_millis(100))
        .build()
        .unwrap();
    let backend = hanging();
    let mut holder = bulkhead.layer().layer(backend.clone());
    let held = ready_svc(&mut holder).await.unwrap().call(0);
    let mut waiter = bulkhead.layer().layer(backend.clone());
    let mut ready = task::spawn(futures::future::poll_fn(|cx| {
        Service::<u32>::poll_ready(&mut waiter, cx)
    }));
    assert_pending!(ready.poll());
    assert_eq!(bulkhead.waiting(), 1);
    tokio::time::advance(Duration::from_millis(50)).await;
    assert!(!ready.is_woken(), "no wake-up while nothing changed");
    drop(held);
    assert!(ready.is_woken(), "release wakes the waiter");
    assert_ready_ok!(ready.poll());
    drop(ready);
    assert_eq!(bulkhead.in_flight(), 1, "the waiter holds the slot");
    drop(waiter);
    assert_eq!(bulkhead.in_flight(), 0);

    // And a waiter nobody serves times out at max_wait, and leaves the queue.
    let mut holder2 = bulkhead.layer().layer(backend.clone());
    let _held = ready_svc(&mut holder2).await.unwrap().call(1);
    let start = tokio::time::Instant::now();
    let err = bulkhead
        .layer()
        .layer(backend)
        .oneshot(2)
        .await
        .unwrap_err();
    assert!(err.is::<WaitTimeout>(), "{err}");
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(bulkhead.waiting(), 0);
    drop(holder);
}

#[tokio::test(start_paused = true)]
async fn waiter_bound_rejects_the_excess() {
    let bulkhead = Bulkhead::builder()
        .max_concurrent_calls(1)
        .max_wait(Duration::from_secs(1))
        .max_waiting_calls(1)
        .build()
        .unwrap();
    let backend = hanging();
    let mut a = bulkhead.layer().layer(backend.clone());
    let _held = ready_svc(&mut a).await.unwrap().call(0);
    let mut b = bulkhead.layer().layer(backend.clone());
    let mut b_ready = task::spawn(futures::future::poll_fn(|cx| {
        Service::<u32>::poll_ready(&mut b, cx)
    }));
    assert_pending!(b_ready.poll());
    let err = bulkhead
        .layer()
        .layer(backend.clone())
        .oneshot(1)
        .await
        .unwrap_err();
    assert!(err.is::<BulkheadFull>());
    assert_eq!(backend.stats().calls, 1);
    drop(b_ready);
    drop(b); // cancels the queued wait
    assert_eq!(bulkhead.waiting(), 0);
}

#[tokio::test(start_paused = true)]
async fn set_limit_takes_effect_at_once_and_wakes_waiters() {
    let bulkhead = Bulkhead::builder()
        .max_concurrent_calls(2)
        .max_wait(Duration::MAX)
        .build()
        .unwrap();
    let backend = hanging();
    let mut svc = bulkhead.layer().layer(backend.clone());
    let a = ready_svc(&mut svc).await.unwrap().call(0);
    let b = ready_svc(&mut svc).await.unwrap().call(1);
    assert_eq!(bulkhead.set_limit(1), 2);
    drop(a);
    assert_eq!((bulkhead.in_flight(), bulkhead.available()), (1, 0));
    let mut waiter = bulkhead.layer().layer(backend.clone());
    let mut ready = task::spawn(futures::future::poll_fn(|cx| {
        Service::<u32>::poll_ready(&mut waiter, cx)
    }));
    assert_pending!(ready.poll());
    bulkhead.set_limit(3);
    assert!(ready.is_woken());
    assert_ready_ok!(ready.poll());
    drop(ready);
    assert_eq!(bulkhead.in_flight(), 2);
    drop((b, waiter));
    assert_eq!(bulkhead.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn events_report_permits_rejections_finishes_and_limit_changes() {
    let bulkhead = Bulkhead::builder().max_concurrent_calls(1).build().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    bulkhead.subscribe(move |e: &BulkheadEvent| sink.lock().unwrap().push(*e));
    let backend = MockBackend::new(Script::sequence([Step::ok(), Step::fail(), Step::hang()]));
    let mut svc = bulkhead.layer().layer(backend);
    ready_svc(&mut svc).await.unwrap();
    let mut other = svc.clone();
    // A reserved slot reports nothing until it is used; the rejection is reported by `call`.
    let rejected = ready_svc(&mut other).await.unwrap().call(0);
    svc.call(1).await.unwrap();
    assert!(rejected.await.unwrap_err().is::<BulkheadFull>());
    ready_svc(&mut svc)
        .await
        .unwrap()
        .call(2)
        .await
        .unwrap_err();
    drop(ready_svc(&mut svc).await.unwrap().call(3)); // cancelled
    ready_svc(&mut svc).await.unwrap(); // reserved, then given back unused
    drop(svc);
    bulkhead.set_limit(5);
    let permitted = BulkheadEvent::CallPermitted {
        in_flight: 1,
        waited: Duration::ZERO,
    };
    let finished = |outcome| BulkheadEvent::CallFinished {
        in_flight: 0,
        outcome,
        rtt: None,
    };
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            BulkheadEvent::CallRejected {
                reason: RejectReason::Full
            },
            permitted,
            finished(Outcome::Success),
            permitted,
            finished(Outcome::Failure),
            permitted,
            finished(Outcome::Ignore),
            BulkheadEvent::ReservationReleased { in_flight: 0 },
            BulkheadEvent::LimitChanged { from: 1, to: 5 },
        ]
    );
}

#[test]
fn builder_rejects_bad_configuration() {
    let e = Bulkhead::builder()
        .max_concurrent_calls(0)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "max_concurrent_calls");
    let e = Bulkhead::builder()
        .max_wait(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "max_wait");
    let b = Bulkhead::builder().name("db").build().unwrap();
    assert_eq!(b.name(), "db");
    assert!(format!("{b:?}").contains("limit: 25"));
}

/// §4 defaults: with `max_wait` set, at most 1024 callers queue (Envoy's
/// `max_pending_requests`); the next one is rejected at once instead of queueing unbounded.
#[tokio::test(start_paused = true)]
async fn the_default_queue_holds_1024_waiters() {
    let bulkhead = Bulkhead::builder()
        .max_concurrent_calls(1)
        .max_wait(Duration::MAX)
        .build()
        .unwrap();
    let backend = hanging();
    let mut holder = bulkhead.layer().layer(backend.clone());
    let _held = ready_svc(&mut holder).await.unwrap().call(0);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut waiters: Vec<_> = (0..1024)
        .map(|_| bulkhead.layer().layer(backend.clone()))
        .collect();
    for w in &mut waiters {
        assert!(Service::<u32>::poll_ready(w, &mut cx).is_pending());
    }
    assert_eq!(bulkhead.waiting(), 1024);
    let mut late = bulkhead.layer().layer(backend);
    let err = ready_svc(&mut late)
        .await
        .unwrap()
        .call(1)
        .await
        .unwrap_err();
    assert!(err.is::<BulkheadFull>());
    drop(waiters);
    assert_eq!(bulkhead.waiting(), 0);
}
