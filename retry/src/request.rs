//! Which requests may be sent again, and how to copy them: [`RetryRequest`].
//!
//! A retry needs the request a second time, but the first attempt consumes it. So a copy is
//! made before an attempt, and only when another attempt may follow (never before the last
//! one). Whether a request may be retried at all (is it idempotent?) is decided in the same
//! place: a policy that returns `None` makes the request's first attempt its only one.

/// Copies a request for a retry, or refuses to (the request is not retryable).
pub trait RetryRequest<Req>: Send + Sync {
    /// A copy of `request` for another attempt, or `None` if it must not be sent twice.
    fn clone_request(&self, request: &Req) -> Option<Req>;
}

/// Every request is retryable and copied with `Clone` (the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct CloneAll;

impl<Req: Clone> RetryRequest<Req> for CloneAll {
    #[inline]
    fn clone_request(&self, request: &Req) -> Option<Req> {
        Some(request.clone())
    }
}

/// Requests the predicate accepts (idempotent ones, say) are retryable, copied with `Clone`.
#[derive(Clone, Copy, Debug)]
pub struct CloneIf<F>(pub F);

impl<Req, F> RetryRequest<Req> for CloneIf<F>
where
    Req: Clone,
    F: Fn(&Req) -> bool + Send + Sync,
{
    #[inline]
    fn clone_request(&self, request: &Req) -> Option<Req> {
        (self.0)(request).then(|| request.clone())
    }
}

/// The user's own copy function, for request types that are not `Clone` (a body that must be
/// buffered first) or that need a fresh id per attempt. `None` means: do not retry.
#[derive(Clone, Copy, Debug)]
pub struct CloneWith<F>(pub F);

impl<Req, F> RetryRequest<Req> for CloneWith<F>
where
    F: Fn(&Req) -> Option<Req> + Send + Sync,
{
    #[inline]
    fn clone_request(&self, request: &Req) -> Option<Req> {
        (self.0)(request)
    }
}
