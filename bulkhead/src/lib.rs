//! Fixed and adaptive concurrency limits for tower: the bulkhead.
//!
//! A bulkhead caps how many calls may be in flight to one dependency, so that a slow
//! dependency cannot take all of a service's capacity: when it stalls, calls to it pile up
//! against the bulkhead's limit and are refused (or queue briefly), while calls to everything
//! else go on. It is Hystrix's semaphore isolation and resilience4j's `Bulkhead`. When you
//! cannot know the right limit in advance, an [`adaptive`] algorithm finds it from latency and
//! drops (Netflix concurrency-limits, Envoy's adaptive concurrency).
//!
//! - [`Bulkhead`] is the handle: build it once, share it (clones share one limit), read its
//!   state, [`set_limit`](Bulkhead::set_limit) at run time, subscribe to [`BulkheadEvent`]s.
//! - [`Bulkhead::layer`] gives the [`BulkheadLayer`] for a `ServiceBuilder` stack, which makes
//!   [`BulkheadService`]s.
//! - When full it rejects at once with [`BulkheadFull`] (the default), or with
//!   [`max_wait`](BulkheadBuilder::max_wait) queues callers in FIFO order (woken, never polled)
//!   up to that long, then fails with [`WaitTimeout`]. Both rejections come from the response
//!   future, never from `poll_ready` (a full bulkhead is busy, not broken: tower discards a
//!   service whose `poll_ready` fails), so the bulkhead works under `Buffer`, p2c `Balance`
//!   and any tower client. Both carry a core
//!   [`Rejection`](palisade_core::rejection::Rejection) as their source: layers above treat
//!   them as local rejections (a breaker or adaptive limit ignores them, a retry returns them
//!   at once).
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! use palisade_bulkhead::{Bulkhead, BulkheadFull};
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! let bulkhead = Bulkhead::builder()
//!     .name("inventory")
//!     .max_concurrent_calls(32)
//!     .max_wait(Duration::from_millis(50)) // queue briefly instead of failing at once
//!     .build()?;
//!
//! let client = ServiceBuilder::new()
//!     .layer(bulkhead.layer())
//!     .service(service_fn(|sku: u32| async move { Ok::<_, std::io::Error>(sku * 2) }));
//!
//! match client.oneshot(21).await {
//!     Ok(answer) => assert_eq!(answer, 42),
//!     Err(e) if e.is::<BulkheadFull>() => { /* shed load */ }
//!     Err(e) => return Err(e),
//! }
//! assert_eq!(bulkhead.in_flight(), 0);
//! # Ok(())
//! # }
//! ```
//!
//! An adaptive limit, counting calls slower than 200 ms as drops:
//!
//! ```
//! use palisade_bulkhead::Bulkhead;
//! use palisade_bulkhead::adaptive::Gradient2;
//! use palisade_core::classify::{Outcome, Timed};
//! use std::time::Duration;
//! use tower::{ServiceBuilder, service_fn};
//!
//! let bulkhead = Bulkhead::builder()
//!     .adaptive(Gradient2::builder().initial_limit(20).max_limit(500).build()?)
//!     .build()?;
//! let slow_is_drop = Timed(|r: Result<&u32, &std::io::Error>, rtt: Option<Duration>| {
//!     match (r, rtt) {
//!         (Err(_), _) => Outcome::Failure,
//!         (Ok(_), Some(rtt)) if rtt > Duration::from_millis(200) => Outcome::Failure,
//!         (Ok(_), _) => Outcome::Success,
//!     }
//! });
//! let client = ServiceBuilder::new()
//!     .layer(bulkhead.layer().classify(slow_is_drop))
//!     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
//! # let _ = client;
//! assert_eq!(bulkhead.limit(), 20);
//! # Ok::<(), palisade_core::ConfigError>(())
//! ```
//!
//! # Guarantees
//!
//! - At most `limit` calls hold a slot at once; a lowered limit refuses new calls until the
//!   calls in flight fall below it (none is lost or counted twice).
//! - A slot is taken in `poll_ready` and given back when the call completes, fails, is
//!   cancelled (its future dropped) or panics, when a service holding an unused slot is
//!   dropped, and at once when the inner service's `poll_ready` fails. A listener that panics
//!   cannot keep one (events are emitted once the slot's guard exists).
//! - Waiters are served in arrival order; while anyone waits, newcomers queue behind them. A
//!   waiter that gives up (its service or `poll_ready` future dropped) leaves the queue; a slot
//!   handed to it at that moment passes on to the next waiter.
//! - `poll_ready` returns `Pending` only while queued (or while the inner service is not
//!   ready), and the task is woken when a slot is handed to it or its `max_wait` ends. It
//!   fails only when the inner service's `poll_ready` fails.
//! - An adaptive limit learns only from calls the dependency saw: a result the classifier
//!   calls [`Outcome::Ignore`](palisade_core::classify::Outcome::Ignore) (by default, a local
//!   rejection from a layer below, such as an open breaker) is neither an RTT sample nor a
//!   drop.
//!
//! # Cost
//!
//! An admitted call costs one CAS to take a slot and one `fetch_sub` to give it back, plus an
//! `Arc` reference for the response future: no lock, no allocation, no clock read. Only the
//! waiting path takes a lock (the FIFO queue) and allocates (one queue entry and one timer per
//! waiter). An adaptive bulkhead adds two clock reads per call and a few relaxed atomic adds
//! into the current sample window; the algorithm runs once per window (about one RTT), called
//! by the one completion that closes it. A fixed bulkhead classifies a result only while
//! someone listens to its events (the `metrics` or `tracing` feature, or a subscriber): one
//! relaxed load decides. A rejection is a zero-sized error: boxing it allocates nothing.
//!
//! # Features
//!
//! - `metrics`: records [`BulkheadEvent`]s as `palisade_bulkhead_*` metrics (calls by
//!   outcome, rejections by reason, limit and in-flight gauges from build; see
//!   [`BulkheadEvent`]).
//! - `tracing`: emits them as `tracing` events (limit changes at `INFO`, per-call events at
//!   `TRACE`, structured fields).

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod adaptive;
mod bulkhead;
mod config;
mod error;
mod events;
pub mod future;
mod layer;
mod limiter;
#[cfg(feature = "serde")]
mod serde_config;
mod service;

pub use bulkhead::{Bulkhead, BulkheadSnapshot};
pub use config::BulkheadBuilder;
pub use error::{BulkheadFull, WaitTimeout};
#[cfg(feature = "metrics")]
pub use events::BulkheadMetrics;
pub use events::{BulkheadEvent, RejectReason};
pub use layer::BulkheadLayer;
pub use limiter::MAX_LIMIT;
#[cfg(feature = "serde")]
pub use serde_config::BulkheadConfig;
pub use service::BulkheadService;
