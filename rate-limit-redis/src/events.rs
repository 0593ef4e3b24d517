//! Events of the Redis limiters, and their `metrics` and `tracing` forms.

use crate::error::StoreErrorKind;
use std::time::Duration;

/// What a [`RedisRateLimiter`](crate::RedisRateLimiter) or
/// [`LeasedRateLimiter`](crate::LeasedRateLimiter) did. Subscribe with `subscribe` on either
/// handle (a leased limiter shares its global limiter's bus).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RedisRateLimiterEvent {
    /// Redis (or the local lease) admitted a call of `cost` tokens.
    Permitted {
        /// Tokens taken.
        cost: u32,
        /// Whether it took a round trip to Redis (false: spent from a local lease).
        round_trip: bool,
    },
    /// The call was over the global limit (or the fallback's, in an outage).
    Rejected {
        /// Tokens asked for.
        cost: u32,
        /// When it would conform.
        retry_after: Duration,
    },
    /// A keyed two-tier limiter refused a new key: it held `max_keys` keys, none idle.
    TooManyKeys {
        /// The cap on keys.
        max_keys: usize,
        /// When a held key goes idle at the earliest.
        retry_after: Duration,
    },
    /// A round trip answered, after `latency`.
    RoundTrip {
        /// From the request to the decoded reply.
        latency: Duration,
    },
    /// A two-tier limiter leased tokens.
    LeaseGranted {
        /// Tokens asked for (the adaptive batch, at least the call's cost).
        requested: u32,
        /// Tokens granted (the call's cost included).
        granted: u32,
    },
    /// A call could not be decided by Redis; the failure mode decided it.
    StoreError {
        /// What went wrong.
        kind: StoreErrorKind,
        /// Whether the local fallback limiter decided (fail open) or the call was rejected.
        fell_back: bool,
    },
    /// The first store error after a success (or since the limiter was built): Redis became
    /// unavailable. Emitted once per outage.
    StoreUnavailable {
        /// The error that started the outage.
        kind: StoreErrorKind,
        /// The error text.
        detail: String,
    },
    /// A round trip succeeded after an outage.
    StoreRecovered {
        /// Calls that met a store error during the outage.
        failed_calls: u64,
    },
}

#[cfg(feature = "tracing")]
impl palisade_core::events::TraceEvent for RedisRateLimiterEvent {
    fn trace(&self, layer: &'static str, name: &str) {
        match self {
            RedisRateLimiterEvent::Permitted { cost, round_trip } => {
                tracing::trace!(target: "palisade", layer, name, event = "permitted", cost, round_trip);
            }
            RedisRateLimiterEvent::Rejected { cost, retry_after } => tracing::trace!(
                target: "palisade", layer, name, event = "rejected", cost,
                retry_after_ms = retry_after.as_secs_f64() * 1e3
            ),
            RedisRateLimiterEvent::TooManyKeys {
                max_keys,
                retry_after,
            } => tracing::debug!(
                target: "palisade", layer, name, event = "too_many_keys", max_keys,
                retry_after_ms = retry_after.as_secs_f64() * 1e3
            ),
            RedisRateLimiterEvent::RoundTrip { latency } => tracing::trace!(
                target: "palisade", layer, name, event = "round_trip",
                latency_ms = latency.as_secs_f64() * 1e3
            ),
            RedisRateLimiterEvent::LeaseGranted { requested, granted } => tracing::trace!(
                target: "palisade", layer, name, event = "lease_granted", requested, granted
            ),
            RedisRateLimiterEvent::StoreError { kind, fell_back } => tracing::debug!(
                target: "palisade", layer, name, event = "store_error", kind = kind.as_str(), fell_back
            ),
            RedisRateLimiterEvent::StoreUnavailable { kind, detail } => tracing::warn!(
                target: "palisade", layer, name, event = "store_unavailable",
                kind = kind.as_str(), detail = detail.as_str()
            ),
            RedisRateLimiterEvent::StoreRecovered { failed_calls } => tracing::info!(
                target: "palisade", layer, name, event = "store_recovered", failed_calls
            ),
        }
    }
}

/// The `metrics` handles of one limiter (feature `metrics`). Layer label `rate_limit` (the
/// names are the local limiter's, so one dashboard shows both), default `name`
/// `rate_limit_redis`:
///
/// | metric | labels | what |
/// |---|---|---|
/// | `palisade_rate_limit_calls_total` | `name`, `outcome` = `success` / `rejected` | decisions |
/// | `palisade_rate_limit_rejections_total` | `name`, `reason` = `rate_limited`; `too_many_keys` once a keyed limiter refuses a key | rejections |
/// | `palisade_rate_limit_store_round_trip_seconds` | `name` | Redis latency (histogram) |
/// | `palisade_rate_limit_store_errors_total` | `name`, `kind` | calls Redis did not decide |
/// | `palisade_rate_limit_store_available` | `name` | 1 while Redis answers, 0 in an outage |
/// | `palisade_rate_limit_lease_tokens_total` | `name` | tokens leased by two-tier limiters |
#[cfg(feature = "metrics")]
#[derive(Debug)]
pub struct RedisRateLimiterMetrics {
    success: metrics::Counter,
    rejected: metrics::Counter,
    rejections: metrics::Counter,
    round_trip: metrics::Histogram,
    errors: [metrics::Counter; 4],
    available: metrics::Gauge,
    leased: metrics::Counter,
    /// `rejections_total{reason="too_many_keys"}`, registered at the first such refusal (only
    /// keyed limiters make one).
    too_many_keys: std::sync::OnceLock<metrics::Counter>,
    name: String,
}

#[cfg(feature = "metrics")]
impl palisade_core::events::RecordMetrics for RedisRateLimiterEvent {
    type Handles = RedisRateLimiterMetrics;

    fn register(name: &str) -> RedisRateLimiterMetrics {
        use palisade_core::events::{MetricKind, describe};
        describe(
            MetricKind::Counter,
            "palisade_rate_limit_calls_total",
            "Rate limiter decisions, by outcome.",
        );
        describe(
            MetricKind::Counter,
            "palisade_rate_limit_rejections_total",
            "Calls the rate limiter rejected, by reason.",
        );
        describe(
            MetricKind::Histogram,
            "palisade_rate_limit_store_round_trip_seconds",
            "Round trips to the global limiter's Redis.",
        );
        describe(
            MetricKind::Counter,
            "palisade_rate_limit_store_errors_total",
            "Calls the global limiter's Redis did not decide, by kind.",
        );
        describe(
            MetricKind::Gauge,
            "palisade_rate_limit_store_available",
            "1 while the global limiter's Redis answers, 0 during an outage.",
        );
        describe(
            MetricKind::Counter,
            "palisade_rate_limit_lease_tokens_total",
            "Tokens leased from the global limit by two-tier limiters.",
        );
        let name = name.to_owned();
        let error = |kind: StoreErrorKind| metrics::counter!("palisade_rate_limit_store_errors_total", "name" => name.clone(), "kind" => kind.as_str());
        let available =
            metrics::gauge!("palisade_rate_limit_store_available", "name" => name.clone());
        available.set(1.0);
        RedisRateLimiterMetrics {
            success: metrics::counter!("palisade_rate_limit_calls_total", "name" => name.clone(), "outcome" => "success"),
            rejected: metrics::counter!("palisade_rate_limit_calls_total", "name" => name.clone(), "outcome" => "rejected"),
            rejections: metrics::counter!("palisade_rate_limit_rejections_total", "name" => name.clone(), "reason" => palisade_core::RejectionKind::RateLimited.as_str()),
            round_trip: metrics::histogram!("palisade_rate_limit_store_round_trip_seconds", "name" => name.clone()),
            errors: [
                error(StoreErrorKind::Timeout),
                error(StoreErrorKind::Connection),
                error(StoreErrorKind::Script),
                error(StoreErrorKind::Reply),
            ],
            available,
            leased: metrics::counter!("palisade_rate_limit_lease_tokens_total", "name" => name.clone()),
            too_many_keys: std::sync::OnceLock::new(),
            name,
        }
    }

    fn record_metrics(&self, m: &RedisRateLimiterMetrics) {
        match self {
            RedisRateLimiterEvent::Permitted { .. } => m.success.increment(1),
            RedisRateLimiterEvent::Rejected { .. } => {
                m.rejected.increment(1);
                m.rejections.increment(1);
            }
            RedisRateLimiterEvent::TooManyKeys { .. } => {
                m.rejected.increment(1);
                m.too_many_keys
                    .get_or_init(|| {
                        metrics::counter!(
                            "palisade_rate_limit_rejections_total",
                            "name" => m.name.clone(),
                            "reason" => palisade_core::RejectionKind::TooManyKeys.as_str()
                        )
                    })
                    .increment(1);
            }
            RedisRateLimiterEvent::RoundTrip { latency } => {
                m.round_trip.record(latency.as_secs_f64());
            }
            RedisRateLimiterEvent::LeaseGranted { granted, .. } => {
                m.leased.increment(u64::from(*granted));
            }
            RedisRateLimiterEvent::StoreError { kind, .. } => {
                let i = match kind {
                    StoreErrorKind::Timeout => 0,
                    StoreErrorKind::Connection => 1,
                    StoreErrorKind::Script => 2,
                    StoreErrorKind::Reply => 3,
                };
                m.errors[i].increment(1);
            }
            RedisRateLimiterEvent::StoreUnavailable { .. } => m.available.set(0.0),
            RedisRateLimiterEvent::StoreRecovered { .. } => m.available.set(1.0),
        }
    }
}
