//! The rejections of this crate. Services return them boxed in `tower::BoxError`; find them
//! with `downcast_ref`, or generically with `palisade_core::rejection`.

use palisade_core::rejection::{Rejection, RejectionKind};
use std::error::Error;
use std::fmt;
use std::time::Duration;

/// The request is over the global rate limit (or, with Redis unreachable in fail-open mode,
/// over the local fallback limit). Trying again after [`retry_after`](Self::retry_after) may
/// succeed.
///
/// A local rejection: its [`source`](Error::source) is a core [`Rejection`] of kind
/// [`RejectionKind::RateLimited`] whose own source is the `RetryAfter` hint, exactly as
/// `palisade_rate_limit::RateLimited`, so breakers ignore it and `palisade_core::retry_after`
/// finds the hint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimited {
    rejection: Rejection,
}

impl RateLimited {
    pub(crate) fn new(retry_after: Duration) -> Self {
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
        write!(
            f,
            "globally rate limited: retry after {:?}",
            self.retry_after()
        )
    }
}

impl Error for RateLimited {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.rejection)
    }
}

static COST_EXCEEDS_BURST: Rejection = Rejection::new(RejectionKind::CostExceedsBurst);

/// The request costs more tokens than the global bucket holds: it can never be admitted, so
/// it is rejected at once, without a round trip.
///
/// A local rejection of kind [`RejectionKind::CostExceedsBurst`], with no retry hint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CostExceedsBurst {
    cost: u32,
    burst: u32,
}

impl CostExceedsBurst {
    pub(crate) fn new(cost: u32, burst: u32) -> Self {
        CostExceedsBurst { cost, burst }
    }

    /// The request's cost.
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
            "request cost {} exceeds the global burst of {}",
            self.cost, self.burst
        )
    }
}

impl Error for CostExceedsBurst {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&COST_EXCEEDS_BURST)
    }
}

/// Why a call to Redis failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// No answer within the call timeout (Redis slow, restarting, or the network lost).
    Timeout,
    /// No connection (refused, reset, closed) or an I/O error.
    Connection,
    /// Redis refused to run the script (a script error, `WRONGTYPE` on the bucket key, out of
    /// memory, a read-only replica, …).
    Script,
    /// Redis answered with something the script never returns.
    Reply,
}

impl StoreErrorKind {
    /// The snake-case name used in events and the metrics label `kind`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            StoreErrorKind::Timeout => "timeout",
            StoreErrorKind::Connection => "connection",
            StoreErrorKind::Script => "script",
            StoreErrorKind::Reply => "reply",
        }
    }
}

impl fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Redis could not decide and the limiter fails closed ([`FailureMode::Closed`]): the call is
/// rejected.
///
/// A local rejection of kind [`RejectionKind::RateLimited`] (the limiter refused the call, the
/// dependency behind it did nothing wrong, so a breaker above ignores it), with a retry hint of
/// the reconnection's first backoff.
///
/// [`FailureMode::Closed`]: crate::FailureMode::Closed
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreUnavailable {
    kind: StoreErrorKind,
    detail: String,
    rejection: Rejection,
}

impl StoreUnavailable {
    pub(crate) fn new(kind: StoreErrorKind, detail: String, retry_after: Duration) -> Self {
        StoreUnavailable {
            kind,
            detail,
            rejection: Rejection::new(RejectionKind::RateLimited).with_retry_after(retry_after),
        }
    }

    /// What went wrong with Redis.
    #[must_use]
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// The error Redis or the client reported.
    #[must_use]
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The core marker this rejection carries.
    #[must_use]
    pub fn rejection(&self) -> &Rejection {
        &self.rejection
    }
}

impl fmt::Display for StoreUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "global rate limit unavailable ({}: {}), failing closed",
            self.kind, self.detail
        )
    }
}

impl Error for StoreUnavailable {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.rejection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_local_and_carry_hints() {
        let limited = RateLimited::new(Duration::from_millis(7));
        assert!(palisade_core::is_local_rejection(&limited));
        assert_eq!(
            palisade_core::retry_after(&limited),
            Some(Duration::from_millis(7))
        );
        let closed = StoreUnavailable::new(
            StoreErrorKind::Timeout,
            "t".into(),
            Duration::from_millis(3),
        );
        assert_eq!(
            palisade_core::rejection(&closed).map(Rejection::kind),
            Some(RejectionKind::RateLimited)
        );
        assert_eq!(
            closed.to_string(),
            "global rate limit unavailable (timeout: t), failing closed"
        );
        let cost = CostExceedsBurst::new(5, 2);
        assert_eq!(
            palisade_core::rejection(&cost).map(Rejection::kind),
            Some(RejectionKind::CostExceedsBurst)
        );
        assert_eq!(std::mem::size_of::<CostExceedsBurst>(), 8);
    }
}
