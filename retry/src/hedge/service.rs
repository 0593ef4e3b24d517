//! [`HedgePolicyService`]: the service that hedges.

use super::future::ResponseFuture;
use super::hedge_policy::{HedgePolicy, HedgeShared};
use crate::request::{CloneAll, RetryRequest};
use palisade_core::BoxError;
use palisade_core::classify::{Classify, ErrorIsFailure};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// Sends hedged copies of slow requests to the inner service; see the [module docs](super).
///
/// # Errors
///
/// When every copy failed, the error (boxed) of the last one to fail.
pub struct HedgePolicyService<S, C = ErrorIsFailure, Q = CloneAll> {
    inner: S,
    shared: Arc<HedgeShared<C, Q>>,
}

impl<S, C, Q> HedgePolicyService<S, C, Q> {
    /// Wraps `inner` with `policy`.
    #[must_use]
    pub fn new(inner: S, policy: &HedgePolicy<C, Q>) -> Self {
        HedgePolicyService::from_shared(inner, Arc::clone(&policy.shared))
    }

    pub(crate) fn from_shared(inner: S, shared: Arc<HedgeShared<C, Q>>) -> Self {
        HedgePolicyService { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, C, Q> Clone for HedgePolicyService<S, C, Q> {
    fn clone(&self) -> Self {
        HedgePolicyService {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, C, Q> fmt::Debug for HedgePolicyService<S, C, Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgePolicyService")
            .field("inner", &self.inner)
            .field("policy", &self.shared.name)
            .finish()
    }
}

impl<S, C, Q, Req> Service<Req> for HedgePolicyService<S, C, Q>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
    Q: RetryRequest<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, C, Q>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    /// # Panics
    ///
    /// Outside a tokio runtime, when the request may be hedged (the hedge timer is tokio's).
    fn call(&mut self, request: Req) -> Self::Future {
        let shared = &self.shared;
        if shared.deposits {
            shared.spend.on_request();
        }
        let copy = shared.requests.clone_request(&request);
        let start = shared.start();
        let service = self.inner.clone();
        let future = self.inner.call(request);
        ResponseFuture::new(future, start, service, copy, Arc::clone(shared))
    }
}
