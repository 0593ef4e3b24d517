//! Retry policies and budgets as plain data, for configuration files (the `serde` feature).
//!
//! [`RetryPolicyConfig`] and [`RetryBudgetConfig`] deserialise from any serde format (TOML,
//! YAML, JSON, …) with durations written the humantime way (`"50ms"`, `"5s"`). Every field
//! is optional: a field left out keeps the builder's default, so `default()` builds the
//! default policy or budget. Unknown fields are an error, so a typo is reported instead of
//! silently ignored.
//!
//! ```
//! use palisade_retry::RetryPolicyConfig;
//!
//! let config: RetryPolicyConfig = serde_json::from_str(
//!     r#"{ "max_attempts": 4, "deadline": "2s",
//!          "backoff": { "kind": "exponential", "base": "20ms", "max": "1s" } }"#,
//! )?;
//! let policy = config.build()?;
//! assert_eq!(policy.max_attempts(), 4);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::backoff::Backoff;
use crate::budget::{RetryBudget, RetryBudgetBuilder};
use crate::config::RetryPolicyBuilder;
use crate::retry_policy::RetryPolicy;
use palisade_core::error::ConfigError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A [`Backoff`], as a configuration file writes it: a `kind` and its durations.
///
/// ```toml
/// backoff = { kind = "full_jitter", base = "50ms", max = "5s" }   # the default
/// # kind = "exponential" | "decorrelated_jitter" with base and max,
/// # kind = "constant" with delay, kind = "none"
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum BackoffConfig {
    /// [`Backoff::none`]: retry at once.
    None,
    /// [`Backoff::constant`].
    Constant {
        /// The delay before every retry.
        #[serde(with = "humantime_serde")]
        delay: Duration,
    },
    /// [`Backoff::exponential`].
    Exponential {
        /// The first delay.
        #[serde(with = "humantime_serde")]
        base: Duration,
        /// The cap.
        #[serde(with = "humantime_serde")]
        max: Duration,
    },
    /// [`Backoff::full_jitter`].
    FullJitter {
        /// The first delay's upper bound.
        #[serde(with = "humantime_serde")]
        base: Duration,
        /// The cap.
        #[serde(with = "humantime_serde")]
        max: Duration,
    },
    /// [`Backoff::decorrelated_jitter`].
    DecorrelatedJitter {
        /// The shortest delay.
        #[serde(with = "humantime_serde")]
        base: Duration,
        /// The cap.
        #[serde(with = "humantime_serde")]
        max: Duration,
    },
}

impl BackoffConfig {
    /// The backoff this describes (checked by [`RetryPolicyBuilder::build`]).
    #[must_use]
    pub fn backoff(self) -> Backoff {
        match self {
            BackoffConfig::None => Backoff::none(),
            BackoffConfig::Constant { delay } => Backoff::constant(delay),
            BackoffConfig::Exponential { base, max } => Backoff::exponential(base, max),
            BackoffConfig::FullJitter { base, max } => Backoff::full_jitter(base, max),
            BackoffConfig::DecorrelatedJitter { base, max } => {
                Backoff::decorrelated_jitter(base, max)
            }
        }
    }
}

/// The settings of a [`RetryPolicy`], as a configuration file writes them.
///
/// Each field is the [`RetryPolicyBuilder`] setter of the same name; `None` (left out) keeps
/// its default. The classifier and the request predicate are code, not data: set them on your
/// own builder and [`apply`](Self::apply) the file's settings to it.
///
/// ```toml
/// max_attempts = 3
/// backoff = { kind = "full_jitter", base = "50ms", max = "5s" }
/// deadline = "2s"
/// attempt_timeout = "500ms"
/// strict_attempt_timeout = false     # true: the last attempt ends at its timeout too
/// max_retry_after = "5s"
/// remote_hint_per_endpoint = true    # above a balancer: a second hint in a row binds
/// retry_local_rejections = "100ms"   # opt in, with the longest wait
/// budget = "inventory"               # a retry_budget of the facade's Registry
/// unlimited = false
/// seed = 7
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryPolicyConfig {
    /// [`max_attempts`](RetryPolicyBuilder::max_attempts), the first included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// [`backoff`](RetryPolicyBuilder::backoff).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffConfig>,
    /// [`deadline`](RetryPolicyBuilder::deadline).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Duration>,
    /// [`attempt_timeout`](RetryPolicyBuilder::attempt_timeout).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub attempt_timeout: Option<Duration>,
    /// [`strict_attempt_timeout`](RetryPolicyBuilder::strict_attempt_timeout) when `true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict_attempt_timeout: Option<bool>,
    /// [`max_retry_after`](RetryPolicyBuilder::max_retry_after).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub max_retry_after: Option<Duration>,
    /// [`remote_hint_per_endpoint`](RetryPolicyBuilder::remote_hint_per_endpoint) when
    /// `true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_hint_per_endpoint: Option<bool>,
    /// [`retry_local_rejections`](RetryPolicyBuilder::retry_local_rejections): the longest
    /// wait on a local rejection.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub retry_local_rejections: Option<Duration>,
    /// The name of a shared [`RetryBudget`] to draw retries from. Resolved by the facade's
    /// `Registry` (its `retry_budget` instances); [`apply`](Self::apply) and
    /// [`build`](Self::build) leave it to the caller, who passes the budget to
    /// [`RetryPolicyBuilder::budget`]. Without it, the policy gets its own default budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<String>,
    /// [`unlimited`](RetryPolicyBuilder::unlimited) when `true`. Not with `budget`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unlimited: Option<bool>,
    /// [`seed`](RetryPolicyBuilder::seed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl RetryPolicyConfig {
    /// These settings, with every field left out taken from `fallback` (a file's
    /// `configs.default`). What the retries spend (`budget`, `unlimited`) is taken as a whole.
    #[must_use]
    pub fn or(self, fallback: &RetryPolicyConfig) -> RetryPolicyConfig {
        let (budget, unlimited) = if self.budget.is_some() || self.unlimited.is_some() {
            (self.budget, self.unlimited)
        } else {
            (fallback.budget.clone(), fallback.unlimited)
        };
        RetryPolicyConfig {
            max_attempts: self.max_attempts.or(fallback.max_attempts),
            backoff: self.backoff.or(fallback.backoff),
            deadline: self.deadline.or(fallback.deadline),
            attempt_timeout: self.attempt_timeout.or(fallback.attempt_timeout),
            strict_attempt_timeout: self
                .strict_attempt_timeout
                .or(fallback.strict_attempt_timeout),
            max_retry_after: self.max_retry_after.or(fallback.max_retry_after),
            remote_hint_per_endpoint: self
                .remote_hint_per_endpoint
                .or(fallback.remote_hint_per_endpoint),
            retry_local_rejections: self
                .retry_local_rejections
                .or(fallback.retry_local_rejections),
            budget,
            unlimited,
            seed: self.seed.or(fallback.seed),
        }
    }

    /// Whether these settings set `field`, named as a [`ConfigError::field`] of [`build`](Self::build)
    /// names it: how a registry tells an instance's own bad value from one it inherited from
    /// `configs.default`.
    #[must_use]
    pub fn sets(&self, field: &str) -> bool {
        match field {
            "max_attempts" => self.max_attempts.is_some(),
            "backoff" => self.backoff.is_some(),
            "deadline" => self.deadline.is_some(),
            "attempt_timeout" => self.attempt_timeout.is_some(),
            "strict_attempt_timeout" => self.strict_attempt_timeout.is_some(),
            "max_retry_after" => self.max_retry_after.is_some(),
            "remote_hint_per_endpoint" => self.remote_hint_per_endpoint.is_some(),
            "retry_local_rejections" => self.retry_local_rejections.is_some(),
            "budget" => self.budget.is_some(),
            "unlimited" => self.unlimited.is_some(),
            "seed" => self.seed.is_some(),
            _ => false,
        }
    }

    /// Calls the setter of every field that is set on `builder`, whatever its classifier,
    /// request predicate and remote-hint reader; `budget` is left to the caller (see the
    /// field).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `unlimited` when it is `true` together with a `budget`. Values
    /// are checked by [`RetryPolicyBuilder::build`].
    pub fn apply<C, Q, H>(
        &self,
        mut builder: RetryPolicyBuilder<C, Q, H>,
    ) -> Result<RetryPolicyBuilder<C, Q, H>, ConfigError> {
        if let Some(v) = self.max_attempts {
            builder = builder.max_attempts(v);
        }
        if let Some(v) = self.backoff {
            builder = builder.backoff(v.backoff());
        }
        if let Some(v) = self.deadline {
            builder = builder.deadline(v);
        }
        if let Some(v) = self.attempt_timeout {
            builder = builder.attempt_timeout(v);
        }
        if self.strict_attempt_timeout == Some(true) {
            builder = builder.strict_attempt_timeout();
        }
        if let Some(v) = self.max_retry_after {
            builder = builder.max_retry_after(v);
        }
        if self.remote_hint_per_endpoint == Some(true) {
            builder = builder.remote_hint_per_endpoint();
        }
        if let Some(v) = self.retry_local_rejections {
            builder = builder.retry_local_rejections(v);
        }
        match (self.unlimited, &self.budget) {
            (Some(true), Some(_)) => {
                return Err(ConfigError::new(
                    "unlimited",
                    "an unlimited policy draws on no budget: set one of them",
                ));
            }
            (Some(true), None) => builder = builder.unlimited(),
            _ => {}
        }
        if let Some(v) = self.seed {
            builder = builder.seed(v);
        }
        Ok(builder)
    }

    /// Builds a policy with these settings, the default classifier, name and clock, and its
    /// own default budget unless `unlimited`; a `budget` name is ignored here (the facade's
    /// `Registry` resolves it).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first field that [`apply`](Self::apply) or
    /// [`RetryPolicyBuilder::build`] refuses: `max_attempts` outside `1..=100`, `backoff` with
    /// its base above its cap, a zero `deadline` or `attempt_timeout`.
    pub fn build(&self) -> Result<RetryPolicy, ConfigError> {
        self.apply(RetryPolicy::builder())?.build()
    }
}

/// The settings of a [`RetryBudget`], as a configuration file writes them.
///
/// ```toml
/// ttl = "10s"
/// min_retries_per_sec = 10
/// percent_can_retry = 0.2   # a ratio: 0.2 is 20 %
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryBudgetConfig {
    /// [`ttl`](RetryBudgetBuilder::ttl).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// [`min_retries_per_sec`](RetryBudgetBuilder::min_retries_per_sec).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_retries_per_sec: Option<u32>,
    /// [`percent_can_retry`](RetryBudgetBuilder::percent_can_retry), a ratio from 0.0 to 1.0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent_can_retry: Option<f64>,
}

impl RetryBudgetConfig {
    /// These settings, with every field left out taken from `fallback`.
    #[must_use]
    pub fn or(self, fallback: &RetryBudgetConfig) -> RetryBudgetConfig {
        RetryBudgetConfig {
            ttl: self.ttl.or(fallback.ttl),
            min_retries_per_sec: self.min_retries_per_sec.or(fallback.min_retries_per_sec),
            percent_can_retry: self.percent_can_retry.or(fallback.percent_can_retry),
        }
    }

    /// Whether these settings set `field`, named as a [`ConfigError::field`] of [`build`](Self::build)
    /// names it: how a registry tells an instance's own bad value from one it inherited from
    /// `configs.default`.
    #[must_use]
    pub fn sets(&self, field: &str) -> bool {
        match field {
            "ttl" => self.ttl.is_some(),
            "min_retries_per_sec" => self.min_retries_per_sec.is_some(),
            "percent_can_retry" => self.percent_can_retry.is_some(),
            _ => false,
        }
    }

    /// Calls the setter of every field that is set on `builder`.
    #[must_use]
    pub fn apply(&self, mut builder: RetryBudgetBuilder) -> RetryBudgetBuilder {
        if let Some(v) = self.ttl {
            builder = builder.ttl(v);
        }
        if let Some(v) = self.min_retries_per_sec {
            builder = builder.min_retries_per_sec(v);
        }
        if let Some(v) = self.percent_can_retry {
            builder = builder.percent_can_retry(v);
        }
        builder
    }

    /// Builds a budget with these settings and the default name and clock.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `ttl` or `percent_can_retry`, as [`RetryBudgetBuilder::build`].
    pub fn build(&self) -> Result<RetryBudget, ConfigError> {
        self.apply(RetryBudget::builder()).build()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(text: &str) -> Result<RetryPolicyConfig, toml::de::Error> {
        toml::from_str(text)
    }

    fn budget(text: &str) -> Result<RetryBudgetConfig, toml::de::Error> {
        toml::from_str(text)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn every_field_round_trips_through_toml_and_json() {
        for backoff in [
            BackoffConfig::None,
            BackoffConfig::Constant { delay: ms(30) },
            BackoffConfig::Exponential {
                base: ms(10),
                max: ms(900),
            },
            BackoffConfig::FullJitter {
                base: ms(10),
                max: ms(900),
            },
            BackoffConfig::DecorrelatedJitter {
                base: ms(10),
                max: ms(900),
            },
        ] {
            let config = RetryPolicyConfig {
                max_attempts: Some(4),
                backoff: Some(backoff),
                deadline: Some(Duration::from_secs(2)),
                attempt_timeout: Some(ms(500)),
                strict_attempt_timeout: Some(true),
                max_retry_after: Some(Duration::from_secs(1)),
                remote_hint_per_endpoint: Some(true),
                retry_local_rejections: Some(ms(100)),
                budget: Some("shared".into()),
                unlimited: Some(false),
                seed: Some(7),
            };
            let text = toml::to_string(&config).unwrap();
            assert!(text.contains("attempt_timeout = \"500ms\""), "{text}");
            assert_eq!(policy(&text).unwrap(), config, "{text}");
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
                serde_json::from_str::<RetryPolicyConfig>(&json).unwrap(),
                config
            );
            let built = config.build().unwrap();
            assert_eq!(built.max_attempts(), 4);
            assert!(
                format!("{built:?}").contains("strict_attempt_timeout: true"),
                "{built:?}"
            );
            assert!(
                format!("{built:?}").contains("remote_hint_per_endpoint: true"),
                "{built:?}"
            );
        }
        let config = RetryBudgetConfig {
            ttl: Some(Duration::from_secs(5)),
            min_retries_per_sec: Some(3),
            percent_can_retry: Some(0.1),
        };
        let text = toml::to_string(&config).unwrap();
        assert_eq!(budget(&text).unwrap(), config);
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
        let built = config.build().unwrap();
        assert_eq!(built.ttl(), Duration::from_secs(5));
        assert_eq!(built.min_retries_per_sec(), 3);
    }

    #[test]
    fn a_typo_is_an_error_naming_the_field() {
        let err = policy("max_atempts = 3").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `max_atempts`"),
            "{err}"
        );
        let err = policy(
            "backoff = { kind = \"exponential\", base = \"1ms\", max = \"1s\", cap = \"2s\" }",
        )
        .unwrap_err();
        assert!(err.to_string().contains("cap"), "{err}");
        let err =
            policy("backoff = { kind = \"fibonacci\", base = \"1ms\", max = \"1s\" }").unwrap_err();
        assert!(err.to_string().contains("fibonacci"), "{err}");
        let err = budget("percent = 0.2").unwrap_err();
        assert!(err.to_string().contains("unknown field `percent`"), "{err}");
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        let field = |text: &str| policy(text).unwrap().build().unwrap_err().field();
        assert_eq!(field("max_attempts = 0"), "max_attempts");
        assert_eq!(field("max_attempts = 101"), "max_attempts");
        assert_eq!(
            field("backoff = { kind = \"exponential\", base = \"2s\", max = \"1s\" }"),
            "backoff"
        );
        assert_eq!(field("deadline = \"0s\""), "deadline");
        assert_eq!(field("attempt_timeout = \"0s\""), "attempt_timeout");
        assert_eq!(field("unlimited = true\nbudget = \"b\""), "unlimited");
        let field = |text: &str| budget(text).unwrap().build().unwrap_err().field();
        assert_eq!(field("percent_can_retry = 20.0"), "percent_can_retry");
        assert_eq!(field("ttl = \"2h\""), "ttl");
    }

    #[test]
    fn the_settings_apply_to_a_builder_with_its_own_classifier_and_hint_reader() {
        let config = policy("max_attempts = 5\nmax_retry_after = \"2s\"").unwrap();
        let builder = RetryPolicy::builder()
            .classify(|r: Result<&u16, &palisade_core::BoxError>| match r {
                Ok(&status) if status >= 500 => palisade_core::Outcome::Failure,
                Ok(_) => palisade_core::Outcome::Success,
                Err(_) => palisade_core::Outcome::Failure,
            })
            .remote_hint(|_: &u16| Some(ms(10)));
        let built = config.apply(builder).unwrap().build().unwrap().snapshot();
        assert_eq!(built.max_attempts, 5);
        assert_eq!(built.max_retry_after, Duration::from_secs(2));
    }

    #[test]
    fn an_instance_overrides_the_default_field_by_field() {
        let default = policy("max_attempts = 5\ndeadline = \"3s\"\nbudget = \"shared\"").unwrap();
        let instance = policy("deadline = \"1s\"\nunlimited = true")
            .unwrap()
            .or(&default);
        assert_eq!(instance.max_attempts, Some(5));
        assert_eq!(instance.deadline, Some(Duration::from_secs(1)));
        // What retries spend is one setting: `unlimited` replaces the default's budget.
        assert_eq!(instance.budget, None);
        assert!(instance.build().is_ok());
    }

    fn duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            Just(Duration::ZERO),
            Just(Duration::MAX),
            (0u64..10_000_000_000_000).prop_map(Duration::from_nanos),
            (0u64..u64::MAX, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        ]
    }

    fn backoff() -> impl Strategy<Value = BackoffConfig> {
        prop_oneof![
            Just(BackoffConfig::None),
            duration().prop_map(|delay| BackoffConfig::Constant { delay }),
            (duration(), duration())
                .prop_map(|(base, max)| BackoffConfig::Exponential { base, max }),
            (duration(), duration())
                .prop_map(|(base, max)| BackoffConfig::FullJitter { base, max }),
            (duration(), duration())
                .prop_map(|(base, max)| BackoffConfig::DecorrelatedJitter { base, max }),
        ]
    }

    fn policy_config() -> impl Strategy<Value = RetryPolicyConfig> {
        (
            proptest::option::of(any::<u32>()),
            proptest::option::of(backoff()),
            proptest::option::of(duration()),
            proptest::option::of(duration()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(duration()),
            proptest::option::of(duration()),
            proptest::option::of("[a-z]{1,4}"),
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<bool>()),
        )
            .prop_map(|f| RetryPolicyConfig {
                max_attempts: f.0,
                backoff: f.1,
                deadline: f.2,
                attempt_timeout: f.3,
                strict_attempt_timeout: f.4,
                max_retry_after: f.5,
                retry_local_rejections: f.6,
                budget: f.7,
                unlimited: f.8,
                seed: f.9,
                remote_hint_per_endpoint: f.10,
            })
    }

    proptest! {
        /// Whatever a file can say, the policy builds or the field is named; never a panic
        /// (a panic fails the test).
        #[test]
        fn every_accepted_policy_builds_or_names_a_field(config in policy_config()) {
            let json = serde_json::to_string(&config).unwrap();
            let read = serde_json::from_str::<RetryPolicyConfig>(&json).ok();
            for config in read.into_iter().chain([config]) {
                match config.build() {
                    Ok(policy) => prop_assert!((1..=100).contains(&policy.max_attempts())),
                    Err(err) => prop_assert!(!err.field().is_empty()),
                }
            }
        }

        #[test]
        fn every_accepted_budget_builds_or_names_a_field(
            ttl in proptest::option::of(duration()),
            min_retries_per_sec in proptest::option::of(any::<u32>()),
            percent_can_retry in proptest::option::of(prop_oneof![
                any::<f64>(), -1.0f64..2.0, Just(f64::NAN), Just(f64::INFINITY)
            ]),
        ) {
            let config = RetryBudgetConfig { ttl, min_retries_per_sec, percent_can_retry };
            let json = serde_json::to_string(&config).unwrap();
            let read = serde_json::from_str::<RetryBudgetConfig>(&json).ok();
            for config in read.into_iter().chain([config]) {
                match config.build() {
                    Ok(budget) => prop_assert!(budget.ttl() >= Duration::from_millis(1)),
                    Err(err) => prop_assert!(["ttl", "percent_can_retry"].contains(&err.field())),
                }
            }
        }
    }
}
