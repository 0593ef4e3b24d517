//! `ServiceBuilder` methods for each Palisade layer.

#[cfg(feature = "bulkhead")]
use palisade_bulkhead::{Bulkhead, BulkheadLayer};
#[cfg(feature = "circuit-breaker")]
use palisade_circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};
#[cfg(feature = "load-balancer")]
use palisade_load_balancer::{Balancer, BalancerService};
#[cfg(feature = "rate-limit")]
use palisade_rate_limit::{RateLimiter, RateLimiterLayer};
#[cfg(feature = "retry")]
use palisade_retry::{RetryPolicy, RetryPolicyLayer};
use tower::ServiceBuilder;
#[allow(unused_imports, reason = "used only when a layer feature is on")]
use tower_layer::Stack;

/// Adds Palisade's layers to a [`ServiceBuilder`] by handle, so a stack reads top to bottom
/// in the order requests flow.
///
/// Each method is `.layer(handle.layer())`: services built from one handle share its state,
/// however many stacks it is used in.
///
/// One rule for classifiers: every layer that classifies results (the breaker, the bulkhead)
/// has a `<method>_with(handle, classifier)` beside `<method>(handle)`, which is
/// `.layer(handle.layer().classify(classifier))`. The default classifier counts an `Err` as a
/// failure except a local rejection of a layer below, which it ignores
/// ([`ErrorIsFailure`](palisade_core::ErrorIsFailure)). The retry policy takes its classifier
/// on its builder (`RetryPolicy::builder().classify(..)`), since the policy, not the stack,
/// decides what is retried.
///
/// # Example
///
/// ```
/// # #[cfg(all(feature = "circuit-breaker", feature = "bulkhead", feature = "rate-limit", feature = "retry"))]
/// # fn main() -> Result<(), palisade::common::ConfigError> {
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

    /// Wraps the stack below in `breaker`'s circuit breaker, classifying results with
    /// `classifier` (any [`Classify`](palisade_core::Classify), closures included):
    /// `.layer(breaker.layer().classify(classifier))`.
    #[cfg(feature = "circuit-breaker")]
    fn circuit_breaker_with<C>(
        self,
        breaker: &CircuitBreaker,
        classifier: C,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<C>, L>>;

    /// Wraps the stack below in `bulkhead`'s concurrency limit.
    #[cfg(feature = "bulkhead")]
    fn bulkhead(self, bulkhead: &Bulkhead) -> ServiceBuilder<Stack<BulkheadLayer, L>>;

    /// Wraps the stack below in `bulkhead`'s concurrency limit, classifying results with
    /// `classifier` (what an adaptive limit counts as a drop):
    /// `.layer(bulkhead.layer().classify(classifier))`.
    #[cfg(feature = "bulkhead")]
    fn bulkhead_with<C>(
        self,
        bulkhead: &Bulkhead,
        classifier: C,
    ) -> ServiceBuilder<Stack<BulkheadLayer<C>, L>>;

    /// Wraps the stack below in `limiter`'s rate limit (one token per request).
    ///
    /// Named `rate_limiter` because `ServiceBuilder::rate_limit` is tower's own, unshared one.
    #[cfg(feature = "rate-limit")]
    fn rate_limiter(self, limiter: &RateLimiter) -> ServiceBuilder<Stack<RateLimiterLayer, L>>;

    /// Retries the stack below according to `policy` (and its budget).
    #[cfg(feature = "retry")]
    fn retry_policy<C, Q, H>(
        self,
        policy: &RetryPolicy<C, Q, H>,
    ) -> ServiceBuilder<Stack<RetryPolicyLayer<C, Q, H>, L>>;

    /// Answers the stack's failures, timeouts and local rejections with `fallback`'s
    /// function (the outermost layer of the recommended order).
    fn fallback<F, C>(
        self,
        fallback: &crate::fallback::Fallback<F, C>,
    ) -> ServiceBuilder<Stack<crate::fallback::FallbackLayer<F, C>, L>>;

    /// Ends the stack with `balancer` as its service: `.service(balancer.service())`. A
    /// balancer is the leaf of a client stack (it owns the endpoints), so this is the last
    /// call of the builder; per-endpoint layers wrap each endpoint's service before
    /// [`Balancer::insert`].
    ///
    /// ```
    /// # #[cfg(all(feature = "load-balancer", feature = "retry"))]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower::BoxError> {
    /// use palisade::prelude::*;
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    ///
    /// let endpoint = service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) });
    /// let balancer = Balancer::new([("a", endpoint), ("b", endpoint)]);
    /// let retry = RetryPolicy::builder().build()?;
    /// let client = ServiceBuilder::new().retry_policy(&retry).balancer(&balancer);
    /// assert_eq!(client.oneshot(7).await?, 7);
    /// # Ok(())
    /// # }
    /// # #[cfg(not(all(feature = "load-balancer", feature = "retry")))]
    /// # fn main() {}
    /// ```
    #[cfg(feature = "load-balancer")]
    fn balancer<K, S>(self, balancer: &Balancer<K, S>) -> L::Service
    where
        L: tower_layer::Layer<BalancerService<K, S>>,
        K: Clone + PartialEq + std::fmt::Debug + Send + Sync + 'static,
        S: Clone + Send + Sync + 'static;

    /// Ends the stack with `balancer` as its service, judging each endpoint's results with
    /// `classifier`: `.service(balancer.service_with(classifier))`. What the classifier calls a
    /// failure is charged the balancer's failure penalty and counts toward outlier ejection.
    ///
    /// The default ([`balancer`](Self::balancer)) counts only an `Err` as a failure. Give an
    /// HTTP client `palisade::http::HttpClassifier` here (and to each endpoint's breaker): to
    /// the default, an endpoint that answers `500` at once is the fastest endpoint there is,
    /// and P2C sends it the most calls.
    ///
    /// ```
    /// # #[cfg(all(feature = "load-balancer", feature = "retry"))]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower::BoxError> {
    /// use palisade::common::{BoxError, Outcome};
    /// use palisade::prelude::*;
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    ///
    /// // Stands in for an HTTP client: a status code, answered as `Ok`.
    /// let failing = service_fn(|_: u32| async { Ok::<u16, BoxError>(503) });
    /// let server_errors_fail = |result: Result<&u16, &BoxError>| match result {
    ///     Ok(status) if *status >= 500 => Outcome::Failure,
    ///     Ok(_) => Outcome::Success,
    ///     Err(_) => Outcome::Failure,
    /// };
    /// let balancer = Balancer::new([("a", failing)]);
    /// let client = ServiceBuilder::new().balancer_with(&balancer, server_errors_fail);
    /// assert_eq!(client.oneshot(1).await?, 503);
    /// assert_eq!(balancer.snapshot().endpoints[0].failures, 1, "the 503 is a failure");
    /// # Ok(())
    /// # }
    /// # #[cfg(not(all(feature = "load-balancer", feature = "retry")))]
    /// # fn main() {}
    /// ```
    #[cfg(feature = "load-balancer")]
    fn balancer_with<K, S, C>(self, balancer: &Balancer<K, S>, classifier: C) -> L::Service
    where
        L: tower_layer::Layer<BalancerService<K, S, C>>,
        K: Clone + PartialEq + std::fmt::Debug + Send + Sync + 'static,
        S: Clone + Send + Sync + 'static,
        C: Clone;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    #[cfg(feature = "circuit-breaker")]
    fn circuit_breaker(
        self,
        breaker: &CircuitBreaker,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer, L>> {
        self.layer(breaker.layer())
    }

    #[cfg(feature = "circuit-breaker")]
    fn circuit_breaker_with<C>(
        self,
        breaker: &CircuitBreaker,
        classifier: C,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<C>, L>> {
        self.layer(breaker.layer().classify(classifier))
    }

    #[cfg(feature = "bulkhead")]
    fn bulkhead(self, bulkhead: &Bulkhead) -> ServiceBuilder<Stack<BulkheadLayer, L>> {
        self.layer(bulkhead.layer())
    }

    #[cfg(feature = "bulkhead")]
    fn bulkhead_with<C>(
        self,
        bulkhead: &Bulkhead,
        classifier: C,
    ) -> ServiceBuilder<Stack<BulkheadLayer<C>, L>> {
        self.layer(bulkhead.layer().classify(classifier))
    }

    #[cfg(feature = "rate-limit")]
    fn rate_limiter(self, limiter: &RateLimiter) -> ServiceBuilder<Stack<RateLimiterLayer, L>> {
        self.layer(limiter.layer())
    }

    #[cfg(feature = "retry")]
    fn retry_policy<C, Q, H>(
        self,
        policy: &RetryPolicy<C, Q, H>,
    ) -> ServiceBuilder<Stack<RetryPolicyLayer<C, Q, H>, L>> {
        self.layer(policy.layer())
    }

    fn fallback<F, C>(
        self,
        fallback: &crate::fallback::Fallback<F, C>,
    ) -> ServiceBuilder<Stack<crate::fallback::FallbackLayer<F, C>, L>> {
        self.layer(fallback.layer())
    }

    #[cfg(feature = "load-balancer")]
    fn balancer<K, S>(self, balancer: &Balancer<K, S>) -> L::Service
    where
        L: tower_layer::Layer<BalancerService<K, S>>,
        K: Clone + PartialEq + std::fmt::Debug + Send + Sync + 'static,
        S: Clone + Send + Sync + 'static,
    {
        self.service(balancer.service())
    }

    #[cfg(feature = "load-balancer")]
    fn balancer_with<K, S, C>(self, balancer: &Balancer<K, S>, classifier: C) -> L::Service
    where
        L: tower_layer::Layer<BalancerService<K, S, C>>,
        K: Clone + PartialEq + std::fmt::Debug + Send + Sync + 'static,
        S: Clone + Send + Sync + 'static,
        C: Clone,
    {
        self.service(balancer.service_with(classifier))
    }
}

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

#[cfg(all(test, feature = "circuit-breaker", feature = "bulkhead"))]
mod tests {
    use super::ServiceBuilderExt;
    use palisade_bulkhead::Bulkhead;
    use palisade_circuit_breaker::{CircuitBreaker, State};
    use palisade_core::{BoxError, Outcome};
    use tower::{ServiceBuilder, ServiceExt};

    /// A status code the inner service returns as `Ok`, judged by the user's classifier.
    fn server_errors_fail(result: Result<&u16, &BoxError>) -> Outcome {
        match result {
            Ok(status) if *status >= 500 => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }

    #[tokio::test]
    async fn circuit_breaker_with_uses_the_given_classifier() {
        let breaker = CircuitBreaker::builder()
            .consecutive_failures(2)
            .build()
            .unwrap();
        let bulkhead = Bulkhead::builder().max_concurrent_calls(4).build().unwrap();
        let svc = ServiceBuilder::new()
            .circuit_breaker_with(&breaker, server_errors_fail)
            .bulkhead_with(&bulkhead, server_errors_fail)
            .service_fn(|status: u16| async move { Ok::<_, BoxError>(status) });
        assert_eq!(svc.clone().oneshot(200).await.unwrap(), 200);
        assert_eq!(breaker.state(), State::Closed);
        // Two `Ok(503)`s: failures only by the classifier's judgement.
        for _ in 0..2 {
            assert_eq!(svc.clone().oneshot(503).await.unwrap(), 503);
        }
        assert_eq!(breaker.state(), State::Open);
        // With the default classifier the same responses are successes.
        let other = CircuitBreaker::builder()
            .consecutive_failures(2)
            .build()
            .unwrap();
        let plain = ServiceBuilder::new()
            .circuit_breaker(&other)
            .service_fn(|status: u16| async move { Ok::<_, BoxError>(status) });
        for _ in 0..2 {
            assert_eq!(plain.clone().oneshot(503).await.unwrap(), 503);
        }
        assert_eq!(other.state(), State::Closed);
    }
}
