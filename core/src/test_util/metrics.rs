//! An in-process `metrics` recorder for tests (features `test-util` and `metrics`).
//!
//! [`TestRecorder`] keeps what the layers record, by series: a counter's total, a gauge's last
//! value, a histogram's number of samples, each under `name{label=value,…}` with the labels
//! sorted by key (`palisade_bulkhead_calls_total{name=inventory,outcome=success}`). It also
//! notes every registration (a metric's kind and label keys) and every help text, so a test
//! can check the names, labels and descriptions a layer exports without a real exporter.
//!
//! A series appears only once a value is written to it: a handle that was registered but never
//! incremented or set reads as absent (`None`), so "the gauge is set at build" and "this
//! counter never moved" are both testable. Every handle registered for the same series shares
//! one cell, as in a real exporter.
//!
//! # Example
//!
//! ```
//! use palisade_core::test_util::TestRecorder;
//!
//! let recorder = TestRecorder::new();
//! metrics::with_local_recorder(&recorder, || {
//!     metrics::describe_counter!("palisade_demo_calls_total", "calls by outcome");
//!     metrics::counter!("palisade_demo_calls_total", "outcome" => "success", "name" => "a")
//!         .increment(2);
//!     metrics::gauge!("palisade_demo_limit", "name" => "a").set(7.0);
//!     let _unused = metrics::gauge!("palisade_demo_in_flight", "name" => "a");
//! });
//! assert_eq!(
//!     recorder.counter("palisade_demo_calls_total{name=a,outcome=success}"),
//!     2
//! );
//! assert_eq!(recorder.get("palisade_demo_limit{name=a}"), Some(7.0));
//! assert_eq!(recorder.get("palisade_demo_in_flight{name=a}"), None, "never set");
//! assert!(recorder.is_described("palisade_demo_calls_total"));
//! ```
//!
//! # Memory ordering
//!
//! Each series is one atomic word (an `f64`'s bits) and one "written" flag, both `Relaxed`:
//! they are statistics, nothing else is published through them, and a test reads them after
//! the recording calls either on the same thread or after joining the threads that made them
//! (the join orders the reads after the writes). The maps of series, registrations and help
//! texts sit behind mutexes.

pub use crate::events::MetricKind;
use ::metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What was registered under one metric name, over all its label sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registered {
    /// Every kind the name was registered as, in the order first seen (more than one is an
    /// exporter's error).
    pub kinds: Vec<MetricKind>,
    /// Every label key used with the name.
    pub label_keys: BTreeSet<String>,
}

impl Registered {
    /// The kind, when the name was registered as exactly one.
    pub fn kind(&self) -> Option<MetricKind> {
        match self.kinds.len() {
            1 => Some(self.kinds[0]),
            _ => None,
        }
    }
}

/// One series: a counter's total, a gauge's value or a histogram's sample count, as `f64` bits.
#[derive(Debug, Default)]
struct Cell {
    bits: AtomicU64,
    written: AtomicBool,
}

impl Cell {
    fn update(&self, f: impl Fn(f64) -> f64) {
        // Relaxed (both): a statistic read after the recording calls (see the module's
        // "Memory ordering"); the CAS loop only keeps concurrent updates from being lost.
        let _ = self
            .bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some(f(f64::from_bits(bits)).to_bits())
            });
        self.written.store(true, Ordering::Relaxed);
    }

    fn read(&self) -> Option<f64> {
        // Relaxed: read after the recording calls, as above.
        self.written
            .load(Ordering::Relaxed)
            .then(|| f64::from_bits(self.bits.load(Ordering::Relaxed)))
    }
}

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.update(|v| v + value as f64);
    }
    fn absolute(&self, value: u64) {
        self.update(|_| value as f64);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }
    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }
    fn set(&self, value: f64) {
        self.update(|_| value);
    }
}

impl HistogramFn for Cell {
    fn record(&self, _value: f64) {
        self.update(|v| v + 1.0);
    }
}

/// One `metrics::describe_*` call, as the recorder received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Description {
    /// The kind of metric described.
    pub kind: MetricKind,
    /// The metric name.
    pub name: String,
    /// The unit, if one was given.
    pub unit: Option<Unit>,
    /// The help text.
    pub help: String,
}

#[derive(Default)]
struct Inner {
    series: Mutex<BTreeMap<String, Arc<Cell>>>,
    registered: Mutex<BTreeMap<String, Registered>>,
    descriptions: Mutex<Vec<Description>>,
    registrations: AtomicU64,
}

/// An in-process `metrics` recorder that keeps every series' value for a test to read.
///
/// Install it with `metrics::with_local_recorder(&recorder, || …)` around the code that
/// builds and uses the layers (a handle registers its series when built, so calls made later,
/// outside the closure, still land here). Clones share the same record. See the
/// [module docs](self) for the series naming.
#[derive(Clone, Default)]
pub struct TestRecorder {
    inner: Arc<Inner>,
}

impl fmt::Debug for TestRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestRecorder")
            .field("series", &self.inner.series.lock().len())
            .field("registrations", &self.registrations())
            .finish()
    }
}

/// `name{k=v,…}` with the labels sorted by key.
fn series_id(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl TestRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of a series (`name{label=value,…}`, labels sorted): a counter's total, a
    /// gauge's last value, a histogram's number of samples; `None` if nothing was written to it.
    pub fn get(&self, series: &str) -> Option<f64> {
        self.inner.series.lock().get(series).and_then(|c| c.read())
    }

    /// A counter's total; 0 when it never moved (or was never registered).
    pub fn counter(&self, series: &str) -> u64 {
        self.get(series).map_or(0, |v| v as u64)
    }

    /// Whether a handle was registered for this exact series (written to or not).
    pub fn is_registered(&self, series: &str) -> bool {
        self.inner.series.lock().contains_key(series)
    }

    /// Every series written so far, with its value.
    pub fn values(&self) -> BTreeMap<String, f64> {
        self.inner
            .series
            .lock()
            .iter()
            .filter_map(|(id, cell)| Some((id.clone(), cell.read()?)))
            .collect()
    }

    /// Every metric name registered so far: its kind(s) and label keys.
    pub fn registered(&self) -> BTreeMap<String, Registered> {
        self.inner.registered.lock().clone()
    }

    /// How many handles were registered (each `counter!`, `gauge!`, `histogram!` lookup counts).
    pub fn registrations(&self) -> u64 {
        // Relaxed: a statistic, read after the registrations it counts.
        self.inner.registrations.load(Ordering::Relaxed)
    }

    /// Whether a metric name got help text (`metrics::describe_*`).
    pub fn is_described(&self, name: &str) -> bool {
        self.help(name).is_some()
    }

    /// The help text of a metric name (the last one given), if it got one.
    pub fn help(&self, name: &str) -> Option<String> {
        let descriptions = self.inner.descriptions.lock();
        let last = descriptions.iter().rev().find(|d| d.name == name)?;
        Some(last.help.clone())
    }

    /// Every `describe_*` call received, in order, repeats included (so "described once" is
    /// testable).
    pub fn descriptions(&self) -> Vec<Description> {
        self.inner.descriptions.lock().clone()
    }

    fn register(&self, key: &Key, kind: MetricKind) -> Arc<Cell> {
        // Relaxed: a statistic; nothing is published through it.
        self.inner.registrations.fetch_add(1, Ordering::Relaxed);
        {
            let mut registered = self.inner.registered.lock();
            let entry = registered.entry(key.name().to_owned()).or_default();
            if !entry.kinds.contains(&kind) {
                entry.kinds.push(kind);
            }
            entry
                .label_keys
                .extend(key.labels().map(|l| l.key().to_owned()));
        }
        self.inner
            .series
            .lock()
            .entry(series_id(key))
            .or_default()
            .clone()
    }

    fn describe(&self, kind: MetricKind, name: KeyName, unit: Option<Unit>, help: SharedString) {
        self.inner.descriptions.lock().push(Description {
            kind,
            name: name.as_str().to_owned(),
            unit,
            help: help.into_owned(),
        });
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, name: KeyName, unit: Option<Unit>, help: SharedString) {
        self.describe(MetricKind::Counter, name, unit, help);
    }
    fn describe_gauge(&self, name: KeyName, unit: Option<Unit>, help: SharedString) {
        self.describe(MetricKind::Gauge, name, unit, help);
    }
    fn describe_histogram(&self, name: KeyName, unit: Option<Unit>, help: SharedString) {
        self.describe(MetricKind::Histogram, name, unit, help);
    }
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.register(key, MetricKind::Counter))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.register(key, MetricKind::Gauge))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.register(key, MetricKind::Histogram))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn series_are_keyed_by_name_and_sorted_labels_and_appear_when_written() {
        let recorder = TestRecorder::new();
        let clone = recorder.clone();
        ::metrics::with_local_recorder(&recorder, || {
            ::metrics::counter!("c", "z" => "1", "a" => "2").increment(2);
            ::metrics::counter!("c", "a" => "2", "z" => "1").increment(3);
            ::metrics::counter!("c", "a" => "3").absolute(9);
            let g = ::metrics::gauge!("g");
            g.set(4.0);
            g.increment(1.5);
            g.decrement(0.5);
            let _never = ::metrics::gauge!("unset", "name" => "x");
            let h = ::metrics::histogram!("h", "outcome" => "success");
            h.record(0.25);
            h.record(7.0);
        });
        assert_eq!(clone.counter("c{a=2,z=1}"), 5, "one cell per series");
        assert_eq!(clone.counter("c{a=3}"), 9);
        assert_eq!(clone.get("g{}"), Some(5.0));
        assert_eq!(clone.get("h{outcome=success}"), Some(2.0), "sample count");
        assert_eq!(clone.get("unset{name=x}"), None, "registered, never set");
        assert_eq!(clone.counter("missing{}"), 0);
        assert!(clone.is_registered("unset{name=x}"));
        assert!(!clone.is_registered("missing{}"));
        assert_eq!(clone.values().len(), 4);
        assert_eq!(clone.registrations(), 6);
        let registered = clone.registered();
        assert_eq!(registered["c"].kind(), Some(MetricKind::Counter));
        assert_eq!(
            registered["c"].label_keys,
            BTreeSet::from(["a".to_owned(), "z".to_owned()])
        );
        assert_eq!(registered["h"].kind(), Some(MetricKind::Histogram));
        assert!(registered.contains_key("unset"));
    }

    #[test]
    fn help_texts_are_kept_and_a_name_of_two_kinds_has_no_single_kind() {
        let recorder = TestRecorder::new();
        ::metrics::with_local_recorder(&recorder, || {
            ::metrics::describe_gauge!("g", "the gauge");
            ::metrics::describe_histogram!("h", ::metrics::Unit::Seconds, "the histogram");
            ::metrics::describe_gauge!("g", "the gauge, again");
            ::metrics::counter!("twice").increment(1);
            ::metrics::gauge!("twice").set(1.0);
        });
        assert_eq!(recorder.help("g").as_deref(), Some("the gauge, again"));
        let descriptions = recorder.descriptions();
        assert_eq!(descriptions.len(), 3, "repeats are kept");
        assert_eq!(descriptions[1].kind, MetricKind::Histogram);
        assert_eq!(descriptions[1].unit, Some(::metrics::Unit::Seconds));
        assert!(recorder.is_described("h"));
        assert!(!recorder.is_described("twice"));
        assert_eq!(
            recorder.registered()["twice"].kinds,
            [MetricKind::Counter, MetricKind::Gauge]
        );
        assert_eq!(recorder.registered()["twice"].kind(), None);
    }

    #[test]
    fn concurrent_updates_are_not_lost() {
        let recorder = TestRecorder::new();
        let (counter, gauge) = ::metrics::with_local_recorder(&recorder, || {
            (::metrics::counter!("n"), ::metrics::gauge!("g"))
        });
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1_000 {
                        counter.increment(1);
                        gauge.increment(1.0);
                    }
                });
            }
        });
        assert_eq!(recorder.counter("n{}"), 4_000);
        assert_eq!(recorder.get("g{}"), Some(4_000.0));
    }
}
