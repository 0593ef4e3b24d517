//! [`RetryEvent`]: what the retry and hedge layers report to listeners and metrics.

use std::time::Duration;

/// Why a [`Retry`](crate::Retry) stopped retrying a request whose last attempt failed.
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
