//! [`BulkheadLayer`]: wraps services in a [`Bulkhead`](crate::Bulkhead).

use crate::bulkhead::SharedRef;
use crate::service::BulkheadService;
use palisade_core::classify::ErrorIsFailure;
use std::fmt;
use tower_layer::Layer;

/// Wraps services in one shared [`Bulkhead`](crate::Bulkhead); made by
/// [`Bulkhead::layer`](crate::Bulkhead::layer).
///
/// Every service this layer makes shares the bulkhead's limit.
#[derive(Clone)]
pub struct BulkheadLayer<C = ErrorIsFailure> {
    shared: SharedRef,
    classifier: C,
}

impl<C> fmt::Debug for BulkheadLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadLayer")
            .field("limit", &self.shared.limiter.limit())
            .field("classifier", &std::any::type_name::<C>())
            .finish()
    }
}

impl<C> BulkheadLayer<C> {
    pub(crate) fn new(shared: SharedRef, classifier: C) -> Self {
        BulkheadLayer { shared, classifier }
    }

    /// Classifies results with `classifier` instead: an `Outcome::Failure` is a *drop* for an
    /// adaptive limit (a fixed limit never classifies). Use
    /// [`Timed`](palisade_core::classify::Timed) to count slow calls as drops.
    #[must_use]
    pub fn classify<C2>(self, classifier: C2) -> BulkheadLayer<C2> {
        BulkheadLayer {
            shared: self.shared,
            classifier,
        }
    }
}

impl<S, C: Clone> Layer<S> for BulkheadLayer<C> {
    type Service = BulkheadService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        BulkheadService::new(inner, self.shared.clone(), self.classifier.clone())
    }
}
