//! The client-side throttling arithmetic of the Google SRE book, over a sliding window of
//! atomic counters, with no tower types.
//!
//! Over the last `window`, `requests` counts what the application asked to send (including
//! what was rejected locally) and `accepts` what the backend accepted. A new request is
//! rejected locally with probability `max(0, (requests − K·accepts) / (requests + 1))`.
//!
//! The window is [`BUCKETS`] buckets, each one `AtomicU64` packing an epoch tag (24 bits),
//! requests (20 bits) and accepts (20 bits); a bucket that falls out of the window is swapped
//! empty by whoever touches it next. Counts saturate (a bucket holds at most 2²⁰ − 1 of each).
//!
//! # Memory ordering
//!
//! The counts are statistics that publish nothing: every operation is `Relaxed`; each update
//! is one CAS, so no count is lost.

use palisade_core::clock::Instant;
use palisade_core::sync::atomic::{AtomicU64, Ordering};

/// Buckets in the window.
pub(crate) const BUCKETS: u64 = 10;
const COUNT_BITS: u32 = 20;
const TAG_BITS: u32 = 64 - 2 * COUNT_BITS;
const ACCEPT_SHIFT: u32 = 0;
const REQUEST_SHIFT: u32 = COUNT_BITS;
const TAG_SHIFT: u32 = 2 * COUNT_BITS;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counts {
    tag: u64,
    requests: u64,
    accepts: u64,
}

impl Counts {
    const fn unpack(word: u64) -> Counts {
        Counts {
            tag: word >> TAG_SHIFT,
            requests: (word >> REQUEST_SHIFT) & COUNT_MAX,
            accepts: (word >> ACCEPT_SHIFT) & COUNT_MAX,
        }
    }

    const fn pack(self) -> u64 {
        (self.tag << TAG_SHIFT) | (self.requests << REQUEST_SHIFT) | (self.accepts << ACCEPT_SHIFT)
    }
}

/// The sliding window of requests and accepts.
pub(crate) struct ThrottleWindow {
    width: u64,
    k: f64,
    buckets: [AtomicU64; BUCKETS as usize],
}

impl ThrottleWindow {
    /// A window of `window_nanos` with multiplier `k`.
    pub(crate) fn new(window_nanos: u64, k: f64) -> ThrottleWindow {
        ThrottleWindow {
            width: (window_nanos / BUCKETS).max(1),
            k,
            buckets: std::array::from_fn(|i| {
                let tag = (i as u64).wrapping_sub(BUCKETS) & TAG_MASK;
                AtomicU64::new(
                    Counts {
                        tag,
                        requests: 0,
                        accepts: 0,
                    }
                    .pack(),
                )
            }),
        }
    }

    /// Counts one request, accepted by the backend or not.
    pub(crate) fn record(&self, now: Instant, accepted: bool) {
        let epoch = now.as_nanos() / self.width;
        let tag = epoch & TAG_MASK;
        let bucket = &self.buckets[(epoch % BUCKETS) as usize];
        // Relaxed: see "Memory ordering" in the module docs.
        let _ = bucket.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| {
            let mut c = Counts::unpack(word);
            if c.tag != tag {
                let ahead = c.tag.wrapping_sub(tag) & TAG_MASK;
                if ahead != 0 && ahead < TAG_MASK / 2 {
                    return None; // a later clock already moved this bucket on
                }
                c = Counts {
                    tag,
                    requests: 0,
                    accepts: 0,
                };
            }
            c.requests = (c.requests + 1).min(COUNT_MAX);
            if accepted {
                c.accepts = (c.accepts + 1).min(COUNT_MAX);
            }
            Some(c.pack())
        });
    }

    /// `(requests, accepts)` in the window at `now`.
    pub(crate) fn totals(&self, now: Instant) -> (u64, u64) {
        let epoch = now.as_nanos() / self.width;
        let (mut requests, mut accepts) = (0, 0);
        for (i, bucket) in self.buckets.iter().enumerate() {
            let offset = (epoch % BUCKETS + BUCKETS - i as u64) % BUCKETS;
            let expected = epoch.wrapping_sub(offset) & TAG_MASK;
            // Relaxed: see "Memory ordering" in the module docs.
            let c = Counts::unpack(bucket.load(Ordering::Relaxed));
            if c.tag == expected {
                requests += c.requests;
                accepts += c.accepts;
            }
        }
        (requests, accepts)
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
            w.record(Instant::from_nanos(0), false);
        }
        w.record(Instant::from_nanos(5_000), true);
        assert_eq!(w.totals(Instant::from_nanos(9_999)), (11, 1));
        assert_eq!(w.totals(Instant::from_nanos(10_000)), (1, 1));
        assert_eq!(w.totals(Instant::from_nanos(15_000)), (0, 0));
        w.record(Instant::from_nanos(20_000), false);
        assert_eq!(w.totals(Instant::from_nanos(20_000)), (1, 0));
    }
}
