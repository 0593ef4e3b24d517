//! The rate-limit layers.

use crate::cost::UnitCost;
use crate::keyed::KeyedRateLimiter;
use crate::limiter::RateLimiter;
use crate::service::{KeyedRateLimit, RateLimit, WeightedRateLimit};
use std::fmt;
use std::marker::PhantomData;
use tower_layer::Layer;

/// Applies [`RateLimit`] with a shared [`RateLimiter`]: every service it builds draws from the
/// same bucket. Made by [`RateLimiter::layer`].
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    limiter: RateLimiter,
}

impl RateLimitLayer {
    /// A layer drawing from `limiter`.
    #[must_use]
    pub fn new(limiter: RateLimiter) -> Self {
        RateLimitLayer { limiter }
    }

    /// Charges each request what `cost` says instead of one token (decided in `call`; see
    /// [`WeightedRateLimit`]).
    #[must_use]
    pub fn cost<C>(self, cost: C) -> WeightedRateLimitLayer<C> {
        WeightedRateLimitLayer {
            limiter: self.limiter,
            cost,
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit::new(inner, self.limiter.clone())
    }
}

/// Applies [`WeightedRateLimit`]: a shared limiter, a per-request cost.
#[derive(Clone)]
pub struct WeightedRateLimitLayer<C> {
    limiter: RateLimiter,
    cost: C,
}

impl<C> fmt::Debug for WeightedRateLimitLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeightedRateLimitLayer")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<S, C: Clone> Layer<S> for WeightedRateLimitLayer<C> {
    type Service = WeightedRateLimit<S, C>;

    fn layer(&self, inner: S) -> WeightedRateLimit<S, C> {
        WeightedRateLimit::new(inner, self.limiter.clone(), self.cost.clone())
    }
}

/// Applies [`KeyedRateLimit`]: a shared [`KeyedRateLimiter`], a key extractor, and a cost
/// ([`UnitCost`] unless set with [`cost`](Self::cost)). Made by [`KeyedRateLimiter::layer`].
pub struct KeyedRateLimitLayer<K, F, C = UnitCost> {
    limiter: KeyedRateLimiter<K>,
    key: F,
    cost: C,
    _key: PhantomData<fn() -> K>,
}

impl<K, F> KeyedRateLimitLayer<K, F> {
    /// A layer drawing from `limiter` by the key `key` extracts from each request.
    #[must_use]
    pub fn new(limiter: KeyedRateLimiter<K>, key: F) -> Self {
        KeyedRateLimitLayer {
            limiter,
            key,
            cost: UnitCost,
            _key: PhantomData,
        }
    }
}

impl<K, F, C> KeyedRateLimitLayer<K, F, C> {
    /// Charges each request what `cost` says instead of one token.
    #[must_use]
    pub fn cost<C2>(self, cost: C2) -> KeyedRateLimitLayer<K, F, C2> {
        KeyedRateLimitLayer {
            limiter: self.limiter,
            key: self.key,
            cost,
            _key: PhantomData,
        }
    }
}

impl<K, F: Clone, C: Clone> Clone for KeyedRateLimitLayer<K, F, C> {
    fn clone(&self) -> Self {
        KeyedRateLimitLayer {
            limiter: self.limiter.clone(),
            key: self.key.clone(),
            cost: self.cost.clone(),
            _key: PhantomData,
        }
    }
}

impl<K, F, C> fmt::Debug for KeyedRateLimitLayer<K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimitLayer")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<S, K, F: Clone, C: Clone> Layer<S> for KeyedRateLimitLayer<K, F, C> {
    type Service = KeyedRateLimit<S, K, F, C>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedRateLimit::new(
            inner,
            self.limiter.clone(),
            self.key.clone(),
            self.cost.clone(),
        )
    }
}
