//! What a balancer tells its listeners, and the metrics it records.

use palisade_core::classify::Outcome;
use palisade_core::rejection::RejectionKind;
use std::time::Duration;

/// An event of a [`Balancer`](crate::Balancer). Subscribe with
/// [`Balancer::subscribe`](crate::Balancer::subscribe).
///
/// With the `metrics` feature, every balancer records them as (all labelled `name`, the
/// balancer's name, `"load_balancer"` unless set):
///
/// | event | metric |
/// |---|---|
/// | (build) | gauges `palisade_load_balancer_endpoints` and `palisade_load_balancer_ejected_endpoints` set to 0 |
/// | `EndpointAdded`, `EndpointRemoved` | gauges `palisade_load_balancer_endpoints`, `palisade_load_balancer_ejected_endpoints` |
/// | `EndpointEjected` | counter `palisade_load_balancer_ejections_total`, gauge `palisade_load_balancer_ejected_endpoints` |
/// | `EndpointRestored` | gauge `palisade_load_balancer_ejected_endpoints` |
/// | `CallRejected` | counters `palisade_load_balancer_calls_total{outcome="rejected"}` and `palisade_load_balancer_rejections_total{reason="no_healthy_endpoints"}` |
/// | `CallFinished` | counter `palisade_load_balancer_calls_total{outcome}` (`success`, `failure`, `ignore`), histogram `palisade_load_balancer_call_duration_seconds{outcome}` (the balancer times every call for its latency estimate anyway) |
///
/// Per-endpoint figures (pending, latency estimate, calls, failures, ejections) are in
/// [`Balancer::snapshot`](crate::Balancer::snapshot), and become gauges labelled `endpoint`
/// when you call `Balancer::export_endpoint_metrics` (feature `metrics`), not per call.
///
/// With the `tracing` feature: ejections at `WARN`, restorations and set changes at `INFO`,
/// per-call events at `TRACE`, target `palisade`, fields `layer = "load_balancer"`, `name`,
/// `event` and the event's own.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum BalancerEvent<K> {
    /// An endpoint joined the set (or replaced one with the same key).
    EndpointAdded {
        /// Its key.
        key: K,
        /// Endpoints in the set now.
        endpoints: usize,
        /// Endpoints ejected now.
        ejected: usize,
    },
    /// An endpoint left the set; its calls in flight finish normally.
    EndpointRemoved {
        /// Its key.
        key: K,
        /// Endpoints in the set now.
        endpoints: usize,
        /// Endpoints ejected now.
        ejected: usize,
    },
    /// Outlier detection ejected an endpoint.
    EndpointEjected {
        /// Its key.
        key: K,
        /// For how long.
        duration: Duration,
        /// How many times in a row it has been ejected (this one included).
        times: u32,
        /// Endpoints ejected now, this one included.
        ejected: usize,
        /// Endpoints in the set.
        endpoints: usize,
    },
    /// An ejected endpoint's time ran out: it is a candidate again.
    EndpointRestored {
        /// Its key.
        key: K,
        /// Endpoints ejected now.
        ejected: usize,
        /// Endpoints in the set.
        endpoints: usize,
    },
    /// A call was refused without reaching an endpoint.
    CallRejected {
        /// Why (today always [`RejectionKind::NoHealthyEndpoints`]).
        kind: RejectionKind,
    },
    /// A call to an endpoint finished (a cancelled call reports nothing).
    CallFinished {
        /// `Success` for `Ok`, `Failure` for an error of the endpoint, `Ignore` for a local
        /// rejection from a layer below the balancer.
        outcome: Outcome,
        /// From the pick to the answer.
        duration: Duration,
    },
}

/// The `metrics` handles of one balancer, registered once (feature `metrics`); see
/// [`BalancerEvent`] for what each records.
#[cfg(feature = "metrics")]
pub struct BalancerMetrics {
    /// `calls_total` by outcome: success, failure, ignore, rejected.
    calls: palisade_core::events::OutcomeCounters,
    /// `call_duration_seconds` by outcome: success, failure, ignore.
    duration: palisade_core::events::OutcomeHistograms,
    rejections: metrics::Counter,
    ejections: metrics::Counter,
    endpoints: metrics::Gauge,
    ejected: metrics::Gauge,
}

#[cfg(feature = "metrics")]
impl std::fmt::Debug for BalancerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BalancerMetrics").finish_non_exhaustive()
    }
}

#[cfg(feature = "metrics")]
impl<K: 'static> palisade_core::events::RecordMetrics for BalancerEvent<K> {
    type Handles = BalancerMetrics;

    fn register(name: &str) -> BalancerMetrics {
        use metrics::Unit;
        metrics::describe_counter!(
            "palisade_load_balancer_calls_total",
            Unit::Count,
            "Calls through the balancer by outcome: success, failure, ignore (a local rejection \
             from below), rejected (no healthy endpoint)."
        );
        metrics::describe_counter!(
            "palisade_load_balancer_rejections_total",
            Unit::Count,
            "Calls the balancer refused itself, by reason: no_healthy_endpoints."
        );
        metrics::describe_histogram!(
            "palisade_load_balancer_call_duration_seconds",
            Unit::Seconds,
            "Time from the pick to the endpoint's answer, by outcome."
        );
        metrics::describe_counter!(
            "palisade_load_balancer_ejections_total",
            Unit::Count,
            "Endpoints ejected by outlier detection."
        );
        metrics::describe_gauge!(
            "palisade_load_balancer_endpoints",
            Unit::Count,
            "Endpoints in the balancer's set."
        );
        metrics::describe_gauge!(
            "palisade_load_balancer_ejected_endpoints",
            Unit::Count,
            "Endpoints ejected now."
        );
        let calls = palisade_core::events::OutcomeCounters::register(
            "palisade_load_balancer_calls_total",
            name,
        );
        let duration = palisade_core::events::OutcomeHistograms::register(
            "palisade_load_balancer_call_duration_seconds",
            name,
        );
        let name = name.to_owned();
        let endpoints = metrics::gauge!("palisade_load_balancer_endpoints", "name" => name.clone());
        let ejected =
            metrics::gauge!("palisade_load_balancer_ejected_endpoints", "name" => name.clone());
        // A balancer is built empty; insertions report through `EndpointAdded`.
        endpoints.set(0.0);
        ejected.set(0.0);
        BalancerMetrics {
            calls,
            duration,
            rejections: metrics::counter!(
                "palisade_load_balancer_rejections_total",
                "name" => name.clone(),
                "reason" => RejectionKind::NoHealthyEndpoints.as_str()
            ),
            ejections: metrics::counter!("palisade_load_balancer_ejections_total", "name" => name),
            endpoints,
            ejected,
        }
    }

    fn record_metrics(&self, m: &BalancerMetrics) {
        match self {
            BalancerEvent::EndpointAdded {
                endpoints, ejected, ..
            }
            | BalancerEvent::EndpointRemoved {
                endpoints, ejected, ..
            } => {
                m.endpoints.set(*endpoints as f64);
                m.ejected.set(*ejected as f64);
            }
            BalancerEvent::EndpointEjected { ejected, .. } => {
                m.ejections.increment(1);
                m.ejected.set(*ejected as f64);
            }
            BalancerEvent::EndpointRestored { ejected, .. } => m.ejected.set(*ejected as f64),
            BalancerEvent::CallRejected { .. } => {
                m.calls.rejected();
                m.rejections.increment(1);
            }
            BalancerEvent::CallFinished { outcome, duration } => {
                m.calls.finished(*outcome);
                m.duration.record(*outcome, *duration);
            }
        }
    }
}

/// Ejections at `WARN`, restorations and set changes at `INFO`, per-call events at `TRACE`.
#[cfg(feature = "tracing")]
impl<K: std::fmt::Debug + 'static> palisade_core::events::TraceEvent for BalancerEvent<K> {
    fn trace(&self, layer: &'static str, name: &str) {
        match self {
            BalancerEvent::EndpointAdded {
                key,
                endpoints,
                ejected,
            } => tracing::info!(target: "palisade", layer, name, event = "endpoint_added",
                key = ?key, endpoints, ejected),
            BalancerEvent::EndpointRemoved {
                key,
                endpoints,
                ejected,
            } => tracing::info!(target: "palisade", layer, name, event = "endpoint_removed",
                key = ?key, endpoints, ejected),
            BalancerEvent::EndpointEjected {
                key,
                duration,
                times,
                ejected,
                endpoints,
            } => tracing::warn!(target: "palisade", layer, name, event = "endpoint_ejected",
                key = ?key, duration_ms = duration.as_millis() as u64, times, ejected, endpoints),
            BalancerEvent::EndpointRestored {
                key,
                ejected,
                endpoints,
            } => tracing::info!(target: "palisade", layer, name, event = "endpoint_restored",
                key = ?key, ejected, endpoints),
            BalancerEvent::CallRejected { kind } => tracing::trace!(target: "palisade", layer,
                name, event = "call_rejected", reason = kind.as_str()),
            BalancerEvent::CallFinished { outcome, duration } => tracing::trace!(
                target: "palisade", layer, name, event = "call_finished",
                outcome = outcome.as_str(), duration_us = duration.as_micros() as u64),
        }
    }
}
