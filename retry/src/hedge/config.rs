//! [`HedgePolicyBuilder`]: the validated settings of a [`HedgePolicy`].

use super::hedge_policy::{HedgePolicy, HedgeShared};
use crate::budget::RetryBudget;
use crate::config::Spend;
use crate::latency::LatencyHistogram;
use crate::request::{CloneAll, CloneIf, CloneWith};
use crate::throttle::RetryThrottle;
use palisade_core::classify::ErrorIsFailure;
use palisade_core::clock::Clock;
use palisade_core::error::{ConfigError, check_nonzero_duration};
use palisade_core::events::EventBus;
use std::sync::Arc;
use std::time::Duration;

/// Builds a [`HedgePolicy`].
#[derive(Clone, Debug)]
pub struct HedgePolicyBuilder<C = ErrorIsFailure, Q = CloneAll> {
    fixed: Option<Duration>,
    percentile: f64,
    initial_delay: Duration,
    window: u64,
    min_samples: u64,
    max_hedges: u32,
    classify: C,
    requests: Q,
    spend: Option<Spend>,
    deposits: bool,
    clock: Option<Clock>,
    name: Option<Arc<str>>,
}

impl HedgePolicyBuilder {
    pub(crate) fn new() -> Self {
        HedgePolicyBuilder {
            fixed: None,
            percentile: 95.0,
            initial_delay: Duration::from_millis(100),
            window: 1000,
            min_samples: 100,
            max_hedges: 1,
            classify: ErrorIsFailure,
            requests: CloneAll,
            spend: None,
            deposits: true,
            clock: None,
            name: None,
        }
    }
}

impl<C, Q> HedgePolicyBuilder<C, Q> {
    /// Hedge after a fixed delay instead of a percentile.
    #[must_use]
    pub fn delay(mut self, delay: Duration) -> Self {
        self.fixed = Some(delay);
        self
    }

    /// Hedge after the `p`-th percentile (0 < p < 100) of the latencies of recent winning
    /// attempts. The percentile is the upper edge of a histogram bucket, at most 19 % above
    /// the true value; recent means the counts are halved every `window` samples (default
    /// 1000). Default: 95.
    #[must_use]
    pub fn percentile(mut self, p: f64) -> Self {
        self.fixed = None;
        self.percentile = p;
        self
    }

    /// How many samples the percentile's "recent" spans (halving period). Default 1000.
    #[must_use]
    pub fn window(mut self, samples: u64) -> Self {
        self.window = samples;
        self
    }

    /// The delay used until `min_samples` latencies were seen. Default 100 ms.
    #[must_use]
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Latencies needed before the percentile is trusted. Default 100.
    #[must_use]
    pub fn min_samples(mut self, samples: u64) -> Self {
        self.min_samples = samples;
        self
    }

    /// Copies in flight beyond the first, at most (1 to 10). Default 1.
    #[must_use]
    pub fn max_hedges(mut self, hedges: u32) -> Self {
        self.max_hedges = hedges;
        self
    }

    /// Which results do not win (they are failures, and the other copies are awaited).
    /// Default: errors.
    #[must_use]
    pub fn classify<C2>(self, classify: C2) -> HedgePolicyBuilder<C2, Q> {
        HedgePolicyBuilder {
            fixed: self.fixed,
            percentile: self.percentile,
            initial_delay: self.initial_delay,
            window: self.window,
            min_samples: self.min_samples,
            max_hedges: self.max_hedges,
            classify,
            requests: self.requests,
            spend: self.spend,
            deposits: self.deposits,
            clock: self.clock,
            name: self.name,
        }
    }

    fn requests<Q2>(self, requests: Q2) -> HedgePolicyBuilder<C, Q2> {
        HedgePolicyBuilder {
            fixed: self.fixed,
            percentile: self.percentile,
            initial_delay: self.initial_delay,
            window: self.window,
            min_samples: self.min_samples,
            max_hedges: self.max_hedges,
            classify: self.classify,
            requests,
            spend: self.spend,
            deposits: self.deposits,
            clock: self.clock,
            name: self.name,
        }
    }

    /// Hedges only requests the predicate accepts (the idempotent ones).
    #[must_use]
    pub fn retry_requests_if<F>(self, predicate: F) -> HedgePolicyBuilder<C, CloneIf<F>> {
        self.requests(CloneIf(predicate))
    }

    /// Copies requests for hedges with `copy`; `None` means: do not hedge this one.
    #[must_use]
    pub fn clone_requests_with<F>(self, copy: F) -> HedgePolicyBuilder<C, CloneWith<F>> {
        self.requests(CloneWith(copy))
    }

    /// Hedges withdraw from `budget` (give the retry policy of the same backend the same one).
    #[must_use]
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.spend = Some(Spend::Budget(budget));
        self
    }

    /// Hedges withdraw from `budget`, but requests do not deposit into it here: use this when
    /// a [`RetryPolicyService`](crate::RetryPolicyService) with the same budget wraps the same requests (its deposits
    /// fund both), so that one request is not credited twice.
    #[must_use]
    pub fn budget_shared_with_retry(mut self, budget: RetryBudget) -> Self {
        self.spend = Some(Spend::Budget(budget));
        self.deposits = false;
        self
    }

    /// Hedges are allowed by a gRPC-style throttle instead.
    #[must_use]
    pub fn throttle(mut self, throttle: RetryThrottle) -> Self {
        self.spend = Some(Spend::Throttle(throttle));
        self
    }

    /// No budget: every request slower than the delay is hedged.
    #[must_use]
    pub fn unlimited(mut self) -> Self {
        self.spend = Some(Spend::Unlimited);
        self
    }

    /// The clock for latencies (read twice per request in percentile mode, never with a fixed
    /// delay) and the default budget. Default [`Clock::default`] for both (no background
    /// thread).
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The instance name for metrics and traces. Default `"hedge"`.
    #[must_use]
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `delay`, `initial_delay` (zero), `percentile` (not strictly
    /// between 0 and 100), `window` (zero) or `max_hedges` (0 or above 10).
    pub fn build(self) -> Result<HedgePolicy<C, Q>, ConfigError> {
        if let Some(delay) = self.fixed {
            check_nonzero_duration("delay", delay)?;
        }
        check_nonzero_duration("initial_delay", self.initial_delay)?;
        if !(self.percentile > 0.0 && self.percentile < 100.0) {
            return Err(ConfigError::new(
                "percentile",
                format!(
                    "must be between 0 and 100 (exclusive), got {}",
                    self.percentile
                ),
            ));
        }
        if self.window == 0 {
            return Err(ConfigError::new("window", "must be at least 1 sample"));
        }
        if !(1..=10).contains(&self.max_hedges) {
            return Err(ConfigError::new(
                "max_hedges",
                format!("must be between 1 and 10, got {}", self.max_hedges),
            ));
        }
        let spend = match self.spend {
            Some(spend) => spend,
            None => {
                let clock = self.clock.clone().unwrap_or_default();
                Spend::Budget(RetryBudget::builder().clock(clock).build()?)
            }
        };
        let name = self.name.unwrap_or_else(|| Arc::from("hedge"));
        let events = EventBus::new();
        palisade_core::subscribe_feature_listeners!(events, "hedge", name);
        Ok(HedgePolicy {
            shared: Arc::new(HedgeShared {
                fixed: self.fixed,
                initial_delay: self.initial_delay,
                histogram: self
                    .fixed
                    .is_none()
                    .then(|| LatencyHistogram::new(self.percentile, self.window, self.min_samples)),
                max_hedges: self.max_hedges,
                classify: self.classify,
                requests: self.requests,
                spend,
                deposits: self.deposits,
                clock: self.clock.unwrap_or_default(),
                events,
                name,
            }),
        })
    }
}
