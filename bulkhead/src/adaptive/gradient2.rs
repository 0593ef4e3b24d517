//! Netflix's Gradient2: long-term versus short-term RTT.

use super::probe::{MinRttProbe, ProbeStep};
use super::{LimitAlgorithm, Sample, check_limits, secs};
use palisade_core::ConfigError;

/// Gradient2 (Netflix `Gradient2Limit`): compares the short-term RTT (this window's mean) with
/// a long-term exponential average of it. The gradient `tolerance × long / short`, clamped to
/// `0.5..=1.0`, scales the limit down when latency rises above what the backend usually shows;
/// a constant queue allowance lets it grow while latency stays flat; the step is smoothed:
///
/// ```text
/// gradient  = clamp(rtt_tolerance × long_rtt / short_rtt, 0.5, 1.0)
/// new_limit = limit × gradient + queue_size
/// limit     = limit × (1 − smoothing) + new_limit × smoothing      (then min/max bounds)
/// ```
///
/// When the long-term average is more than twice the short one (load went away after a long
/// overload), it is pulled down by 5 % per sample so it follows faster. A window that used less
/// than half of the limit leaves it unchanged (the caller, not the backend, limited the load).
/// Like Netflix's, this algorithm ignores drops: it reads latency only.
///
/// One departure from Netflix, switchable, found necessary by the convergence simulation: a
/// limit that starts far above the backend's capacity sees only inflated RTTs, takes them as
/// normal, and never comes down. So, as Envoy's adaptive concurrency does, the no-load RTT is
/// probed at the first update and then after every `probe_multiplier × limit` calls (jittered):
/// the limit is pinned to `min_limit` (at least 3) for one window, and the long-term average
/// restarts from that window's minimum RTT ([`probe`](Gradient2Builder::probe)`(false)`
/// for Netflix's behaviour).
///
/// | parameter        | default | source |
/// |------------------|---------|--------|
/// | `initial_limit`  | 20      | Netflix `Gradient2Limit` |
/// | `min_limit`      | 20      | Netflix |
/// | `max_limit`      | 200     | Netflix (`maxConcurrency`) |
/// | `smoothing`      | 0.2     | Netflix |
/// | `rtt_tolerance`  | 1.5     | Netflix |
/// | `long_window`    | 600     | Netflix (samples of the long-term average; 10 warm-up samples) |
/// | `queue_size`     | 4       | Netflix (its default `queueSize` function is the constant 4) |
/// | `probe`          | on      | Envoy's min-RTT measurement |
/// | `probe_multiplier` | 30    | Netflix Vegas's probe schedule |
///
/// ```
/// use palisade_bulkhead::adaptive::{Gradient2, LimitAlgorithm, Sample};
/// use std::time::Duration;
///
/// let mut g = Gradient2::builder().initial_limit(50).min_limit(1).probe(false).build().unwrap();
/// let flat = Sample::new(Duration::from_millis(10), 50, 10, 0);
/// assert_eq!(g.update(&flat), 50); // 50 × 0.8 + (50 × 1 + 4) × 0.2 = 50.8
/// let slow = Sample::new(Duration::from_millis(100), 50, 10, 0);
/// assert!(g.update(&slow) < 50);
/// ```
#[derive(Clone, Debug)]
pub struct Gradient2 {
    limit: f64,
    min_limit: usize,
    max_limit: usize,
    smoothing: f64,
    rtt_tolerance: f64,
    queue_size: f64,
    long_rtt: ExpAvg,
    probe: Option<MinRttProbe>,
}

/// Builds a [`Gradient2`]; see its docs for the parameters.
#[derive(Clone, Debug)]
pub struct Gradient2Builder {
    initial_limit: usize,
    min_limit: usize,
    max_limit: usize,
    smoothing: f64,
    rtt_tolerance: f64,
    long_window: usize,
    queue_size: usize,
    probe: bool,
    probe_multiplier: usize,
}

/// Netflix's `ExpAvgMeasurement`: a plain mean over the warm-up samples, then an exponential
/// average with factor `2 / (window + 1)`.
#[derive(Clone, Debug)]
struct ExpAvg {
    value: f64,
    sum: f64,
    count: usize,
    warmup: usize,
    factor: f64,
}

impl ExpAvg {
    fn new(window: usize, warmup: usize) -> ExpAvg {
        ExpAvg {
            value: 0.0,
            sum: 0.0,
            count: 0,
            warmup,
            factor: 2.0 / (window as f64 + 1.0),
        }
    }

    /// Restarts the average at `value`, past the warm-up.
    fn reset(&mut self, value: f64) {
        self.value = value;
        self.count = self.warmup;
    }

    fn add(&mut self, sample: f64) -> f64 {
        if self.count < self.warmup {
            self.count += 1;
            self.sum += sample;
            self.value = self.sum / self.count as f64;
        } else {
            self.value = self.value * (1.0 - self.factor) + sample * self.factor;
        }
        self.value
    }
}

impl Gradient2 {
    /// A builder with Netflix's defaults.
    #[must_use]
    pub fn builder() -> Gradient2Builder {
        Gradient2Builder {
            initial_limit: 20,
            min_limit: 20,
            max_limit: 200,
            smoothing: 0.2,
            rtt_tolerance: 1.5,
            long_window: 600,
            queue_size: 4,
            probe: true,
            probe_multiplier: 30,
        }
    }
}

impl Gradient2Builder {
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

    /// How much the short-term RTT may exceed the long-term one before the limit shrinks (≥ 1).
    #[must_use]
    pub fn rtt_tolerance(mut self, tolerance: f64) -> Self {
        self.rtt_tolerance = tolerance;
        self
    }

    /// Samples in the long-term RTT average.
    #[must_use]
    pub fn long_window(mut self, samples: usize) -> Self {
        self.long_window = samples;
        self
    }

    /// Calls allowed to queue above the estimated limit (the growth per step).
    #[must_use]
    pub fn queue_size(mut self, queue: usize) -> Self {
        self.queue_size = queue;
        self
    }

    /// Whether to probe the no-load RTT at a pinned low concurrency (default `true`).
    #[must_use]
    pub fn probe(mut self, probe: bool) -> Self {
        self.probe = probe;
        self
    }

    /// Calls between probes, per unit of limit (default 30, Netflix Vegas's schedule).
    #[must_use]
    pub fn probe_multiplier(mut self, multiplier: usize) -> Self {
        self.probe_multiplier = multiplier.max(1);
        self
    }

    /// Validates the parameters.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `min_limit`, `max_limit`, `initial_limit`, `smoothing` (outside
    /// `(0, 1]`), `rtt_tolerance` (below 1) or `long_window` (zero).
    pub fn build(self) -> Result<Gradient2, ConfigError> {
        check_limits(self.min_limit, self.initial_limit, self.max_limit)?;
        if !(self.smoothing > 0.0 && self.smoothing <= 1.0) {
            return Err(ConfigError::new("smoothing", "must lie in (0, 1]"));
        }
        if self.rtt_tolerance.is_nan() || self.rtt_tolerance < 1.0 {
            return Err(ConfigError::new("rtt_tolerance", "must be at least 1"));
        }
        if self.long_window == 0 {
            return Err(ConfigError::new("long_window", "must be at least 1"));
        }
        Ok(Gradient2 {
            limit: self.initial_limit as f64,
            min_limit: self.min_limit,
            max_limit: self.max_limit,
            smoothing: self.smoothing,
            rtt_tolerance: self.rtt_tolerance,
            queue_size: self.queue_size as f64,
            long_rtt: ExpAvg::new(self.long_window, 10),
            probe: self.probe.then(|| {
                MinRttProbe::new(
                    self.min_limit
                        .clamp(3, self.max_limit.max(3))
                        .min(self.max_limit),
                    self.probe_multiplier,
                    0x6AD1_E472,
                    self.initial_limit as f64,
                )
            }),
        })
    }
}

impl LimitAlgorithm for Gradient2 {
    fn initial_limit(&self) -> usize {
        self.limit as usize
    }

    fn update(&mut self, sample: &Sample) -> usize {
        let short = secs(sample.rtt).max(1e-9);
        if let Some(probe) = &mut self.probe {
            match probe.step(sample, self.limit) {
                ProbeStep::Normal => {}
                ProbeStep::Hold(limit) => return limit,
                ProbeStep::Done { baseline, restore } => {
                    self.long_rtt.reset(secs(baseline).max(1e-9));
                    self.limit = restore;
                    return restore as usize;
                }
            }
        }
        let long = self.long_rtt.add(short);
        if long / short > 2.0 {
            self.long_rtt.value *= 0.95;
        }
        if (sample.in_flight as f64) < self.limit / 2.0 {
            return self.limit as usize;
        }
        let gradient = (self.rtt_tolerance * long / short).clamp(0.5, 1.0);
        let next = self.limit * gradient + self.queue_size;
        let next = self.limit * (1.0 - self.smoothing) + next * self.smoothing;
        self.limit = next.clamp(self.min_limit as f64, self.max_limit as f64);
        self.limit as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn flat_latency_grows_rising_latency_shrinks_bounded() {
        let ms = Duration::from_millis;
        let mut g = Gradient2::builder()
            .initial_limit(20)
            .min_limit(10)
            .max_limit(30)
            .probe(false)
            .build()
            .unwrap();
        let mut last = 20;
        for _ in 0..100 {
            last = g.update(&Sample::new(ms(10), 30, 10, 0));
        }
        assert_eq!(last, 30, "flat latency grows to the max");
        for _ in 0..5 {
            last = g.update(&Sample::new(ms(100), 30, 10, 0));
        }
        assert!(last < 30, "ten-fold latency shrinks, got {last}");
        for _ in 0..100 {
            last = g.update(&Sample::new(ms(1000), 30, 10, 0));
        }
        assert!(last >= 10);
        assert_eq!(g.update(&Sample::new(ms(1), 1, 10, 0)), last, "app-limited");
    }

    #[test]
    fn probes_the_baseline_at_start() {
        let ms = Duration::from_millis;
        let mut g = Gradient2::builder()
            .initial_limit(500)
            .min_limit(3)
            .max_limit(1000)
            .build()
            .unwrap();
        assert_eq!(g.update(&Sample::new(ms(125), 500, 10, 0)), 3);
        assert_eq!(g.update(&Sample::new(ms(10), 3, 10, 0)), 500);
        // Baseline 10 ms against 125 ms: the gradient is at its floor, 0.5.
        let l = g.update(&Sample::new(ms(125), 500, 10, 0));
        assert!(l < 460, "got {l}");
    }

    #[test]
    fn rejects_bad_parameters() {
        assert_eq!(
            Gradient2::builder()
                .smoothing(0.0)
                .build()
                .unwrap_err()
                .field(),
            "smoothing"
        );
        assert_eq!(
            Gradient2::builder()
                .rtt_tolerance(0.9)
                .build()
                .unwrap_err()
                .field(),
            "rtt_tolerance"
        );
        assert_eq!(
            Gradient2::builder()
                .long_window(0)
                .build()
                .unwrap_err()
                .field(),
            "long_window"
        );
    }

    /// Regression (issue 9 §3): the probe's call counter overflowed with a large
    /// `probe_multiplier` (and huge sample counts from a custom driver).
    #[test]
    fn a_huge_probe_multiplier_never_overflows() {
        let ms = Duration::from_millis;
        let mut a = Gradient2::builder()
            .min_limit(1)
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
