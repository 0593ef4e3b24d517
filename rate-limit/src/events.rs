//! What a limiter tells its listeners.

use crate::config::Quota;
use std::time::Duration;

/// An event of a [`RateLimiter`](crate::RateLimiter) or
/// [`KeyedRateLimiter`](crate::KeyedRateLimiter), delivered to listeners subscribed with
/// `subscribe`. With nobody listening, an event costs one branch and is never built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateLimiterEvent {
    /// A request was admitted.
    Permitted {
        /// Tokens it took.
        cost: u32,
        /// How long it waits before going (zero unless in [`Mode::Wait`](crate::Mode::Wait)).
        wait: Duration,
    },
    /// A request was refused.
    Rejected {
        /// Tokens it asked for.
        cost: u32,
        /// When it would conform; `None` when it never can (cost above the burst) or the
        /// keyed limiter's table is full.
        retry_after: Option<Duration>,
    },
    /// The quota was changed through the handle.
    QuotaChanged {
        /// The quota before.
        from: Quota,
        /// The quota now.
        to: Quota,
    },
}

/// The `metrics` handles of one limiter, registered once (feature `metrics`).
///
/// Counters `palisade_rate_limit_permitted_total`, `palisade_rate_limit_permitted_tokens_total`,
/// `palisade_rate_limit_rejected_total` (label `outcome`: `rate_limited` or `refused`),
/// `palisade_rate_limit_quota_changes_total`, the gauge `palisade_rate_limit_burst` and the
/// histogram `palisade_rate_limit_wait_seconds`, all labelled `name`.
#[cfg(feature = "metrics")]
pub struct RateLimiterMetrics {
    permitted: metrics::Counter,
    permitted_tokens: metrics::Counter,
    wait: metrics::Histogram,
    rate_limited: metrics::Counter,
    refused: metrics::Counter,
    burst: metrics::Gauge,
    quota_changes: metrics::Counter,
}

#[cfg(feature = "metrics")]
impl std::fmt::Debug for RateLimiterMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiterMetrics").finish_non_exhaustive()
    }
}

#[cfg(feature = "metrics")]
impl palisade_core::events::RecordMetrics for RateLimiterEvent {
    type Handles = RateLimiterMetrics;

    fn register(name: &str) -> RateLimiterMetrics {
        let name = name.to_owned();
        let rejected = |outcome: &'static str| {
            metrics::counter!(
                "palisade_rate_limit_rejected_total",
                "name" => name.clone(),
                "outcome" => outcome
            )
        };
        RateLimiterMetrics {
            permitted: metrics::counter!("palisade_rate_limit_permitted_total", "name" => name.clone()),
            permitted_tokens: metrics::counter!("palisade_rate_limit_permitted_tokens_total", "name" => name.clone()),
            wait: metrics::histogram!("palisade_rate_limit_wait_seconds", "name" => name.clone()),
            rate_limited: rejected("rate_limited"),
            refused: rejected("refused"),
            burst: metrics::gauge!("palisade_rate_limit_burst", "name" => name.clone()),
            quota_changes: metrics::counter!("palisade_rate_limit_quota_changes_total", "name" => name),
        }
    }

    fn record_metrics(&self, m: &RateLimiterMetrics) {
        match *self {
            RateLimiterEvent::Permitted { cost, wait } => {
                m.permitted.increment(1);
                m.permitted_tokens.increment(u64::from(cost));
                if !wait.is_zero() {
                    m.wait.record(wait.as_secs_f64());
                }
            }
            RateLimiterEvent::Rejected { retry_after, .. } => {
                if retry_after.is_some() {
                    m.rate_limited.increment(1);
                } else {
                    m.refused.increment(1);
                }
            }
            RateLimiterEvent::QuotaChanged { to, .. } => {
                m.burst.set(f64::from(to.burst()));
                m.quota_changes.increment(1);
            }
        }
    }
}

/// Traced at `DEBUG` with the event's `Debug` form (the default of the trait).
#[cfg(feature = "tracing")]
impl palisade_core::events::TraceEvent for RateLimiterEvent {}
