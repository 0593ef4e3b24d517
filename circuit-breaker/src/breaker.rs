//! The breaker itself: the handle users keep, the shared state every clone points at, and the
//! CAS loops that apply [`crate::state`]'s transitions. No tower types here.

use crate::config::{CircuitBreakerBuilder, Settings};
use crate::error::CircuitOpen;
use crate::events::CircuitBreakerEvent;
use crate::layer::CircuitBreakerLayer;
use crate::permit::{Admission, Core, OwnedPermit, Permit};
use crate::state::{Generation, Snapshot, State, Tally, is_newer};
use crate::window::{Record, Window};
use crossbeam_utils::CachePadded;
use palisade_core::classify::{ErrorIsFailure, Outcome};
use palisade_core::clock::{Clock, Instant};
use palisade_core::events::{EventBus, Listener, ListenerId};
use palisade_core::sync::Arc;
use palisade_core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::fmt;
use std::time::Duration;

/// Half-open probe results and consecutive-failure counters: bits 48..64 generation.
const TAG_SHIFT: u32 = 48;
const LOW_MASK: u64 = (1 << TAG_SHIFT) - 1;
/// Half-open word fields: recorded probes at 32..48, failures at 16..32, slow at 0..16.
const PROBE_FIELD: u32 = 16;
const PROBE_FIELD_MASK: u64 = (1 << PROBE_FIELD) - 1;

/// Everything the clones of one breaker share.
pub(crate) struct Shared {
    /// The state word, see [`crate::state`]. Read by every call, written on transitions.
    state: CachePadded<AtomicU64>,
    /// Probe results of the current half-open generation.
    half_open: CachePadded<AtomicU64>,
    /// Failures in a row, tagged with the generation.
    consecutive: CachePadded<AtomicU64>,
    /// Calls rejected since creation or the last reset.
    rejected: CachePadded<AtomicU64>,
    /// How many times in a row the breaker re-opened without closing (for the backoff).
    reopened: AtomicU32,
    /// Jitter random state (splitmix64).
    rng: AtomicU64,
    window: Window,
    settings: Settings,
    events: EventBus<CircuitBreakerEvent>,
    /// Whether completing a call needs the time: slow-call detection or a time window.
    needs_end_time: bool,
    /// Whether a success can be recorded by looking only (count window, no slow calls).
    success_may_skip: bool,
}

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
/// `g + 1`: of any number of threads racing to make the same transition exactly one succeeds,
/// and only it emits the transition event. Window counters and statistics use the weakest
/// ordering that keeps each update atomic: a stale or late count is tolerated, because the
/// decision it feeds is itself a generation-checked CAS on the state word.
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

/// A point-in-time copy of a breaker's statistics, from [`CircuitBreaker::metrics`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Metrics {
    /// The state.
    pub state: State,
    /// Calls recorded in the current window; in half-open, probes recorded; when open, the
    /// calls of the period that opened it (the window that tripped, or the failed probes).
    pub calls: u32,
    /// Of those, failures.
    pub failed_calls: u32,
    /// Of those, slow calls.
    pub slow_calls: u32,
    /// `failed_calls / calls` in percent (0 without calls).
    pub failure_rate: f64,
    /// `slow_calls / calls` in percent (0 without calls).
    pub slow_call_rate: f64,
    /// Calls rejected since the breaker was built or last reset.
    pub rejected_calls: u64,
    /// Failures in a row (counted only with `consecutive_failures` set).
    pub consecutive_failures: u32,
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
        let events = EventBus::new();
        palisade_core::subscribe_feature_listeners!(events, "circuit_breaker", settings.name);
        let seed = settings.seed;
        let needs_end_time = settings.slow_call_nanos.is_some() || window.needs_time();
        let success_may_skip = settings.slow_call_nanos.is_none() && !window.needs_time();
        CircuitBreaker {
            local: Arc::new(CachePadded::new(Local {
                shared: Arc::new(Shared {
                    state: CachePadded::new(AtomicU64::new(Snapshot::initial().bits())),
                    half_open: CachePadded::new(AtomicU64::new(0)),
                    consecutive: CachePadded::new(AtomicU64::new(0)),
                    rejected: CachePadded::new(AtomicU64::new(0)),
                    reopened: AtomicU32::new(0),
                    rng: AtomicU64::new(seed),
                    window,
                    settings,
                    events,
                    needs_end_time,
                    success_may_skip,
                }),
            })),
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

    /// A snapshot of the statistics.
    #[must_use]
    pub fn metrics(&self) -> Metrics {
        let shared = self.shared();
        let snapshot = shared.load();
        let generation = snapshot.generation();
        let tally = match snapshot.state() {
            State::Closed | State::MetricsOnly => {
                let now = if shared.window.needs_time() {
                    shared.settings.clock.now()
                } else {
                    Instant::ZERO
                };
                shared.window.tally(generation, now)
            }
            State::HalfOpen => shared.probe_tally(generation),
            State::Open | State::ForcedOpen => {
                // The period that ended in this state: a closed window or half-open probes.
                let previous = generation.wrapping_sub(1);
                let now = if shared.window.needs_time() {
                    shared.settings.clock.now()
                } else {
                    Instant::ZERO
                };
                let window = shared.window.tally(previous, now);
                if window == Tally::default() {
                    shared.probe_tally(previous)
                } else {
                    window
                }
            }
            State::Disabled => Tally::default(),
        };
        // Acquire: pairs with the AcqRel CAS of `count_consecutive`; a statistic.
        let consecutive = shared.consecutive.load(Ordering::Acquire);
        let rate = |n: u32| {
            if tally.calls == 0 {
                0.0
            } else {
                f64::from(n) * 100.0 / f64::from(tally.calls)
            }
        };
        Metrics {
            state: snapshot.state(),
            calls: tally.calls,
            failed_calls: tally.failures,
            slow_calls: tally.slow,
            failure_rate: rate(tally.failures),
            slow_call_rate: rate(tally.slow),
            // Relaxed: a statistic.
            rejected_calls: shared.rejected.load(Ordering::Relaxed),
            consecutive_failures: if (consecutive >> TAG_SHIFT) as Generation == generation {
                (consecutive & LOW_MASK) as u32
            } else {
                0
            },
        }
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

    /// Subscribes a listener to this breaker's [`CircuitBreakerEvent`]s.
    pub fn on_event<L: Listener<CircuitBreakerEvent>>(&self, listener: L) -> ListenerId {
        self.shared().events.subscribe(listener)
    }

    /// Removes a listener. Returns `false` if it was not subscribed.
    pub fn remove_listener(&self, id: ListenerId) -> bool {
        self.shared().events.unsubscribe(id)
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
        // Relaxed: statistics; a rejection racing with the reset may or may not be counted.
        shared.rejected.store(0, Ordering::Relaxed);
        // Relaxed: read only by the thread that wins a transition CAS, which orders it.
        shared.reopened.store(0, Ordering::Relaxed);
        shared.events.emit(CircuitBreakerEvent::Reset);
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

impl Shared {
    #[inline]
    pub(crate) fn load(&self) -> Snapshot {
        // Acquire: pairs with the AcqRel transition CASes.
        Snapshot::from_bits(self.state.load(Ordering::Acquire))
    }

    #[inline]
    fn cas(&self, current: Snapshot, next: Snapshot) -> Result<(), Snapshot> {
        // AcqRel: Release publishes the transition (and the generation its records carry) to
        // threads that Acquire the state; Acquire orders us after the previous transition.
        // Acquire on failure: we retry from the value we read.
        self.state
            .compare_exchange(
                current.bits(),
                next.bits(),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .map(drop)
            .map_err(Snapshot::from_bits)
    }

    #[inline]
    pub(crate) fn clock(&self) -> &Clock {
        &self.settings.clock
    }

    /// Whether completing a call needs the time: slow-call detection or a time window.
    #[inline]
    pub(crate) fn needs_end_time(&self) -> bool {
        self.needs_end_time
    }

    /// Whether the start of a call must be timed (slow-call detection).
    #[inline]
    pub(crate) fn times_calls(&self) -> bool {
        self.settings.slow_call_nanos.is_some()
    }

    /// Decides whether a call may go ahead.
    #[inline]
    pub(crate) fn admit(&self) -> Result<Admission, CircuitOpen> {
        let current = self.load();
        if current.state() == State::Closed {
            return Ok(Admission::Window(current.generation()));
        }
        self.admit_slow(current)
    }

    /// Every state but `Closed`.
    #[inline(never)]
    fn admit_slow(&self, mut current: Snapshot) -> Result<Admission, CircuitOpen> {
        loop {
            match current.state() {
                State::Closed | State::MetricsOnly => {
                    return Ok(Admission::Window(current.generation()));
                }
                State::Disabled => return Ok(Admission::Untracked),
                State::ForcedOpen => return Err(self.reject(State::ForcedOpen, None)),
                State::Open => {
                    let now = self.clock().now();
                    if !current.open_wait_over(now) {
                        return Err(self.reject(State::Open, Some(current.open_remaining(now))));
                    }
                    let next = current.next(State::HalfOpen, now, now).with_probes(1);
                    match self.cas(current, next) {
                        Ok(()) => {
                            self.transitioned(current, next);
                            return Ok(Admission::Probe(next.generation()));
                        }
                        Err(actual) => current = actual,
                    }
                }
                State::HalfOpen => {
                    let probes = current.probes();
                    if probes < self.settings.permitted_in_half_open {
                        match self.cas(current, current.with_probes(probes + 1)) {
                            Ok(()) => return Ok(Admission::Probe(current.generation())),
                            Err(actual) => current = actual,
                        }
                        continue;
                    }
                    if let Some(max) = self.settings.max_wait_in_half_open {
                        let now = self.clock().now();
                        if current.half_open_for(now) >= max {
                            let next = self.opened(current, now);
                            match self.cas(current, next) {
                                Ok(()) => {
                                    self.transitioned(current, next);
                                    return Err(
                                        self.reject(State::Open, Some(next.open_remaining(now)))
                                    );
                                }
                                Err(actual) => {
                                    current = actual;
                                    continue;
                                }
                            }
                        }
                    }
                    return Err(self.reject(State::HalfOpen, None));
                }
            }
        }
    }

    #[cold]
    fn reject(&self, state: State, retry_after: Option<Duration>) -> CircuitOpen {
        // Relaxed: a statistic, on its own cache line so rejecting threads do not slow the
        // admitted ones.
        self.rejected.fetch_add(1, Ordering::Relaxed);
        self.events
            .emit_with(|| CircuitBreakerEvent::CallRejected { state });
        CircuitOpen::new(state, retry_after)
    }

    /// Records the outcome of a call admitted as `admission`. `now` is the call's end (only
    /// read when [`needs_end_time`](Self::needs_end_time)), `elapsed` its duration (only when
    /// [`times_calls`](Self::times_calls)).
    #[inline]
    pub(crate) fn complete(
        &self,
        admission: Admission,
        outcome: Outcome,
        now: Instant,
        elapsed: Option<Duration>,
    ) {
        if outcome == Outcome::Success
            && self.success_may_skip
            && let Admission::Window(generation) = admission
            && self.window.full_of_successes(generation)
            && self.no_failure_streak(generation)
        {
            // The healthy path: recording this success would change nothing.
            return;
        }
        self.complete_slow(admission, outcome, now, elapsed);
    }

    /// Whether the consecutive-failures counter (if any) of `generation` is at zero.
    #[inline]
    fn no_failure_streak(&self, generation: Generation) -> bool {
        self.settings.rules.consecutive_failures.is_none()
            // Acquire: pairs with the AcqRel CAS of `count_consecutive`.
            || self.consecutive.load(Ordering::Acquire) == u64::from(generation) << TAG_SHIFT
    }

    #[inline(never)]
    fn complete_slow(
        &self,
        admission: Admission,
        outcome: Outcome,
        now: Instant,
        elapsed: Option<Duration>,
    ) {
        let generation = match admission {
            Admission::Untracked => return,
            Admission::Window(generation) | Admission::Probe(generation) => generation,
        };
        if outcome == Outcome::Ignore {
            if let Admission::Probe(generation) = admission {
                self.return_probe(generation);
            }
            return;
        }
        let failure = outcome == Outcome::Failure;
        let slow = match (self.settings.slow_call_nanos, elapsed) {
            (Some(limit), Some(elapsed)) => elapsed.as_nanos() > u128::from(limit),
            _ => false,
        };
        if failure {
            self.events
                .emit_with(|| CircuitBreakerEvent::ErrorRecorded { elapsed });
        }
        if slow && let Some(elapsed) = elapsed {
            self.events
                .emit_with(|| CircuitBreakerEvent::SlowCallRecorded { elapsed });
        }
        let record = Record { failure, slow };
        match admission {
            Admission::Window(generation) => self.record_closed(generation, now, record),
            _ => self.record_probe(generation, record),
        }
    }

    #[inline]
    fn record_closed(&self, generation: Generation, now: Instant, record: Record) {
        let Some(tally) = self.window.record(generation, now, record) else {
            return;
        };
        let consecutive = match self.settings.rules.consecutive_failures {
            Some(_) => self.count_consecutive(generation, record.failure),
            None => 0,
        };
        if !record.failure && !record.slow && tally.failures == 0 && tally.slow == 0 {
            // A success into a window without failures or slow calls cannot trip.
            return;
        }
        if self.settings.rules.closed_trips(tally, consecutive) {
            self.trip(generation);
        }
    }

    /// Counts failures in a row for `generation`; returns the count after this outcome.
    fn count_consecutive(&self, generation: Generation, failure: bool) -> u32 {
        // Acquire: pairs with the AcqRel CAS below.
        let mut current = self.consecutive.load(Ordering::Acquire);
        loop {
            let tag = (current >> TAG_SHIFT) as Generation;
            let count = if tag == generation {
                current & LOW_MASK
            } else if is_newer(generation, tag) {
                0
            } else {
                return 0;
            };
            let count = if failure {
                (count + 1).min(LOW_MASK)
            } else {
                0
            };
            let next = (u64::from(generation) << TAG_SHIFT) | count;
            if next == current {
                return count as u32;
            }
            // AcqRel: a read-modify-write shared by all recorders; the tag and count travel
            // together.
            match self.consecutive.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return count.min(u64::from(u32::MAX)) as u32,
                Err(actual) => current = actual,
            }
        }
    }

    /// Closed(generation) → Open, if still closed in that generation.
    #[cold]
    fn trip(&self, generation: Generation) {
        let now = self.clock().now();
        let mut current = self.load();
        while current.state() == State::Closed && current.generation() == generation {
            let next = self.opened(current, now);
            match self.cas(current, next) {
                Ok(()) => {
                    self.transitioned(current, next);
                    return;
                }
                Err(actual) => current = actual,
            }
        }
    }

    fn probe_tally(&self, generation: Generation) -> Tally {
        // Acquire: pairs with the AcqRel CAS of `record_probe`.
        let word = self.half_open.load(Ordering::Acquire);
        if (word >> TAG_SHIFT) as Generation != generation {
            return Tally::default();
        }
        Tally {
            calls: ((word >> (2 * PROBE_FIELD)) & PROBE_FIELD_MASK) as u32,
            failures: ((word >> PROBE_FIELD) & PROBE_FIELD_MASK) as u32,
            slow: (word & PROBE_FIELD_MASK) as u32,
        }
    }

    /// Records a probe's result; the probe that completes the set decides Closed or Open.
    fn record_probe(&self, generation: Generation, record: Record) {
        let current = self.load();
        if current.state() != State::HalfOpen || current.generation() != generation {
            return; // stale: the half-open period this probe belonged to is over
        }
        let delta = (1 << (2 * PROBE_FIELD))
            | (u64::from(record.failure) << PROBE_FIELD)
            | u64::from(record.slow);
        // Acquire: pairs with the AcqRel CAS below.
        let mut word = self.half_open.load(Ordering::Acquire);
        let tally = loop {
            let tag = (word >> TAG_SHIFT) as Generation;
            let next = if tag == generation {
                word + delta
            } else if is_newer(generation, tag) || word == 0 {
                (u64::from(generation) << TAG_SHIFT) | delta
            } else {
                return;
            };
            // AcqRel: the probe results are read-modify-written by every probe.
            match self.half_open.compare_exchange_weak(
                word,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    word = next;
                    break self.probe_tally_of(word);
                }
                Err(actual) => word = actual,
            }
        };
        if tally.calls < self.settings.permitted_in_half_open {
            return;
        }
        // Every probe is in: exactly one recorder gets here for this generation.
        let now = self.clock().now();
        let mut current = self.load();
        while current.state() == State::HalfOpen && current.generation() == generation {
            let next = if self.settings.rules.probes_fail(tally) {
                self.opened(current, now)
            } else {
                current.next(State::Closed, now, now)
            };
            match self.cas(current, next) {
                Ok(()) => {
                    if next.state() == State::Closed {
                        // Relaxed: read only by the winner of a later transition CAS.
                        self.reopened.store(0, Ordering::Relaxed);
                    }
                    self.transitioned(current, next);
                    return;
                }
                Err(actual) => current = actual,
            }
        }
    }

    fn probe_tally_of(&self, word: u64) -> Tally {
        Tally {
            calls: ((word >> (2 * PROBE_FIELD)) & PROBE_FIELD_MASK) as u32,
            failures: ((word >> PROBE_FIELD) & PROBE_FIELD_MASK) as u32,
            slow: (word & PROBE_FIELD_MASK) as u32,
        }
    }

    /// Gives back the probe permit of a call that will not be recorded (ignored, cancelled).
    fn return_probe(&self, generation: Generation) {
        let mut current = self.load();
        while current.state() == State::HalfOpen
            && current.generation() == generation
            && current.probes() > 0
        {
            match self.cas(current, current.with_probes(current.probes() - 1)) {
                Ok(()) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// The Open word that follows `current` at `now`, with the (backed-off) wait.
    fn opened(&self, current: Snapshot, now: Instant) -> Snapshot {
        let wait = self.open_wait(current.state() == State::HalfOpen);
        current.next(State::Open, now, now + wait)
    }

    /// The open wait: the base, or with backoff `base × multiplier^n` (n = re-opens in a row
    /// from half-open), capped, with jitter.
    fn open_wait(&self, from_half_open: bool) -> Duration {
        let settings = &self.settings;
        let Some(backoff) = settings.backoff else {
            return settings.wait_in_open;
        };
        // Relaxed: a heuristic counter; racing transitions are serialised by the state CAS and
        // a lost increment only shortens one wait.
        let reopened = if from_half_open {
            self.reopened
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1)
        } else {
            self.reopened.store(0, Ordering::Relaxed);
            0
        };
        let base = settings.wait_in_open.as_secs_f64();
        let max = backoff.max.as_secs_f64();
        let grown = (base * backoff.multiplier.powi(reopened.min(1_000) as i32)).min(max);
        let factor = if backoff.jitter > 0.0 {
            1.0 - backoff.jitter + 2.0 * backoff.jitter * self.random_unit()
        } else {
            1.0
        };
        Duration::from_secs_f64((grown * factor).clamp(0.001, max))
    }

    /// A uniform random number in `[0, 1)` (splitmix64).
    fn random_unit(&self) -> f64 {
        use palisade_core::rng::{GAMMA, mix, unit_f64};
        // Relaxed: each caller needs only a distinct state, which the RMW guarantees.
        let state = self
            .rng
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        unit_f64(mix(state))
    }

    /// A manual transition: always moves to a new generation, so windows start empty.
    fn transition_to(&self, state: State) {
        let now = self.clock().now();
        let mut current = self.load();
        loop {
            let next = match state {
                State::Open => current.next(State::Open, now, now + self.settings.wait_in_open),
                other => current.next(other, now, now),
            };
            match self.cas(current, next) {
                Ok(()) => {
                    if current.state() != next.state() {
                        self.transitioned(current, next);
                    }
                    return;
                }
                Err(actual) => current = actual,
            }
        }
    }

    #[cold]
    fn transitioned(&self, from: Snapshot, to: Snapshot) {
        self.events
            .emit_with(|| CircuitBreakerEvent::StateTransition {
                from: from.state(),
                to: to.state(),
            });
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_tests;
