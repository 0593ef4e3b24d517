//! The rejections of the bulkhead.
//!
//! The service returns them boxed in `tower::BoxError`; find them with `downcast_ref`. Both are
//! zero-sized, so rejecting allocates nothing.

use std::error::Error;
use std::fmt;

/// tower's `BoxError`: what the service returns (tower-service does not export it).
pub(crate) type BoxError = Box<dyn Error + Send + Sync>;

/// The bulkhead had no free slot: every permitted call is in flight and the bulkhead rejects
/// at once (the default), or its queue of waiting callers was at its bound.
///
/// Retrying at once is pointless: shed the load, or fall back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BulkheadFull;

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bulkhead full: too many concurrent calls")
    }
}

impl Error for BulkheadFull {}

/// A caller waited the bulkhead's whole `max_wait` without getting a slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaitTimeout;

impl fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bulkhead full: no slot freed within the maximum wait")
    }
}

impl Error for WaitTimeout {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_zero_sized_with_lowercase_messages() {
        assert_eq!(size_of::<BulkheadFull>(), 0);
        assert_eq!(size_of::<WaitTimeout>(), 0);
        assert!(BulkheadFull.to_string().starts_with("bulkhead full"));
        assert!(WaitTimeout.to_string().contains("maximum wait"));
    }
}
