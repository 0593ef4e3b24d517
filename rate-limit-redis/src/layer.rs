//! The layers.

use crate::keyed_leased_rate_limiter::KeyedLeasedRateLimiter;
use crate::leased_rate_limiter::LeasedRateLimiter;
use crate::redis_rate_limiter::RedisRateLimiter;
use crate::service::{
    KeyedLeasedRateLimiterService, LeasedRateLimiterService, RedisRateLimiterService,
};
use std::fmt;
use tower_layer::Layer;

/// Rate limits each request on the global bucket and cost a function of the request gives
/// (`Fn(&Req) -> (impl Into<String>, u32)`). Made by [`RedisRateLimiter::layer`].
#[derive(Clone)]
pub struct RedisRateLimiterLayer<F> {
    limiter: RedisRateLimiter,
    key_and_cost: F,
}

impl<F> RedisRateLimiterLayer<F> {
    pub(crate) fn new(limiter: RedisRateLimiter, key_and_cost: F) -> Self {
        RedisRateLimiterLayer {
            limiter,
            key_and_cost,
        }
    }
}

impl<F> fmt::Debug for RedisRateLimiterLayer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiterLayer")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<S, F: Clone> Layer<S> for RedisRateLimiterLayer<F> {
    type Service = RedisRateLimiterService<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        RedisRateLimiterService::new(inner, self.limiter.clone(), self.key_and_cost.clone())
    }
}

/// Takes one token per request from a [`LeasedRateLimiter`]'s local pool, leasing more from
/// Redis when it is empty. Made by [`LeasedRateLimiter::layer`].
#[derive(Clone, Debug)]
pub struct LeasedRateLimiterLayer {
    limiter: LeasedRateLimiter,
}

impl LeasedRateLimiterLayer {
    pub(crate) fn new(limiter: LeasedRateLimiter) -> Self {
        LeasedRateLimiterLayer { limiter }
    }
}

impl<S> Layer<S> for LeasedRateLimiterLayer {
    type Service = LeasedRateLimiterService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LeasedRateLimiterService::new(inner, self.limiter.clone())
    }
}

/// Takes one token per request from the local pool of the key a function of the request
/// gives (`Fn(&Req) -> K`), leasing more of that key's tokens from Redis when it is empty.
/// Made by [`KeyedLeasedRateLimiter::layer`].
pub struct KeyedLeasedRateLimiterLayer<K, F> {
    limiter: KeyedLeasedRateLimiter<K>,
    key_fn: F,
}

impl<K, F> KeyedLeasedRateLimiterLayer<K, F> {
    pub(crate) fn new(limiter: KeyedLeasedRateLimiter<K>, key_fn: F) -> Self {
        KeyedLeasedRateLimiterLayer { limiter, key_fn }
    }
}

impl<K, F: Clone> Clone for KeyedLeasedRateLimiterLayer<K, F> {
    fn clone(&self) -> Self {
        KeyedLeasedRateLimiterLayer {
            limiter: self.limiter.clone(),
            key_fn: self.key_fn.clone(),
        }
    }
}

impl<K, F> fmt::Debug for KeyedLeasedRateLimiterLayer<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLeasedRateLimiterLayer")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<S, K, F: Clone> Layer<S> for KeyedLeasedRateLimiterLayer<K, F> {
    type Service = KeyedLeasedRateLimiterService<S, K, F>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedLeasedRateLimiterService::new(inner, self.limiter.clone(), self.key_fn.clone())
    }
}
