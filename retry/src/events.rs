//! [`RetryEvent`]: what the retry and hedge layers report to listeners and metrics.

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

/// An event of the retry or hedge layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryEvent {
    /// Attempt number `attempt` (2 for the first retry) will start after `delay`.
    RetryScheduled {
        /// The number of the attempt scheduled, counting the first as 1.
        attempt: u32,
        /// The wait before it (backoff, or a downstream `retry_after` hint if longer).
        delay: Duration,
    },
    /// A retry or hedge was refused by the budget; the last result is returned as it was.
    BudgetExhausted {
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
}

/// The `metrics` handles of one retry policy or hedge, registered once (feature `metrics`).
///
/// Counters `palisade_retry_retries_total`, `palisade_retry_budget_exhausted_total`,
/// `palisade_retry_hedges_total`, `palisade_retry_gave_up_total` (label `outcome`: the
/// [`GiveUpReason`]), and the histogram `palisade_retry_backoff_seconds`, all labelled `name`.
#[cfg(feature = "metrics")]
pub struct RetryMetrics {
    retries: metrics::Counter,
    backoff: metrics::Histogram,
    budget_exhausted: metrics::Counter,
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
        let gave_up = |reason: GiveUpReason| {
            metrics::counter!(
                "palisade_retry_gave_up_total",
                "name" => name.clone(),
                "outcome" => reason.as_str()
            )
        };
        RetryMetrics {
            retries: metrics::counter!("palisade_retry_retries_total", "name" => name.clone()),
            backoff: metrics::histogram!("palisade_retry_backoff_seconds", "name" => name.clone()),
            budget_exhausted: metrics::counter!("palisade_retry_budget_exhausted_total", "name" => name.clone()),
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
            RetryEvent::HedgeSent { .. } => m.hedges.increment(1),
            RetryEvent::GaveUp { reason, .. } => m.gave_up[reason.index()].increment(1),
        }
    }
}

/// Traced at `DEBUG` with the event's `Debug` form (the default of the trait).
#[cfg(feature = "tracing")]
impl palisade_core::events::TraceEvent for RetryEvent {}

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
/// `palisade_retry_rejections_total{name, reason="budget_exhausted"}` (refused).
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
            exhausted: metrics::counter!(
                "palisade_retry_rejections_total",
                "name" => name,
                "reason" => palisade_core::RejectionKind::BudgetExhausted.as_str()
            ),
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

/// The help text of every metric of this crate, given once per process.
#[cfg(feature = "metrics")]
pub(crate) fn describe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        metrics::describe_counter!(
            "palisade_retry_calls_total",
            "Calls through a retry policy, by final outcome (success, failure, ignore, rejected)."
        );
        metrics::describe_counter!(
            "palisade_retry_attempts_total",
            "Attempts sent by retry policies and hedges, first attempts included."
        );
        metrics::describe_counter!(
            "palisade_retry_retries_total",
            "Retries scheduled by a retry policy."
        );
        metrics::describe_histogram!(
            "palisade_retry_backoff_seconds",
            metrics::Unit::Seconds,
            "The wait before each retry (backoff, or a remote retry_after hint)."
        );
        metrics::describe_counter!(
            "palisade_retry_rejections_total",
            "Local rejections by the retry layer, by reason (budget_exhausted, throttled, deadline_exceeded)."
        );
        metrics::describe_counter!(
            "palisade_retry_gave_up_total",
            "Requests whose retrying stopped with a failed result, by reason."
        );
        metrics::describe_counter!(
            "palisade_retry_hedges_total",
            "Hedged copies sent."
        );
        metrics::describe_counter!(
            "palisade_retry_budget_withdrawals_total",
            "Retries and hedges granted by a retry budget."
        );
    });
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
