//! The response future of [`BulkheadService`](crate::BulkheadService).

use crate::bulkhead::Permit;
use crate::error::BoxError;
use palisade_core::classify::Classify;
use pin_project::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// The inner service's future, holding the call's bulkhead slot.
///
/// The slot is given back when the inner future completes (success or error), or when this
/// future is dropped first (cancellation), or while unwinding from a panic in the inner
/// future. An adaptive bulkhead measures the call's RTT and classifies its result here.
#[pin_project]
pub struct ResponseFuture<F, C> {
    #[pin]
    inner: F,
    permit: Option<Permit>,
    classifier: C,
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("permit", &self.permit)
            .finish_non_exhaustive()
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn new(inner: F, permit: Permit, classifier: C) -> Self {
        ResponseFuture {
            inner,
            permit: Some(permit),
            classifier,
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Some(permit) = this.permit.take() {
            if permit.is_adaptive() {
                let classifier = &*this.classifier;
                permit.complete(|rtt| classifier.classify_timed(result.as_ref(), rtt));
            }
            drop(permit);
        }
        Poll::Ready(result.map_err(Into::into))
    }
}
