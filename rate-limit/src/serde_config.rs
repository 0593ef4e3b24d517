//! A limiter's settings as plain data, for configuration files (the `serde` feature).
//!
//! [`RateLimiterConfig`] deserialises from any serde format (TOML, YAML, JSON, …) with
//! durations written the humantime way (`"250ms"`, `"1s"`, `"1m"`). Unknown fields are an
//! error, so a typo is reported instead of silently ignored.
//!
//! ```
//! use palisade_rate_limit::RateLimiterConfig;
//!
//! let config: RateLimiterConfig =
//!     serde_json::from_str(r#"{ "rate": 100, "period": "1s", "burst": 20 }"#)?;
//! let limiter = config.build()?;
//! assert_eq!(limiter.quota().burst(), 20);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::config::RateLimiterBuilder;
use crate::limiter::RateLimiter;
use palisade_core::error::ConfigError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The settings of a [`RateLimiter`], as a configuration file writes them.
///
/// `rate` requests per `period` are required (the builder has no default quota; set them in a
/// file's `configs.default` to give every instance one); `burst` defaults to the rate. With
/// `max_wait` set the limiter waits up to that long for a token
/// ([`Mode::Wait`](crate::Mode::Wait)); without it, it rejects at once (the default).
///
/// ```toml
/// rate = 100
/// period = "1s"
/// burst = 20
/// max_wait = "50ms"
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RateLimiterConfig {
    /// Requests per `period` (at least 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<u32>,
    /// The period the rate is counted over (longer than zero).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub period: Option<Duration>,
    /// The bucket's capacity in tokens (default: the rate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Wait up to this long for a token instead of rejecting at once.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub max_wait: Option<Duration>,
}

impl RateLimiterConfig {
    /// `rate` requests per `period`, the other fields left out.
    #[must_use]
    pub fn new(rate: u32, period: Duration) -> Self {
        RateLimiterConfig {
            rate: Some(rate),
            period: Some(period),
            ..RateLimiterConfig::default()
        }
    }

    /// These settings, with every field left out taken from `fallback` (a file's
    /// `configs.default`).
    #[must_use]
    pub fn or(self, fallback: &RateLimiterConfig) -> RateLimiterConfig {
        RateLimiterConfig {
            rate: self.rate.or(fallback.rate),
            period: self.period.or(fallback.period),
            burst: self.burst.or(fallback.burst),
            max_wait: self.max_wait.or(fallback.max_wait),
        }
    }

    /// Whether these settings set `field`, named as a [`ConfigError::field`] of [`build`](Self::build)
    /// names it: how a registry tells an instance's own bad value from one it inherited from
    /// `configs.default`.
    #[must_use]
    pub fn sets(&self, field: &str) -> bool {
        match field {
            "rate" => self.rate.is_some(),
            "period" => self.period.is_some(),
            "burst" => self.burst.is_some(),
            "max_wait" => self.max_wait.is_some(),
            _ => false,
        }
    }

    /// Calls the setters for the fields that are set on `builder` (so a name and a clock set
    /// on it beforehand are kept).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `rate` or `period` when one is set without the other. Values
    /// are checked by [`RateLimiterBuilder::build`].
    pub fn apply(
        &self,
        mut builder: RateLimiterBuilder,
    ) -> Result<RateLimiterBuilder, ConfigError> {
        match (self.rate, self.period) {
            (Some(rate), Some(period)) => builder = builder.rate(rate, period),
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "period",
                    "is required with rate: how long the rate is counted over, e.g. \"1s\"",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "rate",
                    "is required with period: how many requests per period",
                ));
            }
            // The builder reports the missing quota, naming `rate`.
            (None, None) => {}
        }
        if let Some(burst) = self.burst {
            builder = builder.burst(burst);
        }
        if let Some(max_wait) = self.max_wait {
            builder = builder.wait(max_wait);
        }
        Ok(builder)
    }

    /// Builds a limiter with these settings and the default name and clock. To set those,
    /// [`apply`](Self::apply) to your own builder.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `rate`, `period` or `burst`: missing, zero, or a bucket that
    /// overflows (see [`Quota::new`](crate::Quota::new)).
    pub fn build(&self) -> Result<RateLimiter, ConfigError> {
        self.apply(RateLimiter::builder())?.build()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn from_toml(text: &str) -> Result<RateLimiterConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn every_field_round_trips_through_toml_and_json() {
        let config = RateLimiterConfig {
            burst: Some(20),
            max_wait: Some(Duration::from_millis(50)),
            ..RateLimiterConfig::new(100, Duration::from_secs(1))
        };
        let text = toml::to_string(&config).unwrap();
        assert!(text.contains("max_wait = \"50ms\""), "{text}");
        assert_eq!(from_toml(&text).unwrap(), config);
        let json = serde_json::to_string(&config).unwrap();
        // Every field it writes, it says it sets (a registry relies on it to blame a value).
        for key in serde_json::from_str::<serde_json::Value>(&json)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
        {
            assert!(config.sets(key), "{key}");
        }
        assert_eq!(
            serde_json::from_str::<RateLimiterConfig>(&json).unwrap(),
            config
        );
        let limiter = config.build().unwrap();
        assert_eq!(limiter.quota().rate(), 100);
        assert_eq!(limiter.quota().burst(), 20);
    }

    #[test]
    fn a_typo_is_an_error_naming_the_field() {
        let err = from_toml("rate = 5\nperiod = \"1s\"\nbrust = 2").unwrap_err();
        assert!(err.to_string().contains("unknown field `brust`"), "{err}");
        let err = from_toml("period = \"a second\"").unwrap_err();
        assert!(err.to_string().contains("period"), "{err}");
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        let field = |text: &str| from_toml(text).unwrap().build().unwrap_err().field();
        assert_eq!(field(""), "rate");
        assert_eq!(field("rate = 0\nperiod = \"1s\""), "rate");
        assert_eq!(field("rate = 5\nperiod = \"0s\""), "period");
        assert_eq!(field("rate = 5"), "period");
        assert_eq!(field("period = \"1s\""), "rate");
        assert_eq!(field("rate = 5\nperiod = \"1s\"\nburst = 0"), "burst");
        assert_eq!(field("rate = 1\nperiod = \"100years\""), "period");
    }

    #[test]
    fn an_instance_overrides_the_default_field_by_field() {
        let default = from_toml("rate = 100\nperiod = \"1s\"\nmax_wait = \"10ms\"").unwrap();
        let instance = from_toml("rate = 10").unwrap().or(&default);
        assert_eq!(
            instance,
            RateLimiterConfig {
                max_wait: Some(Duration::from_millis(10)),
                ..RateLimiterConfig::new(10, Duration::from_secs(1))
            }
        );
        assert_eq!(instance.build().unwrap().quota().rate(), 10);
    }

    fn duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            Just(Duration::ZERO),
            Just(Duration::MAX),
            (0u64..10_000_000_000_000).prop_map(Duration::from_nanos),
            (0u64..u64::MAX, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        ]
    }

    proptest! {
        /// Whatever a file can say, the limiter builds or the field is named; never a panic
        /// (a panic fails the test).
        #[test]
        fn every_accepted_config_builds_or_names_a_field(
            rate in proptest::option::of(any::<u32>()),
            period in proptest::option::of(duration()),
            burst in proptest::option::of(any::<u32>()),
            max_wait in proptest::option::of(duration()),
        ) {
            let config = RateLimiterConfig { rate, period, burst, max_wait };
            let json = serde_json::to_string(&config).unwrap();
            for config in serde_json::from_str::<RateLimiterConfig>(&json).into_iter().chain([config]) {
                match config.build() {
                    Ok(limiter) => prop_assert!(limiter.quota().burst() >= 1),
                    Err(err) => prop_assert!(["rate", "period", "burst"].contains(&err.field())),
                }
            }
        }
    }
}
