//! Outlier ejection (Envoy's outlier detection), as a validated config and pure decisions.
//!
//! An endpoint that fails `consecutive_failures` calls in a row (failures as the classifier
//! says: a local rejection from a layer below the balancer is not one, nor is a cancelled call)
//! is *ejected*: it is not a candidate for an ejection time that grows with each repeated
//! ejection (`base × 2^(n-1)`, capped at `max_ejection_time`, jittered down by up to 20 % so
//! that clients do not probe in lockstep). When the time is up it is restored with a fresh
//! latency estimate; its next success resets the growth.
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
    pub(crate) base_ejection_time: Duration,
    pub(crate) max_ejection_time: Duration,
    pub(crate) max_ejection_percent: f64,
    pub(crate) panic_threshold: f64,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive_failures: 5,
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
            ..OutlierDetection::default()
        }
    }

    /// Failures in a row that eject an endpoint; `0` turns ejection off.
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

    /// Whether ejection is on.
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        self.consecutive_failures > 0
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check_nonzero_duration("base_ejection_time", self.base_ejection_time)?;
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
