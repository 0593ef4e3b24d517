//! The rejection a breaker answers with instead of calling the inner service.

use crate::state::State;
use palisade_core::rejection::{Rejection, RejectionKind};
use std::error::Error;
use std::fmt;
use std::time::Duration;

/// The breaker rejected a call: it is open, forced open, or half-open with every probe taken.
///
/// Services return it boxed in [`tower::BoxError`]; find it with
/// `error.downcast_ref::<CircuitOpen>()`. When the breaker knows when calls will be admitted
/// again (an `Open` breaker knows when its wait ends) the hint is
/// [`retry_after`](CircuitOpen::retry_after).
///
/// Its [`source`](Error::source) is a core [`Rejection`] of kind
/// [`RejectionKind::CircuitOpen`] (whose own source is the
/// [`RetryAfter`](palisade_core::error::RetryAfter) hint), so layers and classifiers that know
/// nothing of this crate recognise it as a *local rejection*
/// ([`palisade_core::rejection::rejection`]) and find the hint
/// ([`palisade_core::retry_after`]): a breaker stacked above another breaker ignores it by
/// default instead of counting it as a failure of the dependency.
///
/// ```
/// use palisade_circuit_breaker::{CircuitBreaker, CircuitOpen, State};
///
/// let breaker = CircuitBreaker::new();
/// breaker.force_open();
/// let open: CircuitOpen = breaker.try_acquire().unwrap_err();
/// assert_eq!(open.state(), State::ForcedOpen);
/// assert_eq!(open.to_string(), "circuit breaker is forced open");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CircuitOpen {
    state: State,
    rejection: Rejection,
}

impl CircuitOpen {
    pub(crate) const fn new(state: State, retry_after: Option<Duration>) -> CircuitOpen {
        CircuitOpen {
            state,
            rejection: Rejection::new(RejectionKind::CircuitOpen).with_retry_after_opt(retry_after),
        }
    }

    /// The state that rejected the call: `Open`, `HalfOpen` or `ForcedOpen`.
    #[must_use]
    pub const fn state(&self) -> State {
        self.state
    }

    /// How long until the breaker admits calls again, when it knows (`Open` does; `HalfOpen`
    /// waits for its probes and `ForcedOpen` for a person, so they do not).
    #[must_use]
    pub const fn retry_after(&self) -> Option<Duration> {
        self.rejection.retry_after()
    }

    /// The core [`Rejection`] this error carries (also its [`source`](Error::source)).
    #[must_use]
    pub const fn rejection(&self) -> &Rejection {
        &self.rejection
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.state {
            State::HalfOpen => "circuit breaker is half-open and all probe calls are taken",
            State::ForcedOpen => "circuit breaker is forced open",
            _ => "circuit breaker is open",
        })
    }
}

impl Error for CircuitOpen {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.rejection)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_hint_is_found_through_the_source_chain() {
        let open = CircuitOpen::new(State::Open, Some(Duration::from_secs(3)));
        assert_eq!(open.to_string(), "circuit breaker is open");
        let boxed: tower::BoxError = Box::new(open);
        assert_eq!(
            palisade_core::retry_after(&*boxed),
            Some(Duration::from_secs(3))
        );
        assert_eq!(boxed.downcast_ref::<CircuitOpen>(), Some(&open));
        let found = palisade_core::rejection::rejection(&*boxed).expect("a local rejection");
        assert_eq!(found.kind(), RejectionKind::CircuitOpen);
        assert_eq!(found.retry_after(), Some(Duration::from_secs(3)));
        let half = CircuitOpen::new(State::HalfOpen, None);
        let source = half.source().expect("the rejection is the source");
        assert!(source.downcast_ref::<Rejection>().is_some());
        assert!(palisade_core::rejection::is_local_rejection(&half));
        assert_eq!(half.retry_after(), None);
        assert!(half.to_string().starts_with("circuit breaker is half-open"));
        assert!(std::mem::size_of::<CircuitOpen>() <= 32);
    }
}
