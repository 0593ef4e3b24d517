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

/// The `metrics` handles of one breaker, registered once (feature `metrics`).
///
/// Counters `palisade_circuit_breaker_transitions_total{name,state}` (the new state),
/// `palisade_circuit_breaker_rejected_calls_total{name,state}`,
/// `palisade_circuit_breaker_failed_calls_total{name,outcome}`,
/// `palisade_circuit_breaker_slow_calls_total{name}`,
/// `palisade_circuit_breaker_resets_total{name}`, and the gauge
/// `palisade_circuit_breaker_state{name,state}`: 1 for the current state, 0 for the others.
#[cfg(feature = "metrics")]
pub struct CircuitBreakerMetrics {
    /// One per state, indexed by `State as usize`.
    transitions: [metrics::Counter; STATES.len()],
    rejected: [metrics::Counter; STATES.len()],
    state: [metrics::Gauge; STATES.len()],
    failed: metrics::Counter,
    slow: metrics::Counter,
    resets: metrics::Counter,
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
impl palisade_core::events::RecordMetrics for CircuitBreakerEvent {
    type Handles = CircuitBreakerMetrics;

    fn register(name: &str) -> CircuitBreakerMetrics {
        let name = name.to_owned();
        let per_state = |metric: &'static str| {
            STATES.map(|state| metrics::counter!(metric, "name" => name.clone(), "state" => state.as_str()))
        };
        CircuitBreakerMetrics {
            transitions: per_state("palisade_circuit_breaker_transitions_total"),
            rejected: per_state("palisade_circuit_breaker_rejected_calls_total"),
            state: STATES.map(|state| {
                metrics::gauge!("palisade_circuit_breaker_state", "name" => name.clone(), "state" => state.as_str())
            }),
            failed: metrics::counter!("palisade_circuit_breaker_failed_calls_total", "name" => name.clone(), "outcome" => "failure"),
            slow: metrics::counter!("palisade_circuit_breaker_slow_calls_total", "name" => name.clone()),
            resets: metrics::counter!("palisade_circuit_breaker_resets_total", "name" => name),
        }
    }

    fn record_metrics(&self, m: &CircuitBreakerMetrics) {
        match *self {
            CircuitBreakerEvent::StateTransition { from, to } => {
                m.transitions[to as usize].increment(1);
                m.state[from as usize].set(0.0);
                m.state[to as usize].set(1.0);
            }
            CircuitBreakerEvent::CallRejected { state } => m.rejected[state as usize].increment(1),
            CircuitBreakerEvent::ErrorRecorded { .. } => m.failed.increment(1),
            CircuitBreakerEvent::SlowCallRecorded { .. } => m.slow.increment(1),
            CircuitBreakerEvent::Reset => m.resets.increment(1),
        }
    }
}

/// Traced at `DEBUG` with the event's `Debug` form (the default of the trait).
#[cfg(feature = "tracing")]
impl palisade_core::events::TraceEvent for CircuitBreakerEvent {}
