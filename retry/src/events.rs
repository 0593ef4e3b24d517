//! The events of this crate's handles, and how they are recorded as metrics and traces.
//!
//! | handle | event | metrics (feature `metrics`, all labelled `name`) |
//! |---|---|---|
//! | [`RetryPolicy`](crate::RetryPolicy), [`HedgePolicy`](crate::HedgePolicy) | [`RetryEvent`] | `palisade_retry_calls_total{outcome}` (`success`, `failure`, `ignore`, `rejected`), `palisade_retry_attempts_total`, `palisade_retry_retries_total`, `palisade_retry_backoff_seconds`, `palisade_retry_rejections_total{reason}` (`budget_exhausted`, `throttled`, `deadline_exceeded`), `palisade_retry_gave_up_total{reason}`, `palisade_retry_hedges_total` |
//! | [`RetryBudget`](crate::RetryBudget) | [`BudgetEvent`] | `palisade_retry_budget_withdrawals_total`, `palisade_retry_budget_refusals_total` |
//! | [`RetryThrottle`](crate::RetryThrottle) | [`ThrottleEvent`] | gauge `palisade_retry_throttle_engaged` (1 while retries are stopped), `palisade_retry_throttle_transitions_total{state}` (`engaged`, `disengaged`) |
//! | [`AdaptiveThrottle`](crate::AdaptiveThrottle) | [`AdaptiveThrottleEvent`] | `palisade_retry_rejections_total{reason="throttled"}` |
//!
//! With `tracing`, per-call events are `TRACE`, a call that gave up is `DEBUG`, and a throttle
//! engaging or disengaging is `WARN` / `INFO`, all with structured fields, target `palisade`.

use std::time::Duration;

/// Why a [`RetryPolicyService`](crate::RetryPolicyService) stopped retrying a request whose last attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GiveUpReason {
    /// `max_attempts` attempts were made.
    AttemptsExhausted,
    /// The request is not retryable (the request policy refused to copy it).
    NotRetryable,
    /// The next attempt could not start before the overall deadline (the backoff or a
    /// downstream `retry_after` hint reaches past it), or the deadline passed mid-attempt.
    Deadline,
    /// The retry budget (or throttle) had nothing left.
    BudgetExhausted,
    /// The error was a local rejection of a layer below (it carries a core
    /// [`Rejection`](palisade_core::Rejection)) and the policy does not retry those, or its
    /// hint was above the policy's cap for them: returned at once.
    LocalRejection,
    /// A remote `retry_after` hint was above the policy's `max_retry_after`.
    RetryAfterTooLong,
}

impl GiveUpReason {
    /// Every reason, in declaration order.
    pub const ALL: [GiveUpReason; 6] = [
        GiveUpReason::AttemptsExhausted,
        GiveUpReason::NotRetryable,
        GiveUpReason::Deadline,
        GiveUpReason::BudgetExhausted,
        GiveUpReason::LocalRejection,
        GiveUpReason::RetryAfterTooLong,
    ];

    /// The name used in metrics labels: `attempts_exhausted`, `not_retryable`, `deadline`,
    /// `budget_exhausted`, `local_rejection`, `retry_after_too_long`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            GiveUpReason::AttemptsExhausted => "attempts_exhausted",
            GiveUpReason::NotRetryable => "not_retryable",
            GiveUpReason::Deadline => "deadline",
            GiveUpReason::BudgetExhausted => "budget_exhausted",
            GiveUpReason::LocalRejection => "local_rejection",
            GiveUpReason::RetryAfterTooLong => "retry_after_too_long",
        }
    }

    #[cfg(feature = "metrics")]
    const fn index(self) -> usize {
        self as usize
    }
}

/// How a call through a retry policy (or hedge) ended: the `outcome` label of
/// `palisade_retry_calls_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallOutcome {
    /// The classifier called the final result a success.
    Success,
    /// The final result was a failure (retrying gave up, or the inner service broke).
    Failure,
    /// The classifier ignored the final result, or it was a local rejection from a layer below
    /// (not the dependency's outcome).
    Ignore,
    /// The retry layer refused the call itself: its deadline passed
    /// ([`DeadlineExceeded`](crate::DeadlineExceeded)).
    Rejected,
}

impl CallOutcome {
    /// `success`, `failure`, `ignore` or `rejected`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Success => "success",
            CallOutcome::Failure => "failure",
            CallOutcome::Ignore => "ignore",
            CallOutcome::Rejected => "rejected",
        }
    }

    #[cfg(feature = "metrics")]
    const fn index(self) -> usize {
        self as usize
    }
}

impl From<palisade_core::Outcome> for CallOutcome {
    fn from(outcome: palisade_core::Outcome) -> Self {
        match outcome {
            palisade_core::Outcome::Success => CallOutcome::Success,
            palisade_core::Outcome::Failure => CallOutcome::Failure,
            palisade_core::Outcome::Ignore => CallOutcome::Ignore,
        }
    }
}

/// An event of the retry or hedge layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryEvent {
    /// Attempt number `attempt` (2 for the first retry) will start after `delay`.
    RetryScheduled {
        /// The number of the attempt scheduled, counting the first as 1.
        attempt: u32,
        /// The wait before it (backoff, or a remote `retry_after` hint if longer).
        delay: Duration,
    },
    /// A retry or hedge was refused by the budget; the last result is returned as it was.
    BudgetExhausted {
        /// The attempt that would have been made.
        attempt: u32,
    },
    /// A retry or hedge was refused by a [`RetryThrottle`](crate::RetryThrottle).
    RetryThrottled {
        /// The attempt that would have been made.
        attempt: u32,
    },
    /// The hedge layer sent hedge number `hedge` (1 for the first extra copy).
    HedgeSent {
        /// How many copies are now in flight beyond the first.
        hedge: u32,
    },
    /// Retrying stopped after `attempts` attempts with a failed result.
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// Why no further attempt was made.
        reason: GiveUpReason,
    },
    /// A call through a retry policy ended (emitted once per call).
    CallFinished {
        /// How it ended.
        outcome: CallOutcome,
        /// Attempts sent for it, the first included.
        attempts: u32,
    },
}

/// The `metrics` handles of one retry policy or hedge, registered once (feature `metrics`);
/// see the [crate docs](crate) for the names.
#[cfg(feature = "metrics")]
pub struct RetryMetrics {
    /// One per `CallOutcome`, in declaration order.
    calls: [metrics::Counter; 4],
    attempts: metrics::Counter,
    retries: metrics::Counter,
    backoff: metrics::Histogram,
    budget_exhausted: metrics::Counter,
    throttled: metrics::Counter,
    deadline_exceeded: metrics::Counter,
    hedges: metrics::Counter,
    /// One per `GiveUpReason`, in declaration order.
    gave_up: [metrics::Counter; 6],
}

#[cfg(feature = "metrics")]
impl std::fmt::Debug for RetryMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryMetrics").finish_non_exhaustive()
    }
}

#[cfg(feature = "metrics")]
impl palisade_core::events::RecordMetrics for RetryEvent {
    type Handles = RetryMetrics;

    fn register(name: &str) -> RetryMetrics {
        describe();
        let name = name.to_owned();
        let rejections = |kind: palisade_core::RejectionKind| {
            metrics::counter!(
                "palisade_retry_rejections_total",
                "name" => name.clone(),
                "reason" => kind.as_str()
            )
        };
        let calls = |outcome: CallOutcome| {
            metrics::counter!(
                "palisade_retry_calls_total",
                "name" => name.clone(),
                "outcome" => outcome.as_str()
            )
        };
        let gave_up = |reason: GiveUpReason| {
            metrics::counter!(
                "palisade_retry_gave_up_total",
                "name" => name.clone(),
                "reason" => reason.as_str()
            )
        };
        RetryMetrics {
            calls: [
                CallOutcome::Success,
                CallOutcome::Failure,
                CallOutcome::Ignore,
                CallOutcome::Rejected,
            ]
            .map(calls),
            attempts: metrics::counter!("palisade_retry_attempts_total", "name" => name.clone()),
            retries: metrics::counter!("palisade_retry_retries_total", "name" => name.clone()),
            backoff: metrics::histogram!("palisade_retry_backoff_seconds", "name" => name.clone()),
            budget_exhausted: rejections(palisade_core::RejectionKind::BudgetExhausted),
            throttled: rejections(palisade_core::RejectionKind::Throttled),
            deadline_exceeded: rejections(palisade_core::RejectionKind::DeadlineExceeded),
            hedges: metrics::counter!("palisade_retry_hedges_total", "name" => name.clone()),
            gave_up: GiveUpReason::ALL.map(gave_up),
        }
    }

    fn record_metrics(&self, m: &RetryMetrics) {
        match *self {
            RetryEvent::RetryScheduled { delay, .. } => {
                m.retries.increment(1);
                m.backoff.record(delay.as_secs_f64());
            }
            RetryEvent::BudgetExhausted { .. } => m.budget_exhausted.increment(1),
            RetryEvent::RetryThrottled { .. } => m.throttled.increment(1),
            RetryEvent::HedgeSent { .. } => m.hedges.increment(1),
            RetryEvent::GaveUp { reason, .. } => m.gave_up[reason.index()].increment(1),
            RetryEvent::CallFinished { outcome, attempts } => {
                m.calls[outcome.index()].increment(1);
                m.attempts.increment(u64::from(attempts));
                if outcome == CallOutcome::Rejected {
                    m.deadline_exceeded.increment(1);
                }
            }
        }
    }
}

/// Per-call events at `TRACE`, a call that gave up at `DEBUG`; fields `layer`, `name`,
/// `event` and the event's own.
#[cfg(feature = "tracing")]
impl palisade_core::events::TraceEvent for RetryEvent {
    fn trace(&self, layer: &'static str, name: &str) {
        match *self {
            RetryEvent::RetryScheduled { attempt, delay } => {
                tracing::trace!(target: "palisade", layer, name, event = "retry_scheduled", attempt, delay_s = delay.as_secs_f64());
            }
            RetryEvent::BudgetExhausted { attempt } => {
                tracing::trace!(target: "palisade", layer, name, event = "budget_exhausted", attempt);
            }
            RetryEvent::RetryThrottled { attempt } => {
                tracing::trace!(target: "palisade", layer, name, event = "retry_throttled", attempt);
            }
            RetryEvent::HedgeSent { hedge } => {
                tracing::trace!(target: "palisade", layer, name, event = "hedge_sent", hedge);
            }
            RetryEvent::GaveUp { attempts, reason } => {
                tracing::debug!(target: "palisade", layer, name, event = "gave_up", attempts, reason = reason.as_str());
            }
            RetryEvent::CallFinished { outcome, attempts } => {
                tracing::trace!(target: "palisade", layer, name, event = "call_finished", outcome = outcome.as_str(), attempts);
            }
        }
    }
}

/// An event of a [`RetryBudget`](crate::RetryBudget): one per withdrawal asked of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BudgetEvent {
    /// A retry or hedge was granted.
    Withdrawn,
    /// A retry or hedge was refused: the window has no retry left.
    Exhausted,
}

/// The `metrics` handles of one retry budget (feature `metrics`): the counters
/// `palisade_retry_budget_withdrawals_total{name}` (granted) and
/// `palisade_retry_budget_refusals_total{name}` (refused; the policy that asked counts it as
/// `palisade_retry_rejections_total{reason="budget_exhausted"}`).
#[cfg(feature = "metrics")]
pub struct BudgetMetrics {
    withdrawn: metrics::Counter,
    exhausted: metrics::Counter,
}

#[cfg(feature = "metrics")]
impl std::fmt::Debug for BudgetMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetMetrics").finish_non_exhaustive()
    }
}

#[cfg(feature = "metrics")]
impl palisade_core::events::RecordMetrics for BudgetEvent {
    type Handles = BudgetMetrics;

    fn register(name: &str) -> BudgetMetrics {
        describe();
        let name = name.to_owned();
        BudgetMetrics {
            withdrawn: metrics::counter!("palisade_retry_budget_withdrawals_total", "name" => name.clone()),
            exhausted: metrics::counter!("palisade_retry_budget_refusals_total", "name" => name),
        }
    }

    fn record_metrics(&self, m: &BudgetMetrics) {
        match self {
            BudgetEvent::Withdrawn => m.withdrawn.increment(1),
            BudgetEvent::Exhausted => m.exhausted.increment(1),
        }
    }
}

/// Per-call events, traced at `TRACE` with fields `layer`, `name`, `event`.
#[cfg(feature = "tracing")]
impl palisade_core::events::TraceEvent for BudgetEvent {
    fn trace(&self, layer: &'static str, name: &str) {
        let event = match self {
            BudgetEvent::Withdrawn => "budget_withdrawn",
            BudgetEvent::Exhausted => "budget_exhausted",
        };
        tracing::trace!(target: "palisade", layer, name, event);
    }
}

/// The help text of every metric of this crate, given to each recorder once (core's
/// [`describe`](palisade_core::events::describe)).
#[cfg(feature = "metrics")]
pub(crate) fn describe() {
    use palisade_core::events::{MetricKind, describe};
    for (kind, name, help) in [
        (
            MetricKind::Counter,
            "palisade_retry_calls_total",
            "Calls through a retry policy, by how they ended (success, failure, ignore, rejected).",
        ),
        (
            MetricKind::Counter,
            "palisade_retry_attempts_total",
            "Attempts sent by retry policies and hedges, first attempts included.",
        ),
        (
            MetricKind::Counter,
            "palisade_retry_retries_total",
            "Retries scheduled by a retry policy.",
        ),
        (
            MetricKind::Histogram,
            "palisade_retry_backoff_seconds",
            "The wait before each retry (backoff, or a remote retry_after hint).",
        ),
        (
            MetricKind::Counter,
            "palisade_retry_rejections_total",
            "Refusals of the retry layer, by reason (budget_exhausted, throttled, deadline_exceeded).",
        ),
        (
            MetricKind::Counter,
            "palisade_retry_gave_up_total",
            "Calls whose retrying stopped with a failed result, by reason.",
        ),
        (
            MetricKind::Counter,
            "palisade_retry_hedges_total",
            "Hedged copies sent.",
        ),
        (
            MetricKind::Counter,
            "palisade_retry_budget_withdrawals_total",
            "Retries and hedges a retry budget granted.",
        ),
        (
            MetricKind::Counter,
            "palisade_retry_budget_refusals_total",
            "Retries and hedges a retry budget refused.",
        ),
        (
            MetricKind::Gauge,
            "palisade_retry_throttle_engaged",
            "1 while a gRPC-style retry throttle stops retries (half its tokens or fewer left), else 0.",
        ),
        (
            MetricKind::Counter,
            "palisade_retry_throttle_transitions_total",
            "A retry throttle engaging (retries stop) or disengaging.",
        ),
    ] {
        describe(kind, name, help);
    }
}

/// An event of an [`AdaptiveThrottle`](crate::AdaptiveThrottle).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum AdaptiveThrottleEvent {
    /// A request was rejected locally ([`Throttled`](crate::Throttled)).
    Throttled {
        /// The rejection probability it was drawn against.
        probability: f64,
    },
}

/// The `metrics` handles of one adaptive throttle (feature `metrics`): the counter
/// `palisade_retry_rejections_total{name, reason="throttled"}`.
#[cfg(feature = "metrics")]
pub struct AdaptiveThrottleMetrics {
    throttled: metrics::Counter,
}

#[cfg(feature = "metrics")]
impl std::fmt::Debug for AdaptiveThrottleMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdaptiveThrottleMetrics")
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "metrics")]
impl palisade_core::events::RecordMetrics for AdaptiveThrottleEvent {
    type Handles = AdaptiveThrottleMetrics;

    fn register(name: &str) -> AdaptiveThrottleMetrics {
        describe();
        AdaptiveThrottleMetrics {
            throttled: metrics::counter!(
                "palisade_retry_rejections_total",
                "name" => name.to_owned(),
                "reason" => palisade_core::RejectionKind::Throttled.as_str()
            ),
        }
    }

    fn record_metrics(&self, m: &AdaptiveThrottleMetrics) {
        match self {
            AdaptiveThrottleEvent::Throttled { .. } => m.throttled.increment(1),
        }
    }
}

/// Per-call events, traced at `TRACE` with fields `layer`, `name`, `event`, `probability`.
#[cfg(feature = "tracing")]
impl palisade_core::events::TraceEvent for AdaptiveThrottleEvent {
    fn trace(&self, layer: &'static str, name: &str) {
        match self {
            AdaptiveThrottleEvent::Throttled { probability } => {
                tracing::trace!(target: "palisade", layer, name, event = "throttled", probability);
            }
        }
    }
}

/// An event of a [`RetryThrottle`](crate::RetryThrottle): a transition.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum ThrottleEvent {
    /// The tokens fell to half of the bucket or below: retries stop.
    Engaged {
        /// Tokens left.
        tokens: f64,
    },
    /// Successes brought the tokens back above half: retries resume.
    Disengaged {
        /// Tokens now.
        tokens: f64,
    },
}

/// The `metrics` handles of one retry throttle (feature `metrics`): the gauge
/// `palisade_retry_throttle_engaged{name}` (1 while retries are stopped) and the counter
/// `palisade_retry_throttle_transitions_total{name, state}` (`engaged`, `disengaged`).
#[cfg(feature = "metrics")]
pub struct ThrottleMetrics {
    engaged: metrics::Gauge,
    transitions: [metrics::Counter; 2],
}

#[cfg(feature = "metrics")]
impl std::fmt::Debug for ThrottleMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThrottleMetrics").finish_non_exhaustive()
    }
}

#[cfg(feature = "metrics")]
impl ThrottleMetrics {
    pub(crate) fn set_engaged(&self, engaged: bool) {
        self.engaged.set(if engaged { 1.0 } else { 0.0 });
    }
}

#[cfg(feature = "metrics")]
impl palisade_core::events::RecordMetrics for ThrottleEvent {
    type Handles = ThrottleMetrics;

    fn register(name: &str) -> ThrottleMetrics {
        describe();
        let name = name.to_owned();
        let transition = |state: &'static str| {
            metrics::counter!(
                "palisade_retry_throttle_transitions_total",
                "name" => name.clone(),
                "state" => state
            )
        };
        ThrottleMetrics {
            engaged: metrics::gauge!("palisade_retry_throttle_engaged", "name" => name.clone()),
            transitions: [transition("engaged"), transition("disengaged")],
        }
    }

    fn record_metrics(&self, m: &ThrottleMetrics) {
        match self {
            ThrottleEvent::Engaged { .. } => {
                m.engaged.set(1.0);
                m.transitions[0].increment(1);
            }
            ThrottleEvent::Disengaged { .. } => {
                m.engaged.set(0.0);
                m.transitions[1].increment(1);
            }
        }
    }
}

/// Transitions: engaging at `WARN`, disengaging at `INFO`; fields `layer`, `name`, `event`,
/// `tokens`.
#[cfg(feature = "tracing")]
impl palisade_core::events::TraceEvent for ThrottleEvent {
    fn trace(&self, layer: &'static str, name: &str) {
        match *self {
            ThrottleEvent::Engaged { tokens } => {
                tracing::warn!(target: "palisade", layer, name, event = "throttle_engaged", tokens);
            }
            ThrottleEvent::Disengaged { tokens } => {
                tracing::info!(target: "palisade", layer, name, event = "throttle_disengaged", tokens);
            }
        }
    }
}
