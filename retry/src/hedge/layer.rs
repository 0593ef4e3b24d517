//! [`HedgePolicyLayer`]: wraps services in [`HedgePolicyService`].

use super::hedge_policy::HedgeShared;
use super::service::HedgePolicyService;
use crate::request::CloneAll;
use palisade_core::classify::ErrorIsFailure;
use std::fmt;
use std::sync::Arc;
use tower_layer::Layer;

/// Applies a [`HedgePolicy`](super::HedgePolicy) to services. Cheap to clone; every service it
/// makes shares the policy (its budget, latency histogram and listeners).
pub struct HedgePolicyLayer<C = ErrorIsFailure, Q = CloneAll> {
    shared: Arc<HedgeShared<C, Q>>,
}

impl<C, Q> HedgePolicyLayer<C, Q> {
    pub(crate) fn from_shared(shared: Arc<HedgeShared<C, Q>>) -> Self {
        HedgePolicyLayer { shared }
    }
}

impl<C, Q> Clone for HedgePolicyLayer<C, Q> {
    fn clone(&self) -> Self {
        HedgePolicyLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C, Q> fmt::Debug for HedgePolicyLayer<C, Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgePolicyLayer")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl<S, C, Q> Layer<S> for HedgePolicyLayer<C, Q> {
    type Service = HedgePolicyService<S, C, Q>;

    fn layer(&self, inner: S) -> Self::Service {
        HedgePolicyService::from_shared(inner, Arc::clone(&self.shared))
    }
}
