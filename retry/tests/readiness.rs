//! Readiness (issue 9 §1): with a deadline or an attempt timeout, the retry's `poll_ready` is
//! ready at once and its response future waits for the inner service, within those limits;
//! without either, readiness is the inner service's, delegated.

#![cfg(not(loom))]

use palisade_core::clock::Clock;
use palisade_retry::{
    AttemptTimedOut, Backoff, CallOutcome, DeadlineExceeded, GiveUpReason, RetryEvent, RetryPolicy,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tower::{BoxError, Layer, Service, ServiceExt};

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const HOUR: Duration = Duration::from_secs(3600);

fn base() -> palisade_retry::RetryPolicyBuilder {
    RetryPolicy::builder().clock(Clock::tokio()).unlimited()
}

fn record(policy: &RetryPolicy) -> Arc<Mutex<Vec<RetryEvent>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    policy.subscribe(move |e: &RetryEvent| sink.lock().unwrap().push(*e));
    log
}

/// Not ready until `at` (an hour away in most tests), then ready; every clone shares the
/// counters. `call` answers how long after the start it was called.
struct ReadyAt {
    start: Instant,
    at: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    polls: Arc<AtomicU32>,
    calls: Arc<AtomicU32>,
}

impl Clone for ReadyAt {
    fn clone(&self) -> Self {
        ReadyAt {
            sleep: None,
            polls: self.polls.clone(),
            calls: self.calls.clone(),
            ..*self
        }
    }
}

impl ReadyAt {
    fn after(wait: Duration) -> Self {
        let start = Instant::now();
        ReadyAt {
            start,
            at: start + wait,
            sleep: None,
            polls: Arc::new(AtomicU32::new(0)),
            calls: Arc::new(AtomicU32::new(0)),
        }
    }
}

impl Service<()> for ReadyAt {
    type Response = Duration;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Duration, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Relaxed: a test counter, read after the call.
        self.polls.fetch_add(1, Ordering::Relaxed);
        let at = self.at;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        sleep.as_mut().poll(cx).map(Ok)
    }

    fn call(&mut self, (): ()) -> Self::Future {
        // Relaxed: a test counter, read after the call.
        self.calls.fetch_add(1, Ordering::Relaxed);
        std::future::ready(Ok(self.start.elapsed()))
    }
}

/// Regression (issue 9 §1): with a 1 s deadline over a service that is not ready for an hour,
/// the caller's first readiness wait (then delegated by `poll_ready`, outside the deadline)
/// lasted the hour. Now the deadline bounds it: `DeadlineExceeded` after 1 s, no attempt sent.
#[tokio::test(start_paused = true)]
async fn the_deadline_bounds_the_first_readiness_wait() {
    let policy = base()
        .max_attempts(3)
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap();
    let log = record(&policy);
    let inner = ReadyAt::after(HOUR);
    let calls = inner.calls.clone();
    let start = Instant::now();
    let err = tokio::time::timeout(2 * HOUR, policy.layer().layer(inner).oneshot(()))
        .await
        .expect("the call answers before the hour is up")
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(
        palisade_core::rejection(&*err).map(|r| r.kind()),
        Some(palisade_core::RejectionKind::DeadlineExceeded)
    );
    assert_eq!(calls.load(Ordering::Relaxed), 0, "no attempt was sent");
    assert_eq!(
        *log.lock().unwrap(),
        [
            RetryEvent::GaveUp {
                attempts: 0,
                reason: GiveUpReason::Deadline
            },
            RetryEvent::CallFinished {
                outcome: CallOutcome::Rejected,
                attempts: 0
            },
        ]
    );
}

/// The attempt timeout bounds the first attempt's readiness wait as it bounds a retry's: each
/// wait that outlasts it is a timed-out attempt, retried while attempts remain.
#[tokio::test(start_paused = true)]
async fn the_attempt_timeout_bounds_the_first_readiness_wait() {
    let policy = base()
        .max_attempts(3)
        .backoff(Backoff::constant(ms(10)))
        .attempt_timeout(ms(100))
        .build()
        .unwrap();
    let log = record(&policy);
    let inner = ReadyAt::after(HOUR);
    let calls = inner.calls.clone();
    let start = Instant::now();
    let err = tokio::time::timeout(2 * HOUR, policy.layer().layer(inner).oneshot(()))
        .await
        .expect("the attempt timeout ends each wait")
        .unwrap_err();
    assert!(err.is::<AttemptTimedOut>(), "{err}");
    // Three waits of 100 ms, two backoffs of 10 ms.
    assert_eq!(start.elapsed(), ms(320));
    assert_eq!(calls.load(Ordering::Relaxed), 0);
    let log = log.lock().unwrap();
    let scheduled: Vec<_> = log
        .iter()
        .filter_map(|e| match e {
            RetryEvent::RetryScheduled { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect();
    assert_eq!(scheduled, [ms(10), ms(10)]);
    assert!(log.contains(&RetryEvent::GaveUp {
        attempts: 3,
        reason: GiveUpReason::AttemptsExhausted
    }));
}

/// A service that becomes ready within the deadline is called then, once, and its answer is
/// the call's: the wait moved into the future, it did not change what the caller gets.
#[tokio::test(start_paused = true)]
async fn a_service_ready_within_the_deadline_is_called_then() {
    let policy = base()
        .max_attempts(3)
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap();
    let log = record(&policy);
    let inner = ReadyAt::after(ms(400));
    let calls = inner.calls.clone();
    let sent_at = policy.layer().layer(inner).oneshot(()).await.unwrap();
    assert_eq!(sent_at, ms(400));
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert_eq!(
        log.lock().unwrap().last(),
        Some(&RetryEvent::CallFinished {
            outcome: CallOutcome::Success,
            attempts: 1
        })
    );
}

/// With a limit, `poll_ready` asks nothing of the inner service, so a ready retry dropped
/// without `call` has reserved nothing below (tower's contract); the inner service is polled
/// for readiness only by the response future.
#[tokio::test(start_paused = true)]
async fn with_a_limit_poll_ready_is_ready_at_once_and_reserves_nothing() {
    for policy in [
        base().deadline(Duration::from_secs(1)).build().unwrap(),
        base().attempt_timeout(ms(100)).build().unwrap(),
    ] {
        let inner = ReadyAt::after(HOUR);
        let polls = inner.polls.clone();
        let mut svc = policy.layer().layer(inner);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
        drop(svc);
        assert_eq!(
            polls.load(Ordering::Relaxed),
            0,
            "the inner service was asked"
        );
    }
}

/// Without a deadline or an attempt timeout, readiness stays the inner service's: `Pending`
/// while it is (backpressure reaches the layers above), and the first attempt is sent by
/// `call` itself.
#[tokio::test(start_paused = true)]
async fn without_a_limit_readiness_is_delegated() {
    let policy = base().max_attempts(3).build().unwrap();
    let inner = ReadyAt::after(ms(400));
    let polls = inner.polls.clone();
    let mut svc = policy.layer().layer(inner);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_pending());
    assert_eq!(polls.load(Ordering::Relaxed), 1);
    let start = Instant::now();
    let sent_at = svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(start.elapsed(), ms(400));
    assert_eq!(sent_at, ms(400));
}

/// Fails readiness with an error, ready never.
#[derive(Clone)]
struct Broken;

impl Service<()> for Broken {
    type Response = ();
    type Error = BoxError;
    type Future = std::future::Ready<Result<(), BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Err("broken".into()))
    }

    fn call(&mut self, (): ()) -> Self::Future {
        unreachable!("never ready, never called")
    }
}

/// With a limit, an error from the inner service's readiness is the call's error (from the
/// response future, since `poll_ready` did not ask), not retried.
#[tokio::test(start_paused = true)]
async fn with_a_limit_a_readiness_error_is_the_calls_error() {
    let policy = base()
        .max_attempts(3)
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap();
    let log = record(&policy);
    let mut svc = policy.layer().layer(Broken);
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert_eq!(err.to_string(), "broken");
    assert_eq!(
        *log.lock().unwrap(),
        [RetryEvent::CallFinished {
            outcome: CallOutcome::Failure,
            attempts: 0
        }]
    );
}
