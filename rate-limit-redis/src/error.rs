//! The rejections of this crate. Services return them boxed in `tower::BoxError`; find them
//! with `downcast_ref`, or generically with `palisade_core::rejection`.

use palisade_core::rejection::{Rejection, RejectionKind};
use std::error::Error;
use std::fmt;
use std::time::Duration;

/// The refusals are the local limiter's own types, so a caller downcasts one `RateLimited`
/// (and one `CostExceedsBurst`) whichever limiter, local or global, refused.
pub use palisade_rate_limit::{CostExceedsBurst, RateLimited, TooManyKeys};

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

    #[test]
    fn the_global_limiter_refuses_with_the_local_limiters_types() {
        let boxed: palisade_core::BoxError = Box::new(RateLimited::new(Duration::from_secs(1)));
        assert!(boxed.is::<palisade_rate_limit::RateLimited>());
        let boxed: palisade_core::BoxError = Box::new(CostExceedsBurst::new(5, 2));
        assert!(boxed.is::<palisade_rate_limit::CostExceedsBurst>());
    }
}
