//! A breaker's settings as plain data, for configuration files (the `serde` feature).
//!
//! [`CircuitBreakerConfig`] deserialises from any serde format (TOML, YAML, JSON, …) with
//! durations written the humantime way (`"250ms"`, `"5s"`, `"1m 30s"`). Every field is
//! optional: a field left out keeps the [builder's default](crate::CircuitBreakerBuilder), so
//! `CircuitBreakerConfig::default()` builds the default breaker. Unknown fields are an error,
//! so a typo is reported instead of silently ignored.
//!
//! ```
//! use palisade_circuit_breaker::CircuitBreakerConfig;
//!
//! let config: CircuitBreakerConfig = serde_json::from_str(
//!     r#"{ "failure_rate_threshold": 30, "wait_duration_in_open": "2s", "count_window": 50 }"#,
//! )?;
//! let breaker = config.build()?;
//! assert_eq!(breaker.name(), "circuit_breaker");
//!
//! let typo = serde_json::from_str::<CircuitBreakerConfig>(r#"{ "failure_rate": 30 }"#);
//! assert!(typo.unwrap_err().to_string().contains("unknown field `failure_rate`"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::circuit_breaker::CircuitBreaker;
use crate::config::{CircuitBreakerBuilder, SlidingWindow};
use palisade_core::error::ConfigError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The length of the builder's default time window (Hystrix's 10 s rolling window), used when
/// a file sets `time_window_buckets` but not `time_window`.
const DEFAULT_TIME_WINDOW: Duration = Duration::from_secs(10);
/// The builder's default bucket count, used when a file sets `time_window` alone.
const DEFAULT_BUCKETS: u32 = 10;

/// The settings of a [`CircuitBreaker`], as a configuration file writes them.
///
/// Each field is the [`CircuitBreakerBuilder`] setter of the same name, and `None` (the field
/// left out) keeps that setter's default. The sliding window is one setting written three
/// ways: `count_window` (calls), or `time_window` (a duration) with an optional
/// `time_window_buckets`; the open wait's growth is `open_backoff` (a table of `multiplier`
/// and `max`) or `fixed_open_wait = true`.
///
/// ```toml
/// failure_rate_threshold = 50      # percent, in (0, 100]
/// minimum_calls = 20
/// time_window = "10s"
/// time_window_buckets = 10
/// wait_duration_in_open = "5s"
/// open_backoff = { multiplier = 2.0, max = "30s" }
/// open_backoff_jitter = 0.2
/// permitted_calls_in_half_open = 10
/// slow_call_duration = "1s"
/// slow_call_rate_threshold = 100
/// max_wait_in_half_open = "10s"
/// consecutive_failures = 5
/// trip_on_rates = true
/// jitter_seed = 7
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CircuitBreakerConfig {
    /// [`failure_rate_threshold`](CircuitBreakerBuilder::failure_rate_threshold), in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_rate_threshold: Option<f64>,
    /// [`slow_call_duration`](CircuitBreakerBuilder::slow_call_duration).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub slow_call_duration: Option<Duration>,
    /// [`slow_call_rate_threshold`](CircuitBreakerBuilder::slow_call_rate_threshold), in
    /// percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_call_rate_threshold: Option<f64>,
    /// [`count_window`](CircuitBreakerBuilder::count_window): the last this many calls.
    /// Not with `time_window`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count_window: Option<u32>,
    /// [`time_window`](CircuitBreakerBuilder::time_window): the calls of the last this long.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub time_window: Option<Duration>,
    /// How many buckets the time window is split into (default 10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_window_buckets: Option<u32>,
    /// [`minimum_calls`](CircuitBreakerBuilder::minimum_calls).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum_calls: Option<u32>,
    /// [`wait_duration_in_open`](CircuitBreakerBuilder::wait_duration_in_open).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub wait_duration_in_open: Option<Duration>,
    /// [`open_backoff`](CircuitBreakerBuilder::open_backoff).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_backoff: Option<OpenBackoffConfig>,
    /// [`fixed_open_wait`](CircuitBreakerBuilder::fixed_open_wait) when `true`. Not with
    /// `open_backoff`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed_open_wait: Option<bool>,
    /// [`open_backoff_jitter`](CircuitBreakerBuilder::open_backoff_jitter), in `[0, 1]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_backoff_jitter: Option<f64>,
    /// [`jitter_seed`](CircuitBreakerBuilder::jitter_seed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter_seed: Option<u64>,
    /// [`permitted_calls_in_half_open`](CircuitBreakerBuilder::permitted_calls_in_half_open).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permitted_calls_in_half_open: Option<u32>,
    /// [`max_wait_in_half_open`](CircuitBreakerBuilder::max_wait_in_half_open).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub max_wait_in_half_open: Option<Duration>,
    /// [`consecutive_failures`](CircuitBreakerBuilder::consecutive_failures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// [`trip_on_rates`](CircuitBreakerBuilder::trip_on_rates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trip_on_rates: Option<bool>,
}

/// How the open wait grows on repeated trips: see
/// [`open_backoff`](CircuitBreakerBuilder::open_backoff). Both fields are required.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct OpenBackoffConfig {
    /// The factor per re-open (at least 1).
    pub multiplier: f64,
    /// The longest open wait (at least `wait_duration_in_open`).
    #[serde(with = "humantime_serde")]
    pub max: Duration,
}

impl OpenBackoffConfig {
    /// A backoff of `multiplier` per re-open, up to `max`.
    #[must_use]
    pub fn new(multiplier: f64, max: Duration) -> Self {
        OpenBackoffConfig { multiplier, max }
    }
}

impl CircuitBreakerConfig {
    /// These settings, with every field left out taken from `fallback` (a file's
    /// `configs.default`). The sliding window (`count_window`, `time_window`,
    /// `time_window_buckets`) and the open wait's growth (`open_backoff`, `fixed_open_wait`)
    /// are taken as a whole: an instance that sets `count_window` does not inherit the
    /// default's `time_window`.
    #[must_use]
    pub fn or(self, fallback: &CircuitBreakerConfig) -> CircuitBreakerConfig {
        let own_window = self.count_window.is_some()
            || self.time_window.is_some()
            || self.time_window_buckets.is_some();
        let (count_window, time_window, time_window_buckets) = if own_window {
            (
                self.count_window,
                self.time_window,
                self.time_window_buckets,
            )
        } else {
            (
                fallback.count_window,
                fallback.time_window,
                fallback.time_window_buckets,
            )
        };
        let own_growth = self.open_backoff.is_some() || self.fixed_open_wait.is_some();
        let (open_backoff, fixed_open_wait) = if own_growth {
            (self.open_backoff, self.fixed_open_wait)
        } else {
            (fallback.open_backoff, fallback.fixed_open_wait)
        };
        CircuitBreakerConfig {
            failure_rate_threshold: self
                .failure_rate_threshold
                .or(fallback.failure_rate_threshold),
            slow_call_duration: self.slow_call_duration.or(fallback.slow_call_duration),
            slow_call_rate_threshold: self
                .slow_call_rate_threshold
                .or(fallback.slow_call_rate_threshold),
            count_window,
            time_window,
            time_window_buckets,
            minimum_calls: self.minimum_calls.or(fallback.minimum_calls),
            wait_duration_in_open: self
                .wait_duration_in_open
                .or(fallback.wait_duration_in_open),
            open_backoff,
            fixed_open_wait,
            open_backoff_jitter: self.open_backoff_jitter.or(fallback.open_backoff_jitter),
            jitter_seed: self.jitter_seed.or(fallback.jitter_seed),
            permitted_calls_in_half_open: self
                .permitted_calls_in_half_open
                .or(fallback.permitted_calls_in_half_open),
            max_wait_in_half_open: self
                .max_wait_in_half_open
                .or(fallback.max_wait_in_half_open),
            consecutive_failures: self.consecutive_failures.or(fallback.consecutive_failures),
            trip_on_rates: self.trip_on_rates.or(fallback.trip_on_rates),
        }
    }

    /// Whether these settings set `field`, named as a [`ConfigError::field`] of [`build`](Self::build)
    /// names it: how a registry tells an instance's own bad value from one it inherited from
    /// `configs.default`.
    #[must_use]
    pub fn sets(&self, field: &str) -> bool {
        match field {
            "failure_rate_threshold" => self.failure_rate_threshold.is_some(),
            "slow_call_duration" => self.slow_call_duration.is_some(),
            "slow_call_rate_threshold" => self.slow_call_rate_threshold.is_some(),
            "count_window" => self.count_window.is_some(),
            "time_window" => self.time_window.is_some() || self.time_window_buckets.is_some(),
            "time_window_buckets" => self.time_window_buckets.is_some(),
            "minimum_calls" => self.minimum_calls.is_some(),
            "wait_duration_in_open" => self.wait_duration_in_open.is_some(),
            "open_backoff" => self.open_backoff.is_some(),
            "fixed_open_wait" => self.fixed_open_wait.is_some(),
            "open_backoff_jitter" => self.open_backoff_jitter.is_some(),
            "jitter_seed" => self.jitter_seed.is_some(),
            "permitted_calls_in_half_open" => self.permitted_calls_in_half_open.is_some(),
            "max_wait_in_half_open" => self.max_wait_in_half_open.is_some(),
            "consecutive_failures" => self.consecutive_failures.is_some(),
            "trip_on_rates" => self.trip_on_rates.is_some(),
            _ => false,
        }
    }

    /// Calls the setter of every field that is set on `builder` (so a name and a clock set on
    /// it beforehand are kept).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the field when two fields contradict each other:
    /// `count_window` with `time_window` or `time_window_buckets`, or `fixed_open_wait = true`
    /// with `open_backoff`. Values are checked by [`CircuitBreakerBuilder::build`].
    pub fn apply(
        &self,
        mut builder: CircuitBreakerBuilder,
    ) -> Result<CircuitBreakerBuilder, ConfigError> {
        if let Some(v) = self.failure_rate_threshold {
            builder = builder.failure_rate_threshold(v);
        }
        if let Some(v) = self.slow_call_duration {
            builder = builder.slow_call_duration(v);
        }
        if let Some(v) = self.slow_call_rate_threshold {
            builder = builder.slow_call_rate_threshold(v);
        }
        match (
            self.count_window,
            self.time_window,
            self.time_window_buckets,
        ) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(ConfigError::new(
                    "count_window",
                    "set either count_window or time_window (with time_window_buckets), not both",
                ));
            }
            (Some(calls), None, None) => builder = builder.count_window(calls),
            (None, None, None) => {}
            (None, size, buckets) => {
                builder = builder.sliding_window(SlidingWindow::Time {
                    size: size.unwrap_or(DEFAULT_TIME_WINDOW),
                    buckets: buckets.unwrap_or(DEFAULT_BUCKETS),
                });
            }
        }
        if let Some(v) = self.minimum_calls {
            builder = builder.minimum_calls(v);
        }
        if let Some(v) = self.wait_duration_in_open {
            builder = builder.wait_duration_in_open(v);
        }
        match (self.open_backoff, self.fixed_open_wait) {
            (Some(_), Some(true)) => {
                return Err(ConfigError::new(
                    "fixed_open_wait",
                    "a fixed open wait has no open_backoff: set one of them",
                ));
            }
            (Some(b), _) => builder = builder.open_backoff(b.multiplier, b.max),
            (None, Some(true)) => builder = builder.fixed_open_wait(),
            (None, _) => {}
        }
        if let Some(v) = self.open_backoff_jitter {
            builder = builder.open_backoff_jitter(v);
        }
        if let Some(v) = self.jitter_seed {
            builder = builder.jitter_seed(v);
        }
        if let Some(v) = self.permitted_calls_in_half_open {
            builder = builder.permitted_calls_in_half_open(v);
        }
        if let Some(v) = self.max_wait_in_half_open {
            builder = builder.max_wait_in_half_open(v);
        }
        if let Some(v) = self.consecutive_failures {
            builder = builder.consecutive_failures(v);
        }
        if let Some(v) = self.trip_on_rates {
            builder = builder.trip_on_rates(v);
        }
        Ok(builder)
    }

    /// Builds a breaker with these settings and the default name and clock. To set those,
    /// [`apply`](Self::apply) to your own builder.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first field that [`apply`](Self::apply) or
    /// [`CircuitBreakerBuilder::build`] refuses; the names are the fields of this struct
    /// (`time_window` for a bad `time_window_buckets`, `open_backoff` for either of its
    /// fields).
    pub fn build(&self) -> Result<CircuitBreaker, ConfigError> {
        self.apply(CircuitBreaker::builder())?.build()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::state::State;
    use proptest::prelude::*;

    fn from_toml(text: &str) -> Result<CircuitBreakerConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn every_field_round_trips_through_toml_and_json() {
        let config = CircuitBreakerConfig {
            failure_rate_threshold: Some(30.0),
            slow_call_duration: Some(Duration::from_millis(250)),
            slow_call_rate_threshold: Some(80.0),
            count_window: None,
            time_window: Some(Duration::from_secs(5)),
            time_window_buckets: Some(5),
            minimum_calls: Some(7),
            wait_duration_in_open: Some(Duration::from_secs(2)),
            open_backoff: Some(OpenBackoffConfig::new(1.5, Duration::from_secs(20))),
            fixed_open_wait: None,
            open_backoff_jitter: Some(0.1),
            jitter_seed: Some(42),
            permitted_calls_in_half_open: Some(3),
            max_wait_in_half_open: Some(Duration::from_secs(1)),
            consecutive_failures: Some(4),
            trip_on_rates: Some(true),
        };
        let text = toml::to_string(&config).unwrap();
        assert!(text.contains("slow_call_duration = \"250ms\""), "{text}");
        assert_eq!(from_toml(&text).unwrap(), config);
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(
            serde_json::from_str::<CircuitBreakerConfig>(&json).unwrap(),
            config
        );
        // Every field it writes, it says it sets (a registry relies on it to blame a value).
        for key in serde_json::from_str::<serde_json::Value>(&json)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
        {
            assert!(config.sets(key), "{key}");
        }
        assert!(!CircuitBreakerConfig::default().sets("minimum_calls"));
        assert!(config.build().is_ok());
        // The default writes nothing and reads back as itself.
        let empty = toml::to_string(&CircuitBreakerConfig::default()).unwrap();
        assert_eq!(empty.trim(), "");
        assert_eq!(from_toml(&empty).unwrap(), CircuitBreakerConfig::default());
    }

    #[test]
    fn humantime_durations_and_integer_percentages_are_read() {
        let config = from_toml(
            "failure_rate_threshold = 25\nwait_duration_in_open = \"1m 30s\"\n\
             slow_call_duration = \"250ms\"\n",
        )
        .unwrap();
        assert_eq!(config.failure_rate_threshold, Some(25.0));
        assert_eq!(config.wait_duration_in_open, Some(Duration::from_secs(90)));
        assert_eq!(config.slow_call_duration, Some(Duration::from_millis(250)));
        let bad = from_toml("wait_duration_in_open = \"5 parsecs\"").unwrap_err();
        assert!(bad.to_string().contains("wait_duration_in_open"), "{bad}");
    }

    #[test]
    fn a_typo_is_an_error_naming_the_field() {
        let err = from_toml("failure_rate_treshold = 30").unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown field `failure_rate_treshold`"),
            "{err}"
        );
        let err =
            from_toml("open_backoff = { multiplier = 2.0, max = \"9s\", cap = 1 }").unwrap_err();
        assert!(err.to_string().contains("unknown field `cap`"), "{err}");
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        let field = |text: &str| from_toml(text).unwrap().build().unwrap_err().field();
        assert_eq!(
            field("failure_rate_threshold = 150"),
            "failure_rate_threshold"
        );
        assert_eq!(
            field("wait_duration_in_open = \"0s\""),
            "wait_duration_in_open"
        );
        assert_eq!(field("count_window = 0"), "count_window");
        assert_eq!(field("time_window_buckets = 0"), "time_window");
        assert_eq!(
            field("count_window = 5\ntime_window = \"1s\""),
            "count_window"
        );
        assert_eq!(
            field("fixed_open_wait = true\nopen_backoff = { multiplier = 2.0, max = \"9s\" }"),
            "fixed_open_wait"
        );
        assert_eq!(
            field("open_backoff = { multiplier = 0.5, max = \"9s\" }"),
            "open_backoff"
        );
        assert_eq!(
            field("permitted_calls_in_half_open = 0"),
            "permitted_calls_in_half_open"
        );
    }

    #[test]
    fn the_settings_reach_the_breaker() {
        // A pure consecutive-failures breaker with a count window: two failures open it.
        let breaker = from_toml(
            "consecutive_failures = 2\ntrip_on_rates = false\ncount_window = 10\n\
             fixed_open_wait = true\n",
        )
        .unwrap()
        .build()
        .unwrap();
        breaker.try_acquire().unwrap().failure();
        assert_eq!(breaker.state(), State::Closed);
        breaker.try_acquire().unwrap().failure();
        assert_eq!(breaker.state(), State::Open);
    }

    #[test]
    fn an_instance_overrides_the_default_field_by_field() {
        let default = from_toml("failure_rate_threshold = 30\ntime_window = \"5s\"").unwrap();
        let instance = from_toml("minimum_calls = 3\ncount_window = 8").unwrap();
        let merged = instance.or(&default);
        assert_eq!(merged.failure_rate_threshold, Some(30.0));
        assert_eq!(merged.minimum_calls, Some(3));
        // The window is one setting: the instance's count window replaces the default's time
        // window instead of contradicting it.
        assert_eq!(merged.count_window, Some(8));
        assert_eq!(merged.time_window, None);
        assert!(merged.build().is_ok());
        assert_eq!(CircuitBreakerConfig::default().or(&default), default);
    }

    fn duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            Just(Duration::ZERO),
            Just(Duration::MAX),
            (0u64..10_000_000_000_000).prop_map(Duration::from_nanos),
            (0u64..u64::MAX, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        ]
    }

    fn float() -> impl Strategy<Value = f64> {
        prop_oneof![
            -10.0f64..200.0,
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(0.0),
            Just(100.0),
            any::<f64>(),
        ]
    }

    fn config() -> impl Strategy<Value = CircuitBreakerConfig> {
        (
            (
                proptest::option::of(float()),
                proptest::option::of(duration()),
                proptest::option::of(float()),
                proptest::option::of(any::<u32>()),
                proptest::option::of(duration()),
                proptest::option::of(any::<u32>()),
                proptest::option::of(any::<u32>()),
                proptest::option::of(duration()),
            ),
            (
                proptest::option::of(
                    (float(), duration()).prop_map(|(m, d)| OpenBackoffConfig::new(m, d)),
                ),
                proptest::option::of(any::<bool>()),
                proptest::option::of(float()),
                proptest::option::of(any::<u64>()),
                proptest::option::of(any::<u32>()),
                proptest::option::of(duration()),
                proptest::option::of(any::<u32>()),
                proptest::option::of(any::<bool>()),
            ),
        )
            .prop_map(|(a, b)| CircuitBreakerConfig {
                failure_rate_threshold: a.0,
                slow_call_duration: a.1,
                slow_call_rate_threshold: a.2,
                count_window: a.3,
                time_window: a.4,
                time_window_buckets: a.5,
                minimum_calls: a.6,
                wait_duration_in_open: a.7,
                open_backoff: b.0,
                fixed_open_wait: b.1,
                open_backoff_jitter: b.2,
                jitter_seed: b.3,
                permitted_calls_in_half_open: b.4,
                max_wait_in_half_open: b.5,
                consecutive_failures: b.6,
                trip_on_rates: b.7,
            })
    }

    proptest! {
        /// Whatever a file can say, the breaker builds or the field is named; never a panic
        /// (a panic fails the test). What the deserializer reads back from the JSON of a
        /// config is what is built, so this covers every config it accepts from these values.
        #[test]
        fn every_accepted_config_builds_or_names_a_field(config in config()) {
            let json = serde_json::to_string(&config).unwrap();
            if let Ok(read) = serde_json::from_str::<CircuitBreakerConfig>(&json) {
                match read.build() {
                    Ok(breaker) => prop_assert_eq!(breaker.state(), State::Closed),
                    Err(err) => prop_assert!(!err.field().is_empty()),
                }
            }
            match config.build() {
                Ok(breaker) => prop_assert_eq!(breaker.state(), State::Closed),
                Err(err) => prop_assert!(!err.field().is_empty()),
            }
        }
    }
}
