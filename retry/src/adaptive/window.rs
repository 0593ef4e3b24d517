//! The client-side throttling arithmetic of the Google SRE book, over core's sliding
//! [`EpochRing`], with no tower types.
//!
//! Over the last `window`, `requests` counts what the application asked to send (including
//! what was rejected locally, and what never completed: a request is counted when it is sent)
//! and `accepts` what the backend accepted (counted when the answer comes). A new request is
//! rejected locally with probability `max(0, (requests − K·accepts) / (requests + 1))`.
//!
//! The ring's `first` counter holds requests and `second` accepts; counts saturate at 2²⁰ − 1
//! per bucket; expired buckets are emptied by whoever touches them next.
//!
//! # Memory ordering
//!
//! The counts are statistics that publish nothing; the ring's own orderings (see its docs)
//! are more than enough, and each update is one CAS, so no count is lost.

use palisade_core::clock::Instant;
use palisade_core::ring::{Counts, EpochRing};

/// The sliding window of requests and accepts.
pub(crate) struct ThrottleWindow {
    ring: EpochRing,
    k: f64,
}

impl ThrottleWindow {
    /// A window of `window_nanos` with multiplier `k`.
    pub(crate) fn new(window_nanos: u64, k: f64) -> ThrottleWindow {
        ThrottleWindow {
            ring: EpochRing::new(window_nanos),
            k,
        }
    }

    fn add(&self, now: Instant, requests: u64, accepts: u64) {
        let epoch = self.ring.epoch(now, |_| {});
        // Saturating in the ring; a stale epoch's count is dropped (it has left the window).
        let _ = self.ring.update(
            epoch,
            |c| {
                Some(Counts {
                    first: c.first + requests,
                    second: c.second + accepts,
                })
            },
            |_| {},
        );
    }

    /// Counts one request, when it is sent or rejected locally.
    pub(crate) fn record_request(&self, now: Instant) {
        self.add(now, 1, 0);
    }

    /// Counts one answer the backend accepted.
    pub(crate) fn record_accept(&self, now: Instant) {
        self.add(now, 0, 1);
    }

    /// `(requests, accepts)` in the window at `now`.
    pub(crate) fn totals(&self, now: Instant) -> (u64, u64) {
        let epoch = self.ring.epoch(now, |_| {});
        let c = self.ring.totals(epoch, |_| {});
        (c.first, c.second)
    }

    /// The probability of rejecting a request now.
    pub(crate) fn reject_probability(&self, now: Instant) -> f64 {
        let (requests, accepts) = self.totals(now);
        reject_probability(requests, accepts, self.k)
    }
}

/// `max(0, (requests − k·accepts) / (requests + 1))`.
pub(crate) fn reject_probability(requests: u64, accepts: u64, k: f64) -> f64 {
    ((requests as f64 - k * accepts as f64) / (requests as f64 + 1.0)).max(0.0)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_sre_formula() {
        assert_eq!(reject_probability(0, 0, 2.0), 0.0);
        assert_eq!(reject_probability(100, 100, 2.0), 0.0);
        assert_eq!(
            reject_probability(100, 50, 2.0),
            0.0,
            "at K·accepts = requests"
        );
        assert!((reject_probability(99, 0, 2.0) - 0.99).abs() < 1e-12);
        assert!((reject_probability(100, 25, 2.0) - 50.0 / 101.0).abs() < 1e-12);
    }

    #[test]
    fn counts_expire_with_the_window() {
        let w = ThrottleWindow::new(10_000, 2.0);
        for _ in 0..10 {
            w.record_request(Instant::from_nanos(0));
        }
        w.record_request(Instant::from_nanos(5_000));
        w.record_accept(Instant::from_nanos(5_000));
        assert_eq!(w.totals(Instant::from_nanos(9_999)), (11, 1));
        assert_eq!(w.totals(Instant::from_nanos(10_000)), (1, 1));
        assert_eq!(w.totals(Instant::from_nanos(15_000)), (0, 0));
        w.record_request(Instant::from_nanos(20_000));
        assert_eq!(w.totals(Instant::from_nanos(20_000)), (1, 0));
    }
}
