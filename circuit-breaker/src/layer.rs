//! [`CircuitBreakerLayer`]: wraps services in a breaker.

use crate::circuit_breaker::CircuitBreaker;
use crate::service::{CircuitBreakerService, Mode};
use palisade_core::classify::ErrorIsFailure;
use tower_layer::Layer;

/// Wraps services in a [`CircuitBreaker`]. Get one from [`CircuitBreaker::layer`] or
/// [`CircuitBreaker::layer_with`].
///
/// Every service this layer builds shares the one breaker it was made from. By default the
/// services reject while the breaker is open ([`Mode::Reject`]); [`gate`](Self::gate) makes
/// them wait instead ([`Mode::Gate`]: see there for when to use which).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade_circuit_breaker::{CircuitBreaker, Mode};
/// use tower::{Layer, service_fn};
///
/// let breaker = CircuitBreaker::new();
/// // Per endpoint, inside a readiness-aware balancer: an open endpoint is not ready.
/// let endpoint = breaker
///     .layer()
///     .gate()
///     .layer(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
/// assert_eq!(endpoint.mode(), Mode::Gate);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct CircuitBreakerLayer<C = ErrorIsFailure> {
    breaker: CircuitBreaker,
    classifier: C,
    mode: Mode,
}

impl<C> CircuitBreakerLayer<C> {
    /// A layer for `breaker` that classifies results with `classifier`.
    pub fn new(breaker: CircuitBreaker, classifier: C) -> Self {
        CircuitBreakerLayer {
            breaker,
            classifier,
            mode: Mode::Reject,
        }
    }

    /// The same breaker with another classifier.
    pub fn classify<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier,
            mode: self.mode,
        }
    }

    /// How the services answer while the breaker admits no call (default [`Mode::Reject`]).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Shorthand for `.mode(Mode::Gate)`: while the breaker is open the services are not
    /// ready, and wake when probes may start.
    pub fn gate(self) -> Self {
        self.mode(Mode::Gate)
    }

    /// The breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService::with_mode(
            inner,
            self.breaker.clone(),
            self.classifier.clone(),
            self.mode,
        )
    }
}
