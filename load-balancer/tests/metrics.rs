//! The `metrics` feature: events reach the `metrics` facade under Palisade's names and labels.
#![cfg(all(feature = "metrics", not(loom)))]

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};
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

use palisade_core::test_util::call_now;
use palisade_load_balancer::{Balancer, EndpointMeta, RoundRobin};
use std::future::{Ready, ready};
use std::task::{Context, Poll};

/// Answers at once: `Ok` when `.0` is true, an error otherwise.
#[derive(Clone, Copy, Debug)]
struct Fixed(bool);

impl tower::Service<u32> for Fixed {
    type Response = u32;
    type Error = std::io::Error;
    type Future = Ready<Result<u32, std::io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u32) -> Self::Future {
        ready(if self.0 {
            Ok(req)
        } else {
            Err(std::io::Error::other("boom"))
        })
    }
}

#[test]
fn events_are_recorded_under_palisade_names() {
    let memory = Arc::new(Memory::default());
    let recorder = TestRecorder(memory.clone());
    metrics::with_local_recorder(&recorder, || {
        let balancer = Balancer::builder()
            .name("api")
            .strategy(RoundRobin::new())
            .build()
            .unwrap();
        balancer.insert("good", Fixed(true), EndpointMeta::new());
        balancer.insert("bad", Fixed(false), EndpointMeta::new());
        let mut svc = balancer.service();
        for i in 0..10 {
            let _ = call_now(&mut svc, i);
        }
        assert_eq!(balancer.snapshot().ejected, 1);
        balancer.remove(&"good");
        balancer.remove(&"bad");
        assert!(matches!(call_now(&mut svc, 0), Some(Err(_))));
    });
    let values = memory.values.lock().unwrap();
    let get = |key: &str| values.get(key).copied();
    let calls = |outcome: &str| {
        get(&format!(
            "palisade_load_balancer_calls_total{{name=api,outcome={outcome}}}"
        ))
    };
    assert_eq!(calls("success"), Some(5.0));
    assert_eq!(calls("failure"), Some(5.0));
    assert_eq!(calls("rejected"), Some(1.0));
    assert_eq!(
        get("palisade_load_balancer_rejections_total{name=api,reason=no_healthy_endpoints}"),
        Some(1.0)
    );
    assert_eq!(
        get("palisade_load_balancer_ejections_total{name=api}"),
        Some(1.0)
    );
    assert_eq!(get("palisade_load_balancer_endpoints{name=api}"), Some(0.0));
    assert_eq!(
        get("palisade_load_balancer_ejected_endpoints{name=api}"),
        Some(0.0),
        "the ejected endpoint left the set"
    );
}

#[test]
fn gauges_are_set_at_build_and_the_name_defaults_to_the_layer() {
    let memory = Arc::new(Memory::default());
    let recorder = TestRecorder(memory.clone());
    metrics::with_local_recorder(&recorder, || {
        let _balancer: Balancer<u8, Fixed> = Balancer::builder().build().unwrap();
    });
    let values = memory.values.lock().unwrap();
    assert_eq!(
        values.get("palisade_load_balancer_endpoints{name=load_balancer}"),
        Some(&0.0)
    );
    assert_eq!(
        values.get("palisade_load_balancer_ejected_endpoints{name=load_balancer}"),
        Some(&0.0)
    );
}

#[test]
fn per_endpoint_gauges_come_from_a_snapshot() {
    let memory = Arc::new(Memory::default());
    let recorder = TestRecorder(memory.clone());
    metrics::with_local_recorder(&recorder, || {
        let balancer = Balancer::builder()
            .name("api")
            .strategy(RoundRobin::new())
            .build()
            .unwrap();
        balancer.insert("good", Fixed(true), EndpointMeta::new());
        balancer.insert("bad", Fixed(false), EndpointMeta::new());
        let mut svc = balancer.service();
        for i in 0..10 {
            let _ = call_now(&mut svc, i);
        }
        balancer.export_endpoint_metrics();
    });
    let values = memory.values.lock().unwrap();
    let get = |key: &str| values.get(key).copied();
    assert_eq!(
        get("palisade_load_balancer_endpoint_calls{endpoint=good,name=api}"),
        Some(5.0)
    );
    assert_eq!(
        get("palisade_load_balancer_endpoint_failures{endpoint=bad,name=api}"),
        Some(5.0)
    );
    assert_eq!(
        get("palisade_load_balancer_endpoint_ejected{endpoint=bad,name=api}"),
        Some(1.0)
    );
    assert_eq!(
        get("palisade_load_balancer_endpoint_ejected{endpoint=good,name=api}"),
        Some(0.0)
    );
    assert_eq!(
        get("palisade_load_balancer_endpoint_pending{endpoint=good,name=api}"),
        Some(0.0)
    );
}
