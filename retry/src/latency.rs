//! A lock-free latency histogram for the hedge delay: log-linear buckets of atomic counters.
//!
//! Latencies are counted in buckets a quarter of an octave wide (each about 19 % wider than the
//! one before) from 1 µs to about 18 minutes; a percentile is the upper edge of the bucket it
//! falls in, so it is at most 19 % high. "Recent" is approximated by halving every count once
//! `window` samples have been recorded since the last halving, so old samples fade
//! geometrically. The percentile is recomputed every [`REFRESH`] samples by the thread that
//! records, and cached in one atomic, so reading it costs one load.
//!
//! # Memory ordering
//!
//! Every counter is a statistic that publishes nothing: all operations are `Relaxed`. A halving
//! racing with increments may lose or keep a few samples, which the approximation tolerates.

use palisade_core::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const SUB_BUCKETS: u32 = 4;
const OCTAVES: u32 = 40;
const BUCKETS: usize = (SUB_BUCKETS * OCTAVES) as usize;
/// Samples between two refreshes of the cached percentile.
pub(crate) const REFRESH: u64 = 32;

/// The histogram.
pub(crate) struct LatencyHistogram {
    counts: Box<[AtomicU64]>,
    recorded: AtomicU64,
    /// The cached percentile in nanoseconds; 0 until `min_samples` were recorded.
    cached: AtomicU64,
    percentile: f64,
    window: u64,
    min_samples: u64,
}

/// The bucket of a latency in microseconds (`>= 1`).
fn bucket(micros: u64) -> usize {
    let micros = micros.max(1);
    let octave = 63 - micros.leading_zeros();
    // The two bits below the leading one pick the quarter within the octave.
    let quarter = if octave >= 2 {
        (micros >> (octave - 2)) & 0b11
    } else {
        (micros << (2 - octave)) & 0b11
    };
    ((octave * SUB_BUCKETS) as usize + quarter as usize).min(BUCKETS - 1)
}

/// The upper edge of a bucket, in microseconds.
fn upper_edge(bucket: usize) -> u64 {
    let octave = bucket as u32 / SUB_BUCKETS;
    let quarter = u64::from(bucket as u32 % SUB_BUCKETS);
    let base = 1u64 << octave;
    base + (base * (quarter + 1)) / u64::from(SUB_BUCKETS)
}

impl LatencyHistogram {
    pub(crate) fn new(percentile: f64, window: u64, min_samples: u64) -> LatencyHistogram {
        LatencyHistogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            recorded: AtomicU64::new(0),
            cached: AtomicU64::new(0),
            percentile,
            window: window.max(REFRESH),
            min_samples,
        }
    }

    /// Counts one latency.
    pub(crate) fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        // Relaxed: see "Memory ordering" in the module docs.
        self.counts[bucket(micros)].fetch_add(1, Ordering::Relaxed);
        // Relaxed: a sample counter that only paces refreshes and halvings.
        let n = self.recorded.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(self.window) {
            for count in self.counts.iter() {
                // Relaxed: an approximate decay (see the module docs).
                let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| Some(c / 2));
            }
        }
        if n >= self.min_samples && n.is_multiple_of(REFRESH) {
            self.refresh();
        }
    }

    /// Recomputes the cached percentile: two passes over the counters, no allocation.
    fn refresh(&self) {
        // Relaxed: statistics.
        let total: u64 = self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        if total == 0 {
            return;
        }
        let rank = ((self.percentile / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        let mut found = BUCKETS - 1;
        for (i, count) in self.counts.iter().enumerate() {
            // Relaxed: statistics; a count that moved since the first pass only shifts the
            // estimate by a sample.
            seen += count.load(Ordering::Relaxed);
            if seen >= rank {
                found = i;
                break;
            }
        }
        // Relaxed: a cached statistic.
        self.cached
            .store(upper_edge(found).saturating_mul(1000), Ordering::Relaxed);
    }

    /// The cached percentile, or `None` before `min_samples` samples.
    #[inline]
    pub(crate) fn percentile(&self) -> Option<Duration> {
        // Relaxed: a cached statistic.
        match self.cached.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_edges_bound_their_values() {
        let mut last = 0;
        for micros in [1u64, 2, 3, 4, 5, 7, 8, 100, 1000, 1_000_000, u64::MAX / 2] {
            let b = bucket(micros);
            assert!(b >= last, "{micros}");
            last = b;
            if b < BUCKETS - 1 {
                assert!(
                    upper_edge(b) >= micros,
                    "{micros} above edge {}",
                    upper_edge(b)
                );
                assert!(upper_edge(b) as f64 <= micros as f64 * 1.25 + 1.0);
            }
        }
    }

    #[test]
    fn the_percentile_is_within_a_bucket_of_the_truth() {
        let h = LatencyHistogram::new(95.0, 1_000_000, 64);
        assert_eq!(h.percentile(), None);
        for i in 0..1000u64 {
            // 1..=1000 ms: the true p95 is 950 ms.
            h.record(Duration::from_millis(i % 1000 + 1));
        }
        let p95 = h.percentile().unwrap();
        assert!(p95 >= Duration::from_millis(950), "{p95:?}");
        assert!(p95 <= Duration::from_millis(1190), "{p95:?}");
    }

    #[test]
    fn old_samples_fade() {
        let h = LatencyHistogram::new(50.0, 256, 32);
        for _ in 0..2048 {
            h.record(Duration::from_millis(100));
        }
        for _ in 0..2048 {
            h.record(Duration::from_millis(10));
        }
        let p50 = h.percentile().unwrap();
        assert!(p50 < Duration::from_millis(13), "{p50:?}");
    }
}
