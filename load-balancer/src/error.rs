//! The balancer's rejection.

use palisade_core::rejection::{Rejection, RejectionKind};
use std::error::Error;
use std::fmt;

static NO_HEALTHY_ENDPOINTS: Rejection = Rejection::new(RejectionKind::NoHealthyEndpoints);

/// The balancer had no endpoint that could take the call: the set is empty, or every endpoint
/// it tried failed its readiness check. A *local rejection*
/// ([`RejectionKind::NoHealthyEndpoints`] is its [`source`](Error::source)), returned from the
/// response future, never from `poll_ready`, so the balancer keeps serving once endpoints are
/// back. Zero-sized: boxing it allocates nothing.
///
/// Find it in a `BoxError` with `err.downcast_ref::<NoHealthyEndpoints>()`, or, knowing no
/// layer, with [`palisade_core::rejection()`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NoHealthyEndpoints;

impl fmt::Display for NoHealthyEndpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no healthy endpoint to send the call to")
    }
}

impl Error for NoHealthyEndpoints {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&NO_HEALTHY_ENDPOINTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::BoxError;

    #[test]
    fn is_a_zero_sized_local_rejection() {
        assert_eq!(std::mem::size_of::<NoHealthyEndpoints>(), 0);
        let err: BoxError = Box::new(NoHealthyEndpoints);
        let found = palisade_core::rejection(&*err).expect("a local rejection");
        assert_eq!(found.kind(), RejectionKind::NoHealthyEndpoints);
        assert_eq!(found.layer(), "load_balancer");
        assert!(err.downcast_ref::<NoHealthyEndpoints>().is_some());
        assert_eq!(err.to_string(), "no healthy endpoint to send the call to");
    }
}
