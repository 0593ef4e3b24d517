//! [`RetryEvent`]: what the retry and hedge layers report to listeners and metrics.

use std::time::Duration;

/// Why a [`Retry`](crate::Retry) stopped retrying a request whose last attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
}

impl GiveUpReason {
    /// The name used in metrics labels: `attempts_exhausted`, `not_retryable`, `deadline`,
    /// `budget_exhausted`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            GiveUpReason::AttemptsExhausted => "attempts_exhausted",
            GiveUpReason::NotRetryable => "not_retryable",
            GiveUpReason::Deadline => "deadline",
            GiveUpReason::BudgetExhausted => "budget_exhausted",
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

#[cfg(feature = "metrics")]
impl palisade_core::events::RecordMetrics for RetryEvent {
    fn record_metrics(&self, name: &str) {
        match *self {
            RetryEvent::RetryScheduled { delay, .. } => {
                metrics::counter!("palisade_retry_retries_total", "name" => name.to_owned())
                    .increment(1);
                metrics::histogram!("palisade_retry_backoff_seconds", "name" => name.to_owned())
                    .record(delay.as_secs_f64());
            }
            RetryEvent::BudgetExhausted { .. } => {
                metrics::counter!("palisade_retry_budget_exhausted_total", "name" => name.to_owned())
                    .increment(1);
            }
            RetryEvent::HedgeSent { .. } => {
                metrics::counter!("palisade_retry_hedges_total", "name" => name.to_owned())
                    .increment(1);
            }
            RetryEvent::GaveUp { reason, .. } => {
                metrics::counter!(
                    "palisade_retry_gave_up_total",
                    "name" => name.to_owned(),
                    "outcome" => reason.as_str()
                )
                .increment(1);
            }
        }
    }
}
