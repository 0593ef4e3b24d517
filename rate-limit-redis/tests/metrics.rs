//! The `metrics` feature: the store gauge from build, decisions by outcome, store errors by
//! kind, on a local recorder. Needs no Redis: it measures an outage (nothing listens on the
//! port) in fail-open mode.

#![cfg(feature = "metrics")]

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use palisade_rate_limit::RateLimiter;
use palisade_rate_limit_redis::RedisRateLimiter;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One metric's value: a count, or a gauge's bits.
#[derive(Default)]
struct Cell(AtomicU64);

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        // Relaxed: test statistics, read after the calls complete.
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        // Relaxed: as above.
        self.0.store(value, Ordering::Relaxed);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, _: f64) {}
    fn decrement(&self, _: f64) {}
    fn set(&self, value: f64) {
        // Relaxed: as above.
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
}

impl HistogramFn for Cell {
    fn record(&self, _: f64) {
        // Relaxed: as above.
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Local {
    cells: Mutex<HashMap<String, Arc<Cell>>>,
    described: Mutex<Vec<String>>,
}

impl Local {
    fn cell(&self, key: &Key) -> Arc<Cell> {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let id = format!("{}{{{}}}", key.name(), labels.join(","));
        Arc::clone(self.cells.lock().unwrap().entry(id).or_default())
    }

    fn read(&self, id: &str) -> Option<u64> {
        // Relaxed: as above.
        self.cells
            .lock()
            .unwrap()
            .get(id)
            .map(|c| c.0.load(Ordering::Relaxed))
    }
}

impl Recorder for Local {
    fn describe_counter(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.described.lock().unwrap().push(key.as_str().to_owned());
    }
    fn describe_gauge(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.described.lock().unwrap().push(key.as_str().to_owned());
    }
    fn describe_histogram(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.described.lock().unwrap().push(key.as_str().to_owned());
    }
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.cell(key))
    }
}

#[tokio::test]
async fn an_outage_is_counted_by_kind_and_flips_the_store_gauge() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let recorder = Local::default();
    let limiter = metrics::with_local_recorder(&recorder, || {
        RedisRateLimiter::builder()
            .url(format!("redis://127.0.0.1:{port}/"))
            .rate(100, Duration::from_secs(1))
            .burst(10)
            .call_timeout(Duration::from_millis(100))
            .fail_open(
                RateLimiter::builder()
                    .rate(1, Duration::from_secs(60))
                    .burst(1)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    });
    let gauge = "palisade_rate_limit_store_available{name=rate_limit_redis}";
    assert_eq!(
        recorder.read(gauge).map(f64::from_bits),
        Some(1.0),
        "set at build"
    );
    assert!(
        limiter.acquire("k", 1).await.is_ok(),
        "the fallback's one token"
    );
    assert!(
        limiter.acquire("k", 1).await.is_err(),
        "the fallback's limit"
    );
    assert_eq!(
        recorder.read(gauge).map(f64::from_bits),
        Some(0.0),
        "in an outage"
    );
    let calls = |outcome: &str| {
        recorder
            .read(&format!(
                "palisade_rate_limit_calls_total{{name=rate_limit_redis,outcome={outcome}}}"
            ))
            .unwrap_or(0)
    };
    assert_eq!((calls("success"), calls("rejected")), (1, 1));
    assert_eq!(
        recorder
            .read("palisade_rate_limit_rejections_total{name=rate_limit_redis,reason=rate_limited}")
            .unwrap_or(0),
        1
    );
    let errors: u64 = ["connection", "timeout"]
        .iter()
        .map(|kind| {
            recorder
                .read(&format!(
                    "palisade_rate_limit_store_errors_total{{kind={kind},name=rate_limit_redis}}"
                ))
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(errors, 2);
    let described = recorder.described.lock().unwrap().clone();
    for name in [
        "palisade_rate_limit_calls_total",
        "palisade_rate_limit_store_errors_total",
        "palisade_rate_limit_store_available",
        "palisade_rate_limit_store_round_trip_seconds",
    ] {
        assert!(
            described.iter().any(|d| d == name),
            "{name} described: {described:?}"
        );
    }
}

/// A keyed limiter's refusal of a new key counts as a rejected call and as
/// `rejections_total{reason="too_many_keys"}`, a series registered at the first such refusal.
#[test]
fn a_refused_key_is_counted_as_too_many_keys() {
    use palisade_core::events::RecordMetrics as _;
    use palisade_rate_limit_redis::RedisRateLimiterEvent;
    let recorder = Local::default();
    let series = "palisade_rate_limit_rejections_total{name=keyed,reason=too_many_keys}";
    metrics::with_local_recorder(&recorder, || {
        let handles = RedisRateLimiterEvent::register("keyed");
        assert_eq!(
            recorder.read(series),
            None,
            "not registered before a refusal"
        );
        let refused = RedisRateLimiterEvent::TooManyKeys {
            max_keys: 2,
            retry_after: Duration::from_millis(5),
        };
        refused.record_metrics(&handles);
        refused.record_metrics(&handles);
    });
    assert_eq!(recorder.read(series), Some(2));
    assert_eq!(
        recorder.read("palisade_rate_limit_calls_total{name=keyed,outcome=rejected}"),
        Some(2)
    );
}
