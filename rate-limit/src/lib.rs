//! GCRA rate limiting for tower: one bucket shared by every clone, or one per key in bounded
//! memory.
//!
//! tower's own `RateLimit` keeps its state per service instance and is not `Clone`, so behind
//! a server that clones services per connection it silently enforces nothing; governor is fast
//! but has no tower layer and its keyed store grows without bound. Here a [`RateLimiter`] is a
//! handle (an `Arc`): every service built from it, however often tower clones them, draws from
//! one bucket, and the handle reads and changes the quota at run time. A
//! [`KeyedRateLimiter`] gives each key (tenant, client IP, route) its own bucket and evicts
//! idle keys by itself, under a cap.
//!
//! ```
//! use palisade_rate_limit::RateLimiter;
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let limiter = RateLimiter::builder()
//!     .name("backend")
//!     .rate(100, Duration::from_secs(1)) // 100 requests per second…
//!     .burst(10) // …at most 10 at once
//!     .build()?;
//!
//! let mut svc = ServiceBuilder::new()
//!     .layer(limiter.layer())
//!     .service_fn(|req: &'static str| async move { Ok::<_, tower::BoxError>(req.len()) });
//!
//! let mut other = svc.clone(); // a clone draws from the same bucket
//! assert_eq!(svc.ready().await?.call("hello").await?, 5);
//! assert_eq!(other.ready().await?.call("hi").await?, 2);
//! assert_eq!(limiter.remaining_burst(), 8);
//! # Ok(())
//! # }
//! ```
//!
//! # The algorithm
//!
//! A token bucket of `burst` tokens refilled at `rate` per `period` ([`Quota`]), implemented as
//! GCRA ([`gcra`]): the state is one number, the *theoretical arrival time*, in one
//! `AtomicU64`, and admitting a request is one CAS. Guarantees, checked by the tests against a
//! reference token bucket (exactly, and by proptest) and by loom models:
//!
//! - A request of cost `n` is admitted exactly when the bucket holds `n` tokens.
//! - In any window of length `W`, at most `burst + rate · W / period` tokens are admitted
//!   (the emission interval `period / rate` is rounded *up* to whole nanoseconds).
//! - Concurrent acquirers never take the same tokens; a quota change is atomic and carries the
//!   available tokens over, so it never hands out a fresh burst.
//!
//! # Over the limit
//!
//! [`Mode::Reject`] (default) fails at once with [`RateLimited`], whose
//! [`retry_after`](RateLimited::retry_after) says when to try again (also found generically by
//! `palisade_core::retry_after`). [`Mode::Wait`] waits while the bucket is empty (`Pending`,
//! woken by the tokio timer when the next token is due, so it runs in paused time with
//! `Clock::tokio()`) and rejects once the token is not due within `max_wait`. Waiting takes
//! nothing: a waiter that gives up, or is dropped, costs the limiter nothing.
//!
//! Every rejection is a *local rejection*: its source is a `palisade_core::Rejection`
//! (kinds `RateLimited`, `CostExceedsBurst`, `TooManyKeys`), so a breaker above does not count
//! it as a failure of the dependency and a retry above returns it at once.
//!
//! A request may cost several tokens ([`RateLimiterLayer::cost`], [`Cost`]); a cost above the
//! burst fails with [`CostExceedsBurst`] at once and never waits.
//!
//! # Services and readiness
//!
//! `poll_ready` never fails because of the limit (tower's contract: an error from
//! `poll_ready` means the service is broken for good, and `Buffer` or `Balance` would discard
//! it), and nothing is consumed before it is used:
//!
//! | service | tokens taken in | over the limit |
//! |---|---|---|
//! | [`RateLimiterService`] (one token) | reject mode: `call`; wait mode: `poll_ready`, once the inner service is ready | the future fails (without waiting for the inner service's readiness), or `poll_ready` waits (at most `max_wait` per call in all) |
//! | [`WeightedRateLimiterService`] (cost per request) | `call` (the cost needs the request) | the future fails, or waits |
//! | [`KeyedRateLimiterService`] (key per request) | `call` (the key needs the request) | the future fails, or waits |
//!
//! Tokens go back to the bucket when they were taken for a call that never reached the
//! dependency: a ready service dropped without `call`, an inner service that was not ready
//! (a full bulkhead below burns no tokens), or a call a layer below rejected locally. A token
//! given back at once restores the bucket exactly; one held longer comes back less what the
//! bucket would have refilled anyway, so the `burst + rate · W` bound always holds.
//!
//! # Time and its cost
//!
//! The limiter reads its [`Clock`](palisade_core::Clock) once per decision. The default is
//! TSC-backed (~14 ns a read, nanosecond precision). `Clock::coarse()` costs ~2 ns but is up to
//! ~1 ms stale: a stale `now` only ever makes the limiter *stricter* (tokens come back up to
//! 1 ms late, never early), so it is safe for limits of seconds and minutes, but at rates above
//! ~1000/s it under-admits bursts noticeably. See the crate README for measurements. Time
//! never runs out: every 2^58 ns (9 years) of clock time the limiter moves its origin forward,
//! so it works for the whole range of any clock, real or virtual.
//!
//! # Events and metrics
//!
//! Each decision emits a [`RateLimiterEvent`] to listeners (`subscribe` on the handles); with
//! nobody listening that is one branch. With the `metrics` feature: see
//! `RateLimiterMetrics` for the table (`palisade_rate_limit_calls_total{name, outcome}`,
//! `palisade_rate_limit_rejections_total{name, reason}`, the gauges
//! `palisade_rate_limit_burst` and `palisade_rate_limit_rate` set from build, …; the default
//! `name` is `rate_limit`). With `tracing`, quota changes are `INFO` events and per-call events
//! `TRACE`, with structured fields, on target `palisade`. [`RateLimiter::snapshot`] reads the
//! quota and the tokens left.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod cost;
mod error;
mod events;
pub mod future;
pub mod gcra;
mod keyed;
mod layer;
mod limiter;
#[cfg(feature = "serde")]
mod serde_config;
mod service;
mod state;

pub use config::{KeyedRateLimiterBuilder, Mode, Quota, RateLimiterBuilder, WhenFull};
pub use cost::{Cost, UnitCost};
pub use error::{CostExceedsBurst, KeyedRejection, RateLimited, TooManyKeys};
pub use events::RateLimiterEvent;
#[cfg(feature = "metrics")]
pub use events::RateLimiterMetrics;
pub use keyed::{KeyedRateLimiter, KeyedSnapshot};
pub use layer::{KeyedRateLimiterLayer, RateLimiterLayer, WeightedRateLimiterLayer};
pub use limiter::{RateLimiter, Snapshot};
#[cfg(feature = "serde")]
pub use serde_config::RateLimiterConfig;
pub use service::{KeyedRateLimiterService, RateLimiterService, WeightedRateLimiterService};

/// Old name of [`RateLimiterService`].
#[deprecated(note = "renamed to `RateLimiterService` (CONVENTIONS rule 3: `<Noun>Service`)")]
pub type RateLimit<S> = RateLimiterService<S>;
/// Old name of [`WeightedRateLimiterService`].
#[deprecated(note = "renamed to `WeightedRateLimiterService`")]
pub type WeightedRateLimit<S, C> = WeightedRateLimiterService<S, C>;
/// Old name of [`KeyedRateLimiterService`].
#[deprecated(note = "renamed to `KeyedRateLimiterService`")]
pub type KeyedRateLimit<S, K, F, C = UnitCost> = KeyedRateLimiterService<S, K, F, C>;
/// Old name of [`RateLimiterLayer`].
#[deprecated(note = "renamed to `RateLimiterLayer`")]
pub type RateLimitLayer = RateLimiterLayer;
/// Old name of [`WeightedRateLimiterLayer`].
#[deprecated(note = "renamed to `WeightedRateLimiterLayer`")]
pub type WeightedRateLimitLayer<C> = WeightedRateLimiterLayer<C>;
/// Old name of [`KeyedRateLimiterLayer`].
#[deprecated(note = "renamed to `KeyedRateLimiterLayer`")]
pub type KeyedRateLimitLayer<K, F, C = UnitCost> = KeyedRateLimiterLayer<K, F, C>;
/// Old name of [`RateLimiterEvent`].
#[deprecated(note = "renamed to `RateLimiterEvent`")]
pub type RateLimitEvent = RateLimiterEvent;
/// Old name of [`RateLimiterMetrics`].
#[cfg(feature = "metrics")]
#[deprecated(note = "renamed to `RateLimiterMetrics`")]
pub type RateLimitMetrics = RateLimiterMetrics;
