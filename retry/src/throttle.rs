//! [`RetryThrottle`]: gRPC's retry throttling, a token bucket kept by outcomes.
//!
//! The bucket starts full at `max_tokens`. Every failed attempt takes one token, every
//! successful one gives back `token_ratio` tokens (never above `max_tokens`), and retries (and
//! hedges) are allowed only while more than half of `max_tokens` remain. So when most calls
//! fail, retrying stops altogether until successes refill the bucket, and when all is well the
//! throttle is invisible. (Specified in gRPC's A6 proposal, "Retry throttling".)
//!
//! Tokens are counted in thousandths, as gRPC specifies, in one `AtomicU64` updated by CAS.
//!
//! # Example
//!
//! ```
//! use palisade_retry::RetryThrottle;
//!
//! let throttle = RetryThrottle::new(10, 0.1).unwrap();
//! assert!(throttle.allows_retry());
//! for _ in 0..5 {
//!     throttle.on_failure();
//! }
//! assert_eq!(throttle.tokens(), 5.0);
//! assert!(!throttle.allows_retry(), "retries need more than half the bucket");
//! throttle.on_success();
//! assert!(throttle.allows_retry());
//! ```
//!
//! # Memory ordering
//!
//! The token count is a number that publishes nothing: every access is `Relaxed`, and each
//! update is one read-modify-write, so none is lost.

use crate::events::ThrottleEvent;
use palisade_core::error::ConfigError;
use palisade_core::events::{EventBus, Listener, ListenerId};
use palisade_core::sync::Arc;
use palisade_core::sync::atomic::{AtomicU64, Ordering};
use std::fmt;

/// Thousandths of a token.
const MILLI: u64 = 1000;

/// A shared gRPC-style retry throttle. Cheap to clone; clones share the bucket.
///
/// It *engages* (retries stop) when the tokens fall to half of `max_tokens` or below, and
/// *disengages* when successes bring them back above: both are [`ThrottleEvent`]s.
#[derive(Clone)]
pub struct RetryThrottle {
    inner: Arc<Inner>,
}

struct Inner {
    /// Current tokens, in thousandths.
    tokens: AtomicU64,
    max: u64,
    ratio: u64,
    name: std::sync::Arc<str>,
    events: EventBus<ThrottleEvent>,
}

/// What a [`RetryThrottle`] holds now: [`RetryThrottle::snapshot`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct RetryThrottleSnapshot {
    /// The tokens in the bucket.
    pub tokens: f64,
    /// The bucket's size.
    pub max_tokens: u32,
    /// Whether retries are allowed now (more than half the bucket).
    pub allows_retry: bool,
}

/// Builds a [`RetryThrottle`].
#[derive(Clone, Debug)]
pub struct RetryThrottleBuilder {
    max_tokens: u32,
    token_ratio: f64,
    name: Option<std::sync::Arc<str>>,
}

impl RetryThrottleBuilder {
    /// The bucket's size, 1 to 1000. Default 10 (the example of gRPC's A6 proposal).
    #[must_use]
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// Tokens a success gives back, above 0 and at most `max_tokens`, three decimals kept.
    /// Default 0.1 (gRPC A6's example: ten successes refill what one failure took).
    #[must_use]
    pub fn token_ratio(mut self, token_ratio: f64) -> Self {
        self.token_ratio = token_ratio;
        self
    }

    /// The instance name for metrics and traces. Default `"retry_throttle"`.
    #[must_use]
    pub fn name(mut self, name: impl Into<std::sync::Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `max_tokens` or `token_ratio` when outside their ranges.
    pub fn build(self) -> Result<RetryThrottle, ConfigError> {
        let max_tokens = self.max_tokens;
        let token_ratio = self.token_ratio;
        if !(1..=1000).contains(&max_tokens) {
            return Err(ConfigError::new(
                "max_tokens",
                format!("must be between 1 and 1000, got {max_tokens}"),
            ));
        }
        let ratio = (token_ratio * MILLI as f64).round();
        if !(ratio >= 1.0 && ratio <= f64::from(max_tokens) * MILLI as f64) {
            return Err(ConfigError::new(
                "token_ratio",
                format!("must be between 0.001 and max_tokens, got {token_ratio}"),
            ));
        }
        let max = u64::from(max_tokens) * MILLI;
        let name = self
            .name
            .unwrap_or_else(|| std::sync::Arc::from("retry_throttle"));
        let throttle = RetryThrottle {
            inner: Arc::new(Inner {
                tokens: AtomicU64::new(max),
                max,
                ratio: ratio as u64,
                name,
                events: EventBus::new(),
            }),
        };
        throttle.subscribe_feature_listeners();
        Ok(throttle)
    }
}

impl RetryThrottle {
    /// The `metrics` and `tracing` listeners of the crate's features. The metrics listener
    /// sets the `engaged` gauge from the current state whenever it registers its handles
    /// (at build, or when a recorder arrives later), so the gauge is right from the start.
    fn subscribe_feature_listeners(&self) {
        let inner = &self.inner;
        let _ = inner;
        #[cfg(all(feature = "metrics", not(loom)))]
        {
            let weak = Arc::downgrade(inner);
            inner
                .events
                .install_metrics(palisade_core::events::MetricsListener::with_on_register(
                    &inner.name,
                    move |handles: &crate::events::ThrottleMetrics| {
                        if let Some(inner) = weak.upgrade() {
                            // Relaxed: a snapshot for a gauge.
                            let tokens = inner.tokens.load(Ordering::Relaxed);
                            handles.set_engaged(tokens * 2 <= inner.max);
                        }
                    },
                ));
        }
        #[cfg(feature = "tracing")]
        {
            inner
                .events
                .install_tracing(palisade_core::events::TracingListener::new(
                    "retry",
                    std::sync::Arc::clone(&inner.name),
                ));
        }
    }
}

impl RetryThrottle {
    /// A builder with gRPC A6's example values: 10 tokens, 0.1 back per success.
    #[must_use]
    pub fn builder() -> RetryThrottleBuilder {
        RetryThrottleBuilder {
            max_tokens: 10,
            token_ratio: 0.1,
            name: None,
        }
    }

    /// A full bucket of `max_tokens` (1 to 1000) that successes refill by `token_ratio`
    /// (above 0, at most `max_tokens`, three decimals kept).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `max_tokens` or `token_ratio` when outside those ranges.
    pub fn new(max_tokens: u32, token_ratio: f64) -> Result<RetryThrottle, ConfigError> {
        RetryThrottle::builder()
            .max_tokens(max_tokens)
            .token_ratio(token_ratio)
            .build()
    }

    fn update(&self, f: impl Fn(u64) -> u64) {
        let inner = &*self.inner;
        // Relaxed: see "Memory ordering" in the module docs.
        let Ok(before) = inner
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                let next = f(t);
                (next != t).then_some(next)
            })
        else {
            return;
        };
        // The winning update's own transition, computed from the value it replaced.
        let after = f(before);
        let (was, is) = (before * 2 > inner.max, after * 2 > inner.max);
        if was != is {
            let tokens = after as f64 / MILLI as f64;
            inner.events.emit_with(|| {
                if is {
                    ThrottleEvent::Disengaged { tokens }
                } else {
                    ThrottleEvent::Engaged { tokens }
                }
            });
        }
    }

    /// Records a failed attempt: one token less (not below zero).
    pub fn on_failure(&self) {
        self.update(|t| t.saturating_sub(MILLI));
    }

    /// Records a successful attempt: `token_ratio` tokens more (not above `max_tokens`).
    pub fn on_success(&self) {
        let (max, ratio) = (self.inner.max, self.inner.ratio);
        self.update(|t| (t + ratio).min(max));
    }

    /// Whether a retry may be sent now: more than half of `max_tokens` remain.
    #[must_use]
    pub fn allows_retry(&self) -> bool {
        // Relaxed: see "Memory ordering" in the module docs.
        self.inner.tokens.load(Ordering::Relaxed) * 2 > self.inner.max
    }

    /// The tokens in the bucket now.
    #[must_use]
    pub fn tokens(&self) -> f64 {
        // Relaxed: a snapshot for inspection.
        self.inner.tokens.load(Ordering::Relaxed) as f64 / MILLI as f64
    }

    /// The tokens, the bucket's size, and whether retries are allowed now.
    #[must_use]
    pub fn snapshot(&self) -> RetryThrottleSnapshot {
        // Relaxed: a snapshot for inspection.
        let tokens = self.inner.tokens.load(Ordering::Relaxed);
        RetryThrottleSnapshot {
            tokens: tokens as f64 / MILLI as f64,
            max_tokens: u32::try_from(self.inner.max / MILLI).unwrap_or(u32::MAX),
            allows_retry: tokens * 2 > self.inner.max,
        }
    }

    /// Adds a listener for this throttle's [`ThrottleEvent`]s.
    pub fn subscribe<L: Listener<ThrottleEvent>>(&self, listener: L) -> ListenerId {
        self.inner.events.subscribe(listener)
    }

    /// Removes a listener; `false` if it was not subscribed.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        self.inner.events.unsubscribe(id)
    }

    /// The instance name used in metrics and traces.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }
}

impl fmt::Debug for RetryThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryThrottle")
            .field("name", &self.inner.name)
            .field("tokens", &self.tokens())
            .field("max_tokens", &(self.inner.max / MILLI))
            .field("token_ratio", &(self.inner.ratio as f64 / MILLI as f64))
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn follows_the_grpc_arithmetic() {
        let t = RetryThrottle::new(10, 0.5).unwrap();
        assert_eq!(t.tokens(), 10.0);
        t.on_success();
        assert_eq!(t.tokens(), 10.0, "capped at max_tokens");
        for _ in 0..4 {
            t.on_failure();
        }
        assert!(t.allows_retry(), "6 > 5");
        t.on_failure();
        assert!(!t.allows_retry(), "5 is not more than half");
        for _ in 0..20 {
            t.on_failure();
        }
        assert_eq!(t.tokens(), 0.0, "floored at zero");
        t.on_success();
        t.on_success();
        assert_eq!(t.tokens(), 1.0);
    }

    #[test]
    fn engaging_and_disengaging_are_events() {
        let t = RetryThrottle::builder()
            .max_tokens(4)
            .token_ratio(1.0)
            .name("t")
            .build()
            .unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        t.subscribe(move |e: &ThrottleEvent| sink.lock().unwrap().push(*e));
        t.on_failure(); // 3 > 2: still allowed
        t.on_failure(); // 2: engaged
        t.on_failure(); // 1: no new transition
        t.on_success(); // 2
        t.on_success(); // 3: disengaged
        assert_eq!(
            *log.lock().unwrap(),
            [
                ThrottleEvent::Engaged { tokens: 2.0 },
                ThrottleEvent::Disengaged { tokens: 3.0 }
            ]
        );
        let snap = t.snapshot();
        assert_eq!(
            (snap.tokens, snap.max_tokens, snap.allows_retry),
            (3.0, 4, true)
        );
        assert_eq!(t.name(), "t");
    }

    #[test]
    fn config_is_validated() {
        assert_eq!(
            RetryThrottle::new(0, 0.1).unwrap_err().field(),
            "max_tokens"
        );
        assert_eq!(
            RetryThrottle::new(1001, 0.1).unwrap_err().field(),
            "max_tokens"
        );
        assert_eq!(
            RetryThrottle::new(10, 0.0).unwrap_err().field(),
            "token_ratio"
        );
        assert_eq!(
            RetryThrottle::new(10, f64::NAN).unwrap_err().field(),
            "token_ratio"
        );
        assert!(RetryThrottle::new(10, 10.0).is_ok());
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use palisade_core::sync::loom;

    /// Concurrent failures and successes are never lost.
    #[test]
    fn loom_throttle_updates_are_not_lost() {
        loom::model(|| {
            let t = RetryThrottle::new(4, 1.0).unwrap();
            let a = {
                let t = t.clone();
                loom::thread::spawn(move || t.on_failure())
            };
            t.on_failure();
            t.on_success();
            a.join().unwrap();
            assert_eq!(t.tokens(), 3.0);
        });
    }
}
