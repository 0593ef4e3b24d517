//! Palisade: resilience layers for [tower](https://docs.rs/tower).
//!
//! Stack them around your own clients with `tower::ServiceBuilder`:
//!
//! | module | feature | what |
//! |---|---|---|
//! | [`circuit_breaker`] | `circuit-breaker` | lock-free breaker, count and time windows, slow calls, half-open probes |
//! | [`bulkhead`] | `bulkhead` | fixed and adaptive (AIMD, Gradient2, Vegas) concurrency limits |
//! | [`rate_limit`] | `rate-limit` | GCRA in one atomic, shared across clones, keyed with bounded memory |
//! | [`retry`] | `retry` | backoff with jitter, lock-free retry budget, throttles, hedging |
//! | [`core`] | always | clocks, outcome classification, events, errors, `test-util` mock backend |
//!
//! The four layer features are on by default; `full` adds `metrics` and `tracing`.
//! [`ServiceBuilderExt`] adds a method per layer to `ServiceBuilder`, and [`prelude`] imports
//! the handles.
//!
//! # Example
//!
//! ```
//! # #[cfg(all(feature = "circuit-breaker", feature = "retry"))]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! use palisade::prelude::*;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! let breaker = CircuitBreaker::builder().name("payments").build()?;
//! let retry = RetryPolicy::builder().max_attempts(2).build()?;
//! let client = ServiceBuilder::new()
//!     .retry_policy(&retry)
//!     .circuit_breaker(&breaker)
//!     .service_fn(|amount: u64| async move { Ok::<_, tower::BoxError>(amount) });
//! assert_eq!(client.oneshot(7).await?, 7);
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "circuit-breaker", feature = "retry")))]
//! # fn main() {}
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder_ext;

pub use builder_ext::ServiceBuilderExt;
pub use palisade_core as core;

#[cfg(feature = "bulkhead")]
pub use palisade_bulkhead as bulkhead;
#[cfg(feature = "circuit-breaker")]
pub use palisade_circuit_breaker as circuit_breaker;
#[cfg(feature = "rate-limit")]
pub use palisade_rate_limit as rate_limit;
#[cfg(feature = "retry")]
pub use palisade_retry as retry;

/// The handles, the rejections to `downcast_ref` to, and [`ServiceBuilderExt`].
pub mod prelude {
    pub use crate::ServiceBuilderExt;
    pub use palisade_core::{
        Classify, Clock, ConfigError, ErrorIsFailure, Outcome, RetryAfter, retry_after,
    };

    #[cfg(feature = "bulkhead")]
    pub use palisade_bulkhead::{Bulkhead, BulkheadFull, WaitTimeout};
    #[cfg(feature = "circuit-breaker")]
    pub use palisade_circuit_breaker::{CircuitBreaker, CircuitOpen};
    #[cfg(feature = "rate-limit")]
    pub use palisade_rate_limit::{KeyedRateLimiter, RateLimited, RateLimiter};
    #[cfg(feature = "retry")]
    pub use palisade_retry::{RetryBudget, RetryPolicy};
}

/// The README's code blocks, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
