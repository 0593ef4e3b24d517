//! The breaker's state machine packed into one `u64`, and the pure functions that decide its
//! transitions. No atomics and no tower types here: [`crate::shared`] applies these in CAS
//! loops.
//!
//! # Bit layout
//!
//! ```text
//!  63                                    19 18            3 2     0
//! +----------------------------------------+---------------+-------+
//! |            payload (45 bits)           | generation 16 |  tag  |
//! +----------------------------------------+---------------+-------+
//!
//! payload, by tag:
//!   Open       open-until, whole milliseconds since the clock's origin (rounded up)
//!   HalfOpen   bits 0..12: probes admitted (≤ 4095) | bits 12..45: entered-at ms, mod 2^33
//!   others     zero
//! ```
//!
//! The generation grows by one (wrapping) on every transition. Permits remember the generation
//! that admitted them, so a result that arrives after the state moved on is recognised as stale
//! and cannot count against the new period.

use palisade_core::clock::Instant;
use std::fmt;
use std::time::Duration;

const TAG_BITS: u32 = 3;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
const GEN_SHIFT: u32 = TAG_BITS;
const GEN_BITS: u32 = 16;
const GEN_MASK: u64 = ((1 << GEN_BITS) - 1) << GEN_SHIFT;
const PAYLOAD_SHIFT: u32 = GEN_SHIFT + GEN_BITS;
const PAYLOAD_BITS: u32 = 64 - PAYLOAD_SHIFT;
const PAYLOAD_MAX: u64 = (1 << PAYLOAD_BITS) - 1;
const PROBE_BITS: u32 = 12;
const PROBE_MASK: u64 = (1 << PROBE_BITS) - 1;
const ENTERED_BITS: u32 = PAYLOAD_BITS - PROBE_BITS;
const ENTERED_MASK: u64 = (1 << ENTERED_BITS) - 1;

/// The most probes a half-open breaker can admit (the width of the probe field).
pub(crate) const MAX_PROBES: u32 = PROBE_MASK as u32;
/// The longest `max_wait_in_half_open` the wrapping entered-at field measures correctly.
pub(crate) const MAX_HALF_OPEN_WAIT: Duration = Duration::from_millis(1 << (ENTERED_BITS - 1));

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

/// A generation number, 16 bits, compared with wrapping arithmetic.
pub(crate) type Generation = u16;

/// `a` was created after `b` (within half the wrapping range).
#[inline]
pub(crate) const fn is_newer(a: Generation, b: Generation) -> bool {
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

    const fn pack(state: State, generation: Generation, payload: u64) -> Word {
        Word(
            (state as u64)
                | ((generation as u64) << GEN_SHIFT)
                | ((payload & PAYLOAD_MAX) << PAYLOAD_SHIFT),
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
        ((self.0 & GEN_MASK) >> GEN_SHIFT) as Generation
    }

    #[inline]
    const fn payload(self) -> u64 {
        self.0 >> PAYLOAD_SHIFT
    }

    /// Open: when the open wait ends, in ms since the clock's origin.
    #[inline]
    pub(crate) const fn open_until_ms(self) -> u64 {
        self.payload()
    }

    /// HalfOpen: probes admitted and not given back.
    #[inline]
    pub(crate) const fn probes(self) -> u32 {
        (self.payload() & PROBE_MASK) as u32
    }

    /// HalfOpen: the millisecond it was entered, modulo 2^33.
    #[inline]
    const fn entered_ms(self) -> u64 {
        (self.payload() >> PROBE_BITS) & ENTERED_MASK
    }

    /// The same generation with one more (`+1`) or one fewer (`-1`) probe. Half-open only.
    #[inline]
    pub(crate) const fn with_probes(self, probes: u32) -> Word {
        let payload = (self.payload() & !PROBE_MASK) | (probes as u64 & PROBE_MASK);
        Word::pack(self.state(), self.generation(), payload)
    }

    /// `state` in the next generation. `open_until` is used by `Open`, `now` by `HalfOpen`.
    #[inline]
    pub(crate) const fn next(self, state: State, now: Instant, open_until: Instant) -> Word {
        let payload = match state {
            State::Open => ceil_ms(open_until),
            State::HalfOpen => (ceil_ms(now) & ENTERED_MASK) << PROBE_BITS,
            _ => 0,
        };
        Word::pack(state, self.generation().wrapping_add(1), payload)
    }

    /// Open: whether the wait is over at `now`.
    #[inline]
    pub(crate) const fn open_wait_over(self, now: Instant) -> bool {
        now.as_nanos() >= self.open_until_ms().saturating_mul(NANOS_PER_MS)
    }

    /// Open: how long until the wait is over.
    pub(crate) const fn open_remaining(self, now: Instant) -> Duration {
        Duration::from_nanos(
            self.open_until_ms()
                .saturating_mul(NANOS_PER_MS)
                .saturating_sub(now.as_nanos()),
        )
    }

    /// HalfOpen: how long it has been half-open (exact below `MAX_HALF_OPEN_WAIT`·2).
    pub(crate) const fn half_open_for(self, now: Instant) -> Duration {
        let now_ms = (now.as_nanos() / NANOS_PER_MS) & ENTERED_MASK;
        Duration::from_millis(now_ms.wrapping_sub(self.entered_ms()) & ENTERED_MASK)
    }
}

impl fmt::Debug for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Word");
        d.field("state", &self.state())
            .field("generation", &self.generation());
        match self.state() {
            State::Open => d.field("open_until_ms", &self.open_until_ms()),
            State::HalfOpen => d.field("probes", &self.probes()),
            _ => &mut d,
        };
        d.finish()
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
        let now = Instant::from_nanos(5_500_000);
        let open = s.next(State::Open, now, now + Duration::from_secs(60));
        assert_eq!(open.state(), State::Open);
        assert_eq!(open.generation(), 1);
        assert_eq!(open.open_until_ms(), 60_006);
        assert!(!open.open_wait_over(now));
        assert!(!open.open_wait_over(Instant::from_nanos(60_005_999_999)));
        assert!(open.open_wait_over(Instant::from_nanos(60_006_000_000)));
        assert_eq!(open.open_remaining(now), Duration::from_micros(60_000_500));
        let half = open.next(State::HalfOpen, now, now);
        assert_eq!(half.state(), State::HalfOpen);
        assert_eq!(half.probes(), 0);
        let half = half.with_probes(MAX_PROBES);
        assert_eq!(half.probes(), MAX_PROBES);
        assert_eq!(half.generation(), 2);
        assert_eq!(half.state(), State::HalfOpen);
        assert_eq!(
            half.half_open_for(now + Duration::from_millis(300)),
            Duration::from_millis(299),
            "entered-at rounds up, so the measured time is at most 1 ms short"
        );
    }

    #[test]
    fn generations_wrap_and_compare() {
        let mut s = Word::initial();
        for _ in 0..70_000 {
            s = s.next(State::Closed, Instant::ZERO, Instant::ZERO);
        }
        assert_eq!(s.generation(), (70_000 % 65_536) as u16);
        assert!(is_newer(1, 0));
        assert!(is_newer(0, u16::MAX));
        assert!(!is_newer(5, 5));
        assert!(!is_newer(0, 1));
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
            let s = Word::initial().next(state, Instant::ZERO, Instant::ZERO);
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
