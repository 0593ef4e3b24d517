//! The breaker's state machine packed into one `u64`, the generation-tagged timing word
//! beside it, and the pure functions that decide transitions. No atomics and no tower types
//! here: [`crate::shared`] applies these in CAS loops.
//!
//! # Bit layout
//!
//! ```text
//! state word
//!  63                                             15 14          3 2     0
//! +-------------------------------------------------+-------------+-------+
//! |               generation (49 bits)              | probes (12) |  tag  |
//! +-------------------------------------------------+-------------+-------+
//!   probes: HalfOpen only, probes admitted and not given back (≤ 4095)
//!
//! timing word (a time of one generation, published by its transition's winner)
//!  63                  45 44                                               0
//! +----------------------+--------------------------------------------------+
//! | generation mod 2^19  |  milliseconds since the clock's origin (45 bits) |
//! +----------------------+--------------------------------------------------+
//!   Open: when the open wait ends (rounded up); HalfOpen: when it was entered
//! ```
//!
//! The generation grows by one on every transition. Permits remember the generation that
//! admitted them, so a result that arrives after the state moved on is recognised as stale
//! and cannot count against the new period. With 49 bits it wraps after 2^49 ≈ 5.6·10^14
//! transitions (at one transition every 10 ns, 65 days of nothing else): a permit held across
//! any number of transitions a process can make is stale, and every decision (trip, close,
//! re-open, returning a probe) is a CAS on the full generation.
//!
//! The 45 bits of milliseconds hold any [`Instant`] (which saturates at 2^64 ns, 584 years).

use palisade_core::clock::Instant;
use std::fmt;
use std::time::Duration;

const TAG_BITS: u32 = 3;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
const PROBE_SHIFT: u32 = TAG_BITS;
const PROBE_BITS: u32 = 12;
const PROBE_MASK: u64 = ((1 << PROBE_BITS) - 1) << PROBE_SHIFT;
const GEN_SHIFT: u32 = PROBE_SHIFT + PROBE_BITS;
const GEN_BITS: u32 = 64 - GEN_SHIFT;
const GEN_MAX: u64 = (1 << GEN_BITS) - 1;

const TIME_BITS: u32 = 45;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;
const TIME_TAG_BITS: u32 = 64 - TIME_BITS;
const TIME_TAG_MASK: u64 = (1 << TIME_TAG_BITS) - 1;

/// The most probes a half-open breaker can admit (the width of the probe field).
pub(crate) const MAX_PROBES: u32 = (PROBE_MASK >> PROBE_SHIFT) as u32;

const NANOS_PER_MS: u64 = 1_000_000;

/// The state of a circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    /// Calls pass and their outcomes are recorded; the breaker trips when the window's
    /// failure or slow-call rate reaches its threshold.
    Closed = 0,
    /// Calls are rejected until the open wait has passed.
    Open = 1,
    /// A limited number of probe calls pass; their outcomes decide `Closed` or `Open`.
    HalfOpen = 2,
    /// Set by hand: every call is rejected until another manual transition.
    ForcedOpen = 3,
    /// Set by hand: every call passes and nothing is recorded.
    Disabled = 4,
    /// Set by hand: every call passes, outcomes are recorded and events emitted, but the
    /// breaker never rejects.
    MetricsOnly = 5,
}

impl State {
    /// The name used in metrics labels and events, in snake case.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::Disabled => "disabled",
            State::MetricsOnly => "metrics_only",
        }
    }

    /// Whether calls are admitted at all in this state (half-open admits some).
    #[must_use]
    pub const fn admits_calls(self) -> bool {
        !matches!(self, State::Open | State::ForcedOpen)
    }

    const fn from_tag(tag: u64) -> State {
        match tag {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::ForcedOpen,
            4 => State::Disabled,
            _ => State::MetricsOnly,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A generation number, 49 bits, compared with wrapping arithmetic.
pub(crate) type Generation = u64;

/// The low 16 bits of a generation: the tag of the windows' and probe words' entries, where a
/// word has no room for more. Every write into them is preceded by a check of the full
/// generation against the state word (see `Shared::complete_slow`).
pub(crate) type Tag = u16;

/// The tag of `generation`.
#[inline]
pub(crate) const fn tag_of(generation: Generation) -> Tag {
    generation as Tag
}

/// Tag `a` was created after tag `b` (within half the wrapping range).
#[inline]
pub(crate) const fn tag_is_newer(a: Tag, b: Tag) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d < (1 << 15)
}

/// Milliseconds since the clock's origin, rounded up (so an open wait is never cut short).
#[inline]
pub(crate) const fn ceil_ms(t: Instant) -> u64 {
    t.as_nanos().div_ceil(NANOS_PER_MS)
}

/// A decoded copy of the state word.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word(u64);

impl Word {
    #[inline]
    pub(crate) const fn from_bits(bits: u64) -> Word {
        Word(bits)
    }

    #[inline]
    pub(crate) const fn bits(self) -> u64 {
        self.0
    }

    const fn pack(state: State, generation: Generation, probes: u32) -> Word {
        Word(
            (state as u64)
                | (((probes as u64) << PROBE_SHIFT) & PROBE_MASK)
                | ((generation & GEN_MAX) << GEN_SHIFT),
        )
    }

    /// The initial word: closed, generation 0.
    pub(crate) const fn initial() -> Word {
        Word::pack(State::Closed, 0, 0)
    }

    #[inline]
    pub(crate) const fn state(self) -> State {
        State::from_tag(self.0 & TAG_MASK)
    }

    #[inline]
    pub(crate) const fn generation(self) -> Generation {
        self.0 >> GEN_SHIFT
    }

    /// HalfOpen: probes admitted and not given back.
    #[inline]
    pub(crate) const fn probes(self) -> u32 {
        ((self.0 & PROBE_MASK) >> PROBE_SHIFT) as u32
    }

    /// The same generation with `probes` probes out. Half-open only.
    #[inline]
    pub(crate) const fn with_probes(self, probes: u32) -> Word {
        Word::pack(self.state(), self.generation(), probes)
    }

    /// `state` in the next generation, with no probe out.
    #[inline]
    pub(crate) const fn next(self, state: State) -> Word {
        Word::pack(state, self.generation().wrapping_add(1) & GEN_MAX, 0)
    }

    /// The generation before this one.
    #[inline]
    pub(crate) const fn previous_generation(self) -> Generation {
        self.generation().wrapping_sub(1) & GEN_MAX
    }
}

impl fmt::Debug for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Word");
        d.field("state", &self.state())
            .field("generation", &self.generation());
        if self.state() == State::HalfOpen {
            d.field("probes", &self.probes());
        }
        d.finish()
    }
}

/// A decoded copy of the timing word: a time of one generation (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Timing(u64);

impl Timing {
    /// The timing word that says "`at`, for `generation`".
    #[inline]
    pub(crate) const fn new(generation: Generation, at: Instant) -> Timing {
        Timing(((generation & TIME_TAG_MASK) << TIME_BITS) | (ceil_ms(at) & TIME_MASK))
    }

    #[inline]
    pub(crate) const fn from_bits(bits: u64) -> Timing {
        Timing(bits)
    }

    #[inline]
    pub(crate) const fn bits(self) -> u64 {
        self.0
    }

    /// Whether this is the time of `generation` (rather than of an earlier one whose
    /// successor's winner has not published yet).
    #[inline]
    pub(crate) const fn is_of(self, generation: Generation) -> bool {
        self.0 >> TIME_BITS == generation & TIME_TAG_MASK
    }

    /// Whether this timing belongs to a generation newer than `generation` (19-bit wrapping).
    #[inline]
    pub(crate) const fn is_newer_than(self, generation: Generation) -> bool {
        let d = (self.0 >> TIME_BITS).wrapping_sub(generation) & TIME_TAG_MASK;
        d != 0 && d < (1 << (TIME_TAG_BITS - 1))
    }

    #[inline]
    const fn ms(self) -> u64 {
        self.0 & TIME_MASK
    }

    /// Open: whether the wait is over at `now`.
    #[inline]
    pub(crate) const fn wait_over(self, now: Instant) -> bool {
        now.as_nanos() >= self.ms().saturating_mul(NANOS_PER_MS)
    }

    /// Open: how long until the wait is over.
    pub(crate) const fn remaining(self, now: Instant) -> Duration {
        Duration::from_nanos(
            self.ms()
                .saturating_mul(NANOS_PER_MS)
                .saturating_sub(now.as_nanos()),
        )
    }

    /// HalfOpen: how long since it was entered (rounded up then, so at most 1 ms short).
    pub(crate) const fn since(self, now: Instant) -> Duration {
        Duration::from_millis((now.as_nanos() / NANOS_PER_MS).saturating_sub(self.ms()))
    }
}

/// What the window holds, as the trip rules see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) calls: u32,
    pub(crate) failures: u32,
    pub(crate) slow: u32,
}

/// The trip rules of a configuration: pure, shared by Closed and HalfOpen decisions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Rules {
    /// Percent, or `None` when the rate rules are off (consecutive failures only).
    pub(crate) failure_rate: Option<f64>,
    /// Percent, used only when slow-call detection is on.
    pub(crate) slow_rate: Option<f64>,
    pub(crate) minimum_calls: u32,
    pub(crate) consecutive_failures: Option<u32>,
}

impl Rules {
    /// Whether a closed breaker with `tally` in its window and `consecutive` failures in a row
    /// trips.
    pub(crate) fn closed_trips(&self, tally: Tally, consecutive: u32) -> bool {
        if let Some(n) = self.consecutive_failures
            && consecutive >= n
        {
            return true;
        }
        tally.calls >= self.minimum_calls && self.rates_exceeded(tally)
    }

    /// Whether the probes' `tally` re-opens a half-open breaker (all probes recorded).
    pub(crate) fn probes_fail(&self, tally: Tally) -> bool {
        if self.failure_rate.is_none() && tally.failures > 0 {
            // Consecutive-failures mode: any failed probe re-opens.
            return true;
        }
        self.rates_exceeded(tally)
    }

    fn rates_exceeded(&self, tally: Tally) -> bool {
        if tally.calls == 0 {
            return false;
        }
        let total = f64::from(tally.calls);
        let over = |count: u32, threshold: Option<f64>| {
            threshold.is_some_and(|t| f64::from(count) * 100.0 >= t * total)
        };
        over(tally.failures, self.failure_rate) || over(tally.slow, self.slow_rate)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn layout_round_trips() {
        let s = Word::initial();
        assert_eq!(s.state(), State::Closed);
        assert_eq!(s.generation(), 0);
        let open = s.next(State::Open);
        assert_eq!(open.state(), State::Open);
        assert_eq!(open.generation(), 1);
        let half = open.next(State::HalfOpen).with_probes(MAX_PROBES);
        assert_eq!(half.probes(), MAX_PROBES);
        assert_eq!(half.generation(), 2);
        assert_eq!(half.state(), State::HalfOpen);
        assert_eq!(half.with_probes(3).probes(), 3);
        assert_eq!(half.next(State::Closed).probes(), 0);

        let now = Instant::from_nanos(5_500_000);
        let until = Timing::new(1, now + Duration::from_secs(60));
        assert!(until.is_of(1) && !until.is_of(2));
        assert!(!until.wait_over(now));
        assert!(!until.wait_over(Instant::from_nanos(60_005_999_999)));
        assert!(until.wait_over(Instant::from_nanos(60_006_000_000)));
        assert_eq!(until.remaining(now), Duration::from_micros(60_000_500));
        let entered = Timing::new(2, now);
        assert_eq!(
            entered.since(now + Duration::from_millis(300)),
            Duration::from_millis(299),
            "entered-at rounds up, so the measured time is at most 1 ms short"
        );
        let forever = Timing::new(3, Instant::MAX);
        assert!(!forever.wait_over(Instant::from_nanos(u64::MAX - 1)));
        assert!(Timing::new(5, now).is_newer_than(4));
        assert!(!Timing::new(4, now).is_newer_than(4));
        assert!(!Timing::new(3, now).is_newer_than(4));
    }

    /// Regression (issue 9 §3): generations were 16 bits, so 65 536 transitions later a permit
    /// of an old period carried the current generation again.
    #[test]
    fn generations_are_49_bits_wide() {
        let mut s = Word::initial();
        for _ in 0..70_000 {
            s = s.next(State::Closed);
        }
        assert_eq!(s.generation(), 70_000);
        let last = Word::pack(State::HalfOpen, GEN_MAX, 7);
        assert_eq!(last.generation(), GEN_MAX);
        assert_eq!(last.probes(), 7);
        assert_eq!(last.next(State::Open).generation(), 0, "wraps at 2^49");
        assert_eq!(GEN_BITS, 49);
        assert!(tag_is_newer(1, 0));
        assert!(tag_is_newer(0, u16::MAX));
        assert!(!tag_is_newer(5, 5));
        assert!(!tag_is_newer(0, 1));
    }

    #[test]
    fn every_tag_decodes() {
        for state in [
            State::Closed,
            State::Open,
            State::HalfOpen,
            State::ForcedOpen,
            State::Disabled,
            State::MetricsOnly,
        ] {
            let s = Word::initial().next(state);
            assert_eq!(s.state(), state);
            assert_eq!(format!("{state}"), state.as_str());
        }
        assert!(!State::Open.admits_calls());
        assert!(State::HalfOpen.admits_calls());
    }

    #[test]
    fn rules_follow_resilience4j() {
        let rules = Rules {
            failure_rate: Some(50.0),
            slow_rate: Some(80.0),
            minimum_calls: 4,
            consecutive_failures: None,
        };
        let t = |calls, failures, slow| Tally {
            calls,
            failures,
            slow,
        };
        assert!(!rules.closed_trips(t(3, 3, 0), 0), "below minimum calls");
        assert!(rules.closed_trips(t(4, 2, 0), 0), "50% is at the threshold");
        assert!(!rules.closed_trips(t(5, 2, 0), 0), "40% is below");
        assert!(rules.closed_trips(t(5, 0, 4), 0), "slow rate 80%");
        assert!(!rules.closed_trips(t(5, 0, 3), 0));
        assert!(rules.probes_fail(t(2, 1, 0)));
        assert!(!rules.probes_fail(t(3, 1, 0)));
        let consecutive = Rules {
            failure_rate: None,
            slow_rate: None,
            minimum_calls: 1,
            consecutive_failures: Some(3),
        };
        assert!(!consecutive.closed_trips(t(100, 99, 0), 2));
        assert!(consecutive.closed_trips(t(3, 3, 0), 3));
        assert!(consecutive.probes_fail(t(3, 1, 0)));
        assert!(!consecutive.probes_fail(t(3, 0, 3)));
    }
}
