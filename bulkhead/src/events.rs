//! What a bulkhead tells its listeners, and the metrics it records.

use palisade_core::classify::Outcome;
use palisade_core::rejection::RejectionKind;
use std::time::Duration;

/// Why a call was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// Full, in reject mode ([`BulkheadFull`](crate::BulkheadFull)).
    Full,
    /// Full, and the waiting queue at its bound ([`BulkheadFull`](crate::BulkheadFull)).
    QueueFull,
    /// Waited `max_wait` in vain ([`WaitTimeout`](crate::WaitTimeout)).
    WaitTimeout,
}

impl RejectReason {
    /// The event's detail: `"full"`, `"queue_full"` or `"wait_timeout"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::Full => "full",
            RejectReason::QueueFull => "queue_full",
            RejectReason::WaitTimeout => "wait_timeout",
        }
    }

    /// The core rejection kind the caller gets: [`RejectionKind::BulkheadFull`] for `Full` and
    /// `QueueFull`, [`RejectionKind::WaitTimeout`] for `WaitTimeout`. Its
    /// [`as_str`](RejectionKind::as_str) is the `reason` label of the metrics, the same in
    /// every Palisade layer.
    #[must_use]
    pub const fn kind(self) -> RejectionKind {
        match self {
            RejectReason::Full | RejectReason::QueueFull => RejectionKind::BulkheadFull,
            RejectReason::WaitTimeout => RejectionKind::WaitTimeout,
        }
    }
}

/// An event of a [`Bulkhead`](crate::Bulkhead). Subscribe with
/// [`Bulkhead::subscribe`](crate::Bulkhead::subscribe).
///
/// With the `metrics` feature, every bulkhead records them as (all labelled `name`, the
/// bulkhead's name, `"bulkhead"` unless set):
///
/// | event           | metric |
/// |-----------------|--------|
/// | (build)         | gauges `palisade_bulkhead_limit` and `palisade_bulkhead_in_flight` set at once |
/// | `CallPermitted` | histogram `palisade_bulkhead_wait_seconds`, in a bulkhead with a wait queue (one that rejects when full never waits, and does not build this event for the metrics listener) |
/// | `CallRejected`  | counters `palisade_bulkhead_calls_total{outcome="rejected"}` and `palisade_bulkhead_rejections_total{reason}` (`bulkhead_full`, `wait_timeout`: [`RejectReason::kind`]) |
/// | `CallFinished`  | counter `palisade_bulkhead_calls_total{outcome}` (`success`, `failure`, `ignore`), gauge `palisade_bulkhead_in_flight`; adaptive bulkheads, which time every call anyway, also the histogram `palisade_bulkhead_call_duration_seconds{outcome}` |
/// | `ReservationReleased` | gauge `palisade_bulkhead_in_flight` |
/// | `LimitChanged`  | gauge `palisade_bulkhead_limit` |
///
/// With the `tracing` feature: `LimitChanged` at `INFO`, the per-call events at `TRACE`, target
/// `palisade`, with the fields `layer = "bulkhead"`, `name`, `event` and the event's own.
///
/// A listener runs on the caller's thread and must not panic; if it does, the bulkhead still
/// loses no slot (events are emitted after the slot's guard exists, and `CallFinished` after
/// the slot is given back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BulkheadEvent {
    /// A call got a slot and starts (emitted by `call`; a slot reserved by `poll_ready` and
    /// given back unused reports `ReservationReleased` instead).
    CallPermitted {
        /// Calls in flight, this one included.
        in_flight: usize,
        /// How long it queued (zero when a slot was free).
        waited: Duration,
    },
    /// A call was refused (the inner service was not called).
    CallRejected {
        /// Why.
        reason: RejectReason,
    },
    /// A started call gave its slot back.
    CallFinished {
        /// Calls in flight now.
        in_flight: usize,
        /// The layer's classification of the result: `Failure` also when the inner service
        /// panicked; `Ignore` when the call was cancelled (its future dropped) or a local
        /// rejection came back from below.
        outcome: Outcome,
        /// The round-trip time, measured by adaptive bulkheads only (a fixed one reads no
        /// clock).
        rtt: Option<Duration>,
    },
    /// A slot reserved by `poll_ready` was given back unused: the service was dropped (or
    /// cloned away, or turned into its inner service) without `call`, or its inner service's
    /// `poll_ready` failed. No call happened, so no outcome is counted.
    ReservationReleased {
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

/// The `metrics` handles of one bulkhead, registered once (feature `metrics`); see
/// [`BulkheadEvent`] for what each records.
#[cfg(feature = "metrics")]
pub struct BulkheadMetrics {
    /// `calls_total` by outcome: success, failure, ignore, rejected.
    calls: palisade_core::events::OutcomeCounters,
    /// `call_duration_seconds` by outcome: success, failure, ignore; registered only for an
    /// adaptive bulkhead (the only kind that times its calls), by
    /// [`register_call_durations`](Self::register_call_durations), so a fixed bulkhead exports
    /// no series that can never carry data.
    duration: std::sync::OnceLock<palisade_core::events::OutcomeHistograms>,
    /// `rejections_total` by reason: bulkhead_full, wait_timeout.
    rejections: [metrics::Counter; 2],
    in_flight: metrics::Gauge,
    /// The value `in_flight` was last set to: a finish that leaves the count where it was
    /// (every call of a caller at a time) writes nothing.
    in_flight_written: std::sync::atomic::AtomicU64,
    wait: metrics::Histogram,
    limit: metrics::Gauge,
}

#[cfg(feature = "metrics")]
impl std::fmt::Debug for BulkheadMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkheadMetrics").finish_non_exhaustive()
    }
}

#[cfg(feature = "metrics")]
impl BulkheadMetrics {
    /// Sets the in-flight gauge to `in_flight` unless that is what it was last set to: a
    /// plain load per finish, and the recorder's write (a virtual call and an atomic
    /// read-modify-write in the usual recorders) only when the count moved.
    fn set_in_flight(&self, in_flight: usize) {
        use std::sync::atomic::Ordering;
        let value = in_flight as u64;
        // Relaxed, both: a cache of the last value written, publishing nothing. Racing
        // finishes may leave the gauge at either one's count, as two racing `set`s did
        // before; the next finish that changes the count writes it again.
        if self.in_flight_written.load(Ordering::Relaxed) != value {
            self.in_flight_written.store(value, Ordering::Relaxed);
            self.in_flight.set(in_flight as f64);
        }
    }

    /// Registers `palisade_bulkhead_call_duration_seconds{name, outcome}` (once; later calls
    /// do nothing). Run right after registration for adaptive bulkheads only: a fixed one
    /// reads no clock, and its histogram would stay empty forever.
    pub(crate) fn register_call_durations(&self, name: &str) {
        self.duration.get_or_init(|| {
            metrics::describe_histogram!(
                "palisade_bulkhead_call_duration_seconds",
                metrics::Unit::Seconds,
                "Round-trip time of calls through an adaptive bulkhead (fixed bulkheads do \
                 not time calls and export no such series), by outcome: success, failure, \
                 ignore."
            );
            palisade_core::events::OutcomeHistograms::register(
                "palisade_bulkhead_call_duration_seconds",
                name,
            )
        });
    }
}

#[cfg(feature = "metrics")]
impl palisade_core::events::RecordMetrics for BulkheadEvent {
    type Handles = BulkheadMetrics;

    fn register(name: &str) -> BulkheadMetrics {
        use metrics::Unit;
        metrics::describe_counter!(
            "palisade_bulkhead_calls_total",
            Unit::Count,
            "Calls through the bulkhead by outcome: success, failure, ignore (cancelled or a \
             local rejection from below), rejected (by the bulkhead itself)."
        );
        metrics::describe_counter!(
            "palisade_bulkhead_rejections_total",
            Unit::Count,
            "Calls the bulkhead rejected, by reason: bulkhead_full, wait_timeout."
        );
        metrics::describe_histogram!(
            "palisade_bulkhead_wait_seconds",
            Unit::Seconds,
            "How long admitted calls queued for a slot (0 for one that found a slot free), \
             in bulkheads with a wait queue; a bulkhead that rejects when full never waits \
             and records nothing here."
        );
        metrics::describe_gauge!(
            "palisade_bulkhead_in_flight",
            Unit::Count,
            "Slots of the bulkhead held, written when a call finishes or a reservation is \
             given back and the count moved (while no call finishes, the count at the last \
             one; a full bulkhead shows in rejections_total)."
        );
        metrics::describe_gauge!(
            "palisade_bulkhead_limit",
            Unit::Count,
            "The bulkhead's current concurrency limit."
        );
        let calls =
            palisade_core::events::OutcomeCounters::register("palisade_bulkhead_calls_total", name);
        let name = name.to_owned();
        let rejections = |kind: RejectionKind| {
            metrics::counter!(
                "palisade_bulkhead_rejections_total",
                "name" => name.clone(),
                "reason" => kind.as_str()
            )
        };
        let in_flight = metrics::gauge!("palisade_bulkhead_in_flight", "name" => name.clone());
        // Nothing is in flight at build; the limit gauge is set by the build's `LimitChanged`.
        in_flight.set(0.0);
        BulkheadMetrics {
            calls,
            duration: std::sync::OnceLock::new(),
            rejections: [
                rejections(RejectionKind::BulkheadFull),
                rejections(RejectionKind::WaitTimeout),
            ],
            in_flight,
            in_flight_written: std::sync::atomic::AtomicU64::new(0),
            wait: metrics::histogram!("palisade_bulkhead_wait_seconds", "name" => name.clone()),
            limit: metrics::gauge!("palisade_bulkhead_limit", "name" => name),
        }
    }

    fn record_metrics(&self, m: &BulkheadMetrics) {
        match *self {
            // The gauge is written when the call finishes (one write per call, not two); a
            // bulkhead without a wait queue does not emit this event to the metrics listener.
            BulkheadEvent::CallPermitted { waited, .. } => m.wait.record(waited.as_secs_f64()),
            BulkheadEvent::CallRejected { reason } => {
                m.calls.rejected();
                let index = match reason.kind() {
                    RejectionKind::WaitTimeout => 1,
                    _ => 0,
                };
                m.rejections[index].increment(1);
            }
            BulkheadEvent::CallFinished {
                in_flight,
                outcome,
                rtt,
            } => {
                m.calls.finished(outcome);
                m.set_in_flight(in_flight);
                if let Some(rtt) = rtt
                    && let Some(duration) = m.duration.get()
                {
                    duration.record(outcome, rtt);
                }
            }
            BulkheadEvent::ReservationReleased { in_flight } => m.set_in_flight(in_flight),
            BulkheadEvent::LimitChanged { to, .. } => m.limit.set(to as f64),
        }
    }
}

/// Limit changes at `INFO`, per-call events at `TRACE`, with structured fields.
#[cfg(feature = "tracing")]
impl palisade_core::events::TraceEvent for BulkheadEvent {
    fn trace(&self, layer: &'static str, name: &str) {
        match *self {
            BulkheadEvent::CallPermitted { in_flight, waited } => tracing::trace!(
                target: "palisade",
                layer,
                name,
                event = "call_permitted",
                in_flight,
                waited_s = waited.as_secs_f64(),
            ),
            BulkheadEvent::CallRejected { reason } => tracing::trace!(
                target: "palisade",
                layer,
                name,
                event = "call_rejected",
                reason = reason.kind().as_str(),
                detail = reason.as_str(),
            ),
            BulkheadEvent::CallFinished {
                in_flight,
                outcome,
                rtt,
            } => tracing::trace!(
                target: "palisade",
                layer,
                name,
                event = "call_finished",
                in_flight,
                outcome = outcome.as_str(),
                rtt_s = rtt.map(|d| d.as_secs_f64()),
            ),
            BulkheadEvent::ReservationReleased { in_flight } => tracing::trace!(
                target: "palisade",
                layer,
                name,
                event = "reservation_released",
                in_flight,
            ),
            BulkheadEvent::LimitChanged { from, to } => tracing::info!(
                target: "palisade",
                layer,
                name,
                event = "limit_changed",
                from,
                to,
            ),
        }
    }
}
