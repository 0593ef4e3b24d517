//! [`RetryPolicy`]: the handle, shared by every layer and service made from it.

use crate::backoff::Backoff;
use crate::budget::{RetryBudget, RetryBudgetSnapshot};
use crate::config::{RetryPolicyBuilder, Spend};
use crate::events::RetryEvent;
use crate::layer::RetryPolicyLayer;
use crate::remote_hint::NoRemoteHint;
use crate::request::CloneAll;
use crossbeam_utils::CachePadded;
use palisade_core::classify::ErrorIsFailure;
use palisade_core::clock::Clock;
use palisade_core::events::{EventBus, Listener, ListenerId};
use palisade_core::sync::atomic::{AtomicU64, Ordering};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What a [`RetryPolicy`] is set to, and its budget's state: [`RetryPolicy::snapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicySnapshot {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// The backoff before each retry.
    pub backoff: Backoff,
    /// The deadline across all attempts, if any.
    pub deadline: Option<Duration>,
    /// The timeout of each attempt, if any.
    pub attempt_timeout: Option<Duration>,
    /// The longest remote `retry_after` hint waited on.
    pub max_retry_after: Duration,
    /// The budget's state, when retries draw on a [`RetryBudget`].
    pub budget: Option<RetryBudgetSnapshot>,
}

/// The state every clone of a [`RetryPolicyService`](crate::RetryPolicyService) shares.
pub(crate) struct Shared<C, Q, H> {
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) deadline: Option<Duration>,
    pub(crate) attempt_timeout: Option<Duration>,
    /// Every attempt ends at `attempt_timeout`, even one no retry could follow.
    pub(crate) strict_attempt_timeout: bool,
    /// A remote hint binds only once a second attempt in a row brings one (see
    /// `RetryPolicyBuilder::remote_hint_per_endpoint`).
    pub(crate) remote_hint_per_endpoint: bool,
    /// The longest remote `retry_after` hint waited on; a longer one ends retrying.
    pub(crate) max_retry_after: Duration,
    /// `Some(cap)` when local rejections from below are retried, after at most `cap`.
    pub(crate) local_max_wait: Option<Duration>,
    pub(crate) classify: C,
    pub(crate) requests: Q,
    /// Reads remote hints from failed responses (a no-op by default).
    pub(crate) remote_hint: H,
    pub(crate) spend: Spend,
    pub(crate) clock: Clock,
    pub(crate) seed: u64,
    /// How many calls have drawn a random stream (for jitter) so far.
    ///
    /// Padded to a cache line of its own, which also aligns `Shared` to one: every call bumps
    /// the `Arc`'s reference count (the response future holds a clone) and every retry this
    /// counter, while every call reads the other fields. Sharing a line with either write, the
    /// reads missed on every call of a thread whose neighbour had just written: measured on
    /// `retry/budget_exhausted_2_threads`, the loads of `spend` next to the count took a third
    /// of the time.
    pub(crate) streams: CachePadded<AtomicU64>,
    pub(crate) events: EventBus<RetryEvent>,
    pub(crate) name: Arc<str>,
}

impl<C, Q, H> Shared<C, Q, H> {
    /// Whether the response future, rather than the service's `poll_ready`, waits for the
    /// inner service's readiness: so when a deadline or an attempt timeout can bound that wait.
    #[inline]
    pub(crate) fn bounds_readiness(&self) -> bool {
        self.deadline.is_some() || self.attempt_timeout.is_some()
    }

    /// The seed of the next call's jitter stream: the policy's seed for the first call that
    /// needs one, then distinct, reproducible seeds.
    pub(crate) fn next_stream_seed(&self) -> u64 {
        // Relaxed: only uniqueness of the stream number matters, which the RMW gives.
        let stream = self.streams.fetch_add(1, Ordering::Relaxed);
        self.seed ^ stream.wrapping_mul(0xd6e8_feb8_6659_fd93)
    }
}

/// A retry policy: a handle shared by every [`RetryPolicyLayer`] and
/// [`RetryPolicyService`](crate::RetryPolicyService) made from it. Build one with
/// [`RetryPolicy::builder`].
///
/// Generic over the classifier `C` (which results are retryable failures; default: every
/// error, no response) and the request policy `Q` (which requests are retryable and how they
/// are copied; default: every request, with `Clone`) and the [`RemoteHint`](crate::RemoteHint)
/// `H` (which hint a retryable response carries; default [`NoRemoteHint`]: none, at no cost;
/// set with [`remote_hint`](RetryPolicyBuilder::remote_hint)).
pub struct RetryPolicy<C = ErrorIsFailure, Q = CloneAll, H = NoRemoteHint> {
    pub(crate) shared: Arc<Shared<C, Q, H>>,
}

impl<C, Q, H> Clone for RetryPolicy<C, Q, H> {
    fn clone(&self) -> Self {
        RetryPolicy {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl RetryPolicy {
    /// A builder with the defaults: 3 attempts, exponential backoff with full jitter from
    /// 50 ms capped at 5 s, no deadline, no per-attempt timeout, errors retryable, every
    /// request retryable, a default [`RetryBudget`], remote `retry_after` hints honoured up to
    /// the backoff cap, local rejections returned at once.
    ///
    /// Why these numbers: 3 attempts and full jitter are the AWS Architecture Blog's and
    /// gRPC's defaults (at most two extra attempts per request, spread so that clients that
    /// failed together do not retry together); 50 ms is a typical intra-datacentre backoff
    /// base, and the 5 s cap bounds every wait a default policy can impose; the budget is
    /// Finagle's (retries add at most 20 % load, plus 10 a second).
    #[must_use]
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder::new()
    }
}

impl<C, Q, H> RetryPolicy<C, Q, H> {
    /// The layer that wraps services with this policy.
    #[must_use]
    pub fn layer(&self) -> RetryPolicyLayer<C, Q, H> {
        RetryPolicyLayer::new(self)
    }

    /// The settings in force, and the budget's state if it has one.
    #[must_use]
    pub fn snapshot(&self) -> RetryPolicySnapshot {
        let s = &self.shared;
        RetryPolicySnapshot {
            max_attempts: s.max_attempts,
            backoff: s.backoff,
            deadline: s.deadline,
            attempt_timeout: s.attempt_timeout,
            max_retry_after: s.max_retry_after,
            budget: self.budget().map(RetryBudget::snapshot),
        }
    }

    /// The budget retries draw on, if it is a [`RetryBudget`].
    #[must_use]
    pub fn budget(&self) -> Option<&RetryBudget> {
        match &self.shared.spend {
            Spend::Budget(budget) => Some(budget),
            _ => None,
        }
    }

    /// Adds a listener for this policy's [`RetryEvent`]s.
    pub fn subscribe<L: Listener<RetryEvent>>(&self, listener: L) -> ListenerId {
        self.shared.events.subscribe(listener)
    }

    /// Removes a listener; `false` if it was not subscribed.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        self.shared.events.unsubscribe(id)
    }

    /// Attempts per request, the first included.
    #[must_use]
    pub fn max_attempts(&self) -> u32 {
        self.shared.max_attempts
    }

    /// The instance name used in metrics and traces.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }
}

impl<C, Q, H> fmt::Debug for RetryPolicy<C, Q, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("RetryPolicy")
            .field("name", &s.name)
            .field("max_attempts", &s.max_attempts)
            .field("backoff", &s.backoff)
            .field("deadline", &s.deadline)
            .field("attempt_timeout", &s.attempt_timeout)
            .field("strict_attempt_timeout", &s.strict_attempt_timeout)
            .field("remote_hint_per_endpoint", &s.remote_hint_per_endpoint)
            .field("max_retry_after", &s.max_retry_after)
            .field("retry_local_rejections", &s.local_max_wait)
            .field("spend", &s.spend)
            .field("clock", &s.clock)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_shared_config_is_off_the_reference_counts_cache_line() {
        // `Arc`'s counts lead its allocation; a cache-line alignment puts the config after them
        // on a line of its own (see `Shared::streams`).
        let align = std::mem::align_of::<Shared<ErrorIsFailure, CloneAll, NoRemoteHint>>();
        assert!(align >= 64, "Shared is aligned to {align} bytes");
        assert_eq!(align, std::mem::align_of::<CachePadded<AtomicU64>>());
    }
}
