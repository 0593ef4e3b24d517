//! [`RetryLayer`]: wraps services in [`Retry`].

use crate::config::{RetryPolicy, Shared};
use crate::request::CloneAll;
use crate::service::Retry;
use palisade_core::classify::ErrorIsFailure;
use std::fmt;
use std::sync::Arc;
use tower_layer::Layer;

/// Applies a [`RetryPolicy`] to services. Cheap to clone; every service it makes shares the
/// policy (and so its budget and listeners).
pub struct RetryLayer<C = ErrorIsFailure, Q = CloneAll> {
    shared: Arc<Shared<C, Q>>,
}

impl<C, Q> RetryLayer<C, Q> {
    /// A layer applying `policy`.
    #[must_use]
    pub fn new(policy: &RetryPolicy<C, Q>) -> Self {
        RetryLayer {
            shared: Arc::clone(&policy.shared),
        }
    }
}

impl<C, Q> Clone for RetryLayer<C, Q> {
    fn clone(&self) -> Self {
        RetryLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C, Q> fmt::Debug for RetryLayer<C, Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("name", &self.shared.name)
            .field("max_attempts", &self.shared.max_attempts)
            .finish_non_exhaustive()
    }
}

impl<S, C, Q> Layer<S> for RetryLayer<C, Q> {
    type Service = Retry<S, C, Q>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::from_shared(inner, Arc::clone(&self.shared))
    }
}
