//! What a breaker tells its listeners.

use crate::state::State;
use std::time::Duration;

/// An event of a [`CircuitBreaker`](crate::CircuitBreaker), delivered to the listeners
/// subscribed with [`CircuitBreaker::subscribe`](crate::CircuitBreaker::subscribe).
///
/// Listeners run on the thread that caused the event, often a request's: keep them short.
/// With nobody listening an event costs one branch and is never built. A listener that panics
/// cannot break the breaker: the panic is caught once the breaker's own state is consistent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CircuitBreakerEvent {
    /// The state changed (exactly one event per transition).
    StateTransition {
        /// The state before.
        from: State,
        /// The state after.
        to: State,
    },
    /// A call was rejected without reaching the inner service.
    CallRejected {
        /// The state that rejected it.
        state: State,
    },
    /// A call's outcome was recorded as a success.
    SuccessRecorded {
        /// How long the call took, when the breaker measured it (slow-call detection on).
        elapsed: Option<Duration>,
    },
    /// A call's outcome was recorded as a failure.
    ErrorRecorded {
        /// How long the call took, when the breaker measured it (slow-call detection on).
        elapsed: Option<Duration>,
    },
    /// A call was admitted but does not count: its outcome was classified `Ignore` (a local
    /// rejection from a layer below, by default), or it was cancelled.
    CallIgnored {
        /// How long the call took, when the breaker measured it (slow-call detection on).
        elapsed: Option<Duration>,
    },
    /// A call took longer than `slow_call_duration` (it may have succeeded or failed).
    SlowCallRecorded {
        /// How long the call took.
        elapsed: Duration,
    },
    /// [`CircuitBreaker::reset`](crate::CircuitBreaker::reset) emptied the statistics.
    Reset,
}

/// The `metrics` handles of one breaker, registered once (feature `metrics`).
///
/// | metric | kind | labels |
/// |---|---|---|
/// | `palisade_circuit_breaker_calls_total` | counter | `name`, `outcome` = `success` \| `failure` \| `ignore` \| `rejected` |
/// | `palisade_circuit_breaker_rejections_total` | counter | `name`, `reason` = `circuit_open` |
/// | `palisade_circuit_breaker_call_duration_seconds` | histogram, registered only with slow-call detection (which times calls anyway) | `name`, `outcome` |
/// | `palisade_circuit_breaker_slow_calls_total` | counter, registered only with slow-call detection | `name` |
/// | `palisade_circuit_breaker_transitions_total` | counter | `name`, `state` (the new state) |
/// | `palisade_circuit_breaker_resets_total` | counter | `name` |
/// | `palisade_circuit_breaker_state` | gauge, 1 for the current state and 0 for the others, set at build | `name`, `state` |
#[cfg(feature = "metrics")]
pub struct CircuitBreakerMetrics {
    /// One per state, indexed by `State as usize`.
    transitions: [metrics::Counter; STATES.len()],
    state: [metrics::Gauge; STATES.len()],
    /// success, failure, ignore, rejected.
    calls: palisade_core::events::OutcomeCounters,
    /// Registered only for a breaker with slow-call detection (the only one that times its
    /// calls), by [`register_timed`](Self::register_timed): without it these series could
    /// never carry data.
    timed: std::sync::OnceLock<TimedMetrics>,
    rejections: metrics::Counter,
    resets: metrics::Counter,
}

/// The handles of a breaker that times its calls.
#[cfg(feature = "metrics")]
struct TimedMetrics {
    /// success, failure, ignore.
    duration: palisade_core::events::OutcomeHistograms,
    slow: metrics::Counter,
}

#[cfg(feature = "metrics")]
const STATES: [State; 6] = [
    State::Closed,
    State::Open,
    State::HalfOpen,
    State::ForcedOpen,
    State::Disabled,
    State::MetricsOnly,
];

#[cfg(feature = "metrics")]
impl std::fmt::Debug for CircuitBreakerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreakerMetrics")
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "metrics")]
fn describe() {
    use palisade_core::events::{MetricKind, describe};
    describe(
        MetricKind::Counter,
        "palisade_circuit_breaker_calls_total",
        "Calls through the circuit breaker, by outcome (success, failure, ignore, rejected).",
    );
    describe(
        MetricKind::Counter,
        "palisade_circuit_breaker_rejections_total",
        "Calls the circuit breaker rejected without calling the dependency, by reason.",
    );
    describe(
        MetricKind::Counter,
        "palisade_circuit_breaker_transitions_total",
        "State transitions of the circuit breaker, by the state entered.",
    );
    describe(
        MetricKind::Counter,
        "palisade_circuit_breaker_resets_total",
        "Manual resets of the circuit breaker.",
    );
    describe(
        MetricKind::Gauge,
        "palisade_circuit_breaker_state",
        "1 for the circuit breaker's current state, 0 for the others.",
    );
}

#[cfg(feature = "metrics")]
impl CircuitBreakerMetrics {
    /// Sets the state gauge: 1 for `current`, 0 for the other states.
    pub(crate) fn set_state(&self, current: State) {
        for (gauge, state) in self.state.iter().zip(STATES) {
            gauge.set(if state == current { 1.0 } else { 0.0 });
        }
    }

    /// Registers the call-duration histogram and the slow-call counter (once; later calls do
    /// nothing). Run right after registration, only for a breaker with slow-call detection.
    pub(crate) fn register_timed(&self, name: &str) {
        use palisade_core::events::{MetricKind, describe};
        self.timed.get_or_init(|| {
            describe(
                MetricKind::Histogram,
                "palisade_circuit_breaker_call_duration_seconds",
                "Duration of the calls the circuit breaker timed (only breakers with slow-call \
                 detection time calls), by outcome.",
            );
            describe(
                MetricKind::Counter,
                "palisade_circuit_breaker_slow_calls_total",
                "Calls slower than the breaker's slow_call_duration.",
            );
            TimedMetrics {
                duration: palisade_core::events::OutcomeHistograms::register(
                    "palisade_circuit_breaker_call_duration_seconds",
                    name,
                ),
                slow: metrics::counter!("palisade_circuit_breaker_slow_calls_total", "name" => name.to_owned()),
            }
        });
    }
}

#[cfg(feature = "metrics")]
impl palisade_core::events::RecordMetrics for CircuitBreakerEvent {
    type Handles = CircuitBreakerMetrics;

    fn register(name: &str) -> CircuitBreakerMetrics {
        describe();
        let name = name.to_owned();
        CircuitBreakerMetrics {
            transitions: STATES.map(|state| {
                metrics::counter!("palisade_circuit_breaker_transitions_total", "name" => name.clone(), "state" => state.as_str())
            }),
            state: STATES.map(|state| {
                metrics::gauge!("palisade_circuit_breaker_state", "name" => name.clone(), "state" => state.as_str())
            }),
            calls: palisade_core::events::OutcomeCounters::register(
                "palisade_circuit_breaker_calls_total",
                &name,
            ),
            timed: std::sync::OnceLock::new(),
            rejections: metrics::counter!(
                "palisade_circuit_breaker_rejections_total",
                "name" => name.clone(),
                "reason" => palisade_core::rejection::RejectionKind::CircuitOpen.as_str()
            ),
            resets: metrics::counter!("palisade_circuit_breaker_resets_total", "name" => name),
        }
    }

    fn record_metrics(&self, m: &CircuitBreakerMetrics) {
        use palisade_core::Outcome;
        let timed = |outcome: Outcome, elapsed: Option<Duration>| {
            m.calls.finished(outcome);
            if let Some(elapsed) = elapsed
                && let Some(timed) = m.timed.get()
            {
                timed.duration.record(outcome, elapsed);
            }
        };
        match *self {
            CircuitBreakerEvent::StateTransition { from, to } => {
                m.transitions[to as usize].increment(1);
                m.state[from as usize].set(0.0);
                m.state[to as usize].set(1.0);
            }
            CircuitBreakerEvent::CallRejected { .. } => {
                m.calls.rejected();
                m.rejections.increment(1);
            }
            CircuitBreakerEvent::SuccessRecorded { elapsed } => timed(Outcome::Success, elapsed),
            CircuitBreakerEvent::ErrorRecorded { elapsed } => timed(Outcome::Failure, elapsed),
            CircuitBreakerEvent::CallIgnored { elapsed } => timed(Outcome::Ignore, elapsed),
            CircuitBreakerEvent::SlowCallRecorded { .. } => {
                if let Some(timed) = m.timed.get() {
                    timed.slow.increment(1);
                }
            }
            CircuitBreakerEvent::Reset => m.resets.increment(1),
        }
    }
}

/// Transitions at `INFO` (into `Open` or `ForcedOpen` at `WARN`), resets at `INFO`, per-call
/// events at `TRACE`; target `palisade`, fields `layer`, `name` and the event's own.
#[cfg(feature = "tracing")]
impl palisade_core::events::TraceEvent for CircuitBreakerEvent {
    fn trace(&self, layer: &'static str, name: &str) {
        let ms = |elapsed: Option<Duration>| elapsed.map(|d| d.as_secs_f64() * 1e3);
        match *self {
            CircuitBreakerEvent::StateTransition { from, to } => {
                if matches!(to, State::Open | State::ForcedOpen) {
                    tracing::warn!(target: "palisade", layer, name, from = from.as_str(), to = to.as_str(), "circuit breaker opened");
                } else {
                    tracing::info!(target: "palisade", layer, name, from = from.as_str(), to = to.as_str(), "circuit breaker state transition");
                }
            }
            CircuitBreakerEvent::CallRejected { state } => {
                tracing::trace!(target: "palisade", layer, name, state = state.as_str(), reason = "circuit_open", "call rejected");
            }
            CircuitBreakerEvent::SuccessRecorded { elapsed } => {
                tracing::trace!(target: "palisade", layer, name, outcome = "success", elapsed_ms = ms(elapsed), "call recorded");
            }
            CircuitBreakerEvent::ErrorRecorded { elapsed } => {
                tracing::trace!(target: "palisade", layer, name, outcome = "failure", elapsed_ms = ms(elapsed), "call recorded");
            }
            CircuitBreakerEvent::CallIgnored { elapsed } => {
                tracing::trace!(target: "palisade", layer, name, outcome = "ignore", elapsed_ms = ms(elapsed), "call ignored");
            }
            CircuitBreakerEvent::SlowCallRecorded { elapsed } => {
                tracing::trace!(target: "palisade", layer, name, elapsed_ms = elapsed.as_secs_f64() * 1e3, "slow call recorded");
            }
            CircuitBreakerEvent::Reset => {
                tracing::info!(target: "palisade", layer, name, "circuit breaker reset");
            }
        }
    }
}
