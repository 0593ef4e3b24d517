//! TCP Vegas applied to concurrency.

use super::probe::{MinRttProbe, ProbeStep};
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
/// of the limit leaves it unchanged.
///
/// Two departures from Netflix, both switchable, found necessary by the convergence simulation
/// (a limit starting at 500 against a backend of capacity 40 never came down):
///
/// - **Probing the baseline.** Netflix re-probes by taking the current RTT as the new baseline
///   after `probe_multiplier × limit` calls; from an overloaded start that baseline is inflated
///   for good. Here, at the first update and then on Netflix's schedule (times a jitter in
///   `[0.5, 1)` from a seeded generator), the limit is pinned to 3 calls (raised to
///   `min_limit`) for one window, as Envoy's adaptive concurrency does, and that window's
///   minimum RTT becomes the baseline, which so follows the backend down *and* up
///   ([`probe`](VegasBuilder::probe)`(false)` keeps only the lowest RTT ever seen).
/// - **Decrease.** Above beta, the step is the larger of `log10(limit)` and half the excess,
///   `(queue − beta) / 2`, so a limit far too high comes down geometrically
///   ([`gentle_decrease`](VegasBuilder::gentle_decrease)`(true)` for Netflix's step).
///
/// | parameter          | default | source |
/// |--------------------|---------|--------|
/// | `initial_limit`    | 20      | Netflix `VegasLimit` |
/// | `min_limit`        | 1       | Netflix (limits never go below 1) |
/// | `max_limit`        | 1000    | Netflix (`maxConcurrency`) |
/// | `smoothing`        | 1.0     | Netflix |
/// | `probe_multiplier` | 30      | Netflix |
/// | `probe`            | on      | Envoy's min-RTT measurement at pinned concurrency 3 |
/// | `gentle_decrease`  | off     | Palisade |
///
/// ```
/// use palisade_bulkhead::adaptive::{LimitAlgorithm, Sample, Vegas};
/// use std::time::Duration;
///
/// let mut v = Vegas::builder().initial_limit(40).build().unwrap();
/// let ms = Duration::from_millis;
/// assert_eq!(v.update(&Sample::new(ms(30), 40, 10, 0)), 3); // probe: pinned to 3 calls
/// assert_eq!(v.update(&Sample::new(ms(10), 3, 10, 0)), 40); // baseline 10 ms; limit back
/// // No queue (log10 = 1): grow by beta = 6.
/// assert_eq!(v.update(&Sample::new(ms(10), 40, 10, 0)), 46);
/// // Queue ⌈46 × (1 − 10/20)⌉ = 23 > beta: down by (23 − 6) / 2.
/// assert_eq!(v.update(&Sample::new(ms(20), 46, 10, 0).with_min_rtt(ms(19))), 37);
/// ```
#[derive(Clone, Debug)]
pub struct Vegas {
    limit: f64,
    min_limit: usize,
    max_limit: usize,
    smoothing: f64,
    rtt_noload: f64,
    probe: Option<MinRttProbe>,
    gentle_decrease: bool,
}

/// Builds a [`Vegas`]; see its docs for the parameters.
#[derive(Clone, Debug)]
pub struct VegasBuilder {
    initial_limit: usize,
    min_limit: usize,
    max_limit: usize,
    smoothing: f64,
    probe_multiplier: usize,
    probe: bool,
    gentle_decrease: bool,
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
            probe: true,
            gentle_decrease: false,
            seed: 0x05EE_D0F7_E6A5,
        }
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

    /// Whether to probe the no-load RTT at a pinned low concurrency (default `true`). Without
    /// it, the baseline is only the lowest RTT ever seen.
    #[must_use]
    pub fn probe(mut self, probe: bool) -> Self {
        self.probe = probe;
        self
    }

    /// `true`: Netflix's decrease of `log10(limit)` per window even when the queue estimate is
    /// far above beta (slow from a limit far too high). Default `false`: the larger of that and
    /// half the excess, `(queue − beta) / 2`.
    #[must_use]
    pub fn gentle_decrease(mut self, gentle: bool) -> Self {
        self.gentle_decrease = gentle;
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
        let probe_limit = 3.clamp(self.min_limit, self.max_limit);
        Ok(Vegas {
            limit: self.initial_limit as f64,
            min_limit: self.min_limit,
            max_limit: self.max_limit,
            smoothing: self.smoothing,
            rtt_noload: 0.0,
            probe: self.probe.then(|| {
                MinRttProbe::new(
                    probe_limit,
                    self.probe_multiplier,
                    self.seed,
                    self.initial_limit as f64,
                )
            }),
            gentle_decrease: self.gentle_decrease,
        })
    }
}

impl LimitAlgorithm for Vegas {
    fn initial_limit(&self) -> usize {
        self.limit as usize
    }

    fn update(&mut self, sample: &Sample) -> usize {
        let rtt = secs(sample.rtt).max(1e-9);
        if let Some(probe) = &mut self.probe {
            match probe.step(sample, self.limit) {
                ProbeStep::Normal => {}
                ProbeStep::Hold(limit) => return limit,
                ProbeStep::Done { baseline, restore } => {
                    self.rtt_noload = secs(baseline).max(1e-9);
                    self.limit = restore;
                    return restore as usize;
                }
            }
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
                if self.gentle_decrease {
                    limit - log
                } else {
                    limit - log.max((queue - beta) / 2.0)
                }
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
            .probe(false)
            .gentle_decrease(true)
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
        assert_eq!(
            v.update(&Sample::new(ms(5), 10, 10, 0)),
            3,
            "probe at start"
        );
        assert_eq!(v.update(&Sample::new(ms(8), 3, 10, 0)), 10, "restored");
        assert!((v.rtt_noload - 0.008).abs() < 1e-9);
        // ≥ jitter × 1 × 10 calls later: probe again; the baseline may go up.
        assert_eq!(v.update(&Sample::new(ms(50), 10, 10, 0)), 3);
        assert_eq!(v.update(&Sample::new(ms(50), 3, 10, 0)), 10);
        assert!((v.rtt_noload - 0.050).abs() < 1e-9);
        // Far too high: the excess queue halves per window.
        let mut v = Vegas::builder()
            .initial_limit(500)
            .probe(false)
            .build()
            .unwrap();
        v.update(&Sample::new(ms(10), 500, 10, 0));
        let l = v.update(&Sample::new(ms(100), 500, 10, 0).with_min_rtt(ms(90)));
        assert!(l < 300, "got {l}");
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

    /// Regression (issue 9 §3): the probe's call counter overflowed with a large
    /// `probe_multiplier` (and huge sample counts from a custom driver).
    #[test]
    fn a_huge_probe_multiplier_never_overflows() {
        let ms = Duration::from_millis;
        let mut a = Vegas::builder()
            .probe_multiplier(usize::MAX)
            .build()
            .unwrap();
        let start = a.initial_limit();
        a.update(&Sample::new(ms(10), start, 10, 0)); // the first probe
        a.update(&Sample::new(ms(10), 3, 10, 0)); // its end
        for _ in 0..8 {
            let limit = a.update(&Sample::new(ms(10), 1000, u64::MAX / 2 + 1, 0));
            assert!(limit >= 1);
        }
    }
}
