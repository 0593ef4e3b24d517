//! Named instances from a configuration file (feature `serde`): a [`Registry`] of breakers,
//! bulkheads, rate limiters, retry budgets and retry policies.
//!
//! Resilience4j users configure every instance in `application.yml`; this is the same for
//! Palisade. A file has a section per layer, each with shared settings in `configs.default`
//! and named `instances` that override them field by field: a field an instance leaves out
//! falls back to `configs.default`, and one left out there too to the layer builder's
//! default. Durations are written `"250ms"`, `"5s"`, `"1m 30s"`; unknown sections and
//! fields are errors, so a typo never goes unnoticed.
//!
//! ```toml
//! [circuit_breaker.configs.default]
//! failure_rate_threshold = 50
//! wait_duration_in_open = "5s"
//!
//! [circuit_breaker.instances.inventory]
//! failure_rate_threshold = 30          # wait_duration_in_open = "5s" from configs.default
//!
//! [circuit_breaker.instances.payments]  # everything from configs.default
//!
//! [bulkhead.instances.inventory]
//! max_concurrent_calls = 10
//!
//! [rate_limiter.instances.partner]
//! rate = 100
//! period = "1s"
//!
//! [retry_budget.instances.shared]
//! percent_can_retry = 0.1
//!
//! [retry_policy.instances.inventory]
//! max_attempts = 3
//! backoff = { kind = "exponential", base = "20ms", max = "1s" }
//! budget = "shared"                     # the retry_budget above, shared by every policy naming it
//! ```
//!
//! [`Registry::from_config`] builds every instance at once, so a bad value is reported at
//! start-up, by its path in the file:
//! `circuit_breaker.inventory.failure_rate_threshold: must be a percentage between 0 and 100,
//! got 150`. A bad value that an instance inherits from `configs.default` is reported as
//! `circuit_breaker.configs.default.<field>`; `configs.default` is checked through the
//! instances that use it (a section with no instances builds nothing). A service then asks for its instance by name,
//! and every call returns the same handle (the same shared state): a breaker that one service
//! opens is open for every service that asked for it.
//!
//! **A name the file does not configure is an error** ([`UnknownInstance`]), not a default
//! instance: a typo in code would otherwise give a silently unconfigured, unshared handle. To
//! give a name the defaults, list it with no fields (`[circuit_breaker.instances.payments]`).
//!
//! The registry knows no file format: read the file with the serde format of your choice.
//!
//! ```
//! # #[cfg(all(feature = "circuit-breaker", feature = "retry"))]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use palisade::registry::{Registry, RegistryConfig};
//!
//! let config: RegistryConfig = serde_json::from_str(
//!     r#"{ "circuit_breaker": { "configs": { "default": { "minimum_calls": 5 } },
//!                                "instances": { "inventory": { "wait_duration_in_open": "2s" } } } }"#,
//! )?;
//! let registry = Registry::from_config(config)?;
//! let breaker = registry.circuit_breaker("inventory")?;
//! assert_eq!(breaker.name(), "inventory");
//! assert!(registry.circuit_breaker("inventroy").is_err());
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "circuit-breaker", feature = "retry")))]
//! # fn main() {}
//! ```
//!
//! Classifiers and request predicates are code, not data. For a retry policy with your own
//! classifier, take the file's merged settings with [`Registry::retry_policy_config`] and
//! [`apply`](palisade_retry::RetryPolicyConfig::apply) them to your builder.

#![cfg_attr(
    not(any(
        feature = "circuit-breaker",
        feature = "bulkhead",
        feature = "rate-limit",
        feature = "retry"
    )),
    allow(
        dead_code,
        reason = "with every layer feature off, the registry has no sections"
    )
)]

mod config;
mod error;

pub use config::{Configs, RegistryConfig, Section};
pub use error::{RegistryError, UnknownInstance};

use palisade_core::Clock;
use std::collections::BTreeMap;

#[cfg(feature = "bulkhead")]
use palisade_bulkhead::{Bulkhead, BulkheadConfig};
#[cfg(feature = "circuit-breaker")]
use palisade_circuit_breaker::{CircuitBreaker, CircuitBreakerConfig};
#[cfg(feature = "rate-limit")]
use palisade_rate_limit::{RateLimiter, RateLimiterConfig};
#[cfg(feature = "retry")]
use palisade_retry::{RetryBudget, RetryBudgetConfig, RetryPolicy, RetryPolicyConfig};

/// The named instances of a configuration file, built once and handed out by name.
///
/// See the [module docs](self) for the file's shape. Cloning a registry clones the handles,
/// which share their state with the originals.
#[derive(Clone, Debug)]
pub struct Registry {
    config: RegistryConfig,
    #[cfg(feature = "circuit-breaker")]
    circuit_breakers: BTreeMap<String, CircuitBreaker>,
    #[cfg(feature = "bulkhead")]
    bulkheads: BTreeMap<String, Bulkhead>,
    #[cfg(feature = "rate-limit")]
    rate_limiters: BTreeMap<String, RateLimiter>,
    #[cfg(feature = "retry")]
    retry_budgets: BTreeMap<String, RetryBudget>,
    #[cfg(feature = "retry")]
    retry_policies: BTreeMap<String, RetryPolicy>,
}

/// Builds every instance of one section over `configs.default`, named after the instance.
///
/// `configs.default` is not built on its own: a handle named `default` would register metrics
/// series for an instance nobody uses. Its values are checked through the instances that
/// inherit them, and a refused value an instance inherited (`sets` says the instance does not
/// set that field, and the default does) is blamed on `<section>.configs.default.<field>`.
fn build_section<C, H>(
    section: &'static str,
    part: &Section<C>,
    merge: impl Fn(C, &C) -> C,
    sets: impl Fn(&C, &str) -> bool,
    mut build: impl FnMut(&str, &C) -> Result<H, RegistryError>,
) -> Result<BTreeMap<String, H>, RegistryError>
where
    C: Clone,
{
    let default = &part.configs.default;
    part.instances
        .iter()
        .map(|(name, own)| {
            let merged = merge(own.clone(), default);
            let handle = build(name, &merged).map_err(|e| {
                let field = e.field();
                if !sets(own, field) && sets(default, field) {
                    e.in_default(section, name)
                } else {
                    e
                }
            })?;
            Ok((name.clone(), handle))
        })
        .collect()
}

impl Registry {
    /// Builds every instance of `config`, each named after its instance name (the `name` label
    /// of its metrics and traces), reading time from [`Clock::default`].
    ///
    /// # Errors
    ///
    /// [`RegistryError`] naming the path of the first value a layer refuses
    /// (`circuit_breaker.inventory.failure_rate_threshold`), or of a retry policy's `budget`
    /// that names no `retry_budget` instance.
    pub fn from_config(config: RegistryConfig) -> Result<Registry, RegistryError> {
        Registry::from_config_with_clock(config, Clock::default())
    }

    /// As [`from_config`](Self::from_config), every instance reading time from `clock`
    /// (`Clock::tokio()` in `#[tokio::test(start_paused = true)]` tests).
    ///
    /// # Errors
    ///
    /// As [`from_config`](Self::from_config).
    pub fn from_config_with_clock(
        config: RegistryConfig,
        clock: Clock,
    ) -> Result<Registry, RegistryError> {
        // `clock` is unused when every layer feature is off.
        let _ = &clock;
        #[cfg(feature = "circuit-breaker")]
        let circuit_breakers = build_section(
            "circuit_breaker",
            &config.circuit_breaker,
            CircuitBreakerConfig::or,
            CircuitBreakerConfig::sets,
            |name, c| {
                let located = |e| RegistryError::config("circuit_breaker", name, e);
                c.apply(CircuitBreaker::builder().name(name).clock(clock.clone()))
                    .map_err(located)?
                    .build()
                    .map_err(located)
            },
        )?;
        #[cfg(feature = "bulkhead")]
        let bulkheads = build_section(
            "bulkhead",
            &config.bulkhead,
            BulkheadConfig::or,
            BulkheadConfig::sets,
            |name, c| {
                c.apply(Bulkhead::builder().name(name).clock(clock.clone()))
                    .build()
                    .map_err(|e| RegistryError::config("bulkhead", name, e))
            },
        )?;
        #[cfg(feature = "rate-limit")]
        let rate_limiters = {
            build_section(
                "rate_limiter",
                &config.rate_limiter,
                RateLimiterConfig::or,
                RateLimiterConfig::sets,
                |name, c| {
                    let located = |e| RegistryError::config("rate_limiter", name, e);
                    c.apply(RateLimiter::builder().name(name).clock(clock.clone()))
                        .map_err(located)?
                        .build()
                        .map_err(located)
                },
            )?
        };
        #[cfg(feature = "retry")]
        let retry_budgets = build_section(
            "retry_budget",
            &config.retry_budget,
            RetryBudgetConfig::or,
            RetryBudgetConfig::sets,
            |name, c| {
                c.apply(RetryBudget::builder().name(name).clock(clock.clone()))
                    .build()
                    .map_err(|e| RegistryError::config("retry_budget", name, e))
            },
        )?;
        #[cfg(feature = "retry")]
        let retry_policies = build_section(
            "retry_policy",
            &config.retry_policy,
            RetryPolicyConfig::or,
            RetryPolicyConfig::sets,
            |name, c| {
                let located = |e| RegistryError::config("retry_policy", name, e);
                let mut builder = c
                    .apply(RetryPolicy::builder().name(name).clock(clock.clone()))
                    .map_err(located)?;
                if let Some(budget) = &c.budget {
                    let Some(shared) = retry_budgets.get(budget) else {
                        return Err(RegistryError::file(
                            &["retry_policy", name, "budget"],
                            format!("no retry_budget named `{budget}` in the file"),
                        ));
                    };
                    builder = builder.budget(shared.clone());
                }
                builder.build().map_err(located)
            },
        )?;
        Ok(Registry {
            config,
            #[cfg(feature = "circuit-breaker")]
            circuit_breakers,
            #[cfg(feature = "bulkhead")]
            bulkheads,
            #[cfg(feature = "rate-limit")]
            rate_limiters,
            #[cfg(feature = "retry")]
            retry_budgets,
            #[cfg(feature = "retry")]
            retry_policies,
        })
    }

    /// The file's settings, as read.
    #[must_use]
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }
}

/// A lookup method per layer: the same handle every time.
macro_rules! lookups {
    ($(#[cfg(feature = $feature:literal)] $method:ident, $names:ident, $field:ident, $section:literal, $handle:ty;)*) => {
        impl Registry {
            $(
                #[doc = concat!("The `", $section, "` instance `name`: the same handle (the same shared state) every call.")]
                ///
                /// # Errors
                ///
                /// [`UnknownInstance`] when the file does not configure `name`.
                #[cfg(feature = $feature)]
                pub fn $method(&self, name: &str) -> Result<$handle, UnknownInstance> {
                    self.$field.get(name).cloned().ok_or_else(|| UnknownInstance {
                        section: $section,
                        name: name.to_owned(),
                    })
                }

                #[doc = concat!("The names of the `", $section, "` instances, in order.")]
                #[cfg(feature = $feature)]
                pub fn $names(&self) -> impl Iterator<Item = &str> {
                    self.$field.keys().map(String::as_str)
                }
            )*
        }
    };
}

lookups! {
    #[cfg(feature = "circuit-breaker")]
    circuit_breaker, circuit_breaker_names, circuit_breakers, "circuit_breaker", CircuitBreaker;
    #[cfg(feature = "bulkhead")]
    bulkhead, bulkhead_names, bulkheads, "bulkhead", Bulkhead;
    #[cfg(feature = "rate-limit")]
    rate_limiter, rate_limiter_names, rate_limiters, "rate_limiter", RateLimiter;
    #[cfg(feature = "retry")]
    retry_budget, retry_budget_names, retry_budgets, "retry_budget", RetryBudget;
    #[cfg(feature = "retry")]
    retry_policy, retry_policy_names, retry_policies, "retry_policy", RetryPolicy;
}

#[cfg(feature = "retry")]
impl Registry {
    /// The merged settings of the `retry_policy` instance `name` (its own fields over
    /// `configs.default`), to [`apply`](RetryPolicyConfig::apply) to a builder with your own
    /// classifier; its `budget` names a [`retry_budget`](Self::retry_budget).
    ///
    /// # Errors
    ///
    /// [`UnknownInstance`] when the file does not configure `name`.
    pub fn retry_policy_config(&self, name: &str) -> Result<RetryPolicyConfig, UnknownInstance> {
        let part = &self.config.retry_policy;
        part.instances
            .get(name)
            .map(|own| own.clone().or(&part.configs.default))
            .ok_or_else(|| UnknownInstance {
                section: "retry_policy",
                name: name.to_owned(),
            })
    }
}
