//! The shape of a configuration file: one section per layer, each with `configs.default` and
//! named `instances`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A whole configuration file: one [`Section`] per layer, all optional.
///
/// Deserialise it with any serde format (`toml::from_str`, `serde_yaml::from_str`,
/// `serde_json::from_str`) and hand it to [`Registry::from_config`](super::Registry::from_config).
/// Unknown sections are an error, as are unknown fields anywhere below them. A section of a
/// layer whose feature is off is an unknown section.
///
/// ```toml
/// [circuit_breaker.configs.default]
/// failure_rate_threshold = 50
///
/// [circuit_breaker.instances.inventory]
/// failure_rate_threshold = 30
/// wait_duration_in_open = "2s"
///
/// [rate_limiter.instances.partner]
/// rate = 100
/// period = "1s"
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// Circuit breakers, by name.
    #[cfg(feature = "circuit-breaker")]
    #[serde(skip_serializing_if = "Section::is_empty")]
    pub circuit_breaker: Section<palisade_circuit_breaker::CircuitBreakerConfig>,
    /// Bulkheads, by name.
    #[cfg(feature = "bulkhead")]
    #[serde(skip_serializing_if = "Section::is_empty")]
    pub bulkhead: Section<palisade_bulkhead::BulkheadConfig>,
    /// Rate limiters, by name.
    #[cfg(feature = "rate-limit")]
    #[serde(skip_serializing_if = "Section::is_empty")]
    pub rate_limiter: Section<palisade_rate_limit::RateLimiterConfig>,
    /// Retry budgets, by name; a retry policy draws on one with `budget = "<name>"`.
    #[cfg(feature = "retry")]
    #[serde(skip_serializing_if = "Section::is_empty")]
    pub retry_budget: Section<palisade_retry::RetryBudgetConfig>,
    /// Retry policies, by name.
    #[cfg(feature = "retry")]
    #[serde(skip_serializing_if = "Section::is_empty")]
    pub retry_policy: Section<palisade_retry::RetryPolicyConfig>,
}

/// One layer's part of the file, resilience4j-style: `configs.default` and named `instances`.
///
/// An instance's field left out falls back to `configs.default`'s, and one left out there too
/// to the layer builder's default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    bound(
        serialize = "C: Serialize + Default + PartialEq",
        deserialize = "C: Deserialize<'de> + Default"
    )
)]
#[non_exhaustive]
pub struct Section<C> {
    /// Shared settings: `configs.default` (other names are an error).
    #[serde(skip_serializing_if = "Configs::is_empty")]
    pub configs: Configs<C>,
    /// The named instances, each overriding `configs.default` field by field.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub instances: BTreeMap<String, C>,
}

impl<C: Default + PartialEq> Section<C> {
    fn is_empty(&self) -> bool {
        self.configs.is_empty() && self.instances.is_empty()
    }
}

impl<C> Section<C> {
    /// Adds (or replaces) the instance `name`.
    #[must_use]
    pub fn instance(mut self, name: impl Into<String>, config: C) -> Self {
        self.instances.insert(name.into(), config);
        self
    }

    /// Sets `configs.default`.
    #[must_use]
    pub fn default_config(mut self, config: C) -> Self {
        self.configs.default = config;
        self
    }
}

/// The shared settings of a [`Section`]: only `default` for now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    bound(
        serialize = "C: Serialize",
        deserialize = "C: Deserialize<'de> + Default"
    )
)]
#[non_exhaustive]
pub struct Configs<C> {
    /// What every instance of the section falls back to.
    pub default: C,
}

impl<C: Default + PartialEq> Configs<C> {
    fn is_empty(&self) -> bool {
        self.default == C::default()
    }
}
