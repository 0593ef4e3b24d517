//! [`AdaptiveThrottleLayer`]: wraps services in [`AdaptiveThrottleService`].

use super::adaptive_throttle::Shared;
use super::service::AdaptiveThrottleService;
use palisade_core::classify::ErrorIsFailure;
use std::fmt;
use std::sync::Arc;
use tower_layer::Layer;

/// Applies an [`AdaptiveThrottle`](super::AdaptiveThrottle) to services. Cheap to clone; every
/// service it makes shares the throttle's window.
pub struct AdaptiveThrottleLayer<C = ErrorIsFailure> {
    shared: Arc<Shared<C>>,
}

impl<C> AdaptiveThrottleLayer<C> {
    pub(crate) fn from_shared(shared: Arc<Shared<C>>) -> Self {
        AdaptiveThrottleLayer { shared }
    }
}

impl<C> Clone for AdaptiveThrottleLayer<C> {
    fn clone(&self) -> Self {
        AdaptiveThrottleLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C> fmt::Debug for AdaptiveThrottleLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveThrottleLayer")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl<S, C> Layer<S> for AdaptiveThrottleLayer<C> {
    type Service = AdaptiveThrottleService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        AdaptiveThrottleService::from_shared(inner, Arc::clone(&self.shared))
    }
}
