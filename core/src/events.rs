//! Typed events from a layer to whoever listens, at the cost of one branch when nobody does.
//!
//! Each layer defines its own event type (a breaker's state transitions, a limiter's
//! rejections…) and keeps one [`EventBus`] of it in its shared state. Users subscribe
//! [`Listener`]s through the layer's handle; any `Fn(&E) + Send + Sync` closure is one.
//!
//! [`EventBus::emit_with`] takes a closure that builds the event, so with no listener the event
//! is never built: the cost is one relaxed load of a flag and a branch the CPU predicts, and
//! nothing is allocated. With listeners, an emit takes a read lock briefly to clone the
//! listener list (an `Arc`), releases it, then calls each listener in subscription order on the
//! emitting thread. Listeners may subscribe or unsubscribe from inside a callback.
//!
//! With the `metrics` feature, [`MetricsListener`] forwards events that implement
//! [`RecordMetrics`] to the `metrics` facade; with the `tracing` feature, [`TracingListener`]
//! turns each event into a `tracing` event.
//!
//! # Example
//!
//! ```
//! use palisade_core::events::EventBus;
//! use std::sync::{Arc, Mutex};
//!
//! #[derive(Debug, Clone, PartialEq)]
//! enum Event { Opened, Closed }
//!
//! let bus = EventBus::new();
//! bus.emit_with(|| Event::Opened); // nobody listens: the closure is not even called
//!
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let sink = seen.clone();
//! let id = bus.subscribe(move |e: &Event| sink.lock().unwrap().push(e.clone()));
//! bus.emit_with(|| Event::Closed);
//! bus.unsubscribe(id);
//! bus.emit_with(|| Event::Opened);
//!
//! assert_eq!(*seen.lock().unwrap(), vec![Event::Closed]);
//! ```
//!
//! # Memory ordering
//!
//! The "anyone listening?" flag is read with `Relaxed` ordering: an event emitted while a
//! listener is being subscribed on another thread may or may not reach it, which is the same
//! as the event happening a moment earlier. The listener list itself is guarded by a lock, so a
//! listener that is called always sees a fully built list.

use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use parking_lot::RwLock;
use std::fmt;
use std::sync::Arc as StdArc;

/// Receives events of type `E`.
///
/// Called synchronously on the thread that emitted the event, often on a request's hot path:
/// keep it short and never block. A panicking listener unwinds into the layer's caller.
pub trait Listener<E>: Send + Sync + 'static {
    /// Called once for each event.
    fn on_event(&self, event: &E);
}

impl<E, F> Listener<E> for F
where
    F: Fn(&E) + Send + Sync + 'static,
{
    #[inline]
    fn on_event(&self, event: &E) {
        self(event);
    }
}

/// Identifies a subscription, to remove it with [`EventBus::unsubscribe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerId(u64);

struct Entry<E> {
    id: ListenerId,
    listener: StdArc<dyn Listener<E>>,
}

impl<E> Clone for Entry<E> {
    fn clone(&self) -> Self {
        Entry {
            id: self.id,
            listener: StdArc::clone(&self.listener),
        }
    }
}

/// Zero or more listeners of events of type `E`. See the [module docs](self).
pub struct EventBus<E> {
    active: AtomicBool,
    next_id: AtomicU64,
    listeners: RwLock<StdArc<[Entry<E>]>>,
}

impl<E: 'static> Default for EventBus<E> {
    fn default() -> Self {
        EventBus::new()
    }
}

impl<E: 'static> EventBus<E> {
    /// A bus with no listeners.
    #[must_use]
    pub fn new() -> Self {
        EventBus {
            active: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            listeners: RwLock::new(StdArc::from(Vec::new())),
        }
    }

    /// Adds a listener; it receives every event emitted after this returns.
    pub fn subscribe<L: Listener<E>>(&self, listener: L) -> ListenerId {
        // Relaxed: ids only need to be unique, which the RMW guarantees in any order.
        let id = ListenerId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let mut listeners = self.listeners.write();
        let mut next: Vec<Entry<E>> = listeners.iter().cloned().collect();
        next.push(Entry {
            id,
            listener: StdArc::new(listener),
        });
        *listeners = StdArc::from(next);
        // Relaxed: see "Memory ordering" in the module docs; the list is published by the lock.
        self.active.store(true, Ordering::Relaxed);
        id
    }

    /// Removes a listener. Returns `false` if it was not subscribed.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        let mut listeners = self.listeners.write();
        if !listeners.iter().any(|entry| entry.id == id) {
            return false;
        }
        let next: Vec<Entry<E>> = listeners
            .iter()
            .filter(|entry| entry.id != id)
            .cloned()
            .collect();
        // Relaxed: as in `subscribe`; written under the lock so it matches the list.
        self.active.store(!next.is_empty(), Ordering::Relaxed);
        *listeners = StdArc::from(next);
        true
    }

    /// Whether anyone listens. Layers may use it to skip work that only feeds events.
    #[inline]
    #[must_use]
    pub fn is_active(&self) -> bool {
        // Relaxed: see "Memory ordering" in the module docs.
        self.active.load(Ordering::Relaxed)
    }

    /// How many listeners are subscribed.
    #[must_use]
    pub fn listener_count(&self) -> usize {
        self.listeners.read().len()
    }

    /// Builds the event with `make` and delivers it, only if anyone listens.
    #[inline]
    pub fn emit_with(&self, make: impl FnOnce() -> E) {
        if self.is_active() {
            self.dispatch(&make());
        }
    }

    /// Delivers an already built event (a no-op when nobody listens).
    #[inline]
    pub fn emit(&self, event: E) {
        if self.is_active() {
            self.dispatch(&event);
        }
    }

    #[cold]
    #[inline(never)]
    fn dispatch(&self, event: &E) {
        let listeners = StdArc::clone(&self.listeners.read());
        for entry in listeners.iter() {
            entry.listener.on_event(event);
        }
    }
}

impl<E: 'static> fmt::Debug for EventBus<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus")
            .field("listeners", &self.listener_count())
            .finish()
    }
}

/// An event that knows how to record itself through the `metrics` facade.
///
/// Layers implement it for their event types with names `palisade_<layer>_<thing>` and the
/// labels `name` (the instance name the user gave), and where they apply `state`, `outcome` or
/// `reason`. Handles are registered once per layer instance, in [`register`], so that
/// recording an event is an increment on a handle: no registry lookup, no label allocation.
/// Labels that vary with the event (a state, an outcome) take one handle per value.
///
/// [`register`]: RecordMetrics::register
#[cfg(feature = "metrics")]
pub trait RecordMetrics: 'static {
    /// The counters, gauges and histograms of one layer instance.
    type Handles: Send + Sync + 'static;

    /// Registers the handles of the instance called `name` with the installed recorder.
    fn register(name: &str) -> Self::Handles;

    /// Records this event on the instance's handles.
    fn record_metrics(&self, handles: &Self::Handles);
}

/// A [`Listener`] that records every event through the `metrics` facade, on handles
/// registered once when it is created.
///
/// Create it after installing the metrics recorder: handles registered before a recorder is
/// installed stay no-ops.
#[cfg(feature = "metrics")]
pub struct MetricsListener<E: RecordMetrics> {
    handles: E::Handles,
}

#[cfg(feature = "metrics")]
impl<E: RecordMetrics> MetricsListener<E> {
    /// Registers the handles of the instance called `name`.
    #[must_use]
    pub fn new(name: &str) -> Self {
        MetricsListener {
            handles: E::register(name),
        }
    }
}

#[cfg(feature = "metrics")]
impl<E: RecordMetrics> fmt::Debug for MetricsListener<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsListener").finish_non_exhaustive()
    }
}

#[cfg(feature = "metrics")]
impl<E: RecordMetrics> Listener<E> for MetricsListener<E> {
    fn on_event(&self, event: &E) {
        event.record_metrics(&self.handles);
    }
}

/// An event that knows how to emit itself as a `tracing` event.
///
/// Layers implement it for their event types: state transitions and ejections at `INFO` or
/// `WARN`, per-call events (permitted, rejected, succeeded) at `TRACE`, each with structured
/// fields (`layer`, `name`, then the event's own: `from`, `to`, `reason`, …) rather than one
/// `Debug` string. The default method emits the event's `Debug` form at `DEBUG`.
#[cfg(feature = "tracing")]
pub trait TraceEvent: fmt::Debug + 'static {
    /// Emits this event of the `layer` instance called `name`, target `palisade`.
    fn trace(&self, layer: &'static str, name: &str) {
        tracing::debug!(target: "palisade", layer, name, event = ?self);
    }
}

/// A [`Listener`] that emits every event through [`TraceEvent::trace`], target `palisade`.
#[cfg(feature = "tracing")]
#[derive(Clone, Debug)]
pub struct TracingListener {
    layer: &'static str,
    name: StdArc<str>,
}

#[cfg(feature = "tracing")]
impl TracingListener {
    /// Traces the events of the `layer` instance called `name`.
    #[must_use]
    pub fn new(layer: &'static str, name: impl Into<StdArc<str>>) -> Self {
        TracingListener {
            layer,
            name: name.into(),
        }
    }
}

#[cfg(feature = "tracing")]
impl<E: TraceEvent> Listener<E> for TracingListener {
    fn on_event(&self, event: &E) {
        event.trace(self.layer, &self.name);
    }
}

/// Subscribes, to an event bus (or a handle with a `subscribe` method), the listeners that the
/// *calling* crate's `metrics` and `tracing` features ask for: a [`MetricsListener`] and a
/// [`TracingListener`] for the instance called `name` of `layer`.
///
/// A macro, not a function, because the features are the layer crate's own: the `#[cfg]`s
/// are evaluated where the macro is expanded. The event type must implement [`RecordMetrics`]
/// under the caller's `metrics` feature and [`TraceEvent`] under its `tracing` feature.
///
/// ```ignore
/// // In a layer crate's handle constructor:
/// let events = EventBus::<CircuitBreakerEvent>::new();
/// palisade_core::subscribe_feature_listeners!(events, "circuit_breaker", settings.name);
/// ```
#[macro_export]
macro_rules! subscribe_feature_listeners {
    ($bus:expr, $layer:expr, $name:expr) => {{
        let _ = (&$bus, $layer, &$name);
        #[cfg(feature = "metrics")]
        {
            $bus.subscribe($crate::events::MetricsListener::new(&*$name));
        }
        #[cfg(feature = "tracing")]
        {
            $bus.subscribe($crate::events::TracingListener::new($layer, &*$name));
        }
    }};
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug, Clone, PartialEq)]
    enum Ev {
        A(u32),
        B,
    }

    #[test]
    fn nobody_listening_builds_nothing_and_allocates_nothing() {
        let bus: EventBus<Ev> = EventBus::new();
        assert!(!bus.is_active());
        let mut built = 0;
        let info = allocation_counter::measure(|| {
            for i in 0..1000 {
                bus.emit_with(|| {
                    built += 1;
                    Ev::A(i)
                });
                bus.emit(Ev::B);
            }
        });
        assert_eq!(built, 0);
        assert_eq!(info.count_total, 0, "emitting with no listener allocated");
    }

    #[test]
    fn listeners_receive_events_in_order_of_subscription() {
        let bus = EventBus::new();
        let log = StdArc::new(Mutex::new(Vec::new()));
        let (a, b) = (log.clone(), log.clone());
        bus.subscribe(move |e: &Ev| a.lock().unwrap().push(("first", e.clone())));
        bus.subscribe(move |e: &Ev| b.lock().unwrap().push(("second", e.clone())));
        assert_eq!(bus.listener_count(), 2);
        bus.emit(Ev::A(7));
        assert_eq!(
            *log.lock().unwrap(),
            vec![("first", Ev::A(7)), ("second", Ev::A(7))]
        );
    }

    #[test]
    fn emitting_to_listeners_does_not_allocate_per_event() {
        let bus = EventBus::new();
        let count = StdArc::new(AtomicU64::new(0));
        let c = count.clone();
        bus.subscribe(move |_: &Ev| {
            // Relaxed: a test counter read after the loop on this thread.
            c.fetch_add(1, Ordering::Relaxed);
        });
        let info = allocation_counter::measure(|| {
            for i in 0..100 {
                bus.emit_with(|| Ev::A(i));
            }
        });
        assert_eq!(count.load(Ordering::Relaxed), 100);
        assert_eq!(info.count_total, 0);
    }

    #[test]
    fn unsubscribe_stops_delivery_and_deactivates_the_bus() {
        let bus = EventBus::new();
        let count = StdArc::new(AtomicU64::new(0));
        let c = count.clone();
        let id = bus.subscribe(move |_: &Ev| {
            // Relaxed: a test counter.
            c.fetch_add(1, Ordering::Relaxed);
        });
        bus.emit(Ev::B);
        assert!(bus.unsubscribe(id));
        assert!(!bus.unsubscribe(id), "second unsubscribe reports absence");
        assert!(!bus.is_active());
        bus.emit(Ev::B);
        assert_eq!(count.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_listener_may_subscribe_from_inside_a_callback() {
        let bus = StdArc::new(EventBus::new());
        let inner = bus.clone();
        let flag = AtomicBool::new(false);
        bus.subscribe(move |_: &Ev| {
            // Relaxed: single-threaded test.
            if !flag.swap(true, Ordering::Relaxed) {
                inner.subscribe(|_: &Ev| {});
            }
        });
        bus.emit(Ev::B);
        assert_eq!(bus.listener_count(), 2);
    }

    #[test]
    fn closures_and_structs_are_listeners() {
        struct Counter(AtomicU64);
        impl Listener<Ev> for StdArc<Counter> {
            fn on_event(&self, _: &Ev) {
                // Relaxed: a test counter.
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let bus = EventBus::new();
        let counter = StdArc::new(Counter(AtomicU64::new(0)));
        bus.subscribe(counter.clone());
        bus.emit(Ev::B);
        bus.emit(Ev::B);
        assert_eq!(counter.0.load(Ordering::Relaxed), 2);
    }
}

#[cfg(all(test, feature = "metrics", not(loom)))]
mod metrics_tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    static REGISTERED: AtomicUsize = AtomicUsize::new(0);
    static RECORDED: AtomicU64 = AtomicU64::new(0);

    struct Tick(u64);

    struct TickHandles {
        name: String,
    }

    impl RecordMetrics for Tick {
        type Handles = TickHandles;

        fn register(name: &str) -> TickHandles {
            // Relaxed: a test counter.
            REGISTERED.fetch_add(1, Ordering::Relaxed);
            TickHandles {
                name: name.to_owned(),
            }
        }

        fn record_metrics(&self, handles: &TickHandles) {
            assert_eq!(handles.name, "orders");
            // Relaxed: a test counter.
            RECORDED.fetch_add(self.0, Ordering::Relaxed);
        }
    }

    #[test]
    fn handles_are_registered_once_and_events_record_on_them_without_allocating() {
        let listener = MetricsListener::<Tick>::new("orders");
        // Relaxed: test counters, read on this thread.
        assert_eq!(REGISTERED.load(Ordering::Relaxed), 1);
        assert_eq!(listener.handles.name, "orders");
        let bus = EventBus::new();
        bus.subscribe(listener);
        let info = allocation_counter::measure(|| {
            for i in 0..100 {
                bus.emit(Tick(i));
            }
        });
        assert_eq!(info.count_total, 0);
        assert_eq!(RECORDED.load(Ordering::Relaxed), (0..100).sum::<u64>());
        assert_eq!(REGISTERED.load(Ordering::Relaxed), 1, "registered once");
    }
}
