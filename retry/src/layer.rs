//! [`RetryPolicyLayer`]: wraps services in [`RetryPolicyService`].

use crate::remote_hint::NoRemoteHint;
use crate::request::CloneAll;
use crate::retry_policy::{RetryPolicy, Shared};
use crate::service::RetryPolicyService;
use palisade_core::classify::ErrorIsFailure;
use std::fmt;
use std::sync::Arc;
use tower_layer::Layer;

/// Applies a [`RetryPolicy`] to services. Cheap to clone; every service it makes shares the
/// policy (and so its budget and listeners).
pub struct RetryPolicyLayer<C = ErrorIsFailure, Q = CloneAll, H = NoRemoteHint> {
    shared: Arc<Shared<C, Q, H>>,
}

impl<C, Q, H> RetryPolicyLayer<C, Q, H> {
    /// A layer applying `policy`.
    #[must_use]
    pub fn new(policy: &RetryPolicy<C, Q, H>) -> Self {
        RetryPolicyLayer {
            shared: Arc::clone(&policy.shared),
        }
    }
}

impl<C, Q, H> Clone for RetryPolicyLayer<C, Q, H> {
    fn clone(&self) -> Self {
        RetryPolicyLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C, Q, H> fmt::Debug for RetryPolicyLayer<C, Q, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicyLayer")
            .field("name", &self.shared.name)
            .field("max_attempts", &self.shared.max_attempts)
            .finish_non_exhaustive()
    }
}

impl<S, C, Q, H> Layer<S> for RetryPolicyLayer<C, Q, H> {
    type Service = RetryPolicyService<S, C, Q, H>;

    fn layer(&self, inner: S) -> Self::Service {
        RetryPolicyService::from_shared(inner, Arc::clone(&self.shared))
    }
}
