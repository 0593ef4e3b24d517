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

use palisade_core::error::ConfigError;
use palisade_core::sync::Arc;
use palisade_core::sync::atomic::{AtomicU64, Ordering};
use std::fmt;

/// Thousandths of a token.
const MILLI: u64 = 1000;

/// A shared gRPC-style retry throttle. Cheap to clone; clones share the bucket.
#[derive(Clone)]
pub struct RetryThrottle {
    inner: Arc<Inner>,
}

struct Inner {
    /// Current tokens, in thousandths.
    tokens: AtomicU64,
    max: u64,
    ratio: u64,
}

impl RetryThrottle {
    /// A full bucket of `max_tokens` (1 to 1000) that successes refill by `token_ratio`
    /// (above 0, at most `max_tokens`, three decimals kept).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `max_tokens` or `token_ratio` when outside those ranges.
    pub fn new(max_tokens: u32, token_ratio: f64) -> Result<RetryThrottle, ConfigError> {
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
        Ok(RetryThrottle {
            inner: Arc::new(Inner {
                tokens: AtomicU64::new(max),
                max,
                ratio: ratio as u64,
            }),
        })
    }

    fn update(&self, f: impl Fn(u64) -> u64) {
        // Relaxed: see "Memory ordering" in the module docs.
        let _ = self
            .inner
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                let next = f(t);
                (next != t).then_some(next)
            });
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
}

impl fmt::Debug for RetryThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryThrottle")
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
