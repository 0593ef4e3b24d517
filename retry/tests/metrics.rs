//! The `metrics` feature: calls by outcome, attempts and retries, rejections by reason,
//! gauges right from build, help text registered; one label scheme (`name`, `outcome`,
//! `reason`).

#![cfg(all(feature = "metrics", not(loom)))]

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use palisade_core::clock::Clock;
use palisade_core::rejection::{Rejection, RejectionKind};
use palisade_retry::{Backoff, RetryBudget, RetryPolicy, RetryThrottle};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::{BoxError, Layer, ServiceExt, service_fn};

/// Counter totals, gauge values and histogram sample counts by `name{sorted labels}`, and
/// the names that got help text.
#[derive(Default)]
struct Memory {
    values: Mutex<BTreeMap<String, f64>>,
    described: Mutex<BTreeSet<String>>,
}

struct Cell {
    key: String,
    memory: Arc<Memory>,
}

impl Cell {
    fn update(&self, f: impl FnOnce(&mut f64)) {
        f(self
            .memory
            .values
            .lock()
            .unwrap()
            .entry(self.key.clone())
            .or_default());
    }
}

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.update(|v| *v += value as f64);
    }
    fn absolute(&self, value: u64) {
        self.update(|v| *v = value as f64);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, value: f64) {
        self.update(|v| *v += value);
    }
    fn decrement(&self, value: f64) {
        self.update(|v| *v -= value);
    }
    fn set(&self, value: f64) {
        self.update(|v| *v = value);
    }
}

impl HistogramFn for Cell {
    fn record(&self, _value: f64) {
        self.update(|v| *v += 1.0);
    }
}

struct TestRecorder(Arc<Memory>);

impl TestRecorder {
    fn cell(&self, key: &Key) -> Arc<Cell> {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        Arc::new(Cell {
            key: format!("{}{{{}}}", key.name(), labels.join(",")),
            memory: self.0.clone(),
        })
    }

    fn describe(&self, name: KeyName) {
        self.0
            .described
            .lock()
            .unwrap()
            .insert(name.as_str().to_owned());
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, name: KeyName, _: Option<Unit>, _: SharedString) {
        self.describe(name);
    }
    fn describe_gauge(&self, name: KeyName, _: Option<Unit>, _: SharedString) {
        self.describe(name);
    }
    fn describe_histogram(&self, name: KeyName, _: Option<Unit>, _: SharedString) {
        self.describe(name);
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

impl Memory {
    fn get(&self, key: &str) -> f64 {
        self.values.lock().unwrap().get(key).copied().unwrap_or(0.0)
    }
}

/// Request 0 succeeds, 1 fails remotely, 2 is a local rejection from below, 3 never answers.
fn scripted() -> impl tower::Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone {
    service_fn(|request: u32| async move {
        match request {
            0 => Ok(0),
            1 => Err("connection reset".into()),
            2 => Err(Box::new(Rejection::new(RejectionKind::CircuitOpen)) as BoxError),
            _ => std::future::pending().await,
        }
    })
}

#[test]
fn calls_attempts_and_rejections_by_outcome_and_reason() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let _entered = rt.enter();
    let memory = Arc::new(Memory::default());
    let recorder = TestRecorder(memory.clone());
    let (policy, empty, throttle) = metrics::with_local_recorder(&recorder, || {
        let policy = RetryPolicy::builder()
            .name("p")
            .clock(Clock::tokio())
            .unlimited()
            .max_attempts(3)
            .backoff(Backoff::constant(Duration::from_millis(10)))
            .deadline(Duration::from_secs(1))
            .build()
            .unwrap();
        let budget = RetryBudget::builder()
            .name("b")
            .min_retries_per_sec(0)
            .percent_can_retry(0.0)
            .build()
            .unwrap();
        let empty = RetryPolicy::builder()
            .name("e")
            .budget(budget)
            .backoff(Backoff::none())
            .build()
            .unwrap();
        let throttle = RetryThrottle::builder().name("t").build().unwrap();
        (policy, empty, throttle)
    });
    assert_eq!(
        memory.get("palisade_retry_throttle_engaged{name=t}"),
        0.0,
        "the gauge is set at build"
    );
    assert!(
        memory
            .values
            .lock()
            .unwrap()
            .contains_key("palisade_retry_throttle_engaged{name=t}")
    );
    rt.block_on(async {
        for request in 0..4 {
            let _ = policy.layer().layer(scripted()).oneshot(request).await;
        }
        let _ = empty.layer().layer(scripted()).oneshot(1).await;
    });
    for _ in 0..5 {
        throttle.on_failure();
    }
    let calls = |outcome: &str| {
        memory.get(&format!(
            "palisade_retry_calls_total{{name=p,outcome={outcome}}}"
        ))
    };
    assert_eq!(calls("success"), 1.0);
    assert_eq!(calls("failure"), 1.0, "3 attempts, then gave up");
    assert_eq!(calls("ignore"), 1.0, "a local rejection from below");
    assert_eq!(
        calls("rejected"),
        1.0,
        "the deadline: the layer's own rejection"
    );
    assert_eq!(memory.get("palisade_retry_attempts_total{name=p}"), 6.0);
    assert_eq!(memory.get("palisade_retry_retries_total{name=p}"), 2.0);
    assert_eq!(
        memory.get("palisade_retry_rejections_total{name=p,reason=deadline_exceeded}"),
        1.0
    );
    assert_eq!(
        memory.get("palisade_retry_gave_up_total{name=p,reason=attempts_exhausted}"),
        1.0
    );
    assert_eq!(
        memory.get("palisade_retry_gave_up_total{name=p,reason=local_rejection}"),
        1.0
    );
    assert_eq!(
        memory.get("palisade_retry_rejections_total{name=e,reason=budget_exhausted}"),
        1.0
    );
    assert_eq!(
        memory.get("palisade_retry_calls_total{name=e,outcome=failure}"),
        1.0
    );
    assert_eq!(
        memory.get("palisade_retry_budget_refusals_total{name=b}"),
        1.0
    );
    assert_eq!(memory.get("palisade_retry_throttle_engaged{name=t}"), 1.0);
    assert_eq!(
        memory.get("palisade_retry_throttle_transitions_total{name=t,state=engaged}"),
        1.0
    );
    let described = memory.described.lock().unwrap();
    for name in [
        "palisade_retry_calls_total",
        "palisade_retry_attempts_total",
        "palisade_retry_rejections_total",
        "palisade_retry_throttle_engaged",
    ] {
        assert!(described.contains(name), "{name} has no help text");
    }
}
