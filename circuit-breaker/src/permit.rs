//! The RAII permits of admitted calls: [`Permit`] borrows the breaker, [`OwnedPermit`] holds a
//! reference to it (for futures and tasks).

use crate::circuit_breaker::Local;
use crate::shared::Shared;
use crate::state::Generation;
use crossbeam_utils::CachePadded;
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

/// What a permit reaches the breaker through.
pub(crate) trait Holder {
    fn shared(&self) -> &Shared;
}

impl Holder for &Shared {
    #[inline]
    fn shared(&self) -> &Shared {
        self
    }
}

impl Holder for Arc<CachePadded<Local>> {
    #[inline]
    fn shared(&self) -> &Shared {
        &self.shared
    }
}

/// The logic both permits share.
pub(crate) struct Core<H: Holder> {
    holder: H,
    admission: Admission,
    started: Instant,
    done: bool,
}

impl<H: Holder> Core<H> {
    #[inline]
    pub(crate) fn new(holder: H, admission: Admission) -> Self {
        Core {
            holder,
            admission,
            started: Instant::ZERO,
            done: false,
        }
    }

    /// Starts the call's timer, when slow-call detection needs it.
    #[inline]
    pub(crate) fn start(&mut self) {
        let shared = self.holder.shared();
        if shared.times_calls() && self.admission != Admission::Untracked {
            self.started = shared.clock().now();
        }
    }

    /// The end time and duration of the call, read only when the breaker needs them.
    #[inline]
    fn end(&self) -> (Instant, Option<Duration>) {
        let shared = self.holder.shared();
        if self.admission == Admission::Untracked || !shared.needs_end_time() {
            return (Instant::ZERO, None);
        }
        let now = shared.clock().now();
        let elapsed = shared
            .times_calls()
            .then(|| now.saturating_duration_since(self.started));
        (now, elapsed)
    }

    /// Records `outcome` once: a completed core records nothing more, not even when dropped.
    #[inline]
    fn complete(&mut self, outcome: Outcome, now: Instant, elapsed: Option<Duration>) {
        if self.done {
            return;
        }
        self.done = true;
        self.holder
            .shared()
            .complete(self.admission, outcome, now, elapsed);
    }

    #[inline]
    pub(crate) fn classify_and_complete<C, Res, Err>(
        mut self,
        classifier: &C,
        result: Result<&Res, &Err>,
    ) where
        C: Classify<Res, Err> + ?Sized,
    {
        self.classify_and_complete_in_place(classifier, result);
    }

    /// [`classify_and_complete`](Self::classify_and_complete) on a permit that stays where it
    /// is (a response future's field, dropped there after): no move of the permit.
    #[inline]
    pub(crate) fn classify_and_complete_in_place<C, Res, Err>(
        &mut self,
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

    #[inline]
    pub(crate) fn record(mut self, outcome: Outcome) {
        let (now, elapsed) = self.end();
        self.complete(outcome, now, elapsed);
    }
}

impl<H: Holder> Drop for Core<H> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Dropped unrecorded: the call was cancelled, which does not count and gives a probe
        // permit back. Also while the thread panics: the breaker cannot tell the caller's own
        // panic from the dependency's, so only a panic it saw the inner service make counts
        // as a failure (the tower service records that itself, see `future.rs`).
        let (now, elapsed) = self.end();
        self.holder
            .shared()
            .complete(self.admission, Outcome::Ignore, now, elapsed);
    }
}

macro_rules! permit_api {
    ($name:ident $(<$lt:lifetime>)?) => {
        impl $(<$lt>)? $name $(<$lt>)? {
            /// Records the call's outcome.
            pub fn record(self, outcome: Outcome) {
                self.0.record(outcome);
            }

            /// Records a successful call.
            pub fn success(self) {
                self.0.record(Outcome::Success);
            }

            /// Records a failed call.
            pub fn failure(self) {
                self.0.record(Outcome::Failure);
            }

            /// Records `result` as the default classifier sees it: `Ok` is a success, `Err` a
            /// failure, a local rejection of a layer below is ignored.
            pub fn record_result<T, E: 'static>(self, result: &Result<T, E>) {
                self.0.classify_and_complete(&ErrorIsFailure, result.as_ref());
            }

            /// Records `result` as `classifier` sees it (with the call's duration when the
            /// breaker measured it).
            pub fn record_classified<C, T, E>(self, classifier: &C, result: &Result<T, E>)
            where
                C: Classify<T, E>,
            {
                self.0.classify_and_complete(classifier, result.as_ref());
            }

            /// Whether this permit is a half-open probe.
            #[must_use]
            pub fn is_probe(&self) -> bool {
                matches!(self.0.admission, Admission::Probe(_))
            }
        }

        impl $(<$lt>)? fmt::Debug for $name $(<$lt>)? {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("admission", &self.0.admission)
                    .field("started", &self.0.started)
                    .finish_non_exhaustive()
            }
        }
    };
}

/// Permission to make one call, borrowed from the breaker: from
/// [`CircuitBreaker::try_acquire`](crate::CircuitBreaker::try_acquire).
///
/// Complete it with the call's outcome: [`success`](Permit::success),
/// [`failure`](Permit::failure), [`record`](Permit::record) or
/// [`record_result`](Permit::record_result). A permit dropped without an outcome counts as a
/// cancelled call: it is ignored, and a half-open probe permit is given back so another probe
/// can run. That holds while its thread panics too, since the breaker cannot tell whose panic
/// it is: to count a panic of the guarded call, catch it and call
/// [`failure`](Permit::failure).
///
/// With slow-call detection on, the call's duration is measured from `try_acquire` to the
/// outcome. Borrowing costs nothing; to move a permit into a task, use
/// [`OwnedPermit`].
#[must_use = "a permit records the call's outcome when completed; dropping it at once counts as a cancelled call"]
pub struct Permit<'a>(pub(crate) Core<&'a Shared>);

/// A [`Permit`] that owns a reference to its breaker, so it can move into a task or a future:
/// from [`CircuitBreaker::try_acquire_owned`](crate::CircuitBreaker::try_acquire_owned).
/// It behaves exactly like a `Permit`.
#[must_use = "a permit records the call's outcome when completed; dropping it at once counts as a cancelled call"]
pub struct OwnedPermit(pub(crate) Core<Arc<CachePadded<Local>>>);

permit_api!(Permit<'a>);
permit_api!(OwnedPermit);
