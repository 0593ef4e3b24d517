//! Allocations per call on the paths the benches time, counted by a global allocator
//! (`allocation-counter`), so a report's numbers can be read with the allocations behind them.
//!
//! - Every rejection path (open breaker, full bulkhead, refused limiter, exhausted retry
//!   budget) through tower allocates at most the boxing of its error into a `BoxError`: none
//!   for a zero-sized error, one otherwise (issue 14). The counts are printed
//!   (`cargo test -p palisade-benches --test alloc -- --nocapture`).
//! - With the `obs` feature (every layer's `metrics` and `tracing`), each layer's success path
//!   and the full stack's, under a recorder with real handles, allocate nothing (issue 14).
#![cfg(not(loom))]

#[path = "../benches/support/stack.rs"]
mod support;

use palisade_benches::{Bare, Failing, call_now};
use palisade_bulkhead::{Bulkhead, BulkheadFull};
use palisade_circuit_breaker::{CircuitBreaker, CircuitOpen};
use palisade_rate_limit::{RateLimited, RateLimiter};
use palisade_retry::{RetryBudget, RetryPolicy};
use std::convert::Infallible;
use std::future::Pending;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tower::{BoxError, Layer, Service};

const CALLS: u64 = 1_000;

/// An inner service whose calls never finish: holds a bulkhead slot.
#[derive(Clone, Copy, Debug)]
struct Hang;

impl Service<u64> for Hang {
    type Response = u64;
    type Error = Infallible;
    type Future = Pending<Result<u64, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: u64) -> Self::Future {
        std::future::pending()
    }
}

/// Allocations per call of `CALLS` rejected calls through `svc`, after a warm-up; checks
/// that each call was rejected with an error that downcasts to `E`.
fn allocations_per_rejection<S, E>(svc: &mut S) -> f64
where
    S: Service<u64, Error = BoxError>,
    E: std::error::Error + 'static,
{
    let reject = |svc: &mut S| match call_now(svc, 1) {
        Some(Err(e)) => assert!(
            e.downcast_ref::<E>().is_some(),
            "rejected with {e}, not {}",
            std::any::type_name::<E>()
        ),
        _ => panic!("not rejected at once"),
    };
    for _ in 0..100 {
        reject(svc);
    }
    let info = allocation_counter::measure(|| {
        for _ in 0..CALLS {
            reject(svc);
        }
    });
    info.count_total as f64 / CALLS as f64
}

/// At most the `Box` of the error: zero for a zero-sized error, one otherwise.
fn assert_at_most_the_box<E>(what: &str, per_call: f64) {
    let boxing = if size_of::<E>() == 0 { 0.0 } else { 1.0 };
    println!(
        "{what}: {per_call} allocations per rejection ({} is {} bytes)",
        std::any::type_name::<E>(),
        size_of::<E>()
    );
    assert!(
        per_call <= boxing,
        "{what}: {per_call} allocations per rejection, more than boxing the error ({boxing})"
    );
}

#[test]
fn an_open_breaker_allocates_at_most_the_box_of_its_rejection() {
    let breaker = CircuitBreaker::builder()
        .wait_duration_in_open(Duration::from_secs(3_600))
        .build()
        .unwrap();
    breaker.transition_to_open();
    let mut svc = breaker.layer().layer(Bare);
    let per_call = allocations_per_rejection::<_, CircuitOpen>(&mut svc);
    assert_at_most_the_box::<CircuitOpen>("open breaker", per_call);
}

#[test]
fn a_full_bulkhead_allocates_at_most_the_box_of_its_rejection() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let bulkhead = Bulkhead::builder().max_concurrent_calls(1).build().unwrap();
    let mut holder = bulkhead.layer().layer(Hang);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(holder.poll_ready(&mut cx).is_ready());
    let _held = holder.call(0);
    let mut svc = bulkhead.layer().layer(Hang);
    let per_call = allocations_per_rejection::<_, BulkheadFull>(&mut svc);
    assert_at_most_the_box::<BulkheadFull>("full bulkhead", per_call);
}

#[test]
fn a_refusing_limiter_allocates_at_most_the_box_of_its_rejection() {
    let limiter = RateLimiter::builder()
        .rate(1, Duration::from_secs(3_600))
        .build()
        .unwrap();
    let _ = limiter.check();
    let mut svc = limiter.layer().layer(Bare);
    let per_call = allocations_per_rejection::<_, RateLimited>(&mut svc);
    assert_at_most_the_box::<RateLimited>("refusing rate limiter", per_call);
}

#[test]
fn an_exhausted_retry_budget_allocates_at_most_the_box_of_the_last_error() {
    let empty = RetryBudget::builder()
        .min_retries_per_sec(0)
        .percent_can_retry(0.0)
        .build()
        .unwrap();
    let policy = RetryPolicy::builder().budget(empty).build().unwrap();
    let mut svc = policy.layer().layer(Failing);
    let per_call = allocations_per_rejection::<_, palisade_benches::BenchError>(&mut svc);
    assert_at_most_the_box::<palisade_benches::BenchError>("exhausted retry budget", per_call);
}

/// The bench's full stack (retry, rate limit, bulkhead, balancer, per endpoint breakers) on
/// its success path, with this build's features and no recorder.
#[test]
fn the_full_stacks_success_path_allocates_nothing() {
    let mut svc = support::palisade_stack();
    for i in 0..300 {
        assert!(matches!(call_now(&mut svc, i), Some(Ok(_))));
    }
    let info = allocation_counter::measure(|| {
        for i in 0..CALLS {
            assert!(matches!(call_now(&mut svc, i), Some(Ok(_))));
        }
    });
    assert_eq!(info.count_total, 0, "the stack's success path allocated");
}

#[cfg(feature = "obs")]
mod observability {
    use super::*;
    use palisade_load_balancer::Balancer;

    /// No allocation per call on `make()`'s success path, built and called under a recorder.
    fn assert_success_allocates_nothing<S, F>(what: &str, make: F)
    where
        S: Service<u64>,
        F: FnOnce() -> S,
    {
        let recorder = palisade_benches::CountingRecorder::default();
        metrics::with_local_recorder(&recorder, || {
            let mut svc = make();
            for i in 0..300 {
                assert!(
                    matches!(call_now(&mut svc, i), Some(Ok(_))),
                    "{what}: failed"
                );
            }
            let info = allocation_counter::measure(|| {
                for i in 0..CALLS {
                    assert!(matches!(call_now(&mut svc, i), Some(Ok(_))));
                }
            });
            println!("{what}: {} allocations in {CALLS} calls", info.count_total);
            assert_eq!(info.count_total, 0, "{what}: the success path allocated");
        });
        assert!(recorder.registrations() > 0, "{what}: nothing registered");
    }

    #[test]
    fn every_success_path_allocates_nothing_with_metrics_and_tracing_on() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        assert_success_allocates_nothing("circuit breaker", || {
            CircuitBreaker::new().layer().layer(Bare)
        });
        assert_success_allocates_nothing("bulkhead", || {
            Bulkhead::builder()
                .max_concurrent_calls(support::LIMIT)
                .build()
                .unwrap()
                .layer()
                .layer(Bare)
        });
        assert_success_allocates_nothing("rate limiter", || {
            support::unmetered_limiter().layer().layer(Bare)
        });
        assert_success_allocates_nothing("retry", || {
            RetryPolicy::builder().build().unwrap().layer().layer(Bare)
        });
        assert_success_allocates_nothing("load balancer", || {
            Balancer::new((0..support::ENDPOINTS).map(|k| (k, Bare))).service()
        });
        assert_success_allocates_nothing("full stack", support::palisade_stack);
    }
}
