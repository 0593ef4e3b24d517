//! Which results count as failures: the user's choice, shared by every layer.
//!
//! A [`Classify`] turns the result of one call into an [`Outcome`]. The circuit breaker counts
//! failures with it, retry decides what to retry, adaptive limits detect drops, outlier
//! ejection scores endpoints. The default, [`ErrorIsFailure`], treats every `Err` as a failure
//! and every `Ok` as a success. Any `Fn(Result<&Res, &Err>) -> Outcome` closure is a
//! classifier too, and [`Timed`] wraps a closure that also wants the call's duration.
//!
//! # Example
//!
//! ```
//! use palisade_core::classify::{Classify, ErrorIsFailure, Outcome, Timed};
//! use std::time::Duration;
//!
//! // The default: errors are failures.
//! let default = ErrorIsFailure;
//! assert_eq!(Classify::<u16, ()>::classify(&default, Ok(&200)), Outcome::Success);
//! assert_eq!(Classify::<u16, ()>::classify(&default, Err(&())), Outcome::Failure);
//!
//! // A closure: HTTP 5xx is a failure, 4xx is the caller's fault and does not count.
//! let http = |result: Result<&u16, &std::io::Error>| match result {
//!     Ok(status) if *status >= 500 => Outcome::Failure,
//!     Ok(status) if *status >= 400 => Outcome::Ignore,
//!     Ok(_) => Outcome::Success,
//!     Err(_) => Outcome::Failure,
//! };
//! assert_eq!(http.classify(Ok(&503)), Outcome::Failure);
//! assert_eq!(http.classify(Ok(&404)), Outcome::Ignore);
//!
//! // With the duration: anything slower than a second is a failure.
//! let slow_is_failure = Timed(|result: Result<&u16, &()>, elapsed: Option<Duration>| {
//!     match (result, elapsed) {
//!         (Err(_), _) => Outcome::Failure,
//!         (Ok(_), Some(d)) if d > Duration::from_secs(1) => Outcome::Failure,
//!         (Ok(_), _) => Outcome::Success,
//!     }
//! });
//! assert_eq!(slow_is_failure.classify_timed(Ok(&200), Duration::from_secs(2)), Outcome::Failure);
//! assert_eq!(slow_is_failure.classify(Ok(&200)), Outcome::Success);
//! ```

use std::time::Duration;

/// What one call's result means to a resilience layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call succeeded: it counts for the dependency's health.
    Success,
    /// The call failed: it counts against the dependency's health (and may be retried).
    Failure,
    /// The call does not count either way (a client error, a cancelled call).
    Ignore,
}

impl Outcome {
    /// `true` for [`Outcome::Failure`].
    #[inline]
    #[must_use]
    pub const fn is_failure(self) -> bool {
        matches!(self, Outcome::Failure)
    }

    /// `true` for [`Outcome::Success`].
    #[inline]
    #[must_use]
    pub const fn is_success(self) -> bool {
        matches!(self, Outcome::Success)
    }

    /// The name used in metrics labels and events: `"success"`, `"failure"` or `"ignore"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Ignore => "ignore",
        }
    }
}

/// Classifies the result of a call.
///
/// Implemented by [`ErrorIsFailure`] (the default), by every
/// `Fn(Result<&Res, &Err>) -> Outcome + Send + Sync` closure, and by [`Timed`].
///
/// Layers call [`classify_timed`](Classify::classify_timed) when they measured the call's
/// duration anyway (for slow-call detection or latency-based limits) and
/// [`classify`](Classify::classify) otherwise, so a classifier never forces a clock read.
pub trait Classify<Res, Err>: Send + Sync {
    /// The outcome of a call that returned `result`.
    fn classify(&self, result: Result<&Res, &Err>) -> Outcome;

    /// The outcome of a call that returned `result` after `elapsed`. By default the duration
    /// is not looked at.
    fn classify_timed(&self, result: Result<&Res, &Err>, elapsed: Duration) -> Outcome {
        let _ = elapsed;
        self.classify(result)
    }
}

/// The default classifier: `Ok` is a success, `Err` is a failure — except a *local rejection*
/// of a Palisade layer below (an open breaker, a full bulkhead, a rate limit…), which is
/// [`Outcome::Ignore`]: the dependency never saw the call, so it says nothing about its health.
///
/// Local rejections are recognised when the error type is one a tower stack uses:
/// [`BoxError`](crate::BoxError) (`Box<dyn Error + Send + Sync>`), `Box<dyn Error + Send>`,
/// `Box<dyn Error>`, or a bare [`Rejection`](crate::rejection::Rejection); the whole source
/// chain is searched (see [`rejection`](crate::rejection::rejection)). Other error types are
/// always failures. A classifier of your own can count local rejections however it likes.
///
/// ```
/// use palisade_core::classify::{Classify, ErrorIsFailure, Outcome};
/// use palisade_core::rejection::{Rejection, RejectionKind};
/// use palisade_core::BoxError;
///
/// let remote: BoxError = "connection reset".into();
/// let local: BoxError = Box::new(Rejection::new(RejectionKind::RateLimited));
/// assert_eq!(Classify::<(), BoxError>::classify(&ErrorIsFailure, Err(&remote)), Outcome::Failure);
/// assert_eq!(Classify::<(), BoxError>::classify(&ErrorIsFailure, Err(&local)), Outcome::Ignore);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorIsFailure;

impl<Res, Err: 'static> Classify<Res, Err> for ErrorIsFailure {
    #[inline]
    fn classify(&self, result: Result<&Res, &Err>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(err) if is_local_rejection_any(err) => Outcome::Ignore,
            Err(_) => Outcome::Failure,
        }
    }
}

/// `true` when `err`, of any `'static` type, is or wraps a local rejection. Only the error
/// types a tower stack uses can be looked into (see [`ErrorIsFailure`]); the type checks are
/// resolved at compile time, so for other types this is `false` at no cost.
#[inline]
#[must_use]
pub fn is_local_rejection_any<Err: 'static>(err: &Err) -> bool {
    use crate::rejection::is_local_rejection;
    use std::any::Any;
    use std::error::Error;
    let any = err as &dyn Any;
    if let Some(boxed) = any.downcast_ref::<crate::BoxError>() {
        return is_local_rejection(&**boxed);
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn Error + Send>>() {
        return is_local_rejection(&**boxed);
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn Error>>() {
        return is_local_rejection(&**boxed);
    }
    any.is::<crate::rejection::Rejection>()
}

impl<F, Res, Err> Classify<Res, Err> for F
where
    F: Fn(Result<&Res, &Err>) -> Outcome + Send + Sync,
{
    #[inline]
    fn classify(&self, result: Result<&Res, &Err>) -> Outcome {
        self(result)
    }
}

/// A classifier closure that also sees the call's duration, when the layer measured it.
///
/// The closure gets `Some(elapsed)` from [`Classify::classify_timed`] and `None` from
/// [`Classify::classify`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Timed<F>(pub F);

impl<F, Res, Err> Classify<Res, Err> for Timed<F>
where
    F: Fn(Result<&Res, &Err>, Option<Duration>) -> Outcome + Send + Sync,
{
    #[inline]
    fn classify(&self, result: Result<&Res, &Err>) -> Outcome {
        (self.0)(result, None)
    }

    #[inline]
    fn classify_timed(&self, result: Result<&Res, &Err>, elapsed: Duration) -> Outcome {
        (self.0)(result, Some(elapsed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Boom;

    #[test]
    fn default_counts_errors_as_failures_and_ok_as_success() {
        let c = ErrorIsFailure;
        assert_eq!(
            Classify::<(), Boom>::classify(&c, Ok(&())),
            Outcome::Success
        );
        assert_eq!(
            Classify::<(), Boom>::classify(&c, Err(&Boom)),
            Outcome::Failure
        );
        // The duration does not change the default's verdict.
        assert_eq!(
            Classify::<(), Boom>::classify_timed(&c, Ok(&()), Duration::from_secs(60)),
            Outcome::Success
        );
    }

    #[test]
    fn closures_classify_and_ignore_the_duration() {
        let only_even_ok = |r: Result<&u32, &Boom>| match r {
            Ok(n) if n % 2 == 0 => Outcome::Success,
            Ok(_) => Outcome::Ignore,
            Err(_) => Outcome::Failure,
        };
        assert_eq!(only_even_ok.classify(Ok(&2)), Outcome::Success);
        assert_eq!(only_even_ok.classify(Ok(&3)), Outcome::Ignore);
        assert_eq!(only_even_ok.classify(Err(&Boom)), Outcome::Failure);
        assert_eq!(
            only_even_ok.classify_timed(Ok(&2), Duration::from_secs(9)),
            Outcome::Success
        );
    }

    #[test]
    fn timed_sees_the_duration_only_when_measured() {
        let slow = Timed(
            |_: Result<&(), &Boom>, elapsed: Option<Duration>| match elapsed {
                Some(d) if d >= Duration::from_millis(100) => Outcome::Failure,
                Some(_) => Outcome::Success,
                None => Outcome::Ignore,
            },
        );
        assert_eq!(slow.classify(Ok(&())), Outcome::Ignore);
        assert_eq!(
            slow.classify_timed(Ok(&()), Duration::from_millis(99)),
            Outcome::Success
        );
        assert_eq!(
            slow.classify_timed(Ok(&()), Duration::from_millis(100)),
            Outcome::Failure
        );
    }

    #[test]
    fn outcome_helpers() {
        assert!(Outcome::Failure.is_failure());
        assert!(!Outcome::Ignore.is_failure());
        assert!(Outcome::Success.is_success());
        assert_eq!(Outcome::Ignore.as_str(), "ignore");
    }
}
