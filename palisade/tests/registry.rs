//! The config `Registry`: named instances from a file, `configs.default` fallback, shared
//! handles, errors that name the path, and the stack of `examples/config.rs`.
#![cfg(all(
    feature = "serde",
    feature = "circuit-breaker",
    feature = "bulkhead",
    feature = "rate-limit",
    feature = "retry"
))]

use palisade::circuit_breaker::State;
use palisade::common::{BoxError, Clock, ConfigError, is_local_rejection};
use palisade::prelude::*;
use palisade::registry::{Registry, RegistryConfig, RegistryError, UnknownInstance};
use proptest::prelude::*;
use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt};

/// The file `examples/config.rs` loads.
const EXAMPLE: &str = include_str!("../../examples/config.toml");

fn registry(text: &str) -> Result<Registry, RegistryError> {
    let config: RegistryConfig = toml::from_str(text).expect("the file parses");
    Registry::from_config_with_clock(config, Clock::tokio())
}

fn error(text: &str) -> RegistryError {
    registry(text).expect_err("the file has a bad value")
}

#[tokio::test(start_paused = true)]
async fn the_example_file_builds_every_instance_with_its_merged_settings() {
    let registry = registry(EXAMPLE).unwrap();
    assert_eq!(
        registry.circuit_breaker_names().collect::<Vec<_>>(),
        ["inventory", "payments"]
    );
    // Each handle is named after its instance (the `name` label of its metrics).
    assert_eq!(
        registry.circuit_breaker("payments").unwrap().name(),
        "payments"
    );
    assert_eq!(registry.bulkhead("inventory").unwrap().limit(), 10);
    let partner = registry.rate_limiter("partner").unwrap();
    assert_eq!((partner.quota().rate(), partner.quota().burst()), (50, 10));
    assert_eq!(partner.name(), "partner");

    // retry_policy.inventory: its own deadline, max_attempts and backoff from configs.default.
    let policy = registry.retry_policy("inventory").unwrap().snapshot();
    assert_eq!(policy.max_attempts, 3);
    assert_eq!(policy.deadline, Some(Duration::from_secs(2)));
    assert_eq!(policy.backoff.max(), Duration::from_millis(200));
    // ... and the shared budget the default names.
    let budget = registry.retry_budget("shared").unwrap();
    let before = policy.budget.unwrap().withdrawals;
    assert!(budget.try_withdraw());
    let after = registry.retry_policy("inventory").unwrap().snapshot();
    assert_eq!(after.budget.unwrap().withdrawals, before + 1);
}

#[tokio::test(start_paused = true)]
async fn yaml_and_json_files_read_the_same_as_toml() {
    let yaml = r#"
circuit_breaker:
  configs:
    default:
      minimum_calls: 5
      wait_duration_in_open: 5s
  instances:
    inventory:
      failure_rate_threshold: 40
retry_policy:
  instances:
    inventory:
      backoff: { kind: exponential, base: 10ms, max: 200ms }
"#;
    let from_yaml: RegistryConfig = serde_yaml::from_str(yaml).unwrap();
    let from_toml: RegistryConfig = toml::from_str(
        "[circuit_breaker.configs.default]\nminimum_calls = 5\nwait_duration_in_open = \"5s\"\n\
         [circuit_breaker.instances.inventory]\nfailure_rate_threshold = 40\n\
         [retry_policy.instances.inventory]\n\
         backoff = { kind = \"exponential\", base = \"10ms\", max = \"200ms\" }\n",
    )
    .unwrap();
    assert_eq!(from_yaml, from_toml);
    let json = serde_json::to_string(&from_yaml).unwrap();
    assert_eq!(
        serde_json::from_str::<RegistryConfig>(&json).unwrap(),
        from_toml
    );
    let registry = Registry::from_config_with_clock(from_yaml, Clock::tokio()).unwrap();
    assert_eq!(
        registry.circuit_breaker("inventory").unwrap().name(),
        "inventory"
    );
    let err = serde_yaml::from_str::<RegistryConfig>(
        "circuit_breaker:\n  instances:\n    x:\n      minimum_cals: 5\n",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("unknown field `minimum_cals`"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_example_stack_opens_the_breaker_after_the_default_minimum_calls() {
    // The stack of examples/config.rs: retry (inventory) over breaker (inventory) over a
    // backend that always fails.
    let registry = registry(EXAMPLE).unwrap();
    let breaker = registry.circuit_breaker("inventory").unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&attempts);
    let client = ServiceBuilder::new()
        .retry_policy(&registry.retry_policy("inventory").unwrap())
        .circuit_breaker(&breaker)
        .service_fn(move |_: &'static str| {
            // Relaxed: a count, read after the calls.
            seen.fetch_add(1, Ordering::Relaxed);
            async { Err::<(), BoxError>("down".into()) }
        });
    let mut rejected = 0;
    for _ in 0..10 {
        let err = client.clone().oneshot("sku").await.unwrap_err();
        rejected += u32::from(is_local_rejection(&*err));
    }
    // configs.default's minimum_calls (5), not the builder's 20: the fifth failed attempt
    // opens it, and every later call is a local rejection returned at once.
    assert_eq!(attempts.load(Ordering::Relaxed), 5);
    assert_eq!(rejected, 9);
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_policy_with_its_own_classifier_takes_the_files_settings() {
    // Classifiers are code: apply the file's merged settings to a builder that has one.
    let registry = registry(EXAMPLE).unwrap();
    let config = registry.retry_policy_config("inventory").unwrap();
    assert_eq!(config.budget.as_deref(), Some("shared"));
    let mut builder = config
        .apply(
            RetryPolicy::builder().classify(|r: Result<&u32, &BoxError>| match r {
                Ok(&n) if n >= 500 => palisade::common::Outcome::Failure,
                Ok(_) => palisade::common::Outcome::Success,
                Err(_) => palisade::common::Outcome::Failure,
            }),
        )
        .unwrap()
        .name("inventory-http");
    if let Some(budget) = &config.budget {
        builder = builder.budget(registry.retry_budget(budget).unwrap());
    }
    let policy = builder.build().unwrap();
    assert_eq!(policy.snapshot().deadline, Some(Duration::from_secs(2)));
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&attempts);
    let client = ServiceBuilder::new()
        .retry_policy(&policy)
        .service_fn(move |_: ()| {
            // Relaxed: a count, read after the call.
            let n = seen.fetch_add(1, Ordering::Relaxed);
            async move { Ok::<u32, BoxError>(if n < 2 { 503 } else { 200 }) }
        });
    assert_eq!(client.oneshot(()).await.unwrap(), 200);
    assert_eq!(attempts.load(Ordering::Relaxed), 3);
}

#[tokio::test(start_paused = true)]
async fn the_same_name_is_the_same_handle() {
    let registry = registry(EXAMPLE).unwrap();
    registry.circuit_breaker("inventory").unwrap().force_open();
    assert_eq!(
        registry.circuit_breaker("inventory").unwrap().state(),
        State::ForcedOpen
    );
    assert_eq!(
        registry.circuit_breaker("payments").unwrap().state(),
        State::Closed
    );
    // Clones of the registry share the handles too.
    let clone = registry.clone();
    clone.circuit_breaker("payments").unwrap().force_open();
    assert_eq!(
        registry.circuit_breaker("payments").unwrap().state(),
        State::ForcedOpen
    );
}

#[tokio::test(start_paused = true)]
async fn an_unconfigured_name_is_an_error_naming_the_section() {
    let registry = registry(EXAMPLE).unwrap();
    let err: UnknownInstance = registry.circuit_breaker("inventroy").unwrap_err();
    assert_eq!(err.section, "circuit_breaker");
    assert_eq!(
        err.to_string(),
        "no circuit_breaker named `inventroy` is configured \
         (add `[circuit_breaker.instances.inventroy]`)"
    );
    assert!(registry.bulkhead("payments").is_err());
    assert!(registry.retry_policy_config("nope").is_err());
    // Listed with no fields: the defaults.
    let registry = self::registry("[bulkhead.instances.payments]").unwrap();
    assert_eq!(registry.bulkhead("payments").unwrap().limit(), 25);
}

#[tokio::test(start_paused = true)]
async fn an_out_of_range_value_names_its_path() {
    let err = error("[circuit_breaker.instances.inventory]\nfailure_rate_threshold = 150\n");
    assert_eq!(
        err.path(),
        "circuit_breaker.inventory.failure_rate_threshold"
    );
    assert!(
        err.to_string()
            .starts_with("circuit_breaker.inventory.failure_rate_threshold: must be a percentage"),
        "{err}"
    );
    let source = err.source().unwrap().downcast_ref::<ConfigError>().unwrap();
    assert_eq!(source.field(), "failure_rate_threshold");

    let paths = [
        (
            "[bulkhead.instances.db]\nmax_concurrent_calls = 0",
            "bulkhead.db.max_concurrent_calls",
        ),
        (
            "[rate_limiter.instances.p]\nrate = 0\nperiod = \"1s\"",
            "rate_limiter.p.rate",
        ),
        (
            "[rate_limiter.instances.p]\nrate = 5",
            "rate_limiter.p.period",
        ),
        ("[rate_limiter.instances.p]", "rate_limiter.p.rate"),
        (
            "[retry_budget.instances.b]\npercent_can_retry = 20",
            "retry_budget.b.percent_can_retry",
        ),
        (
            "[retry_policy.instances.r]\nmax_attempts = 0",
            "retry_policy.r.max_attempts",
        ),
        // A bad value an instance inherits is blamed on configs.default...
        (
            "[circuit_breaker.configs.default]\nminimum_calls = 0\n[circuit_breaker.instances.a]",
            "circuit_breaker.configs.default.minimum_calls",
        ),
        (
            "[retry_policy.configs.default]\nbudget = \"nope\"\n[retry_policy.instances.a]",
            "retry_policy.configs.default.budget",
        ),
        (
            "[rate_limiter.configs.default]\nrate = 10\nperiod = \"0s\"\n\
             [rate_limiter.instances.a]\nburst = 5",
            "rate_limiter.configs.default.period",
        ),
        // ... and an instance's own bad value on the instance, whatever the default says.
        (
            "[bulkhead.configs.default]\nmax_concurrent_calls = 0\n\
             [bulkhead.instances.a]\nmax_concurrent_calls = 0",
            "bulkhead.a.max_concurrent_calls",
        ),
        // A budget that names no retry_budget instance.
        (
            "[retry_policy.instances.r]\nbudget = \"shraed\"",
            "retry_policy.r.budget",
        ),
    ];
    for (text, path) in paths {
        assert_eq!(error(text).path(), path, "{text}");
    }
    assert_eq!(
        error("[retry_policy.instances.r]\nbudget = \"shraed\"").problem(),
        "no retry_budget named `shraed` in the file"
    );
}

#[tokio::test(start_paused = true)]
async fn configs_default_is_checked_through_the_instances_that_use_it() {
    // No instance, nothing built: no handle named "default" registers metrics for nobody.
    let registry = registry("[circuit_breaker.configs.default]\nminimum_calls = 0").unwrap();
    assert_eq!(registry.circuit_breaker_names().count(), 0);
    // An instance that overrides the bad value builds.
    let registry = registry_with(
        "[circuit_breaker.configs.default]\nminimum_calls = 0\n\
         [circuit_breaker.instances.a]\nminimum_calls = 3",
    );
    assert_eq!(registry.circuit_breaker("a").unwrap().name(), "a");
}

fn registry_with(text: &str) -> Registry {
    registry(text).expect("the file builds")
}

#[tokio::test(start_paused = true)]
async fn a_rate_limiter_default_without_a_quota_is_completed_by_each_instance() {
    let registry = registry(
        "[rate_limiter.configs.default]\nburst = 3\nmax_wait = \"5ms\"\n\
         [rate_limiter.instances.a]\nrate = 10\nperiod = \"1s\"\n",
    )
    .unwrap();
    assert_eq!(registry.rate_limiter("a").unwrap().quota().burst(), 3);
}

#[test]
fn a_typo_is_an_error_naming_the_field() {
    let cases = [
        (
            "[circuit_breaker.instances.x]\nfailure_rate_treshold = 30",
            "failure_rate_treshold",
        ),
        ("[circuit_braker.instances.x]", "circuit_braker"),
        ("[circuit_breaker.instance.x]", "instance"),
        ("[circuit_breaker.configs.shared]", "shared"),
        (
            "[bulkhead.instances.x]\nmax_wait = \"5 fortnights\"",
            "max_wait",
        ),
        (
            "[retry_policy.instances.x]\nbackoff = { kind = \"linear\" }",
            "linear",
        ),
    ];
    for (text, name) in cases {
        let err = toml::from_str::<RegistryConfig>(text)
            .unwrap_err()
            .to_string();
        assert!(err.contains(name), "{text}: {err}");
    }
}

#[test]
fn a_file_round_trips_through_toml_and_json() {
    let config: RegistryConfig = toml::from_str(EXAMPLE).unwrap();
    let text = toml::to_string(&config).unwrap();
    assert_eq!(
        toml::from_str::<RegistryConfig>(&text).unwrap(),
        config,
        "{text}"
    );
    let json = serde_json::to_string(&config).unwrap();
    assert_eq!(
        serde_json::from_str::<RegistryConfig>(&json).unwrap(),
        config
    );
    // Durations are written as in the file.
    assert!(text.contains("wait_duration_in_open = \"5s\""), "{text}");
    // The empty file is the empty config, and writes nothing.
    assert_eq!(
        toml::from_str::<RegistryConfig>("").unwrap(),
        RegistryConfig::default()
    );
    assert_eq!(
        toml::to_string(&RegistryConfig::default()).unwrap().trim(),
        ""
    );
}

/// Field names each section's deserializer knows, with typos among them, so the generated
/// files hit both the accepted and the refused paths.
const FIELDS: &[(&str, &[&str])] = &[
    (
        "circuit_breaker",
        &[
            "failure_rate_threshold",
            "slow_call_duration",
            "slow_call_rate_threshold",
            "count_window",
            "time_window",
            "time_window_buckets",
            "minimum_calls",
            "wait_duration_in_open",
            "open_backoff_jitter",
            "fixed_open_wait",
            "permitted_calls_in_half_open",
            "max_wait_in_half_open",
            "consecutive_failures",
            "trip_on_rates",
            "jitter_seed",
        ],
    ),
    (
        "bulkhead",
        &["max_concurrent_calls", "max_wait", "max_waiting_calls"],
    ),
    ("rate_limiter", &["rate", "period", "burst", "max_wait"]),
    (
        "retry_budget",
        &["ttl", "min_retries_per_sec", "percent_can_retry"],
    ),
    (
        "retry_policy",
        &[
            "max_attempts",
            "deadline",
            "attempt_timeout",
            "max_retry_after",
            "retry_local_rejections",
            "unlimited",
            "seed",
            "budget",
        ],
    ),
];

fn value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        (0u64..200).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-10.0f64..200.0).prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        prop::sample::select(vec![
            "0s",
            "1ns",
            "1ms",
            "250ms",
            "5s",
            "1h",
            "10000years",
            "forever",
            "",
            "a",
            "b",
        ])
        .prop_map(Value::from),
        (0u64..u64::MAX).prop_map(|n| Value::from(format!("{n}ns"))),
        Just(json!({ "multiplier": 2.0, "max": "1s" })),
        Just(json!({ "kind": "exponential", "base": "1ms", "max": "1s" })),
        Just(json!({ "kind": "constant", "delay": "0s" })),
        Just(Value::Null),
    ]
}

fn file() -> impl Strategy<Value = serde_json::Value> {
    let entry = (
        0..FIELDS.len(),
        any::<bool>(),
        prop::sample::select(vec!["a", "b", "default"]),
        any::<prop::sample::Index>(),
        value(),
    );
    prop::collection::vec(entry, 0..12).prop_map(|entries| {
        let mut file = serde_json::Map::new();
        for (section, in_default, instance, field, value) in entries {
            let (name, fields) = FIELDS[section];
            let table = file
                .entry(name)
                .or_insert_with(|| serde_json::json!({}))
                .as_object_mut()
                .unwrap();
            let (kind, key) = if in_default {
                ("configs", "default")
            } else {
                ("instances", instance)
            };
            let fields_of = table
                .entry(kind)
                .or_insert_with(|| serde_json::json!({}))
                .as_object_mut()
                .unwrap()
                .entry(key)
                .or_insert_with(|| serde_json::json!({}))
                .as_object_mut()
                .unwrap();
            let field = if name == "circuit_breaker" && field.index(4) == 0 {
                "open_backoff"
            } else if name == "retry_policy" && field.index(4) == 0 {
                "backoff"
            } else {
                field.get(fields)
            };
            fields_of.insert(field.to_owned(), value);
        }
        serde_json::Value::Object(file)
    })
}

proptest! {
    /// Every file the deserializer accepts builds a registry or names the path of a bad
    /// value; nothing panics (a panic fails the test).
    #[test]
    fn every_accepted_file_builds_or_names_a_path(file in file()) {
        if let Ok(config) = serde_json::from_value::<RegistryConfig>(file) {
            match Registry::from_config(config) {
                Ok(registry) => {
                    for name in registry.circuit_breaker_names() {
                        let breaker = registry.circuit_breaker(name).unwrap();
                        prop_assert_eq!(breaker.name(), name);
                    }
                }
                Err(err) => {
                    let section = err.path().split('.').next().unwrap();
                    prop_assert!(FIELDS.iter().any(|(s, _)| *s == section), "{}", err);
                    prop_assert!(err.path().split('.').count() >= 3, "{}", err);
                }
            }
        }
    }
}

#[test]
fn the_registry_types_are_send_sync_clone_debug() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug + 'static>() {}
    check::<Registry>();
    check::<RegistryConfig>();
    check::<RegistryError>();
    check::<UnknownInstance>();
    fn error<T: std::error::Error + Send + Sync + 'static>() {}
    error::<RegistryError>();
    error::<UnknownInstance>();
}
