//! A bulkhead's settings as plain data, for configuration files (the `serde` feature).
//!
//! [`BulkheadConfig`] deserialises from any serde format (TOML, YAML, JSON, …) with durations
//! written the humantime way (`"50ms"`, `"1s"`). Every field is optional: a field left out
//! keeps the [builder's default](crate::BulkheadBuilder), so `BulkheadConfig::default()`
//! builds the default bulkhead. Unknown fields are an error, so a typo is reported instead of
//! silently ignored. Adaptive limits are code ([`LimitAlgorithm`](crate::adaptive::LimitAlgorithm)):
//! set one on your own builder and [`apply`](BulkheadConfig::apply) the file's settings to it.
//!
//! ```
//! use palisade_bulkhead::BulkheadConfig;
//!
//! let config: BulkheadConfig = serde_json::from_str(r#"{ "max_concurrent_calls": 8 }"#)?;
//! assert_eq!(config.build()?.limit(), 8);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::bulkhead::Bulkhead;
use crate::config::BulkheadBuilder;
use palisade_core::error::ConfigError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The settings of a [`Bulkhead`], as a configuration file writes them.
///
/// Each field is the [`BulkheadBuilder`] setter of the same name; `None` (left out) keeps its
/// default.
///
/// ```toml
/// max_concurrent_calls = 25
/// max_wait = "20ms"          # left out: reject at once when full
/// max_waiting_calls = 1024
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BulkheadConfig {
    /// [`max_concurrent_calls`](BulkheadBuilder::max_concurrent_calls).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_calls: Option<usize>,
    /// [`max_wait`](BulkheadBuilder::max_wait): wait up to this long for a slot.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub max_wait: Option<Duration>,
    /// [`max_waiting_calls`](BulkheadBuilder::max_waiting_calls).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_waiting_calls: Option<usize>,
}

impl BulkheadConfig {
    /// These settings, with every field left out taken from `fallback` (a file's
    /// `configs.default`).
    #[must_use]
    pub fn or(self, fallback: &BulkheadConfig) -> BulkheadConfig {
        BulkheadConfig {
            max_concurrent_calls: self.max_concurrent_calls.or(fallback.max_concurrent_calls),
            max_wait: self.max_wait.or(fallback.max_wait),
            max_waiting_calls: self.max_waiting_calls.or(fallback.max_waiting_calls),
        }
    }

    /// Whether these settings set `field`, named as a [`ConfigError::field`] of [`build`](Self::build)
    /// names it: how a registry tells an instance's own bad value from one it inherited from
    /// `configs.default`.
    #[must_use]
    pub fn sets(&self, field: &str) -> bool {
        match field {
            "max_concurrent_calls" => self.max_concurrent_calls.is_some(),
            "max_wait" => self.max_wait.is_some(),
            "max_waiting_calls" => self.max_waiting_calls.is_some(),
            _ => false,
        }
    }

    /// Calls the setter of every field that is set on `builder` (so a name, a clock or an
    /// adaptive algorithm set on it beforehand are kept).
    #[must_use]
    pub fn apply(&self, mut builder: BulkheadBuilder) -> BulkheadBuilder {
        if let Some(v) = self.max_concurrent_calls {
            builder = builder.max_concurrent_calls(v);
        }
        if let Some(v) = self.max_wait {
            builder = builder.max_wait(v);
        }
        if let Some(v) = self.max_waiting_calls {
            builder = builder.max_waiting_calls(v);
        }
        builder
    }

    /// Builds a bulkhead with these settings and the default name and clock.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `max_concurrent_calls` (zero or above
    /// [`MAX_LIMIT`](crate::MAX_LIMIT)) or `max_wait` (zero), as [`BulkheadBuilder::build`].
    pub fn build(&self) -> Result<Bulkhead, ConfigError> {
        self.apply(Bulkhead::builder()).build()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn from_toml(text: &str) -> Result<BulkheadConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn every_field_round_trips_through_toml_and_json() {
        let config = BulkheadConfig {
            max_concurrent_calls: Some(8),
            max_wait: Some(Duration::from_millis(20)),
            max_waiting_calls: Some(16),
        };
        let text = toml::to_string(&config).unwrap();
        assert!(text.contains("max_wait = \"20ms\""), "{text}");
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
            serde_json::from_str::<BulkheadConfig>(&json).unwrap(),
            config
        );
        assert_eq!(config.build().unwrap().limit(), 8);
        assert_eq!(BulkheadConfig::default().build().unwrap().limit(), 25);
    }

    #[test]
    fn a_typo_is_an_error_naming_the_field() {
        let err = from_toml("max_concurrent = 3").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `max_concurrent`"),
            "{err}"
        );
        let err = from_toml("max_concurrent_calls = -1").unwrap_err();
        assert!(err.to_string().contains("max_concurrent_calls"), "{err}");
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        let field = |text: &str| from_toml(text).unwrap().build().unwrap_err().field();
        assert_eq!(field("max_concurrent_calls = 0"), "max_concurrent_calls");
        assert_eq!(
            field("max_concurrent_calls = 4294967296"),
            "max_concurrent_calls"
        );
        assert_eq!(field("max_wait = \"0s\""), "max_wait");
    }

    #[test]
    fn an_instance_overrides_the_default_field_by_field() {
        let default = from_toml("max_concurrent_calls = 4\nmax_wait = \"5ms\"").unwrap();
        let merged = from_toml("max_concurrent_calls = 2").unwrap().or(&default);
        assert_eq!(merged.max_concurrent_calls, Some(2));
        assert_eq!(merged.max_wait, Some(Duration::from_millis(5)));
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
        /// Whatever a file can say, the bulkhead builds or the field is named; never a panic
        /// (a panic fails the test).
        #[test]
        fn every_accepted_config_builds_or_names_a_field(
            max_concurrent_calls in proptest::option::of(prop_oneof![any::<usize>(), 0usize..100]),
            max_wait in proptest::option::of(duration()),
            max_waiting_calls in proptest::option::of(any::<usize>()),
        ) {
            let config = BulkheadConfig { max_concurrent_calls, max_wait, max_waiting_calls };
            let json = serde_json::to_string(&config).unwrap();
            let read = serde_json::from_str::<BulkheadConfig>(&json).ok();
            for config in read.into_iter().chain([config]) {
                match config.build() {
                    Ok(bulkhead) => prop_assert!(bulkhead.limit() >= 1),
                    Err(err) => prop_assert!(
                        ["max_concurrent_calls", "max_wait"].contains(&err.field())
                    ),
                }
            }
        }
    }
}
