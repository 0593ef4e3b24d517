//! [`CircuitBreaker`]: the handle users keep. It reads the state and statistics, subscribes
//! listeners, makes manual transitions and builds layers; the state machine itself lives in
//! [`crate::shared`].

use crate::config::{CircuitBreakerBuilder, Settings};
use crate::error::CircuitOpen;
use crate::events::CircuitBreakerEvent;
use crate::layer::CircuitBreakerLayer;
use crate::permit::{Core, OwnedPermit, Permit};
use crate::shared::Shared;
use crate::snapshot::Snapshot;
use crate::state::State;
use crate::window::Window;
use crossbeam_utils::CachePadded;
use palisade_core::classify::ErrorIsFailure;
use palisade_core::events::{Listener, ListenerId};
use palisade_core::sync::Arc;
use std::fmt;

/// One clone's reference to the shared state. Permits count references to this, not to
/// [`Shared`], so threads that each use their own clone never write a common cache line on
/// the hot path.
pub(crate) struct Local {
    pub(crate) shared: Arc<Shared>,
}

/// A circuit breaker: the handle to one breaker's shared state.
///
/// Clones share the breaker (its state, windows and listeners); every service built from it
/// or its clones with [`layer`](CircuitBreaker::layer) guards the same dependency. Each clone
/// of the *handle* (and each `layer()`) allocates a small reference of its own, so that threads
/// working through different clones never bounce a reference count between their caches.
/// Clones of a *service* share their service's reference and never allocate, since tower
/// clones services per call.
///
/// See the [crate docs](crate) for the state machine and an example.
///
/// # Memory ordering
///
/// The state word is read with `Acquire` and changed by `AcqRel` compare-and-swap, so a thread
/// that sees a state also sees what the transition to it published (the generation its windows
/// are tagged with). Every transition is a single CAS from a state of generation `g` to one of
/// `g + 1`, computed by a pure closure: of any number of threads racing to make the same
/// transition exactly one succeeds, and only it runs the side effects (the event, the re-open
/// count, waking gated callers) and publishes the period's time in the timing word (`AcqRel`;
/// read with `Acquire` after the state word, and a reader that finds it not yet published
/// treats the period as just begun). Window counters and statistics use the weakest ordering
/// that keeps each update atomic: a stale or late count is tolerated, because the decision it
/// feeds is itself a generation-checked CAS on the state word. Gate mode's waiters are a
/// mutex-guarded list behind a flag; a `SeqCst` fence on each side (after registering, after a
/// transition) makes sure a waiter either sees the transition or is woken by it.
pub struct CircuitBreaker {
    local: Arc<CachePadded<Local>>,
}

impl Clone for CircuitBreaker {
    fn clone(&self) -> Self {
        CircuitBreaker {
            local: Arc::new(CachePadded::new(Local {
                shared: self.local.shared.clone(),
            })),
        }
    }
}

impl CircuitBreaker {
    /// Another handle to the same breaker that also shares this handle's padded reference
    /// count: no allocation. Services use it for their clones, because tower clones services
    /// per call (`Retry`, `oneshot` on a clone, axum's per-request clone), and an allocation
    /// there would put one on the hot path of every stack above the breaker.
    pub(crate) fn share(&self) -> CircuitBreaker {
        CircuitBreaker {
            local: Arc::clone(&self.local),
        }
    }
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker::new()
    }
}

impl CircuitBreaker {
    /// A breaker with the default settings (see [`CircuitBreakerBuilder`]).
    ///
    /// # Panics
    ///
    /// Never: the default settings are valid.
    #[must_use]
    pub fn new() -> CircuitBreaker {
        CircuitBreaker::builder()
            .build()
            .expect("the default settings are valid")
    }

    /// A builder with the default settings.
    pub fn builder() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::default()
    }

    pub(crate) fn from_parts(settings: Settings, window: Window) -> CircuitBreaker {
        let shared = Arc::new(Shared::new(settings, window));
        #[cfg(not(loom))]
        {
            // The state gauge is set from the current state whenever the handles are
            // registered: at build with a recorder installed, or at the first event after one is.
            let weak = Arc::downgrade(&shared);
            #[cfg(not(feature = "metrics"))]
            let _ = &weak;
            palisade_core::subscribe_feature_listeners!(
                shared.events,
                "circuit_breaker",
                shared.settings.name,
                move |m: &crate::events::CircuitBreakerMetrics| {
                    if let Some(shared) = weak.upgrade() {
                        m.set_state(shared.load().state());
                        // Only a breaker that times its calls gets the series timing feeds.
                        if shared.times_calls() {
                            m.register_timed(&shared.settings.name);
                        }
                    }
                }
            );
        }
        #[cfg(loom)]
        palisade_core::subscribe_feature_listeners!(
            shared.events,
            "circuit_breaker",
            shared.settings.name
        );
        CircuitBreaker {
            local: Arc::new(CachePadded::new(Local { shared })),
        }
    }

    #[inline]
    pub(crate) fn shared(&self) -> &Shared {
        &self.local.shared
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.shared().settings
    }

    /// The instance name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.settings().name
    }

    /// A layer that wraps services in this breaker, counting errors as failures.
    #[must_use]
    pub fn layer(&self) -> CircuitBreakerLayer {
        CircuitBreakerLayer::new(self.clone(), ErrorIsFailure)
    }

    /// A layer that wraps services in this breaker and classifies results with `classifier`
    /// (any [`palisade_core::Classify`]).
    #[must_use]
    pub fn layer_with<C>(&self, classifier: C) -> CircuitBreakerLayer<C> {
        CircuitBreakerLayer::new(self.clone(), classifier)
    }

    /// The current state. An `Open` breaker whose wait is over still reads `Open` until a call
    /// moves it to `HalfOpen`.
    #[must_use]
    pub fn state(&self) -> State {
        self.shared().load().state()
    }

    /// A point-in-time copy of the state and statistics.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::of(self.shared())
    }

    /// Renamed to [`snapshot`](Self::snapshot).
    #[deprecated(note = "renamed to `snapshot()`")]
    #[must_use]
    pub fn metrics(&self) -> Snapshot {
        self.snapshot()
    }

    /// Asks to make one call outside tower: a [`Permit`] to complete with the call's outcome
    /// (dropping it unrecorded counts as a cancelled call, which does not count).
    ///
    /// ```
    /// use palisade_circuit_breaker::CircuitBreaker;
    ///
    /// let breaker = CircuitBreaker::new();
    /// match breaker.try_acquire() {
    ///     Ok(permit) => {
    ///         let result: Result<u32, std::io::Error> = Ok(7); // the guarded call
    ///         permit.record_result(&result);
    ///     }
    ///     Err(open) => eprintln!("not calling: {open}"),
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// [`CircuitOpen`] when the breaker rejects the call.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_>, CircuitOpen> {
        let admission = self.shared().admit()?;
        let mut core = Core::new(self.shared(), admission);
        core.start();
        Ok(Permit(core))
    }

    /// Like [`try_acquire`](Self::try_acquire), but the permit owns a reference to the
    /// breaker, so it can move into a task. Costs a reference-count increment and decrement.
    ///
    /// # Errors
    ///
    /// [`CircuitOpen`] when the breaker rejects the call.
    #[inline]
    pub fn try_acquire_owned(&self) -> Result<OwnedPermit, CircuitOpen> {
        let mut permit = self.acquire()?;
        permit.0.start();
        Ok(permit)
    }

    /// Acquires an owned permit without starting its timer (the service starts it in `call`).
    #[inline]
    pub(crate) fn acquire(&self) -> Result<OwnedPermit, CircuitOpen> {
        let admission = self.shared().admit()?;
        Ok(OwnedPermit(Core::new(self.local.clone(), admission)))
    }

    /// Like [`acquire`](Self::acquire), the refusal built on the heap where it is made (the
    /// service returns it as a `BoxError`, so it is allocated anyway): one pointer moves
    /// through `poll_ready`, `call` and the response future instead of the whole rejection.
    #[inline]
    pub(crate) fn acquire_boxed(&self) -> Result<OwnedPermit, Box<CircuitOpen>> {
        let admission = self.shared().admit_as::<Box<CircuitOpen>>(true)?;
        Ok(OwnedPermit(Core::new(self.local.clone(), admission)))
    }

    /// Like [`acquire`](Self::acquire), but a refusal is not a rejected call (gate mode waits
    /// instead): it is not counted and emits no event.
    pub(crate) fn acquire_quietly(&self) -> Result<OwnedPermit, CircuitOpen> {
        let admission = self.shared().admit_as::<CircuitOpen>(false)?;
        Ok(OwnedPermit(Core::new(self.local.clone(), admission)))
    }

    /// Subscribes a listener to this breaker's [`CircuitBreakerEvent`]s. A listener that
    /// panics cannot break the breaker: the panic is caught (and reported by the panic hook)
    /// after the breaker's own bookkeeping is done.
    pub fn subscribe<L: Listener<CircuitBreakerEvent>>(&self, listener: L) -> ListenerId {
        self.shared().events.subscribe(listener)
    }

    /// Removes a listener. Returns `false` if it was not subscribed.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        self.shared().events.unsubscribe(id)
    }

    /// Renamed to [`subscribe`](Self::subscribe).
    #[deprecated(note = "renamed to `subscribe`")]
    pub fn on_event<L: Listener<CircuitBreakerEvent>>(&self, listener: L) -> ListenerId {
        self.subscribe(listener)
    }

    /// Renamed to [`unsubscribe`](Self::unsubscribe).
    #[deprecated(note = "renamed to `unsubscribe`")]
    pub fn remove_listener(&self, id: ListenerId) -> bool {
        self.unsubscribe(id)
    }

    /// Rejects every call until another manual transition.
    pub fn force_open(&self) {
        self.shared().transition_to(State::ForcedOpen);
    }

    /// Admits every call and records nothing until another manual transition.
    pub fn disable(&self) {
        self.shared().transition_to(State::Disabled);
    }

    /// Admits every call, records outcomes and emits events, but never trips, until another
    /// manual transition.
    pub fn metrics_only(&self) {
        self.shared().transition_to(State::MetricsOnly);
    }

    /// Opens the breaker as if it had tripped (the open wait applies).
    pub fn transition_to_open(&self) {
        self.shared().transition_to(State::Open);
    }

    /// Moves to half-open at once: the next calls are probes.
    pub fn transition_to_half_open(&self) {
        self.shared().transition_to(State::HalfOpen);
    }

    /// Closes the breaker, starting with an empty window.
    pub fn transition_to_closed(&self) {
        self.shared().transition_to(State::Closed);
    }

    /// Back to `Closed` with empty statistics: window, consecutive failures, rejected count
    /// and open backoff all start over.
    pub fn reset(&self) {
        let shared = self.shared();
        shared.transition_to(State::Closed);
        // A statistic (Relaxed inside): a rejection racing with the reset may or may not be
        // counted; one that happens after it always is.
        shared.rejected.reset();
        shared.forget_reopens();
        shared.emit(|| CircuitBreakerEvent::Reset);
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.shared();
        f.debug_struct("CircuitBreaker")
            .field("name", &shared.settings.name)
            .field("state", &shared.load())
            .field("window", &shared.window)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Local {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Local").finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_tests;
