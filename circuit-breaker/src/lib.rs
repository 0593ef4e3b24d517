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
//! # Reject or gate
//!
//! By default ([`Mode::Reject`]) an open breaker's service is *ready* and its call fails at
//! once with [`CircuitOpen`], like tower's `LoadShed`: use it at the top of a stack (under the
//! retry layer, above the client), where a caller must hear "no" at once — waiting would
//! defeat the point of a breaker, and [`CircuitOpen`] is a local rejection that the retry
//! layer returns at once instead of sleeping on. In [`Mode::Gate`] (linkerd2-proxy's `Gate`,
//! `breaker.layer().gate()`) an open breaker's service is *not ready*: `poll_ready` returns
//! `Pending` and a tokio timer wakes the task when probes may start; half-open with every
//! probe taken, it waits for a probe to be given back or for the probes to decide. Use it per
//! endpoint inside a readiness-aware balancer (tower's p2c `Balance`), which then routes around
//! an open endpoint instead of preferring its instant rejections. Palisade's balancer also
//! learns that an open gate is *shut* (for how long), not busy: it does not wait on it, and
//! when every endpoint's gate is open it answers `NoHealthyEndpoints` at once. tower's
//! `Balance` cannot tell: with every gate open it waits.
//!
//! # Behaviour
//!
//! - **Windows.** Rates are computed over a [`SlidingWindow`]: the last N calls, or the calls
//!   of the last T in buckets that roll with the clock (no timer task). Rules are evaluated
//!   once `minimum_calls` are in the window.
//! - **Defaults** follow Hystrix, a seed of this project: a 10 s time window, 20 calls
//!   minimum, 50 %, 5 s open; the open wait doubles on each re-open in a row from half-open, up
//!   to 6 × the base wait (30 s), with ±20 % jitter, and starts over after a close. See [`CircuitBreakerBuilder`]
//!   for every default, its source, and its resilience4j and Hystrix equivalents.
//! - **Outcomes** come from a [`Classify`](palisade_core::Classify) (default: `Err` is a
//!   failure, except a *local rejection* of a Palisade layer below, such as a rate limiter's
//!   `RateLimited` or another breaker's [`CircuitOpen`], which is `Ignore`). `Ignore` does not
//!   count. A cancelled call (its future or permit dropped) counts as `Ignore` and gives its
//!   half-open permit back, also while the caller panics; a panic of the inner service (in
//!   `call` or while its future is polled) is a failure. A call slower than
//!   `slow_call_duration` is slow, whether it succeeded or not.
//! - **Generations.** Every transition starts a new generation (49 bits: it would take 2^49
//!   transitions to wrap); permits remember theirs, and a result of an older generation never
//!   counts in a newer one, so a slow call admitted before a trip cannot re-trip or close the
//!   breaker afterwards.
//! - **Half-open** admits `permitted_calls_in_half_open` probes; once all are recorded the
//!   rate rules (or, with the rates off, any failed probe) decide `Closed` or `Open`. With
//!   `max_wait_in_half_open`, the period ends (back to `Open`) when the wait is over, whether
//!   or not probe permits remain (resilience4j's semantics).
//! - **Listeners** cannot break the breaker: a listener's panic is caught, and every event is
//!   emitted after the state it reports is consistent.
//!
//! # Hot path
//!
//! The state (tag, generation, half-open probes) lives in one `AtomicU64`, the time of an open
//! or half-open period in a second word read only then; transitions are CAS loops over pure
//! closures. An admitted call in `Closed` reads the state word once; a success recorded into
//! a count window that holds only successes is one load, so threads sharing a healthy breaker
//! write no common cache line. Through tower, the response future owns a reference to the
//! breaker (one uncontended increment and decrement of a count that each clone keeps on its
//! own cache line); [`CircuitBreaker::try_acquire`] borrows instead. No lock, no allocation,
//! no boxing; the clock is read only for a time window, slow-call detection, or an open
//! breaker. A rejection through tower allocates the boxed [`CircuitOpen`].
//!
//! # Features
//!
//! - `metrics`: through the `metrics` facade, `palisade_circuit_breaker_calls_total{name,
//!   outcome}` (`success`, `failure`, `ignore`, `rejected`),
//!   `palisade_circuit_breaker_rejections_total{name, reason}`,
//!   `palisade_circuit_breaker_call_duration_seconds{name, outcome}` (with slow-call
//!   detection, which times calls anyway), `palisade_circuit_breaker_state{name, state}` (set
//!   from build), transitions, slow calls and resets (see `CircuitBreakerMetrics`). The
//!   `name` label defaults to `"circuit_breaker"`.
//! - `tracing`: transitions at `INFO` (into `Open` or `ForcedOpen` at `WARN`), per-call
//!   events at `TRACE`, with structured fields; target `palisade`.
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
#[cfg(feature = "serde")]
mod serde_config;
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
#[cfg(feature = "serde")]
pub use serde_config::{CircuitBreakerConfig, OpenBackoffConfig};
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
