//! The [`FallbackService`].

use super::fallback::{FallbackFn, Shared};
use super::future::ResponseFuture;
use palisade_core::{BoxError, Classify};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::Service;

/// The service of a [`FallbackLayer`](super::FallbackLayer). Returns `BoxError`: the primary's
/// error passed through (an ignored or successful result, or a due fallback refused for want
/// of a slot), or [`FallbackFailed`](super::FallbackFailed) when the fallback failed too.
///
/// Readiness is the inner service's: an error from the inner `poll_ready` (a service broken
/// for good, by tower's contract) is returned as it is, not answered by the fallback.
pub struct FallbackService<S, F, C> {
    inner: S,
    shared: Arc<Shared<F, C>>,
}

impl<S, F, C> FallbackService<S, F, C> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<F, C>>) -> Self {
        FallbackService { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, F, C> Clone for FallbackService<S, F, C> {
    fn clone(&self) -> Self {
        FallbackService {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, F, C> fmt::Debug for FallbackService<S, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackService")
            .field("inner", &self.inner)
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl<S, F, C, Req> Service<Req> for FallbackService<S, F, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    F: FallbackFn<S::Response>,
    C: Classify<S::Response, BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, F, C, S::Response>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        ResponseFuture::new(self.inner.call(request), Arc::clone(&self.shared))
    }
}
