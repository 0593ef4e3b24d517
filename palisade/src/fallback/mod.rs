//! Fallback: a degraded answer when the call fails, times out, or a layer below refuses it
//! (Hystrix's `getFallback`).
//!
//! The outermost layer of the recommended stack. When the primary call's result is a
//! failure by the classifier (default [`ErrorIsFailure`](palisade_core::ErrorIsFailure): every
//! error, so `tower::timeout::error::Elapsed` from a `Timeout` below is a failure too) or a
//! local rejection (an open breaker, a full bulkhead, a rate limit; opt out with
//! [`fallback_on_local_rejection(false)`](FallbackBuilder::fallback_on_local_rejection)),
//! the fallback function gets that result and answers instead: a cached value, a default, a
//! call to a secondary service.
//!
//! - **Bounded**: at most [`max_concurrent`](FallbackBuilder::max_concurrent) fallbacks run at
//!   once (default 10, Hystrix's `fallback.isolation.semaphore.maxConcurrentRequests`), so a
//!   slow fallback cannot take every task of an outage with it. A fallback due beyond the cap
//!   is refused ([`FallbackEvent::FallbackRejected`]) and the primary's result is returned
//!   as it was. The slot is a guard in the response future: given back when the fallback
//!   ends, fails, or the future is dropped.
//! - **Failed fallbacks**: an error from the fallback is returned as [`FallbackFailed`], whose
//!   source is the fallback's error.
//! - Successes and results the classifier ignores pass through untouched.
//!
//! # Where the timeout goes
//!
//! ```text
//! FallbackLayer          answers timeouts, failures, rejections
//!   RetryPolicy layer    (its attempt_timeout, or:)
//!     ... breaker, limiter, bulkhead
//!       TimeoutLayer     per attempt: Elapsed is a failure for the breaker, the retry and here
//!         the client
//! ```
//!
//! A `TimeoutLayer` *above* the fallback would cut the fallback off too; put an overall limit
//! in the retry's `deadline` instead.
//!
//! # Example
//!
//! ```
//! use palisade::fallback::Fallback;
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let fallback = Fallback::builder(|_primary: Result<String, tower::BoxError>| async {
//!     Ok("cached recommendations".to_owned())
//! })
//! .name("recommendations")
//! .build()?;
//!
//! let stack = ServiceBuilder::new()
//!     .layer(fallback.layer())
//!     .layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(100)))
//!     .service(service_fn(|slow: bool| async move {
//!         if slow {
//!             tokio::time::sleep(Duration::from_secs(5)).await;
//!         }
//!         Ok::<_, tower::BoxError>("fresh recommendations".to_owned())
//!     }));
//!
//! assert_eq!(stack.clone().oneshot(false).await?, "fresh recommendations");
//! assert_eq!(stack.oneshot(true).await?, "cached recommendations"); // timed out
//! assert_eq!(fallback.snapshot().fallbacks, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Events and metrics
//!
//! See [`FallbackEvent`]: `palisade_fallback_calls_total{name, outcome}`,
//! `palisade_fallback_executions_total{name, outcome}`, `palisade_fallback_in_flight{name}`,
//! `palisade_fallback_max_concurrent{name}` (set at build) with the `metrics` feature;
//! per-call `TRACE` events and a `WARN` for a refused fallback with `tracing`.

mod config;
mod error;
mod events;
#[allow(clippy::module_inception)]
// reason: CONVENTIONS rule 3, the handle lives in a file named after it
mod fallback;
pub mod future;
mod layer;
mod service;

pub use config::FallbackBuilder;
pub use error::FallbackFailed;
#[cfg(feature = "metrics")]
pub use events::FallbackMetrics;
pub use events::{FallbackEvent, PrimaryOutcome};
pub use fallback::{Fallback, FallbackFn, FallbackSnapshot};
pub use layer::FallbackLayer;
pub use service::FallbackService;

#[cfg(test)]
mod tests;
