//! Virtual-time tests of the retry layer against the core mock backend.

#![cfg(not(loom))]

use palisade_core::Outcome;
use palisade_core::clock::Clock;
use palisade_core::error::RetryAfter;
use palisade_core::test_util::{MockBackend, MockError, Reply, Script, Step};
use palisade_retry::{
    AttemptTimedOut, Backoff, CallOutcome, DeadlineExceeded, GiveUpReason, RetryBudget, RetryEvent,
    RetryPolicy, RetryThrottle,
};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, ServiceExt, service_fn};

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn record<C, Q, H>(policy: &RetryPolicy<C, Q, H>) -> Arc<Mutex<Vec<RetryEvent>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    policy.subscribe(move |e: &RetryEvent| sink.lock().unwrap().push(*e));
    log
}

fn scheduled(log: &Mutex<Vec<RetryEvent>>) -> Vec<Duration> {
    log.lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            RetryEvent::RetryScheduled { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect()
}

fn gave_up(log: &Mutex<Vec<RetryEvent>>) -> Option<(u32, GiveUpReason)> {
    log.lock().unwrap().iter().find_map(|e| match e {
        RetryEvent::GaveUp { attempts, reason } => Some((*attempts, *reason)),
        _ => None,
    })
}

/// A budget on tokio's clock with no reserve: only `percent_can_retry` of the requests may
/// be retried.
fn budget_without_reserve(percent_can_retry: f64) -> RetryBudget {
    RetryBudget::builder()
        .min_retries_per_sec(0)
        .percent_can_retry(percent_can_retry)
        .clock(Clock::tokio())
        .build()
        .unwrap()
}

fn base() -> palisade_retry::RetryPolicyBuilder {
    RetryPolicy::builder().clock(Clock::tokio()).unlimited()
}

#[tokio::test(start_paused = true)]
async fn retries_until_success_with_constant_backoff() {
    let policy = base()
        .max_attempts(3)
        .backoff(Backoff::constant(ms(100)))
        .build()
        .unwrap();
    let log = record(&policy);
    let backend = MockBackend::new(Script::sequence([Step::fail(), Step::fail(), Step::ok()]));
    let svc = policy.layer().layer(backend.clone());
    let start = Instant::now();
    let reply = svc.oneshot(7u32).await.unwrap();
    assert_eq!(reply.request, 7);
    assert_eq!(reply.call, 2);
    assert_eq!(start.elapsed(), ms(200));
    assert_eq!(backend.stats().calls, 3);
    assert_eq!(
        log.lock().unwrap()[..2],
        [
            RetryEvent::RetryScheduled {
                attempt: 2,
                delay: ms(100)
            },
            RetryEvent::RetryScheduled {
                attempt: 3,
                delay: ms(100)
            },
        ]
    );
    assert_eq!(gave_up(&log), None);
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_max_attempts_with_the_last_error() {
    let policy = base()
        .max_attempts(4)
        .backoff(Backoff::exponential(ms(10), ms(25)))
        .build()
        .unwrap();
    let log = record(&policy);
    let backend = MockBackend::new(Script::always(Step::fail()));
    let start = Instant::now();
    let err = policy
        .layer()
        .layer(backend.clone())
        .oneshot(1u8)
        .await
        .unwrap_err();
    let mock = err.downcast_ref::<MockError>().expect("the inner error");
    assert_eq!(mock.call, 3, "the last attempt's error");
    assert_eq!(backend.stats().calls, 4);
    // Exponential, capped: 10, 20, then 25 instead of 40.
    assert_eq!(scheduled(&log), [ms(10), ms(20), ms(25)]);
    assert_eq!(start.elapsed(), ms(55));
    assert_eq!(gave_up(&log), Some((4, GiveUpReason::AttemptsExhausted)));
}

#[tokio::test(start_paused = true)]
async fn jittered_delays_are_exactly_the_seeded_sequence() {
    for backoff in [
        Backoff::full_jitter(ms(50), ms(400)),
        Backoff::decorrelated_jitter(ms(50), ms(400)),
    ] {
        let policy = base()
            .max_attempts(6)
            .backoff(backoff)
            .seed(99)
            .build()
            .unwrap();
        let log = record(&policy);
        let backend = MockBackend::new(Script::always(Step::fail()));
        let start = Instant::now();
        let _ = policy.layer().layer(backend).oneshot(()).await;
        let expected: Vec<_> = backoff.delays(99).take(5).collect();
        assert_eq!(scheduled(&log), expected);
        // tokio's timer rounds each sleep up to its 1 ms tick.
        let total = expected.iter().sum::<Duration>();
        assert!(start.elapsed() >= total && start.elapsed() <= total + ms(5));
        assert!(expected.iter().all(|d| *d <= ms(400)));
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_attempt_times_out_and_is_retried() {
    let policy = base()
        .max_attempts(3)
        .backoff(Backoff::constant(ms(5)))
        .attempt_timeout(ms(50))
        .build()
        .unwrap();
    let backend = MockBackend::new(Script::sequence([Step::hang(), Step::ok().after(ms(20))]));
    let start = Instant::now();
    let reply = policy
        .layer()
        .layer(backend.clone())
        .oneshot(())
        .await
        .unwrap();
    assert_eq!(reply.call, 1);
    assert_eq!(start.elapsed(), ms(50 + 5 + 20));
    let stats = backend.stats();
    assert_eq!(stats.cancelled, 1, "the timed-out attempt was dropped");
    assert_eq!(stats.in_flight, 0);

    // Every attempt hangs: the last timeout is the error.
    let backend = MockBackend::new(Script::always(Step::hang()));
    let err = policy
        .layer()
        .layer(backend.clone())
        .oneshot(())
        .await
        .unwrap_err();
    assert!(err.is::<AttemptTimedOut>());
    assert_eq!(backend.stats().calls, 3);
    assert_eq!(backend.stats().cancelled, 3);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_bounds_attempts_and_backoffs() {
    // Mid-attempt: the deadline cuts a slow attempt.
    let policy = base()
        .deadline(ms(1000))
        .attempt_timeout(ms(5000))
        .build()
        .unwrap();
    let log = record(&policy);
    let backend = MockBackend::new(Script::always(Step::ok().after(ms(10_000))));
    let start = Instant::now();
    let err = policy
        .layer()
        .layer(backend.clone())
        .oneshot(())
        .await
        .unwrap_err();
    assert!(err.is::<DeadlineExceeded>());
    assert_eq!(start.elapsed(), ms(1000));
    assert_eq!(backend.stats().calls, 1);
    assert_eq!(gave_up(&log), Some((1, GiveUpReason::Deadline)));

    // Between attempts: no retry that could not start before the deadline.
    let policy = base()
        .max_attempts(5)
        .backoff(Backoff::constant(ms(600)))
        .deadline(ms(1000))
        .build()
        .unwrap();
    let log = record(&policy);
    let backend = MockBackend::new(Script::always(Step::fail()));
    let start = Instant::now();
    let err = policy
        .layer()
        .layer(backend.clone())
        .oneshot(())
        .await
        .unwrap_err();
    assert!(err.is::<MockError>());
    assert_eq!(backend.stats().calls, 2);
    assert_eq!(start.elapsed(), ms(600));
    assert_eq!(gave_up(&log), Some((2, GiveUpReason::Deadline)));
}

/// An error carrying a `retry_after` hint, as a downstream rate limiter or breaker returns.
#[derive(Debug)]
struct Overloaded(RetryAfter);

impl std::fmt::Display for Overloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("overloaded")
    }
}

impl std::error::Error for Overloaded {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

fn overloaded_once(hint: Duration) -> impl Service<(), Response = u32, Error = BoxError> + Clone {
    let calls = Arc::new(AtomicU32::new(0));
    service_fn(move |()| {
        let calls = calls.clone();
        async move {
            // Relaxed: a test counter.
            let n = calls.fetch_add(1, Ordering::Relaxed);
            if n == 0 {
                Err::<u32, BoxError>(Box::new(Overloaded(RetryAfter::new(hint))))
            } else {
                Ok(n)
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn retry_after_hints_are_honoured() {
    let policy = base()
        .backoff(Backoff::constant(ms(10)))
        .deadline(ms(1000))
        .max_retry_after(ms(10_000))
        .build()
        .unwrap();
    let log = record(&policy);
    let start = Instant::now();
    let n = policy
        .layer()
        .layer(overloaded_once(ms(300)))
        .oneshot(())
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        start.elapsed(),
        ms(300),
        "waited the hint, not the 10 ms backoff"
    );
    assert_eq!(scheduled(&log), [ms(300)]);

    // A hint past the deadline: give up at once with the rejection.
    let log = record(&policy);
    let start = Instant::now();
    let err = policy
        .layer()
        .layer(overloaded_once(ms(5000)))
        .oneshot(())
        .await
        .unwrap_err();
    assert!(err.is::<Overloaded>());
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(gave_up(&log), Some((1, GiveUpReason::Deadline)));
}

/// A request that counts its clones.
#[derive(Debug)]
struct Counted(Arc<AtomicU32>);

impl Clone for Counted {
    fn clone(&self) -> Self {
        // Relaxed: a test counter.
        self.0.fetch_add(1, Ordering::Relaxed);
        Counted(self.0.clone())
    }
}

#[tokio::test(start_paused = true)]
async fn requests_are_copied_only_when_another_attempt_may_follow() {
    let cases = [
        (1, Script::always(Step::ok()), 0),
        (3, Script::always(Step::ok()), 1),
        (3, Script::sequence([Step::fail(), Step::ok()]), 2),
        // Three attempts, but no copy before the last one.
        (3, Script::always(Step::fail()), 2),
    ];
    for (attempts, script, clones) in cases {
        let policy = base()
            .max_attempts(attempts)
            .backoff(Backoff::none())
            .build()
            .unwrap();
        let counter = Arc::new(AtomicU32::new(0));
        let _ = policy
            .layer()
            .layer(MockBackend::new(script))
            .oneshot(Counted(counter.clone()))
            .await;
        assert_eq!(
            counter.load(Ordering::Relaxed),
            clones,
            "{attempts} attempts"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn only_requests_the_predicate_accepts_are_retried() {
    let policy = base()
        .backoff(Backoff::none())
        .retry_requests_if(|r: &u32| r.is_multiple_of(2))
        .build()
        .unwrap();
    let log = record(&policy);
    let backend = MockBackend::new(Script::always(Step::fail()));
    let mut svc = policy.layer().layer(backend.clone());
    let _ = ServiceExt::<u32>::ready(&mut svc)
        .await
        .unwrap()
        .call(1)
        .await;
    assert_eq!(backend.stats().calls, 1);
    assert_eq!(gave_up(&log), Some((1, GiveUpReason::NotRetryable)));
    let _ = ServiceExt::<u32>::ready(&mut svc)
        .await
        .unwrap()
        .call(2)
        .await;
    assert_eq!(backend.stats().calls, 4);
}

#[tokio::test(start_paused = true)]
async fn requests_that_are_not_clone_use_the_copy_function() {
    #[derive(Debug, PartialEq)]
    struct Body(Vec<u8>);
    let policy = base()
        .backoff(Backoff::none())
        .clone_requests_with(|b: &Body| Some(Body(b.0.clone())))
        .build()
        .unwrap();
    let backend = MockBackend::new(Script::sequence([Step::fail(), Step::ok()]));
    let reply = policy
        .layer()
        .layer(backend)
        .oneshot(Body(vec![1, 2]))
        .await
        .unwrap();
    assert_eq!(reply.request, Body(vec![1, 2]));
}

#[tokio::test(start_paused = true)]
async fn the_classifier_decides_what_is_retried() {
    // Responses from the first call count as failures (think HTTP 503); errors do not.
    let policy = base()
        .backoff(Backoff::none())
        .classify(|r: Result<&Reply<()>, &MockError>| match r {
            Ok(reply) if reply.call == 0 => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Ignore,
        })
        .build()
        .unwrap();
    let backend = MockBackend::new(Script::always(Step::ok()));
    let reply = policy
        .layer()
        .layer(backend.clone())
        .oneshot(())
        .await
        .unwrap();
    assert_eq!(reply.call, 1);
    let backend = MockBackend::new(Script::always(Step::fail()));
    let _ = policy.layer().layer(backend.clone()).oneshot(()).await;
    assert_eq!(backend.stats().calls, 1, "ignored errors are not retried");
}

#[tokio::test(start_paused = true)]
async fn an_empty_budget_ends_retrying_with_the_last_error() {
    let budget = budget_without_reserve(0.5);
    let policy = RetryPolicy::builder()
        .clock(Clock::tokio())
        .budget(budget.clone())
        .backoff(Backoff::none())
        .max_attempts(3)
        .build()
        .unwrap();
    let log = record(&policy);
    let backend = MockBackend::new(Script::always(Step::fail()));
    let svc = policy.layer().layer(backend.clone());
    // First request: 1 deposit at 50 % = 0.5 retries: none granted.
    let err = svc.clone().oneshot(()).await.unwrap_err();
    assert!(err.is::<MockError>());
    assert_eq!(backend.stats().calls, 1);
    assert_eq!(
        log.lock().unwrap()[..],
        [
            RetryEvent::BudgetExhausted { attempt: 2 },
            RetryEvent::GaveUp {
                attempts: 1,
                reason: GiveUpReason::BudgetExhausted
            },
            RetryEvent::CallFinished {
                outcome: CallOutcome::Failure,
                attempts: 1
            }
        ]
    );
    // Second request: 2 deposits = 1 retry.
    let _ = svc.oneshot(()).await;
    assert_eq!(backend.stats().calls, 3);
    assert_eq!(budget.available(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_drained_throttle_stops_retries_until_successes_refill_it() {
    let throttle = RetryThrottle::new(4, 1.0).unwrap();
    let policy = base()
        .throttle(throttle.clone())
        .backoff(Backoff::none())
        .max_attempts(5)
        .build()
        .unwrap();
    let backend =
        MockBackend::new(Script::sequence([Step::fail(); 4]).then(Script::always(Step::ok())));
    // 4 → 3 (retry allowed: 3 > 2) → 2 (not allowed): two attempts.
    let _ = policy.layer().layer(backend.clone()).oneshot(()).await;
    assert_eq!(backend.stats().calls, 2);
    assert_eq!(throttle.tokens(), 2.0);
    let _ = policy.layer().layer(backend.clone()).oneshot(()).await;
    assert_eq!(backend.stats().calls, 3, "no retry while at half");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_mid_backoff_cancels_cleanly() {
    let policy = base().backoff(Backoff::constant(ms(100))).build().unwrap();
    let backend = MockBackend::new(Script::always(Step::fail()));
    let mut svc = policy.layer().layer(backend.clone());
    let fut = ServiceExt::<()>::ready(&mut svc).await.unwrap().call(());
    let res = tokio::time::timeout(ms(50), fut).await;
    assert!(res.is_err(), "still backing off");
    let stats = backend.stats();
    assert_eq!((stats.calls, stats.in_flight), (1, 0));
}

// ---- Issue 9: local rejections fail fast, hints are capped, readiness waits are bounded ----

/// A local rejection as a layer below returns it: a core `Rejection` (with a hint) as source.
#[derive(Debug)]
struct LocallyRejected(palisade_core::Rejection);

impl std::fmt::Display for LocallyRejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("circuit open")
    }
}

impl std::error::Error for LocallyRejected {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Fails its first `failures` calls with `make()`, then answers with the call number.
fn failing_with(
    failures: u32,
    make: impl Fn() -> BoxError + Send + Sync + Clone + 'static,
) -> (
    Arc<AtomicU32>,
    impl Service<(), Response = u32, Error = BoxError> + Clone,
) {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let svc = service_fn(move |()| {
        let calls = counter.clone();
        let make = make.clone();
        async move {
            // Relaxed: a test counter.
            let n = calls.fetch_add(1, Ordering::Relaxed);
            if n < failures { Err(make()) } else { Ok(n) }
        }
    });
    (calls, svc)
}

fn circuit_open(hint: Duration) -> BoxError {
    Box::new(LocallyRejected(
        palisade_core::Rejection::new(palisade_core::RejectionKind::CircuitOpen)
            .with_retry_after(hint),
    ))
}

/// Regression (issue 9): over an open breaker whose rejection said "retry after 60 s", a
/// default policy slept 60 s. A local rejection is returned at once, never slept on, with the
/// default classifier and with one that calls every error a failure.
#[tokio::test(start_paused = true)]
async fn a_local_rejection_from_below_is_returned_at_once() {
    let default = RetryPolicy::builder()
        .clock(Clock::tokio())
        .build()
        .unwrap();
    let every_error = RetryPolicy::builder()
        .clock(Clock::tokio())
        .classify(|r: Result<&u32, &BoxError>| {
            if r.is_err() {
                Outcome::Failure
            } else {
                Outcome::Success
            }
        })
        .build()
        .unwrap();
    let log = record(&default);
    let (calls, svc) = failing_with(10, || circuit_open(Duration::from_secs(60)));
    let start = Instant::now();
    let err = default.layer().layer(svc).oneshot(()).await.unwrap_err();
    assert!(err.is::<LocallyRejected>());
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "no wait on a local rejection"
    );
    assert_eq!(calls.load(Ordering::Relaxed), 1, "and no retry");
    assert_eq!(gave_up(&log), Some((1, GiveUpReason::LocalRejection)));

    let log = record(&every_error);
    let (calls, svc) = failing_with(10, || circuit_open(Duration::from_secs(60)));
    let err = every_error
        .layer()
        .layer(svc)
        .oneshot(())
        .await
        .unwrap_err();
    assert!(err.is::<LocallyRejected>());
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert_eq!(gave_up(&log), Some((1, GiveUpReason::LocalRejection)));
}

/// Opting in retries a local rejection after its hint, only within the cap and the deadline.
#[tokio::test(start_paused = true)]
async fn retrying_local_rejections_is_opt_in_and_bounded() {
    let policy = base()
        .backoff(Backoff::constant(ms(10)))
        .retry_local_rejections(ms(500))
        .deadline(ms(2000))
        .build()
        .unwrap();
    let log = record(&policy);
    let (calls, svc) = failing_with(1, || circuit_open(ms(300)));
    let start = Instant::now();
    assert_eq!(policy.layer().layer(svc).oneshot(()).await.unwrap(), 1);
    assert_eq!(start.elapsed(), ms(300), "waited the local hint");
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    assert_eq!(scheduled(&log), [ms(300)]);

    // A hint above the cap: returned at once.
    let log = record(&policy);
    let (calls, svc) = failing_with(1, || circuit_open(ms(600)));
    let start = Instant::now();
    let err = policy.layer().layer(svc).oneshot(()).await.unwrap_err();
    assert!(err.is::<LocallyRejected>());
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert_eq!(gave_up(&log), Some((1, GiveUpReason::LocalRejection)));

    // Within the cap but past the deadline: returned at once.
    let tight = base()
        .backoff(Backoff::constant(ms(10)))
        .retry_local_rejections(Duration::from_secs(3600))
        .deadline(ms(200))
        .build()
        .unwrap();
    let log = record(&tight);
    let (_, svc) = failing_with(1, || circuit_open(ms(300)));
    let start = Instant::now();
    assert!(tight.layer().layer(svc).oneshot(()).await.is_err());
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(gave_up(&log), Some((1, GiveUpReason::Deadline)));
}

/// Regression (issue 9): a 100-day `retry_after` hint slept 100 days. A remote hint above
/// `max_retry_after` (default: the backoff cap) ends retrying at once.
#[tokio::test(start_paused = true)]
async fn a_hundred_day_hint_does_not_sleep_a_hundred_days() {
    let hundred_days = Duration::from_secs(100 * 24 * 3600);
    let remote = move || -> BoxError { Box::new(Overloaded(RetryAfter::new(hundred_days))) };
    let default = RetryPolicy::builder()
        .clock(Clock::tokio())
        .build()
        .unwrap();
    let log = record(&default);
    let (calls, svc) = failing_with(1, remote);
    let start = Instant::now();
    let err = default.layer().layer(svc).oneshot(()).await.unwrap_err();
    assert!(err.is::<Overloaded>());
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert_eq!(gave_up(&log), Some((1, GiveUpReason::RetryAfterTooLong)));

    // The default cap is the backoff cap (5 s): a 4 s hint is honoured, a 6 s one is not.
    for (hint, honoured) in [(ms(4000), true), (ms(6000), false)] {
        let remote = move || -> BoxError { Box::new(Overloaded(RetryAfter::new(hint))) };
        let (calls, svc) = failing_with(1, remote);
        let start = Instant::now();
        let result = default.layer().layer(svc).oneshot(()).await;
        assert_eq!(result.is_ok(), honoured, "hint {hint:?}");
        assert_eq!(
            start.elapsed(),
            if honoured { hint } else { Duration::ZERO }
        );
        assert_eq!(calls.load(Ordering::Relaxed), if honoured { 2 } else { 1 });
    }
}

/// Ready for the first `ready` polls (and calls), then `Pending` forever, never waking.
#[derive(Clone)]
struct StopsBeingReady {
    ready: Arc<AtomicU32>,
}

impl Service<()> for StopsBeingReady {
    type Response = u32;
    type Error = BoxError;
    type Future = std::future::Ready<Result<u32, BoxError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        // Relaxed: a test counter.
        if self.ready.load(Ordering::Relaxed) > 0 {
            std::task::Poll::Ready(Ok(()))
        } else {
            std::task::Poll::Pending
        }
    }

    fn call(&mut self, (): ()) -> Self::Future {
        // Relaxed: a test counter.
        self.ready.fetch_sub(1, Ordering::Relaxed);
        std::future::ready(Err("boom".into()))
    }
}

/// Regression (issue 9): with a 1 s deadline, a retry waiting for a service that never becomes
/// ready again was still pending after 3 600 s. The deadline bounds that wait.
#[tokio::test(start_paused = true)]
async fn the_deadline_bounds_the_wait_for_readiness() {
    let policy = base()
        .backoff(Backoff::constant(ms(10)))
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap();
    let log = record(&policy);
    let svc = StopsBeingReady {
        ready: Arc::new(AtomicU32::new(1)),
    };
    let start = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(3600),
        policy.layer().layer(svc).oneshot(()),
    )
    .await
    .expect("the deadline ends the wait, long before an hour");
    let err = result.unwrap_err();
    assert!(err.is::<DeadlineExceeded>());
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(gave_up(&log), Some((1, GiveUpReason::Deadline)));
    assert_eq!(
        palisade_core::rejection(&*err).map(|r| r.kind()),
        Some(palisade_core::RejectionKind::DeadlineExceeded)
    );
}

/// The attempt timeout bounds a retry's readiness wait too: each such wait is a timed-out
/// attempt, retried like any other while attempts remain.
#[tokio::test(start_paused = true)]
async fn the_attempt_timeout_bounds_the_wait_for_readiness() {
    let policy = base()
        .max_attempts(3)
        .backoff(Backoff::constant(ms(10)))
        .attempt_timeout(ms(100))
        .build()
        .unwrap();
    let log = record(&policy);
    let svc = StopsBeingReady {
        ready: Arc::new(AtomicU32::new(1)),
    };
    let start = Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(3600),
        policy.layer().layer(svc).oneshot(()),
    )
    .await
    .expect("the attempt timeout ends the wait")
    .unwrap_err();
    assert!(err.is::<AttemptTimedOut>());
    // Attempt 1 fails at once; 10 ms backoff, attempt 2 waits 100 ms for readiness; 10 ms,
    // attempt 3 waits 100 ms.
    assert_eq!(start.elapsed(), ms(220));
    assert_eq!(scheduled(&log), [ms(10), ms(10)]);
    assert_eq!(gave_up(&log), Some((3, GiveUpReason::AttemptsExhausted)));
}

// Remote hints read from `Ok` responses (issue 11): `RetryPolicyBuilder::remote_hint`.

/// An HTTP-like answer: a status and the server's hint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
}

/// 429 and 503 are retryable failures, other answers successes, errors failures.
fn busy_is_failure(result: Result<&Answer, &BoxError>) -> Outcome {
    match result {
        Ok(answer) if matches!(answer.status, 429 | 503) => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    }
}

fn hint_of(answer: &Answer) -> Option<Duration> {
    answer.retry_after
}

/// Answers `first` (its hint included) `times` times, then `200`; records when each call came.
fn answers_then_ok(
    first: Answer,
    times: u32,
) -> (
    Arc<Mutex<Vec<Instant>>>,
    impl Service<(), Response = Answer, Error = BoxError> + Clone,
) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let log = calls.clone();
    let svc = service_fn(move |()| {
        let calls = calls.clone();
        async move {
            let mut calls = calls.lock().unwrap();
            calls.push(Instant::now());
            let answer = if calls.len() as u32 <= times {
                first
            } else {
                Answer {
                    status: 200,
                    retry_after: None,
                }
            };
            Ok::<_, BoxError>(answer)
        }
    });
    (log, svc)
}

const fn answer(status: u16, retry_after: Option<Duration>) -> Answer {
    Answer {
        status,
        retry_after,
    }
}

fn gaps(calls: &Mutex<Vec<Instant>>) -> Vec<Duration> {
    let calls = calls.lock().unwrap();
    calls.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test(start_paused = true)]
async fn a_429_with_a_one_second_hint_is_retried_a_second_later() {
    let policy = base()
        .backoff(Backoff::constant(ms(10)))
        .max_attempts(3)
        .max_retry_after(ms(2000))
        .classify(busy_is_failure)
        .remote_hint(hint_of)
        .build()
        .unwrap();
    let log = record(&policy);
    let (calls, svc) = answers_then_ok(answer(429, Some(ms(1000))), 1);
    let start = Instant::now();
    let got = policy.layer().layer(svc).oneshot(()).await.unwrap();
    assert_eq!(got.status, 200, "the retry's answer");
    assert_eq!(gaps(&calls), [ms(1000)], "the hint, not the 10 ms backoff");
    assert_eq!(start.elapsed(), ms(1000));
    assert_eq!(scheduled(&log), [ms(1000)]);

    // A hint shorter than the backoff: the backoff (the longer of the two).
    let (calls, svc) = answers_then_ok(answer(503, Some(ms(3))), 1);
    policy.layer().layer(svc).oneshot(()).await.unwrap();
    assert_eq!(gaps(&calls), [ms(10)]);

    // A retryable answer without a hint: the backoff.
    let (calls, svc) = answers_then_ok(answer(503, None), 2);
    policy.layer().layer(svc).oneshot(()).await.unwrap();
    assert_eq!(gaps(&calls), [ms(10), ms(10)]);
}

/// A 100-day hint on a response ends retrying at once, as on an error, and the caller gets
/// the server's answer.
#[tokio::test(start_paused = true)]
async fn a_hundred_day_hint_on_a_response_does_not_sleep() {
    let hundred_days = Duration::from_secs(100 * 24 * 3600);
    // Default cap: the backoff cap (5 s).
    let policy = base()
        .classify(busy_is_failure)
        .remote_hint(hint_of)
        .build()
        .unwrap();
    let log = record(&policy);
    let (calls, svc) = answers_then_ok(answer(429, Some(hundred_days)), u32::MAX);
    let start = Instant::now();
    let got = policy.layer().layer(svc).oneshot(()).await.unwrap();
    assert_eq!(got, answer(429, Some(hundred_days)));
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(calls.lock().unwrap().len(), 1);
    assert_eq!(gave_up(&log), Some((1, GiveUpReason::RetryAfterTooLong)));
    assert!(log.lock().unwrap().contains(&RetryEvent::CallFinished {
        outcome: CallOutcome::Failure,
        attempts: 1
    }));

    // Just under the default cap is honoured, just over is not, exactly as for errors.
    for (hint, honoured) in [(ms(5000), true), (ms(5001), false)] {
        let (calls, svc) = answers_then_ok(answer(503, Some(hint)), 1);
        let start = Instant::now();
        let got = policy.layer().layer(svc).oneshot(()).await.unwrap();
        assert_eq!(got.status == 200, honoured, "hint {hint:?}");
        assert_eq!(
            start.elapsed(),
            if honoured { hint } else { Duration::ZERO }
        );
        assert_eq!(calls.lock().unwrap().len(), if honoured { 2 } else { 1 });
    }
}

#[tokio::test(start_paused = true)]
async fn the_deadline_bounds_a_hint_read_from_a_response() {
    let policy = base()
        .backoff(Backoff::constant(ms(10)))
        .deadline(ms(1500))
        .max_retry_after(ms(10_000))
        .classify(busy_is_failure)
        .remote_hint(hint_of)
        .build()
        .unwrap();
    // A hint that ends past the deadline: the answer at once, no sleep.
    let log = record(&policy);
    let (calls, svc) = answers_then_ok(answer(503, Some(ms(2000))), 1);
    let start = Instant::now();
    let got = policy.layer().layer(svc).oneshot(()).await.unwrap();
    assert_eq!(got.status, 503);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(calls.lock().unwrap().len(), 1);
    assert_eq!(gave_up(&log), Some((1, GiveUpReason::Deadline)));

    // One that fits is waited; the second would not fit in what is left, so retrying ends.
    let log = record(&policy);
    let (calls, svc) = answers_then_ok(answer(503, Some(ms(1000))), u32::MAX);
    let start = Instant::now();
    let got = policy.layer().layer(svc).oneshot(()).await.unwrap();
    assert_eq!(got.status, 503);
    assert_eq!(start.elapsed(), ms(1000));
    assert_eq!(gaps(&calls), [ms(1000)]);
    assert_eq!(gave_up(&log), Some((2, GiveUpReason::Deadline)));
}

/// Answers `script` in turn (then `200`); records when each call came.
fn scripted(
    script: Vec<Answer>,
) -> (
    Arc<Mutex<Vec<Instant>>>,
    impl Service<(), Response = Answer, Error = BoxError> + Clone,
) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let log = calls.clone();
    let script = Arc::new(script);
    let svc = service_fn(move |()| {
        let calls = calls.clone();
        let script = script.clone();
        async move {
            let mut calls = calls.lock().unwrap();
            calls.push(Instant::now());
            let answer = script
                .get(calls.len() - 1)
                .copied()
                .unwrap_or(answer(200, None));
            Ok::<_, BoxError>(answer)
        }
    });
    (log, svc)
}

/// `remote_hint_per_endpoint`: the first hinted answer is retried on the backoff alone,
/// however long its hint; a hint on the next answer too is honoured (waited out, or above
/// the cap given up on); an answer without one in between starts the count again.
#[tokio::test(start_paused = true)]
async fn per_endpoint_a_hint_binds_from_the_second_in_a_row() {
    let policy = base()
        .backoff(Backoff::constant(ms(10)))
        .max_attempts(4)
        .max_retry_after(ms(2000))
        .classify(busy_is_failure)
        .remote_hint(hint_of)
        .remote_hint_per_endpoint()
        .build()
        .unwrap();
    assert!(format!("{policy:?}").contains("remote_hint_per_endpoint: true"));
    let one_s = answer(503, Some(ms(1000)));
    let thirty_s = answer(503, Some(ms(30_000)));

    // One endpoint's hint: the retry follows on the backoff, and its answer is the 200.
    let (calls, svc) = scripted(vec![one_s]);
    let got = policy.layer().layer(svc).oneshot(()).await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(gaps(&calls), [ms(10)]);

    // Over the cap: retried all the same, not given up on.
    let log = record(&policy);
    let (calls, svc) = scripted(vec![thirty_s]);
    let got = policy.layer().layer(svc).oneshot(()).await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(gaps(&calls), [ms(10)]);
    assert_eq!(gave_up(&log), None);

    // Two in a row: the second is the fleet's, and it is waited out.
    let (calls, svc) = scripted(vec![one_s, one_s]);
    let got = policy.layer().layer(svc).oneshot(()).await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(gaps(&calls), [ms(10), ms(1000)]);

    // Two in a row over the cap: the second ends retrying, with that answer.
    let log = record(&policy);
    let (calls, svc) = scripted(vec![thirty_s, thirty_s]);
    let start = Instant::now();
    let got = policy.layer().layer(svc).oneshot(()).await.unwrap();
    assert_eq!(got, thirty_s);
    assert_eq!(start.elapsed(), ms(10));
    assert_eq!(calls.lock().unwrap().len(), 2);
    assert_eq!(gave_up(&log), Some((2, GiveUpReason::RetryAfterTooLong)));

    // A failure without a hint in between starts the count again.
    let (calls, svc) = scripted(vec![one_s, answer(503, None), one_s]);
    let got = policy.layer().layer(svc).oneshot(()).await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(gaps(&calls), [ms(10), ms(10), ms(10)]);

    // Without the option, the same first hint is waited out, and over the cap given up on.
    let per_request = base()
        .backoff(Backoff::constant(ms(10)))
        .max_attempts(4)
        .max_retry_after(ms(2000))
        .classify(busy_is_failure)
        .remote_hint(hint_of)
        .build()
        .unwrap();
    let (calls, svc) = scripted(vec![one_s]);
    per_request.layer().layer(svc).oneshot(()).await.unwrap();
    assert_eq!(gaps(&calls), [ms(1000)]);
    let (calls, svc) = scripted(vec![thirty_s]);
    let got = per_request.layer().layer(svc).oneshot(()).await.unwrap();
    assert_eq!(got, thirty_s);
    assert_eq!(calls.lock().unwrap().len(), 1);
}

/// Without the hook a response's hint is not read: the same answers are retried on the
/// backoff, as before the hook existed.
#[tokio::test(start_paused = true)]
async fn without_the_hook_responses_are_retried_on_the_backoff() {
    let policy = base()
        .backoff(Backoff::constant(ms(10)))
        .max_retry_after(ms(2000))
        .classify(busy_is_failure)
        .build()
        .unwrap();
    let log = record(&policy);
    let (calls, svc) = answers_then_ok(answer(429, Some(ms(1000))), 1);
    let got = policy.layer().layer(svc).oneshot(()).await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(gaps(&calls), [ms(10)]);
    assert_eq!(scheduled(&log), [ms(10)]);

    // Nor is a 100-day one: not a reason to give up without the hook.
    let (calls, svc) = answers_then_ok(answer(429, Some(Duration::from_secs(8_640_000))), 1);
    assert_eq!(
        policy.layer().layer(svc).oneshot(()).await.unwrap().status,
        200
    );
    assert_eq!(gaps(&calls), [ms(10)]);
}

/// The hook is asked only about responses the classifier called failures; errors keep their
/// own hints (the source chain), and local rejections still fail fast.
#[tokio::test(start_paused = true)]
async fn the_hook_sees_only_failed_responses() {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    let policy = base()
        .backoff(Backoff::constant(ms(10)))
        .max_retry_after(ms(10_000))
        .classify(|result: Result<&Answer, &BoxError>| match result {
            Ok(answer) if answer.status == 503 => Outcome::Failure,
            Ok(answer) if answer.status == 404 => Outcome::Ignore,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        })
        .remote_hint(move |answer: &Answer| {
            seen.lock().unwrap().push(answer.status);
            answer.retry_after
        })
        .build()
        .unwrap();
    for status in [200, 404] {
        let (calls, svc) = answers_then_ok(answer(status, Some(ms(1000))), 1);
        let got = policy.layer().layer(svc).oneshot(()).await.unwrap();
        assert_eq!(got.status, status);
        assert_eq!(calls.lock().unwrap().len(), 1);
    }
    assert!(
        asked.lock().unwrap().is_empty(),
        "successes and ignored answers"
    );

    // An error's hint is still read from its source chain.
    let start = Instant::now();
    let svc = overloaded_once(ms(300)).map_response(|_| answer(200, None));
    policy.layer().layer(svc).oneshot(()).await.unwrap();
    assert_eq!(start.elapsed(), ms(300));
    assert!(asked.lock().unwrap().is_empty(), "errors");

    // A local rejection is returned at once.
    let (calls, svc) = failing_with(1, || circuit_open(ms(100)));
    let svc = svc.map_response(|_| answer(200, None));
    let start = Instant::now();
    let err = policy.layer().layer(svc).oneshot(()).await.unwrap_err();
    assert!(palisade_core::is_local_rejection(&*err));
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(calls.load(Ordering::Relaxed), 1);

    let (_, svc) = answers_then_ok(answer(503, Some(ms(20))), 1);
    policy.layer().layer(svc).oneshot(()).await.unwrap();
    assert_eq!(*asked.lock().unwrap(), [503]);
}

/// A retry the budget refuses draws no jitter stream (the stream counter is shared by every
/// call: the refused path writes nothing there). So the first call that is allowed to retry,
/// after any number of refused ones, backs off by exactly the seed's first stream, as the
/// first call of a fresh policy does. (With a deadline the delay decides first, so there a
/// refused call does draw one.)
#[tokio::test(start_paused = true)]
async fn a_refused_retry_draws_no_jitter_stream() {
    let backoff = Backoff::full_jitter(ms(50), ms(400));
    let first_delay = backoff.delays(7).next().unwrap();
    let budget = budget_without_reserve(0.2);
    let policy = RetryPolicy::builder()
        .clock(Clock::tokio())
        .budget(budget)
        .backoff(backoff)
        .max_attempts(2)
        .seed(7)
        .build()
        .unwrap();
    let log = record(&policy);
    let backend = MockBackend::new(Script::always(Step::fail()));
    let svc = policy.layer().layer(backend.clone());
    // 0.2 retries per deposit: the first four calls are refused, the fifth may retry.
    for _ in 0..5 {
        let _ = svc.clone().oneshot(()).await;
    }
    let refused = log
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, RetryEvent::BudgetExhausted { .. }))
        .count();
    assert_eq!(refused, 4);
    assert_eq!(scheduled(&log), [first_delay], "the seed's first stream");
}

/// With a deadline, the attempt timeout ends only attempts that a retry can follow: the last
/// one runs on, and answers.
#[tokio::test(start_paused = true)]
async fn the_last_attempt_runs_on_to_the_deadline() {
    let policy = base()
        .max_attempts(3)
        .backoff(Backoff::constant(ms(5)))
        .deadline(ms(2000))
        .attempt_timeout(ms(100))
        .build()
        .unwrap();
    let log = record(&policy);
    // Every attempt takes 300 ms: the first two are dropped at 100 ms, the third answers.
    let backend = MockBackend::new(Script::always(Step::ok().after(ms(300))));
    let start = Instant::now();
    let reply = policy
        .layer()
        .layer(backend.clone())
        .oneshot(())
        .await
        .unwrap();
    assert_eq!(reply.call, 2);
    assert_eq!(start.elapsed(), ms(100 + 5 + 100 + 5 + 300));
    assert_eq!(backend.stats().cancelled, 2);
    assert_eq!(gave_up(&log), None, "the call did not give up");
    assert!(log.lock().unwrap().contains(&RetryEvent::CallFinished {
        outcome: CallOutcome::Success,
        attempts: 3,
    }));

    // Strict: the last attempt ends at its timeout too, and the call fails there.
    let strict = base()
        .max_attempts(3)
        .backoff(Backoff::constant(ms(5)))
        .deadline(ms(2000))
        .attempt_timeout(ms(100))
        .strict_attempt_timeout()
        .build()
        .unwrap();
    let backend = MockBackend::new(Script::always(Step::ok().after(ms(300))));
    let start = Instant::now();
    let err = strict.layer().layer(backend).oneshot(()).await.unwrap_err();
    assert!(err.is::<AttemptTimedOut>(), "{err}");
    assert_eq!(start.elapsed(), ms(100 + 5 + 100 + 5 + 100));
}

/// A retry the budget refuses cannot follow either: the attempt runs on and answers; the
/// refusal is reported, the call does not give up.
#[tokio::test(start_paused = true)]
async fn an_attempt_the_budget_cannot_follow_runs_on() {
    let policy = RetryPolicy::builder()
        .clock(Clock::tokio())
        .budget(budget_without_reserve(0.0))
        .deadline(ms(2000))
        .attempt_timeout(ms(100))
        .build()
        .unwrap();
    let log = record(&policy);
    let backend = MockBackend::new(Script::always(Step::ok().after(ms(300))));
    let start = Instant::now();
    let reply = policy
        .layer()
        .layer(backend.clone())
        .oneshot(())
        .await
        .unwrap();
    assert_eq!(reply.call, 0);
    assert_eq!(start.elapsed(), ms(300));
    assert_eq!(backend.stats().calls, 1);
    let events = log.lock().unwrap().clone();
    assert!(
        events.contains(&RetryEvent::BudgetExhausted { attempt: 2 }),
        "{events:?}"
    );
    assert_eq!(gave_up(&log), None, "{events:?}");
}

/// The attempt kept past its timeout still ends at the deadline, and if it fails, the call
/// gives up for the reason no retry could follow.
#[tokio::test(start_paused = true)]
async fn a_kept_attempt_ends_at_the_deadline_or_with_its_failure() {
    let policy = base()
        .max_attempts(1)
        .deadline(ms(1000))
        .attempt_timeout(ms(100))
        .build()
        .unwrap();
    let log = record(&policy);
    let backend = MockBackend::new(Script::always(Step::hang()));
    let start = Instant::now();
    let err = policy
        .layer()
        .layer(backend.clone())
        .oneshot(())
        .await
        .unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(start.elapsed(), ms(1000));
    assert_eq!(gave_up(&log), Some((1, GiveUpReason::Deadline)));

    let log = record(&policy);
    let backend = MockBackend::new(Script::always(Step::fail().after(ms(300))));
    let start = Instant::now();
    let err = policy
        .layer()
        .layer(backend.clone())
        .oneshot(())
        .await
        .unwrap_err();
    assert!(err.is::<MockError>(), "the attempt's own error: {err}");
    assert_eq!(start.elapsed(), ms(300));
    assert_eq!(gave_up(&log), Some((1, GiveUpReason::AttemptsExhausted)));

    // Without a deadline nothing else bounds the attempt: its timeout ends it.
    let policy = base()
        .max_attempts(1)
        .attempt_timeout(ms(100))
        .build()
        .unwrap();
    let backend = MockBackend::new(Script::always(Step::hang()));
    let start = Instant::now();
    let err = policy.layer().layer(backend).oneshot(()).await.unwrap_err();
    assert!(err.is::<AttemptTimedOut>(), "{err}");
    assert_eq!(start.elapsed(), ms(100));
}
