//! The rate-limit services.

use crate::cost::{Cost, UnitCost};
use crate::error::{BoxError, CostExceedsBurst, RateLimited};
use crate::future::{DeferredFuture, ResponseFuture};
use crate::keyed::KeyedRateLimiter;
use crate::limiter::RateLimiter;
use crate::state::Acquired;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::Sleep;
use tower_service::Service;

/// Limits the rate of requests to `S` with a shared [`RateLimiter`], one token per request.
///
/// Following tower's readiness contract, `poll_ready` takes the token: a service that reports
/// ready holds its permit, and `call` spends it. Over the limit, in [`Mode::Reject`] the service
/// is ready at once and `call` fails with [`RateLimited`]; in [`Mode::Wait`] `poll_ready` is
/// `Pending` until the reserved token is due (on the tokio timer), or ready with a rejection if
/// that is further away than `max_wait`.
///
/// Errors are `tower::BoxError`: downcast to [`RateLimited`], or to the inner service's error.
///
/// # Cancel safety
///
/// A token taken by `poll_ready` and never spent (the service dropped before `call`) is lost:
/// the limiter errs on the side of admitting less. Clones never share a taken token.
///
/// [`Mode::Reject`]: crate::Mode::Reject
/// [`Mode::Wait`]: crate::Mode::Wait
pub struct RateLimiterService<S> {
    inner: S,
    limiter: RateLimiter,
    permit: Permit,
}

enum Permit {
    None,
    Admitted,
    Waiting(Pin<Box<Sleep>>),
    Rejected(RateLimited),
}

impl<S> RateLimiterService<S> {
    /// Wraps `inner`, drawing from `limiter`.
    pub fn new(inner: S, limiter: RateLimiter) -> Self {
        RateLimiterService {
            inner,
            limiter,
            permit: Permit::None,
        }
    }

    /// The limiter this service draws from.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
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

impl<S: Clone> Clone for RateLimiterService<S> {
    /// A clone shares the limiter but not a token this service has taken.
    fn clone(&self) -> Self {
        RateLimiterService::new(self.inner.clone(), self.limiter.clone())
    }
}

impl<S: fmt::Debug> fmt::Debug for RateLimiterService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let permit = match self.permit {
            Permit::None => "none",
            Permit::Admitted => "admitted",
            Permit::Waiting(_) => "waiting",
            Permit::Rejected(_) => "rejected",
        };
        f.debug_struct("RateLimiterService")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .field("permit", &permit)
            .finish()
    }
}

impl<S, Req> Service<Req> for RateLimiterService<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        loop {
            match &mut self.permit {
                Permit::Admitted => return self.inner.poll_ready(cx).map_err(Into::into),
                Permit::Waiting(sleep) => {
                    ready!(sleep.as_mut().poll(cx));
                    self.permit = Permit::Admitted;
                }
                // Polled again before `call`: decide afresh rather than hand out a stale
                // rejection.
                Permit::None | Permit::Rejected(_) => {
                    self.permit = match self.limiter.acquire_for_mode(1) {
                        Acquired::Now(0) => Permit::Admitted,
                        Acquired::Now(wait) => Permit::Waiting(Box::pin(tokio::time::sleep(
                            Duration::from_nanos(wait),
                        ))),
                        Acquired::Denied(after) => {
                            self.permit =
                                Permit::Rejected(RateLimited::new(Duration::from_nanos(after)));
                            return Poll::Ready(Ok(()));
                        }
                        // A burst is at least one token: cannot happen; refuse safely.
                        Acquired::TooCostly(_) => {
                            self.permit = Permit::Rejected(RateLimited::new(Duration::MAX));
                            return Poll::Ready(Ok(()));
                        }
                    };
                }
            }
        }
    }

    fn call(&mut self, request: Req) -> Self::Future {
        match std::mem::replace(&mut self.permit, Permit::None) {
            Permit::Admitted => ResponseFuture::called(self.inner.call(request)),
            Permit::Rejected(error) => ResponseFuture::rejected(Box::new(error)),
            Permit::None | Permit::Waiting(_) => panic!("poll_ready must be called first"),
        }
    }
}

/// Limits the rate of requests to `S` with a shared [`RateLimiter`], each request taking the
/// tokens its [`Cost`] says.
///
/// The cost is known only from the request, so the tokens are taken in `call` (`poll_ready`
/// readies the inner service). Over the limit the response future fails with
/// [`RateLimited`]; a cost above the burst fails at once with [`CostExceedsBurst`], whatever the
/// mode. In [`Mode::Wait`](crate::Mode::Wait), a request that must wait holds the inner
/// service that was made ready for it (a clone takes its place, as in tower's `Retry`), so `S`
/// must be `Clone`.
pub struct WeightedRateLimiterService<S, C> {
    inner: S,
    limiter: RateLimiter,
    cost: C,
}

impl<S, C> WeightedRateLimiterService<S, C> {
    /// Wraps `inner`, drawing `cost` tokens per request from `limiter`.
    pub fn new(inner: S, limiter: RateLimiter, cost: C) -> Self {
        WeightedRateLimiterService {
            inner,
            limiter,
            cost,
        }
    }

    /// The limiter this service draws from.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
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

impl<S: Clone, C: Clone> Clone for WeightedRateLimiterService<S, C> {
    fn clone(&self) -> Self {
        WeightedRateLimiterService::new(self.inner.clone(), self.limiter.clone(), self.cost.clone())
    }
}

impl<S: fmt::Debug, C> fmt::Debug for WeightedRateLimiterService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeightedRateLimiterService")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Service<Req> for WeightedRateLimiterService<S, C>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Cost<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = DeferredFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let cost = self.cost.cost(&request);
        let decision = match self.limiter.acquire_for_mode(cost) {
            Acquired::Now(wait) => Ok(wait),
            Acquired::Denied(after) => {
                Err(Box::new(RateLimited::new(Duration::from_nanos(after))) as BoxError)
            }
            Acquired::TooCostly(burst) => Err(Box::new(CostExceedsBurst::new(cost, burst)) as _),
        };
        DeferredFuture::new(decision, &mut self.inner, request)
    }
}

/// Limits each key's rate with a shared [`KeyedRateLimiter`]; `F` extracts the key from the
/// request, `C` its cost ([`UnitCost`] by default).
///
/// Decided in `call`, like [`WeightedRateLimiterService`]; failures are [`RateLimited`],
/// [`CostExceedsBurst`] or [`TooManyKeys`](crate::TooManyKeys), boxed.
pub struct KeyedRateLimiterService<S, K, F, C = UnitCost> {
    inner: S,
    limiter: KeyedRateLimiter<K>,
    key: F,
    cost: C,
}

impl<S, K, F, C> KeyedRateLimiterService<S, K, F, C> {
    /// Wraps `inner`, drawing `cost` tokens per request from the bucket of the key `key`
    /// extracts.
    pub fn new(inner: S, limiter: KeyedRateLimiter<K>, key: F, cost: C) -> Self {
        KeyedRateLimiterService {
            inner,
            limiter,
            key,
            cost,
        }
    }

    /// The limiter this service draws from.
    pub fn limiter(&self) -> &KeyedRateLimiter<K> {
        &self.limiter
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

impl<S: Clone, K, F: Clone, C: Clone> Clone for KeyedRateLimiterService<S, K, F, C> {
    fn clone(&self) -> Self {
        KeyedRateLimiterService::new(
            self.inner.clone(),
            self.limiter.clone(),
            self.key.clone(),
            self.cost.clone(),
        )
    }
}

impl<S: fmt::Debug, K, F, C> fmt::Debug for KeyedRateLimiterService<S, K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiterService")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<S, K, F, C, Req> Service<Req> for KeyedRateLimiterService<S, K, F, C>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone,
    F: Fn(&Req) -> K,
    C: Cost<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = DeferredFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let key = (self.key)(&request);
        let cost = self.cost.cost(&request);
        let decision = self
            .limiter
            .acquire_for_mode(&key, cost)
            .map_err(|rejection| rejection.boxed());
        DeferredFuture::new(decision, &mut self.inner, request)
    }
}
