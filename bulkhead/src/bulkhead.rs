//! The [`Bulkhead`] handle and the state every service built from it shares.

use crate::adaptive::window::Window;
use crate::adaptive::{AdaptiveConfig, LimitAlgorithm};
use crate::config::BulkheadBuilder;
use crate::events::{BulkheadEvent, RejectReason};
use crate::layer::BulkheadLayer;
use crate::limiter::Limiter;
use palisade_core::classify::{ErrorIsFailure, Outcome};
use palisade_core::clock::{Clock, Instant};
use palisade_core::events::{EventBus, Listener, ListenerId};
use palisade_core::sync::Arc;
use palisade_core::sync::Mutex;
use palisade_core::sync::atomic::{AtomicU64, Ordering};
use std::fmt;
use std::sync::Arc as StdArc;
use std::time::Duration;

/// What a full bulkhead does with the next caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FullMode {
    /// Reject at once with `BulkheadFull`.
    Reject,
    /// Queue, FIFO, for at most `max_wait` (`None`: no deadline), at most `max_waiters` callers.
    Wait {
        max_wait: Option<Duration>,
        max_waiters: usize,
    },
}

/// The adaptive part: the sample window and the algorithm.
pub(crate) struct Adaptive {
    window: Window,
    algorithm: Mutex<Box<dyn LimitAlgorithm>>,
}

/// The state every service and handle of one bulkhead shares.
pub(crate) struct Shared {
    pub(crate) limiter: Limiter,
    pub(crate) mode: FullMode,
    pub(crate) adaptive: Option<Adaptive>,
    pub(crate) clock: Clock,
    pub(crate) events: EventBus<BulkheadEvent>,
    rejected: AtomicU64,
    name: StdArc<str>,
}

impl Shared {
    /// Counts and reports a rejection.
    #[cold]
    pub(crate) fn rejected(&self, reason: RejectReason) {
        // Relaxed: a statistic.
        self.rejected.fetch_add(1, Ordering::Relaxed);
        self.events
            .emit_call_with(|| BulkheadEvent::CallRejected { reason });
    }

    /// Gives back a slot a ready service reserved and did not use, and reports it.
    #[cold]
    pub(crate) fn reservation_released(&self) {
        // The slot first: nothing a listener does below can keep it.
        self.limiter.release();
        let limiter = &self.limiter;
        self.events
            .emit_call_with(|| BulkheadEvent::ReservationReleased {
                in_flight: limiter.in_flight(),
            });
    }

    /// Reports `CallPermitted`, built only if anyone consumes it.
    #[inline]
    fn call_permitted(&self, waited: Duration) {
        let limiter = &self.limiter;
        let permitted = || BulkheadEvent::CallPermitted {
            in_flight: limiter.in_flight(),
            waited,
        };
        // Its metrics are the wait only (`in_flight` is written at `CallFinished`), and a
        // bulkhead that rejects when full never waits: nothing to record there.
        if matches!(self.mode, FullMode::Wait { .. }) {
            self.events.emit_call_with(permitted);
        } else {
            self.events.emit_call_unmetered_with(permitted);
        }
    }

    /// A started call ends: gives its slot back, then reports `CallFinished`.
    #[inline]
    fn finish(&self, outcome: Outcome, rtt: Option<Duration>) {
        // The slot first: nothing a listener does below can keep it.
        self.limiter.release();
        let limiter = &self.limiter;
        self.events.emit_call_with(|| BulkheadEvent::CallFinished {
            in_flight: limiter.in_flight(),
            outcome,
            rtt,
        });
    }

    fn set_limit(&self, limit: usize) -> usize {
        let from = self.limiter.set_limit(limit);
        let to = self.limiter.limit();
        if from != to {
            self.events
                .emit_with(|| BulkheadEvent::LimitChanged { from, to });
        }
        from
    }
}

/// How services and permits reach the shared state: counted, or leaked for the life of the
/// process ([`BulkheadBuilder::build_static`]), which saves two reference-count RMWs per call.
#[derive(Clone)]
pub(crate) enum SharedRef {
    Counted(Arc<Shared>),
    Static(&'static Shared),
}

impl std::ops::Deref for SharedRef {
    type Target = Shared;

    #[inline]
    fn deref(&self) -> &Shared {
        match self {
            SharedRef::Counted(shared) => shared,
            SharedRef::Static(shared) => shared,
        }
    }
}

/// A call's slot from the start of `call` until the inner service's `call` has returned,
/// when it becomes the [`Permit`] the response future holds. Dropped before that, it gives
/// the slot back: a listener of `CallPermitted` panicked (the call never started: reported
/// as `ReservationReleased`), or the inner `call` panicked (a failure of the dependency).
///
/// It borrows the shared state and stays where `call` put it; the permit is built at the
/// end, in one piece, straight into the response future. A permit built first and then
/// written field by field around the listeners and the inner call was read back in wider
/// words when it moved into the future: a store-forwarding stall that perf put at a third
/// of the success path.
pub(crate) struct Starting<'a> {
    shared: &'a SharedRef,
    /// Calls in flight at admission, this one included (adaptive samples).
    in_flight: u32,
    /// Admission time; only read by adaptive bulkheads.
    start: Instant,
    /// `CallPermitted` was reported: from here on, a drop is a panic of the inner `call`.
    started: bool,
}

impl<'a> Starting<'a> {
    /// Holds a slot already taken from `shared.limiter`. Emits nothing yet.
    #[inline]
    pub(crate) fn new(shared: &'a SharedRef, in_flight: u32) -> Starting<'a> {
        Starting {
            shared,
            in_flight,
            start: Instant::ZERO,
            started: false,
        }
    }

    /// The call starts after the caller queued `waited` for its slot: starts the RTT clock
    /// of an adaptive bulkhead and reports `CallPermitted`. `started` is only set once the
    /// listeners returned. Always inlined: a call kept out of line cost more in its register
    /// saves than the two flag checks it makes on the default path.
    #[inline(always)]
    pub(crate) fn start(&mut self, waited: Duration) {
        if self.shared.adaptive.is_some() {
            self.start = self.shared.clock.now();
        }
        self.shared.call_permitted(waited);
        self.started = true;
    }

    /// The inner `call` returned: the slot moves into the permit of the response future.
    #[inline]
    pub(crate) fn into_permit(self) -> Permit {
        debug_assert!(self.started, "into_permit before start");
        // Not dropped: the slot passes to the permit. It holds a reference and plain values,
        // so nothing leaks.
        let this = std::mem::ManuallyDrop::new(self);
        Permit {
            shared: this.shared.clone(),
            in_flight: this.in_flight,
            start: this.start,
            in_inner: false,
            outcome: None,
            rtt: None,
        }
    }
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        if self.started {
            // Unwinding out of the inner service's `call`.
            self.shared.finish(Outcome::Failure, None);
        } else {
            // A listener of `CallPermitted` panicked: the call never started.
            self.shared.reservation_released();
        }
    }
}

/// The slot of a call, held by the response future (a service holds its reservation in
/// its own state until `call`, and [`Starting`] during it). Dropping it gives the slot
/// back, whatever happened to the call.
///
/// The slot is released before `CallFinished` is emitted, so a panicking listener can
/// never leak a slot.
pub(crate) struct Permit {
    shared: SharedRef,
    /// Calls in flight at admission, this one included (adaptive samples).
    in_flight: u32,
    /// Admission time; only read by adaptive bulkheads.
    start: Instant,
    /// Set while the inner future is polled on this thread: a permit dropped with it set is
    /// dropped by a panic of the inner service (a failure of the dependency), one dropped
    /// without it was cancelled (ignored).
    in_inner: bool,
    /// The classified result, once the call completed and anyone needed it.
    outcome: Option<Outcome>,
    /// The measured round-trip time (adaptive bulkheads only).
    rtt: Option<Duration>,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl Permit {
    /// Marks the inner service as running (`true`) or returned (`false`) on this thread.
    #[inline]
    pub(crate) fn set_in_inner(&mut self, running: bool) {
        self.in_inner = running;
    }

    /// Whether the completed call needs classifying: an adaptive limit learns from it, or
    /// something consumes its `CallFinished` event (a listener, a metrics recorder, a `TRACE`
    /// subscriber; not the features' listeners alone).
    #[inline]
    pub(crate) fn wants_outcome(&self) -> bool {
        self.shared.adaptive.is_some() || self.shared.events.wants_call_events()
    }

    /// The call finished: measures the RTT (adaptive bulkheads), classifies the result with
    /// `classify` (given the RTT when measured), and feeds the adaptive algorithm.
    ///
    /// An [`Outcome::Ignore`] is not a sample: a local rejection from a layer below (an open
    /// breaker, a rate limit, another bulkhead), which the default classifier ignores, came
    /// back at once without the dependency seeing the call, so its RTT says nothing about the
    /// dependency's latency, and it is no drop either.
    #[inline]
    pub(crate) fn complete(&mut self, classify: impl FnOnce(Option<Duration>) -> Outcome) {
        let Some(adaptive) = &self.shared.adaptive else {
            self.outcome = Some(classify(None));
            return;
        };
        let now = self.shared.clock.now();
        let rtt = now.saturating_duration_since(self.start);
        let outcome = classify(Some(rtt));
        self.outcome = Some(outcome);
        self.rtt = Some(rtt);
        if outcome == Outcome::Ignore {
            return;
        }
        if let Some(sample) = adaptive
            .window
            .record(now, rtt, self.in_flight, outcome.is_failure())
        {
            // The window is reopened whatever the algorithm (user code) or a `LimitChanged`
            // listener does: a panic in either must not leave it closing for good.
            let limit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                adaptive.algorithm.lock().update(&sample)
            }));
            adaptive.window.reopen(now, &sample);
            match limit {
                Ok(limit) => {
                    self.shared.set_limit(limit.max(1));
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    }
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        let outcome = match self.outcome {
            Some(outcome) => outcome,
            // Unwinding out of the inner future: the dependency's failure.
            None if self.in_inner => Outcome::Failure,
            // Dropped before completion, or completed with nobody asking: not counted.
            None => Outcome::Ignore,
        };
        self.shared.finish(outcome, self.rtt);
    }
}

/// The state of a [`Bulkhead`] at one moment: [`Bulkhead::snapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkheadSnapshot {
    /// The current limit.
    pub limit: usize,
    /// Slots held now (calls in flight, and slots reserved by ready services).
    pub in_flight: usize,
    /// Free slots (zero while over a lowered limit).
    pub available: usize,
    /// Callers queued for a slot.
    pub waiting: usize,
    /// Calls rejected so far, all reasons.
    pub rejected_calls: u64,
    /// Whether an adaptive algorithm moves the limit.
    pub adaptive: bool,
}

/// A concurrency limit shared by every service built from it: at most `limit` calls in flight
/// to the protected dependency, so one slow dependency cannot take all of a service's capacity
/// (Hystrix's semaphore isolation, resilience4j's `Bulkhead`).
///
/// `Bulkhead` is a handle: cloning it is cheap and every clone, and every service made by
/// [`layer`](Bulkhead::layer), shares one limit. Through the handle you read the state
/// ([`in_flight`](Bulkhead::in_flight), [`limit`](Bulkhead::limit)), change the limit at run time
/// ([`set_limit`](Bulkhead::set_limit)) and subscribe to [`BulkheadEvent`]s.
///
/// ```
/// use palisade_bulkhead::Bulkhead;
///
/// let bulkhead = Bulkhead::builder().max_concurrent_calls(10).build().unwrap();
/// assert_eq!((bulkhead.limit(), bulkhead.in_flight(), bulkhead.available()), (10, 0, 10));
/// bulkhead.set_limit(4);
/// assert_eq!(bulkhead.limit(), 4);
/// ```
///
/// # Memory ordering
///
/// Taking a slot is an `Acquire` operation and giving it back a `Release` one, on the same
/// atomic word, so whatever a call did while it held a slot happens-before the next caller
/// that gets that slot — a semaphore's guarantee. The read-only accessors
/// ([`in_flight`](Bulkhead::in_flight), [`limit`](Bulkhead::limit),
/// [`waiting`](Bulkhead::waiting)) are `Relaxed` snapshots: exact at some moment, stale a moment
/// later.
#[derive(Clone)]
pub struct Bulkhead {
    shared: SharedRef,
}

impl fmt::Debug for Bulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("name", &self.name())
            .field("limit", &self.limit())
            .field("in_flight", &self.in_flight())
            .field("waiting", &self.waiting())
            .field("adaptive", &self.is_adaptive())
            .finish()
    }
}

impl Bulkhead {
    /// A builder with the defaults listed on [`BulkheadBuilder`].
    #[must_use]
    pub fn builder() -> BulkheadBuilder {
        BulkheadBuilder::default()
    }

    pub(crate) fn from_parts(
        limit: usize,
        mode: FullMode,
        adaptive: Option<(Box<dyn LimitAlgorithm>, AdaptiveConfig)>,
        clock: Clock,
        name: String,
        leak: bool,
    ) -> Bulkhead {
        let adaptive = adaptive.map(|(algorithm, config)| Adaptive {
            window: Window::new(config, clock.now()),
            algorithm: Mutex::new(algorithm),
        });
        let name: StdArc<str> = StdArc::from(name);
        let events = EventBus::new();
        if adaptive.is_some() {
            // Only an adaptive bulkhead times its calls: only it gets the duration histogram.
            #[cfg(feature = "metrics")]
            let histogram_name = StdArc::clone(&name);
            palisade_core::subscribe_feature_listeners!(
                events,
                "bulkhead",
                name,
                move |m: &crate::events::BulkheadMetrics| {
                    m.register_call_durations(&histogram_name);
                }
            );
        } else {
            palisade_core::subscribe_feature_listeners!(events, "bulkhead", name);
        }
        // The feature listeners set the limit gauge from this (nobody else listens yet).
        events.emit(BulkheadEvent::LimitChanged {
            from: 0,
            to: limit.min(crate::MAX_LIMIT),
        });
        let shared = Shared {
            limiter: Limiter::new(limit),
            mode,
            adaptive,
            clock,
            events,
            rejected: AtomicU64::new(0),
            name,
        };
        Bulkhead {
            shared: if leak {
                SharedRef::Static(Box::leak(Box::new(shared)))
            } else {
                SharedRef::Counted(Arc::new(shared))
            },
        }
    }

    /// A layer that wraps services in this bulkhead, classifying results with
    /// [`ErrorIsFailure`] (used only by adaptive limits; see [`BulkheadLayer::classify`]).
    #[must_use]
    pub fn layer(&self) -> BulkheadLayer<ErrorIsFailure> {
        BulkheadLayer::new(self.shared.clone(), ErrorIsFailure)
    }

    /// Calls holding a slot now.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.shared.limiter.in_flight()
    }

    /// The current limit.
    #[must_use]
    pub fn limit(&self) -> usize {
        self.shared.limiter.limit()
    }

    /// Free slots now (zero while over a lowered limit).
    #[must_use]
    pub fn available(&self) -> usize {
        self.limit().saturating_sub(self.in_flight())
    }

    /// Callers waiting for a slot now.
    #[must_use]
    pub fn waiting(&self) -> usize {
        self.shared.limiter.waiting()
    }

    /// Calls rejected so far (all reasons).
    #[must_use]
    pub fn rejected_calls(&self) -> u64 {
        // Relaxed: a statistic.
        self.shared.rejected.load(Ordering::Relaxed)
    }

    /// Whether an adaptive algorithm moves the limit.
    #[must_use]
    pub fn is_adaptive(&self) -> bool {
        self.shared.adaptive.is_some()
    }

    /// The name given to the builder.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Sets the limit for new calls, at once, and returns the old one. Calls in flight are
    /// neither lost nor counted twice: after a decrease, new calls are refused until enough of
    /// them finished; after an increase, waiting callers are served at once. Zero stops all
    /// new calls; values above 2³¹ − 1 are clamped.
    ///
    /// On an adaptive bulkhead the algorithm sets the limit again when its next window closes.
    pub fn set_limit(&self, limit: usize) -> usize {
        self.shared.set_limit(limit)
    }

    /// Everything the handle can tell, read at once (each field a `Relaxed` snapshot, so the
    /// fields may come from slightly different moments under load).
    #[must_use]
    pub fn snapshot(&self) -> BulkheadSnapshot {
        let (limit, in_flight) = (self.limit(), self.in_flight());
        BulkheadSnapshot {
            limit,
            in_flight,
            available: limit.saturating_sub(in_flight),
            waiting: self.waiting(),
            rejected_calls: self.rejected_calls(),
            adaptive: self.is_adaptive(),
        }
    }

    /// Subscribes `listener` to this bulkhead's events. A listener runs on the caller's
    /// thread, on the request path: keep it short. See [`BulkheadEvent`].
    pub fn subscribe(&self, listener: impl Listener<BulkheadEvent>) -> ListenerId {
        self.shared.events.subscribe(listener)
    }

    /// Removes a listener. Returns `false` if it was not subscribed.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        self.shared.events.unsubscribe(id)
    }
}
