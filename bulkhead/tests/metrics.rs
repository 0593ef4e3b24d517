//! The `metrics` feature: one label scheme (`name`, `outcome`, `reason`), gauges right from
//! build, calls by outcome so a failure rate can be computed, help text registered.

#![cfg(all(feature = "metrics", not(loom)))]

use palisade_bulkhead::Bulkhead;
use palisade_bulkhead::adaptive::{AdaptiveConfig, Aimd};
use palisade_core::clock::ManualClock;
use palisade_core::rejection::{Rejection, RejectionKind};
use palisade_core::test_util::{TestRecorder, call_now};
use std::future::{Future, Ready};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tower::{BoxError, Layer, Service};

/// Request 0 succeeds, 1 fails remotely, 2 is a local rejection from below (an open breaker).
#[derive(Clone, Copy, Debug)]
struct Scripted;

impl Service<u32> for Scripted {
    type Response = u32;
    type Error = BoxError;
    type Future = Ready<Result<u32, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: u32) -> Self::Future {
        std::future::ready(match request {
            0 => Ok(0),
            1 => Err("connection reset".into()),
            _ => Err(Box::new(Rejection::new(RejectionKind::CircuitOpen))),
        })
    }
}

fn ready<S: Service<u32>>(svc: &mut S) {
    let poll = svc.poll_ready(&mut Context::from_waker(Waker::noop()));
    assert!(matches!(poll, Poll::Ready(Ok(()))));
}

#[test]
fn gauges_are_set_at_build_and_calls_are_counted_by_outcome() {
    let recorder = TestRecorder::new();
    let (named, unnamed) = metrics::with_local_recorder(&recorder, || {
        let named = Bulkhead::builder()
            .name("inventory")
            .max_concurrent_calls(2)
            .build()
            .unwrap();
        (named, Bulkhead::builder().build().unwrap())
    });
    let get = |key: &str| recorder.get(key);
    // Right from build, before any call.
    assert_eq!(get("palisade_bulkhead_limit{name=inventory}"), Some(2.0));
    assert_eq!(
        get("palisade_bulkhead_in_flight{name=inventory}"),
        Some(0.0)
    );
    assert_eq!(get("palisade_bulkhead_limit{name=bulkhead}"), Some(25.0));
    assert_eq!(
        unnamed.name(),
        "bulkhead",
        "the layer's name is the default"
    );

    let mut svc = named.layer().layer(Scripted);
    for request in [0, 0, 1, 2] {
        assert!(call_now(&mut svc, request).is_some());
    }
    ready(&mut svc);
    drop(svc.call(0)); // cancelled before completion
    // Two ready services hold both slots: the third call is rejected.
    let (mut a, mut b) = (named.layer().layer(Scripted), named.layer().layer(Scripted));
    ready(&mut a);
    ready(&mut b);
    assert_eq!(
        get("palisade_bulkhead_in_flight{name=inventory}"),
        Some(0.0)
    );
    assert!(matches!(call_now(&mut svc, 0), Some(Err(_))));
    assert!(call_now(&mut a, 0).is_some());
    drop(b);
    named.set_limit(5);

    let calls = |outcome: &str| {
        get(&format!(
            "palisade_bulkhead_calls_total{{name=inventory,outcome={outcome}}}"
        ))
    };
    assert_eq!(calls("success"), Some(3.0));
    assert_eq!(calls("failure"), Some(1.0));
    assert_eq!(
        calls("ignore"),
        Some(2.0),
        "a local rejection below, a cancellation"
    );
    assert_eq!(calls("rejected"), Some(1.0));
    assert_eq!(
        get("palisade_bulkhead_rejections_total{name=inventory,reason=bulkhead_full}"),
        Some(1.0)
    );
    assert_eq!(
        get("palisade_bulkhead_rejections_total{name=inventory,reason=wait_timeout}"),
        None,
        "no wait-mode rejection happened"
    );
    assert_eq!(get("palisade_bulkhead_limit{name=inventory}"), Some(5.0));
    assert_eq!(
        get("palisade_bulkhead_in_flight{name=inventory}"),
        Some(0.0)
    );
    // Issue 14: a bulkhead that rejects when full never waits: its wait histogram is
    // exported (registered) but gets no all-zero samples.
    assert!(recorder.is_registered("palisade_bulkhead_wait_seconds{name=inventory}"));
    assert_eq!(
        recorder.counter("palisade_bulkhead_wait_seconds{name=inventory}"),
        0,
        "no wait queue: no wait samples"
    );
    // A fixed bulkhead reads no clock: no duration histogram, not even an empty one.
    for outcome in ["success", "failure", "ignore"] {
        for name in ["inventory", "bulkhead"] {
            let series =
                format!("palisade_bulkhead_call_duration_seconds{{name={name},outcome={outcome}}}");
            assert!(!recorder.is_registered(&series), "{series} is registered");
        }
    }
    assert!(
        !recorder
            .registered()
            .contains_key("palisade_bulkhead_call_duration_seconds"),
        "a fixed bulkhead registers no duration histogram"
    );
    for name in [
        "palisade_bulkhead_calls_total",
        "palisade_bulkhead_rejections_total",
        "palisade_bulkhead_wait_seconds",
        "palisade_bulkhead_in_flight",
        "palisade_bulkhead_limit",
    ] {
        assert!(recorder.is_described(name), "no help text for {name}");
    }
}

/// Issue 14: with a wait queue, every started call records its wait (zero when a slot was
/// free), and the in-flight gauge is written as calls finish.
#[test]
fn a_bulkhead_with_a_wait_queue_records_one_wait_sample_per_started_call() {
    let recorder = TestRecorder::new();
    let bulkhead = metrics::with_local_recorder(&recorder, || {
        Bulkhead::builder()
            .name("queue")
            .max_concurrent_calls(2)
            .max_wait(Duration::from_secs(1))
            .build()
            .unwrap()
    });
    let mut svc = bulkhead.layer().layer(Scripted);
    for request in [0, 0, 1] {
        assert!(call_now(&mut svc, request).is_some());
    }
    assert_eq!(
        recorder.counter("palisade_bulkhead_wait_seconds{name=queue}"),
        3,
        "one sample per started call"
    );
    assert_eq!(
        recorder.get("palisade_bulkhead_calls_total{name=queue,outcome=success}"),
        Some(2.0)
    );
    assert_eq!(
        recorder.get("palisade_bulkhead_in_flight{name=queue}"),
        Some(0.0)
    );
    // A slot held by a started call shows once some other call finishes.
    let mut held = bulkhead.layer().layer(Scripted);
    ready(&mut held);
    let pending = held.call(0);
    assert!(call_now(&mut svc, 0).is_some());
    assert_eq!(
        recorder.get("palisade_bulkhead_in_flight{name=queue}"),
        Some(1.0)
    );
    drop(pending);
    assert_eq!(
        recorder.get("palisade_bulkhead_in_flight{name=queue}"),
        Some(0.0)
    );
}

#[test]
fn adaptive_bulkheads_record_call_durations_by_outcome() {
    let recorder = TestRecorder::new();
    let clock = ManualClock::new();
    let bulkhead = metrics::with_local_recorder(&recorder, || {
        Bulkhead::builder()
            .name("search")
            .adaptive(Aimd::builder().initial_limit(30).build().unwrap())
            .adaptive_config(AdaptiveConfig::new().min_samples(1_000))
            .clock(clock.clock())
            .build()
            .unwrap()
    });
    let get = |key: &str| recorder.get(key);
    assert_eq!(get("palisade_bulkhead_limit{name=search}"), Some(30.0));
    let mut svc = bulkhead.layer().layer(Scripted);
    for request in [0, 1, 1, 2] {
        ready(&mut svc);
        let future = svc.call(request);
        clock.advance(Duration::from_millis(3));
        let poll = std::pin::pin!(future).poll(&mut Context::from_waker(Waker::noop()));
        assert!(poll.is_ready());
    }
    let duration = |outcome: &str| {
        get(&format!(
            "palisade_bulkhead_call_duration_seconds{{name=search,outcome={outcome}}}"
        ))
    };
    assert_eq!(duration("success"), Some(1.0));
    assert_eq!(duration("failure"), Some(2.0));
    assert_eq!(duration("ignore"), Some(1.0));
    assert!(recorder.is_described("palisade_bulkhead_call_duration_seconds"));
}

#[test]
fn an_adaptive_bulkhead_built_before_the_recorder_registers_its_histogram_late() {
    let bulkhead = Bulkhead::builder()
        .name("late")
        .adaptive(Aimd::builder().initial_limit(30).build().unwrap())
        .build()
        .unwrap();
    let recorder = TestRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        let mut svc = bulkhead.layer().layer(Scripted);
        assert!(call_now(&mut svc, 0).is_some());
    });
    assert!(
        recorder
            .is_registered("palisade_bulkhead_call_duration_seconds{name=late,outcome=failure}")
    );
    assert_eq!(
        recorder.get("palisade_bulkhead_call_duration_seconds{name=late,outcome=success}"),
        Some(1.0)
    );
}

/// Counts the writes to gauges named `palisade_bulkhead_in_flight` (every other metric is a
/// no-op handle).
#[derive(Default)]
struct GaugeWrites(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl metrics::GaugeFn for GaugeWrites {
    fn increment(&self, _value: f64) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    fn decrement(&self, _value: f64) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    fn set(&self, _value: f64) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[derive(Default)]
struct InFlightWrites(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl metrics::Recorder for InFlightWrites {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::noop()
    }
    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        if key.name() == "palisade_bulkhead_in_flight" {
            metrics::Gauge::from_arc(std::sync::Arc::new(GaugeWrites(self.0.clone())))
        } else {
            metrics::Gauge::noop()
        }
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

/// The in-flight gauge is written when a finish moves the count, not on every finish: one
/// caller at a time leaves it at 0 call after call, and nothing is written after the first.
#[test]
fn the_in_flight_gauge_is_written_only_when_the_count_moves() {
    let recorder = InFlightWrites::default();
    let writes = recorder.0.clone();
    let bulkhead = metrics::with_local_recorder(&recorder, || {
        Bulkhead::builder().max_concurrent_calls(4).build().unwrap()
    });
    let count = || writes.load(std::sync::atomic::Ordering::Relaxed);
    let at_build = count();
    assert_eq!(at_build, 1, "set to 0 at build");
    let mut svc = bulkhead.layer().layer(Scripted);
    for _ in 0..100 {
        assert!(call_now(&mut svc, 0).is_some());
    }
    assert_eq!(
        count(),
        at_build,
        "100 finishes at 0 in flight wrote nothing"
    );
    // A slot held across a finish moves the count: written (1), then back (0).
    let mut held = bulkhead.layer().layer(Scripted);
    ready(&mut held);
    let pending = held.call(0);
    assert!(call_now(&mut svc, 0).is_some());
    assert_eq!(count(), at_build + 1);
    assert!(call_now(&mut svc, 0).is_some());
    assert_eq!(count(), at_build + 1, "still 1 in flight");
    drop(pending);
    assert_eq!(count(), at_build + 2);
    assert!(call_now(&mut svc, 0).is_some());
    assert_eq!(count(), at_build + 2);
}
