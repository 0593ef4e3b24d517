//! Regression tests for the headline defects of issue 9, through whole stacks as a user
//! builds them (each layer's own crate tests its own fixes).
//!
//! - With every default, a retry over an open breaker hung 60 s and then succeeded, instead of
//!   failing fast with `CircuitOpen`.
//! - Our own rate limiter below our own breaker tripped it on a 100 % healthy backend: the
//!   default classifier counted `RateLimited` as a failure of the dependency.
//! - The retry's deadline did not bound the wait for the inner service's readiness (a 1 s
//!   deadline still pending after 3 600 s).
//! - With every endpoint's gate-mode breaker open, the README's balanced stack waited on them
//!   until each attempt timed out, instead of answering `NoHealthyEndpoints` at once.

#![cfg(all(
    feature = "circuit-breaker",
    feature = "bulkhead",
    feature = "rate-limit",
    feature = "retry"
))]

mod support;

use palisade_bulkhead::{Bulkhead, BulkheadFull};
use palisade_circuit_breaker::{CircuitBreaker, CircuitBreakerEvent, CircuitOpen, State};
use palisade_core::Clock;
use palisade_core::test_util::{MockBackend, Script, Step, run_paused};
use palisade_rate_limit::{RateLimited, RateLimiter};
use palisade_retry::{Backoff, RetryPolicy};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use support::describe;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};

/// Counts the breaker's state transitions.
fn count_transitions(breaker: &CircuitBreaker) -> Arc<AtomicU64> {
    let transitions = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&transitions);
    breaker.subscribe(move |event: &CircuitBreakerEvent| {
        if matches!(event, CircuitBreakerEvent::StateTransition { .. }) {
            // Relaxed: a statistic, read on the test task after the calls it counts.
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    transitions
}

/// Issue 9, first bullet: `RetryPolicy::builder().build()` over a default breaker that is
/// open answers `CircuitOpen` at once. Before, the retry slept on the rejection's
/// `retry_after` (60 s, the old open wait) and then succeeded. Every default here, the clock
/// included; tokio's paused time would jump over any sleep, and the elapsed virtual time
/// shows it.
#[tokio::test(start_paused = true)]
async fn default_retry_over_an_open_default_breaker_fails_fast() {
    let retry = RetryPolicy::builder().build().expect("the default policy");
    let breaker = CircuitBreaker::builder()
        .build()
        .expect("the default breaker");
    let backend = MockBackend::healthy();
    let svc = ServiceBuilder::new()
        .layer(retry.layer())
        .layer(breaker.layer())
        .service(backend.clone());
    breaker.transition_to_open();

    let start = Instant::now();
    let err = svc
        .oneshot(1u32)
        .await
        .expect_err("an open breaker refuses");
    assert!(
        err.is::<CircuitOpen>(),
        "expected CircuitOpen, got {}",
        describe(&err)
    );
    assert_eq!(start.elapsed(), Duration::ZERO, "the call waited");
    assert_eq!(backend.stats().calls, 0, "the backend was called");
    assert_eq!(breaker.state(), State::Open);
}

/// The same, with the whole stack of the README (retry → breaker → rate limit → bulkhead),
/// every layer on its defaults and the paused tokio clock the default clock of the thread.
#[test]
fn default_readme_stack_over_an_open_breaker_fails_fast() {
    run_paused(async {
        let retry = RetryPolicy::builder().build().expect("the default policy");
        let breaker = CircuitBreaker::builder()
            .build()
            .expect("the default breaker");
        let limiter = RateLimiter::builder()
            .rate(500, Duration::from_secs(1))
            .build()
            .expect("a limiter");
        let bulkhead = Bulkhead::builder().build().expect("the default bulkhead");
        let backend = MockBackend::healthy();
        let svc = ServiceBuilder::new()
            .layer(retry.layer())
            .layer(breaker.layer())
            .layer(limiter.layer())
            .layer(bulkhead.layer())
            .service(backend.clone());
        breaker.transition_to_open();

        for i in 0..10 {
            let start = Instant::now();
            let err = svc
                .clone()
                .oneshot(i)
                .await
                .expect_err("an open breaker refuses");
            assert!(
                err.is::<CircuitOpen>(),
                "call {i}: expected CircuitOpen, got {}",
                describe(&err)
            );
            assert_eq!(start.elapsed(), Duration::ZERO, "call {i} waited");
        }
        assert_eq!(backend.stats().calls, 0);
        assert_eq!(bulkhead.snapshot().in_flight, 0);
    });
}

/// The README's balanced stack (retry with a deadline and a per-attempt timeout → bulkhead →
/// balancer → per endpoint a breaker in gate mode) with every endpoint's breaker open: the
/// whole fleet is down. Each call is answered `NoHealthyEndpoints` at once. Before, the
/// balancer took the open gates' `Pending` for busy endpoints and waited on them: every call
/// waited 500 ms for its attempt to time out, holding a bulkhead slot, and was answered
/// "retry attempt timed out" (without the timeout, it waited out the breakers' 5 s).
#[test]
fn readme_balanced_stack_with_every_endpoint_breaker_open_fails_fast() {
    use palisade_load_balancer::{Balancer, NoHealthyEndpoints};
    run_paused(async {
        let retry = RetryPolicy::builder()
            .deadline(Duration::from_secs(2))
            .attempt_timeout(Duration::from_millis(500))
            .build()
            .expect("the README's retry");
        let bulkhead = Bulkhead::builder()
            .max_concurrent_calls(64)
            .build()
            .expect("the README's bulkhead");
        let backend = MockBackend::healthy();
        let breakers: Vec<CircuitBreaker> = ["a", "b", "c"]
            .into_iter()
            .map(|host| {
                CircuitBreaker::builder()
                    .name(host)
                    .build()
                    .expect("a default breaker")
            })
            .collect();
        let balancer = Balancer::new(
            breakers
                .iter()
                .enumerate()
                .map(|(key, breaker)| (key, breaker.layer().gate().layer(backend.clone()))),
        );
        let svc = ServiceBuilder::new()
            .layer(retry.layer())
            .layer(bulkhead.layer())
            .service(balancer.service());
        for breaker in &breakers {
            breaker.transition_to_open();
        }

        for i in 0..10 {
            let start = Instant::now();
            let err = svc
                .clone()
                .oneshot(i)
                .await
                .expect_err("no endpoint can take the call");
            assert!(
                err.is::<NoHealthyEndpoints>(),
                "call {i}: expected NoHealthyEndpoints, got {}",
                describe(&err)
            );
            assert_eq!(start.elapsed(), Duration::ZERO, "call {i} waited");
        }
        assert_eq!(backend.stats().calls, 0);
        assert_eq!(bulkhead.snapshot().in_flight, 0);
        assert!(
            breakers.iter().all(|b| b.state() == State::Open),
            "the rejections are local: no breaker moved"
        );
    });
}

/// Five bursts of 40 calls through `svc`, a second apart, over a healthy backend: every answer
/// is a success or an `R` (a local rejection from below `breaker`), and `breaker` never moves
/// (closed after each burst, no transition at all). Returns (successes, `R` rejections).
async fn five_bursts_through_a_closed_breaker<R, S, Resp>(
    svc: &S,
    breaker: &CircuitBreaker,
) -> (u32, u32)
where
    R: std::error::Error + 'static,
    S: Service<u32, Response = Resp, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    Resp: Send + 'static,
{
    let transitions = count_transitions(breaker);
    let (mut ok, mut rejected) = (0, 0);
    for _ in 0..5 {
        for answer in support::burst(svc, 40).await {
            match answer {
                Ok(_) => ok += 1,
                Err(e) if e.is::<R>() => rejected += 1,
                Err(e) => panic!("a healthy backend answered {}", describe(&e)),
            }
        }
        assert_eq!(breaker.state(), State::Closed);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Relaxed: see `count_transitions`.
    assert_eq!(transitions.load(Ordering::Relaxed), 0, "the breaker moved");
    (ok, rejected)
}

/// Issue 9, second bullet: our own rate limiter below a default breaker does not trip it on a
/// 100 % healthy backend. 200 calls in five bursts of 40, a second apart, through a limiter
/// of 100/s with a burst of 10: 30 of each 40 are `RateLimited`. Counted as failures, that is
/// 75 % of a window of 40 calls, past the default breaker's 50 % over 20: it opened.
#[tokio::test(start_paused = true)]
async fn our_rate_limiter_below_our_breaker_never_trips_it() {
    let breaker = CircuitBreaker::builder()
        .name("inventory")
        .clock(Clock::tokio())
        .build()
        .expect("the default breaker");
    let limiter = RateLimiter::builder()
        .name("inventory")
        .rate(100, Duration::from_secs(1))
        .burst(10)
        .clock(Clock::tokio())
        .build()
        .expect("a limiter");
    let backend = MockBackend::healthy();
    let svc = ServiceBuilder::new()
        .layer(breaker.layer())
        .layer(limiter.layer())
        .service(backend.clone());

    let (ok, limited) =
        five_bursts_through_a_closed_breaker::<RateLimited, _, _>(&svc, &breaker).await;
    assert_eq!((ok, limited), (50, 150));
    let stats = backend.stats();
    assert_eq!((stats.calls, stats.failed), (50, 0));
}

/// The same for a full bulkhead below the breaker: `BulkheadFull` is no failure of the
/// dependency either.
#[tokio::test(start_paused = true)]
async fn our_full_bulkhead_below_our_breaker_never_trips_it() {
    let breaker = CircuitBreaker::builder()
        .name("inventory")
        .clock(Clock::tokio())
        .build()
        .expect("the default breaker");
    let bulkhead = Bulkhead::builder()
        .name("inventory")
        .max_concurrent_calls(5)
        .clock(Clock::tokio())
        .build()
        .expect("a bulkhead");
    let backend = MockBackend::new(Script::always(Step::ok().after(Duration::from_millis(50))));
    let svc = ServiceBuilder::new()
        .layer(breaker.layer())
        .layer(bulkhead.layer())
        .service(backend.clone());

    let (ok, full) =
        five_bursts_through_a_closed_breaker::<BulkheadFull, _, _>(&svc, &breaker).await;
    assert_eq!((ok, full), (25, 175));
    assert_eq!(bulkhead.snapshot().in_flight, 0);
}

/// Issue 9 §3: the retry's deadline bounds the wait for the inner service's readiness before
/// a retry. The first attempt fails; the bulkhead below is then full in wait mode (an hour's
/// `max_wait`); a 1 s deadline answers within 1 s, not after the hour.
#[tokio::test(start_paused = true)]
async fn retry_deadline_bounds_the_readiness_wait_of_a_retry() {
    let retry = RetryPolicy::builder()
        .max_attempts(3)
        .backoff(Backoff::constant(Duration::from_millis(10)))
        .deadline(Duration::from_secs(1))
        .clock(Clock::tokio())
        .build()
        .expect("a policy");
    let bulkhead = Bulkhead::builder()
        .max_concurrent_calls(1)
        .max_wait(Duration::from_secs(3600))
        .clock(Clock::tokio())
        .build()
        .expect("a bulkhead");
    // The first call fails after 5 ms; the holder's call takes an hour.
    let backend = MockBackend::new(Script::sequence([
        Step::fail().after(Duration::from_millis(5)),
        Step::ok().after(Duration::from_secs(3600)),
    ]));
    let svc = ServiceBuilder::new()
        .layer(retry.layer())
        .layer(bulkhead.layer())
        .service(backend.clone());
    let holder = bulkhead.layer().layer(backend.clone());

    let start = Instant::now();
    let call = tokio::spawn(svc.oneshot(1u32));
    // Once the first attempt has reached the backend, a holder takes the only slot as soon as
    // that attempt gives it back.
    while backend.stats().calls < 1 {
        tokio::task::yield_now().await;
    }
    let hold = tokio::spawn(holder.oneshot(2u32));
    let answer = tokio::time::timeout(Duration::from_secs(7200), call)
        .await
        .expect("the call answers before the holder's hour is up")
        .expect("the call does not panic");
    let took = start.elapsed();
    assert!(answer.is_err(), "the retry cannot have succeeded");
    assert!(
        took <= Duration::from_secs(1),
        "a 1 s deadline answered after {took:?}"
    );
    hold.abort();
}

/// The deadline also bounds the very first readiness wait: a caller of a retry with a 1 s
/// deadline over a bulkhead that is full for an hour hears back within 1 s.
#[tokio::test(start_paused = true)]
async fn retry_deadline_bounds_the_first_readiness_wait() {
    let retry = RetryPolicy::builder()
        .max_attempts(3)
        .deadline(Duration::from_secs(1))
        .clock(Clock::tokio())
        .build()
        .expect("a policy");
    let bulkhead = Bulkhead::builder()
        .max_concurrent_calls(1)
        .max_wait(Duration::from_secs(3600))
        .clock(Clock::tokio())
        .build()
        .expect("a bulkhead");
    let slow = MockBackend::new(Script::always(Step::ok().after(Duration::from_secs(3600))));
    let hold = tokio::spawn(bulkhead.layer().layer(slow.clone()).oneshot(0u32));
    while bulkhead.snapshot().in_flight < 1 {
        tokio::task::yield_now().await;
    }
    let svc = ServiceBuilder::new()
        .layer(retry.layer())
        .layer(bulkhead.layer())
        .service(slow);

    let start = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(7200), svc.oneshot(1u32))
        .await
        .expect("the call answers before the holder's hour is up");
    let took = start.elapsed();
    assert!(answer.is_err(), "the bulkhead is full for an hour");
    assert!(
        took <= Duration::from_secs(1),
        "a 1 s deadline answered after {took:?}"
    );
    hold.abort();
}

/// DESIGN "Correctness contract": what a layer counts for a call comes back on a panic in the
/// inner service. The balancer's pending count of an endpoint whose `call` panics must return
/// to zero, or that endpoint looks loaded for good to every pending-based pick.
#[tokio::test(start_paused = true)]
async fn balancer_pending_returns_after_a_panic_in_call() {
    use palisade_load_balancer::{Balancer, EndpointMeta};
    for step in [Step::panic(), Step::panic_in_call()] {
        let balancer = Balancer::builder()
            .clock(Clock::tokio())
            .seed(1)
            .build::<usize, MockBackend>()
            .expect("a balancer");
        let backend = MockBackend::new(Script::sequence([step]));
        balancer.insert(0, backend, EndpointMeta::new());
        let answer = tokio::spawn(balancer.service().oneshot(1u32)).await;
        assert!(
            answer.is_err(),
            "{:?}: the scripted panic reached the caller",
            step.action
        );
        let pending = balancer.snapshot().endpoints[0].pending;
        assert_eq!(
            pending, 0,
            "{:?}: the endpoint's pending count leaked",
            step.action
        );
    }
}

/// No call waits on a local rejection (issue 9 §7): an empty rate limiter in reject mode
/// refuses at once, whatever the service below it is doing. Its refusal needs nothing from
/// the inner service, so it must not wait for the inner service's readiness (here a bulkhead
/// queue of 50 ms) before it answers; a breaker in reject mode is ready at once for the same
/// reason.
#[tokio::test(start_paused = true)]
async fn an_empty_limiter_refuses_without_waiting_for_the_layer_below() {
    let limiter = RateLimiter::builder()
        .rate(1, Duration::from_secs(3600))
        .burst(1)
        .clock(Clock::tokio())
        .build()
        .expect("a limiter");
    let bulkhead = Bulkhead::builder()
        .max_concurrent_calls(1)
        .max_wait(Duration::from_millis(50))
        .clock(Clock::tokio())
        .build()
        .expect("a bulkhead");
    let slow = MockBackend::new(Script::always(Step::ok().after(Duration::from_secs(10))));
    let hold = tokio::spawn(bulkhead.layer().layer(slow.clone()).oneshot(0u32));
    while bulkhead.snapshot().in_flight < 1 {
        tokio::task::yield_now().await;
    }
    while limiter.check().is_ok() {}

    let svc = ServiceBuilder::new()
        .layer(limiter.layer())
        .layer(bulkhead.layer())
        .service(slow);
    let start = Instant::now();
    let err = svc.oneshot(1u32).await.expect_err("the limiter is empty");
    assert!(err.is::<RateLimited>(), "got {}", describe(&err));
    assert_eq!(start.elapsed(), Duration::ZERO, "the refusal waited");
    hold.abort();
}

/// A waiting limiter makes a caller wait at most its `max_wait` (rate-limit docs: "the
/// longest a request waits"). Here the caller waits for a token in `poll_ready` (20 ms), then
/// for the bulkhead below (2 ms, while another caller takes that token), and the call must not
/// wait for the limiter a second time: 20 ms + the bulkhead's 5 ms bound the whole wait.
#[tokio::test(start_paused = true)]
async fn a_waiting_limiter_waits_once_per_call() {
    let limiter = RateLimiter::builder()
        .rate(50, Duration::from_secs(1))
        .burst(1)
        .wait(Duration::from_millis(20))
        .clock(Clock::tokio())
        .build()
        .expect("a limiter");
    let bulkhead = Bulkhead::builder()
        .max_concurrent_calls(1)
        .max_wait(Duration::from_millis(5))
        .clock(Clock::tokio())
        .build()
        .expect("a bulkhead");
    let backend = MockBackend::healthy();
    // The holder keeps the only slot until 22 ms from now.
    let holder_backend =
        MockBackend::new(Script::always(Step::ok().after(Duration::from_millis(22))));
    let hold = tokio::spawn(bulkhead.layer().layer(holder_backend).oneshot(0u32));
    while bulkhead.snapshot().in_flight < 1 {
        tokio::task::yield_now().await;
    }
    while limiter.check().is_ok() {}
    let start = Instant::now();
    let svc = ServiceBuilder::new()
        .layer(limiter.layer())
        .layer(bulkhead.layer())
        .service(backend);
    let caller = tokio::spawn(svc.oneshot(1u32));
    // Another client of the limiter takes the token that comes at 20 ms.
    tokio::time::sleep(Duration::from_millis(21)).await;
    let other = limiter.check();
    let answer = caller.await.expect("the caller does not panic");
    let took = start.elapsed();
    hold.await.expect("the holder").expect("the holder's call");
    assert!(
        took <= Duration::from_millis(25),
        "the caller waited {took:?} ({:?}; the other client's check: {:?})",
        answer.map(|_| ()).map_err(|e| describe(&e)),
        other.map_err(|e| e.to_string())
    );
}
