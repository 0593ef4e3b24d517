//! Remote hints read from *responses*: [`RemoteHint`], set with
//! [`RetryPolicyBuilder::remote_hint`](crate::RetryPolicyBuilder::remote_hint).
//!
//! A server that is overloaded often answers instead of failing: an HTTP `429` or `503` with
//! `Retry-After: 1`, a gRPC status with `grpc-retry-pushback-ms`. The client's service returns
//! that as `Ok(response)`, so the hint is not in any error's source chain, where the retry
//! layer looks for one ([`palisade_core::retry_after`]). A [`RemoteHint`] reads it from the
//! response.
//!
//! It is asked only about an `Ok` response that the classifier called a retryable failure,
//! and its hint is a *remote* hint under exactly the rules of one found in an error: the retry
//! waits the longer of its backoff and the hint; a hint above
//! [`max_retry_after`](crate::RetryPolicyBuilder::max_retry_after) (default: the backoff cap)
//! ends retrying at once
//! ([`GiveUpReason::RetryAfterTooLong`](crate::GiveUpReason::RetryAfterTooLong)), and so does
//! one that would reach past the deadline
//! ([`GiveUpReason::Deadline`](crate::GiveUpReason::Deadline)). When retrying ends, the caller
//! gets that last response, as `Ok`.
//!
//! The default, [`NoRemoteHint`], reads nothing and compiles to nothing: a policy without a
//! hook pays no call, clock read or allocation for it.

use std::time::Duration;

/// Reads a remote `retry_after` hint from a response that the classifier called a retryable
/// failure. Implemented by [`NoRemoteHint`] (the default: no hint) and by every
/// `Fn(&Res) -> Option<Duration> + Send + Sync` (a closure, or a function such as
/// `palisade_http::retry_after_of`).
pub trait RemoteHint<Res>: Send + Sync {
    /// The hint `response` carries, if any.
    fn remote_hint(&self, response: &Res) -> Option<Duration>;
}

/// No hint is read from responses (the default of every [`RetryPolicy`](crate::RetryPolicy)):
/// only errors' source chains carry hints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoRemoteHint;

impl<Res> RemoteHint<Res> for NoRemoteHint {
    #[inline(always)]
    fn remote_hint(&self, _response: &Res) -> Option<Duration> {
        None
    }
}

impl<Res, F> RemoteHint<Res> for F
where
    F: Fn(&Res) -> Option<Duration> + Send + Sync,
{
    #[inline]
    fn remote_hint(&self, response: &Res) -> Option<Duration> {
        self(response)
    }
}
