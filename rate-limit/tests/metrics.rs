//! The `metrics` feature: gauges right from build, calls by outcome, rejections by reason,
//! the default `name` label, recorded on a local recorder.

#![cfg(all(feature = "metrics", not(loom)))]

mod support;

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use palisade_core::clock::ManualClock;
use palisade_rate_limit::{KeyedRateLimiter, RateLimiter};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Echo, RejectsLocally, call_now};
use tower::{Layer, service_fn};

#[derive(Default)]
struct Cell(AtomicU64);

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        // Relaxed: test statistics read after the calls on this thread.
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        // Relaxed: as above.
        self.0.store(value, Ordering::Relaxed);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, value: f64) {
        self.set(f64::from_bits(self.0.load(Ordering::Relaxed)) + value);
    }
    fn decrement(&self, value: f64) {
        self.set(f64::from_bits(self.0.load(Ordering::Relaxed)) - value);
    }
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

/// Every handle by `name{label=value,…}` (labels sorted), and the described names.
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
        self.cells.lock().unwrap().entry(id).or_default().clone()
    }

    fn counter(&self, id: &str) -> u64 {
        self.cells
            .lock()
            .unwrap()
            .get(id)
            // Relaxed: as above.
            .map_or(0, |c| c.0.load(Ordering::Relaxed))
    }

    fn gauge(&self, id: &str) -> Option<f64> {
        self.cells
            .lock()
            .unwrap()
            .get(id)
            // Relaxed: as above.
            .map(|c| f64::from_bits(c.0.load(Ordering::Relaxed)))
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

#[test]
fn gauges_from_build_and_calls_by_outcome_and_rejections_by_reason() {
    let recorder = Local::default();
    let manual = ManualClock::new();
    let (limiter, unnamed) = metrics::with_local_recorder(&recorder, || {
        let named = RateLimiter::builder()
            .name("orders")
            .rate(10, Duration::from_secs(1))
            .burst(3)
            .clock(manual.clock())
            .build()
            .unwrap();
        let unnamed = KeyedRateLimiter::<u8>::builder()
            .rate(5, Duration::from_secs(1))
            .clock(manual.clock())
            .build()
            .unwrap();
        (named, unnamed)
    });
    // Right from build, before any event.
    assert_eq!(
        recorder.gauge("palisade_rate_limit_burst{name=orders}"),
        Some(3.0)
    );
    assert_eq!(
        recorder.gauge("palisade_rate_limit_rate{name=orders}"),
        Some(10.0)
    );
    assert_eq!(
        recorder.gauge("palisade_rate_limit_burst{name=rate_limit}"),
        Some(5.0),
        "the default name is the layer's"
    );
    for name in [
        "palisade_rate_limit_calls_total",
        "palisade_rate_limit_rejections_total",
        "palisade_rate_limit_burst",
    ] {
        assert!(
            recorder.described.lock().unwrap().iter().any(|d| d == name),
            "{name}"
        );
    }

    let mut ok = limiter.layer().layer(Echo);
    assert!(call_now(&mut ok, 1).unwrap().is_ok());
    let mut failing = limiter.layer().layer(service_fn(|_: u32| async {
        Err::<u32, tower::BoxError>("backend down".into())
    }));
    assert!(call_now(&mut failing, 1).unwrap().is_err());
    let mut below = limiter.layer().layer(RejectsLocally);
    assert!(call_now(&mut below, 1).unwrap().is_err());
    assert!(call_now(&mut ok, 2).unwrap().is_ok());
    // The refunded call left one token: the bucket of 3 is now empty.
    let err = call_now(&mut ok, 3).unwrap().unwrap_err();
    assert!(err.is::<palisade_rate_limit::RateLimited>());
    assert!(limiter.check_n(9).is_err());
    assert!(unnamed.check(&1).is_ok());

    let calls = |outcome: &str| {
        recorder.counter(&format!(
            "palisade_rate_limit_calls_total{{name=orders,outcome={outcome}}}"
        ))
    };
    assert_eq!(calls("success"), 2);
    assert_eq!(calls("failure"), 1);
    assert_eq!(calls("ignore"), 1);
    assert_eq!(calls("rejected"), 2);
    let reason = |r: &str| {
        recorder.counter(&format!(
            "palisade_rate_limit_rejections_total{{name=orders,reason={r}}}"
        ))
    };
    assert_eq!(reason("rate_limited"), 1);
    assert_eq!(reason("cost_exceeds_burst"), 1);
    assert_eq!(
        recorder.counter("palisade_rate_limit_refunded_total{name=orders}"),
        1
    );
    assert_eq!(
        recorder.counter("palisade_rate_limit_permitted_total{name=orders}"),
        4
    );
    assert_eq!(
        recorder.counter("palisade_rate_limit_permitted_total{name=rate_limit}"),
        1
    );

    limiter.set_quota(
        palisade_rate_limit::Quota::per_minute(120)
            .unwrap()
            .with_burst(7)
            .unwrap(),
    );
    assert_eq!(
        recorder.gauge("palisade_rate_limit_burst{name=orders}"),
        Some(7.0)
    );
    assert_eq!(
        recorder.gauge("palisade_rate_limit_rate{name=orders}"),
        Some(2.0)
    );
}
