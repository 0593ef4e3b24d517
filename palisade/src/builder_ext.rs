//! `ServiceBuilder` methods for each Palisade layer.

#[cfg(feature = "bulkhead")]
use palisade_bulkhead::{Bulkhead, BulkheadLayer};
#[cfg(feature = "circuit-breaker")]
use palisade_circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};
#[cfg(feature = "rate-limit")]
use palisade_rate_limit::{RateLimiter, RateLimiterLayer};
#[cfg(feature = "retry")]
use palisade_retry::{RetryLayer, RetryPolicy};
use tower::ServiceBuilder;
#[allow(unused_imports, reason = "used only when a layer feature is on")]
use tower_layer::Stack;

/// Adds Palisade's layers to a [`ServiceBuilder`] by handle, so a stack reads top to bottom
/// in the order requests flow.
///
/// Each method is `.layer(handle.layer())`: services built from one handle share its state,
/// however many stacks it is used in.
///
/// # Example
///
/// ```
/// # #[cfg(all(feature = "circuit-breaker", feature = "bulkhead", feature = "rate-limit", feature = "retry"))]
/// # fn main() -> Result<(), palisade::core::ConfigError> {
/// use palisade::prelude::*;
/// use std::time::Duration;
/// use tower::ServiceBuilder;
///
/// let breaker = CircuitBreaker::builder().name("inventory").build()?;
/// let bulkhead = Bulkhead::builder().max_concurrent_calls(64).build()?;
/// let limiter = RateLimiter::builder().rate(500, Duration::from_secs(1)).burst(50).build()?;
/// let retry = RetryPolicy::builder().max_attempts(3).build()?;
///
/// let client = ServiceBuilder::new()
///     .retry_policy(&retry)        // outermost: a retry passes through every layer below
///     .circuit_breaker(&breaker)
///     .rate_limiter(&limiter)
///     .bulkhead(&bulkhead)
///     .service_fn(|id: u32| async move { Ok::<_, tower::BoxError>(id) });
/// # let _ = client;
/// # Ok(())
/// # }
/// # #[cfg(not(all(feature = "circuit-breaker", feature = "bulkhead", feature = "rate-limit", feature = "retry")))]
/// # fn main() {}
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed {
    /// Wraps the stack below in `breaker`'s circuit breaker.
    #[cfg(feature = "circuit-breaker")]
    fn circuit_breaker(
        self,
        breaker: &CircuitBreaker,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer, L>>;

    /// Wraps the stack below in `bulkhead`'s concurrency limit.
    #[cfg(feature = "bulkhead")]
    fn bulkhead(self, bulkhead: &Bulkhead) -> ServiceBuilder<Stack<BulkheadLayer, L>>;

    /// Wraps the stack below in `limiter`'s rate limit (one token per request).
    ///
    /// Named `rate_limiter` because `ServiceBuilder::rate_limit` is tower's own, unshared one.
    #[cfg(feature = "rate-limit")]
    fn rate_limiter(self, limiter: &RateLimiter) -> ServiceBuilder<Stack<RateLimiterLayer, L>>;

    /// Retries the stack below according to `policy` (and its budget).
    #[cfg(feature = "retry")]
    fn retry_policy<C, Q>(
        self,
        policy: &RetryPolicy<C, Q>,
    ) -> ServiceBuilder<Stack<RetryLayer<C, Q>, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    #[cfg(feature = "circuit-breaker")]
    fn circuit_breaker(
        self,
        breaker: &CircuitBreaker,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer, L>> {
        self.layer(breaker.layer())
    }

    #[cfg(feature = "bulkhead")]
    fn bulkhead(self, bulkhead: &Bulkhead) -> ServiceBuilder<Stack<BulkheadLayer, L>> {
        self.layer(bulkhead.layer())
    }

    #[cfg(feature = "rate-limit")]
    fn rate_limiter(self, limiter: &RateLimiter) -> ServiceBuilder<Stack<RateLimiterLayer, L>> {
        self.layer(limiter.layer())
    }

    #[cfg(feature = "retry")]
    fn retry_policy<C, Q>(
        self,
        policy: &RetryPolicy<C, Q>,
    ) -> ServiceBuilder<Stack<RetryLayer<C, Q>, L>> {
        self.layer(policy.layer())
    }
}

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}
