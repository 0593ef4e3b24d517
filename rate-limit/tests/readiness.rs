//! Readiness in a stack (issue 9 §1/§2/§7): an empty limiter's refusal never waits for the
//! layer below, and a waiting limiter waits at most `max_wait` per call in all, however its
//! waits for tokens and for the layer below interleave. The layer below is a hand-written
//! service that is `Pending` until a given instant of paused tokio time (a full bulkhead's
//! queue, a gated breaker).

#![cfg(not(loom))]

use palisade_core::clock::Clock;
use palisade_core::rejection::RejectionKind;
use palisade_rate_limit::{RateLimited, RateLimiter, RateLimiterEvent};
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service, ServiceExt};

/// Not ready until `ready_at` (then always ready); counts its `poll_ready`s and calls.
struct SlowToReady {
    ready_at: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    polls: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl SlowToReady {
    fn new(after: Duration) -> Self {
        SlowToReady {
            ready_at: Instant::now() + after,
            sleep: None,
            polls: Arc::new(AtomicUsize::new(0)),
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn counters(&self) -> (Arc<AtomicUsize>, Arc<AtomicUsize>) {
        (self.polls.clone(), self.calls.clone())
    }
}

impl Service<u32> for SlowToReady {
    type Response = u32;
    type Error = Infallible;
    type Future = Ready<Result<u32, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Relaxed: a counter read by the test on the same thread, after the fact.
        self.polls.fetch_add(1, Ordering::Relaxed);
        if Instant::now() >= self.ready_at {
            return Poll::Ready(Ok(()));
        }
        let ready_at = self.ready_at;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(ready_at)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, request: u32) -> Self::Future {
        assert!(
            Instant::now() >= self.ready_at,
            "called before it was ready"
        );
        // Relaxed: as in `poll_ready`.
        self.calls.fetch_add(1, Ordering::Relaxed);
        ready(Ok(request))
    }
}

fn reject_limiter(per_second: u32) -> RateLimiter {
    RateLimiter::builder()
        .rate(per_second, Duration::from_secs(1))
        .burst(1)
        .clock(Clock::tokio())
        .build()
        .unwrap()
}

fn wait_limiter(per_second: u32, max_wait: Duration) -> RateLimiter {
    RateLimiter::builder()
        .rate(per_second, Duration::from_secs(1))
        .burst(1)
        .wait(max_wait)
        .clock(Clock::tokio())
        .build()
        .unwrap()
}

/// Regression (issue 9 §1): an empty reject-mode limiter answered only once the service below
/// was ready (50 ms here). Its refusal needs nothing from it: at once, and the service below
/// is asked for readiness once (the limiter looks at the bucket only while it is not ready,
/// so a ready service below costs the admitted path nothing) and never called.
#[tokio::test(start_paused = true)]
async fn an_empty_limiter_refuses_at_once_without_waiting_for_the_service_below() {
    let limiter = reject_limiter(1);
    limiter.check().unwrap();
    let inner = SlowToReady::new(Duration::from_millis(50));
    let (polls, calls) = inner.counters();
    let start = Instant::now();
    let err = limiter.layer().layer(inner).oneshot(1).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO, "the refusal waited");
    let limited = err.downcast_ref::<RateLimited>().expect("RateLimited");
    assert_eq!(limited.retry_after(), Duration::from_secs(1));
    assert_eq!(
        polls.load(Ordering::Relaxed),
        1,
        "the service below was polled more than once"
    );
    assert_eq!(
        calls.load(Ordering::Relaxed),
        0,
        "the service below was called"
    );
}

/// With a token there, readiness is the service below's, and waiting for it takes no token;
/// `call` takes it.
#[tokio::test(start_paused = true)]
async fn a_limiter_with_a_token_waits_for_the_service_below_and_takes_nothing_meanwhile() {
    let limiter = reject_limiter(1);
    let inner = SlowToReady::new(Duration::from_millis(50));
    let (polls, calls) = inner.counters();
    let mut svc = limiter.layer().layer(inner);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(Service::<u32>::poll_ready(&mut svc, &mut cx).is_pending());
    assert_eq!(polls.load(Ordering::Relaxed), 1);
    assert_eq!(limiter.remaining_burst(), 1, "waiting took a token");
    let start = Instant::now();
    assert_eq!(svc.ready().await.unwrap().call(5).await.unwrap(), 5);
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert_eq!(limiter.remaining_burst(), 0, "the call took the token");
}

/// The bucket empties while the service below is not ready (another client takes the
/// token): the next `poll_ready` refuses at once instead of waiting out the service below.
#[tokio::test(start_paused = true)]
async fn a_bucket_emptied_while_waiting_for_the_service_below_refuses_at_the_next_poll() {
    let limiter = reject_limiter(1);
    let inner = SlowToReady::new(Duration::from_millis(50));
    let (_, calls) = inner.counters();
    let mut svc = limiter.layer().layer(inner);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(Service::<u32>::poll_ready(&mut svc, &mut cx).is_pending());
    limiter.check().unwrap();
    assert!(matches!(
        Service::<u32>::poll_ready(&mut svc, &mut cx),
        Poll::Ready(Ok(()))
    ));
    let err = svc.call(1).await.unwrap_err();
    assert!(err.is::<RateLimited>());
    assert_eq!(calls.load(Ordering::Relaxed), 0);
}

/// Ready on a token that another clone takes before `call`: the call is refused (the
/// service below, ready, is not called), and no token is lost or double-spent.
#[tokio::test(start_paused = true)]
async fn a_token_taken_by_another_clone_between_ready_and_call_is_refused() {
    let limiter = reject_limiter(1);
    let inner = SlowToReady::new(Duration::ZERO);
    let (_, calls) = inner.counters();
    let mut svc = limiter.layer().layer(inner);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(Service::<u32>::poll_ready(&mut svc, &mut cx).is_ready());
    assert_eq!(limiter.remaining_burst(), 1, "ready takes nothing");
    limiter.check().unwrap();
    let err = svc.call(1).await.unwrap_err();
    assert!(err.is::<RateLimited>());
    assert_eq!(calls.load(Ordering::Relaxed), 0);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), 2);
    assert_eq!(calls.load(Ordering::Relaxed), 1);
}

/// A refusal decided at `poll_ready` is reported like any other (one `Rejected` event, with
/// the time left until the token is due at `call`), and a new `poll_ready` decides afresh:
/// a service kept ready across a refill is not stuck with the stale refusal.
#[tokio::test(start_paused = true)]
async fn a_refusal_decided_at_poll_ready_is_reported_and_redecided_by_the_next_poll() {
    let limiter = reject_limiter(1);
    limiter.check().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    limiter.subscribe(move |e: &RateLimiterEvent| sink.lock().unwrap().push(*e));
    let mut svc = limiter.layer().layer(SlowToReady::new(Duration::ZERO));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(Service::<u32>::poll_ready(&mut svc, &mut cx).is_ready());
    assert!(
        seen.lock().unwrap().is_empty(),
        "the check at poll_ready reports nothing"
    );
    tokio::time::advance(Duration::from_millis(400)).await;
    let err = svc.call(1).await.unwrap_err();
    let limited = err.downcast_ref::<RateLimited>().expect("RateLimited");
    assert_eq!(limited.retry_after(), Duration::from_millis(600));
    assert_eq!(
        *seen.lock().unwrap(),
        vec![RateLimiterEvent::Rejected {
            cost: 1,
            reason: RejectionKind::RateLimited,
            retry_after: Some(Duration::from_millis(600)),
        }]
    );
    assert!(Service::<u32>::poll_ready(&mut svc, &mut cx).is_ready());
    tokio::time::advance(Duration::from_millis(600)).await;
    assert!(Service::<u32>::poll_ready(&mut svc, &mut cx).is_ready());
    assert_eq!(
        svc.call(3).await.unwrap(),
        3,
        "decided afresh after the refill"
    );
}

/// Regression (issue 9 §7): the caller waits 20 ms for a token in `poll_ready`, then for the
/// service below (until 22 ms) while another client takes the token due at 40 ms... and then
/// waited for the limiter again (41 ms in all for a 20 ms `max_wait`). The waits of one
/// readiness-to-call cycle share one `max_wait`: refused at 22 ms, once the service below is
/// ready, without a second wait.
#[tokio::test(start_paused = true)]
async fn a_waiting_limiter_waits_at_most_max_wait_per_call_in_all() {
    let limiter = wait_limiter(50, Duration::from_millis(20));
    limiter.check().unwrap();
    let inner = SlowToReady::new(Duration::from_millis(22));
    let (_, calls) = inner.counters();
    let start = Instant::now();
    let caller = tokio::spawn(limiter.layer().layer(inner).oneshot(1));
    tokio::time::sleep(Duration::from_millis(21)).await;
    limiter
        .check()
        .expect("the token due at 20 ms was given back");
    let answer = caller.await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(22),
        "waited past max_wait"
    );
    let err = answer.unwrap_err();
    assert!(err.is::<RateLimited>(), "got {err}");
    assert_eq!(calls.load(Ordering::Relaxed), 0);
}

/// The budget is per call: after a call, the next cycle gets a whole `max_wait` again, and a
/// token taken within the budget after a wait for the service below is served.
#[tokio::test(start_paused = true)]
async fn each_call_gets_a_whole_max_wait() {
    let limiter = wait_limiter(100, Duration::from_millis(20));
    let inner = SlowToReady::new(Duration::from_millis(15));
    let (_, calls) = inner.counters();
    let mut svc = limiter.layer().layer(inner);
    let start = Instant::now();
    // A token now, the service below at 15 ms: the token went back meanwhile and is taken
    // again at 15 ms, within the budget.
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 1);
    assert_eq!(start.elapsed(), Duration::from_millis(15));
    // The next token is due at 25 ms: 10 ms of a fresh 20 ms budget (the first cycle's
    // deadline, 20 ms, would have refused it).
    assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), 2);
    assert_eq!(start.elapsed(), Duration::from_millis(25));
    assert_eq!(calls.load(Ordering::Relaxed), 2);
}

/// Regression (issue 9 §1, wait mode): no token within `max_wait` while the service below is
/// not ready (a gated breaker, a full bulkhead): the refusal needs nothing from it, so it comes
/// at once, not after the service below's wait (100 ms here).
#[tokio::test(start_paused = true)]
async fn a_waiting_limiter_refuses_at_once_when_no_token_is_due_and_the_service_below_waits() {
    let limiter = wait_limiter(1, Duration::from_millis(20));
    limiter.check().unwrap();
    let inner = SlowToReady::new(Duration::from_millis(100));
    let (_, calls) = inner.counters();
    let start = Instant::now();
    let err = limiter.layer().layer(inner).oneshot(1).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO, "the refusal waited");
    let limited = err.downcast_ref::<RateLimited>().expect("RateLimited");
    assert_eq!(limited.retry_after(), Duration::from_secs(1));
    assert_eq!(calls.load(Ordering::Relaxed), 0);
    // Once the service below is ready, a refusal is still decided afresh at `call`.
    let mut svc = limiter.layer().layer(SlowToReady::new(Duration::ZERO));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(Service::<u32>::poll_ready(&mut svc, &mut cx).is_ready());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        svc.call(4).await.unwrap(),
        4,
        "the bucket refilled since poll_ready"
    );
}
