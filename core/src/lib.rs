//! The shared vocabulary of the Palisade resilience layers.
//!
//! Palisade's layers (circuit breaker, bulkhead, rate limiter, retry, load balancer) are
//! separate crates; what two or more of them share lives here, and nothing else:
//!
//! - [`clock`]: monotonic time as a `u64` [`Instant`], a fast production
//!   [`Clock`] that starts no thread, tokio's paused time for simulations, and a
//!   [`ManualClock`] for runtime-free tests. Builders take [`Clock::default()`], which a test
//!   points at tokio's paused clock for a whole stack with one
//!   [`clock::set_default`]`(Clock::tokio())`.
//! - [`classify`]: which results count as failures ([`Classify`],
//!   [`Outcome`]).
//! - [`events`]: typed events to listeners at the cost of one branch when nobody listens, and
//!   lock-free and allocation-free when someone does, with `metrics` and `tracing` bridges
//!   behind features of the same names; the metric names and labels of every layer.
//! - [`error`]: [`ConfigError`] for refused configuration, and the
//!   [`RetryAfter`] hint rejections carry.
//! - [`mod@rejection`]: the *local rejection* every layer's refusal carries ([`Rejection`]), so a
//!   stack tells "a layer said no" from "the dependency failed" ([`rejection()`]).
//! - `test_util` (feature `test-util`): a fault-injecting mock backend for tests and demos, a
//!   paused-time runtime and the shared proptest configuration.
//!
//! Modules for the layer crates only (the loom shim `sync`, the seedable `rng`, the bucket
//! `ring`, the per-thread `striped` counter) are public for them but hidden from these docs:
//! they are not a stable API.
//!
//! # Example
//!
//! A classifier, a clock and an event bus, as a layer uses them:
//!
//! ```
//! use palisade_core::classify::{Classify, ErrorIsFailure, Outcome};
//! use palisade_core::clock::ManualClock;
//! use palisade_core::events::EventBus;
//! use std::time::Duration;
//!
//! let manual = ManualClock::new();
//! let clock = manual.clock();
//! let events: EventBus<Outcome> = EventBus::new();
//! events.subscribe(|outcome: &Outcome| println!("call ended: {}", outcome.as_str()));
//!
//! let started = clock.now();
//! manual.advance(Duration::from_millis(40));
//! let result: Result<&u16, &&str> = Err(&"connection reset");
//! let outcome = ErrorIsFailure.classify_timed(result, clock.elapsed_since(started));
//! events.emit(outcome);
//! assert_eq!(outcome, Outcome::Failure);
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod classify;
pub mod clock;
pub mod error;
pub mod events;
#[doc(hidden)] // for the layer crates (a gate-mode breaker and the balancer), not a stable API
pub mod readiness;
pub mod rejection;
#[doc(hidden)] // for the layer crates (retry budget, adaptive throttle), not a stable API
pub mod ring;
pub mod rng;
#[doc(hidden)] // for the layer crates (the breaker's statistics and window), not a stable API
pub mod striped;
pub mod sync;
#[cfg(feature = "test-util")]
pub mod test_util;

pub use classify::{Classify, ErrorIsFailure, Outcome};
pub use clock::{Clock, Instant, ManualClock};
pub use error::{ConfigError, RetryAfter, retry_after};
pub use events::{EventBus, Listener};
pub use rejection::{Rejection, RejectionKind, is_local_rejection, rejection};

/// The error type every Palisade service returns: tower's `BoxError`, the same type, so stacks
/// of Palisade and tower layers compose. Defined here so layer crates need not depend on
/// `tower` for it; find a layer's rejection in it with `downcast_ref` or [`rejection()`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
