//! [`AdaptiveThrottleBuilder`]: the validated settings of an [`AdaptiveThrottle`].

use super::adaptive_throttle::{AdaptiveThrottle, Shared};
use super::window::ThrottleWindow;
use palisade_core::classify::ErrorIsFailure;
use palisade_core::clock::{Clock, duration_to_nanos};
use palisade_core::error::{ConfigError, check_nonzero_duration};
use palisade_core::events::EventBus;
use palisade_core::rng::random_seed;
use palisade_core::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// Builds an [`AdaptiveThrottle`].
#[derive(Clone, Debug)]
pub struct AdaptiveThrottleBuilder<C = ErrorIsFailure> {
    k: f64,
    window: Duration,
    classify: C,
    clock: Option<Clock>,
    seed: Option<u64>,
    name: Option<Arc<str>>,
}

impl AdaptiveThrottleBuilder {
    pub(crate) fn new() -> Self {
        AdaptiveThrottleBuilder {
            k: 2.0,
            window: Duration::from_secs(120),
            classify: ErrorIsFailure,
            clock: None,
            seed: None,
            name: None,
        }
    }
}

impl<C> AdaptiveThrottleBuilder<C> {
    /// The multiplier `K` (at least 1, finite): the client sends about `K` times what the
    /// backend accepts. Default 2 (the SRE book's).
    #[must_use]
    pub fn k(mut self, k: f64) -> Self {
        self.k = k;
        self
    }

    /// The window of history (10 buckets), 10 ms to 1 day. Default 2 minutes (the SRE book's).
    #[must_use]
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Which results the backend rejected: those classified as failures. Default: errors.
    #[must_use]
    pub fn classify<C2>(self, classify: C2) -> AdaptiveThrottleBuilder<C2> {
        AdaptiveThrottleBuilder {
            k: self.k,
            window: self.window,
            classify,
            clock: self.clock,
            seed: self.seed,
            name: self.name,
        }
    }

    /// The clock. Default [`Clock::default`] (no background thread); [`Clock::tokio`] in
    /// paused-time tests.
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Seeds the random draws. Default: random.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The instance name for metrics and traces. Default `"adaptive_throttle"`.
    #[must_use]
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `k` (below 1 or not finite) or `window` (below 10 ms or above a
    /// day).
    pub fn build(self) -> Result<AdaptiveThrottle<C>, ConfigError> {
        if !(self.k.is_finite() && self.k >= 1.0) {
            return Err(ConfigError::new(
                "k",
                format!("must be a finite number of at least 1, got {}", self.k),
            ));
        }
        let window = check_nonzero_duration("window", self.window)?;
        if window < Duration::from_millis(10) || window > Duration::from_secs(86_400) {
            return Err(ConfigError::new(
                "window",
                format!("must be between 10ms and 1 day, got {window:?}"),
            ));
        }
        let name = self.name.unwrap_or_else(|| Arc::from("adaptive_throttle"));
        let events = EventBus::new();
        palisade_core::subscribe_feature_listeners!(events, "retry", name);
        Ok(AdaptiveThrottle {
            shared: Arc::new(Shared {
                window: ThrottleWindow::new(duration_to_nanos(window), self.k),
                classify: self.classify,
                clock: self.clock.unwrap_or_default(),
                seed: self.seed.unwrap_or_else(random_seed),
                streams: AtomicU64::new(0),
                events,
                name,
                k: self.k,
                window_length: window,
            }),
        })
    }
}
