//! Clock reads per call on the success paths the benches time, counted by a counting
//! [`TimeSource`] set as the default clock, so that a new read on a hot path is a visible
//! decision.
//!
//! A read of the default clock (TSC) costs about 10 ns on the development VM
//! (`benches/RESULTS.md`, `clock_read`), the largest single item of the recommended stack's
//! per-call cost after the layers' reference counts: the full stack reads it 5 times a call.
//! The counts are printed (`cargo test -p palisade-benches --test clock_reads -- --nocapture`);
//! each is checked against the most the layer needs today:
//!
//! | path | reads | what for |
//! |---|---:|---|
//! | retry, default budget | 1 | the budget's deposit (its window's epoch) |
//! | rate limiter | 1 | the GCRA admission |
//! | bulkhead (fixed) | 0 | |
//! | balancer, P2C + peak EWMA | 2 | the pick (decayed loads, the call's start) and the completion (the latency sample) |
//! | circuit breaker, time window | 1 | the outcome's bucket (the call's duration needs no read: no slow-call threshold) |
//! | the full stack (`support::palisade_stack`) | 5 | the sum: no layer reads for another |
#![cfg(not(loom))]

#[path = "../benches/support/stack.rs"]
mod support;

use palisade_benches::{Bare, call_now};
use palisade_bulkhead::Bulkhead;
use palisade_circuit_breaker::CircuitBreaker;
use palisade_core::clock::{self, Clock, TimeSource};
use palisade_load_balancer::Balancer;
use palisade_retry::RetryPolicy;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tower::{BoxError, Layer, Service};

const CALLS: u64 = 1_000;

/// A time source that counts its reads; time advances 1 µs a read.
#[derive(Debug, Default)]
struct Counting {
    reads: AtomicU64,
}

impl TimeSource for Counting {
    fn now_nanos(&self) -> u64 {
        // Relaxed: a counter read by the same thread after the calls.
        (self.reads.fetch_add(1, Ordering::Relaxed) + 1) * 1_000
    }
}

/// Builds a service on a counting default clock and returns its clock reads per successful
/// call, after a warm-up.
fn reads_per_call<S>(what: &str, build: impl FnOnce() -> S) -> f64
where
    S: Service<u64, Response = u64>,
    S::Error: Into<BoxError>,
{
    let source = Arc::new(Counting::default());
    let _default = clock::set_default(Clock::from_source(source.clone()));
    let mut svc = build();
    let call = |svc: &mut S| match call_now(svc, 1) {
        Some(Ok(_)) => {}
        Some(Err(e)) => panic!("{what}: the call failed: {}", e.into()),
        None => panic!("{what}: the call did not finish at once"),
    };
    for _ in 0..100 {
        call(&mut svc);
    }
    let before = source.reads.load(Ordering::Relaxed);
    for _ in 0..CALLS {
        call(&mut svc);
    }
    let reads = (source.reads.load(Ordering::Relaxed) - before) as f64 / CALLS as f64;
    println!("{what}: {reads} clock reads per call");
    reads
}

fn assert_at_most(what: &str, reads: f64, most: f64) {
    assert!(
        reads <= most,
        "{what}: {reads} clock reads per call, more than the {most} it needs (see the module docs)"
    );
}

#[test]
fn the_retry_layer_reads_the_clock_once_a_call_for_its_budget() {
    let reads = reads_per_call("retry", || {
        RetryPolicy::builder().build().unwrap().layer().layer(Bare)
    });
    assert_at_most("retry", reads, 1.0);
}

#[test]
fn the_rate_limiter_reads_the_clock_once_a_call() {
    let reads = reads_per_call("rate limiter", || {
        support::unmetered_limiter().layer().layer(Bare)
    });
    assert_at_most("rate limiter", reads, 1.0);
}

#[test]
fn a_fixed_bulkhead_does_not_read_the_clock() {
    let reads = reads_per_call("bulkhead", || {
        Bulkhead::builder()
            .max_concurrent_calls(64)
            .build()
            .unwrap()
            .layer()
            .layer(Bare)
    });
    assert_at_most("bulkhead", reads, 0.0);
}

#[test]
fn the_balancer_reads_the_clock_at_the_pick_and_at_the_completion() {
    let reads = reads_per_call("balancer", || {
        Balancer::new((0..10usize).map(|k| (k, Bare))).service()
    });
    assert_at_most("balancer", reads, 2.0);
}

#[test]
fn a_circuit_breaker_reads_the_clock_once_a_call() {
    let reads = reads_per_call("circuit breaker (gate)", || {
        CircuitBreaker::builder()
            .build()
            .unwrap()
            .layer()
            .gate()
            .layer(Bare)
    });
    assert_at_most("circuit breaker (gate)", reads, 1.0);
    let reads = reads_per_call("circuit breaker (reject)", || {
        CircuitBreaker::builder()
            .build()
            .unwrap()
            .layer()
            .layer(Bare)
    });
    assert_at_most("circuit breaker (reject)", reads, 1.0);
}

#[test]
fn the_recommended_stack_reads_the_clock_no_more_than_its_layers_do() {
    let reads = reads_per_call("recommended stack", support::palisade_stack);
    assert_at_most("recommended stack", reads, 5.0);
}
