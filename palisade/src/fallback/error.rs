//! The error of a fallback that failed too.

use palisade_core::BoxError;
use std::error::Error;
use std::fmt;

/// The primary call failed and so did the fallback: the fallback's own error is the
/// [`source`](Error::source) (search it with `palisade_core::rejection` if the fallback calls
/// another Palisade stack). The primary's result was handed to the fallback function, which
/// consumed it.
#[derive(Debug)]
#[non_exhaustive]
pub struct FallbackFailed {
    source: BoxError,
}

impl FallbackFailed {
    pub(crate) fn new(source: BoxError) -> FallbackFailed {
        FallbackFailed { source }
    }

    /// The fallback's error.
    #[must_use]
    pub fn fallback_error(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.source
    }
}

impl fmt::Display for FallbackFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the call and its fallback failed: {}", self.source)
    }
}

impl Error for FallbackFailed {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}
