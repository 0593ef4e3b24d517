//! The services.

use crate::future::ResponseFuture;
use crate::keyed_leased_rate_limiter::KeyedLeasedRateLimiter;
use crate::leased_rate_limiter::LeasedRateLimiter;
use crate::redis_rate_limiter::RedisRateLimiter;
use palisade_core::BoxError;
use std::fmt;
use std::hash::Hash;
use std::task::{Context, Poll};
use tower_service::Service;

/// Rate limits each request on the global Redis bucket of its key. Made by
/// [`RedisRateLimiterLayer`](crate::RedisRateLimiterLayer).
///
/// `poll_ready` is the inner service's (the limit never makes it fail or wait); `call` takes
/// the ready inner service into the response future (leaving a clone in its place, so `S:
/// Clone`), which asks Redis and then calls it, or fails with the rejection (see
/// [`RedisRateLimiter::acquire`] for the error types). A rejected request never reaches the
/// inner service.
#[derive(Clone)]
pub struct RedisRateLimiterService<S, F> {
    inner: S,
    limiter: RedisRateLimiter,
    key_and_cost: F,
}

impl<S, F> RedisRateLimiterService<S, F> {
    pub(crate) fn new(inner: S, limiter: RedisRateLimiter, key_and_cost: F) -> Self {
        RedisRateLimiterService {
            inner,
            limiter,
            key_and_cost,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the wrapper, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug, F> fmt::Debug for RedisRateLimiterService<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiterService")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<S, F, K, Req> Service<Req> for RedisRateLimiterService<S, F>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    F: Fn(&Req) -> (K, u32),
    K: Into<String>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let (key, cost) = (self.key_and_cost)(&request);
        let key: String = key.into();
        let limiter = self.limiter.clone();
        let acquire = Box::pin(async move { limiter.acquire(&key, cost).await });
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::acquiring(acquire, ready, request)
    }
}

/// Takes one token per request from a [`LeasedRateLimiter`]. Made by
/// [`LeasedRateLimiterLayer`](crate::LeasedRateLimiterLayer).
///
/// The hot path (tokens in the local pool): one CAS in `call`, then the inner service is
/// called at once, no allocation. An empty pool: as [`RedisRateLimiterService`], the ready
/// inner service goes into the future, which waits for a lease (so `S: Clone`).
#[derive(Clone)]
pub struct LeasedRateLimiterService<S> {
    inner: S,
    limiter: LeasedRateLimiter,
}

impl<S> LeasedRateLimiterService<S> {
    pub(crate) fn new(inner: S, limiter: LeasedRateLimiter) -> Self {
        LeasedRateLimiterService { inner, limiter }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the wrapper, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for LeasedRateLimiterService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeasedRateLimiterService")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .finish()
    }
}

impl<S, Req> Service<Req> for LeasedRateLimiterService<S>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        if self.limiter.try_acquire_local(1) {
            return ResponseFuture::calling(self.inner.call(request));
        }
        let limiter = self.limiter.clone();
        let acquire = Box::pin(async move { limiter.acquire(1).await });
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::acquiring(acquire, ready, request)
    }
}

/// Takes one token per request from the local pool of the request's key in a
/// [`KeyedLeasedRateLimiter`]. Made by
/// [`KeyedLeasedRateLimiterLayer`](crate::KeyedLeasedRateLimiterLayer).
///
/// The hot path (the key's pool holds tokens): the key function, a hash, a shard lock and one
/// CAS in `call`, then the inner service is called at once, no allocation (beyond what the
/// key function does). Otherwise, as [`LeasedRateLimiterService`]: the ready inner service
/// goes into the future, which waits for a lease of that key (so `S: Clone`); a new key at
/// the cap fails with `palisade_rate_limit::TooManyKeys`.
pub struct KeyedLeasedRateLimiterService<S, K, F> {
    inner: S,
    limiter: KeyedLeasedRateLimiter<K>,
    key_fn: F,
}

impl<S, K, F> KeyedLeasedRateLimiterService<S, K, F> {
    pub(crate) fn new(inner: S, limiter: KeyedLeasedRateLimiter<K>, key_fn: F) -> Self {
        KeyedLeasedRateLimiterService {
            inner,
            limiter,
            key_fn,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the wrapper, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, K, F: Clone> Clone for KeyedLeasedRateLimiterService<S, K, F> {
    fn clone(&self) -> Self {
        KeyedLeasedRateLimiterService {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
            key_fn: self.key_fn.clone(),
        }
    }
}

impl<S: fmt::Debug, K, F> fmt::Debug for KeyedLeasedRateLimiterService<S, K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLeasedRateLimiterService")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<S, K, F, Req> Service<Req> for KeyedLeasedRateLimiterService<S, K, F>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    F: Fn(&Req) -> K,
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let key = (self.key_fn)(&request);
        if self.limiter.try_acquire_local(&key, 1) {
            return ResponseFuture::calling(self.inner.call(request));
        }
        let limiter = self.limiter.clone();
        let acquire = Box::pin(async move { limiter.acquire(&key, 1).await });
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::acquiring(acquire, ready, request)
    }
}
