//! Builders, validated by `build()`.

use crate::keyed_leased_rate_limiter::KeyedLeasedRateLimiter;
use crate::leased_rate_limiter::LeasedRateLimiter;
use crate::redis_rate_limiter::RedisRateLimiter;
use palisade_core::{Clock, ConfigError};
use palisade_rate_limit::RateLimiter;
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::time::Duration;

/// What a call does when Redis cannot decide (unreachable, slow past the call timeout,
/// restarting, a script error, a reply of the wrong type).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum FailureMode {
    /// Reject the call with [`StoreUnavailable`](crate::StoreUnavailable) (a local
    /// rejection). **The default**: a global limit usually models a partner's quota, and this
    /// crate cannot know how many replicas share it, so it cannot size a local share that keeps
    /// the fleet within the quota; exceeding a partner's quota gets the whole fleet throttled,
    /// while a refused call is retryable and visible. (Envoy's global rate limit filter fails
    /// open with no limit at all by default, `failure_mode_deny: false`; pick
    /// [`FailureMode::Open`] for that behaviour, with a limit.)
    #[default]
    Closed,
    /// Decide with this local limiter instead, shared by every key of this handle. Size it to
    /// this replica's share (`R / replicas`), so that during an outage the fleet stays within
    /// the global quota.
    Open(RateLimiter),
}

/// Builds a [`RedisRateLimiter`]: see [`RedisRateLimiter::builder`].
#[derive(Clone)]
pub struct RedisRateLimiterBuilder {
    pub(crate) name: String,
    pub(crate) url: Option<String>,
    pub(crate) rate: Option<(u32, Duration)>,
    pub(crate) burst: Option<u32>,
    pub(crate) key_prefix: String,
    pub(crate) call_timeout: Duration,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) failure_mode: FailureMode,
}

impl fmt::Debug for RedisRateLimiterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiterBuilder")
            .field("name", &self.name)
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .field("key_prefix", &self.key_prefix)
            .field("call_timeout", &self.call_timeout)
            .field("failure_mode", &self.failure_mode)
            .finish_non_exhaustive() // the URL may hold a password
    }
}

impl Default for RedisRateLimiterBuilder {
    fn default() -> Self {
        RedisRateLimiterBuilder {
            name: "rate_limit_redis".to_owned(),
            url: None,
            rate: None,
            burst: None,
            key_prefix: "palisade:rl:".to_owned(),
            call_timeout: Duration::from_millis(50),
            reconnect_min: Duration::from_millis(10),
            reconnect_max: Duration::from_secs(2),
            failure_mode: FailureMode::Closed,
        }
    }
}

impl RedisRateLimiterBuilder {
    /// The name in events and the metrics label `name`, and part of every Redis key, so
    /// replicas that share a limit must use the same name. Default `"rate_limit_redis"`.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The Redis server, e.g. `redis://127.0.0.1:6379/` (required).
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// `count` tokens per `period`, for the whole fleet (required). The emission interval
    /// `period / count` is rounded up to whole microseconds (the script's unit).
    #[must_use]
    pub fn rate(mut self, count: u32, period: Duration) -> Self {
        self.rate = Some((count, period));
        self
    }

    /// The bucket's capacity: how many tokens may be taken at once. Default 1 (no burst).
    #[must_use]
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// The prefix of every key this limiter writes; the key is `{prefix}{name}:{key}`.
    /// Default `"palisade:rl:"`.
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// How long a call waits for Redis before the failure mode decides. Default 50 ms: a
    /// round trip in one data centre takes well under 1 ms, so 50 ms is only reached when
    /// Redis is in trouble, and it bounds the latency an outage adds to every call.
    #[must_use]
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The reconnection backoff: exponential with jitter from `min` to `max` (defaults 10 ms
    /// and 2 s). Reconnection runs in the background; calls meanwhile get the failure mode
    /// after at most the call timeout. The same steps (without jitter) are the windows in
    /// which calls skip Redis after a timeout or a connection error.
    #[must_use]
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max;
        self
    }

    /// What a call does when Redis cannot decide. Default [`FailureMode::Closed`] (see there
    /// for why).
    #[must_use]
    pub fn failure_mode(mut self, mode: FailureMode) -> Self {
        self.failure_mode = mode;
        self
    }

    /// Shorthand for `failure_mode(FailureMode::Open(local))`.
    #[must_use]
    pub fn fail_open(self, local: RateLimiter) -> Self {
        self.failure_mode(FailureMode::Open(local))
    }

    /// Validates the configuration and builds the limiter. Connects lazily: a Redis that is
    /// down when the limiter is built is not an error, only its calls see the failure mode.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: `url` missing or not a Redis URL, `rate` missing,
    /// zero, or faster than one token per microsecond, `burst` zero, `call_timeout` zero,
    /// `reconnect_backoff` zero or `min > max`, `name` empty.
    pub fn build(self) -> Result<RedisRateLimiter, ConfigError> {
        RedisRateLimiter::from_builder(self)
    }

    pub(crate) fn interval_us(&self) -> Result<u64, ConfigError> {
        let (count, period) = self
            .rate
            .ok_or_else(|| ConfigError::new("rate", "is required"))?;
        if count == 0 {
            return Err(ConfigError::new("rate", "count must be at least 1"));
        }
        let micros = period.as_micros();
        // A rate above one token per microsecond would be rounded down to it silently.
        if micros < u128::from(count) {
            return Err(ConfigError::new(
                "rate",
                "at most one token per microsecond (the script's time unit)",
            ));
        }
        let interval = micros.div_ceil(u128::from(count));
        u64::try_from(interval).map_err(|_| ConfigError::new("rate", "period too long"))
    }
}

/// Builds a [`LeasedRateLimiter`]: see [`LeasedRateLimiter::builder`].
#[derive(Clone, Debug)]
pub struct LeasedRateLimiterBuilder {
    pub(crate) global: RedisRateLimiter,
    pub(crate) key: String,
    pub(crate) max_batch: u32,
    pub(crate) lease_target: Duration,
    pub(crate) lease_ttl: Duration,
    pub(crate) clock: Option<Clock>,
}

impl LeasedRateLimiterBuilder {
    pub(crate) fn new(global: RedisRateLimiter, key: String) -> Self {
        LeasedRateLimiterBuilder {
            global,
            key,
            max_batch: 16,
            lease_target: Duration::from_millis(100),
            lease_ttl: Duration::from_secs(1),
            clock: None,
        }
    }

    /// The most tokens one lease takes. Default 16. The fleet may exceed the global quota by
    /// at most the outstanding leases, so by at most `replicas × max_batch`: keep it small
    /// next to the global burst.
    #[must_use]
    pub fn max_batch(mut self, max_batch: u32) -> Self {
        self.max_batch = max_batch;
        self
    }

    /// How long one lease should last at this replica's recent rate (default 100 ms): the batch
    /// is `rate × target`, between 1 and `max_batch`, growing at most 2× per lease. A replica
    /// calling 1 000 times a second thus makes ~10 round trips a second.
    #[must_use]
    pub fn lease_target(mut self, target: Duration) -> Self {
        self.lease_target = target;
        self
    }

    /// Leased tokens not spent within this time are dropped (default 1 s), so an idle replica
    /// does not sit on tokens that would come back as a burst later.
    #[must_use]
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// The clock for lease expiry and the rate estimate. Default `Clock::default()`.
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: `max_batch` zero, above the global burst or above
    /// 2^24 - 1, `lease_target` or `lease_ttl` zero.
    pub fn build(self) -> Result<LeasedRateLimiter, ConfigError> {
        LeasedRateLimiter::from_builder(self)
    }
}

/// Builds a [`KeyedLeasedRateLimiter`]: see [`RedisRateLimiter::keyed_leased`]. The lease
/// settings are the one-key limiter's ([`LeasedRateLimiterBuilder`]), applied to each key.
pub struct KeyedLeasedRateLimiterBuilder<K> {
    pub(crate) global: RedisRateLimiter,
    pub(crate) max_batch: u32,
    pub(crate) lease_target: Duration,
    pub(crate) lease_ttl: Duration,
    pub(crate) clock: Option<Clock>,
    pub(crate) max_keys: usize,
    pub(crate) shards: usize,
    _key: PhantomData<fn() -> K>,
}

impl<K> Clone for KeyedLeasedRateLimiterBuilder<K> {
    fn clone(&self) -> Self {
        KeyedLeasedRateLimiterBuilder {
            global: self.global.clone(),
            max_batch: self.max_batch,
            lease_target: self.lease_target,
            lease_ttl: self.lease_ttl,
            clock: self.clock.clone(),
            max_keys: self.max_keys,
            shards: self.shards,
            _key: PhantomData,
        }
    }
}

impl<K> fmt::Debug for KeyedLeasedRateLimiterBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLeasedRateLimiterBuilder")
            .field("global", &self.global)
            .field("max_batch", &self.max_batch)
            .field("lease_target", &self.lease_target)
            .field("lease_ttl", &self.lease_ttl)
            .field("max_keys", &self.max_keys)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl<K> KeyedLeasedRateLimiterBuilder<K> {
    pub(crate) fn new(global: RedisRateLimiter) -> Self {
        let one = LeasedRateLimiterBuilder::new(global, String::new());
        KeyedLeasedRateLimiterBuilder {
            global: one.global,
            max_batch: one.max_batch,
            lease_target: one.lease_target,
            lease_ttl: one.lease_ttl,
            clock: None,
            max_keys: 10_000,
            shards: 16,
            _key: PhantomData,
        }
    }

    /// The most tokens one lease of one key takes. Default 16. Per key, the fleet may exceed
    /// the global quota by at most that key's outstanding leases, `replicas × max_batch`.
    #[must_use]
    pub fn max_batch(mut self, max_batch: u32) -> Self {
        self.max_batch = max_batch;
        self
    }

    /// How long one lease of a key should last at that key's recent rate on this replica
    /// (default 100 ms), as [`LeasedRateLimiterBuilder::lease_target`].
    #[must_use]
    pub fn lease_target(mut self, target: Duration) -> Self {
        self.lease_target = target;
        self
    }

    /// Leased tokens not spent within this time are dropped (default 1 s); a key whose lease
    /// expired is idle and may be evicted.
    #[must_use]
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// The clock for lease expiry and the rate estimates. Default `Clock::default()`.
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The most keys held at once by this limiter (default 10 000). A key costs its `K`, a
    /// pool (~120 bytes) and its Redis key string. A new key at the cap evicts idle keys, or
    /// is refused with `palisade_rate_limit::TooManyKeys` (see
    /// [`KeyedLeasedRateLimiter`]'s memory rules).
    #[must_use]
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// The number of independently locked shards of the key table, a power of two
    /// (default 16).
    #[must_use]
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: as [`LeasedRateLimiterBuilder::build`], and
    /// `max_keys` zero, `shards` not a power of two.
    pub fn build(self) -> Result<KeyedLeasedRateLimiter<K>, ConfigError>
    where
        K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    {
        KeyedLeasedRateLimiter::from_builder(self)
    }
}
