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
use std::num::NonZeroU64;
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
///
/// Kept as whole nanoseconds, saturating at `u64::MAX - 1` (about 584 years), one word with a
/// niche: an `Option<RetryAfter>` is 8 bytes and a rejection that carries one is written and
/// copied in whole words (a `Duration`'s 8 + 4 bytes, copied as one 16-byte load right after
/// being stored, stalled on store forwarding).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RetryAfter(NonZeroU64);

impl RetryAfter {
    /// A hint to wait `after` before trying again (at most `u64::MAX - 1` nanoseconds, about
    /// 584 years; a longer one saturates).
    #[must_use]
    pub const fn new(after: Duration) -> Self {
        let nanos = after.as_nanos();
        let nanos = if nanos >= u64::MAX as u128 {
            u64::MAX - 1
        } else {
            nanos as u64
        };
        // Stored plus one, so that zero is the niche.
        match NonZeroU64::new(nanos + 1) {
            Some(stored) => RetryAfter(stored),
            None => unreachable!(),
        }
    }

    /// How long to wait.
    #[must_use]
    pub const fn duration(self) -> Duration {
        Duration::from_nanos(self.0.get() - 1)
    }
}

impl fmt::Debug for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RetryAfter").field(&self.duration()).finish()
    }
}

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "retry after {:?}", self.duration())
    }
}

impl Error for RetryAfter {}

/// The retry-after hint anywhere in `error`'s source chain (the error itself included).
#[must_use]
pub fn retry_after(error: &(dyn Error + 'static)) -> Option<Duration> {
    let mut current = Some(error);
    while let Some(err) = current {
        if let Some(hint) = err.downcast_ref::<RetryAfter>() {
            return Some(hint.duration());
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

    #[test]
    fn a_retry_after_keeps_its_duration_in_one_word() {
        for after in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_millis(1_500),
            Duration::from_secs(3_600),
            Duration::from_nanos(u64::MAX - 1),
        ] {
            assert_eq!(RetryAfter::new(after).duration(), after);
        }
        // Longer than about 584 years saturates.
        let longest = Duration::from_nanos(u64::MAX - 1);
        assert_eq!(RetryAfter::new(Duration::MAX).duration(), longest);
        assert_eq!(
            RetryAfter::new(Duration::from_nanos(u64::MAX)).duration(),
            longest
        );
        assert!(RetryAfter::new(Duration::from_secs(1)) < RetryAfter::new(Duration::from_secs(2)));
        assert_eq!(
            format!("{:?}", RetryAfter::new(Duration::from_millis(5))),
            "RetryAfter(5ms)"
        );
        assert_eq!(std::mem::size_of::<Option<RetryAfter>>(), 8);
    }
}
