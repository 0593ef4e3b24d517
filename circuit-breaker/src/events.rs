//! What a breaker tells its listeners.

use crate::state::State;
use std::time::Duration;

/// An event of a [`CircuitBreaker`](crate::CircuitBreaker), delivered to the listeners
/// subscribed with [`CircuitBreaker::on_event`](crate::CircuitBreaker::on_event).
///
/// Listeners run on the thread that caused the event, often a request's: keep them short.
/// With nobody listening an event costs one branch and is never built.
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
    /// A call's outcome was recorded as a failure.
    ErrorRecorded {
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

#[cfg(feature = "metrics")]
impl palisade_core::events::RecordMetrics for CircuitBreakerEvent {
    /// Counters `palisade_circuit_breaker_transitions_total{name,state}` (the new state),
    /// `palisade_circuit_breaker_rejected_calls_total{name,state}`,
    /// `palisade_circuit_breaker_failed_calls_total{name}`,
    /// `palisade_circuit_breaker_slow_calls_total{name}`,
    /// `palisade_circuit_breaker_resets_total{name}`, and the gauge
    /// `palisade_circuit_breaker_state{name,state}`: 1 for the current state, 0 for the one left.
    fn record_metrics(&self, name: &str) {
        let name = name.to_owned();
        match *self {
            CircuitBreakerEvent::StateTransition { from, to } => {
                metrics::counter!("palisade_circuit_breaker_transitions_total", "name" => name.clone(), "state" => to.as_str())
                    .increment(1);
                metrics::gauge!("palisade_circuit_breaker_state", "name" => name.clone(), "state" => from.as_str())
                    .set(0.0);
                metrics::gauge!("palisade_circuit_breaker_state", "name" => name, "state" => to.as_str())
                    .set(1.0);
            }
            CircuitBreakerEvent::CallRejected { state } => {
                metrics::counter!("palisade_circuit_breaker_rejected_calls_total", "name" => name, "state" => state.as_str())
                    .increment(1);
            }
            CircuitBreakerEvent::ErrorRecorded { .. } => {
                metrics::counter!("palisade_circuit_breaker_failed_calls_total", "name" => name, "outcome" => "failure")
                    .increment(1);
            }
            CircuitBreakerEvent::SlowCallRecorded { .. } => {
                metrics::counter!("palisade_circuit_breaker_slow_calls_total", "name" => name)
                    .increment(1);
            }
            CircuitBreakerEvent::Reset => {
                metrics::counter!("palisade_circuit_breaker_resets_total", "name" => name)
                    .increment(1);
            }
        }
    }
}
