//! The sample window: a few atomic counters every completion folds into, closed by one caller.

use super::Sample;
use crossbeam_utils::CachePadded;
use palisade_core::clock::{Instant, duration_to_nanos};
use palisade_core::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How the layer batches completions into [`Sample`]s for an adaptive algorithm.
///
/// A window closes at the first completion after both (a) at least
/// [`min_samples`](Self::min_samples) calls completed in it and (b) its length elapsed. The
/// length follows the mean RTT of the previous window, bounded by
/// [`min_window`](Self::min_window) and [`max_window`](Self::max_window); so the algorithm runs
/// about once per RTT, and never more often than once per `min_window`.
///
/// Netflix's `WindowedLimit` uses fixed 1 s windows of at least 10 samples; following the RTT
/// lets a limit converge in a number of round trips rather than seconds.
///
/// | parameter     | default | why |
/// |---------------|---------|-----|
/// | `min_samples` | 10      | Netflix `WindowedLimit`'s window size: fewer calls make a mean RTT too noisy to act on |
/// | `min_window`  | 1 ms    | bounds how often the algorithm runs (at most 1 000 times a second) on very fast dependencies |
/// | `max_window`  | 1 s     | Netflix `WindowedLimit`'s (fixed) window: a slow dependency still gets a decision every second |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptiveConfig {
    pub(crate) min_samples: u64,
    pub(crate) min_window: Duration,
    pub(crate) max_window: Duration,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        AdaptiveConfig {
            min_samples: 10,
            min_window: Duration::from_millis(1),
            max_window: Duration::from_secs(1),
        }
    }
}

impl AdaptiveConfig {
    /// The defaults in the table above.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Completions a window needs before it may close (at least 1).
    #[must_use]
    pub fn min_samples(mut self, samples: u64) -> Self {
        self.min_samples = samples;
        self
    }

    /// The shortest window.
    #[must_use]
    pub fn min_window(mut self, window: Duration) -> Self {
        self.min_window = window;
        self
    }

    /// The longest window.
    #[must_use]
    pub fn max_window(mut self, window: Duration) -> Self {
        self.max_window = window;
        self
    }

    pub(crate) fn validate(self) -> Result<Self, palisade_core::ConfigError> {
        if self.min_samples == 0 {
            return Err(palisade_core::ConfigError::new(
                "min_samples",
                "must be at least 1",
            ));
        }
        palisade_core::error::check_ordered("max_window", self.min_window, self.max_window)?;
        Ok(self)
    }
}

/// Deadline value while one caller is closing the window.
const CLOSING: u64 = u64::MAX;

/// The counters of the open window. All on one cache line: every completion writes several of
/// them, so one line moves between cores instead of five.
#[derive(Debug)]
pub(crate) struct Window {
    counters: CachePadded<Counters>,
    config: AdaptiveConfig,
}

#[derive(Debug)]
struct Counters {
    /// End of the window (clock nanoseconds), or `CLOSING`.
    deadline: AtomicU64,
    count: AtomicU64,
    rtt_sum: AtomicU64,
    min_rtt: AtomicU64,
    max_in_flight: AtomicU64,
    drops: AtomicU64,
}

impl Window {
    pub(crate) fn new(config: AdaptiveConfig, now: Instant) -> Window {
        Window {
            counters: CachePadded::new(Counters {
                deadline: AtomicU64::new((now + config.min_window).as_nanos()),
                count: AtomicU64::new(0),
                rtt_sum: AtomicU64::new(0),
                min_rtt: AtomicU64::new(u64::MAX),
                max_in_flight: AtomicU64::new(0),
                drops: AtomicU64::new(0),
            }),
            config,
        }
    }

    /// Folds in one completion. Returns the window's sample when this call closed it: the
    /// caller then runs the algorithm and must call [`Window::reopen`].
    ///
    /// Calls recorded while another caller is closing the window may land in either window;
    /// the counters are swapped one by one, so such a call can be counted in the mean of one
    /// window and the count of the next. That skews one sample of many slightly, never the
    /// limit's safety.
    #[inline]
    pub(crate) fn record(
        &self,
        now: Instant,
        rtt: Duration,
        in_flight: u32,
        dropped: bool,
    ) -> Option<Sample> {
        let c = &*self.counters;
        let rtt = duration_to_nanos(rtt);
        // Relaxed (all counters): statistics; the closing caller reads them with RMWs that
        // see every earlier RMW on the same counter, and no other data hangs on them.
        let count = c.count.fetch_add(1, Ordering::Relaxed) + 1;
        c.rtt_sum.fetch_add(rtt, Ordering::Relaxed);
        // Relaxed: a cheap pre-check; the RMW below only runs when it could change the value.
        if rtt < c.min_rtt.load(Ordering::Relaxed) {
            // Relaxed: statistic.
            c.min_rtt.fetch_min(rtt, Ordering::Relaxed);
        }
        let in_flight = u64::from(in_flight);
        // Relaxed: pre-check as above.
        if in_flight > c.max_in_flight.load(Ordering::Relaxed) {
            // Relaxed: statistic.
            c.max_in_flight.fetch_max(in_flight, Ordering::Relaxed);
        }
        if dropped {
            // Relaxed: statistic.
            c.drops.fetch_add(1, Ordering::Relaxed);
        }
        // Relaxed: the deadline publishes nothing; the CAS below decides who closes.
        let deadline = c.deadline.load(Ordering::Relaxed);
        if now.as_nanos() < deadline || count < self.config.min_samples {
            return None;
        }
        self.close(deadline)
    }

    #[cold]
    fn close(&self, deadline: u64) -> Option<Sample> {
        let c = &*self.counters;
        // Acquire: the winner reads counters written before the previous reopen (Release);
        // Relaxed on failure: someone else closes this window.
        c.deadline
            .compare_exchange(deadline, CLOSING, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        // Relaxed (swaps): see `record`.
        let count = c.count.swap(0, Ordering::Relaxed).max(1);
        let sum = c.rtt_sum.swap(0, Ordering::Relaxed);
        let min = c.min_rtt.swap(u64::MAX, Ordering::Relaxed);
        let max_in_flight = c.max_in_flight.swap(0, Ordering::Relaxed);
        let drops = c.drops.swap(0, Ordering::Relaxed);
        let mean = Duration::from_nanos(sum / count);
        let min_rtt = if min == u64::MAX {
            mean
        } else {
            Duration::from_nanos(min)
        };
        Some(Sample {
            rtt: mean,
            min_rtt,
            in_flight: max_in_flight as usize,
            dropped: drops > 0,
            samples: count,
            drops,
        })
    }

    /// Opens the next window after `closed` was handed to the algorithm at `now`.
    pub(crate) fn reopen(&self, now: Instant, closed: &Sample) {
        let length = closed
            .rtt
            .clamp(self.config.min_window, self.config.max_window);
        // Release: pairs with the Acquire of the next closer.
        self.counters
            .deadline
            .store((now + length).as_nanos(), Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn closes_after_min_samples_and_the_window_length_once() {
        let config = AdaptiveConfig::new()
            .min_samples(3)
            .min_window(Duration::from_millis(10));
        let w = Window::new(config, Instant::ZERO);
        let at = |ms| Instant::ZERO + Duration::from_millis(ms);
        let ms = Duration::from_millis;
        assert!(w.record(at(1), ms(4), 1, false).is_none());
        assert!(w.record(at(2), ms(6), 3, true).is_none());
        assert!(
            w.record(at(5), ms(8), 2, false).is_none(),
            "window not over"
        );
        let s = w.record(at(11), ms(2), 1, false).expect("closes");
        assert_eq!(s.samples, 4);
        assert_eq!(s.rtt, ms(5));
        assert_eq!(s.min_rtt, ms(2));
        assert_eq!(s.in_flight, 3);
        assert_eq!((s.dropped, s.drops), (true, 1));
        assert!(w.record(at(12), ms(2), 1, false).is_none(), "closing");
        w.reopen(at(12), &s);
        // Next window: 10 ms (the mean 5 ms is below min_window).
        for i in 0..3 {
            assert!(w.record(at(13 + i), ms(1), 1, false).is_none());
        }
        assert!(w.record(at(22), ms(1), 1, false).is_some());
    }

    #[test]
    fn validates() {
        assert!(AdaptiveConfig::new().min_samples(0).validate().is_err());
        let bad = AdaptiveConfig::new()
            .min_window(Duration::from_secs(2))
            .validate();
        assert_eq!(bad.unwrap_err().field(), "max_window");
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use palisade_core::sync::{Arc, loom};

    /// Two completions past the deadline at once: exactly one closes the window, and the
    /// sample counts both or leaves the other for the next window.
    #[test]
    fn loom_window_closes_exactly_once() {
        loom::model(|| {
            let config = AdaptiveConfig::new().min_samples(1);
            let window = Arc::new(Window::new(config, Instant::ZERO));
            let late = Instant::ZERO + Duration::from_secs(1);
            let other = {
                let window = window.clone();
                loom::thread::spawn(move || window.record(late, Duration::from_millis(1), 1, false))
            };
            let mine = window.record(late, Duration::from_millis(3), 2, true);
            let theirs = other.join().unwrap();
            let closed: Vec<_> = [mine, theirs].into_iter().flatten().collect();
            assert_eq!(closed.len(), 1, "exactly one closer");
            assert!((1..=2).contains(&closed[0].samples));
        });
    }
}
