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
            .emit_with(|| BulkheadEvent::CallRejected { reason });
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

/// A slot of the bulkhead, held by a service between `poll_ready` and `call`, then by the
/// response future. Dropping it gives the slot back, whatever happened to the call.
pub(crate) struct Permit {
    shared: SharedRef,
    /// Calls in flight at admission, this one included (adaptive samples).
    in_flight: u32,
    /// Admission time; only read by adaptive bulkheads.
    start: Instant,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl Permit {
    /// Wraps a slot already taken from `shared.limiter`.
    #[inline]
    pub(crate) fn new(shared: &SharedRef, in_flight: u32, waited: Duration) -> Permit {
        let start = match shared.adaptive {
            Some(_) => shared.clock.now(),
            None => Instant::ZERO,
        };
        shared.events.emit_with(|| BulkheadEvent::CallPermitted {
            in_flight: in_flight as usize,
            waited,
        });
        Permit {
            shared: shared.clone(),
            in_flight,
            start,
        }
    }

    /// Whether completions of this bulkhead are measured (adaptive limit).
    #[inline]
    pub(crate) fn is_adaptive(&self) -> bool {
        self.shared.adaptive.is_some()
    }

    /// The call finished with `outcome`-to-be: measures the RTT and feeds the adaptive
    /// algorithm. `classify` gets the RTT and says whether it was a drop.
    #[inline]
    pub(crate) fn complete(&self, classify: impl FnOnce(Duration) -> Outcome) {
        let Some(adaptive) = &self.shared.adaptive else {
            return;
        };
        let now = self.shared.clock.now();
        let rtt = now.saturating_duration_since(self.start);
        let dropped = classify(rtt).is_failure();
        if let Some(sample) = adaptive.window.record(now, rtt, self.in_flight, dropped) {
            let limit = adaptive.algorithm.lock().update(&sample);
            self.shared.set_limit(limit.max(1));
            adaptive.window.reopen(now, &sample);
        }
    }
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        self.shared.limiter.release();
        let limiter = &self.shared.limiter;
        self.shared
            .events
            .emit_with(|| BulkheadEvent::CallFinished {
                in_flight: limiter.in_flight(),
            });
    }
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
        palisade_core::subscribe_feature_listeners!(events, "bulkhead", name);
        #[cfg(feature = "metrics")]
        events.emit(BulkheadEvent::LimitChanged { from: 0, to: limit });
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

    /// Subscribes `listener` to this bulkhead's events.
    pub fn subscribe(&self, listener: impl Listener<BulkheadEvent>) -> ListenerId {
        self.shared.events.subscribe(listener)
    }

    /// Removes a listener. Returns `false` if it was not subscribed.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        self.shared.events.unsubscribe(id)
    }
}
