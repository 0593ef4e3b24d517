//! `examples/prometheus.rs`: the recommended stack's metrics, scraped from the Prometheus
//! exporter's HTTP listener on 127.0.0.1, have the series, help text and values the scripted
//! load implies (see `examples/src/prometheus.rs` for the script).

use palisade_examples::prometheus::{CALLS, FAIL_EVERY, Scrape, run};
use std::sync::OnceLock;

/// One run shared by the tests that only read it.
fn scrape() -> &'static Scrape {
    static SCRAPE: OnceLock<Scrape> = OnceLock::new();
    SCRAPE.get_or_init(|| run().expect("the example runs and the exporter answers the scrape"))
}

/// Failed first attempts, each retried once.
const FAILURES: f64 = (CALLS / FAIL_EVERY) as f64;
const SUCCESSES: f64 = CALLS as f64;

fn value(name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape()
        .value(name, labels)
        .unwrap_or_else(|| panic!("no single series {name}{labels:?} in\n{}", scrape().text))
}

#[test]
fn the_scrape_came_from_the_exporters_listener_on_loopback() {
    let scrape = scrape();
    assert!(scrape.address.ip().is_loopback(), "{}", scrape.address);
    assert_ne!(scrape.address.port(), 0);
    assert_eq!(scrape.errors, 0, "every request succeeds, retried or not");
}

#[test]
fn every_layer_exports_its_series_with_help_and_type() {
    let text = &scrape().text;
    let expected = [
        ("palisade_retry_calls_total", "counter"),
        ("palisade_retry_attempts_total", "counter"),
        ("palisade_retry_retries_total", "counter"),
        ("palisade_retry_backoff_seconds", "histogram"),
        ("palisade_retry_rejections_total", "counter"),
        ("palisade_retry_budget_withdrawals_total", "counter"),
        ("palisade_retry_budget_refusals_total", "counter"),
        ("palisade_circuit_breaker_calls_total", "counter"),
        ("palisade_circuit_breaker_rejections_total", "counter"),
        (
            "palisade_circuit_breaker_call_duration_seconds",
            "histogram",
        ),
        ("palisade_circuit_breaker_transitions_total", "counter"),
        ("palisade_circuit_breaker_state", "gauge"),
        ("palisade_rate_limit_calls_total", "counter"),
        ("palisade_rate_limit_rejections_total", "counter"),
        ("palisade_rate_limit_burst", "gauge"),
        ("palisade_rate_limit_rate", "gauge"),
        ("palisade_bulkhead_calls_total", "counter"),
        ("palisade_bulkhead_rejections_total", "counter"),
        ("palisade_bulkhead_wait_seconds", "histogram"),
        ("palisade_bulkhead_in_flight", "gauge"),
        ("palisade_bulkhead_limit", "gauge"),
        ("palisade_load_balancer_calls_total", "counter"),
        ("palisade_load_balancer_rejections_total", "counter"),
        ("palisade_load_balancer_call_duration_seconds", "histogram"),
        ("palisade_load_balancer_ejections_total", "counter"),
        ("palisade_load_balancer_endpoints", "gauge"),
        ("palisade_load_balancer_ejected_endpoints", "gauge"),
    ];
    for (name, kind) in expected {
        let help = text
            .lines()
            .filter(|l| l.starts_with(&format!("# HELP {name} ")))
            .collect::<Vec<_>>();
        assert_eq!(help.len(), 1, "one HELP line for {name}: {help:?}");
        assert!(
            help[0].len() > format!("# HELP {name} ").len() + 10,
            "{help:?}"
        );
        assert!(
            text.lines().any(|l| l == format!("# TYPE {name} {kind}")),
            "# TYPE {name} {kind} missing"
        );
        let sample = if kind == "histogram" {
            format!("{name}_bucket{{")
        } else {
            format!("{name}{{")
        };
        assert!(
            text.lines().any(|l| l.starts_with(&sample)),
            "no sample of {name}"
        );
    }
    // The printed form keeps only palisade_ lines, each family's HELP and TYPE first.
    let lines = scrape().palisade_lines();
    assert!(lines.len() > 100, "{lines:?}");
    assert!(lines.iter().all(|l| l.starts_with("palisade_")
        || l.starts_with("# HELP palisade_")
        || l.starts_with("# TYPE palisade_")));
    let state = lines
        .iter()
        .position(|l| l.starts_with("# HELP palisade_circuit_breaker_state "))
        .expect("state family printed");
    assert!(lines[state + 1].starts_with("# TYPE palisade_circuit_breaker_state "));
    assert!(lines[state + 2].starts_with("palisade_circuit_breaker_state{"));
    // A histogram prints as Prometheus writes one: buckets by `le`, `+Inf` last, then sum, count.
    let backoff: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("palisade_retry_backoff_seconds_"))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    let les: Vec<&str> = backoff
        .iter()
        .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(
        les,
        [
            "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.05", "0.25", "1", "+Inf"
        ]
    );
    assert_eq!(
        &backoff[les.len()..],
        [
            "palisade_retry_backoff_seconds_sum{name=\"client\"}",
            "palisade_retry_backoff_seconds_count{name=\"client\"}"
        ]
    );
}

/// Regression (issue 9 §6): a fixed bulkhead exported an always-empty duration histogram
/// (with help text about adaptive bulkheads), breakers without slow-call detection all-zero
/// duration and slow-call series, and a plain limiter a `reason="too_many_keys"` counter.
#[test]
fn no_series_that_can_never_carry_data() {
    let text = &scrape().text;
    let samples = |name: &str| -> Vec<&str> {
        text.lines()
            .filter(|l| !l.starts_with('#') && l.starts_with(name))
            .collect()
    };
    assert!(
        !text.contains("palisade_bulkhead_call_duration_seconds"),
        "the fixed bulkhead times no call:\n{text}"
    );
    for name in [
        "palisade_circuit_breaker_call_duration_seconds",
        "palisade_circuit_breaker_slow_calls_total",
    ] {
        let lines = samples(name);
        for breaker in ["early", "idle"] {
            let label = format!("name=\"{breaker}\"");
            assert!(
                !lines.iter().any(|l| l.contains(&label)),
                "{breaker} has no slow-call detection: {lines:?}"
            );
        }
        assert!(
            lines.iter().any(|l| l.contains("name=\"backends\"")),
            "the slow-call breaker exports {name}"
        );
    }
    let rejections = samples("palisade_rate_limit_rejections_total");
    assert!(!rejections.is_empty());
    assert!(
        !rejections.iter().any(|l| l.contains("too_many_keys")),
        "a plain limiter refuses no keys: {rejections:?}"
    );
}

#[test]
fn a_breaker_built_and_never_called_exports_its_closed_state() {
    let state = "palisade_circuit_breaker_state";
    for breaker in ["idle", "backends"] {
        assert_eq!(value(state, &[("name", breaker), ("state", "closed")]), 1.0);
        for other in [
            "open",
            "half_open",
            "forced_open",
            "disabled",
            "metrics_only",
        ] {
            assert_eq!(
                value(state, &[("name", breaker), ("state", other)]),
                0.0,
                "{breaker}: {other}"
            );
        }
    }
    for outcome in ["success", "failure", "ignore", "rejected"] {
        let labels = [("name", "idle"), ("outcome", outcome)];
        assert_eq!(value("palisade_circuit_breaker_calls_total", &labels), 0.0);
    }
    // Gauges of the other layers are set at build too.
    assert_eq!(
        value("palisade_bulkhead_limit", &[("name", "client")]),
        16.0
    );
    assert_eq!(
        value("palisade_bulkhead_in_flight", &[("name", "client")]),
        0.0
    );
    assert_eq!(
        value("palisade_rate_limit_burst", &[("name", "client")]),
        1000.0
    );
    assert_eq!(
        value("palisade_rate_limit_rate", &[("name", "client")]),
        10_000.0
    );
    let endpoints = [("name", "backends")];
    assert_eq!(value("palisade_load_balancer_endpoints", &endpoints), 3.0);
    assert_eq!(
        value("palisade_load_balancer_ejected_endpoints", &endpoints),
        0.0
    );
}

#[test]
fn a_breaker_built_before_the_recorder_registers_at_its_first_event() {
    let early = [("name", "early")];
    let calls = |outcome| {
        value(
            "palisade_circuit_breaker_calls_total",
            &[early[0], ("outcome", outcome)],
        )
    };
    assert_eq!(calls("success"), 1.0, "its one call");
    assert_eq!(calls("failure"), 0.0);
    let state = |s| value("palisade_circuit_breaker_state", &[early[0], ("state", s)]);
    assert_eq!(
        state("closed"),
        1.0,
        "the state gauge is set when it registers late"
    );
    assert_eq!(state("open"), 0.0);
}

#[test]
fn calls_counters_have_the_values_the_script_implies() {
    // The retry layer answers every request with a success: each failed first attempt is
    // retried once and succeeds.
    let retry = |outcome| {
        value(
            "palisade_retry_calls_total",
            &[("name", "client"), ("outcome", outcome)],
        )
    };
    assert_eq!(retry("success"), SUCCESSES);
    assert_eq!(retry("failure"), 0.0);
    assert_eq!(retry("rejected"), 0.0);
    let client = [("name", "client")];
    assert_eq!(value("palisade_retry_retries_total", &client), FAILURES);
    assert_eq!(
        value("palisade_retry_attempts_total", &client),
        SUCCESSES + FAILURES
    );
    assert_eq!(
        value("palisade_retry_budget_withdrawals_total", &client),
        FAILURES
    );
    assert_eq!(value("palisade_retry_budget_refusals_total", &client), 0.0);

    // Every layer below the retry sees each attempt: the successes and the failed first
    // attempts, and refuses nothing.
    for (layer, name) in [
        ("circuit_breaker", "backends"),
        ("rate_limit", "client"),
        ("bulkhead", "client"),
        ("load_balancer", "backends"),
    ] {
        let metric = format!("palisade_{layer}_calls_total");
        let calls = |outcome| value(&metric, &[("name", name), ("outcome", outcome)]);
        assert_eq!(calls("success"), SUCCESSES, "{layer}");
        assert_eq!(calls("failure"), FAILURES, "{layer}");
        assert_eq!(calls("ignore"), 0.0, "{layer}");
        assert_eq!(calls("rejected"), 0.0, "{layer}");
    }
    let rejections = |metric, name, reason| value(metric, &[("name", name), ("reason", reason)]);
    assert_eq!(
        rejections(
            "palisade_circuit_breaker_rejections_total",
            "backends",
            "circuit_open"
        ),
        0.0
    );
    assert_eq!(
        rejections(
            "palisade_rate_limit_rejections_total",
            "client",
            "rate_limited"
        ),
        0.0
    );
    assert_eq!(
        rejections(
            "palisade_bulkhead_rejections_total",
            "client",
            "bulkhead_full"
        ),
        0.0
    );
    let open = [("name", "backends"), ("state", "open")];
    assert_eq!(
        value("palisade_circuit_breaker_transitions_total", &open),
        0.0
    );
}

#[test]
fn duration_histograms_have_buckets_sum_and_count() {
    // Each attempt takes the endpoint's 1 ms of paused time.
    for metric in [
        "palisade_circuit_breaker_call_duration_seconds",
        "palisade_load_balancer_call_duration_seconds",
    ] {
        for (outcome, calls) in [("success", SUCCESSES), ("failure", FAILURES)] {
            let labels = [("name", "backends"), ("outcome", outcome)];
            let count = value(&format!("{metric}_count"), &labels);
            assert_eq!(count, calls, "{metric} {outcome}");
            let sum = value(&format!("{metric}_sum"), &labels);
            assert!(
                (calls * 0.001..=calls * 0.0025).contains(&sum),
                "{metric} {outcome}: sum {sum} for {calls} calls of ~1 ms"
            );
            let bucket = |le| {
                value(
                    &format!("{metric}_bucket"),
                    &[labels[0], labels[1], ("le", le)],
                )
            };
            assert_eq!(bucket("+Inf"), calls, "{metric} {outcome}");
            assert_eq!(
                bucket("0.0025"),
                calls,
                "{metric} {outcome}: all within 2.5 ms"
            );
            assert_eq!(
                bucket("0.0005"),
                0.0,
                "{metric} {outcome}: none under 0.5 ms"
            );
        }
    }
    // The retry's backoff: 10 ms before each of the retries.
    let client = [("name", "client")];
    assert_eq!(
        value("palisade_retry_backoff_seconds_count", &client),
        FAILURES
    );
    let sum = value("palisade_retry_backoff_seconds_sum", &client);
    assert!((sum - FAILURES * 0.01).abs() < 1e-9, "{sum}");
    let le = |le| {
        value(
            "palisade_retry_backoff_seconds_bucket",
            &[client[0], ("le", le)],
        )
    };
    assert_eq!(le("0.005"), 0.0);
    assert_eq!(le("0.01"), FAILURES);
}

#[test]
fn the_run_is_deterministic() {
    let again = run().expect("a second run in the same process");
    assert_ne!(again.address, scrape().address, "its own listener");
    assert_eq!(again.palisade_lines(), scrape().palisade_lines());
}
