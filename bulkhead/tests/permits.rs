//! Issue 9 §2/§3, "nothing is consumed before it is used": every way a reserved slot or a
//! place in the queue can be abandoned gives it back.

#![cfg(not(loom))]

use palisade_bulkhead::adaptive::{AdaptiveConfig, Aimd, LimitAlgorithm, Sample};
use palisade_bulkhead::{Bulkhead, BulkheadEvent};
use palisade_core::clock::Clock;
use palisade_core::test_util::{MockBackend, Script, Step};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::{BoxError, Layer, Service, ServiceExt};

/// An inner service whose `poll_ready` fails: it is broken for good.
#[derive(Clone, Debug)]
struct Broken;

impl Service<u32> for Broken {
    type Response = u32;
    type Error = BoxError;
    type Future = std::future::Ready<Result<u32, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Err("connection refused".into()))
    }

    fn call(&mut self, _request: u32) -> Self::Future {
        unreachable!("never ready")
    }
}

fn poll_ready<S: Service<u32>>(svc: &mut S) -> Poll<Result<(), S::Error>> {
    svc.poll_ready(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn a_ready_service_dropped_without_call_gives_its_slot_back() {
    let bulkhead = Bulkhead::builder().max_concurrent_calls(1).build().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    bulkhead.subscribe(move |e: &BulkheadEvent| sink.lock().unwrap().push(*e));
    let mut svc = bulkhead.layer().layer(MockBackend::healthy());
    assert!(matches!(poll_ready(&mut svc), Poll::Ready(Ok(()))));
    assert_eq!(bulkhead.in_flight(), 1);
    drop(svc);
    assert_eq!(bulkhead.in_flight(), 0);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![BulkheadEvent::ReservationReleased { in_flight: 0 }],
        "an unused reservation is no call: no permit, no outcome"
    );
}

/// Regression (issue 9 §3): the bulkhead kept its slot in a service whose inner `poll_ready`
/// returned `Err`; such a service is discarded by tower, usually much later (or kept by a
/// user who retries `poll_ready`), so each one held a slot meanwhile.
#[test]
fn an_inner_poll_ready_error_gives_the_slot_back_at_once() {
    let bulkhead = Bulkhead::builder().max_concurrent_calls(2).build().unwrap();
    let mut a = bulkhead.layer().layer(Broken);
    let mut b = bulkhead.layer().layer(Broken);
    for _ in 0..3 {
        assert!(matches!(poll_ready(&mut a), Poll::Ready(Err(_))));
        assert!(matches!(poll_ready(&mut b), Poll::Ready(Err(_))));
        assert_eq!(bulkhead.in_flight(), 0, "no slot kept by a broken service");
    }
    let mut healthy = bulkhead.layer().layer(MockBackend::healthy());
    assert!(matches!(poll_ready(&mut healthy), Poll::Ready(Ok(()))));
    drop((a, b));
}

/// A waiter that gives up (its service dropped) leaves the FIFO queue: the next slot goes to
/// the waiter behind it, and nobody waits for a ghost.
#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_releases_its_place_in_the_queue() {
    let bulkhead = Bulkhead::builder()
        .max_concurrent_calls(1)
        .max_wait(Duration::MAX)
        .build()
        .unwrap();
    let backend = MockBackend::new(Script::always(Step::hang()));
    let mut holder = bulkhead.layer().layer(backend.clone());
    ServiceExt::<u32>::ready(&mut holder).await.unwrap();
    let held = holder.call(0);
    let mut waiters: Vec<_> = (0..3)
        .map(|_| bulkhead.layer().layer(backend.clone()))
        .collect();
    let mut c = waiters.pop().unwrap();
    let b = waiters.pop().unwrap();
    let mut a = waiters.pop().unwrap();
    let mut a_ready = task::spawn(futures::future::poll_fn(|cx| {
        Service::<u32>::poll_ready(&mut a, cx)
    }));
    assert_pending!(a_ready.poll());
    let mut b = b;
    assert!(poll_ready(&mut b).is_pending());
    let mut c_ready = task::spawn(futures::future::poll_fn(|cx| {
        Service::<u32>::poll_ready(&mut c, cx)
    }));
    assert_pending!(c_ready.poll());
    assert_eq!(bulkhead.waiting(), 3);
    drop(b); // gives up its place
    assert_eq!(bulkhead.waiting(), 2);
    drop(held);
    assert!(a_ready.is_woken());
    assert_ready_ok!(a_ready.poll());
    drop(a_ready);
    // `a` is granted a slot but gives up before calling: the slot passes on to `c`.
    drop(a);
    assert!(c_ready.is_woken(), "the slot skips the dropped waiter");
    assert_ready_ok!(c_ready.poll());
    drop(c_ready);
    assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (1, 0));
    drop(c);
    assert_eq!(bulkhead.in_flight(), 0);
}

/// Regression (issue 9 §3): a `CallPermitted` listener that panicked leaked the slot for
/// good (the event was emitted before the slot's guard existed). The core bus now catches
/// listener panics too; the bulkhead emits only once the guard exists either way.
#[test]
fn a_panicking_call_permitted_listener_leaks_no_slot() {
    let bulkhead = Bulkhead::builder().max_concurrent_calls(2).build().unwrap();
    let id = bulkhead.subscribe(|e: &BulkheadEvent| {
        if matches!(e, BulkheadEvent::CallPermitted { .. }) {
            panic!("listener bug");
        }
    });
    let mut svc = bulkhead.layer().layer(MockBackend::healthy());
    for i in 0..5 {
        assert!(matches!(poll_ready(&mut svc), Poll::Ready(Ok(()))));
        // Whether or not the bus lets the panic through, no slot may stay taken.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(svc.call(i))));
        assert_eq!(bulkhead.in_flight(), 0, "slot leaked after panic {i}");
    }
    assert!(bulkhead.unsubscribe(id));
    // The full limit is still there.
    let mut a = bulkhead.layer().layer(MockBackend::healthy());
    let mut b = bulkhead.layer().layer(MockBackend::healthy());
    assert!(matches!(poll_ready(&mut a), Poll::Ready(Ok(()))));
    assert!(matches!(poll_ready(&mut b), Poll::Ready(Ok(()))));
    assert_eq!(bulkhead.available(), 0);
}

/// A listener that panics on `CallFinished` (emitted after the slot is given back) or on
/// `CallRejected` costs no slot either.
#[tokio::test(start_paused = true)]
async fn panicking_finish_and_reject_listeners_leak_no_slot() {
    let bulkhead = Bulkhead::builder().max_concurrent_calls(1).build().unwrap();
    bulkhead.subscribe(|e: &BulkheadEvent| {
        if matches!(
            e,
            BulkheadEvent::CallFinished { .. } | BulkheadEvent::CallRejected { .. }
        ) {
            panic!("listener bug");
        }
    });
    let mut svc = bulkhead.layer().layer(MockBackend::healthy());
    ServiceExt::<u32>::ready(&mut svc).await.unwrap();
    let fut = svc.call(1);
    let _ = futures::FutureExt::catch_unwind(AssertUnwindSafe(fut)).await;
    assert_eq!(bulkhead.in_flight(), 0);
    let mut holder = bulkhead.layer().layer(MockBackend::healthy());
    ServiceExt::<u32>::ready(&mut holder).await.unwrap();
    ServiceExt::<u32>::ready(&mut svc).await.unwrap(); // full: rejecting
    let _ = catch_unwind(AssertUnwindSafe(|| drop(svc.call(2))));
    drop(holder);
    assert_eq!(bulkhead.in_flight(), 0);
}

/// An algorithm that panics once, on its first update, then behaves like `Aimd`.
#[derive(Debug)]
struct PanicsOnce {
    armed: bool,
    inner: Aimd,
}

impl LimitAlgorithm for PanicsOnce {
    fn initial_limit(&self) -> usize {
        self.inner.initial_limit()
    }

    fn update(&mut self, sample: &Sample) -> usize {
        if std::mem::take(&mut self.armed) {
            panic!("algorithm bug");
        }
        self.inner.update(sample)
    }
}

/// An algorithm (user code) that panics while a window closes must not leave the window
/// closing for good: the limit would never move again.
#[tokio::test(start_paused = true)]
async fn a_panicking_algorithm_does_not_freeze_the_adaptive_limit() {
    let aimd = Aimd::builder()
        .initial_limit(10)
        .min_limit(1)
        .build()
        .unwrap();
    let bulkhead = Bulkhead::builder()
        .adaptive(PanicsOnce {
            armed: true,
            inner: aimd,
        })
        .adaptive_config(AdaptiveConfig::new().min_samples(2))
        .clock(Clock::tokio())
        .build()
        .unwrap();
    let backend = MockBackend::new(Script::always(Step::fail().after(Duration::from_millis(5))));
    let svc = bulkhead.layer().layer(backend);
    let mut panics = 0;
    for i in 0..40u32 {
        let call = futures::FutureExt::catch_unwind(AssertUnwindSafe(svc.clone().oneshot(i)));
        if call.await.is_err() {
            panics += 1;
        }
    }
    assert_eq!(panics, 1);
    assert!(
        bulkhead.limit() < 9,
        "drops keep shrinking the limit after the panic: {}",
        bulkhead.limit()
    );
    assert_eq!(bulkhead.in_flight(), 0);
}
