//! The full recommended Palisade stack, shared by the `stack` and `observability` benches.

use palisade_benches::Bare;
use palisade_bulkhead::Bulkhead;
use palisade_circuit_breaker::CircuitBreaker;
use palisade_load_balancer::Balancer;
use palisade_rate_limit::RateLimiter;
use palisade_retry::RetryPolicy;
use std::time::Duration;
use tower::{BoxError, Layer, Service, ServiceBuilder};

/// Endpoints behind each balancer.
pub(crate) const ENDPOINTS: usize = 10;
/// The bulkhead's limit.
pub(crate) const LIMIT: usize = 64;

/// A rate limiter whose rate no bench loop or test meets: the limiter's admission work,
/// never its refusal.
pub(crate) fn unmetered_limiter() -> RateLimiter {
    RateLimiter::builder()
        .rate(u32::MAX, Duration::from_secs(1))
        .burst(1_000_000_000)
        .build()
        .unwrap()
}

/// The facade's order of layers (`palisade/src/lib.rs`), every layer on its defaults but the
/// rate (so high that no bench loop meets it) and the bulkhead's limit ([`LIMIT`]): retry
/// (default policy and budget) → rate limit → bulkhead → `Balancer` (P2C + peak EWMA) over
/// [`ENDPOINTS`] endpoints → per endpoint a circuit breaker in gate mode → [`Bare`].
pub(crate) fn palisade_stack() -> impl Service<u64, Response = u64, Error = BoxError> + Clone + Send
{
    palisade_stack_with(RetryPolicy::builder().build().unwrap())
}

/// [`palisade_stack`] with the facade docs' retry settings that every user chooses: a 2 s
/// deadline and a 500 ms per-attempt timeout (tokio timers: build and call it inside a
/// runtime).
#[allow(
    dead_code,
    reason = "used by the stack bench, not by the observability bench"
)]
pub(crate) fn palisade_stack_with_deadline()
-> impl Service<u64, Response = u64, Error = BoxError> + Clone + Send {
    palisade_stack_with(
        RetryPolicy::builder()
            .deadline(Duration::from_secs(2))
            .attempt_timeout(Duration::from_millis(500))
            .build()
            .unwrap(),
    )
}

fn palisade_stack_with(
    retry: RetryPolicy,
) -> impl Service<u64, Response = u64, Error = BoxError> + Clone + Send {
    palisade_stack_parts(retry, unmetered_limiter()).0
}

/// The stack of [`palisade_stack`] with `retry` and `limiter`, and the endpoints' breakers
/// (to open them: the incident cases).
pub(crate) fn palisade_stack_parts(
    retry: RetryPolicy,
    limiter: RateLimiter,
) -> (
    impl Service<u64, Response = u64, Error = BoxError> + Clone + Send,
    Vec<CircuitBreaker>,
) {
    let bulkhead = Bulkhead::builder()
        .max_concurrent_calls(LIMIT)
        .build()
        .unwrap();
    let breakers: Vec<CircuitBreaker> = (0..ENDPOINTS)
        .map(|k| {
            CircuitBreaker::builder()
                .name(format!("endpoint-{k}"))
                .build()
                .unwrap()
        })
        .collect();
    let balancer = Balancer::new(
        breakers
            .iter()
            .enumerate()
            .map(|(k, breaker)| (k, breaker.layer().gate().layer(Bare))),
    );
    let stack = ServiceBuilder::new()
        .layer(retry.layer())
        .layer(limiter.layer())
        .layer(bulkhead.layer())
        .service(balancer.service());
    (stack, breakers)
}
