//! [`HedgePolicy`]: the handle, shared by every layer and service made from it.

use super::config::HedgePolicyBuilder;
use super::layer::HedgePolicyLayer;
use crate::config::Spend;
use crate::events::RetryEvent;
use crate::latency::LatencyHistogram;
use crate::request::CloneAll;
use palisade_core::classify::ErrorIsFailure;
use palisade_core::clock::{Clock, Instant};
use palisade_core::events::{EventBus, Listener, ListenerId};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The state every clone of a [`HedgePolicyService`] shares.
pub(crate) struct HedgeShared<C, Q> {
    pub(crate) fixed: Option<Duration>,
    pub(crate) initial_delay: Duration,
    pub(crate) histogram: Option<LatencyHistogram>,
    pub(crate) max_hedges: u32,
    pub(crate) classify: C,
    pub(crate) requests: Q,
    pub(crate) spend: Spend,
    /// Whether requests deposit into the budget here (not when a retry layer's do).
    pub(crate) deposits: bool,
    pub(crate) clock: Clock,
    pub(crate) events: EventBus<RetryEvent>,
    pub(crate) name: Arc<str>,
}

impl<C, Q> HedgeShared<C, Q> {
    /// How long to wait before the next hedge.
    #[inline]
    pub(crate) fn delay(&self) -> Duration {
        match (self.fixed, &self.histogram) {
            (Some(fixed), _) => fixed,
            (None, Some(h)) => h.percentile().unwrap_or(self.initial_delay),
            (None, None) => self.initial_delay,
        }
    }

    /// The start of an attempt, read only when latencies are tracked.
    #[inline]
    pub(crate) fn start(&self) -> Instant {
        if self.histogram.is_some() {
            self.clock.now()
        } else {
            Instant::ZERO
        }
    }

    /// Counts the latency of an attempt that won.
    #[inline]
    pub(crate) fn record(&self, start: Instant) {
        if let Some(h) = &self.histogram {
            h.record(self.clock.elapsed_since(start));
        }
    }
}

/// A hedging policy: a handle shared by every [`HedgePolicyLayer`] and [`HedgePolicyService`](super::HedgePolicyService)
/// made from it. See the [module docs](super).
pub struct HedgePolicy<C = ErrorIsFailure, Q = CloneAll> {
    pub(crate) shared: Arc<HedgeShared<C, Q>>,
}

/// What a [`HedgePolicy`] would do now: [`HedgePolicy::snapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HedgePolicySnapshot {
    /// The delay a request sent now would wait before its first hedge.
    pub current_delay: Duration,
    /// Copies in flight beyond the first, at most.
    pub max_hedges: u32,
}

impl<C, Q> Clone for HedgePolicy<C, Q> {
    fn clone(&self) -> Self {
        HedgePolicy {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl HedgePolicy {
    /// A builder with the defaults: one hedge after the 95th percentile of recent latencies
    /// (100 ms until 100 latencies were seen), a default [`RetryBudget`](crate::RetryBudget),
    /// every request hedged.
    #[must_use]
    pub fn builder() -> HedgePolicyBuilder {
        HedgePolicyBuilder::new()
    }
}

impl<C, Q> HedgePolicy<C, Q> {
    /// The layer that wraps services with this policy.
    #[must_use]
    pub fn layer(&self) -> HedgePolicyLayer<C, Q> {
        HedgePolicyLayer::from_shared(Arc::clone(&self.shared))
    }

    /// The current delay and the hedge limit.
    #[must_use]
    pub fn snapshot(&self) -> HedgePolicySnapshot {
        HedgePolicySnapshot {
            current_delay: self.shared.delay(),
            max_hedges: self.shared.max_hedges,
        }
    }

    /// The instance name used in metrics and traces.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The delay a request sent now would wait before its first hedge.
    #[must_use]
    pub fn current_delay(&self) -> Duration {
        self.shared.delay()
    }

    /// Adds a listener for [`RetryEvent::HedgeSent`] and [`RetryEvent::BudgetExhausted`].
    pub fn subscribe<L: Listener<RetryEvent>>(&self, listener: L) -> ListenerId {
        self.shared.events.subscribe(listener)
    }

    /// Removes a listener; `false` if it was not subscribed.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        self.shared.events.unsubscribe(id)
    }
}

impl<C, Q> fmt::Debug for HedgePolicy<C, Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgePolicy")
            .field("name", &self.shared.name)
            .field("max_hedges", &self.shared.max_hedges)
            .field("current_delay", &self.shared.delay())
            .field("spend", &self.shared.spend)
            .finish_non_exhaustive()
    }
}
