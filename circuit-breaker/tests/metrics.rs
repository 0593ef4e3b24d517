//! The `metrics` feature: events reach the `metrics` facade under Palisade's names and labels.
#![cfg(all(feature = "metrics", not(loom)))]

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};
use palisade_circuit_breaker::{CircuitBreaker, State};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Every counter's total and every gauge's last value, by name and sorted labels.
#[derive(Default)]
struct Memory {
    values: Mutex<BTreeMap<String, f64>>,
}

struct Cell {
    key: String,
    memory: Arc<Memory>,
}

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        *self
            .memory
            .values
            .lock()
            .unwrap()
            .entry(self.key.clone())
            .or_default() += value as f64;
    }
    fn absolute(&self, value: u64) {
        self.memory
            .values
            .lock()
            .unwrap()
            .insert(self.key.clone(), value as f64);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, value: f64) {
        *self
            .memory
            .values
            .lock()
            .unwrap()
            .entry(self.key.clone())
            .or_default() += value;
    }
    fn decrement(&self, value: f64) {
        *self
            .memory
            .values
            .lock()
            .unwrap()
            .entry(self.key.clone())
            .or_default() -= value;
    }
    fn set(&self, value: f64) {
        self.memory
            .values
            .lock()
            .unwrap()
            .insert(self.key.clone(), value);
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
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[test]
fn events_are_recorded_under_palisade_names() {
    let memory = Arc::new(Memory::default());
    let recorder = TestRecorder(memory.clone());
    metrics::with_local_recorder(&recorder, || {
        let breaker = CircuitBreaker::builder()
            .name("payments")
            .count_window(4)
            .minimum_calls(3)
            .build()
            .unwrap();
        breaker.try_acquire().unwrap().success();
        drop(breaker.try_acquire().unwrap()); // cancelled: ignored
        breaker.try_acquire().unwrap().failure();
        breaker.try_acquire().unwrap().failure();
        assert_eq!(breaker.state(), State::Open);
        assert!(breaker.try_acquire().is_err());
        breaker.reset();
    });
    let values = memory.values.lock().unwrap();
    let get = |key: &str| values.get(key).copied();
    let calls = |outcome: &str| {
        get(&format!(
            "palisade_circuit_breaker_calls_total{{name=payments,outcome={outcome}}}"
        ))
    };
    assert_eq!(calls("success"), Some(1.0));
    assert_eq!(calls("ignore"), Some(1.0));
    assert_eq!(calls("failure"), Some(2.0));
    assert_eq!(calls("rejected"), Some(1.0));
    assert_eq!(
        get("palisade_circuit_breaker_rejections_total{name=payments,reason=circuit_open}"),
        Some(1.0)
    );
    assert_eq!(
        get("palisade_circuit_breaker_transitions_total{name=payments,state=open}"),
        Some(1.0)
    );
    assert_eq!(
        get("palisade_circuit_breaker_transitions_total{name=payments,state=closed}"),
        Some(1.0)
    );
    assert_eq!(
        get("palisade_circuit_breaker_resets_total{name=payments}"),
        Some(1.0)
    );
    assert_eq!(
        get("palisade_circuit_breaker_state{name=payments,state=closed}"),
        Some(1.0)
    );
    assert_eq!(
        get("palisade_circuit_breaker_state{name=payments,state=open}"),
        Some(0.0)
    );
}

/// Regression (issue 9 §6): the state gauge was written only at the first transition, so a
/// healthy breaker exported no state at all.
#[test]
fn the_state_gauge_is_right_from_build_and_the_name_defaults_to_the_layer() {
    let memory = Arc::new(Memory::default());
    let recorder = TestRecorder(memory.clone());
    metrics::with_local_recorder(&recorder, || {
        let _breaker = CircuitBreaker::new();
    });
    let values = memory.values.lock().unwrap();
    let get = |key: &str| values.get(key).copied();
    assert_eq!(
        get("palisade_circuit_breaker_state{name=circuit_breaker,state=closed}"),
        Some(1.0)
    );
    for state in [
        "open",
        "half_open",
        "forced_open",
        "disabled",
        "metrics_only",
    ] {
        assert_eq!(
            get(&format!(
                "palisade_circuit_breaker_state{{name=circuit_breaker,state={state}}}"
            )),
            Some(0.0),
            "{state}"
        );
    }
}

/// A breaker built before the recorder is installed still exports: its handles register at
/// the first event after the recorder arrives, and the state gauge is set from the state it
/// is in then.
#[test]
fn a_breaker_built_before_the_recorder_still_exports_its_state() {
    let breaker = CircuitBreaker::builder()
        .name("early")
        .count_window(2)
        .minimum_calls(2)
        .build()
        .unwrap();
    breaker.force_open();
    let memory = Arc::new(Memory::default());
    let recorder = TestRecorder(memory.clone());
    metrics::with_local_recorder(&recorder, || {
        assert!(breaker.try_acquire().is_err());
    });
    let values = memory.values.lock().unwrap();
    let get = |key: &str| values.get(key).copied();
    assert_eq!(
        get("palisade_circuit_breaker_state{name=early,state=forced_open}"),
        Some(1.0)
    );
    assert_eq!(
        get("palisade_circuit_breaker_state{name=early,state=closed}"),
        Some(0.0)
    );
    assert_eq!(
        get("palisade_circuit_breaker_calls_total{name=early,outcome=rejected}"),
        Some(1.0)
    );
}
