//! [`RetryPolicyLayer`]: wraps services in [`RetryPolicyService`].

use crate::request::CloneAll;
use crate::retry_policy::{RetryPolicy, Shared};
use crate::service::RetryPolicyService;
use palisade_core::classify::ErrorIsFailure;
use std::fmt;
use std::sync::Arc;
use tower_layer::Layer;

/// Applies a [`RetryPolicy`] to services. Cheap to clone; every service it makes shares the
/// policy (and so its budget and listeners).
pub struct RetryPolicyLayer<C = ErrorIsFailure, Q = CloneAll> {
    shared: Arc<Shared<C, Q>>,
}

impl<C, Q> RetryPolicyLayer<C, Q> {
    /// A layer applying `policy`.
    #[must_use]
    pub fn new(policy: &RetryPolicy<C, Q>) -> Self {
        RetryPolicyLayer {
            shared: Arc::clone(&policy.shared),
        }
    }
}

impl<C, Q> Clone for RetryPolicyLayer<C, Q> {
    fn clone(&self) -> Self {
        RetryPolicyLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C, Q> fmt::Debug for RetryPolicyLayer<C, Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicyLayer")
            .field("name", &self.shared.name)
            .field("max_attempts", &self.shared.max_attempts)
            .finish_non_exhaustive()
    }
}

impl<S, C, Q> Layer<S> for RetryPolicyLayer<C, Q> {
    type Service = RetryPolicyService<S, C, Q>;

    fn layer(&self, inner: S) -> Self::Service {
        RetryPolicyService::from_shared(inner, Arc::clone(&self.shared))
    }
}
