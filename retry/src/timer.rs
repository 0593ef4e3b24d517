//! The retry future's one timer, armed lazily.
//!
//! The future keeps the *time* its current wait ends (the attempt's limit, the deadline, or
//! the end of a backoff) on the policy's clock, and makes the tokio `Sleep` only when it has
//! to wait: the first time the attempt, the readiness wait or the backoff is `Pending`. A call
//! whose attempt answers at once (a cache, a local rejection, a synchronous service) never
//! makes one, so it pays neither tokio's clock read nor its runtime-handle lookup; a call that
//! waits gets the same timer, ending at the same time, as one made when the call began.

use palisade_core::clock::{Clock, Instant};
use pin_project::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::time::Sleep;

/// When the current wait ends, and its tokio timer once one was needed.
#[pin_project]
#[derive(Debug)]
pub(crate) struct LazyTimer {
    /// The end of the current wait on the policy's clock; `None`: nothing bounds it.
    at: Option<Instant>,
    /// The tokio timer for `at`, made at the first poll that has to wait.
    #[pin]
    sleep: Option<Sleep>,
}

impl LazyTimer {
    /// A timer that ends at `at` (none if `None`), not armed yet.
    pub(crate) fn new(at: Option<Instant>) -> LazyTimer {
        LazyTimer { at, sleep: None }
    }

    /// Sets the end of the next wait (none if `None`), dropping the current one's timer.
    pub(crate) fn set(self: Pin<&mut Self>, at: Option<Instant>) {
        let mut this = self.project();
        *this.at = at;
        this.sleep.set(None);
    }

    /// `None` when nothing bounds the wait; else whether its end has come, arming the tokio
    /// timer (for the time left on `clock`) on the first call.
    ///
    /// # Panics
    ///
    /// When it has to arm the timer outside a tokio runtime (tokio's timer needs one).
    pub(crate) fn poll_elapsed(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        clock: &Clock,
    ) -> Option<Poll<()>> {
        let mut this = self.project();
        let at = (*this.at)?;
        if this.sleep.is_none() {
            let left = at.saturating_duration_since(clock.now());
            this.sleep.set(Some(tokio::time::sleep(left)));
        }
        this.sleep.as_pin_mut().map(|sleep| sleep.poll(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::clock::ManualClock;
    use std::time::Duration;

    fn poll(timer: Pin<&mut LazyTimer>, clock: &Clock) -> Option<Poll<()>> {
        let waker = futures::task::noop_waker();
        timer.poll_elapsed(&mut Context::from_waker(&waker), clock)
    }

    #[test]
    fn an_unset_timer_bounds_nothing_and_needs_no_runtime() {
        let clock = ManualClock::new();
        let mut timer = Box::pin(LazyTimer::new(None));
        assert_eq!(poll(timer.as_mut(), &clock.clock()), None);
        // Set but never polled: no tokio timer is made, so no runtime is needed either.
        timer
            .as_mut()
            .set(Some(clock.clock().now() + Duration::from_secs(1)));
        assert!(timer.sleep.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_ends_where_it_was_set_not_where_it_was_armed() {
        let manual = ManualClock::new();
        let clock = manual.clock();
        let mut timer = Box::pin(LazyTimer::new(Some(
            clock.now() + Duration::from_millis(100),
        )));
        // 60 ms pass on the policy's clock before the first wait: 40 ms are left.
        manual.advance(Duration::from_millis(60));
        tokio::time::advance(Duration::from_millis(60)).await;
        assert_eq!(poll(timer.as_mut(), &clock), Some(Poll::Pending));
        tokio::time::advance(Duration::from_millis(39)).await;
        assert_eq!(poll(timer.as_mut(), &clock), Some(Poll::Pending));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(poll(timer.as_mut(), &clock), Some(Poll::Ready(())));
        // A new end drops the old timer; the next wait arms its own.
        timer
            .as_mut()
            .set(Some(clock.now() + Duration::from_millis(5)));
        assert!(timer.sleep.is_none());
        assert_eq!(poll(timer.as_mut(), &clock), Some(Poll::Pending));
        tokio::time::advance(Duration::from_millis(5)).await;
        assert_eq!(poll(timer.as_mut(), &clock), Some(Poll::Ready(())));
    }
}
