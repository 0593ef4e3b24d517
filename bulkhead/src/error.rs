//! The rejections of the bulkhead.
//!
//! The service returns them boxed in `tower::BoxError`, from the response future (never from
//! `poll_ready`); find them with `downcast_ref`, or, without naming this crate, with
//! [`palisade_core::rejection`], which finds the [`Rejection`] each carries as its
//! [`source`](Error::source). Both are zero-sized, so rejecting allocates nothing.

use palisade_core::rejection::{Rejection, RejectionKind};
use std::error::Error;
use std::fmt;

pub(crate) use palisade_core::BoxError;

/// The core marker of a full bulkhead: a `static`, so [`BulkheadFull`] stays zero-sized.
static FULL: Rejection = Rejection::new(RejectionKind::BulkheadFull);
/// The core marker of a wait that ran out: a `static`, so [`WaitTimeout`] stays zero-sized.
static TIMED_OUT: Rejection = Rejection::new(RejectionKind::WaitTimeout);

/// The bulkhead had no free slot: every permitted call is in flight and the bulkhead rejects
/// at once (the default), or its queue of waiting callers was at its bound.
///
/// A local rejection: its [`source`](Error::source) is a core [`Rejection`] of kind
/// [`RejectionKind::BulkheadFull`], so breakers and adaptive limits above ignore it by default
/// and a retry layer above returns it at once. Retrying at once is pointless: shed the load,
/// or fall back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkheadFull;

impl BulkheadFull {
    /// The core [`Rejection`] this error carries (kind [`RejectionKind::BulkheadFull`]).
    #[must_use]
    pub fn rejection(&self) -> &'static Rejection {
        &FULL
    }
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bulkhead full: too many concurrent calls")
    }
}

impl Error for BulkheadFull {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&FULL)
    }
}

/// A caller waited the bulkhead's whole `max_wait` without getting a slot.
///
/// A local rejection: its [`source`](Error::source) is a core [`Rejection`] of kind
/// [`RejectionKind::WaitTimeout`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WaitTimeout;

impl WaitTimeout {
    /// The core [`Rejection`] this error carries (kind [`RejectionKind::WaitTimeout`]).
    #[must_use]
    pub fn rejection(&self) -> &'static Rejection {
        &TIMED_OUT
    }
}

impl fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bulkhead full: no slot freed within the maximum wait")
    }
}

impl Error for WaitTimeout {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&TIMED_OUT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::classify::{Classify, ErrorIsFailure, Outcome};

    #[test]
    fn rejections_are_zero_sized_with_lowercase_messages() {
        assert_eq!(size_of::<BulkheadFull>(), 0);
        assert_eq!(size_of::<WaitTimeout>(), 0);
        assert!(BulkheadFull.to_string().starts_with("bulkhead full"));
        assert!(WaitTimeout.to_string().contains("maximum wait"));
    }

    /// Issue 9 §1: both carry the core marker, found through a box, with no retry hint, and the
    /// default classifier ignores them.
    #[test]
    fn rejections_carry_the_core_marker_and_are_ignored_by_default() {
        for (err, kind) in [
            (
                Box::new(BulkheadFull) as BoxError,
                RejectionKind::BulkheadFull,
            ),
            (
                Box::new(WaitTimeout) as BoxError,
                RejectionKind::WaitTimeout,
            ),
        ] {
            let found = palisade_core::rejection::rejection(&*err).expect("a local rejection");
            assert_eq!(found.kind(), kind);
            assert_eq!(found.layer(), "bulkhead");
            assert_eq!(found.retry_after(), None);
            assert_eq!(palisade_core::retry_after(&*err), None);
            let outcome = Classify::<(), BoxError>::classify(&ErrorIsFailure, Err(&err));
            assert_eq!(outcome, Outcome::Ignore);
        }
        assert_eq!(BulkheadFull.rejection().kind(), RejectionKind::BulkheadFull);
        assert_eq!(WaitTimeout.rejection().kind(), RejectionKind::WaitTimeout);
    }
}
