//! [`AdaptiveThrottle`]: client-side throttling (Google SRE book, "Handling Overload"): stop
//! sending what the backend would reject anyway.
//!
//! Each client tracks, over a sliding window (default 2 minutes), how many requests it tried
//! (`requests`) and how many the backend accepted (`accepts`). While the backend accepts
//! everything, `requests ≈ accepts` and nothing is throttled. When it starts rejecting, the
//! client rejects new requests itself, before they reach the network, with probability
//!
//! ```text
//! max(0, (requests − K · accepts) / (requests + 1))
//! ```
//!
//! so that it sends only about `K` times what the backend accepts. `K = 2` (the default) lets a
//! recovering backend see twice what it can currently take; lower is more aggressive. A local
//! rejection is a [`Throttled`](crate::Throttled) error (a core local rejection), and counts as a request.
//!
//! A request counts when it is sent, and an accept when its answer comes: a request that never
//! completes (it hangs, times out above, or is cancelled) counts as one that was not
//! accepted, so the throttle engages against a backend that hangs as well as against one that
//! fails.
//!
//! What "accepted" means is the classifier's call: results it calls
//! [`Outcome::Failure`](palisade_core::Outcome::Failure) were rejected (default: every error).
//!
//! # Example
//!
//! ```
//! use palisade_retry::AdaptiveThrottle;
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let throttle = AdaptiveThrottle::builder()
//!     .k(2.0)
//!     .window(Duration::from_secs(60))
//!     .build()?;
//! let mut svc = ServiceBuilder::new()
//!     .layer(throttle.layer())
//!     .service(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }));
//! assert_eq!(svc.ready().await?.call(1).await?, 1);
//! assert_eq!(throttle.reject_probability(), 0.0);
//! # Ok(())
//! # }
//! ```

mod adaptive_throttle;
mod config;
pub mod future;
mod layer;
mod service;
mod window;

pub use self::adaptive_throttle::{AdaptiveThrottle, AdaptiveThrottleSnapshot};
pub use self::config::AdaptiveThrottleBuilder;
pub use self::layer::AdaptiveThrottleLayer;
pub use self::service::AdaptiveThrottleService;

/// Renamed to [`AdaptiveThrottleService`] (CONVENTIONS rule 3: `<Noun>Service<S>`).
#[deprecated(note = "renamed to AdaptiveThrottleService")]
pub type AdaptiveThrottled<S, C = palisade_core::ErrorIsFailure> = AdaptiveThrottleService<S, C>;

/// Renamed to [`future::ResponseFuture`] (CONVENTIONS rule 3).
#[deprecated(note = "renamed to adaptive::future::ResponseFuture")]
pub type ThrottleFuture<F, C> = future::ResponseFuture<F, C>;
