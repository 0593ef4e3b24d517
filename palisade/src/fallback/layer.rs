//! The [`FallbackLayer`].

use super::fallback::Shared;
use super::service::FallbackService;
use std::fmt;
use std::sync::Arc;
use tower_layer::Layer;

/// Puts a [`Fallback`](super::Fallback) in a stack; made by
/// [`Fallback::layer`](super::Fallback::layer). Cheap to clone: every service it makes shares
/// the fallback's state.
pub struct FallbackLayer<F, C> {
    shared: Arc<Shared<F, C>>,
}

impl<F, C> FallbackLayer<F, C> {
    pub(crate) fn new(shared: Arc<Shared<F, C>>) -> Self {
        FallbackLayer { shared }
    }
}

impl<F, C> Clone for FallbackLayer<F, C> {
    fn clone(&self) -> Self {
        FallbackLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<F, C> fmt::Debug for FallbackLayer<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayer")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl<S, F, C> Layer<S> for FallbackLayer<F, C> {
    type Service = FallbackService<S, F, C>;

    fn layer(&self, inner: S) -> Self::Service {
        FallbackService::new(inner, Arc::clone(&self.shared))
    }
}
