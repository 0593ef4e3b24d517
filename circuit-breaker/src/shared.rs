//! What every clone of one breaker shares, and the one place that changes the state word:
//! [`Shared::transition`], a CAS loop over a pure closure, with every side effect (events, the
//! re-open count, waking gated callers) after the winning CAS. No tower types here.

use crate::backoff::open_wait;
use crate::config::Settings;
use crate::error::CircuitOpen;
use crate::events::CircuitBreakerEvent;
use crate::permit::Admission;
use crate::probes::{ProbeResults, Streak};
use crate::state::{Generation, State, Tally, Timing, Word, tag_of};
use crate::window::{Record, Window};
use crossbeam_utils::CachePadded;
use palisade_core::classify::Outcome;
use palisade_core::clock::{Clock, Instant};
use palisade_core::events::EventBus;
use palisade_core::striped::StripedCounter;
use palisade_core::sync::Mutex;
use palisade_core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};
use std::task::Waker;
use std::time::Duration;

/// Everything the clones of one breaker share.
pub(crate) struct Shared {
    /// The state word, see [`crate::state`]. Read by every call, written on transitions.
    state: CachePadded<AtomicU64>,
    /// The timing word of the current Open or HalfOpen generation, see [`crate::state`].
    /// Written by a transition's winner right after its CAS; read only when not closed.
    timing: AtomicU64,
    /// Probe results of the current half-open generation.
    pub(crate) probes: ProbeResults,
    /// Failures in a row, tagged with the generation.
    pub(crate) streak: Streak,
    /// Calls rejected since creation or the last reset: striped by thread, since on an open
    /// breaker it is the only thing a rejection writes, and threads rejecting at once would
    /// otherwise bounce its cache line.
    pub(crate) rejected: StripedCounter,
    /// How many times in a row the breaker re-opened from half-open without closing (for the
    /// open backoff). Written only by the winner of a transition, after its CAS.
    reopened: AtomicU32,
    pub(crate) window: Window,
    pub(crate) settings: Settings,
    pub(crate) events: EventBus<CircuitBreakerEvent>,
    /// Gated callers waiting for a transition or a returned probe (gate mode only).
    waiters: Mutex<Vec<Waker>>,
    /// Whether `waiters` may hold a waker: transitions check it before taking the lock.
    has_waiters: AtomicBool,
    /// Whether completing a call needs the time: slow-call detection or a time window.
    needs_end_time: bool,
    /// Whether a success can be recorded by looking only (count window, no slow calls).
    success_may_skip: bool,
    /// Whether a success may be recorded without a tally while the window holds no failure
    /// (time window, no slow calls).
    success_may_skip_tally: bool,
}

impl Shared {
    pub(crate) fn new(settings: Settings, window: Window) -> Shared {
        let needs_end_time = settings.slow_call_nanos.is_some() || window.needs_time();
        let success_may_skip = settings.slow_call_nanos.is_none() && !window.needs_time();
        let success_may_skip_tally = settings.slow_call_nanos.is_none() && window.needs_time();
        Shared {
            state: CachePadded::new(AtomicU64::new(Word::initial().bits())),
            timing: AtomicU64::new(Timing::new(0, Instant::ZERO).bits()),
            probes: ProbeResults::new(),
            streak: Streak::new(),
            rejected: StripedCounter::new(),
            reopened: AtomicU32::new(0),
            window,
            settings,
            events: EventBus::new(),
            waiters: Mutex::new(Vec::new()),
            has_waiters: AtomicBool::new(false),
            needs_end_time,
            success_may_skip,
            success_may_skip_tally,
        }
    }

    #[inline]
    pub(crate) fn load(&self) -> Word {
        // Acquire: pairs with the AcqRel transition CASes, so a thread that sees a generation
        // also sees what its transition published.
        Word::from_bits(self.state.load(Ordering::Acquire))
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

    /// The time, read only when `needed`.
    #[inline]
    fn now_if(&self, needed: bool) -> Instant {
        if needed {
            self.clock().now()
        } else {
            Instant::ZERO
        }
    }

    // ---- the one transition helper -------------------------------------------------------

    /// Moves the state word from what `f` is given to what it returns, in a CAS loop: `f` must
    /// be pure, since it runs once per attempt (again after every lost race, with the word that
    /// won). It returns the next word and its time (for `Open` when the wait ends, for
    /// `HalfOpen` now; ignored otherwise), or `None`, "nothing to do from this word", which ends
    /// the loop. Returns the winning `(from, to)`. After the winning CAS, and only then, the
    /// side effects of a change of generation run once: publishing its time, the re-open
    /// count, waking gated callers, the event.
    pub(crate) fn transition(
        &self,
        mut current: Word,
        mut f: impl FnMut(Word) -> Option<(Word, Instant)>,
    ) -> Option<(Word, Word)> {
        loop {
            let (next, at) = f(current)?;
            // AcqRel: Release publishes the transition (and the generation its records carry)
            // to threads that Acquire the state; Acquire orders us after the previous
            // transition. Acquire on failure: we retry from the value we read.
            match self.state.compare_exchange(
                current.bits(),
                next.bits(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    if next.generation() != current.generation() {
                        if matches!(next.state(), State::Open | State::HalfOpen) {
                            self.publish_timing(next.generation(), at);
                        }
                        self.transitioned(current, next);
                    } else {
                        // A probe count changed (a probe given back): a gated caller may take it.
                        self.wake_waiters();
                    }
                    return Some((current, next));
                }
                Err(actual) => current = Word::from_bits(actual),
            }
        }
    }

    /// Publishes the time of `generation`, unless a later generation already published its own
    /// (this winner was descheduled between its CAS and here).
    fn publish_timing(&self, generation: Generation, at: Instant) {
        let new = Timing::new(generation, at);
        // Acquire: pairs with the AcqRel CAS below, to compare with the latest tag.
        let mut current = self.timing.load(Ordering::Acquire);
        loop {
            if Timing::from_bits(current).is_newer_than(generation) {
                return;
            }
            // AcqRel: Release publishes the time to readers that Acquire the timing word after
            // seeing the generation in the state word; Acquire orders us after earlier writers.
            match self.timing.compare_exchange_weak(
                current,
                new.bits(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// Publishes a time for `word`'s generation when its winner has not (it is descheduled
    /// between its CAS and its publication, or so long that a later winner's time came first
    /// and its own was then refused): an open breaker that never learnt its wait would never
    /// half-open. The stand-in errs long: the base wait from `now`, or entered `now`. A CAS
    /// from the stale value, so the real winner's time, published since, is kept.
    #[cold]
    fn help_publish(&self, word: Word, now: Instant) {
        // Acquire: pairs with the AcqRel CAS of `publish_timing`.
        let stale = self.timing.load(Ordering::Acquire);
        if Timing::from_bits(stale).is_of(word.generation()) || self.load() != word {
            return;
        }
        let at = match word.state() {
            State::Open => now + self.settings.wait_in_open,
            _ => now,
        };
        // AcqRel, Relaxed on failure: as in `publish_timing`; a failure means someone else
        // published meanwhile, which is all we wanted.
        let _ = self.timing.compare_exchange(
            stale,
            Timing::new(word.generation(), at).bits(),
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }

    /// The time of `generation`, once its winner has published it.
    #[inline]
    fn timing_of(&self, generation: Generation) -> Option<Timing> {
        // Acquire: pairs with the AcqRel CAS of `publish_timing`.
        let timing = Timing::from_bits(self.timing.load(Ordering::Acquire));
        timing.is_of(generation).then_some(timing)
    }

    /// HalfOpen: how long `word` has been half-open (zero until its time is published).
    fn half_open_for(&self, word: Word, now: Instant) -> Duration {
        self.timing_of(word.generation())
            .map_or(Duration::ZERO, |t| t.since(now))
    }

    /// The side effects of the transition `from → to`, run once by its winner.
    #[cold]
    fn transitioned(&self, from: Word, to: Word) {
        match (from.state(), to.state()) {
            // Relaxed (both): the count is read by the next transition's closure; transitions
            // are serialised by the state CAS, and a thread that computes the next wait before
            // this store lands uses the previous count, which only shortens one wait.
            (State::HalfOpen, State::Open) => {
                let n = self.reopened.load(Ordering::Relaxed);
                self.reopened.store(n.saturating_add(1), Ordering::Relaxed);
            }
            (_, State::Closed) => self.reopened.store(0, Ordering::Relaxed),
            _ => {}
        }
        self.wake_waiters();
        if from.state() != to.state() {
            self.emit(|| CircuitBreakerEvent::StateTransition {
                from: from.state(),
                to: to.state(),
            });
        }
    }

    /// The `Open` word that follows `current` at `now`, and when its backed-off, jittered wait
    /// ends. Pure: reads the re-open count, writes nothing.
    fn opened(&self, current: Word, now: Instant) -> (Word, Instant) {
        let settings = &self.settings;
        let reopens = if current.state() == State::HalfOpen {
            // Relaxed: see `transitioned`.
            self.reopened.load(Ordering::Relaxed).saturating_add(1)
        } else {
            0
        };
        let next = current.next(State::Open);
        let wait = open_wait(
            settings.wait_in_open,
            settings.backoff.as_ref(),
            reopens,
            settings.seed,
            next.generation(),
        );
        (next, now + wait)
    }

    // ---- events ----------------------------------------------------------------------------

    /// Emits an event, if anyone listens. A listener must never break the breaker: the bus
    /// catches (and counts) a listener's panic, and every emit here comes after the breaker's
    /// own state is consistent (a probe is taken only by the CAS that admits it, which returns
    /// the admission to a guard whatever a listener does).
    #[inline]
    pub(crate) fn emit(&self, make: impl FnOnce() -> CircuitBreakerEvent) {
        self.events.emit_with(make);
    }

    /// Emits a per-call event (traced at `TRACE`): built only if a user listener, a metrics
    /// recorder or a `TRACE` subscriber takes it (core's `EventBus::emit_call_with`).
    #[inline]
    pub(crate) fn emit_call(&self, make: impl FnOnce() -> CircuitBreakerEvent) {
        self.events.emit_call_with(make);
    }

    // ---- gate mode's waiters ----------------------------------------------------------------

    /// Registers `waker` to be woken at the next transition or returned probe. Returns the
    /// state word read *after* registering: if it differs from the word the caller was
    /// rejected by, the caller must try again (the change may have woken nobody).
    pub(crate) fn register_waiter(&self, waker: &Waker) -> Word {
        {
            let mut waiters = self.waiters.lock();
            if !waiters.iter().any(|w| w.will_wake(waker)) {
                waiters.push(waker.clone());
            }
            // Relaxed: ordered by the fence below.
            self.has_waiters.store(true, Ordering::Relaxed);
        }
        // SeqCst fence: pairs with the fence in `wake_waiters`. Either the transition's CAS is
        // visible to our load below, or our flag is visible to its load: a wake-up cannot be
        // lost between them.
        fence(Ordering::SeqCst);
        self.load()
    }

    /// Wakes every gated caller (cold: only after a transition or a returned probe).
    fn wake_waiters(&self) {
        // SeqCst fence: see `register_waiter`.
        fence(Ordering::SeqCst);
        // Relaxed: ordered by the fence above.
        if !self.has_waiters.load(Ordering::Relaxed) {
            return;
        }
        let waiters = {
            let mut waiters = self.waiters.lock();
            // Relaxed: under the lock that guards the list it describes.
            self.has_waiters.store(false, Ordering::Relaxed);
            std::mem::take(&mut *waiters)
        };
        for waker in waiters {
            waker.wake();
        }
    }

    /// When a gated caller rejected with `open` should look again, besides being woken by a
    /// transition: at the end of the open wait, or when `max_wait_in_half_open` expires.
    pub(crate) fn recheck_after(&self, open: &CircuitOpen) -> Option<Duration> {
        match open.state() {
            State::Open => open.retry_after(),
            State::HalfOpen => {
                let max = self.settings.max_wait_in_half_open?;
                let current = self.load();
                if current.state() != State::HalfOpen {
                    return Some(Duration::ZERO);
                }
                Some(max.saturating_sub(self.half_open_for(current, self.clock().now())))
            }
            _ => None,
        }
    }

    // ---- admission -------------------------------------------------------------------------

    /// Decides whether a call may go ahead.
    #[inline]
    pub(crate) fn admit(&self) -> Result<Admission, CircuitOpen> {
        self.admit_as(true)
    }

    /// [`admit`](Self::admit), the refusal built as `R`: `Box<CircuitOpen>` builds it on the
    /// heap inside the cold path, so the service's reject path passes one pointer along
    /// instead of copying the rejection through every frame and allocating at the end. With
    /// `count_rejection` false a refusal is not counted as a rejected call and emits no event
    /// (gate mode, which waits instead of rejecting).
    #[inline]
    pub(crate) fn admit_as<R: From<CircuitOpen>>(
        &self,
        count_rejection: bool,
    ) -> Result<Admission, R> {
        let current = self.load();
        if current.state() == State::Closed {
            return Ok(Admission::Window(current.generation()));
        }
        self.admit_slow(current, count_rejection)
    }

    /// Every state but `Closed`.
    #[inline(never)]
    fn admit_slow<R: From<CircuitOpen>>(
        &self,
        current: Word,
        count_rejection: bool,
    ) -> Result<Admission, R> {
        let settings = &self.settings;
        // Read at most once, and only by the states that need it.
        let mut now = None;
        let mut clock = || *now.get_or_insert_with(|| self.clock().now());
        let mut verdict = Err((State::Open, None));
        let mut unpublished = None;
        self.transition(current, |word| {
            unpublished = None;
            let (next, result) = match word.state() {
                State::Closed | State::MetricsOnly => {
                    (None, Ok(Admission::Window(word.generation())))
                }
                State::Disabled => (None, Ok(Admission::Untracked)),
                State::ForcedOpen => (None, Err((State::ForcedOpen, None))),
                State::Open => {
                    let now = clock();
                    match self.timing_of(word.generation()) {
                        Some(until) if until.wait_over(now) => {
                            let next = word.next(State::HalfOpen).with_probes(1);
                            (Some((next, now)), Ok(Admission::Probe(next.generation())))
                        }
                        Some(until) => (None, Err((State::Open, Some(until.remaining(now))))),
                        // Its winner has not published the wait yet: it has only just begun.
                        None => {
                            unpublished = Some(word);
                            (None, Err((State::Open, None)))
                        }
                    }
                }
                State::HalfOpen => {
                    // resilience4j's `maxWaitDurationInHalfOpenState`: once it has passed, the
                    // period is over whether or not probe permits remain.
                    let expired = settings
                        .max_wait_in_half_open
                        .map(|max| (max, clock()))
                        .filter(|&(max, now)| self.half_open_for(word, now) >= max);
                    if let Some((_, now)) = expired {
                        let (next, until) = self.opened(word, now);
                        let remaining = until.saturating_duration_since(now);
                        (Some((next, until)), Err((State::Open, Some(remaining))))
                    } else if word.probes() < settings.permitted_in_half_open {
                        let next = word.with_probes(word.probes() + 1);
                        // Same generation: the time is not published again.
                        (
                            Some((next, Instant::ZERO)),
                            Ok(Admission::Probe(word.generation())),
                        )
                    } else {
                        if self.timing_of(word.generation()).is_none() {
                            unpublished = Some(word);
                        }
                        (None, Err((State::HalfOpen, None)))
                    }
                }
            };
            verdict = result;
            next
        });
        if let Some(word) = unpublished {
            self.help_publish(word, clock());
        }
        verdict.map_err(|(state, retry_after)| {
            if count_rejection {
                self.reject(state, retry_after)
            } else {
                R::from(CircuitOpen::new(state, retry_after))
            }
        })
    }

    /// Counts and reports a rejection and builds it as `R`, here: built where it is boxed,
    /// its fields are stored straight into the allocation (built by a callee and boxed by its
    /// caller, it was copied through the stack in wider words than it was written).
    #[cold]
    fn reject<R: From<CircuitOpen>>(&self, state: State, retry_after: Option<Duration>) -> R {
        // A statistic (Relaxed inside), on cache lines of its own so rejecting threads do not
        // slow the admitted ones, and striped so they do not slow each other.
        self.rejected.add(1);
        self.emit_call(|| CircuitBreakerEvent::CallRejected { state });
        R::from(CircuitOpen::new(state, retry_after))
    }

    // ---- completion ------------------------------------------------------------------------

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
            && self.window.full_of_successes(tag_of(generation))
            && (self.settings.rules.consecutive_failures.is_none()
                || self.streak.is_zero(tag_of(generation)))
        {
            // The healthy path: recording this success would change nothing (and writes
            // nothing, so a stale permit whose tag matches cannot do harm here either).
            self.emit_call(|| CircuitBreakerEvent::SuccessRecorded { elapsed });
            return;
        }
        if outcome == Outcome::Success
            && self.success_may_skip_tally
            && let Admission::Window(generation) = admission
            && self.record_clean_success(generation, now)
        {
            self.emit_call(|| CircuitBreakerEvent::SuccessRecorded { elapsed });
            return;
        }
        self.complete_slow(admission, outcome, now, elapsed);
    }

    /// The healthy path of a time window: records a success of the current closed
    /// `generation` without a tally when the window holds no failure (and no failure streak
    /// is counting), since such a success cannot trip the breaker. Returns `false`, having
    /// recorded nothing, when the full path must run.
    #[inline]
    fn record_clean_success(&self, generation: Generation, now: Instant) -> bool {
        // The full generation, as in `complete_slow`: the window's tags are its low 16 bits.
        if self.load().generation() != generation {
            return false; // stale: `complete_slow` drops it
        }
        let tag = tag_of(generation);
        (self.settings.rules.consecutive_failures.is_none() || self.streak.is_zero(tag))
            && self.window.record_success_if_clean(tag, now)
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
            self.emit_call(|| CircuitBreakerEvent::CallIgnored { elapsed });
            return;
        }
        let failure = outcome == Outcome::Failure;
        let slow = match (self.settings.slow_call_nanos, elapsed) {
            (Some(limit), Some(elapsed)) => elapsed.as_nanos() > u128::from(limit),
            _ => false,
        };
        if failure {
            self.emit_call(|| CircuitBreakerEvent::ErrorRecorded { elapsed });
        } else {
            self.emit_call(|| CircuitBreakerEvent::SuccessRecorded { elapsed });
        }
        if slow && let Some(elapsed) = elapsed {
            self.emit_call(|| CircuitBreakerEvent::SlowCallRecorded { elapsed });
        }
        // The full generation, checked before any write into a window or probe word: those
        // carry only its low 16 bits, and a permit held across 65 536 transitions would
        // otherwise match a newer period's tag.
        let current = self.load();
        if current.generation() != generation {
            return; // stale: the period this call belonged to is over
        }
        let record = Record { failure, slow };
        match admission {
            Admission::Window(generation) => self.record_closed(generation, now, record),
            _ => self.record_probe(current, record),
        }
    }

    #[inline]
    fn record_closed(&self, generation: Generation, now: Instant, record: Record) {
        let tag = tag_of(generation);
        let Some(tally) = self.window.record(tag, now, record) else {
            return;
        };
        let consecutive = match self.settings.rules.consecutive_failures {
            Some(_) => self.streak.count(tag, record.failure),
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

    /// Closed(generation) → Open, if still closed in that generation.
    #[cold]
    fn trip(&self, generation: Generation) {
        let now = self.clock().now();
        self.transition(self.load(), |word| {
            (word.state() == State::Closed && word.generation() == generation)
                .then(|| self.opened(word, now))
        });
    }

    /// Records the result of a probe of the half-open `current`; the probe that completes the
    /// set decides Closed or Open.
    fn record_probe(&self, current: Word, record: Record) {
        if current.state() != State::HalfOpen {
            return; // stale: the half-open period this probe belonged to is over
        }
        let generation = current.generation();
        let Some(tally) = self.probes.record(tag_of(generation), record) else {
            return;
        };
        let expiry = self
            .settings
            .max_wait_in_half_open
            .map(|max| (max, self.clock().now()));
        if tally.calls < self.settings.permitted_in_half_open && expiry.is_none() {
            return;
        }
        let now = expiry.map_or_else(|| self.clock().now(), |(_, now)| now);
        self.transition(self.load(), |word| {
            if word.state() != State::HalfOpen || word.generation() != generation {
                return None;
            }
            let over = expiry.is_some_and(|(max, now)| self.half_open_for(word, now) >= max);
            if over {
                // The half-open period ran out before its probes decided: back to Open.
                return Some(self.opened(word, now));
            }
            if tally.calls < self.settings.permitted_in_half_open {
                return None;
            }
            Some(if self.settings.rules.probes_fail(tally) {
                self.opened(word, now)
            } else {
                (word.next(State::Closed), now)
            })
        });
    }

    /// Gives back the probe permit of a call that will not be recorded (ignored, cancelled).
    fn return_probe(&self, generation: Generation) {
        self.transition(self.load(), |word| {
            (word.state() == State::HalfOpen
                && word.generation() == generation
                && word.probes() > 0)
                .then(|| (word.with_probes(word.probes() - 1), Instant::ZERO))
        });
    }

    /// A manual transition: always moves to a new generation, so windows start empty.
    pub(crate) fn transition_to(&self, state: State) {
        let now = self.clock().now();
        let at = if state == State::Open {
            now + self.settings.wait_in_open
        } else {
            now
        };
        self.transition(self.load(), |word| Some((word.next(state), at)));
    }

    /// Test only: moves the state word to `word` as a transition's winner would, without
    /// publishing its time or running its side effects (a winner descheduled right after its
    /// CAS).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn cas_only(&self, word: Word) {
        // Release: as a transition CAS publishes its word.
        self.state.store(word.bits(), Ordering::Release);
    }

    /// Forgets the re-open count (on `reset`).
    pub(crate) fn forget_reopens(&self) {
        // Relaxed: see `transitioned`.
        self.reopened.store(0, Ordering::Relaxed);
    }

    // ---- statistics ------------------------------------------------------------------------

    /// The tally behind a snapshot of `word`: the window, the probes, or (open) the period
    /// that ended in this state.
    pub(crate) fn tally(&self, word: Word) -> Tally {
        let tag = tag_of(word.generation());
        match word.state() {
            State::Closed | State::MetricsOnly => {
                let now = self.now_if(self.window.needs_time());
                self.window.tally(tag, now)
            }
            State::HalfOpen => self.probes.tally(tag),
            State::Open | State::ForcedOpen => {
                let previous = tag_of(word.previous_generation());
                let now = self.now_if(self.window.needs_time());
                let window = self.window.tally(previous, now);
                if window == Tally::default() {
                    self.probes.tally(previous)
                } else {
                    window
                }
            }
            State::Disabled => Tally::default(),
        }
    }
}
