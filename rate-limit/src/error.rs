//! The rejections of this layer. Services return them boxed in `tower::BoxError`; find them
//! with `downcast_ref`.

use palisade_core::rejection::{Rejection, RejectionKind};
use std::error::Error;
use std::fmt;
use std::time::Duration;

/// The request is over the rate limit. Trying again after [`retry_after`](Self::retry_after)
/// would succeed if nothing else takes the tokens meanwhile.
///
/// A local rejection: its [`source`](Error::source) is a core [`Rejection`] of kind
/// [`RejectionKind::RateLimited`] (so breakers above ignore it and retries return it at once),
/// whose own source is the `RetryAfter` hint (so `palisade_core::retry_after` finds it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimited {
    rejection: Rejection,
}

impl RateLimited {
    /// A refusal whose request would conform after `retry_after`.
    ///
    /// Public so that other limiters (the Redis-backed global limiter of
    /// `palisade-rate-limit-redis`) answer with this same type: a caller downcasts one
    /// `RateLimited`, whichever limiter refused.
    #[must_use]
    pub fn new(retry_after: Duration) -> Self {
        RateLimited {
            rejection: Rejection::new(RejectionKind::RateLimited).with_retry_after(retry_after),
        }
    }

    /// How long until the request would conform.
    #[must_use]
    pub fn retry_after(&self) -> Duration {
        self.rejection.retry_after().unwrap_or(Duration::ZERO)
    }

    /// The core marker this rejection carries.
    #[must_use]
    pub fn rejection(&self) -> &Rejection {
        &self.rejection
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limited: retry after {:?}", self.retry_after())
    }
}

impl Error for RateLimited {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.rejection)
    }
}

static COST_EXCEEDS_BURST: Rejection = Rejection::new(RejectionKind::CostExceedsBurst);

/// The request costs more tokens than the bucket holds: it can never be admitted, so it is
/// rejected at once, whatever the mode.
///
/// A local rejection: its [`source`](Error::source) is a core [`Rejection`] of kind
/// [`RejectionKind::CostExceedsBurst`], with no retry hint (waiting never helps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CostExceedsBurst {
    cost: u32,
    burst: u32,
}

impl CostExceedsBurst {
    /// A request of `cost` tokens refused by a bucket of `burst`. Public for the same reason
    /// as [`RateLimited::new`].
    #[must_use]
    pub fn new(cost: u32, burst: u32) -> Self {
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

    /// The core marker this rejection carries.
    #[must_use]
    pub fn rejection(&self) -> &Rejection {
        &COST_EXCEEDS_BURST
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

impl Error for CostExceedsBurst {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&COST_EXCEEDS_BURST)
    }
}

/// A [`KeyedRateLimiter`](crate::KeyedRateLimiter) holds its maximum number of keys
/// ([`max_keys`](Self::max_keys), a cap on the whole limiter), so a request of a key it does
/// not hold is refused (see [`WhenFull`](crate::WhenFull)) until keys go idle (their bucket
/// refilled) and are swept out; [`retry_after`](Self::retry_after) says when the limiter
/// expects room.
///
/// A local rejection: its [`source`](Error::source) is a core [`Rejection`] of kind
/// [`RejectionKind::TooManyKeys`] carrying that hint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TooManyKeys {
    max_keys: usize,
    rejection: Rejection,
}

impl TooManyKeys {
    /// A new key refused by a limiter holding its cap of `max_keys` keys, with room expected
    /// after `retry_after`. Public for the same reason as [`RateLimited::new`].
    #[must_use]
    pub fn new(max_keys: usize, retry_after: Duration) -> Self {
        TooManyKeys {
            max_keys,
            rejection: Rejection::new(RejectionKind::TooManyKeys).with_retry_after(retry_after),
        }
    }

    /// The configured cap on keys, for the whole limiter.
    #[must_use]
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// When the limiter expects to have room for a new key.
    #[must_use]
    pub fn retry_after(&self) -> Duration {
        self.rejection.retry_after().unwrap_or(Duration::ZERO)
    }

    /// The core marker this rejection carries.
    #[must_use]
    pub fn rejection(&self) -> &Rejection {
        &self.rejection
    }
}

impl fmt::Display for TooManyKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "keyed rate limiter holds its maximum of {} keys: new keys are refused; retry after {:?}",
            self.max_keys,
            self.retry_after()
        )
    }
}

impl Error for TooManyKeys {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.rejection)
    }
}

/// Why a [`KeyedRateLimiter`](crate::KeyedRateLimiter) refused a request. Its
/// [`source`](Error::source) is the specific rejection, whose source is the core
/// [`Rejection`]: `palisade_core::rejection` finds it through either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyedRejection {
    /// The key is over its rate.
    RateLimited(RateLimited),
    /// The cost is above the burst.
    CostExceedsBurst(CostExceedsBurst),
    /// The key table is full.
    TooManyKeys(TooManyKeys),
}

impl KeyedRejection {
    /// The core marker of the inner rejection.
    #[must_use]
    pub fn rejection(&self) -> &Rejection {
        match self {
            KeyedRejection::RateLimited(e) => e.rejection(),
            KeyedRejection::CostExceedsBurst(e) => e.rejection(),
            KeyedRejection::TooManyKeys(e) => e.rejection(),
        }
    }

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

pub(crate) use palisade_core::BoxError;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use palisade_core::rejection::rejection;

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
        let k = KeyedRejection::TooManyKeys(TooManyKeys::new(10, Duration::from_secs(2)));
        assert!(k.to_string().contains("maximum of 10 keys"), "{k}");
        assert_eq!(palisade_core::retry_after(&k), Some(Duration::from_secs(2)));
        assert!(k.boxed().downcast_ref::<TooManyKeys>().is_some());
        assert!(
            KeyedRejection::RateLimited(e)
                .boxed()
                .downcast_ref::<RateLimited>()
                .is_some()
        );
    }

    /// Issue 9 §1: every rejection of this crate is a local rejection of the matching kind,
    /// found through the source chain, boxed or not, directly or through `KeyedRejection`.
    #[test]
    fn every_rejection_carries_a_core_rejection_of_its_kind() {
        let cases: [(BoxError, RejectionKind, Option<Duration>); 6] = [
            (
                Box::new(RateLimited::new(Duration::from_millis(7))),
                RejectionKind::RateLimited,
                Some(Duration::from_millis(7)),
            ),
            (
                Box::new(CostExceedsBurst::new(9, 2)),
                RejectionKind::CostExceedsBurst,
                None,
            ),
            (
                Box::new(TooManyKeys::new(5, Duration::from_secs(1))),
                RejectionKind::TooManyKeys,
                Some(Duration::from_secs(1)),
            ),
            (
                Box::new(KeyedRejection::RateLimited(RateLimited::new(
                    Duration::from_millis(3),
                ))),
                RejectionKind::RateLimited,
                Some(Duration::from_millis(3)),
            ),
            (
                Box::new(KeyedRejection::CostExceedsBurst(CostExceedsBurst::new(
                    9, 2,
                ))),
                RejectionKind::CostExceedsBurst,
                None,
            ),
            (
                KeyedRejection::TooManyKeys(TooManyKeys::new(5, Duration::from_secs(4))).boxed(),
                RejectionKind::TooManyKeys,
                Some(Duration::from_secs(4)),
            ),
        ];
        for (err, kind, hint) in cases {
            let found = rejection(&*err).unwrap_or_else(|| panic!("{err} is not local"));
            assert_eq!(found.kind(), kind, "{err}");
            assert_eq!(found.layer(), "rate_limit");
            assert_eq!(found.retry_after(), hint, "{err}");
            assert_eq!(palisade_core::retry_after(&*err), hint, "{err}");
        }
        assert_eq!(
            std::mem::size_of::<CostExceedsBurst>(),
            8,
            "no Rejection stored: a static one is the source"
        );
    }
}
