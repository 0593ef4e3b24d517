//! Typed events from a layer to whoever listens, at the cost of one branch when nobody does.
//!
//! Each layer defines its own event type (a breaker's state transitions, a limiter's
//! rejections…) and keeps one [`EventBus`] of it in its shared state. Users subscribe
//! [`Listener`]s through the layer's handle; any `Fn(&E) + Send + Sync` closure is one.
//!
//! [`EventBus::emit_with`] takes a closure that builds the event, so with no listener the event
//! is never built: the cost is one relaxed load of a flag and a branch the CPU predicts, and
//! nothing is allocated. With listeners, an emit loads the listener list through
//! [`arc-swap`](https://docs.rs/arc-swap): no lock, no reference-count write on the shared
//! list, no allocation (a counting-allocator test checks it), then calls each listener in
//! subscription order on the emitting thread. Subscribing and unsubscribing (cold paths) copy
//! the list and publish the copy; they may be called from inside a callback (the running
//! emit finishes on the list it loaded).
//!
//! # A panicking listener
//!
//! A listener is called from inside a layer's bookkeeping (a permit being taken or returned,
//! a state transition). So that a listener can never break a layer, every call is made under
//! [`catch_unwind`](std::panic::catch_unwind()): a panic stops that listener's handling of that
//! one event and nothing else; the layer and the other listeners go on. The panic hook still
//! reports the panic (to stderr by default), the bus counts it ([`EventBus::listener_panics`])
//! and, with the `tracing` feature, logs it at `ERROR`. Without a panic the guard costs no
//! allocation (the same counting-allocator test). In a build with `panic = "abort"` there is
//! nothing to catch: a panic ends the process there, as everywhere else.
//!
//! With the `metrics` feature, [`MetricsListener`] forwards events that implement
//! [`RecordMetrics`] to the `metrics` facade; with the `tracing` feature, [`TracingListener`]
//! turns each event into a `tracing` event.
//!
//! # Built-in listeners and the cost of an event
//!
//! A layer built with its `metrics` or `tracing` feature installs those two listeners in fixed
//! slots of its bus ([`EventBus::install_metrics`], [`EventBus::install_tracing`]), not in the
//! user-listener list: they are called directly, outside the list's `arc-swap` load, under one
//! panic guard for both. And an event is only built when something will consume it:
//!
//! - a user listener is subscribed (then every event goes to the built-in listeners and to
//!   the user's);
//! - or the metrics listener records on a real recorder: one was installed when the layer was
//!   built, or is now ([`recorder_installed`], checked at each event until one is, after which
//!   the listener registers its handles and the check stops);
//! - or, for a per-call event ([`EventBus::emit_call_with`]: a call permitted, finished,
//!   rejected, traced at `TRACE`), a `tracing` subscriber has `TRACE` enabled for target
//!   `palisade` (`tracing::enabled!`: one relaxed load when it has not). Rare events (state
//!   transitions, limit changes: [`EventBus::emit_with`]) always reach the tracing listener,
//!   whose macros filter by level.
//!
//! So a layer with the features compiled in, and no recorder, no subscriber and no user
//! listener, pays a relaxed load, a thread-local read and a branch or two per event; layers
//! use [`EventBus::wants_call_events`] to skip work (a clock read) that only feeds per-call
//! events. A per-call event of which the metrics listener would record nothing goes through
//! [`EventBus::emit_call_unmetered_with`]: with a recorder as its only consumer, it is not
//! built at all.
//!
//! # Metric names and labels
//!
//! One scheme for every layer, `<layer>` being `circuit_breaker`, `bulkhead`, `rate_limit`,
//! `retry` or `load_balancer`:
//!
//! | metric | kind | labels | meaning |
//! |---|---|---|---|
//! | `palisade_<layer>_calls_total` | counter | `name`, `outcome` | calls that went through the layer, by how they ended: `outcome` is one of `success`, `failure`, `ignore`, `rejected` ([`Outcome::as_str`](crate::Outcome::as_str), plus `rejected` for calls the layer itself refused), so a failure rate is `failure / (success + failure)` |
//! | `palisade_<layer>_rejections_total` | counter | `name`, `reason` | the layer's own refusals, `reason` = [`RejectionKind::as_str`](crate::RejectionKind::as_str) |
//! | `palisade_<layer>_call_duration_seconds` | histogram | `name`, `outcome` | call latency, where the layer measures time anyway |
//! | gauges, named for what they measure | gauge | `name` (and e.g. `state`) | e.g. `palisade_circuit_breaker_state{name,state}` (1 for the current state, 0 for the others), `palisade_bulkhead_limit{name}`, `palisade_bulkhead_in_flight{name}`; set at build |
//!
//! `name` is the instance name the user gave, and the layer's own name (`circuit_breaker`, …)
//! when they gave none. `outcome` always means how a call ended and `reason` always why a
//! layer refused one; no label takes both meanings. Help text is given once per metric name
//! with `describe` (feature `metrics`), from `RecordMetrics::register`.
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
//! The "who is listening?" flags are read with `Relaxed` ordering: an event emitted while a
//! listener is being subscribed on another thread may or may not reach it, which is the same
//! as the event happening a moment earlier. The listener list itself is published by
//! `arc-swap`, whose store and load order the list's contents (a loaded list is always fully
//! built), and each built-in slot by its `OnceLock` (an `Acquire` load). Writers (subscribe,
//! unsubscribe) are serialised by a mutex, so the user-listener flag written after a list
//! always matches the list last published.

use crate::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc as StdArc;

/// Receives events of type `E`.
///
/// Called synchronously on the thread that emitted the event, often on a request's hot path:
/// keep it short and never block. A panic in a listener is caught by the bus (see the
/// [module docs](self#a-panicking-listener)): it never unwinds into the layer.
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

/// The built-in listener of a feature (`metrics`, `tracing`): called directly, outside the
/// user-listener list.
type Builtin<E> = Box<dyn Listener<E>>;

/// Bits of [`EventBus::flags`]: who an event may go to. A bus nobody consumes from reads 0.
mod flag {
    /// At least one user listener is subscribed.
    pub(super) const USERS: u32 = 1 << 0;
    /// A built-in metrics listener is installed.
    pub(super) const METRICS: u32 = 1 << 1;
    /// The metrics listener records on a real recorder's handles (set once, never cleared).
    pub(super) const METRICS_LIVE: u32 = 1 << 2;
    /// A built-in tracing listener is installed.
    pub(super) const TRACING: u32 = 1 << 3;
}

/// Zero or more listeners of events of type `E`. See the [module docs](self).
///
/// Besides the listeners users subscribe, a bus has two fixed slots for the listeners of a
/// layer's `metrics` and `tracing` features (see the
/// [module docs](self#built-in-listeners-and-the-cost-of-an-event)), set once when the
/// layer is built.
///
/// # Memory ordering
///
/// See the [module docs](self#memory-ordering).
pub struct EventBus<E> {
    /// [`flag`] bits: one relaxed load tells an emit whether anything consumes its event.
    flags: AtomicU32,
    next_id: AtomicU64,
    panics: AtomicU64,
    listeners: ArcSwap<Vec<Entry<E>>>,
    /// Serialises subscribe and unsubscribe, so that list and flag change together. Never
    /// taken by an emit.
    writer: Mutex<()>,
    /// The `metrics` feature's listener, if the layer installed one.
    metrics: std::sync::OnceLock<Builtin<E>>,
    /// The `tracing` feature's listener, if the layer installed one.
    tracing: std::sync::OnceLock<Builtin<E>>,
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
            flags: AtomicU32::new(0),
            next_id: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            listeners: ArcSwap::from_pointee(Vec::new()),
            writer: Mutex::new(()),
            metrics: std::sync::OnceLock::new(),
            tracing: std::sync::OnceLock::new(),
        }
    }

    /// Adds a listener; it receives every event emitted after this returns.
    pub fn subscribe<L: Listener<E>>(&self, listener: L) -> ListenerId {
        // Relaxed: ids only need to be unique, which the RMW guarantees in any order.
        let id = ListenerId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let listener: StdArc<dyn Listener<E>> = StdArc::new(listener);
        let _writer = self.writer.lock();
        let mut next: Vec<Entry<E>> = self.listeners.load().iter().cloned().collect();
        next.push(Entry { id, listener });
        self.listeners.store(StdArc::new(next));
        // Relaxed: see "Memory ordering" in the module docs; the list is published by the
        // store above, and the writer lock keeps flag and list in step.
        self.flags.fetch_or(flag::USERS, Ordering::Relaxed);
        id
    }

    /// Removes a listener. Returns `false` if it was not subscribed.
    ///
    /// An emit already running on another thread (or the one whose callback calls this) may
    /// still deliver its event to the listener; no emit that starts after this returns does.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        let _writer = self.writer.lock();
        let current = self.listeners.load_full();
        if !current.iter().any(|entry| entry.id == id) {
            return false;
        }
        let next: Vec<Entry<E>> = current
            .iter()
            .filter(|entry| entry.id != id)
            .cloned()
            .collect();
        // Relaxed: as in `subscribe`; written under the writer lock so it matches the list.
        if next.is_empty() {
            self.flags.fetch_and(!flag::USERS, Ordering::Relaxed);
        }
        self.listeners.store(StdArc::new(next));
        drop(current);
        true
    }

    /// Installs the built-in metrics listener of a layer's `metrics` feature (at most one;
    /// a second is ignored). Called by [`subscribe_feature_listeners!`](crate::subscribe_feature_listeners).
    #[cfg(feature = "metrics")]
    #[doc(hidden)]
    pub fn install_metrics(&self, listener: MetricsListener<E>)
    where
        E: RecordMetrics,
    {
        let live = listener.is_registered();
        if self.metrics.set(Box::new(listener)).is_ok() {
            let bits = if live {
                flag::METRICS | flag::METRICS_LIVE
            } else {
                flag::METRICS
            };
            // Relaxed: the bit only tells an emit to look in the slot; the slot's contents are
            // published by the `OnceLock` (an emit that sees the bit before the slot finds it
            // empty and delivers nothing, as if the event came a moment earlier).
            self.flags.fetch_or(bits, Ordering::Relaxed);
        }
    }

    /// Installs the built-in tracing listener of a layer's `tracing` feature (at most one;
    /// a second is ignored). Called by [`subscribe_feature_listeners!`](crate::subscribe_feature_listeners).
    #[cfg(feature = "tracing")]
    #[doc(hidden)]
    pub fn install_tracing(&self, listener: TracingListener)
    where
        E: TraceEvent,
    {
        if self.tracing.set(Box::new(listener)).is_ok() {
            // Relaxed: as in `install_metrics`, the `OnceLock` publishes the slot.
            self.flags.fetch_or(flag::TRACING, Ordering::Relaxed);
        }
    }

    /// Whether anyone listens: a user listener, or a built-in one of the layer's features.
    #[inline]
    #[must_use]
    pub fn is_active(&self) -> bool {
        // Relaxed: see "Memory ordering" in the module docs.
        self.flags.load(Ordering::Relaxed) != 0
    }

    /// Whether a per-call event ([`emit_call_with`](Self::emit_call_with)) emitted now would
    /// reach anyone: a user listener, a metrics listener with a recorder to record on, or a
    /// tracing listener with `TRACE` enabled for target `palisade`. Layers use it to skip
    /// work (a clock read) that only feeds per-call events.
    #[inline]
    #[must_use]
    pub fn wants_call_events(&self) -> bool {
        // Relaxed: see "Memory ordering" in the module docs.
        let flags = self.flags.load(Ordering::Relaxed);
        flags != 0 && self.consumers(flags, true) != 0
    }

    /// How many user listeners are subscribed (the built-in ones are not counted).
    #[must_use]
    pub fn listener_count(&self) -> usize {
        self.listeners.load().len()
    }

    /// How many times a listener of this bus has panicked (each panic was caught; see the
    /// [module docs](self#a-panicking-listener)).
    #[must_use]
    pub fn listener_panics(&self) -> u64 {
        // Relaxed: a statistic; nothing is published through it.
        self.panics.load(Ordering::Relaxed)
    }

    /// Builds the event with `make` and delivers it, only if anyone listens.
    ///
    /// For events that happen rarely (a state transition, a limit change): the built-in
    /// tracing listener gets every one, its `tracing` macros filter by level. Per-call events
    /// go through [`emit_call_with`](Self::emit_call_with).
    #[inline]
    pub fn emit_with(&self, make: impl FnOnce() -> E) {
        self.emit_if_consumed(false, make);
    }

    /// Builds a per-call event (traced at `TRACE`) with `make` and delivers it, only if
    /// anything consumes it: a user listener, the metrics listener once a recorder is there,
    /// or the tracing listener while `TRACE` is enabled for target `palisade`. Otherwise the
    /// event is not built.
    #[inline]
    pub fn emit_call_with(&self, make: impl FnOnce() -> E) {
        self.emit_if_consumed(true, make);
    }

    /// As [`emit_call_with`](Self::emit_call_with), for a per-call event of which the metrics
    /// listener would record nothing (a bulkhead's `CallPermitted` when it has no wait queue:
    /// every wait is zero): delivered to user listeners and to the tracing listener (while
    /// `TRACE` is enabled) only. So with a recorder but no user listener and no `TRACE`
    /// subscriber, the event is not built and nothing is dispatched.
    #[inline]
    pub fn emit_call_unmetered_with(&self, make: impl FnOnce() -> E) {
        // Relaxed: see "Memory ordering" in the module docs.
        let flags = self.flags.load(Ordering::Relaxed);
        if flags & (flag::USERS | flag::TRACING) == 0 {
            return;
        }
        let mut to = flags & flag::USERS;
        if flags & flag::TRACING != 0 && trace_enabled() {
            to |= flag::TRACING;
        }
        if to != 0 {
            self.deliver(to, &make());
        }
    }

    /// Delivers an already built event (a no-op when nobody listens).
    #[inline]
    pub fn emit(&self, event: E) {
        self.emit_if_consumed(false, || event);
    }

    #[inline]
    fn emit_if_consumed(&self, per_call: bool, make: impl FnOnce() -> E) {
        // Relaxed: see "Memory ordering" in the module docs.
        let flags = self.flags.load(Ordering::Relaxed);
        if flags == 0 {
            return;
        }
        let to = self.consumers(flags, per_call);
        if to != 0 {
            self.deliver(to, &make());
        }
    }

    /// Which of `flags`' consumers take an event now (a [`flag`] set; 0: none).
    #[inline]
    fn consumers(&self, flags: u32, per_call: bool) -> u32 {
        let mut to = flags & flag::USERS;
        if flags & flag::METRICS_LIVE != 0
            || (flags & flag::METRICS != 0 && self.metrics_went_live())
        {
            to |= flag::METRICS;
        }
        if flags & flag::TRACING != 0 && (!per_call || trace_enabled()) {
            to |= flag::TRACING;
        }
        to
    }

    /// With a metrics listener that has no recorder yet: whether one is installed now (then
    /// it is live from here on: it registers its handles at the event this lets through).
    #[inline]
    fn metrics_went_live(&self) -> bool {
        if !recorder_detected() {
            return false;
        }
        // Relaxed: the bit only lets later emits skip the check above; the handles it
        // leads to are registered (once, under the listener's own `OnceLock`) by the
        // delivery that follows, on whichever thread gets there first.
        self.flags.fetch_or(flag::METRICS_LIVE, Ordering::Relaxed);
        true
    }

    #[inline(never)]
    fn deliver(&self, to: u32, event: &E) {
        if to & (flag::METRICS | flag::TRACING) != 0 {
            // One guard for both built-in listeners; see `dispatch` for the AssertUnwindSafe.
            let call = catch_unwind(AssertUnwindSafe(|| {
                if to & flag::METRICS != 0
                    && let Some(metrics) = self.metrics.get()
                {
                    metrics.on_event(event);
                }
                if to & flag::TRACING != 0
                    && let Some(tracing) = self.tracing.get()
                {
                    tracing.on_event(event);
                }
            }));
            if call.is_err() {
                self.listener_panicked(None);
            }
        }
        if to & flag::USERS != 0 {
            self.dispatch(event);
        }
    }

    #[cold]
    #[inline(never)]
    fn dispatch(&self, event: &E) {
        // A lock-free load: the guard pins this version of the list without a reference-count
        // write in the common case, and without allocating.
        let listeners = self.listeners.load();
        for entry in listeners.iter() {
            // AssertUnwindSafe: the listener is called with a shared reference to an event the
            // bus does not use afterwards; a listener whose own state a panic left half-updated
            // is that listener's business (it is called again with the next event).
            let call = catch_unwind(AssertUnwindSafe(|| entry.listener.on_event(event)));
            if call.is_err() {
                self.listener_panicked(Some(entry.id));
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn listener_panicked(&self, id: Option<ListenerId>) {
        // Relaxed: a statistic; nothing is published through it.
        self.panics.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "tracing")]
        tracing::error!(
            target: "palisade",
            listener = id.map_or("built-in", |_| "user"),
            listener_id = id.map(|id| id.0),
            event = std::any::type_name::<E>(),
            "an event listener panicked; the panic was caught and the layer is unaffected"
        );
        let _ = id;
    }
}

/// Whether a `tracing` subscriber takes `TRACE` events of target `palisade` (always false
/// without the `tracing` feature). One relaxed load, inline, when no subscriber wants `TRACE`.
#[inline(always)]
fn trace_enabled() -> bool {
    #[cfg(feature = "tracing")]
    {
        // The global level first (what `enabled!` checks first too), here rather than in the
        // function below: the macro's expansion is too large to inline, and a call on every
        // per-call event cost more (its register saves) than the one load it needed.
        tracing::Level::TRACE <= tracing::level_filters::STATIC_MAX_LEVEL
            && tracing::Level::TRACE <= tracing::level_filters::LevelFilter::current()
            && trace_enabled_for_target()
    }
    #[cfg(not(feature = "tracing"))]
    {
        false
    }
}

/// The rest of [`trace_enabled`]: the callsite's interest and the subscriber's filter.
#[cfg(feature = "tracing")]
#[cold]
#[inline(never)]
fn trace_enabled_for_target() -> bool {
    tracing::enabled!(target: "palisade", tracing::Level::TRACE)
}

/// [`recorder_installed`], or false without the `metrics` feature.
#[inline]
fn recorder_detected() -> bool {
    #[cfg(feature = "metrics")]
    {
        recorder_installed()
    }
    #[cfg(not(feature = "metrics"))]
    {
        false
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
/// Layers implement it for their event types with the names and labels of the
/// [scheme in the module docs](self#metric-names-and-labels). Handles are registered once per
/// layer instance, in [`register`], so that recording an event is an increment on a handle:
/// no registry lookup, no label allocation. Labels that vary with the event (a state, an
/// outcome) take one handle per value. Call [`describe`] for each metric from `register`: it
/// runs when a recorder is there to receive the help text.
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

/// The `palisade_<layer>_calls_total{name, outcome}` counters of one layer instance, one
/// handle per outcome (`success`, `failure`, `ignore`, `rejected`), registered once: the
/// calls-by-outcome part of the [label scheme](self#metric-names-and-labels) that every layer
/// records the same way.
#[cfg(feature = "metrics")]
pub struct OutcomeCounters([metrics::Counter; 4]);

#[cfg(feature = "metrics")]
impl OutcomeCounters {
    /// Registers the counters of the metric `metric` for the instance called `name`.
    #[must_use]
    pub fn register(metric: &'static str, name: &str) -> Self {
        let counter = |outcome: &'static str| metrics::counter!(metric, "name" => name.to_owned(), "outcome" => outcome);
        OutcomeCounters([
            counter(crate::Outcome::Success.as_str()),
            counter(crate::Outcome::Failure.as_str()),
            counter(crate::Outcome::Ignore.as_str()),
            counter("rejected"),
        ])
    }

    /// Counts a call that went through the layer and ended with `outcome`.
    #[inline]
    pub fn finished(&self, outcome: crate::Outcome) {
        self.0[outcome_index(outcome)].increment(1);
    }

    /// Counts a call the layer refused itself (`outcome="rejected"`).
    #[inline]
    pub fn rejected(&self) {
        self.0[3].increment(1);
    }
}

#[cfg(feature = "metrics")]
impl fmt::Debug for OutcomeCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutcomeCounters").finish_non_exhaustive()
    }
}

/// The `palisade_<layer>_call_duration_seconds{name, outcome}` histograms of one layer
/// instance, one handle per outcome of a call that went through (`success`, `failure`,
/// `ignore`), registered once.
#[cfg(feature = "metrics")]
pub struct OutcomeHistograms([metrics::Histogram; 3]);

#[cfg(feature = "metrics")]
impl OutcomeHistograms {
    /// Registers the histograms of the metric `metric` for the instance called `name`.
    #[must_use]
    pub fn register(metric: &'static str, name: &str) -> Self {
        let histogram = |outcome: crate::Outcome| metrics::histogram!(metric, "name" => name.to_owned(), "outcome" => outcome.as_str());
        OutcomeHistograms([
            histogram(crate::Outcome::Success),
            histogram(crate::Outcome::Failure),
            histogram(crate::Outcome::Ignore),
        ])
    }

    /// Records the duration of a call that ended with `outcome`, in seconds.
    #[inline]
    pub fn record(&self, outcome: crate::Outcome, elapsed: std::time::Duration) {
        self.0[outcome_index(outcome)].record(elapsed.as_secs_f64());
    }
}

#[cfg(feature = "metrics")]
impl fmt::Debug for OutcomeHistograms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutcomeHistograms").finish_non_exhaustive()
    }
}

#[cfg(feature = "metrics")]
const fn outcome_index(outcome: crate::Outcome) -> usize {
    match outcome {
        crate::Outcome::Success => 0,
        crate::Outcome::Failure => 1,
        crate::Outcome::Ignore => 2,
    }
}

/// Whether a `metrics` recorder is installed for the current thread: a global one
/// (`metrics::set_global_recorder`, which exporters call) or a thread-local one
/// (`metrics::with_local_recorder`).
///
/// `metrics` 0.24 has no query for this, so it is inferred: with none installed, `metrics`
/// hands out its no-op recorder, a zero-sized type, and every real exporter's recorder has a
/// size. (A zero-sized recorder of your own reads as "none": a bus only lets events through
/// to its [`MetricsListener`] while this is true or the listener's handles are registered,
/// so give your recorder a field.) One thread-local read and one atomic load; no allocation.
#[cfg(feature = "metrics")]
#[must_use]
pub fn recorder_installed() -> bool {
    metrics::with_recorder(|recorder| std::mem::size_of_val(recorder) != 0)
}

/// The kind of a metric, for [`describe`].
#[cfg(feature = "metrics")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MetricKind {
    /// A counter (`metrics::counter!`).
    Counter,
    /// A gauge (`metrics::gauge!`).
    Gauge,
    /// A histogram (`metrics::histogram!`); one whose name ends in `_seconds` is described
    /// with the unit seconds.
    Histogram,
}

/// Gives the installed recorder the help text of the metric `name`, once per recorder and
/// name however many layer instances call it.
///
/// Without a recorder it does nothing and remembers nothing, so a description is given when
/// the first recorder arrives (call it from [`RecordMetrics::register`], which
/// [`MetricsListener`] runs then). Cold path: a lock and a set lookup.
#[cfg(feature = "metrics")]
pub fn describe(kind: MetricKind, name: &'static str, help: &'static str) {
    use std::collections::HashSet;
    static DESCRIBED: parking_lot::Mutex<Option<HashSet<(usize, &'static str)>>> =
        parking_lot::Mutex::new(None);
    if !recorder_installed() {
        return;
    }
    metrics::with_recorder(|recorder| {
        // The recorder's address tells recorders apart (a test may install a local one after
        // another); it is only compared, never dereferenced.
        let id = std::ptr::from_ref(recorder).cast::<()>() as usize;
        let first = DESCRIBED
            .lock()
            .get_or_insert_with(HashSet::new)
            .insert((id, name));
        if !first {
            return;
        }
        let key = metrics::KeyName::from_const_str(name);
        let help = metrics::SharedString::const_str(help);
        match kind {
            MetricKind::Counter => recorder.describe_counter(key, None, help),
            MetricKind::Gauge => recorder.describe_gauge(key, None, help),
            MetricKind::Histogram => {
                let unit = name.ends_with("_seconds").then_some(metrics::Unit::Seconds);
                recorder.describe_histogram(key, unit, help);
            }
        }
    });
}

/// Sets an instance's gauges from its current state, right after its handles are registered.
#[cfg(feature = "metrics")]
type OnRegister<H> = Box<dyn Fn(&H) + Send + Sync>;

/// A [`Listener`] that records every event through the `metrics` facade, on handles
/// registered once.
///
/// # Built before the recorder
///
/// `metrics` handles registered while no recorder is installed are no-ops for good, and a
/// layer is often built before `main` installs its exporter. So the listener registers its
/// handles when it is created if a recorder is installed ([`recorder_installed`]), and
/// otherwise at the first event after one is: events before that have nowhere to go, and
/// every event after it is exported. Once registered, an event costs one atomic load more
/// than recording it; until then, one [`recorder_installed`] check.
///
/// A gauge set only when the layer is built (a limit, the initial state) would be lost by a
/// late registration: a layer passes [`MetricsListener::with_on_register`] a closure that sets
/// its gauges from its current state, run right after every registration.
#[cfg(feature = "metrics")]
pub struct MetricsListener<E: RecordMetrics> {
    name: StdArc<str>,
    /// Registered at creation; real handles unless no recorder was detected then.
    eager: E::Handles,
    /// No recorder was detected at creation: look for one at each event until `late` is set.
    eager_is_noop: bool,
    late: std::sync::OnceLock<E::Handles>,
    on_register: Option<OnRegister<E::Handles>>,
}

#[cfg(feature = "metrics")]
impl<E: RecordMetrics> MetricsListener<E> {
    /// Registers the handles of the instance called `name` (now, or at the first event after
    /// a recorder is installed).
    #[must_use]
    pub fn new(name: &str) -> Self {
        Self::build(name, None)
    }

    /// As [`MetricsListener::new`], and calls `on_register` with the handles right after they
    /// are registered, to set the instance's gauges from its current state. Let it hold a
    /// `Weak` reference to the layer's state: the state owns the listener.
    #[must_use]
    pub fn with_on_register(
        name: &str,
        on_register: impl Fn(&E::Handles) + Send + Sync + 'static,
    ) -> Self {
        Self::build(name, Some(Box::new(on_register)))
    }

    fn build(name: &str, on_register: Option<OnRegister<E::Handles>>) -> Self {
        let eager_is_noop = !recorder_installed();
        let eager = E::register(name);
        if !eager_is_noop && let Some(on_register) = &on_register {
            on_register(&eager);
        }
        MetricsListener {
            name: StdArc::from(name),
            eager,
            eager_is_noop,
            late: std::sync::OnceLock::new(),
            on_register,
        }
    }

    /// Whether the handles events are recorded on belong to a real recorder (as far as
    /// [`recorder_installed`] can tell).
    #[must_use]
    pub fn is_registered(&self) -> bool {
        !self.eager_is_noop || self.late.get().is_some()
    }

    #[cold]
    #[inline(never)]
    fn register_late(&self) -> &E::Handles {
        self.late.get_or_init(|| {
            let handles = E::register(&self.name);
            if let Some(on_register) = &self.on_register {
                on_register(&handles);
            }
            handles
        })
    }
}

#[cfg(feature = "metrics")]
impl<E: RecordMetrics> fmt::Debug for MetricsListener<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsListener")
            .field("name", &self.name)
            .field("registered", &self.is_registered())
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "metrics")]
impl<E: RecordMetrics> Listener<E> for MetricsListener<E> {
    #[inline]
    fn on_event(&self, event: &E) {
        if !self.eager_is_noop {
            event.record_metrics(&self.eager);
        } else if let Some(late) = self.late.get() {
            event.record_metrics(late);
        } else if recorder_installed() {
            event.record_metrics(self.register_late());
        } else {
            // No recorder (the eager handles are no-ops), or a zero-sized one installed
            // before the listener was made, whose handles these are.
            event.record_metrics(&self.eager);
        }
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

/// Installs, in an event bus's built-in slots, the listeners that the *calling* crate's
/// `metrics` and `tracing` features ask for: a [`MetricsListener`] and a [`TracingListener`]
/// for the instance called `name` of `layer` ([`EventBus::install_metrics`],
/// [`EventBus::install_tracing`]; they are not user listeners, see the
/// [module docs](self#built-in-listeners-and-the-cost-of-an-event)).
///
/// A macro, not a function, because the features are the layer crate's own: the `#[cfg]`s
/// are evaluated where the macro is expanded. The event type must implement [`RecordMetrics`]
/// under the caller's `metrics` feature and [`TraceEvent`] under its `tracing` feature.
///
/// A fourth argument, a closure `Fn(&Handles)`, is passed to
/// [`MetricsListener::with_on_register`] to set the instance's gauges (it is only expanded
/// under the caller's `metrics` feature, so it may name the metrics handle type).
///
/// ```ignore
/// // In a layer crate's handle constructor:
/// let events = EventBus::<CircuitBreakerEvent>::new();
/// palisade_core::subscribe_feature_listeners!(events, "circuit_breaker", settings.name);
/// // With gauges set from the state whenever the handles are registered:
/// let weak = Arc::downgrade(&shared);
/// palisade_core::subscribe_feature_listeners!(events, "bulkhead", name, move |m: &BulkheadMetrics| {
///     if let Some(shared) = weak.upgrade() { m.limit.set(shared.limit() as f64) }
/// });
/// ```
#[doc(hidden)] // for Palisade's layer crates, not part of the stable API
#[macro_export]
macro_rules! subscribe_feature_listeners {
    ($bus:expr, $layer:expr, $name:expr) => {{
        let _ = (&$bus, $layer, &$name);
        #[cfg(feature = "metrics")]
        {
            $bus.install_metrics($crate::events::MetricsListener::new(&*$name));
        }
        #[cfg(feature = "tracing")]
        {
            $bus.install_tracing($crate::events::TracingListener::new($layer, &*$name));
        }
    }};
    ($bus:expr, $layer:expr, $name:expr, $on_register:expr) => {{
        let _ = (&$bus, $layer, &$name);
        #[cfg(feature = "metrics")]
        {
            $bus.install_metrics($crate::events::MetricsListener::with_on_register(
                &*$name,
                $on_register,
            ));
        }
        #[cfg(feature = "tracing")]
        {
            $bus.install_tracing($crate::events::TracingListener::new($layer, &*$name));
        }
    }};
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::atomic::AtomicBool;
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
    fn a_listener_may_unsubscribe_itself_from_inside_its_callback() {
        let bus = StdArc::new(EventBus::new());
        let id_slot = StdArc::new(Mutex::new(None::<ListenerId>));
        let calls = StdArc::new(AtomicU64::new(0));
        let (inner, slot, c) = (bus.clone(), id_slot.clone(), calls.clone());
        let id = bus.subscribe(move |_: &Ev| {
            // Relaxed: a test counter.
            c.fetch_add(1, Ordering::Relaxed);
            if let Some(id) = *slot.lock().unwrap() {
                assert!(inner.unsubscribe(id));
            }
        });
        *id_slot.lock().unwrap() = Some(id);
        bus.emit(Ev::B);
        bus.emit(Ev::B);
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        assert!(!bus.is_active());
    }

    /// Regression (issue 9 §3): a panicking listener unwound through the layer that emitted,
    /// skipping its bookkeeping (a leaked bulkhead slot, a lost half-open probe). The bus now
    /// catches the panic; the emitter and the later listeners go on.
    #[test]
    fn a_panicking_listener_never_unwinds_into_the_emitter() {
        let bus = EventBus::new();
        let after = StdArc::new(AtomicU64::new(0));
        let a = after.clone();
        bus.subscribe(|e: &Ev| {
            if *e == Ev::B {
                panic!("listener bug");
            }
        });
        bus.subscribe(move |_: &Ev| {
            // Relaxed: a test counter.
            a.fetch_add(1, Ordering::Relaxed);
        });
        let emitted = std::panic::catch_unwind(AssertUnwindSafe(|| {
            bus.emit(Ev::B);
            bus.emit(Ev::A(1));
            bus.emit(Ev::B);
        }));
        assert!(emitted.is_ok(), "the panic reached the emitter");
        assert_eq!(
            after.load(Ordering::Relaxed),
            3,
            "later listeners still ran"
        );
        assert_eq!(bus.listener_panics(), 2);
        assert_eq!(
            bus.listener_count(),
            2,
            "the panicking listener stays subscribed"
        );
    }

    #[test]
    fn emitting_to_several_listeners_allocates_nothing_and_takes_no_lock() {
        // Three listeners, as with `metrics` + `tracing` + one of the user's. Warm up first:
        // arc-swap gives each thread its slot on first use.
        let bus = EventBus::new();
        let count = StdArc::new(AtomicU64::new(0));
        for _ in 0..3 {
            let c = count.clone();
            bus.subscribe(move |_: &Ev| {
                // Relaxed: a test counter.
                c.fetch_add(1, Ordering::Relaxed);
            });
        }
        bus.emit(Ev::B);
        let info = allocation_counter::measure(|| {
            for i in 0..1000 {
                bus.emit_with(|| Ev::A(i));
                bus.emit(Ev::B);
            }
        });
        assert_eq!(info.count_total, 0, "an emit with listeners allocated");
        assert_eq!(count.load(Ordering::Relaxed), 3 + 3 * 2000);
        // A writer holding the (cold) writer lock does not block an emit: the emit never
        // takes it.
        let _writer = bus.writer.lock();
        bus.emit(Ev::B);
        assert_eq!(count.load(Ordering::Relaxed), 3 + 3 * 2001);
    }

    #[test]
    fn a_listener_that_emits_into_another_bus_from_its_callback_allocates_nothing() {
        // Nested loads (one per bus) each hold an arc-swap guard at once.
        let inner: StdArc<EventBus<Ev>> = StdArc::new(EventBus::new());
        let count = StdArc::new(AtomicU64::new(0));
        let c = count.clone();
        inner.subscribe(move |_: &Ev| {
            // Relaxed: a test counter.
            c.fetch_add(1, Ordering::Relaxed);
        });
        let outer = EventBus::new();
        outer.subscribe(move |e: &Ev| inner.emit(e.clone()));
        outer.emit(Ev::B);
        let info = allocation_counter::measure(|| {
            for _ in 0..100 {
                outer.emit(Ev::B);
            }
        });
        assert_eq!(info.count_total, 0);
        assert_eq!(count.load(Ordering::Relaxed), 101);
    }

    #[test]
    fn a_caught_listener_panic_allocates_only_the_panic_itself() {
        // The guard around each listener costs nothing without a panic (the tests above);
        // with one, what is allocated is the panic's own payload, not bookkeeping of ours.
        let bus = EventBus::new();
        bus.subscribe(|_: &Ev| std::panic::panic_any(7_u8));
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        bus.emit(Ev::B);
        let info = allocation_counter::measure(|| bus.emit(Ev::B));
        std::panic::set_hook(previous);
        assert_eq!(bus.listener_panics(), 2);
        assert!(info.count_total <= 2, "{} allocations", info.count_total);
    }

    #[test]
    fn concurrent_subscribe_unsubscribe_and_emit_lose_no_steady_listener() {
        // A steady listener subscribed before the threads start must see every event, while
        // other threads subscribe and unsubscribe churn listeners around it.
        let bus = StdArc::new(EventBus::new());
        let steady = StdArc::new(AtomicU64::new(0));
        let s = steady.clone();
        bus.subscribe(move |_: &Ev| {
            // Relaxed: a test counter read after join.
            s.fetch_add(1, Ordering::Relaxed);
        });
        const EMITS: u64 = 20_000;
        let emitters: Vec<_> = (0..2)
            .map(|_| {
                let bus = bus.clone();
                std::thread::spawn(move || {
                    for i in 0..EMITS {
                        bus.emit(Ev::A(i as u32));
                    }
                })
            })
            .collect();
        let churners: Vec<_> = (0..2)
            .map(|_| {
                let bus = bus.clone();
                std::thread::spawn(move || {
                    for _ in 0..2_000 {
                        let id = bus.subscribe(|_: &Ev| {});
                        assert!(bus.unsubscribe(id));
                    }
                })
            })
            .collect();
        for t in emitters.into_iter().chain(churners) {
            t.join().expect("no panic");
        }
        assert_eq!(steady.load(Ordering::Relaxed), 2 * EMITS);
        assert_eq!(bus.listener_count(), 1);
        assert!(bus.is_active());
    }

    #[test]
    fn per_call_and_rare_events_reach_a_user_listener_alike() {
        let bus = EventBus::new();
        assert!(!bus.wants_call_events());
        let count = StdArc::new(AtomicU64::new(0));
        let c = count.clone();
        bus.subscribe(move |_: &Ev| {
            // Relaxed: a test counter.
            c.fetch_add(1, Ordering::Relaxed);
        });
        assert!(bus.wants_call_events());
        bus.emit_call_with(|| Ev::B);
        bus.emit_with(|| Ev::B);
        assert_eq!(count.load(Ordering::Relaxed), 2);
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
    use crate::test_util::TestRecorder;
    use metrics::Unit;
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
        assert_eq!(listener.eager.name, "orders");
        let bus = EventBus::new();
        bus.subscribe(listener);
        bus.emit(Tick(0));
        let info = allocation_counter::measure(|| {
            for i in 0..100 {
                bus.emit(Tick(i));
            }
        });
        assert_eq!(info.count_total, 0);
        assert_eq!(RECORDED.load(Ordering::Relaxed), (0..100).sum::<u64>());
        assert_eq!(
            REGISTERED.load(Ordering::Relaxed),
            1,
            "no recorder: registered once"
        );
    }

    /// An event of a layer with a call counter and a gauge set at registration.
    struct Call;

    struct CallHandles {
        calls: metrics::Counter,
        limit: metrics::Gauge,
    }

    impl RecordMetrics for Call {
        type Handles = CallHandles;

        fn register(name: &str) -> CallHandles {
            describe(
                MetricKind::Counter,
                "palisade_test_calls_total",
                "Calls by outcome.",
            );
            describe(
                MetricKind::Histogram,
                "palisade_test_call_duration_seconds",
                "Call latency.",
            );
            CallHandles {
                calls: metrics::counter!("palisade_test_calls_total", "name" => name.to_owned()),
                limit: metrics::gauge!("palisade_test_limit", "name" => name.to_owned()),
            }
        }

        fn record_metrics(&self, handles: &CallHandles) {
            handles.calls.increment(1);
        }
    }

    /// A bus with the built-in metrics listener, as a layer's `metrics` feature installs it.
    fn bus_with_listener() -> EventBus<Call> {
        let bus = EventBus::new();
        bus.install_metrics(MetricsListener::<Call>::with_on_register("orders", |h| {
            h.limit.set(64.0);
        }));
        bus
    }

    /// Issue 14: with the features compiled in but no recorder, a bus whose only listener is
    /// the built-in metrics one builds no event, allocates nothing, and counts no listener.
    #[test]
    fn the_built_in_metrics_listener_without_a_recorder_builds_no_event() {
        let bus = bus_with_listener();
        assert_eq!(
            bus.listener_count(),
            0,
            "built-in listeners are not user listeners"
        );
        assert!(bus.is_active());
        assert!(!bus.wants_call_events());
        let mut built = 0;
        let info = allocation_counter::measure(|| {
            for _ in 0..100 {
                bus.emit_call_with(|| {
                    built += 1;
                    Call
                });
                bus.emit_with(|| {
                    built += 1;
                    Call
                });
            }
        });
        assert_eq!(built, 0);
        assert_eq!(info.count_total, 0);
        // With a recorder, the same bus wants them (and registers at the first one).
        let recorder = TestRecorder::default();
        metrics::with_local_recorder(&recorder, || {
            assert!(bus.wants_call_events());
            bus.emit_call_with(|| Call);
        });
        assert_eq!(
            recorder.counter("palisade_test_calls_total{name=orders}"),
            1
        );
        assert!(bus.wants_call_events(), "live from then on");
    }

    /// Issue 14: an unmetered per-call event skips the metrics listener, live or not: built
    /// only for a user listener, which gets it.
    #[test]
    fn an_unmetered_call_event_reaches_user_listeners_but_not_the_metrics_listener() {
        let recorder = TestRecorder::default();
        metrics::with_local_recorder(&recorder, || {
            let bus = bus_with_listener();
            bus.emit_call_with(|| Call); // goes live, records once
            let mut built = 0;
            bus.emit_call_unmetered_with(|| {
                built += 1;
                Call
            });
            assert_eq!(built, 0, "only a recorder consumes it: not built");
            let seen = StdArc::new(AtomicU64::new(0));
            let sink = StdArc::clone(&seen);
            bus.subscribe(move |_: &Call| {
                // Relaxed: a test counter, read on this thread.
                sink.fetch_add(1, Ordering::Relaxed);
            });
            bus.emit_call_unmetered_with(|| {
                built += 1;
                Call
            });
            assert_eq!(built, 1);
            // Relaxed: as above.
            assert_eq!(seen.load(Ordering::Relaxed), 1, "the user listener got it");
        });
        assert_eq!(
            recorder.counter("palisade_test_calls_total{name=orders}"),
            1,
            "the metrics listener recorded only the metered event"
        );
    }

    /// Issue 14: a recorder detected once stays detected for the bus (the check stops), and
    /// a second metrics listener is ignored rather than recording twice.
    #[test]
    fn a_bus_installs_one_metrics_listener_and_records_through_it_once() {
        let recorder = TestRecorder::default();
        metrics::with_local_recorder(&recorder, || {
            let bus = bus_with_listener();
            bus.install_metrics(MetricsListener::<Call>::new("orders"));
            bus.emit_call_with(|| Call);
            bus.emit(Call);
        });
        assert_eq!(
            recorder.counter("palisade_test_calls_total{name=orders}"),
            2
        );
    }

    #[test]
    fn without_a_recorder_nothing_is_detected() {
        assert!(!recorder_installed());
        let recorder = TestRecorder::default();
        assert!(metrics::with_local_recorder(&recorder, recorder_installed));
    }

    /// Regression (issue 9 §6): a handle built before the recorder was installed registered
    /// no-op handles and never exported. It now registers at the first event after.
    #[test]
    fn a_listener_made_before_the_recorder_exports_once_one_is_installed() {
        let bus = bus_with_listener(); // no recorder yet
        bus.emit(Call); // nowhere to go
        let recorder = TestRecorder::default();
        metrics::with_local_recorder(&recorder, || {
            for _ in 0..3 {
                bus.emit(Call);
            }
        });
        assert_eq!(
            recorder.counter("palisade_test_calls_total{name=orders}"),
            3
        );
        assert_eq!(
            recorder.get("palisade_test_limit{name=orders}"),
            Some(64.0),
            "the gauge is set at the late registration"
        );
        assert_eq!(
            recorder.registrations(),
            2,
            "registered once (a counter and a gauge), not per event"
        );
        // Once registered, an event allocates nothing and looks nothing up.
        let info = allocation_counter::measure(|| {
            metrics::with_local_recorder(&recorder, || {
                for _ in 0..100 {
                    bus.emit(Call);
                }
            });
        });
        assert_eq!(info.count_total, 0);
        assert_eq!(
            recorder.counter("palisade_test_calls_total{name=orders}"),
            103
        );
        assert_eq!(recorder.registrations(), 2);
    }

    #[test]
    fn outcome_counters_and_histograms_follow_the_label_scheme() {
        use crate::Outcome;
        let recorder = TestRecorder::default();
        metrics::with_local_recorder(&recorder, || {
            let calls = OutcomeCounters::register("palisade_test_calls_total", "orders");
            let durations =
                OutcomeHistograms::register("palisade_test_call_duration_seconds", "orders");
            calls.finished(Outcome::Success);
            calls.finished(Outcome::Success);
            calls.finished(Outcome::Failure);
            calls.finished(Outcome::Ignore);
            calls.rejected();
            durations.record(Outcome::Failure, std::time::Duration::from_millis(3));
        });
        let series =
            |outcome: &str| format!("palisade_test_calls_total{{name=orders,outcome={outcome}}}");
        assert_eq!(recorder.counter(&series("success")), 2);
        assert_eq!(recorder.counter(&series("failure")), 1);
        assert_eq!(recorder.counter(&series("ignore")), 1);
        assert_eq!(recorder.counter(&series("rejected")), 1);
        assert_eq!(
            recorder.get("palisade_test_call_duration_seconds{name=orders,outcome=failure}"),
            Some(1.0)
        );
        assert!(
            recorder
                .is_registered("palisade_test_call_duration_seconds{name=orders,outcome=ignore}")
        );
        assert_eq!(
            recorder.registrations(),
            7,
            "4 counters and 3 histograms, once"
        );
    }

    #[test]
    fn a_listener_made_with_a_recorder_registers_at_once_and_sets_its_gauges() {
        let recorder = TestRecorder::default();
        metrics::with_local_recorder(&recorder, || {
            let bus = bus_with_listener();
            assert_eq!(
                recorder.get("palisade_test_limit{name=orders}"),
                Some(64.0),
                "set at build"
            );
            bus.emit(Call);
            let info = allocation_counter::measure(|| {
                for _ in 0..100 {
                    bus.emit(Call);
                }
            });
            assert_eq!(info.count_total, 0);
        });
        assert_eq!(
            recorder.counter("palisade_test_calls_total{name=orders}"),
            101
        );
        assert_eq!(recorder.registrations(), 2);
    }

    #[test]
    fn help_text_is_given_once_per_recorder_and_name() {
        // Leaked, so that no recorder of another test can ever have the same address (which
        // is how `describe` tells recorders apart).
        let recorder: &'static TestRecorder = Box::leak(Box::default());
        metrics::with_local_recorder(recorder, || {
            for name in ["a", "b", "c"] {
                let _listener = MetricsListener::<Call>::new(name);
            }
        });
        let descriptions: Vec<_> = recorder
            .descriptions()
            .into_iter()
            .map(|d| (d.name, d.unit, d.help))
            .collect();
        assert_eq!(
            descriptions,
            vec![
                (
                    "palisade_test_calls_total".to_owned(),
                    None,
                    "Calls by outcome.".to_owned()
                ),
                (
                    "palisade_test_call_duration_seconds".to_owned(),
                    Some(Unit::Seconds),
                    "Call latency.".to_owned()
                ),
            ]
        );
        // A second recorder gets its own descriptions.
        let other: &'static TestRecorder = Box::leak(Box::default());
        metrics::with_local_recorder(other, || {
            let _listener = MetricsListener::<Call>::new("a");
        });
        assert_eq!(other.descriptions().len(), 2);
    }
}

#[cfg(all(test, feature = "tracing", not(loom)))]
mod tracing_tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use tracing::level_filters::LevelFilter;
    use tracing::span::{Attributes, Id, Record};
    use tracing::subscriber::Interest;
    use tracing::{Level, Metadata};

    /// A subscriber that takes events up to `max` and counts them.
    struct Counting {
        max: Level,
        events: AtomicU64,
    }

    impl tracing::Subscriber for Counting {
        fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
            // Ask each time: other tests' subscribers run at other levels.
            Interest::sometimes()
        }
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            *metadata.level() <= self.max
        }
        fn max_level_hint(&self) -> Option<LevelFilter> {
            Some(LevelFilter::from_level(self.max))
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &tracing::Event<'_>) {
            // Relaxed: a test counter.
            self.events.fetch_add(1, Ordering::Relaxed);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    #[derive(Debug)]
    enum Ev {
        Call,
        Opened,
    }

    impl TraceEvent for Ev {
        fn trace(&self, layer: &'static str, name: &str) {
            match self {
                Ev::Call => tracing::trace!(target: "palisade", layer, name, "call"),
                Ev::Opened => tracing::info!(target: "palisade", layer, name, "opened"),
            }
        }
    }

    fn bus() -> EventBus<Ev> {
        let bus = EventBus::new();
        bus.install_tracing(TracingListener::new("test", "orders"));
        bus
    }

    /// Issue 14: a per-call event is built for the tracing listener only while `TRACE` is
    /// enabled for `palisade`; a rare event always reaches it.
    #[test]
    fn per_call_events_are_traced_only_while_trace_is_enabled() {
        let bus = bus();
        assert_eq!(bus.listener_count(), 0);
        let built = AtomicU64::new(0);
        let make = |event: Ev| {
            || {
                // Relaxed: a test counter.
                built.fetch_add(1, Ordering::Relaxed);
                event
            }
        };
        // No subscriber: the per-call event is not built.
        bus.emit_call_with(make(Ev::Call));
        assert!(!bus.wants_call_events());
        assert_eq!(built.load(Ordering::Relaxed), 0);

        let info = StdArc::new(Counting {
            max: Level::INFO,
            events: AtomicU64::new(0),
        });
        tracing::subscriber::with_default(info.clone(), || {
            bus.emit_call_with(make(Ev::Call));
            bus.emit_with(make(Ev::Opened));
        });
        assert_eq!(
            built.load(Ordering::Relaxed),
            1,
            "only the rare event was built"
        );
        assert_eq!(info.events.load(Ordering::Relaxed), 1);

        let trace = StdArc::new(Counting {
            max: Level::TRACE,
            events: AtomicU64::new(0),
        });
        tracing::subscriber::with_default(trace.clone(), || {
            assert!(bus.wants_call_events());
            bus.emit_call_with(make(Ev::Call));
            bus.emit_with(make(Ev::Opened));
        });
        assert_eq!(built.load(Ordering::Relaxed), 3);
        assert_eq!(trace.events.load(Ordering::Relaxed), 2);
    }
}
