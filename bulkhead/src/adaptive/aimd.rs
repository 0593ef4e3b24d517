//! Additive increase, multiplicative decrease.

use super::{LimitAlgorithm, Sample, check_limits};
use palisade_core::ConfigError;
use std::time::Duration;

/// AIMD (TCP Reno's rule, as in Netflix's `AIMDLimit`): on a window with a drop, or whose mean
/// RTT is above [`timeout`](AimdBuilder::timeout), the limit is multiplied by
/// [`backoff_ratio`](AimdBuilder::backoff_ratio); otherwise, if the calls in flight used at
/// least half of the limit, it grows by one. As the layer feeds one sample per RTT window, the
/// limit changes at most once per window.
///
/// | parameter       | default | source |
/// |-----------------|---------|--------|
/// | `initial_limit` | 20      | Netflix `AIMDLimit` |
/// | `min_limit`     | 20      | Netflix |
/// | `max_limit`     | 200     | Netflix |
/// | `backoff_ratio` | 0.9     | Netflix (must lie in `0.5..1.0`) |
/// | `timeout`       | 5 s     | Netflix |
///
/// ```
/// use palisade_bulkhead::adaptive::{Aimd, LimitAlgorithm, Sample};
/// use std::time::Duration;
///
/// let mut aimd = Aimd::builder().initial_limit(10).min_limit(1).build().unwrap();
/// let ok = Sample::new(Duration::from_millis(5), 10, 10, 0);
/// assert_eq!(aimd.update(&ok), 11);
/// let dropped = Sample::new(Duration::from_millis(5), 11, 10, 1);
/// assert_eq!(aimd.update(&dropped), 9); // floor(11 × 0.9)
/// ```
#[derive(Clone, Debug)]
pub struct Aimd {
    limit: f64,
    min_limit: usize,
    max_limit: usize,
    backoff_ratio: f64,
    timeout: Duration,
}

/// Builds an [`Aimd`]; see its docs for the parameters.
#[derive(Clone, Debug)]
pub struct AimdBuilder {
    initial_limit: usize,
    min_limit: usize,
    max_limit: usize,
    backoff_ratio: f64,
    timeout: Duration,
}

impl Aimd {
    /// A builder with Netflix's defaults.
    #[must_use]
    pub fn builder() -> AimdBuilder {
        AimdBuilder {
            initial_limit: 20,
            min_limit: 20,
            max_limit: 200,
            backoff_ratio: 0.9,
            timeout: Duration::from_secs(5),
        }
    }
}

impl AimdBuilder {
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

    /// The factor applied on a drop, in `0.5..1.0`.
    #[must_use]
    pub fn backoff_ratio(mut self, ratio: f64) -> Self {
        self.backoff_ratio = ratio;
        self
    }

    /// A window whose mean RTT exceeds this counts as a drop.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Validates the parameters.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `min_limit` (zero), `max_limit`/`initial_limit` (out of order),
    /// `backoff_ratio` (outside `0.5..1.0`) or `timeout` (zero).
    pub fn build(self) -> Result<Aimd, ConfigError> {
        check_limits(self.min_limit, self.initial_limit, self.max_limit)?;
        if !(0.5..1.0).contains(&self.backoff_ratio) {
            return Err(ConfigError::new(
                "backoff_ratio",
                format!("must lie in 0.5..1.0, got {}", self.backoff_ratio),
            ));
        }
        palisade_core::error::check_nonzero_duration("timeout", self.timeout)?;
        Ok(Aimd {
            limit: self.initial_limit as f64,
            min_limit: self.min_limit,
            max_limit: self.max_limit,
            backoff_ratio: self.backoff_ratio,
            timeout: self.timeout,
        })
    }
}

impl LimitAlgorithm for Aimd {
    fn initial_limit(&self) -> usize {
        self.limit as usize
    }

    fn update(&mut self, sample: &Sample) -> usize {
        if sample.dropped || sample.rtt > self.timeout {
            self.limit = (self.limit * self.backoff_ratio).floor();
        } else if sample.in_flight as f64 * 2.0 >= self.limit {
            self.limit += 1.0;
        }
        self.limit = self
            .limit
            .clamp(self.min_limit as f64, self.max_limit as f64);
        self.limit as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_only_when_used_and_backs_off_on_timeouts() {
        let mut aimd = Aimd::builder()
            .initial_limit(10)
            .min_limit(5)
            .max_limit(11)
            .timeout(Duration::from_millis(100))
            .build()
            .unwrap();
        let ms = Duration::from_millis;
        assert_eq!(
            aimd.update(&Sample::new(ms(10), 4, 10, 0)),
            10,
            "app-limited"
        );
        assert_eq!(aimd.update(&Sample::new(ms(10), 5, 10, 0)), 11);
        assert_eq!(aimd.update(&Sample::new(ms(10), 11, 10, 0)), 11, "max");
        assert_eq!(aimd.update(&Sample::new(ms(150), 11, 10, 0)), 9, "slow");
        for _ in 0..10 {
            aimd.update(&Sample::new(ms(10), 11, 10, 3));
        }
        assert_eq!(aimd.update(&Sample::new(ms(10), 1, 1, 1)), 5, "min");
    }

    #[test]
    fn rejects_bad_parameters() {
        let e = Aimd::builder().backoff_ratio(1.0).build().unwrap_err();
        assert_eq!(e.field(), "backoff_ratio");
        let e = Aimd::builder().min_limit(0).build().unwrap_err();
        assert_eq!(e.field(), "min_limit");
        let e = Aimd::builder().initial_limit(500).build().unwrap_err();
        assert_eq!(e.field(), "initial_limit");
        let e = Aimd::builder().timeout(Duration::ZERO).build().unwrap_err();
        assert_eq!(e.field(), "timeout");
    }
}
