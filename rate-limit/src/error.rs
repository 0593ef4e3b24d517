//! The rejections of this layer. Services return them boxed in `tower::BoxError`; find them
//! with `downcast_ref`.

use palisade_core::error::RetryAfter;
use std::error::Error;
use std::fmt;
use std::time::Duration;

/// The request is over the rate limit. Trying again after [`retry_after`](Self::retry_after)
/// would succeed if nothing else takes the tokens meanwhile.
///
/// Its [`source`](Error::source) is a [`RetryAfter`], so `palisade_core::retry_after` finds the
/// hint without knowing this type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimited {
    retry_after: RetryAfter,
}

impl RateLimited {
    pub(crate) fn new(retry_after: Duration) -> Self {
        RateLimited {
            retry_after: RetryAfter::new(retry_after),
        }
    }

    /// How long until the request would conform.
    #[must_use]
    pub fn retry_after(&self) -> Duration {
        self.retry_after.duration()
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limited: retry after {:?}", self.retry_after())
    }
}

impl Error for RateLimited {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.retry_after)
    }
}

/// The request costs more tokens than the bucket holds: it can never be admitted, so it is
/// rejected at once, whatever the mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CostExceedsBurst {
    cost: u32,
    burst: u32,
}

impl CostExceedsBurst {
    pub(crate) fn new(cost: u32, burst: u32) -> Self {
        CostExceedsBurst { cost, burst }
    }

    /// What the request costs.
    #[must_use]
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// The bucket's capacity.
    #[must_use]
    pub fn burst(&self) -> u32 {
        self.burst
    }
}

impl fmt::Display for CostExceedsBurst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request cost of {} tokens exceeds the burst of {}: it can never be admitted",
            self.cost, self.burst
        )
    }
}

impl Error for CostExceedsBurst {}

/// A [`KeyedRateLimiter`](crate::KeyedRateLimiter) holds its maximum number of keys, none of
/// them idle, so a request of a new key is refused (see
/// [`WhenFull`](crate::WhenFull)). Keys go idle once their bucket has refilled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyKeys {
    max_keys: usize,
}

impl TooManyKeys {
    pub(crate) fn new(max_keys: usize) -> Self {
        TooManyKeys { max_keys }
    }

    /// The configured cap.
    #[must_use]
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }
}

impl fmt::Display for TooManyKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limiter holds its maximum of {} busy keys: new keys are refused",
            self.max_keys
        )
    }
}

impl Error for TooManyKeys {}

/// Why a [`KeyedRateLimiter`](crate::KeyedRateLimiter) refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyedRejection {
    /// The key is over its rate.
    RateLimited(RateLimited),
    /// The cost is above the burst.
    CostExceedsBurst(CostExceedsBurst),
    /// The key table is full.
    TooManyKeys(TooManyKeys),
}

impl KeyedRejection {
    /// Boxes the inner rejection, so users downcast to the specific type.
    pub(crate) fn boxed(self) -> BoxError {
        match self {
            KeyedRejection::RateLimited(e) => Box::new(e),
            KeyedRejection::CostExceedsBurst(e) => Box::new(e),
            KeyedRejection::TooManyKeys(e) => Box::new(e),
        }
    }
}

impl fmt::Display for KeyedRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyedRejection::RateLimited(e) => e.fmt(f),
            KeyedRejection::CostExceedsBurst(e) => e.fmt(f),
            KeyedRejection::TooManyKeys(e) => e.fmt(f),
        }
    }
}

impl Error for KeyedRejection {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            KeyedRejection::RateLimited(e) => Some(e),
            KeyedRejection::CostExceedsBurst(e) => Some(e),
            KeyedRejection::TooManyKeys(e) => Some(e),
        }
    }
}

/// `tower::BoxError`, spelled out so the crate needs no `tower` dependency.
pub(crate) type BoxError = Box<dyn Error + Send + Sync>;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn rejections_say_what_happened_and_carry_the_hint() {
        let e = RateLimited::new(Duration::from_millis(250));
        assert_eq!(e.to_string(), "rate limited: retry after 250ms");
        let boxed: BoxError = Box::new(e);
        assert_eq!(
            palisade_core::retry_after(&*boxed),
            Some(Duration::from_millis(250))
        );
        let c = CostExceedsBurst::new(5, 3);
        assert_eq!(
            c.to_string(),
            "request cost of 5 tokens exceeds the burst of 3: it can never be admitted"
        );
        assert_eq!(palisade_core::retry_after(&c), None);
        let k = KeyedRejection::TooManyKeys(TooManyKeys::new(10));
        assert!(k.to_string().contains("maximum of 10 busy keys"));
        assert!(k.boxed().downcast_ref::<TooManyKeys>().is_some());
        assert!(
            KeyedRejection::RateLimited(e)
                .boxed()
                .downcast_ref::<RateLimited>()
                .is_some()
        );
    }
}
