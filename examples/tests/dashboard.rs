//! `dashboards/palisade.json` queries only metrics the layers record, with labels they carry.
//!
//! Every layer is built (feature `metrics`) under an in-process `metrics` recorder that notes
//! each metric registered, its kind and its label keys; the dashboard's queries are then
//! checked against that record: every `palisade_*` name (a histogram's `_bucket`, `_sum`,
//! `_count` series included), every label in a `by (...)` clause or a `{...}` selector (the
//! scrape's own `job` and `instance` aside), and `le` only on histograms.

use palisade::common::events::MetricKind as Kind;
use palisade::common::test_util::TestRecorder;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Builds one of every layer handle (their metrics are registered at build).
fn build_every_layer() {
    use palisade::prelude::*;
    CircuitBreaker::builder().name("cb").build().unwrap();
    // Only a breaker with slow-call detection times calls (duration histogram, slow calls).
    CircuitBreaker::builder()
        .name("cb_slow")
        .slow_call_duration(Duration::from_secs(1))
        .build()
        .unwrap();
    Bulkhead::builder().name("bh").build().unwrap();
    Bulkhead::builder()
        .name("bh_adaptive")
        .adaptive(
            palisade::bulkhead::adaptive::Aimd::builder()
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    RateLimiter::builder()
        .name("rl")
        .rate(10, Duration::from_secs(1))
        .build()
        .unwrap();
    // Only a keyed limiter can reject with reason `too_many_keys`.
    let _keyed = KeyedRateLimiter::<u32>::builder()
        .name("rl_keyed")
        .rate(10, Duration::from_secs(1))
        .build()
        .unwrap();
    RetryPolicy::builder().name("rt").build().unwrap();
    palisade::retry::RetryBudget::builder().build().unwrap();
    palisade::retry::RetryThrottle::builder().build().unwrap();
    palisade::retry::AdaptiveThrottle::builder()
        .build()
        .unwrap();
    palisade::retry::HedgePolicy::builder().build().unwrap();
    let _: Balancer<u32, palisade::common::test_util::QueueingEndpoint> =
        Balancer::builder().name("lb").build().unwrap();
}

/// The `palisade_*` names in `expr`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("palisade_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// Label keys in `by (...)` clauses and `{...}` selectors of `expr`.
fn label_keys(expr: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut grab = |open: &str, close: char, split: &[char]| {
        let mut rest = expr;
        while let Some(at) = rest.find(open) {
            let tail = &rest[at + open.len()..];
            let end = tail.find(close).expect("balanced");
            for part in tail[..end].split(',') {
                let key = part.split(split).next().unwrap_or("").trim();
                if !key.is_empty() && key != "__name__" {
                    keys.insert(key.to_owned());
                }
            }
            rest = &tail[end..];
        }
    };
    grab("by (", ')', &[]);
    grab("{", '}', &['=', '!', '~']);
    keys
}

fn dashboard() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards/palisade.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("dashboards/palisade.json"))
        .expect("valid JSON")
}

/// Every `expr` of the panels, with its panel's title.
fn queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("").to_owned();
            out.push((title, target["expr"].as_str().expect("expr").to_owned()));
        }
    }
    out
}

#[test]
fn every_query_names_a_recorded_metric_with_its_labels() {
    let recorder = TestRecorder::new();
    metrics::with_local_recorder(&recorder, build_every_layer);
    // Metric name → (kind, label keys).
    let recorded: BTreeMap<String, (Kind, BTreeSet<String>)> = recorder
        .registered()
        .into_iter()
        .map(|(name, registered)| {
            let kind = registered
                .kind()
                .unwrap_or_else(|| panic!("{name} registered as {:?}", registered.kinds));
            (name, (kind, registered.label_keys))
        })
        .collect();
    assert!(recorded.len() > 30, "the layers registered {recorded:?}");

    let dashboard = dashboard();
    let queries = queries(&dashboard);
    assert!(queries.len() > 30);
    let mut queried = BTreeSet::new();
    for (title, expr) in &queries {
        let found = metric_names(expr);
        assert!(
            !found.is_empty(),
            "{title}: {expr} queries no palisade metric"
        );
        for series in found {
            let (base, histogram_series) = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| series.strip_suffix(s).map(|b| (b.to_owned(), true)))
                .filter(|(b, _)| recorded.get(b).is_some_and(|m| m.0 == Kind::Histogram))
                .unwrap_or((series.clone(), false));
            let Some((kind, labels)) = recorded.get(&base) else {
                panic!("{title}: {series} is not a metric any layer records ({expr})");
            };
            assert!(
                *kind != Kind::Histogram || histogram_series,
                "{title}: histogram {base} queried without _bucket/_sum/_count"
            );
            for key in label_keys(expr) {
                match key.as_str() {
                    "job" | "instance" => {}
                    "le" => assert_eq!(*kind, Kind::Histogram, "{title}: le on {base}"),
                    key => assert!(
                        labels.contains(key),
                        "{title}: {base} has no label {key} (it has {labels:?}): {expr}"
                    ),
                }
            }
            queried.insert(base);
        }
    }
    // Every layer is on the dashboard.
    for layer in [
        "circuit_breaker",
        "bulkhead",
        "rate_limit",
        "retry",
        "load_balancer",
    ] {
        let prefix = format!("palisade_{layer}_");
        assert!(
            queried.iter().any(|m| m.starts_with(&prefix)),
            "no panel for {layer}"
        );
    }
    // And nothing a layer records is left off it (the test layers of core aside).
    let missing: Vec<_> = recorded.keys().filter(|m| !queried.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "recorded but not on the dashboard: {missing:?}"
    );
}

#[test]
fn name_job_and_instance_are_template_variables() {
    let dashboard = dashboard();
    let vars: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for var in ["datasource", "name", "job", "instance"] {
        assert!(vars.contains(&var), "{var} missing from {vars:?}");
    }
    for (title, expr) in queries(&dashboard) {
        assert!(
            expr.contains(r#"name=~"$name""#),
            "{title}: {expr} ignores the name variable"
        );
    }
}

#[test]
fn the_label_parser_finds_what_the_test_relies_on() {
    let keys = label_keys(
        r#"sum by (name, state) (rate(palisade_x_total{name=~"$name", state!="open"}[5m]))"#,
    );
    assert_eq!(
        keys.into_iter().collect::<Vec<_>>(),
        ["name", "state"].map(str::to_owned)
    );
    assert_eq!(
        metric_names("a(palisade_a_total) / b(palisade_b_bucket{le})"),
        ["palisade_a_total", "palisade_b_bucket"].map(str::to_owned)
    );
}
