//! [`RetryPolicyService`]: the service that retries.

use crate::future::ResponseFuture;
use crate::remote_hint::{NoRemoteHint, RemoteHint};
use crate::request::{CloneAll, RetryRequest};
use crate::retry_policy::{RetryPolicy, Shared};
use palisade_core::BoxError;
use palisade_core::classify::{Classify, ErrorIsFailure};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// Retries failed requests to the inner service by its [`RetryPolicy`].
///
/// Each call deposits into the policy's budget, copies the request if another attempt may
/// follow, and clones the inner service (for the retries; an `Arc` bump for most services).
/// See the [crate docs](crate) for the whole behaviour.
///
/// # Errors
///
/// The inner service's error (boxed) of the last attempt; [`AttemptTimedOut`](crate::AttemptTimedOut)
/// if the last attempt timed out; [`DeadlineExceeded`](crate::DeadlineExceeded) if the deadline
/// passed mid-attempt.
pub struct RetryPolicyService<S, C = ErrorIsFailure, Q = CloneAll, H = NoRemoteHint> {
    inner: S,
    shared: Arc<Shared<C, Q, H>>,
}

impl<S, C, Q, H> RetryPolicyService<S, C, Q, H> {
    /// Wraps `inner` with `policy`.
    #[must_use]
    pub fn new(inner: S, policy: &RetryPolicy<C, Q, H>) -> Self {
        RetryPolicyService::from_shared(inner, Arc::clone(&policy.shared))
    }

    pub(crate) fn from_shared(inner: S, shared: Arc<Shared<C, Q, H>>) -> Self {
        RetryPolicyService { inner, shared }
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

impl<S: Clone, C, Q, H> Clone for RetryPolicyService<S, C, Q, H> {
    fn clone(&self) -> Self {
        RetryPolicyService {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, C, Q, H> fmt::Debug for RetryPolicyService<S, C, Q, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicyService")
            .field("inner", &self.inner)
            .field("policy", &self.shared.name)
            .finish()
    }
}

impl<S, C, Q, H, Req> Service<Req> for RetryPolicyService<S, C, Q, H>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
    Q: RetryRequest<Req>,
    H: RemoteHint<S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, C, Q, H>;

    /// Ready at once when the policy has a deadline or an attempt timeout: the response future
    /// then awaits the inner service's readiness itself, within those limits (see the crate
    /// docs, "Readiness"); nothing is reserved here, so a ready service dropped without `call`
    /// holds nothing below. Without either limit, the inner service's readiness, delegated.
    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.shared.bounds_readiness() {
            return Poll::Ready(Ok(()));
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    /// # Panics
    ///
    /// If the policy has a deadline or an attempt timeout and the response future has to
    /// wait (for readiness, an attempt or a backoff) outside a tokio runtime: their timer is
    /// tokio's, armed at the first wait. A call answered at once needs no runtime.
    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let shared = &self.shared;
        shared.spend.on_request();
        if shared.bounds_readiness() {
            // `poll_ready` did not ask the inner service: the future waits for its readiness
            // (on the clone it keeps for retries), under the deadline and the attempt timeout.
            let service = self.inner.clone();
            return ResponseFuture::awaiting_ready(service, request, Arc::clone(shared));
        }
        let copy = if shared.max_attempts > 1 {
            shared.requests.clone_request(&request)
        } else {
            None
        };
        let retry_service = self.inner.clone();
        let future = self.inner.call(request);
        ResponseFuture::new(future, retry_service, copy, Arc::clone(shared))
    }
}
