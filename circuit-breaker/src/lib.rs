//! A lock-free circuit breaker for [tower], with resilience4j's semantics.
//!
//! When a dependency starts failing, calling it anyway wastes the caller's time and keeps the
//! dependency down. A circuit breaker watches the outcomes of calls and, when too many fail
//! or are slow, *opens*: it rejects calls at once for a while, then lets a few probe calls
//! through to see whether the dependency recovered.
//!
//! ```text
//!                  failure rate ≥ threshold or slow-call rate ≥ threshold
//!                  (once minimum_calls are in the window), or n failures in a row
//!        ┌────────┐ ─────────────────────────────────────────────────▶ ┌────────┐
//!        │ Closed │                                                    │  Open  │ rejects with
//!        └────────┘ ◀───────┐                            ┌──────────── └────────┘ CircuitOpen
//!            ▲              │ probes pass          probes fail, or        │
//!            │              │ the rate rules       max_wait_in_half_open  │ wait_duration_in_open
//!            │              │                      passes                 │ (× backoff), checked
//!            │              │       ┌──────────┐   │                      │ lazily on the next call
//!            │              └────── │ HalfOpen │ ──┘                      │
//!            │                      └──────────┘ ◀────────────────────────┘
//!            │                       admits permitted_calls_in_half_open probes
//!            │ reset()
//!     ┌──────┴──────────────────────────────────────────────────────────────┐
//!     │ manual, through the handle: ForcedOpen (reject all), Disabled (admit │
//!     │ all, record nothing), MetricsOnly (record and emit, never reject)    │
//!     └──────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! use palisade_circuit_breaker::{CircuitBreaker, CircuitOpen};
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! let breaker = CircuitBreaker::builder()
//!     .name("inventory")
//!     .count_window(20)
//!     .minimum_calls(10)
//!     .failure_rate_threshold(50.0)
//!     .slow_call_duration(Duration::from_secs(2))
//!     .wait_duration_in_open(Duration::from_secs(30))
//!     .build()?;
//!
//! let service = ServiceBuilder::new()
//!     .layer(breaker.layer())
//!     .service(service_fn(|id: u32| async move { Ok::<_, std::io::Error>(id * 2) }));
//!
//! assert_eq!(service.clone().oneshot(21).await?, 42);
//!
//! breaker.force_open();
//! let err = service.oneshot(1).await.unwrap_err();
//! assert!(err.downcast_ref::<CircuitOpen>().is_some());
//! # Ok(())
//! # }
//! ```
//!
//! Outside tower, [`CircuitBreaker::try_acquire`] returns a [`Permit`] to complete with the
//! call's outcome ([`CircuitBreaker::try_acquire_owned`] an [`OwnedPermit`] that can move
//! into a task).
//!
//! # Behaviour
//!
//! - **Windows.** Rates are computed over a [`SlidingWindow`]: the last N calls, or the calls
//!   of the last T in buckets that roll with the clock (no timer task). Rules are evaluated
//!   once `minimum_calls` are in the window.
//! - **Outcomes** come from a [`Classify`](palisade_core::Classify) (default: `Err` is a
//!   failure). `Ignore` does not count. A cancelled call (its future dropped) counts as
//!   `Ignore` and gives its half-open permit back; a panic in the inner service is a failure.
//!   A call slower than `slow_call_duration` is slow, whether it succeeded or not.
//! - **Generations.** Every transition starts a new generation; permits remember theirs, and
//!   a result of an older generation never counts in a newer one, so a slow call admitted
//!   before a trip cannot re-trip or close the breaker afterwards.
//! - **Half-open** admits `permitted_calls_in_half_open` probes; once all are recorded the
//!   rate rules (or, with the rates off, any failed probe) decide `Closed` or `Open`.
//!
//! # Hot path
//!
//! The state (tag, generation, half-open probes, open-until time) lives in one `AtomicU64`;
//! transitions are CAS loops. An admitted call in `Closed` reads the state word once; a
//! success recorded into a count window that holds only successes is one load, so threads
//! sharing a healthy breaker write no common cache line. Through tower, the response future
//! owns a reference to the breaker (one uncontended increment and decrement of a count that
//! each clone keeps on its own cache line); [`CircuitBreaker::try_acquire`] borrows instead.
//! No lock, no allocation, no boxing; the clock is read only for a time window, slow-call
//! detection, or an open breaker. A rejection through tower allocates the boxed
//! [`CircuitOpen`].
//!
//! # Features
//!
//! - `metrics`: counters and gauges `palisade_circuit_breaker_*` through the `metrics` facade
//!   (see [`CircuitBreakerEvent`]).
//! - `tracing`: every event as a `tracing` event.
//!
//! [tower]: https://docs.rs/tower

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backoff;
mod circuit_breaker;
mod config;
mod error;
mod events;
pub mod future;
mod layer;
mod permit;
mod probes;
mod service;
mod shared;
mod snapshot;
mod state;
mod window;

pub use circuit_breaker::CircuitBreaker;
pub use config::{CircuitBreakerBuilder, SlidingWindow};
pub use error::CircuitOpen;
pub use events::CircuitBreakerEvent;
#[cfg(feature = "metrics")]
pub use events::CircuitBreakerMetrics;
pub use layer::CircuitBreakerLayer;
pub use permit::{OwnedPermit, Permit};
pub use service::{CircuitBreakerService, Mode};
#[allow(
    deprecated,
    reason = "the old name stays importable, with its deprecation note"
)]
pub use snapshot::Metrics;
pub use snapshot::Snapshot;
pub use state::State;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
