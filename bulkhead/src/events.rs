//! What a bulkhead tells its listeners, and the metrics it records.

use std::time::Duration;

/// Why a call was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Full, in reject mode ([`BulkheadFull`](crate::BulkheadFull)).
    Full,
    /// Full, and the waiting queue at its bound ([`BulkheadFull`](crate::BulkheadFull)).
    QueueFull,
    /// Waited `max_wait` in vain ([`WaitTimeout`](crate::WaitTimeout)).
    WaitTimeout,
}

impl RejectReason {
    /// The label value in metrics: `"full"`, `"queue_full"` or `"wait_timeout"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::Full => "full",
            RejectReason::QueueFull => "queue_full",
            RejectReason::WaitTimeout => "wait_timeout",
        }
    }
}

/// An event of a [`Bulkhead`](crate::Bulkhead). Subscribe with
/// [`Bulkhead::subscribe`](crate::Bulkhead::subscribe).
///
/// With the `metrics` feature, every bulkhead records them as:
///
/// | event           | metric |
/// |-----------------|--------|
/// | `CallPermitted` | counter `palisade_bulkhead_calls_permitted_total`, gauge `palisade_bulkhead_in_flight`, histogram `palisade_bulkhead_wait_seconds` |
/// | `CallRejected`  | counter `palisade_bulkhead_calls_rejected_total` (label `reason`) |
/// | `CallFinished`  | gauge `palisade_bulkhead_in_flight` |
/// | `LimitChanged`  | gauge `palisade_bulkhead_limit` |
///
/// all with the label `name`, the bulkhead's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BulkheadEvent {
    /// A call got a slot.
    CallPermitted {
        /// Calls in flight, this one included.
        in_flight: usize,
        /// How long it queued (zero when a slot was free).
        waited: Duration,
    },
    /// A call was refused.
    CallRejected {
        /// Why.
        reason: RejectReason,
    },
    /// A call gave its slot back (completed, failed, was cancelled or panicked).
    CallFinished {
        /// Calls in flight now.
        in_flight: usize,
    },
    /// The limit changed, by `set_limit` or by the adaptive algorithm.
    LimitChanged {
        /// The limit before.
        from: usize,
        /// The limit now.
        to: usize,
    },
}

/// The `metrics` handles of one bulkhead, registered once (feature `metrics`).
///
/// Counters `palisade_bulkhead_calls_permitted_total`, `palisade_bulkhead_calls_rejected_total`
/// (label `reason`: `full`, `queue_full` or `wait_timeout`), gauges `palisade_bulkhead_in_flight`
/// and `palisade_bulkhead_limit`, and the histogram `palisade_bulkhead_wait_seconds`, all
/// labelled `name`.
#[cfg(feature = "metrics")]
pub struct BulkheadMetrics {
    permitted: metrics::Counter,
    in_flight: metrics::Gauge,
    wait: metrics::Histogram,
    /// One per `RejectReason`, in declaration order.
    rejected: [metrics::Counter; 3],
    limit: metrics::Gauge,
}

#[cfg(feature = "metrics")]
impl std::fmt::Debug for BulkheadMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkheadMetrics").finish_non_exhaustive()
    }
}

#[cfg(feature = "metrics")]
impl palisade_core::events::RecordMetrics for BulkheadEvent {
    type Handles = BulkheadMetrics;

    fn register(name: &str) -> BulkheadMetrics {
        let name = name.to_owned();
        let rejected = |reason: RejectReason| {
            metrics::counter!(
                "palisade_bulkhead_calls_rejected_total",
                "name" => name.clone(),
                "reason" => reason.as_str()
            )
        };
        BulkheadMetrics {
            permitted: metrics::counter!("palisade_bulkhead_calls_permitted_total", "name" => name.clone()),
            in_flight: metrics::gauge!("palisade_bulkhead_in_flight", "name" => name.clone()),
            wait: metrics::histogram!("palisade_bulkhead_wait_seconds", "name" => name.clone()),
            rejected: [
                rejected(RejectReason::Full),
                rejected(RejectReason::QueueFull),
                rejected(RejectReason::WaitTimeout),
            ],
            limit: metrics::gauge!("palisade_bulkhead_limit", "name" => name),
        }
    }

    fn record_metrics(&self, m: &BulkheadMetrics) {
        match *self {
            BulkheadEvent::CallPermitted { in_flight, waited } => {
                m.permitted.increment(1);
                m.in_flight.set(in_flight as f64);
                m.wait.record(waited.as_secs_f64());
            }
            BulkheadEvent::CallRejected { reason } => {
                let index = match reason {
                    RejectReason::Full => 0,
                    RejectReason::QueueFull => 1,
                    RejectReason::WaitTimeout => 2,
                };
                m.rejected[index].increment(1);
            }
            BulkheadEvent::CallFinished { in_flight } => m.in_flight.set(in_flight as f64),
            BulkheadEvent::LimitChanged { to, .. } => m.limit.set(to as f64),
        }
    }
}

/// Traced at `DEBUG` with the event's `Debug` form (the default of the trait).
#[cfg(feature = "tracing")]
impl palisade_core::events::TraceEvent for BulkheadEvent {}
