//! [`CircuitBreakerLayer`]: wraps services in a breaker.

use crate::breaker::CircuitBreaker;
use crate::service::CircuitBreakerService;
use palisade_core::classify::ErrorIsFailure;
use tower_layer::Layer;

/// Wraps services in a [`CircuitBreaker`]. Get one from [`CircuitBreaker::layer`] or
/// [`CircuitBreaker::layer_with`].
///
/// Every service this layer builds shares the one breaker it was made from.
#[derive(Clone, Debug)]
pub struct CircuitBreakerLayer<C = ErrorIsFailure> {
    breaker: CircuitBreaker,
    classifier: C,
}

impl<C> CircuitBreakerLayer<C> {
    /// A layer for `breaker` that classifies results with `classifier`.
    pub fn new(breaker: CircuitBreaker, classifier: C) -> Self {
        CircuitBreakerLayer {
            breaker,
            classifier,
        }
    }

    /// The same breaker with another classifier.
    pub fn classify<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier,
        }
    }

    /// The breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService::new(inner, self.breaker.clone(), self.classifier.clone())
    }
}
