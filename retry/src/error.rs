//! The errors this crate's layers return of their own, besides the inner service's.
//!
//! All are zero-sized or small, implement [`std::error::Error`] and reach callers boxed in a
//! [`tower::BoxError`]; find them with `downcast_ref`.

use std::fmt;

/// One attempt took longer than the policy's `attempt_timeout` and was dropped.
///
/// It counts as a failed attempt: it is retried like any other failure if the policy allows,
/// and returned if it was the last attempt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttemptTimedOut;

impl fmt::Display for AttemptTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("retry attempt timed out")
    }
}

impl std::error::Error for AttemptTimedOut {}

/// The overall deadline across all attempts passed while an attempt was in flight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeadlineExceeded;

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("retry deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// [`AdaptiveThrottle`](crate::AdaptiveThrottle) rejected the request locally: the backend
/// has recently been rejecting most of what it was sent, so this request was not sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Throttled;

impl fmt::Display for Throttled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request throttled locally: the backend is rejecting most requests")
    }
}

impl std::error::Error for Throttled {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_lowercase_and_zero_sized() {
        assert_eq!(AttemptTimedOut.to_string(), "retry attempt timed out");
        assert_eq!(DeadlineExceeded.to_string(), "retry deadline exceeded");
        assert!(Throttled.to_string().starts_with("request throttled"));
        assert_eq!(std::mem::size_of::<AttemptTimedOut>(), 0);
    }
}
