//! The RAII permit of one admitted call.

use crate::breaker::Local;
use crate::state::Generation;
use palisade_core::classify::{Classify, ErrorIsFailure, Outcome};
use palisade_core::clock::Instant;
use palisade_core::sync::Arc;
use std::fmt;
use std::time::Duration;

/// How a call was admitted, and so where its outcome goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// `Disabled`: nothing is recorded.
    Untracked,
    /// `Closed` or `MetricsOnly` of this generation: into the sliding window.
    Window(Generation),
    /// A half-open probe of this generation.
    Probe(Generation),
}

/// Permission to make one call, from [`CircuitBreaker::try_acquire`](crate::CircuitBreaker::try_acquire).
///
/// Complete it with the call's outcome: [`success`](Permit::success),
/// [`failure`](Permit::failure), [`record`](Permit::record) or
/// [`record_result`](Permit::record_result). A permit dropped without an outcome counts as a
/// cancelled call: it is ignored, and a half-open probe permit is given back so another probe
/// can run. A permit dropped while its thread panics counts as a failure.
///
/// With slow-call detection on, the call's duration is measured from
/// [`try_acquire`](crate::CircuitBreaker::try_acquire) to the outcome.
#[must_use = "a permit records the call's outcome when completed; dropping it at once counts as a cancelled call"]
pub struct Permit {
    local: Arc<Local>,
    admission: Admission,
    started: Instant,
    done: bool,
}

impl Permit {
    pub(crate) fn new(local: Arc<Local>, admission: Admission) -> Permit {
        Permit {
            local,
            admission,
            started: Instant::ZERO,
            done: false,
        }
    }

    /// Starts the call's timer, when slow-call detection needs it.
    #[inline]
    pub(crate) fn start(&mut self) {
        if self.local.shared.times_calls() && self.admission != Admission::Untracked {
            self.started = self.local.shared.clock().now();
        }
    }

    /// The end time and duration of the call, read only when the breaker needs them.
    #[inline]
    pub(crate) fn end(&self) -> (Instant, Option<Duration>) {
        let shared = &self.local.shared;
        if self.admission == Admission::Untracked || !shared.needs_end_time() {
            return (Instant::ZERO, None);
        }
        let now = shared.clock().now();
        let elapsed = shared
            .times_calls()
            .then(|| now.saturating_duration_since(self.started));
        (now, elapsed)
    }

    /// Records `outcome` for a call that ended at `now` after `elapsed`.
    #[inline]
    pub(crate) fn complete(mut self, outcome: Outcome, now: Instant, elapsed: Option<Duration>) {
        self.done = true;
        self.local
            .shared
            .complete(self.admission, outcome, now, elapsed);
    }

    /// Classifies `result` with `classifier` (with the call's duration when it was measured)
    /// and records it.
    #[inline]
    pub(crate) fn classify_and_complete<C, Res, Err>(
        self,
        classifier: &C,
        result: Result<&Res, &Err>,
    ) where
        C: Classify<Res, Err> + ?Sized,
    {
        let (now, elapsed) = self.end();
        let outcome = match elapsed {
            Some(elapsed) => classifier.classify_timed(result, elapsed),
            None => classifier.classify(result),
        };
        self.complete(outcome, now, elapsed);
    }

    /// Records the call's outcome.
    pub fn record(self, outcome: Outcome) {
        let (now, elapsed) = self.end();
        self.complete(outcome, now, elapsed);
    }

    /// Records a successful call.
    pub fn success(self) {
        self.record(Outcome::Success);
    }

    /// Records a failed call.
    pub fn failure(self) {
        self.record(Outcome::Failure);
    }

    /// Records `result`: `Ok` is a success, `Err` a failure.
    pub fn record_result<T, E>(self, result: &Result<T, E>) {
        self.classify_and_complete(&ErrorIsFailure, result.as_ref());
    }

    /// Records `result` as `classifier` sees it.
    pub fn record_classified<C, T, E>(self, classifier: &C, result: &Result<T, E>)
    where
        C: Classify<T, E>,
    {
        self.classify_and_complete(classifier, result.as_ref());
    }

    /// Whether this permit is a half-open probe.
    #[must_use]
    pub fn is_probe(&self) -> bool {
        matches!(self.admission, Admission::Probe(_))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Dropped unrecorded: a panic while the call ran is the dependency's failure (or the
        // caller's, but a breaker must not leak the permit either way); otherwise the call was
        // cancelled, which does not count and gives a probe permit back.
        let outcome = if std::thread::panicking() {
            Outcome::Failure
        } else {
            Outcome::Ignore
        };
        let (now, elapsed) = self.end();
        self.local
            .shared
            .complete(self.admission, outcome, now, elapsed);
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("admission", &self.admission)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}
