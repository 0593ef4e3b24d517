//! TCP Vegas applied to concurrency.

use super::{LimitAlgorithm, Sample, check_limits, secs};
use palisade_core::ConfigError;

/// Vegas (Netflix `VegasLimit`): estimates how many calls queue at the backend from the
/// no-load RTT (the minimum seen), `queue = limit × (1 − rtt_noload / rtt)`, and steers it
/// between two thresholds that grow with the logarithm of the limit:
///
/// | queue estimate        | new limit |
/// |-----------------------|-----------|
/// | a drop in the window  | `limit − log10(limit)` |
/// | `≤ log10(limit)`      | `limit + beta` (far below: grow fast) |
/// | `< alpha`             | `limit + log10(limit)` |
/// | `> beta`              | `limit − log10(limit)` |
/// | otherwise             | unchanged |
///
/// with `alpha = 3 × log10(limit)`, `beta = 6 × log10(limit)`, where `log10` is Netflix's
/// integer `max(1, ⌊log10 limit⌋)`. The step is smoothed, and a window that used less than half
/// of the limit leaves it unchanged. So that the baseline follows a backend that got slower
/// for good, the no-load RTT is re-probed: after `probe_multiplier × limit` calls (times a
/// jitter in `[0.5, 1)`, from a seeded generator), the current RTT becomes the new baseline.
///
/// | parameter          | default | source |
/// |--------------------|---------|--------|
/// | `initial_limit`    | 20      | Netflix `VegasLimit` |
/// | `min_limit`        | 1       | Netflix (limits never go below 1) |
/// | `max_limit`        | 1000    | Netflix (`maxConcurrency`) |
/// | `smoothing`        | 1.0     | Netflix |
/// | `probe_multiplier` | 30      | Netflix |
///
/// ```
/// use palisade_bulkhead::adaptive::{LimitAlgorithm, Sample, Vegas};
/// use std::time::Duration;
///
/// let mut v = Vegas::builder().initial_limit(40).build().unwrap();
/// let ms = Duration::from_millis;
/// // Learns the 10 ms baseline; no queue (log10 = 1): grows by beta = 6.
/// assert_eq!(v.update(&Sample::new(ms(10), 40, 10, 0)), 46);
/// assert_eq!(v.update(&Sample::new(ms(20), 46, 10, 0).with_min_rtt(ms(19))), 45); // queue 23
/// ```
#[derive(Clone, Debug)]
pub struct Vegas {
    limit: f64,
    min_limit: usize,
    max_limit: usize,
    smoothing: f64,
    probe_multiplier: f64,
    rtt_noload: f64,
    probe_count: u64,
    probe_jitter: f64,
    rng: u64,
}

/// Builds a [`Vegas`]; see its docs for the parameters.
#[derive(Clone, Debug)]
pub struct VegasBuilder {
    initial_limit: usize,
    min_limit: usize,
    max_limit: usize,
    smoothing: f64,
    probe_multiplier: usize,
    seed: u64,
}

impl Vegas {
    /// A builder with Netflix's defaults.
    #[must_use]
    pub fn builder() -> VegasBuilder {
        VegasBuilder {
            initial_limit: 20,
            min_limit: 1,
            max_limit: 1000,
            smoothing: 1.0,
            probe_multiplier: 30,
            seed: 0x5EED_0F_7E6A5,
        }
    }

    fn next_jitter(&mut self) -> f64 {
        // xorshift64: a seeded, dependency-free generator; quality is irrelevant here.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        0.5 + (x >> 11) as f64 / (1u64 << 53) as f64 * 0.5
    }
}

/// Netflix's `Log10RootFunction`: `max(1, ⌊log10 limit⌋)`.
fn log10(limit: f64) -> f64 {
    limit.max(1.0).log10().floor().max(1.0)
}

impl VegasBuilder {
    /// The limit to start from.
    #[must_use]
    pub fn initial_limit(mut self, limit: usize) -> Self {
        self.initial_limit = limit;
        self
    }

    /// The lowest limit.
    #[must_use]
    pub fn min_limit(mut self, limit: usize) -> Self {
        self.min_limit = limit;
        self
    }

    /// The highest limit.
    #[must_use]
    pub fn max_limit(mut self, limit: usize) -> Self {
        self.max_limit = limit;
        self
    }

    /// How much of each step is taken, in `(0, 1]`.
    #[must_use]
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }

    /// Calls between probes of the no-load RTT, per unit of limit.
    #[must_use]
    pub fn probe_multiplier(mut self, multiplier: usize) -> Self {
        self.probe_multiplier = multiplier;
        self
    }

    /// Seed of the probe jitter.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Validates the parameters.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `min_limit`, `max_limit`, `initial_limit`, `smoothing` (outside
    /// `(0, 1]`) or `probe_multiplier` (zero).
    pub fn build(self) -> Result<Vegas, ConfigError> {
        check_limits(self.min_limit, self.initial_limit, self.max_limit)?;
        if !(self.smoothing > 0.0 && self.smoothing <= 1.0) {
            return Err(ConfigError::new("smoothing", "must lie in (0, 1]"));
        }
        if self.probe_multiplier == 0 {
            return Err(ConfigError::new("probe_multiplier", "must be at least 1"));
        }
        let mut vegas = Vegas {
            limit: self.initial_limit as f64,
            min_limit: self.min_limit,
            max_limit: self.max_limit,
            smoothing: self.smoothing,
            probe_multiplier: self.probe_multiplier as f64,
            rtt_noload: 0.0,
            probe_count: 0,
            probe_jitter: 1.0,
            rng: self.seed | 1,
        };
        vegas.probe_jitter = vegas.next_jitter();
        Ok(vegas)
    }
}

impl LimitAlgorithm for Vegas {
    fn initial_limit(&self) -> usize {
        self.limit as usize
    }

    fn update(&mut self, sample: &Sample) -> usize {
        let rtt = secs(sample.rtt).max(1e-9);
        self.probe_count += sample.samples;
        if self.probe_jitter * self.probe_multiplier * self.limit <= self.probe_count as f64 {
            self.probe_jitter = self.next_jitter();
            self.probe_count = 0;
            self.rtt_noload = rtt;
            return self.limit as usize;
        }
        let min_rtt = secs(sample.min_rtt).max(1e-9);
        if self.rtt_noload == 0.0 || min_rtt < self.rtt_noload {
            self.rtt_noload = min_rtt;
        }
        let limit = self.limit;
        let log = log10(limit);
        let next = if sample.dropped {
            limit - log
        } else if (sample.in_flight as f64) * 2.0 < limit {
            return limit as usize;
        } else {
            let queue = (limit * (1.0 - self.rtt_noload / rtt)).ceil();
            let (alpha, beta) = (3.0 * log, 6.0 * log);
            if queue <= log {
                limit + beta
            } else if queue < alpha {
                limit + log
            } else if queue > beta {
                limit - log
            } else {
                return limit as usize;
            }
        };
        let next = next.clamp(self.min_limit as f64, self.max_limit as f64);
        self.limit = limit * (1.0 - self.smoothing) + next * self.smoothing;
        self.limit as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn steers_the_queue_estimate_between_alpha_and_beta() {
        let ms = Duration::from_micros;
        let mut v = Vegas::builder()
            .initial_limit(100)
            .probe_multiplier(1_000_000)
            .build()
            .unwrap();
        // Baseline 1 ms, no queue: log10(100) = 2, grow by beta = 12.
        assert_eq!(v.update(&Sample::new(ms(1000), 100, 10, 0)), 112);
        // alpha 6, beta 12. Queue ⌈112 × (1 − 1000/1100)⌉ = 11: hold.
        let s = Sample::new(ms(1100), 112, 10, 0).with_min_rtt(ms(1050));
        assert_eq!(v.update(&s), 112);
        // Queue 56 > beta: shrink by 2.
        let s = Sample::new(ms(2000), 112, 10, 0).with_min_rtt(ms(1050));
        assert_eq!(v.update(&s), 110);
        // A drop shrinks whatever the latency.
        assert_eq!(v.update(&Sample::new(ms(1000), 110, 10, 1)), 108);
        // App-limited: unchanged.
        assert_eq!(v.update(&Sample::new(ms(1000), 10, 10, 0)), 108);
    }

    #[test]
    fn probing_resets_the_baseline() {
        let ms = Duration::from_millis;
        let mut v = Vegas::builder()
            .initial_limit(10)
            .probe_multiplier(1)
            .build()
            .unwrap();
        v.update(&Sample::new(ms(1), 10, 1, 0));
        // 10 samples ≥ jitter × 1 × 10: probe, the baseline becomes 50 ms.
        v.update(&Sample::new(ms(50), 10, 10, 0));
        assert!((v.rtt_noload - 0.050).abs() < 1e-9);
    }

    #[test]
    fn rejects_bad_parameters() {
        assert_eq!(
            Vegas::builder()
                .probe_multiplier(0)
                .build()
                .unwrap_err()
                .field(),
            "probe_multiplier"
        );
        assert_eq!(
            Vegas::builder().smoothing(2.0).build().unwrap_err().field(),
            "smoothing"
        );
    }
}
