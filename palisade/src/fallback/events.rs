//! Events of a [`Fallback`](super::Fallback), and their metrics and traces.
//!
//! | event | metric (feature `metrics`) | trace (feature `tracing`) |
//! | --- | --- | --- |
//! | [`FallbackEvent::CallFinished`] | `palisade_fallback_calls_total{name, outcome}`, outcome `success`, `failure`, `ignore`, `rejected` (a local rejection from below) | `TRACE` |
//! | [`FallbackEvent::FallbackFinished`] | `palisade_fallback_executions_total{name, outcome}`, outcome `success`, `failure`; `palisade_fallback_in_flight{name}` | `TRACE` |
//! | [`FallbackEvent::FallbackRejected`] | `palisade_fallback_executions_total{name, outcome="rejected"}` | `WARN` |
//! | (at build) | `palisade_fallback_max_concurrent{name}` gauge, `palisade_fallback_in_flight{name}` = 0 | |

use palisade_core::RejectionKind;

/// How the primary call ended, as the fallback layer judged it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PrimaryOutcome {
    /// A success: passed through.
    Success,
    /// A failure by the classifier (a timeout's `Elapsed` included): falls back.
    Failure,
    /// Neither: passed through.
    Ignore,
    /// A local rejection from a Palisade layer below: falls back unless
    /// [`fallback_on_local_rejection(false)`](super::FallbackBuilder::fallback_on_local_rejection).
    Rejected(RejectionKind),
}

impl PrimaryOutcome {
    /// The metrics label: `"success"`, `"failure"`, `"ignore"`, `"rejected"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            PrimaryOutcome::Success => "success",
            PrimaryOutcome::Failure => "failure",
            PrimaryOutcome::Ignore => "ignore",
            PrimaryOutcome::Rejected(_) => "rejected",
        }
    }
}

/// What a fallback layer did with one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FallbackEvent {
    /// The primary call ended.
    CallFinished {
        /// How it ended.
        outcome: PrimaryOutcome,
    },
    /// A fallback ran and ended.
    FallbackFinished {
        /// Whether the fallback answered (`true`) or failed.
        succeeded: bool,
        /// Fallbacks still running after this one.
        in_flight: usize,
    },
    /// A fallback was due but every fallback slot was taken: the primary's result was
    /// returned as it was.
    FallbackRejected {
        /// The cap that was reached.
        max_concurrent: usize,
    },
}

/// The metric handles of one fallback instance.
#[cfg(feature = "metrics")]
#[derive(Debug)]
pub struct FallbackMetrics {
    calls: [metrics::Counter; 4],
    executions: [metrics::Counter; 3],
    in_flight: metrics::Gauge,
    pub(crate) max_concurrent: metrics::Gauge,
}

#[cfg(feature = "metrics")]
impl palisade_core::events::RecordMetrics for FallbackEvent {
    type Handles = FallbackMetrics;

    fn register(name: &str) -> FallbackMetrics {
        use metrics::Unit;
        metrics::describe_counter!(
            "palisade_fallback_calls_total",
            Unit::Count,
            "Calls through the fallback layer by the primary's outcome: success, failure, \
             ignore, rejected (a local rejection from a layer below)."
        );
        metrics::describe_counter!(
            "palisade_fallback_executions_total",
            Unit::Count,
            "Fallbacks by outcome: success, failure, rejected (every fallback slot taken)."
        );
        metrics::describe_gauge!(
            "palisade_fallback_in_flight",
            Unit::Count,
            "Fallbacks running now."
        );
        metrics::describe_gauge!(
            "palisade_fallback_max_concurrent",
            Unit::Count,
            "The cap on concurrent fallbacks."
        );
        let name = name.to_owned();
        let calls = |outcome: &'static str| metrics::counter!("palisade_fallback_calls_total", "name" => name.clone(), "outcome" => outcome);
        let executions = |outcome: &'static str| metrics::counter!("palisade_fallback_executions_total", "name" => name.clone(), "outcome" => outcome);
        let in_flight = metrics::gauge!("palisade_fallback_in_flight", "name" => name.clone());
        in_flight.set(0.0);
        FallbackMetrics {
            calls: [
                calls("success"),
                calls("failure"),
                calls("ignore"),
                calls("rejected"),
            ],
            executions: [
                executions("success"),
                executions("failure"),
                executions("rejected"),
            ],
            in_flight,
            max_concurrent: metrics::gauge!("palisade_fallback_max_concurrent", "name" => name),
        }
    }

    fn record_metrics(&self, m: &FallbackMetrics) {
        match *self {
            FallbackEvent::CallFinished { outcome } => {
                let index = match outcome {
                    PrimaryOutcome::Success => 0,
                    PrimaryOutcome::Failure => 1,
                    PrimaryOutcome::Ignore => 2,
                    PrimaryOutcome::Rejected(_) => 3,
                };
                m.calls[index].increment(1);
            }
            FallbackEvent::FallbackFinished {
                succeeded,
                in_flight,
            } => {
                m.executions[usize::from(!succeeded)].increment(1);
                m.in_flight.set(in_flight as f64);
            }
            FallbackEvent::FallbackRejected { .. } => m.executions[2].increment(1),
        }
    }
}

/// Per-call events at `TRACE`, a refused fallback at `WARN`, structured fields.
#[cfg(feature = "tracing")]
impl palisade_core::events::TraceEvent for FallbackEvent {
    fn trace(&self, layer: &'static str, name: &str) {
        match *self {
            FallbackEvent::CallFinished { outcome } => tracing::trace!(
                target: "palisade",
                layer,
                name,
                outcome = outcome.as_str(),
                "call finished"
            ),
            FallbackEvent::FallbackFinished {
                succeeded,
                in_flight,
            } => tracing::trace!(
                target: "palisade",
                layer,
                name,
                succeeded,
                in_flight,
                "fallback finished"
            ),
            FallbackEvent::FallbackRejected { max_concurrent } => tracing::warn!(
                target: "palisade",
                layer,
                name,
                max_concurrent,
                "fallback rejected: every fallback slot is taken"
            ),
        }
    }
}
