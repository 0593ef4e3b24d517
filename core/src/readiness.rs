//! Why a service answered `Pending`: *shut* for a known time, or *busy*.
//!
//! tower's `poll_ready` has one way to say "not now", `Pending`, whether the service is busy
//! (a slot frees when a call ends, soon) or shut (a circuit breaker in gate mode that is open
//! and will not let a call through until its wait is over, seconds from now). A balancer must
//! tell the two apart. It waits for a busy endpoint, but it passes over a shut one like an
//! open breaker of its own, and when every endpoint is shut it answers a local rejection at
//! once instead of making the caller wait out the breakers (DESIGN.md: a local rejection
//! fails fast; an endpoint whose breaker is open is not a candidate).
//!
//! The shut service says so on the thread that polls it: right before it returns `Pending`
//! because it is shut, it calls [`report_shut`] with how long it stays shut. A poller that
//! cares runs the poll inside [`poll_observing`], which clears any earlier note first (one a
//! poller that did not care left behind) and, when the poll is `Pending`, takes the note the
//! poll left. Layers in between (a timeout, a `map_err`) pass the poll through and need to do
//! nothing. A poller that does not look (tower's `Balance`, `Buffer`) sees plain `Pending`,
//! as before; the note it leaves behind is cleared by the next observed poll.
//!
//! ```
//! use palisade_core::readiness::{poll_observing, report_shut};
//! use std::task::Poll;
//! use std::time::Duration;
//!
//! // A gate that is shut for 3 s.
//! let shut_gate = || {
//!     report_shut(Duration::from_secs(3));
//!     Poll::<()>::Pending
//! };
//! assert_eq!(poll_observing(shut_gate), (Poll::Pending, Some(Duration::from_secs(3))));
//!
//! // A busy service: `Pending` without a note.
//! assert_eq!(poll_observing(|| Poll::<()>::Pending), (Poll::Pending, None));
//! // A ready one: no note is looked for.
//! assert_eq!(poll_observing(|| Poll::Ready(())), (Poll::Ready(()), None));
//! ```
//!
//! Internal to Palisade's layer crates (hidden from the docs): not part of the stable API.

#![doc(hidden)]

use std::cell::Cell;
use std::task::Poll;
use std::time::Duration;

/// No note: the last observed poll has not reported itself shut.
const NO_NOTE: u64 = 0;

#[cfg(not(loom))]
std::thread_local! {
    /// How long the service polled last said it stays shut, in nanoseconds plus one
    /// ([`NO_NOTE`]: no note). A plain `Cell`: a note never leaves its thread.
    static SHUT_FOR: Cell<u64> = const { Cell::new(NO_NOTE) };
}

// Loom runs every model thread on one OS thread: its own thread-locals keep them apart.
#[cfg(loom)]
loom::thread_local! {
    static SHUT_FOR: Cell<u64> = Cell::new(NO_NOTE);
}

/// Tells the poller on this thread that the service being polled is shut for `wait`, and will
/// not be ready before that (however often it is polled). Call it right before returning
/// `Pending` for that reason; a service that is only busy does not call it.
#[inline]
pub fn report_shut(wait: Duration) {
    let nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX - 1);
    SHUT_FOR.with(|note| note.set(nanos.saturating_add(1)));
}

/// Runs `poll` (one `poll_ready` of a service) and returns its answer, with how long the
/// service reported itself shut if the answer is `Pending` and it did (see [`report_shut`]).
/// A note left behind by an earlier poll is cleared first, so only this poll's counts.
#[inline]
pub fn poll_observing<T>(poll: impl FnOnce() -> Poll<T>) -> (Poll<T>, Option<Duration>) {
    SHUT_FOR.with(|note| note.set(NO_NOTE));
    let answer = poll();
    if answer.is_ready() {
        return (answer, None);
    }
    let note = SHUT_FOR.with(|note| note.replace(NO_NOTE));
    let shut = (note != NO_NOTE).then(|| Duration::from_nanos(note - 1));
    (answer, shut)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_note_left_by_an_unobserved_poll_is_not_read_by_the_next_observed_one() {
        report_shut(Duration::from_secs(1));
        assert_eq!(
            poll_observing(|| Poll::<()>::Pending),
            (Poll::Pending, None)
        );
    }

    #[test]
    fn a_note_is_taken_once() {
        let (_, first) = poll_observing(|| {
            report_shut(Duration::from_millis(5));
            Poll::<()>::Pending
        });
        assert_eq!(first, Some(Duration::from_millis(5)));
        let (_, second) = poll_observing(|| Poll::<()>::Pending);
        assert_eq!(second, None);
    }

    #[test]
    fn a_nested_observer_takes_its_own_note_and_the_outer_one_sees_none() {
        // An inner balancer polls a shut gate and, with another endpoint busy, is `Pending`
        // itself: busy, as far as the outer poller can tell.
        let (answer, outer) = poll_observing(|| {
            let (_, inner) = poll_observing(|| {
                report_shut(Duration::from_secs(2));
                Poll::<()>::Pending
            });
            assert_eq!(inner, Some(Duration::from_secs(2)));
            Poll::<()>::Pending
        });
        assert_eq!((answer, outer), (Poll::Pending, None));
    }

    #[test]
    fn zero_and_huge_waits_survive_the_encoding() {
        for (wait, expected) in [
            (Duration::ZERO, Duration::ZERO),
            (Duration::from_nanos(1), Duration::from_nanos(1)),
            (Duration::MAX, Duration::from_nanos(u64::MAX - 1)),
        ] {
            let (_, shut) = poll_observing(|| {
                report_shut(wait);
                Poll::<()>::Pending
            });
            assert_eq!(shut, Some(expected), "{wait:?}");
        }
    }

    #[test]
    fn a_ready_poll_reports_nothing_even_if_the_service_noted_itself_shut() {
        let (answer, shut) = poll_observing(|| {
            report_shut(Duration::from_secs(1));
            Poll::Ready(())
        });
        assert_eq!((answer, shut), (Poll::Ready(()), None));
        // And the stray note does not reach the next observed poll either.
        assert_eq!(poll_observing(|| Poll::<()>::Pending).1, None);
    }
}
