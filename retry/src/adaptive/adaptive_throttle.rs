//! [`AdaptiveThrottle`]: the handle, shared by every layer and service made from it.

use super::config::AdaptiveThrottleBuilder;
use super::layer::AdaptiveThrottleLayer;
use super::window::ThrottleWindow;
use crate::backoff::SplitMix64;
use crate::events::AdaptiveThrottleEvent;
use palisade_core::classify::ErrorIsFailure;
use palisade_core::clock::Clock;
use palisade_core::events::{EventBus, Listener, ListenerId};
use palisade_core::sync::atomic::{AtomicU64, Ordering};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The state every clone of the handle, its layers and services share.
pub(crate) struct Shared<C> {
    pub(crate) window: ThrottleWindow,
    pub(crate) classify: C,
    pub(crate) clock: Clock,
    pub(crate) seed: u64,
    /// Random streams handed out to services.
    pub(crate) streams: AtomicU64,
    pub(crate) events: EventBus<AdaptiveThrottleEvent>,
    pub(crate) name: Arc<str>,
    pub(crate) k: f64,
    pub(crate) window_length: Duration,
}

impl<C> Shared<C> {
    pub(crate) fn rng(&self) -> SplitMix64 {
        // Relaxed: only uniqueness of the stream number matters, which the RMW gives.
        let stream = self.streams.fetch_add(1, Ordering::Relaxed);
        SplitMix64::new(self.seed ^ stream.wrapping_mul(0xd6e8_feb8_6659_fd93))
    }
}

/// A client-side adaptive throttle: a handle shared by every layer and service made from it.
/// See the [module docs](super) for the algorithm.
pub struct AdaptiveThrottle<C = ErrorIsFailure> {
    pub(crate) shared: Arc<Shared<C>>,
}

/// What an [`AdaptiveThrottle`] has seen in its window: [`AdaptiveThrottle::snapshot`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct AdaptiveThrottleSnapshot {
    /// Requests counted (sent, rejected locally, or never completed).
    pub requests: u64,
    /// Requests the backend accepted.
    pub accepts: u64,
    /// The probability that a request sent now is rejected locally.
    pub reject_probability: f64,
}

impl<C> Clone for AdaptiveThrottle<C> {
    fn clone(&self) -> Self {
        AdaptiveThrottle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C> fmt::Debug for AdaptiveThrottle<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveThrottle")
            .field("name", &self.shared.name)
            .field("k", &self.shared.k)
            .field("window", &self.shared.window_length)
            .field("reject_probability", &self.reject_probability())
            .finish_non_exhaustive()
    }
}

impl AdaptiveThrottle {
    /// A builder with the SRE book's defaults: `K = 2`, a 2-minute window.
    #[must_use]
    pub fn builder() -> AdaptiveThrottleBuilder {
        AdaptiveThrottleBuilder::new()
    }
}

impl<C> AdaptiveThrottle<C> {
    /// The layer that wraps services with this throttle.
    #[must_use]
    pub fn layer(&self) -> AdaptiveThrottleLayer<C> {
        AdaptiveThrottleLayer::from_shared(Arc::clone(&self.shared))
    }

    /// The probability that a request sent now is rejected locally.
    #[must_use]
    pub fn reject_probability(&self) -> f64 {
        let now = self.shared.clock.now();
        self.shared.window.reject_probability(now)
    }

    /// `(requests, accepts)` in the current window.
    #[must_use]
    pub fn counts(&self) -> (u64, u64) {
        self.shared.window.totals(self.shared.clock.now())
    }

    /// Requests, accepts and the rejection probability now.
    #[must_use]
    pub fn snapshot(&self) -> AdaptiveThrottleSnapshot {
        let (requests, accepts) = self.counts();
        AdaptiveThrottleSnapshot {
            requests,
            accepts,
            reject_probability: super::window::reject_probability(requests, accepts, self.shared.k),
        }
    }

    /// Adds a listener for this throttle's [`AdaptiveThrottleEvent`]s.
    pub fn subscribe<L: Listener<AdaptiveThrottleEvent>>(&self, listener: L) -> ListenerId {
        self.shared.events.subscribe(listener)
    }

    /// Removes a listener; `false` if it was not subscribed.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        self.shared.events.unsubscribe(id)
    }

    /// The instance name used in metrics and traces.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }
}
