//! The rate-limit layers.

use crate::cost::UnitCost;
use crate::keyed::KeyedRateLimiter;
use crate::limiter::RateLimiter;
use crate::service::{KeyedRateLimiterService, RateLimiterService, WeightedRateLimiterService};
use std::fmt;
use std::marker::PhantomData;
use tower_layer::Layer;

/// Applies [`RateLimiterService`] with a shared [`RateLimiter`]: every service it builds draws from the
/// same bucket. Made by [`RateLimiter::layer`].
#[derive(Clone, Debug)]
pub struct RateLimiterLayer {
    limiter: RateLimiter,
}

impl RateLimiterLayer {
    /// A layer drawing from `limiter`.
    #[must_use]
    pub fn new(limiter: RateLimiter) -> Self {
        RateLimiterLayer { limiter }
    }

    /// Charges each request what `cost` says instead of one token (decided in `call`; see
    /// [`WeightedRateLimiterService`]).
    #[must_use]
    pub fn cost<C>(self, cost: C) -> WeightedRateLimiterLayer<C> {
        WeightedRateLimiterLayer {
            limiter: self.limiter,
            cost,
        }
    }
}

impl<S> Layer<S> for RateLimiterLayer {
    type Service = RateLimiterService<S>;

    fn layer(&self, inner: S) -> RateLimiterService<S> {
        RateLimiterService::new(inner, self.limiter.clone())
    }
}

/// Applies [`WeightedRateLimiterService`]: a shared limiter, a per-request cost.
#[derive(Clone)]
pub struct WeightedRateLimiterLayer<C> {
    limiter: RateLimiter,
    cost: C,
}

impl<C> fmt::Debug for WeightedRateLimiterLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeightedRateLimiterLayer")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<S, C: Clone> Layer<S> for WeightedRateLimiterLayer<C> {
    type Service = WeightedRateLimiterService<S, C>;

    fn layer(&self, inner: S) -> WeightedRateLimiterService<S, C> {
        WeightedRateLimiterService::new(inner, self.limiter.clone(), self.cost.clone())
    }
}

/// Applies [`KeyedRateLimiterService`]: a shared [`KeyedRateLimiter`], a key extractor, and a cost
/// ([`UnitCost`] unless set with [`cost`](Self::cost)). Made by [`KeyedRateLimiter::layer`].
pub struct KeyedRateLimiterLayer<K, F, C = UnitCost> {
    limiter: KeyedRateLimiter<K>,
    key: F,
    cost: C,
    _key: PhantomData<fn() -> K>,
}

impl<K, F> KeyedRateLimiterLayer<K, F> {
    /// A layer drawing from `limiter` by the key `key` extracts from each request.
    #[must_use]
    pub fn new(limiter: KeyedRateLimiter<K>, key: F) -> Self {
        KeyedRateLimiterLayer {
            limiter,
            key,
            cost: UnitCost,
            _key: PhantomData,
        }
    }
}

impl<K, F, C> KeyedRateLimiterLayer<K, F, C> {
    /// Charges each request what `cost` says instead of one token.
    #[must_use]
    pub fn cost<C2>(self, cost: C2) -> KeyedRateLimiterLayer<K, F, C2> {
        KeyedRateLimiterLayer {
            limiter: self.limiter,
            key: self.key,
            cost,
            _key: PhantomData,
        }
    }
}

impl<K, F: Clone, C: Clone> Clone for KeyedRateLimiterLayer<K, F, C> {
    fn clone(&self) -> Self {
        KeyedRateLimiterLayer {
            limiter: self.limiter.clone(),
            key: self.key.clone(),
            cost: self.cost.clone(),
            _key: PhantomData,
        }
    }
}

impl<K, F, C> fmt::Debug for KeyedRateLimiterLayer<K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiterLayer")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<S, K, F: Clone, C: Clone> Layer<S> for KeyedRateLimiterLayer<K, F, C> {
    type Service = KeyedRateLimiterService<S, K, F, C>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedRateLimiterService::new(
            inner,
            self.limiter.clone(),
            self.key.clone(),
            self.cost.clone(),
        )
    }
}
