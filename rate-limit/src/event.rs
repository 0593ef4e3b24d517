//! What a limiter tells its listeners.

use crate::config::Quota;
use std::time::Duration;

/// An event of a [`RateLimiter`](crate::RateLimiter) or
/// [`KeyedRateLimiter`](crate::KeyedRateLimiter), delivered to listeners subscribed with
/// `subscribe`. With nobody listening, an event costs one branch and is never built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateLimitEvent {
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

#[cfg(feature = "metrics")]
impl palisade_core::events::RecordMetrics for RateLimitEvent {
    fn record_metrics(&self, name: &str) {
        let name = name.to_owned();
        match *self {
            RateLimitEvent::Permitted { cost, wait } => {
                metrics::counter!("palisade_rate_limit_permitted_total", "name" => name.clone())
                    .increment(1);
                metrics::counter!("palisade_rate_limit_permitted_tokens_total", "name" => name.clone())
                    .increment(u64::from(cost));
                if !wait.is_zero() {
                    metrics::histogram!("palisade_rate_limit_wait_seconds", "name" => name)
                        .record(wait.as_secs_f64());
                }
            }
            RateLimitEvent::Rejected { retry_after, .. } => {
                let outcome = if retry_after.is_some() {
                    "rate_limited"
                } else {
                    "refused"
                };
                metrics::counter!(
                    "palisade_rate_limit_rejected_total",
                    "name" => name,
                    "outcome" => outcome
                )
                .increment(1);
            }
            RateLimitEvent::QuotaChanged { to, .. } => {
                metrics::gauge!("palisade_rate_limit_burst", "name" => name.clone())
                    .set(f64::from(to.burst()));
                metrics::counter!("palisade_rate_limit_quota_changes_total", "name" => name)
                    .increment(1);
            }
        }
    }
}
