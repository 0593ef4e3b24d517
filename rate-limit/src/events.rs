//! What a limiter tells its listeners.

use crate::config::Quota;
use palisade_core::classify::Outcome;
use palisade_core::rejection::RejectionKind;
use std::time::Duration;

/// An event of a [`RateLimiter`](crate::RateLimiter) or
/// [`KeyedRateLimiter`](crate::KeyedRateLimiter), delivered to listeners subscribed with
/// `subscribe`. With nobody listening, an event costs one branch and is never built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateLimiterEvent {
    /// A request took its tokens.
    Permitted {
        /// Tokens it took.
        cost: u32,
    },
    /// A request was refused.
    Rejected {
        /// Tokens it asked for.
        cost: u32,
        /// Why: [`RejectionKind::RateLimited`], [`RejectionKind::CostExceedsBurst`] or
        /// [`RejectionKind::TooManyKeys`].
        reason: RejectionKind,
        /// When it may conform; `None` when it never can (cost above the burst).
        retry_after: Option<Duration>,
    },
    /// Tokens taken for a call that never reached the dependency (a ready service dropped
    /// before `call`, or a layer below rejected the call locally) were given back.
    Refunded {
        /// Tokens given back (in part, if they were held long: see the crate docs).
        cost: u32,
    },
    /// A call that a service admitted has completed: [`Outcome::Success`] for `Ok`,
    /// [`Outcome::Failure`] for an error of the dependency, [`Outcome::Ignore`] for a local
    /// rejection of a layer below (its tokens were given back).
    Completed {
        /// How it ended.
        outcome: Outcome,
    },
    /// The quota was changed through the handle.
    QuotaChanged {
        /// The quota before.
        from: Quota,
        /// The quota now.
        to: Quota,
    },
}

impl RateLimiterEvent {
    /// The refusal of `cost` tokens by an empty bucket that would conform after `after` ns.
    pub(crate) fn limited(cost: u32, after: u64) -> RateLimiterEvent {
        RateLimiterEvent::Rejected {
            cost,
            reason: RejectionKind::RateLimited,
            retry_after: Some(Duration::from_nanos(after)),
        }
    }
}

/// The `metrics` handles of one limiter, registered once (feature `metrics`).
///
/// | metric | kind | labels |
/// |---|---|---|
/// | `palisade_rate_limit_calls_total` | counter: calls through a service (`success`, `failure`, `ignore`) and every refusal (`rejected`) | `name`, `outcome` |
/// | `palisade_rate_limit_rejections_total` | counter | `name`, `reason` (`rate_limited`, `cost_exceeds_burst`; `too_many_keys` on keyed limiters only) |
/// | `palisade_rate_limit_permitted_total` | counter: requests that took tokens | `name` |
/// | `palisade_rate_limit_permitted_tokens_total` | counter | `name` |
/// | `palisade_rate_limit_refunded_total` | counter: takes given back | `name` |
/// | `palisade_rate_limit_quota_changes_total` | counter, on plain limiters only (a keyed limiter's quota is fixed) | `name` |
/// | `palisade_rate_limit_burst` | gauge, set at build and on each quota change | `name` |
/// | `palisade_rate_limit_rate` | gauge: tokens per second, set likewise | `name` |
///
/// The limiter does not time calls, so it records no duration histogram.
#[cfg(feature = "metrics")]
pub struct RateLimiterMetrics {
    /// success, failure, ignore, rejected.
    calls: palisade_core::events::OutcomeCounters,
    /// rate_limited, cost_exceeds_burst.
    rejections: [metrics::Counter; 2],
    /// `rejections_total{reason="too_many_keys"}`: registered for keyed limiters only (by
    /// [`register_keyed`](Self::register_keyed)), the only ones that can refuse a key.
    too_many_keys: std::sync::OnceLock<metrics::Counter>,
    permitted: metrics::Counter,
    permitted_tokens: metrics::Counter,
    refunded: metrics::Counter,
    /// `quota_changes_total`: registered for plain limiters only (by
    /// [`register_unkeyed`](Self::register_unkeyed)); a keyed limiter's quota is fixed.
    quota_changes: std::sync::OnceLock<metrics::Counter>,
    burst: metrics::Gauge,
    rate: metrics::Gauge,
}

#[cfg(feature = "metrics")]
/// The reasons every limiter can give: both handles take weighted costs (`check_n`,
/// `check_key_n`, a cost function on the layer), and a cost above the burst is refused.
/// `too_many_keys` is registered apart, for keyed limiters only.
const REASONS: [RejectionKind; 2] = [RejectionKind::RateLimited, RejectionKind::CostExceedsBurst];

#[cfg(feature = "metrics")]
impl std::fmt::Debug for RateLimiterMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiterMetrics").finish_non_exhaustive()
    }
}

#[cfg(feature = "metrics")]
fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(
        "palisade_rate_limit_calls_total",
        "Calls through the rate limiter, by outcome (success, failure, ignore, rejected)."
    );
    describe_counter!(
        "palisade_rate_limit_rejections_total",
        "Requests the rate limiter refused, by reason."
    );
    describe_counter!(
        "palisade_rate_limit_permitted_total",
        "Requests that took their tokens."
    );
    describe_counter!(
        "palisade_rate_limit_permitted_tokens_total",
        "Tokens taken by permitted requests."
    );
    describe_counter!(
        "palisade_rate_limit_refunded_total",
        "Takes given back because the call never reached the dependency."
    );
    describe_counter!(
        "palisade_rate_limit_quota_changes_total",
        "Run-time quota changes."
    );
    describe_gauge!(
        "palisade_rate_limit_burst",
        "The bucket's capacity in tokens."
    );
    describe_gauge!(
        "palisade_rate_limit_rate",
        "Tokens the bucket regains per second."
    );
}

/// Sets the quota gauges of the instance `name`: called at build, so a dashboard reads them
/// before the first quota change.
#[cfg(feature = "metrics")]
impl RateLimiterMetrics {
    /// Registers what only a keyed limiter can produce,
    /// `palisade_rate_limit_rejections_total{reason="too_many_keys"}` (once; later calls do
    /// nothing). Run right after registration.
    pub(crate) fn register_keyed(&self, name: &str) {
        self.too_many_keys.get_or_init(|| {
            metrics::counter!(
                "palisade_rate_limit_rejections_total",
                "name" => name.to_owned(),
                "reason" => RejectionKind::TooManyKeys.as_str()
            )
        });
    }

    /// Registers what only a plain (non-keyed) limiter can produce,
    /// `palisade_rate_limit_quota_changes_total` (`set_quota`; once, later calls do nothing).
    /// Run right after registration.
    pub(crate) fn register_unkeyed(&self, name: &str) {
        self.quota_changes.get_or_init(|| {
            metrics::counter!("palisade_rate_limit_quota_changes_total", "name" => name.to_owned())
        });
    }
}

#[cfg(feature = "metrics")]
pub(crate) fn record_quota(name: &str, quota: Quota) {
    describe();
    metrics::gauge!("palisade_rate_limit_burst", "name" => name.to_owned())
        .set(f64::from(quota.burst()));
    metrics::gauge!("palisade_rate_limit_rate", "name" => name.to_owned())
        .set(tokens_per_second(quota));
}

#[cfg(feature = "metrics")]
fn tokens_per_second(quota: Quota) -> f64 {
    f64::from(quota.rate()) / quota.period().as_secs_f64()
}

#[cfg(feature = "metrics")]
impl palisade_core::events::RecordMetrics for RateLimiterEvent {
    type Handles = RateLimiterMetrics;

    fn register(name: &str) -> RateLimiterMetrics {
        describe();
        let name = name.to_owned();
        RateLimiterMetrics {
            calls: palisade_core::events::OutcomeCounters::register(
                "palisade_rate_limit_calls_total",
                &name,
            ),
            rejections: REASONS.map(|reason| {
                metrics::counter!("palisade_rate_limit_rejections_total", "name" => name.clone(), "reason" => reason.as_str())
            }),
            permitted: metrics::counter!("palisade_rate_limit_permitted_total", "name" => name.clone()),
            permitted_tokens: metrics::counter!("palisade_rate_limit_permitted_tokens_total", "name" => name.clone()),
            refunded: metrics::counter!("palisade_rate_limit_refunded_total", "name" => name.clone()),
            too_many_keys: std::sync::OnceLock::new(),
            quota_changes: std::sync::OnceLock::new(),
            burst: metrics::gauge!("palisade_rate_limit_burst", "name" => name.clone()),
            rate: metrics::gauge!("palisade_rate_limit_rate", "name" => name),
        }
    }

    fn record_metrics(&self, m: &RateLimiterMetrics) {
        match *self {
            RateLimiterEvent::Permitted { cost } => {
                m.permitted.increment(1);
                m.permitted_tokens.increment(u64::from(cost));
            }
            RateLimiterEvent::Rejected { reason, .. } => {
                m.calls.rejected();
                if let Some(i) = REASONS.iter().position(|r| *r == reason) {
                    m.rejections[i].increment(1);
                } else if reason == RejectionKind::TooManyKeys
                    && let Some(too_many_keys) = m.too_many_keys.get()
                {
                    too_many_keys.increment(1);
                }
            }
            RateLimiterEvent::Refunded { .. } => m.refunded.increment(1),
            RateLimiterEvent::Completed { outcome } => m.calls.finished(outcome),
            RateLimiterEvent::QuotaChanged { to, .. } => {
                m.burst.set(f64::from(to.burst()));
                m.rate.set(tokens_per_second(to));
                if let Some(quota_changes) = m.quota_changes.get() {
                    quota_changes.increment(1);
                }
            }
        }
    }
}

/// Quota changes at `INFO`, per-call events at `TRACE`; target `palisade`, fields `layer`,
/// `name` and the event's own.
#[cfg(feature = "tracing")]
impl palisade_core::events::TraceEvent for RateLimiterEvent {
    fn trace(&self, layer: &'static str, name: &str) {
        match *self {
            RateLimiterEvent::Permitted { cost } => {
                tracing::trace!(target: "palisade", layer, name, cost, "request permitted");
            }
            RateLimiterEvent::Rejected {
                cost,
                reason,
                retry_after,
            } => {
                let retry_after_ms = retry_after.map(|d| d.as_secs_f64() * 1e3);
                tracing::trace!(target: "palisade", layer, name, cost, reason = reason.as_str(), retry_after_ms, "request rejected");
            }
            RateLimiterEvent::Refunded { cost } => {
                tracing::trace!(target: "palisade", layer, name, cost, "tokens given back");
            }
            RateLimiterEvent::Completed { outcome } => {
                tracing::trace!(target: "palisade", layer, name, outcome = outcome.as_str(), "call completed");
            }
            RateLimiterEvent::QuotaChanged { from, to } => {
                tracing::info!(
                    target: "palisade",
                    layer,
                    name,
                    from_rate = from.rate(),
                    from_period_ms = from.period().as_secs_f64() * 1e3,
                    from_burst = from.burst(),
                    to_rate = to.rate(),
                    to_period_ms = to.period().as_secs_f64() * 1e3,
                    to_burst = to.burst(),
                    "rate limit quota changed"
                );
            }
        }
    }
}
