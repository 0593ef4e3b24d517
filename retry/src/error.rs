//! The errors this crate's layers return of their own, besides the inner service's.
//!
//! All are zero-sized, implement [`std::error::Error`] and reach callers boxed in a
//! [`BoxError`](palisade_core::BoxError); find them with `downcast_ref`. The two that are
//! *local rejections* ([`DeadlineExceeded`], [`Throttled`]) return a core
//! [`Rejection`] from [`source`](std::error::Error::source), so layers above recognise them
//! with [`palisade_core::rejection()`] and do not count them as failures of the dependency.
//! [`AttemptTimedOut`] is not one: an attempt that took too long is the dependency's failure.

use palisade_core::rejection::{Rejection, RejectionKind};
use std::fmt;

/// One attempt took longer than the policy's `attempt_timeout` (waiting for the inner
/// service's readiness included) and was dropped.
///
/// It counts as a failed attempt: it is retried like any other failure if the policy allows,
/// and returned if it was the last attempt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttemptTimedOut;

impl AttemptTimedOut {
    /// The error.
    #[must_use]
    pub const fn new() -> AttemptTimedOut {
        AttemptTimedOut
    }
}

impl fmt::Display for AttemptTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("retry attempt timed out")
    }
}

impl std::error::Error for AttemptTimedOut {}

static DEADLINE_EXCEEDED: Rejection = Rejection::new(RejectionKind::DeadlineExceeded);
static THROTTLED: Rejection = Rejection::new(RejectionKind::Throttled);

/// The overall deadline across all attempts passed while an attempt was in flight, or while
/// waiting for the inner service to be ready for the next one.
///
/// A local rejection of kind [`RejectionKind::DeadlineExceeded`] (its `source()`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadlineExceeded;

impl DeadlineExceeded {
    /// The error.
    #[must_use]
    pub const fn new() -> DeadlineExceeded {
        DeadlineExceeded
    }

    /// The local rejection it carries.
    #[must_use]
    pub fn rejection(&self) -> &'static Rejection {
        &DEADLINE_EXCEEDED
    }
}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("retry deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&DEADLINE_EXCEEDED)
    }
}

/// [`AdaptiveThrottle`](crate::AdaptiveThrottle) rejected the request locally: the backend
/// has recently been rejecting most of what it was sent, so this request was not sent.
///
/// A local rejection of kind [`RejectionKind::Throttled`] (its `source()`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Throttled;

impl Throttled {
    /// The error.
    #[must_use]
    pub const fn new() -> Throttled {
        Throttled
    }

    /// The local rejection it carries.
    #[must_use]
    pub fn rejection(&self) -> &'static Rejection {
        &THROTTLED
    }
}

impl fmt::Display for Throttled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request throttled locally: the backend is rejecting most requests")
    }
}

impl std::error::Error for Throttled {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&THROTTLED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::BoxError;

    #[test]
    fn display_is_lowercase_and_zero_sized() {
        assert_eq!(AttemptTimedOut.to_string(), "retry attempt timed out");
        assert_eq!(DeadlineExceeded.to_string(), "retry deadline exceeded");
        assert!(Throttled.to_string().starts_with("request throttled"));
        assert_eq!(std::mem::size_of::<AttemptTimedOut>(), 0);
        assert_eq!(std::mem::size_of::<DeadlineExceeded>(), 0);
        assert_eq!(std::mem::size_of::<Throttled>(), 0);
    }

    #[test]
    fn local_rejections_carry_their_kind() {
        let err: BoxError = DeadlineExceeded.into();
        let found = palisade_core::rejection(&*err).expect("a local rejection");
        assert_eq!(found.kind(), RejectionKind::DeadlineExceeded);
        assert_eq!(found.retry_after(), None);
        let err: BoxError = Throttled.into();
        assert_eq!(
            palisade_core::rejection(&*err).map(Rejection::kind),
            Some(RejectionKind::Throttled)
        );
        let err: BoxError = AttemptTimedOut.into();
        assert!(!palisade_core::is_local_rejection(&*err));
    }
}
