//! The rejection a breaker answers with instead of calling the inner service.

use crate::state::State;
use palisade_core::error::RetryAfter;
use std::error::Error;
use std::fmt;
use std::time::Duration;

/// The breaker rejected a call: it is open, forced open, or half-open with every probe taken.
///
/// Services return it boxed in [`tower::BoxError`]; find it with
/// `error.downcast_ref::<CircuitOpen>()`. When the breaker knows when calls will be admitted
/// again (an `Open` breaker knows when its wait ends) the hint is both
/// [`retry_after`](CircuitOpen::retry_after) and the error's
/// [`source`](Error::source), a [`RetryAfter`], so
/// [`palisade_core::retry_after`] finds it without knowing this type.
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
pub struct CircuitOpen {
    state: State,
    retry_after: Option<RetryAfter>,
}

impl CircuitOpen {
    pub(crate) const fn new(state: State, retry_after: Option<Duration>) -> CircuitOpen {
        CircuitOpen {
            state,
            retry_after: match retry_after {
                Some(after) => Some(RetryAfter::new(after)),
                None => None,
            },
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
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after.map(RetryAfter::duration)
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
        self.retry_after
            .as_ref()
            .map(|hint| hint as &(dyn Error + 'static))
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
        let half = CircuitOpen::new(State::HalfOpen, None);
        assert!(half.source().is_none());
        assert_eq!(half.retry_after(), None);
        assert!(half.to_string().starts_with("circuit breaker is half-open"));
        assert!(std::mem::size_of::<CircuitOpen>() <= 32);
    }
}
