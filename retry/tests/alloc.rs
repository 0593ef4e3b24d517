//! Counting-allocator tests: the success-at-first-attempt path allocates nothing of its own.

#![cfg(not(loom))]

use palisade_core::test_util::{Echo, call_now};
use palisade_retry::{RetryBudget, RetryPolicy};
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use tower::{Layer, Service};

fn answer<S: Service<R>, R>(svc: &mut S, request: R) -> Result<S::Response, S::Error> {
    call_now(svc, request).expect("the echo service answers at once")
}

#[test]
fn first_attempt_success_allocates_nothing_with_the_default_budget() {
    let policy = RetryPolicy::builder().build().unwrap();
    let mut svc = policy.layer().layer(Echo);
    // Warm up: the coarse clock's upkeep thread starts on first use.
    answer(&mut svc, 0u64).unwrap();
    let info = allocation_counter::measure(|| {
        for i in 0..1000u64 {
            assert_eq!(answer(&mut svc, i).unwrap(), i);
        }
    });
    assert_eq!(info.count_total, 0);
}

/// A policy that reads hints from responses pays nothing for it on a success (the hook is
/// asked only about failed responses).
#[test]
fn a_remote_hint_hook_allocates_nothing_on_success() {
    let policy = RetryPolicy::builder()
        .remote_hint(|answer: &u64| Some(std::time::Duration::from_millis(*answer)))
        .build()
        .unwrap();
    let mut svc = policy.layer().layer(Echo);
    answer(&mut svc, 0u64).unwrap();
    let info = allocation_counter::measure(|| {
        for i in 0..1000u64 {
            assert_eq!(answer(&mut svc, i).unwrap(), i);
        }
    });
    assert_eq!(info.count_total, 0);
}

/// With a deadline and an attempt timeout the response future waits for readiness itself
/// (crate docs, "Readiness"): that path, and its timer, allocate nothing on a first-attempt
/// success either.
#[test]
fn first_attempt_success_with_a_deadline_allocates_nothing() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let policy = RetryPolicy::builder()
        .deadline(std::time::Duration::from_secs(1))
        .attempt_timeout(std::time::Duration::from_millis(100))
        .build()
        .unwrap();
    let mut svc = policy.layer().layer(Echo);
    answer(&mut svc, 0u64).unwrap();
    let info = allocation_counter::measure(|| {
        for i in 0..1000u64 {
            assert_eq!(answer(&mut svc, i).unwrap(), i);
        }
    });
    assert_eq!(info.count_total, 0);
}

#[test]
fn the_only_allocation_is_the_request_copy() {
    let budget = RetryBudget::default();
    let policy = RetryPolicy::builder().budget(budget).build().unwrap();
    let mut svc = policy.layer().layer(Echo);
    answer(&mut svc, String::from("warm")).unwrap();
    let requests: Vec<String> = (0..1000).map(|i| format!("request {i}")).collect();
    let mut answers = Vec::with_capacity(1000);
    let info = allocation_counter::measure(|| {
        for request in requests {
            answers.push(answer(&mut svc, request).unwrap());
        }
    });
    assert_eq!(
        info.count_total, 1000,
        "one String clone per call, nothing else"
    );
    assert_eq!(answers[999], "request 999");

    // With a single attempt there is nothing to copy.
    let single = RetryPolicy::builder().max_attempts(1).build().unwrap();
    let mut svc = single.layer().layer(Echo);
    let requests: Vec<String> = (0..100).map(|i| format!("request {i}")).collect();
    let info = allocation_counter::measure(|| {
        for request in requests {
            drop(answer(&mut svc, request));
        }
    });
    assert_eq!(info.count_total, 0);
}

#[test]
fn a_hedge_whose_first_copy_answers_allocates_nothing() {
    use palisade_core::clock::Clock;
    use palisade_retry::HedgePolicy;
    use tower::ServiceExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        for policy in [
            HedgePolicy::builder().delay(std::time::Duration::from_millis(10)),
            HedgePolicy::builder().percentile(95.0).min_samples(1),
        ] {
            let policy = policy.clock(Clock::tokio()).build().unwrap();
            let mut svc = policy.layer().layer(Echo);
            ServiceExt::<u64>::ready(&mut svc).await.unwrap();
            svc.call(0u64).await.unwrap();
            let info = allocation_counter::measure(|| {
                for i in 0..1000u64 {
                    let mut cx = Context::from_waker(Waker::noop());
                    let future = pin!(svc.call(i));
                    assert!(matches!(future.poll(&mut cx), Poll::Ready(Ok(n)) if n == i));
                }
            });
            assert_eq!(info.count_total, 0);
        }
    });
}
