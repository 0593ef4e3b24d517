//! [`CircuitBreakerService`]: the `Service` wrapper.

use crate::breaker::CircuitBreaker;
use crate::error::CircuitOpen;
use crate::future::ResponseFuture;
use crate::permit::OwnedPermit;
use palisade_core::classify::{Classify, ErrorIsFailure};
use std::fmt;
use std::task::{Context, Poll};
use tower::BoxError;
use tower_service::Service;

/// A service guarded by a [`CircuitBreaker`]. Built by [`CircuitBreakerLayer`](crate::CircuitBreakerLayer).
///
/// `poll_ready` asks the breaker for a permit. Admitted, it reserves the permit (a half-open
/// probe slot is taken from then on) and then polls the inner service. Rejected, it is ready
/// at once without polling the inner service, and `call` answers with a [`CircuitOpen`]
/// error without calling it, like tower's `LoadShed`: the rejection is fast and the service
/// stays usable. Errors are [`BoxError`]; downcast to [`CircuitOpen`] to tell a rejection
/// from an inner error.
///
/// A clone shares the breaker but not a reservation.
///
/// # Cancel safety
///
/// Dropping the service with a reserved permit, or dropping a response future before it
/// completes, gives the permit back and records nothing (a cancelled call does not count).
/// A panic in the inner service's `call` or while its future is polled counts as a failure
/// and also gives the permit back.
pub struct CircuitBreakerService<S, C = ErrorIsFailure> {
    inner: S,
    breaker: CircuitBreaker,
    classifier: C,
    reserved: Option<Result<OwnedPermit, CircuitOpen>>,
}

impl<S, C> CircuitBreakerService<S, C> {
    /// Wraps `inner` in `breaker`, classifying results with `classifier`.
    pub fn new(inner: S, breaker: CircuitBreaker, classifier: C) -> Self {
        CircuitBreakerService {
            inner,
            breaker,
            classifier,
            reserved: None,
        }
    }

    /// The breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service (a reserved permit is given back).
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, C: Clone> Clone for CircuitBreakerService<S, C> {
    fn clone(&self) -> Self {
        // Never clone a reservation: the clone must ask for its own permit. `share`, not
        // `clone`: a service clone must not allocate (tower clones services per call).
        CircuitBreakerService::new(
            self.inner.clone(),
            self.breaker.share(),
            self.classifier.clone(),
        )
    }
}

impl<S: fmt::Debug, C> fmt::Debug for CircuitBreakerService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerService")
            .field("inner", &self.inner)
            .field("breaker", &self.breaker)
            .field("reserved", &self.reserved)
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Service<Req> for CircuitBreakerService<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !matches!(self.reserved, Some(Ok(_))) {
            self.reserved = Some(self.breaker.acquire());
        }
        if let Some(Err(_)) = self.reserved {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(error)) => {
                // The call will not happen: give the permit back unrecorded.
                self.reserved = None;
                Poll::Ready(Err(error.into()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// # Panics
    ///
    /// If `poll_ready` did not return `Ready(Ok(()))` before.
    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match self
            .reserved
            .take()
            .expect("poll_ready must be called first")
        {
            Ok(mut permit) => {
                permit.0.start();
                // If `call` panics, `permit` is dropped while panicking: a recorded failure.
                let future = self.inner.call(request);
                ResponseFuture::called(future, permit, self.classifier.clone())
            }
            Err(open) => ResponseFuture::rejected(open),
        }
    }
}
