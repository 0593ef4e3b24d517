//! Local rejections: the shared vocabulary of "a Palisade layer said no on its own".
//!
//! A breaker that is open, a full bulkhead, an empty token bucket, an exhausted retry budget:
//! each answers a call without the dependency ever seeing it. Such an answer is a *local
//! rejection*, and a stack must treat it differently from a failure of the dependency:
//!
//! - a breaker, an adaptive limit or outlier detection above it must **not** count it as a
//!   failure (the dependency did nothing wrong), so the default classifier
//!   ([`ErrorIsFailure`](crate::classify::ErrorIsFailure)) classifies it as
//!   [`Outcome::Ignore`](crate::classify::Outcome::Ignore);
//! - a retry layer above it returns it at once instead of sleeping on its hint, because a local
//!   rejection exists to fail fast.
//!
//! Every rejection type of every Palisade layer carries a [`Rejection`] and returns it as its
//! [`source`](Error::source), so code that knows none of the layers finds it with [`rejection`],
//! anywhere in an error's source chain (through tower's `Buffer` error wrapper too, which keeps
//! the inner error as its source). The [`Rejection`]'s own source is the [`RetryAfter`] hint,
//! when the layer knows one, so [`retry_after`](crate::error::retry_after) keeps working.
//!
//! # Example
//!
//! ```
//! use palisade_core::rejection::{self, Rejection, RejectionKind};
//! use std::time::Duration;
//!
//! // A layer's rejection type: small, with its `Rejection` as its source.
//! #[derive(Debug)]
//! struct QueueFull { rejection: Rejection }
//! impl std::fmt::Display for QueueFull {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//!         f.write_str("queue full")
//!     }
//! }
//! impl std::error::Error for QueueFull {
//!     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> { Some(&self.rejection) }
//! }
//!
//! let rejection = Rejection::new(RejectionKind::BulkheadFull)
//!     .with_retry_after(Duration::from_millis(50));
//! let err: tower_like::BoxError = Box::new(QueueFull { rejection });
//!
//! let found = rejection::rejection(&*err).expect("a local rejection");
//! assert_eq!(found.kind(), RejectionKind::BulkheadFull);
//! assert_eq!(found.retry_after(), Some(Duration::from_millis(50)));
//! assert_eq!(palisade_core::retry_after(&*err), Some(Duration::from_millis(50)));
//!
//! let remote: tower_like::BoxError = "connection reset".into();
//! assert!(!rejection::is_local_rejection(&*remote));
//! # mod tower_like { pub type BoxError = Box<dyn std::error::Error + Send + Sync>; }
//! ```

use crate::error::RetryAfter;
use std::error::Error;
use std::fmt;
use std::time::Duration;

/// Which local rejection it was.
///
/// The names are those of the rejection types; [`as_str`](RejectionKind::as_str) gives the
/// snake-case label the `metrics` feature records as `reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// A circuit breaker is open, forced open, or half-open with every probe taken.
    CircuitOpen,
    /// A bulkhead (fixed or adaptive) has no free slot.
    BulkheadFull,
    /// A waiting bulkhead did not free a slot within its maximum wait.
    WaitTimeout,
    /// A rate limiter has no token now.
    RateLimited,
    /// A request's cost exceeds the rate limiter's burst: it can never be admitted.
    CostExceedsBurst,
    /// A keyed rate limiter tracks its maximum number of keys and cannot take a new one.
    TooManyKeys,
    /// A retry throttle (gRPC style) or adaptive throttle refused the attempt locally.
    Throttled,
    /// A retry budget has no retry left.
    BudgetExhausted,
    /// The caller's deadline passed before an answer.
    DeadlineExceeded,
    /// A load balancer has no endpoint that may take the call.
    NoHealthyEndpoints,
}

impl RejectionKind {
    /// The snake-case name used in metrics labels and events, e.g. `"circuit_open"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectionKind::CircuitOpen => "circuit_open",
            RejectionKind::BulkheadFull => "bulkhead_full",
            RejectionKind::WaitTimeout => "wait_timeout",
            RejectionKind::RateLimited => "rate_limited",
            RejectionKind::CostExceedsBurst => "cost_exceeds_burst",
            RejectionKind::TooManyKeys => "too_many_keys",
            RejectionKind::Throttled => "throttled",
            RejectionKind::BudgetExhausted => "budget_exhausted",
            RejectionKind::DeadlineExceeded => "deadline_exceeded",
            RejectionKind::NoHealthyEndpoints => "no_healthy_endpoints",
        }
    }

    /// The layer that makes this rejection: `"circuit_breaker"`, `"bulkhead"`, `"rate_limit"`,
    /// `"retry"` or `"load_balancer"` (the `layer` of the metric names).
    #[must_use]
    pub const fn layer(self) -> &'static str {
        match self {
            RejectionKind::CircuitOpen => "circuit_breaker",
            RejectionKind::BulkheadFull | RejectionKind::WaitTimeout => "bulkhead",
            RejectionKind::RateLimited
            | RejectionKind::CostExceedsBurst
            | RejectionKind::TooManyKeys => "rate_limit",
            RejectionKind::Throttled
            | RejectionKind::BudgetExhausted
            | RejectionKind::DeadlineExceeded => "retry",
            RejectionKind::NoHealthyEndpoints => "load_balancer",
        }
    }
}

impl fmt::Display for RejectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The marker every Palisade rejection carries: which rejection, and when trying again may
/// make sense. See the [module docs](self).
///
/// A `Rejection` without a hint is a `const`, so a zero-sized rejection type can return a
/// `static` one from `source()` and stay zero-sized (no allocation when boxed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rejection {
    kind: RejectionKind,
    retry_after: Option<RetryAfter>,
}

impl Rejection {
    /// A rejection of `kind` with no retry hint.
    #[must_use]
    pub const fn new(kind: RejectionKind) -> Rejection {
        Rejection {
            kind,
            retry_after: None,
        }
    }

    /// The same rejection with a hint: trying again after `after` may be admitted.
    #[must_use]
    pub const fn with_retry_after(mut self, after: Duration) -> Rejection {
        self.retry_after = Some(RetryAfter::new(after));
        self
    }

    /// The same rejection with an optional hint.
    #[must_use]
    pub const fn with_retry_after_opt(mut self, after: Option<Duration>) -> Rejection {
        self.retry_after = match after {
            Some(after) => Some(RetryAfter::new(after)),
            None => None,
        };
        self
    }

    /// Which rejection it is.
    #[inline]
    #[must_use]
    pub const fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The layer that rejected (see [`RejectionKind::layer`]).
    #[inline]
    #[must_use]
    pub const fn layer(&self) -> &'static str {
        self.kind.layer()
    }

    /// How long until trying again may be admitted, when the layer knows.
    #[inline]
    #[must_use]
    pub const fn retry_after(&self) -> Option<Duration> {
        match self.retry_after {
            Some(hint) => Some(hint.duration()),
            None => None,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rejected locally by the {} layer ({})",
            self.layer(),
            self.kind
        )
    }
}

impl Error for Rejection {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.retry_after
            .as_ref()
            .map(|hint| hint as &(dyn Error + 'static))
    }
}

/// The local rejection anywhere in `error`'s source chain (the error itself included), or
/// `None` when the error came from the dependency.
///
/// Walks `source()` links, so it finds a rejection through any wrapper that keeps its cause
/// as its source (tower's `buffer::error::ServiceError`, `anyhow`, a user's own error enum).
#[must_use]
pub fn rejection<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a Rejection> {
    let mut current = Some(error);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<Rejection>() {
            return Some(found);
        }
        current = err.source();
    }
    None
}

/// `true` when `error` is, or wraps, a local rejection of a Palisade layer.
#[inline]
#[must_use]
pub fn is_local_rejection(error: &(dyn Error + 'static)) -> bool {
    rejection(error).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BoxError;

    #[derive(Debug)]
    struct Zst;
    static ZST_REJECTION: Rejection = Rejection::new(RejectionKind::BulkheadFull);
    impl fmt::Display for Zst {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("full")
        }
    }
    impl Error for Zst {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&ZST_REJECTION)
        }
    }

    #[derive(Debug)]
    struct Wrapper(BoxError);
    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }
    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn a_zero_sized_rejection_is_found_and_stays_zero_sized() {
        assert_eq!(std::mem::size_of::<Zst>(), 0);
        let err: BoxError = Box::new(Wrapper(Box::new(Zst)));
        let found = rejection(&*err).unwrap();
        assert_eq!(found.kind(), RejectionKind::BulkheadFull);
        assert_eq!(found.layer(), "bulkhead");
        assert_eq!(found.retry_after(), None);
        assert!(is_local_rejection(&*err));
    }

    #[test]
    fn the_hint_is_the_rejections_source() {
        let r = Rejection::new(RejectionKind::RateLimited).with_retry_after(Duration::from_secs(2));
        assert_eq!(crate::retry_after(&r), Some(Duration::from_secs(2)));
        assert_eq!(
            r.to_string(),
            "rejected locally by the rate_limit layer (rate_limited)"
        );
        let none = Rejection::new(RejectionKind::CircuitOpen).with_retry_after_opt(None);
        assert!(none.source().is_none());
    }

    /// Two words: the hint's (with its niche) and the kind's. A hint as a `Duration` made it
    /// three, copied in wider loads than it was stored in.
    #[test]
    fn a_rejection_with_its_hint_is_two_words() {
        assert_eq!(std::mem::size_of::<Rejection>(), 16);
        assert_eq!(std::mem::size_of::<Result<(), Rejection>>(), 16);
    }

    #[test]
    fn remote_errors_are_not_local_rejections() {
        let err: BoxError = Box::new(Wrapper("boom".into()));
        assert!(rejection(&*err).is_none());
        let hint: BoxError = Box::new(RetryAfter::new(Duration::from_secs(1)));
        assert!(!is_local_rejection(&*hint));
    }

    #[test]
    fn every_kind_names_a_layer() {
        for kind in [
            RejectionKind::CircuitOpen,
            RejectionKind::BulkheadFull,
            RejectionKind::WaitTimeout,
            RejectionKind::RateLimited,
            RejectionKind::CostExceedsBurst,
            RejectionKind::TooManyKeys,
            RejectionKind::Throttled,
            RejectionKind::BudgetExhausted,
            RejectionKind::DeadlineExceeded,
            RejectionKind::NoHealthyEndpoints,
        ] {
            assert!(!kind.layer().is_empty());
            assert_eq!(kind.to_string(), kind.as_str());
        }
    }
}
