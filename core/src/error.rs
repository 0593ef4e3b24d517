//! Errors every layer shares: bad configuration, and the "retry after" hint a rejection carries.
//!
//! Each layer's rejection (`CircuitOpen`, `RateLimited`, …) is its own small type, and services
//! return them boxed in `tower::BoxError`. A rejection that knows when trying again makes
//! sense exposes that as its [`source`](std::error::Error::source): a [`RetryAfter`]. So code
//! that knows none of the layers (a retry layer, an HTTP handler mapping errors to `503` with a
//! `Retry-After` header) finds the hint with [`retry_after`]:
//!
//! ```
//! use palisade_core::error::{retry_after, RetryAfter};
//! use std::time::Duration;
//!
//! #[derive(Debug)]
//! struct Overloaded { hint: RetryAfter }
//! impl std::fmt::Display for Overloaded {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//!         f.write_str("backend overloaded")
//!     }
//! }
//! impl std::error::Error for Overloaded {
//!     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> { Some(&self.hint) }
//! }
//!
//! let err: Box<dyn std::error::Error + Send + Sync> =
//!     Box::new(Overloaded { hint: RetryAfter::new(Duration::from_millis(200)) });
//! assert_eq!(retry_after(&*err), Some(Duration::from_millis(200)));
//! ```

use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::time::Duration;

/// A configuration value that `build()` refused, naming the field and why.
///
/// Palisade never panics on user configuration: builders validate and return this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{field}`: {problem}")]
pub struct ConfigError {
    field: &'static str,
    problem: Cow<'static, str>,
}

impl ConfigError {
    /// A refusal of `field` because of `problem` (lowercase, no trailing period).
    #[must_use]
    pub fn new(field: &'static str, problem: impl Into<Cow<'static, str>>) -> Self {
        ConfigError {
            field,
            problem: problem.into(),
        }
    }

    /// The name of the refused setting, as the builder method is named.
    #[must_use]
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// Why it was refused.
    #[must_use]
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

/// Checks that a percentage lies in `0.0..=100.0` (and is not NaN). For the layers' builders;
/// hidden from the docs.
///
/// # Errors
///
/// [`ConfigError`] naming `field` when it does not.
#[doc(hidden)]
pub fn check_percent(field: &'static str, value: f64) -> Result<f64, ConfigError> {
    if (0.0..=100.0).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::new(
            field,
            format!("must be a percentage between 0 and 100, got {value}"),
        ))
    }
}

/// Checks that a duration is longer than zero. For the layers' builders; hidden from the docs.
///
/// # Errors
///
/// [`ConfigError`] naming `field` when it is zero.
#[doc(hidden)]
pub fn check_nonzero_duration(
    field: &'static str,
    value: Duration,
) -> Result<Duration, ConfigError> {
    if value.is_zero() {
        Err(ConfigError::new(field, "must be longer than zero"))
    } else {
        Ok(value)
    }
}

/// Checks that `min <= max` for a pair of bounds. For the layers' builders; hidden from the
/// docs.
///
/// # Errors
///
/// [`ConfigError`] naming `field` when `min > max`.
#[doc(hidden)]
pub fn check_ordered<T: PartialOrd + fmt::Debug>(
    field: &'static str,
    min: T,
    max: T,
) -> Result<(), ConfigError> {
    if min <= max {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("minimum {min:?} is above maximum {max:?}"),
        ))
    }
}

/// "Try again after this long": the hint a rejection carries as its error source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RetryAfter(Duration);

impl RetryAfter {
    /// A hint to wait `after` before trying again.
    #[must_use]
    pub const fn new(after: Duration) -> Self {
        RetryAfter(after)
    }

    /// How long to wait.
    #[must_use]
    pub const fn duration(self) -> Duration {
        self.0
    }
}

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "retry after {:?}", self.0)
    }
}

impl Error for RetryAfter {}

/// The retry-after hint anywhere in `error`'s source chain (the error itself included).
#[must_use]
pub fn retry_after(error: &(dyn Error + 'static)) -> Option<Duration> {
    let mut current = Some(error);
    while let Some(err) = current {
        if let Some(hint) = err.downcast_ref::<RetryAfter>() {
            return Some(hint.0);
        }
        current = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(Box<dyn Error + Send + Sync>);
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
    fn config_error_names_the_field() {
        let err = ConfigError::new("failure_rate_threshold", "must be at most 100");
        assert_eq!(err.field(), "failure_rate_threshold");
        assert_eq!(
            err.to_string(),
            "invalid `failure_rate_threshold`: must be at most 100"
        );
    }

    #[test]
    fn validators() {
        assert_eq!(check_percent("p", 0.0), Ok(0.0));
        assert_eq!(check_percent("p", 100.0), Ok(100.0));
        assert!(check_percent("p", 100.01).is_err());
        assert!(check_percent("p", -1.0).is_err());
        assert_eq!(check_percent("p", f64::NAN).unwrap_err().field(), "p");
        assert!(check_nonzero_duration("d", Duration::ZERO).is_err());
        assert!(check_nonzero_duration("d", Duration::from_nanos(1)).is_ok());
        assert!(check_ordered("limit", 1, 2).is_ok());
        assert!(check_ordered("limit", 2, 2).is_ok());
        assert_eq!(
            check_ordered("limit", 3, 2).unwrap_err().to_string(),
            "invalid `limit`: minimum 3 is above maximum 2"
        );
    }

    #[test]
    fn retry_after_is_found_through_the_source_chain() {
        let hint = RetryAfter::new(Duration::from_secs(3));
        assert_eq!(retry_after(&hint), Some(Duration::from_secs(3)));
        let wrapped = Wrapper(Box::new(Wrapper(Box::new(hint))));
        assert_eq!(retry_after(&wrapped), Some(Duration::from_secs(3)));
        let none = Wrapper(Box::new(std::io::Error::other("x")));
        assert_eq!(retry_after(&none), None);
        assert_eq!(hint.to_string(), "retry after 3s");
    }
}
