//! Outlier ejection (Envoy's outlier detection), as a validated config and pure decisions.
//!
//! An endpoint that fails `consecutive_failures` calls in a row (failures as the classifier
//! says: a local rejection from a layer below the balancer is not one, nor is a cancelled call)
//! is *ejected*: it is not a candidate for an ejection time that grows with each repeated
//! ejection (`base × 2^(n-1)`, capped at `max_ejection_time`, jittered down by up to 20 % so
//! that clients do not probe in lockstep). When the time is up it is restored with a fresh
//! latency estimate; its next success resets the growth.
//!
//! Two more detectors judge each `interval` (10 s) of calls, as Envoy's do:
//! - **success rate** (on by default): among endpoints with at least 100 calls in the
//!   interval, when there are at least 5 of them, those whose success rate is below
//!   `mean − 1.9 × stdev` are ejected;
//! - **failure percentage** (off by default, as in Envoy): with at least 5 endpoints, one
//!   with at least 50 calls of which 85 % failed is ejected.
//!
//! They catch an endpoint that fails often but not in long runs, which the consecutive
//! detector misses under load-blind strategies (the default strategy also starves it through
//! its failure penalty).
//!
//! Two bounds keep ejection from hurting more than it helps (both Envoy's):
//! - `max_ejection_percent`: at most this share of the endpoints is ejected at once, and at
//!   least one endpoint can always be ejected, whatever the percentage and the set size;
//! - `panic_threshold`: when fewer than this share of the endpoints are healthy, ejection is
//!   ignored and every endpoint is a candidate (better some traffic to a sick endpoint than
//!   all traffic to the few left).
//!
//! # Defaults, and why
//!
//! | setting | default | source / reason |
//! |---|---|---|
//! | `consecutive_failures` | 5 | Envoy `consecutive_5xx` |
//! | `interval` | 10 s | Envoy `interval` |
//! | `success_rate` | on: 5 hosts, 100 calls, 1.9 stdev | Envoy `success_rate_*` (enforcing 100 %) |
//! | `failure_percentage` | off (85 %, 5 hosts, 50 calls when on) | Envoy `failure_percentage_*` (enforcing 0 % by default) |
//! | `base_ejection_time` | 250 ms | a fleet default: short, so a recovered endpoint is back within about a second (Envoy's 30 s keeps it out long after it recovered) |
//! | `max_ejection_time` | 1 s | bounds the time to notice a recovery; a dead endpoint then costs one failed probe per second per client, which a retry covers |
//! | `max_ejection_percent` | 10 % (at least one endpoint) | Envoy |
//! | `panic_threshold` | 50 % | Envoy `healthy_panic_threshold` |

use palisade_core::ConfigError;
use palisade_core::error::{check_nonzero_duration, check_ordered, check_percent};
use palisade_core::rng::unit_f64;
use std::time::Duration;

/// Outlier ejection settings. See the [module docs](self).
#[derive(Clone, Debug, PartialEq)]
pub struct OutlierDetection {
    pub(crate) consecutive_failures: u32,
    pub(crate) interval: Duration,
    pub(crate) success_rate: Option<SuccessRate>,
    pub(crate) failure_percentage: Option<FailurePercentage>,
    pub(crate) base_ejection_time: Duration,
    pub(crate) max_ejection_time: Duration,
    pub(crate) max_ejection_percent: f64,
    pub(crate) panic_threshold: f64,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive_failures: 5,
            interval: Duration::from_secs(10),
            success_rate: Some(SuccessRate::default()),
            failure_percentage: None,
            base_ejection_time: Duration::from_millis(250),
            max_ejection_time: Duration::from_secs(1),
            max_ejection_percent: 10.0,
            panic_threshold: 50.0,
        }
    }
}

impl OutlierDetection {
    /// The defaults (see the [module docs](self)).
    #[must_use]
    pub fn new() -> Self {
        OutlierDetection::default()
    }

    /// No ejection at all: every endpoint is always a candidate.
    #[must_use]
    pub fn disabled() -> Self {
        OutlierDetection {
            consecutive_failures: 0,
            success_rate: None,
            failure_percentage: None,
            ..OutlierDetection::default()
        }
    }

    /// How often the success-rate and failure-percentage detectors look at the fleet (default
    /// 10 s, Envoy's `interval`); they judge the calls of the interval just ended.
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The success-rate detector (default on, Envoy's defaults), or `None` to turn it off.
    #[must_use]
    pub fn success_rate(mut self, detector: Option<SuccessRate>) -> Self {
        self.success_rate = detector;
        self
    }

    /// The failure-percentage detector (default off, as in Envoy), or `None` to turn it off.
    #[must_use]
    pub fn failure_percentage(mut self, detector: Option<FailurePercentage>) -> Self {
        self.failure_percentage = detector;
        self
    }

    /// Failures in a row that eject an endpoint; `0` turns this detector off.
    #[must_use]
    pub fn consecutive_failures(mut self, failures: u32) -> Self {
        self.consecutive_failures = failures;
        self
    }

    /// The first ejection's length.
    #[must_use]
    pub fn base_ejection_time(mut self, time: Duration) -> Self {
        self.base_ejection_time = time;
        self
    }

    /// The cap of the growing ejection time.
    #[must_use]
    pub fn max_ejection_time(mut self, time: Duration) -> Self {
        self.max_ejection_time = time;
        self
    }

    /// At most this percentage (0–100) of the endpoints ejected at once; one always may be.
    #[must_use]
    pub fn max_ejection_percent(mut self, percent: f64) -> Self {
        self.max_ejection_percent = percent;
        self
    }

    /// Below this percentage (0–100) of healthy endpoints, ejection is ignored.
    #[must_use]
    pub fn panic_threshold(mut self, percent: f64) -> Self {
        self.panic_threshold = percent;
        self
    }

    /// Whether any detector is on.
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        self.consecutive_failures > 0
            || self.success_rate.is_some()
            || self.failure_percentage.is_some()
    }

    /// Whether the interval detectors (success rate, failure percentage) are on.
    #[must_use]
    pub fn has_interval_detectors(&self) -> bool {
        self.success_rate.is_some() || self.failure_percentage.is_some()
    }

    /// Which endpoints the interval detectors eject, from each endpoint's `(calls, failures)`
    /// of the interval just ended (pure; the caller applies `max_ejection_percent`).
    ///
    /// - failure percentage: an endpoint with at least `request_volume` calls whose failures
    ///   are at least `threshold` % of them, when at least `minimum_hosts` endpoints exist;
    /// - success rate: among endpoints with at least `request_volume` calls, when there are at
    ///   least `minimum_hosts` of them, those whose success rate is below
    ///   `mean − stdev_factor × stdev` (Envoy).
    #[must_use]
    pub fn interval_outliers(&self, counts: &[(u64, u64)]) -> Vec<usize> {
        let mut out = Vec::new();
        if let Some(fp) = &self.failure_percentage
            && counts.len() >= fp.minimum_hosts
        {
            for (i, &(calls, failures)) in counts.iter().enumerate() {
                if calls >= fp.request_volume
                    && failures as f64 * 100.0 >= fp.threshold * calls as f64
                {
                    out.push(i);
                }
            }
        }
        if let Some(sr) = &self.success_rate {
            let rates: Vec<(usize, f64)> = counts
                .iter()
                .enumerate()
                .filter(|(_, (calls, _))| *calls >= sr.request_volume)
                .map(|(i, &(calls, failures))| {
                    (i, 1.0 - (failures.min(calls) as f64 / calls as f64))
                })
                .collect();
            if rates.len() >= sr.minimum_hosts {
                let n = rates.len() as f64;
                let mean = rates.iter().map(|(_, r)| r).sum::<f64>() / n;
                let variance = rates.iter().map(|(_, r)| (r - mean).powi(2)).sum::<f64>() / n;
                let threshold = mean - sr.stdev_factor * variance.sqrt();
                for (i, rate) in rates {
                    if rate < threshold && !out.contains(&i) {
                        out.push(i);
                    }
                }
            }
        }
        out
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check_nonzero_duration("base_ejection_time", self.base_ejection_time)?;
        check_nonzero_duration("interval", self.interval)?;
        if let Some(fp) = &self.failure_percentage {
            check_percent("failure_percentage.threshold", fp.threshold)?;
        }
        if let Some(sr) = &self.success_rate
            && (sr.stdev_factor.is_nan() || sr.stdev_factor < 0.0 || sr.stdev_factor.is_infinite())
        {
            return Err(ConfigError::new(
                "success_rate.stdev_factor",
                format!(
                    "must be a finite factor of at least 0, got {}",
                    sr.stdev_factor
                ),
            ));
        }
        check_ordered(
            "max_ejection_time",
            self.base_ejection_time,
            self.max_ejection_time,
        )?;
        check_percent("max_ejection_percent", self.max_ejection_percent)?;
        check_percent("panic_threshold", self.panic_threshold)?;
        Ok(())
    }

    /// How long the endpoint's ejection number `times_before + 1` lasts: `base × 2^times_before`,
    /// capped at `max_ejection_time`, then shortened by up to 20 % from `draw`.
    #[must_use]
    pub fn ejection_time(&self, times_before: u32, draw: u64) -> Duration {
        let factor = 1u32.checked_shl(times_before.min(31)).unwrap_or(u32::MAX);
        let full = self
            .base_ejection_time
            .saturating_mul(factor)
            .min(self.max_ejection_time);
        // Never longer than `full`, never a panic near `Duration::MAX` (f64 rounding up).
        Duration::try_from_secs_f64(full.as_secs_f64() * (1.0 - 0.2 * unit_f64(draw)))
            .map_or(full, |d| d.min(full))
    }

    /// Whether one more endpoint may be ejected while `ejected` of `total` are.
    #[must_use]
    pub fn may_eject(&self, ejected: usize, total: usize) -> bool {
        let allowed = ((total as f64) * self.max_ejection_percent / 100.0).floor() as usize;
        ejected < allowed.max(1)
    }

    /// Whether so few endpoints are healthy that ejection is to be ignored.
    #[must_use]
    pub fn in_panic(&self, ejected: usize, total: usize) -> bool {
        if total == 0 || ejected == 0 {
            return false;
        }
        let healthy = total.saturating_sub(ejected) as f64;
        healthy * 100.0 < self.panic_threshold * total as f64
    }
}

/// Envoy's success-rate outlier detector. Defaults: 5 hosts with 100 calls each in the
/// interval at least, stdev factor 1.9.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SuccessRate {
    /// Endpoints with enough calls needed for the detector to judge (default 5).
    pub minimum_hosts: usize,
    /// Calls in the interval an endpoint needs to be judged (default 100).
    pub request_volume: u64,
    /// How many standard deviations below the mean success rate ejects (default 1.9).
    pub stdev_factor: f64,
}

impl Default for SuccessRate {
    fn default() -> Self {
        SuccessRate {
            minimum_hosts: 5,
            request_volume: 100,
            stdev_factor: 1.9,
        }
    }
}

/// Envoy's failure-percentage outlier detector. Defaults: 85 %, 5 hosts at least, 50 calls
/// in the interval at least.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct FailurePercentage {
    /// Failure percentage (0–100) that ejects (default 85).
    pub threshold: f64,
    /// Endpoints needed in the set for the detector to judge (default 5).
    pub minimum_hosts: usize,
    /// Calls in the interval an endpoint needs to be judged (default 50).
    pub request_volume: u64,
}

impl Default for FailurePercentage {
    fn default() -> Self {
        FailurePercentage {
            threshold: 85.0,
            minimum_hosts: 5,
            request_volume: 50,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejection_time_grows_is_capped_and_jittered_down() {
        let o = OutlierDetection::new()
            .base_ejection_time(Duration::from_millis(100))
            .max_ejection_time(Duration::from_millis(700));
        assert_eq!(o.ejection_time(0, 0), Duration::from_millis(100));
        assert_eq!(o.ejection_time(1, 0), Duration::from_millis(200));
        assert_eq!(o.ejection_time(2, 0), Duration::from_millis(400));
        assert_eq!(o.ejection_time(3, 0), Duration::from_millis(700));
        assert_eq!(o.ejection_time(u32::MAX, 0), Duration::from_millis(700));
        let jittered = o.ejection_time(0, u64::MAX);
        assert!(jittered >= Duration::from_millis(80) && jittered < Duration::from_millis(100));
        let huge = OutlierDetection::new()
            .base_ejection_time(Duration::MAX)
            .max_ejection_time(Duration::MAX);
        assert_eq!(huge.ejection_time(40, 0), Duration::MAX);
    }

    #[test]
    fn at_least_one_endpoint_may_always_be_ejected() {
        let o = OutlierDetection::new(); // 10 %
        assert!(o.may_eject(0, 3));
        assert!(!o.may_eject(1, 3));
        assert!(o.may_eject(0, 1));
        assert!(o.may_eject(1, 20) && !o.may_eject(2, 20));
        let none = OutlierDetection::new().max_ejection_percent(0.0);
        assert!(none.may_eject(0, 100) && !none.may_eject(1, 100));
    }

    #[test]
    fn interval_detectors_find_the_outliers() {
        let o = OutlierDetection::new().failure_percentage(Some(FailurePercentage::default()));
        // Five at 100 %, one at 50 %: below mean − 1.9 stdev.
        let counts = [(200, 0), (200, 0), (200, 0), (200, 0), (200, 0), (200, 100)];
        assert_eq!(o.interval_outliers(&counts), vec![5]);
        // Too few calls to judge.
        let quiet = [(20, 0), (20, 0), (20, 0), (20, 0), (20, 0), (20, 10)];
        assert!(o.interval_outliers(&quiet).is_empty());
        // Too few hosts for either detector.
        assert!(o.interval_outliers(&counts[3..]).is_empty());
        // Failure percentage at 90 % with volume: ejected even if all are bad alike (the
        // success-rate detector sees no outlier then).
        let all_bad = [(100, 90); 5];
        assert_eq!(o.interval_outliers(&all_bad), vec![0, 1, 2, 3, 4]);
        assert!(
            OutlierDetection::new()
                .interval_outliers(&all_bad)
                .is_empty()
        );
        assert!(
            OutlierDetection::disabled()
                .interval_outliers(&counts)
                .is_empty()
        );
    }

    #[test]
    fn panic_below_the_healthy_threshold() {
        let o = OutlierDetection::new(); // 50 %
        assert!(!o.in_panic(0, 0));
        assert!(!o.in_panic(1, 3));
        assert!(o.in_panic(2, 3));
        assert!(o.in_panic(1, 1));
        assert!(!o.in_panic(1, 2), "exactly half healthy is not below half");
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        let field = |o: OutlierDetection| o.validate().unwrap_err().field();
        assert_eq!(
            field(OutlierDetection::new().base_ejection_time(Duration::ZERO)),
            "base_ejection_time"
        );
        assert_eq!(
            field(OutlierDetection::new().max_ejection_time(Duration::from_millis(1))),
            "max_ejection_time"
        );
        assert_eq!(
            field(OutlierDetection::new().max_ejection_percent(101.0)),
            "max_ejection_percent"
        );
        assert_eq!(
            field(OutlierDetection::new().panic_threshold(f64::NAN)),
            "panic_threshold"
        );
        assert!(OutlierDetection::disabled().validate().is_ok());
    }
}
