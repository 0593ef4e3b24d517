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
            .count_window(2)
            .minimum_calls(2)
            .build()
            .unwrap();
        breaker.try_acquire().unwrap().failure();
        breaker.try_acquire().unwrap().failure();
        assert_eq!(breaker.state(), State::Open);
        assert!(breaker.try_acquire().is_err());
        breaker.reset();
    });
    let values = memory.values.lock().unwrap();
    let get = |key: &str| values.get(key).copied();
    assert_eq!(
        get("palisade_circuit_breaker_failed_calls_total{name=payments,outcome=failure}"),
        Some(2.0)
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
        get("palisade_circuit_breaker_rejected_calls_total{name=payments,state=open}"),
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
