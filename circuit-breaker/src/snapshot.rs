//! [`Snapshot`]: a point-in-time copy of a breaker's state and statistics.

use crate::shared::Shared;
use crate::state::State;

/// A point-in-time copy of a breaker's state and statistics, from
/// [`CircuitBreaker::snapshot`](crate::CircuitBreaker::snapshot).
///
/// The fields are read one after another, not atomically together: under concurrent calls
/// they may be a few calls apart.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
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
    /// Calls rejected since the breaker was built or last reset (a gated service's wait is
    /// not a rejection and is not counted).
    pub rejected_calls: u64,
    /// Failures in a row (counted only with `consecutive_failures` set).
    pub consecutive_failures: u32,
}

/// Renamed to [`Snapshot`].
#[deprecated(note = "renamed to `Snapshot`")]
pub type Metrics = Snapshot;

impl Snapshot {
    pub(crate) fn of(shared: &Shared) -> Snapshot {
        let word = shared.load();
        let tally = shared.tally(word);
        let rate = |n: u32| {
            if tally.calls == 0 {
                0.0
            } else {
                f64::from(n) * 100.0 / f64::from(tally.calls)
            }
        };
        Snapshot {
            state: word.state(),
            calls: tally.calls,
            failed_calls: tally.failures,
            slow_calls: tally.slow,
            failure_rate: rate(tally.failures),
            slow_call_rate: rate(tally.slow),
            // A statistic (Relaxed inside): the stripes are summed one after another.
            rejected_calls: shared.rejected.sum(),
            consecutive_failures: shared.streak.get(crate::state::tag_of(word.generation())),
        }
    }
}
