//! Quotas and the builders of [`RateLimiter`] and [`KeyedRateLimiter`], validated by `build()`.

use crate::gcra::{Gcra, WAIT_MAX};
use crate::keyed::KeyedRateLimiter;
use crate::limiter::RateLimiter;
use palisade_core::clock::{Clock, duration_to_nanos};
use palisade_core::error::ConfigError;
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::time::Duration;

/// How many requests, per how long, with how large a burst: a validated token bucket.
///
/// `rate` tokens come back every `period`, evenly spread: one every `period / rate` (the
/// emission interval, rounded *up* to whole nanoseconds so the limiter never admits faster
/// than asked). `burst` is the bucket's capacity: how many requests may go at once after a
/// quiet spell. The burst defaults to the rate.
///
/// In any window of length `W`, a limiter admits at most `burst + rate · W / period` tokens.
///
/// ```
/// use palisade_rate_limit::Quota;
/// use std::time::Duration;
///
/// let quota = Quota::per_second(100)?.with_burst(20)?;
/// assert_eq!(quota.interval(), Duration::from_millis(10));
/// assert_eq!(quota.burst(), 20);
/// assert!(Quota::new(0, Duration::from_secs(1)).is_err());
/// # Ok::<(), palisade_core::ConfigError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    rate: u32,
    period: Duration,
    gcra: Gcra,
}

impl Quota {
    /// `rate` requests per `period`, burst `rate`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `rate` if it is zero, or `period` if it is zero, longer than
    /// about 584 years, or makes the bucket (`burst · period / rate`, here the period itself)
    /// longer than 2^57 ns (about 4.5 years).
    pub fn new(rate: u32, period: Duration) -> Result<Quota, ConfigError> {
        Quota::with_parts(rate, period, rate, false)
    }

    /// `rate` requests per second, burst `rate`.
    ///
    /// # Errors
    ///
    /// As [`Quota::new`].
    pub fn per_second(rate: u32) -> Result<Quota, ConfigError> {
        Quota::new(rate, Duration::from_secs(1))
    }

    /// `rate` requests per minute, burst `rate`.
    ///
    /// # Errors
    ///
    /// As [`Quota::new`].
    pub fn per_minute(rate: u32) -> Result<Quota, ConfigError> {
        Quota::new(rate, Duration::from_secs(60))
    }

    /// The same rate with a bucket of `burst` tokens.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `burst` if it is zero or the bucket is longer than 2^57 ns.
    pub fn with_burst(self, burst: u32) -> Result<Quota, ConfigError> {
        Quota::with_parts(self.rate, self.period, burst, true)
    }

    /// `explicit_burst`: whether the caller chose the burst, so an oversized bucket is blamed
    /// on the field the caller actually set (`burst`, or else `period`).
    fn with_parts(
        rate: u32,
        period: Duration,
        burst: u32,
        explicit_burst: bool,
    ) -> Result<Quota, ConfigError> {
        if rate == 0 {
            return Err(ConfigError::new(
                "rate",
                "must be at least one request per period",
            ));
        }
        if period.is_zero() {
            return Err(ConfigError::new("period", "must be longer than zero"));
        }
        if period.as_nanos() > u128::from(u64::MAX) {
            return Err(ConfigError::new(
                "period",
                "overflows: must be at most u64::MAX nanoseconds",
            ));
        }
        if burst == 0 {
            return Err(ConfigError::new("burst", "must be at least one token"));
        }
        let interval = duration_to_nanos(period).div_ceil(u64::from(rate));
        let gcra = Gcra::new(interval, burst).map_err(|_| {
            let bucket = format!(
                "the bucket of {burst} tokens at one per {:?} is longer than 2^57 ns (about 4.5 years)",
                Duration::from_nanos(interval)
            );
            if explicit_burst {
                ConfigError::new("burst", format!("overflows: {bucket}; lower the burst"))
            } else {
                ConfigError::new(
                    "period",
                    format!("too long: {bucket}; shorten the period or set a smaller burst"),
                )
            }
        })?;
        Ok(Quota { rate, period, gcra })
    }

    /// Requests per [`period`](Quota::period).
    #[must_use]
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// The period the rate is counted over.
    #[must_use]
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The bucket's capacity in tokens.
    #[must_use]
    pub fn burst(&self) -> u32 {
        self.gcra.burst()
    }

    /// The time one token takes to come back: `period / rate`, rounded up to whole
    /// nanoseconds.
    #[must_use]
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.gcra.interval_nanos())
    }

    /// The algorithm's parameters.
    #[must_use]
    pub fn gcra(&self) -> Gcra {
        self.gcra
    }
}

impl fmt::Debug for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quota")
            .field("rate", &self.rate)
            .field("period", &self.period)
            .field("burst", &self.burst())
            .finish()
    }
}

/// What a limiter does with a request that is over the limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Reject at once with [`RateLimited`](crate::RateLimited) (the default).
    #[default]
    Reject,
    /// While the bucket is empty, wait (`Pending`, woken by the tokio timer when the next token
    /// is due) and take the tokens then; reject with [`RateLimited`](crate::RateLimited) at
    /// once if they are not due within `max_wait`, or once `max_wait` has passed. Nothing is
    /// taken while waiting, so a waiter that gives up costs nothing; waiters due at the same
    /// moment compete (no strict first-come order).
    Wait {
        /// The longest a request waits; capped at 2^57 ns (about 4.5 years).
        max_wait: Duration,
    },
}

impl Mode {
    pub(crate) fn max_wait_nanos(self) -> u64 {
        match self {
            Mode::Reject => 0,
            Mode::Wait { max_wait } => duration_to_nanos(max_wait).min(WAIT_MAX),
        }
    }
}

/// Settings shared by both builders.
#[derive(Clone, Debug)]
pub(crate) struct Common {
    pub(crate) rate: Option<(u32, Duration)>,
    pub(crate) burst: Option<u32>,
    pub(crate) quota: Option<Quota>,
    pub(crate) mode: Mode,
    pub(crate) clock: Clock,
    pub(crate) name: String,
}

impl Default for Common {
    fn default() -> Self {
        Common {
            rate: None,
            burst: None,
            quota: None,
            mode: Mode::Reject,
            clock: Clock::default(),
            name: "rate_limit".to_owned(),
        }
    }
}

impl Common {
    fn quota(&self) -> Result<Quota, ConfigError> {
        let quota = match (self.quota, self.rate) {
            (Some(quota), None) => quota,
            (None, Some((rate, period))) => Quota::new(rate, period)?,
            (None, None) => {
                return Err(ConfigError::new(
                    "rate",
                    "is required: set `rate(n, period)` or `quota(..)`",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "quota",
                    "set either `quota(..)` or `rate(n, period)`, not both",
                ));
            }
        };
        match self.burst {
            Some(burst) => quota.with_burst(burst),
            None => Ok(quota),
        }
    }
}

macro_rules! common_setters {
    () => {
        /// `rate` requests per `period` (required, unless [`quota`](Self::quota) is set).
        #[must_use]
        pub fn rate(mut self, rate: u32, period: Duration) -> Self {
            self.common.rate = Some((rate, period));
            self
        }

        /// The bucket's capacity in tokens (default: the rate).
        #[must_use]
        pub fn burst(mut self, burst: u32) -> Self {
            self.common.burst = Some(burst);
            self
        }

        /// An already validated quota, instead of [`rate`](Self::rate).
        #[must_use]
        pub fn quota(mut self, quota: Quota) -> Self {
            self.common.quota = Some(quota);
            self
        }

        /// What to do over the limit (default: [`Mode::Reject`]).
        #[must_use]
        pub fn mode(mut self, mode: Mode) -> Self {
            self.common.mode = mode;
            self
        }

        /// Shorthand for `mode(Mode::Wait { max_wait })`.
        #[must_use]
        pub fn wait(self, max_wait: Duration) -> Self {
            self.mode(Mode::Wait { max_wait })
        }

        /// The time source (default: [`Clock::default()`], TSC-backed). Use
        /// [`Clock::tokio()`] in `#[tokio::test(start_paused = true)]` tests, and
        /// [`Clock::coarse()`] only where about 1 ms of error is fine (see the crate docs).
        #[must_use]
        pub fn clock(mut self, clock: Clock) -> Self {
            self.common.clock = clock;
            self
        }

        /// The instance name, the `name` label of metrics and tracing (default `rate_limit`).
        #[must_use]
        pub fn name(mut self, name: impl Into<String>) -> Self {
            self.common.name = name.into();
            self
        }
    };
}

/// Builds a [`RateLimiter`]. Start with [`RateLimiter::builder`].
#[derive(Clone, Debug, Default)]
pub struct RateLimiterBuilder {
    common: Common,
}

impl RateLimiterBuilder {
    common_setters!();

    /// Validates the settings and builds the limiter.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `rate`, `period` or `burst` when the quota is invalid (zero rate,
    /// zero burst, zero or overflowing period or bucket), or `quota` when both a quota and a
    /// rate are set.
    pub fn build(self) -> Result<RateLimiter, ConfigError> {
        let quota = self.common.quota()?;
        Ok(RateLimiter::from_parts(
            quota,
            self.common.mode,
            self.common.clock,
            self.common.name,
        ))
    }
}

/// What a [`KeyedRateLimiter`] does when a new key arrives and the table is full of keys that
/// are not idle. Idle keys (full buckets) are always evicted first, which changes no decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhenFull {
    /// Reject requests of new keys with [`TooManyKeys`](crate::TooManyKeys) until keys go idle
    /// (the default). Known keys are unaffected, and no key ever exceeds its quota: the safe
    /// choice when the limit protects a backend.
    #[default]
    RejectNewKeys,
}

/// Builds a [`KeyedRateLimiter<K>`](KeyedRateLimiter). Start with
/// [`KeyedRateLimiter::builder`]; the key type is named once, there, and `build` returns a
/// limiter of that key.
pub struct KeyedRateLimiterBuilder<K> {
    common: Common,
    max_keys: usize,
    shards: usize,
    when_full: WhenFull,
    /// The key type of the limiter `build` makes (`fn() -> K`: the builder holds no key, so it
    /// is `Send`, `Sync`, `Clone` and `Debug` whatever `K` is).
    key: PhantomData<fn() -> K>,
}

impl<K> Clone for KeyedRateLimiterBuilder<K> {
    fn clone(&self) -> Self {
        KeyedRateLimiterBuilder {
            common: self.common.clone(),
            max_keys: self.max_keys,
            shards: self.shards,
            when_full: self.when_full,
            key: PhantomData,
        }
    }
}

impl<K> fmt::Debug for KeyedRateLimiterBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiterBuilder")
            .field("common", &self.common)
            .field("max_keys", &self.max_keys)
            .field("shards", &self.shards)
            .field("when_full", &self.when_full)
            .finish()
    }
}

impl<K> Default for KeyedRateLimiterBuilder<K> {
    fn default() -> Self {
        KeyedRateLimiterBuilder {
            common: Common::default(),
            max_keys: 100_000,
            shards: 64,
            when_full: WhenFull::RejectNewKeys,
            key: PhantomData,
        }
    }
}

impl<K: Hash + Eq + Clone> KeyedRateLimiterBuilder<K> {
    common_setters!();

    /// The most keys held at once by the whole limiter (default 100 000). Memory is at most
    /// about `4 · max_keys · (size of K + 9 bytes)` (see [`KeyedRateLimiter::capacity`]), plus
    /// 8 bytes per key of a shard's sweep buffer.
    #[must_use]
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// The number of independently locked shards, a power of two (default 64).
    #[must_use]
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// The policy when the table is full of busy keys (default: reject new keys).
    #[must_use]
    pub fn when_full(mut self, when_full: WhenFull) -> Self {
        self.when_full = when_full;
        self
    }

    /// Validates the settings and builds the limiter.
    ///
    /// # Errors
    ///
    /// As [`RateLimiterBuilder::build`], and [`ConfigError`] naming `max_keys` if it is zero or
    /// `shards` if it is zero, not a power of two, above 1024 or above `max_keys`.
    pub fn build(self) -> Result<KeyedRateLimiter<K>, ConfigError> {
        let quota = self.common.quota()?;
        if self.max_keys == 0 {
            return Err(ConfigError::new("max_keys", "must be at least one"));
        }
        if self.shards == 0 || !self.shards.is_power_of_two() || self.shards > 1024 {
            return Err(ConfigError::new(
                "shards",
                "must be a power of two between 1 and 1024",
            ));
        }
        if self.shards > self.max_keys {
            return Err(ConfigError::new("shards", "must not exceed `max_keys`"));
        }
        Ok(KeyedRateLimiter::from_parts(
            quota,
            self.common.mode,
            self.common.clock,
            self.common.name,
            self.max_keys,
            self.shards,
            self.when_full,
        ))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn quotas_are_validated_naming_the_field() {
        let s = Duration::from_secs(1);
        assert_eq!(Quota::new(0, s).unwrap_err().field(), "rate");
        assert_eq!(Quota::new(1, Duration::ZERO).unwrap_err().field(), "period");
        assert_eq!(Quota::new(1, Duration::MAX).unwrap_err().field(), "period");
        assert_eq!(
            Quota::new(1, s).unwrap().with_burst(0).unwrap_err().field(),
            "burst"
        );
        // One token per year, burst 5: 5 years > 2^57 ns.
        let year = Duration::from_secs(365 * 24 * 3600);
        assert!(Quota::new(1, year).unwrap().with_burst(4).is_ok());
        assert_eq!(
            Quota::new(1, year)
                .unwrap()
                .with_burst(5)
                .unwrap_err()
                .field(),
            "burst"
        );
    }

    /// Regression (issue 9 §3): `rate(1, 5 years)` was refused naming `burst`, a field the
    /// caller never set.
    #[test]
    fn an_oversized_bucket_names_the_field_the_caller_set() {
        let five_years = Duration::from_secs(5 * 365 * 24 * 3600);
        let err = Quota::new(1, five_years).unwrap_err();
        assert_eq!(err.field(), "period", "{err}");
        let err = RateLimiter::builder()
            .rate(1, five_years)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "period", "{err}");
        let year = Duration::from_secs(365 * 24 * 3600);
        let err = RateLimiter::builder()
            .rate(1, year)
            .burst(5)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "burst", "{err}");
        let err = KeyedRateLimiter::<u8>::builder()
            .rate(1, five_years)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "period", "{err}");
    }

    #[test]
    fn the_interval_rounds_up_so_the_rate_is_never_exceeded() {
        let q = Quota::new(3, Duration::from_nanos(10)).unwrap();
        assert_eq!(q.interval(), Duration::from_nanos(4));
        assert_eq!(q.burst(), 3);
        assert_eq!(
            format!("{q:?}"),
            "Quota { rate: 3, period: 10ns, burst: 3 }"
        );
    }

    #[test]
    fn builders_need_exactly_one_rate() {
        assert_eq!(RateLimiter::builder().build().unwrap_err().field(), "rate");
        let q = Quota::per_second(1).unwrap();
        let both = RateLimiter::builder()
            .quota(q)
            .rate(1, Duration::from_secs(1));
        assert_eq!(both.build().unwrap_err().field(), "quota");
        let burst = RateLimiter::builder().quota(q).burst(0);
        assert_eq!(burst.build().unwrap_err().field(), "burst");
        let keyed = KeyedRateLimiter::<u32>::builder().quota(q);
        assert_eq!(
            keyed.clone().max_keys(0).build().unwrap_err().field(),
            "max_keys"
        );
        assert_eq!(
            keyed.clone().shards(3).build().unwrap_err().field(),
            "shards"
        );
        assert_eq!(
            keyed.max_keys(2).shards(4).build().unwrap_err().field(),
            "shards"
        );
    }
}
