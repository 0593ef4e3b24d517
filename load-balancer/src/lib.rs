//! A client-side load balancer for tower that keeps a client whole while one endpoint fails:
//! cloneable, lock-free on the hot path, and failure-aware.
//!
//! A latency-aware balancer has a trap: an endpoint that fails in one millisecond, or whose
//! breaker rejects at once, answers *fastest*, and tower's P2C + peak EWMA then prefers it.
//! Palisade's [`Balancer`] closes it:
//!
//! - **Fast failures never look cheap.** The default strategy, [`P2cPeakEwma`] (Finagle,
//!   Linkerd), charges a failure, or a local rejection from a layer below, the failure penalty
//!   (default 1 s) as its latency; each success halves what is left of it, so a recovered
//!   endpoint earns its share back in a few calls.
//! - **Hung endpoints never look idle.** A call dropped before it answered (a retry's
//!   per-attempt timeout above, a hedge answered elsewhere) took at least the time it was
//!   waited on: the estimate takes that as a lower bound, raising it, never lowering it. An
//!   endpoint that takes calls and never answers is priced by its callers' patience (500 ms
//!   under the facade's retry), not by its last answer; tower's peak EWMA does the same on
//!   drop (`palisade/tests/hung_endpoint.rs`).
//! - **Sick endpoints are not candidates.** Outlier ejection ([`OutlierDetection`], Envoy's) is
//!   applied before the strategy: 5 failures in a row eject an endpoint for a short, growing,
//!   jittered time, at most 10 % of the set at once (one endpoint always may be), and below
//!   50 % healthy every endpoint is used anyway (panic threshold).
//! - **Nothing is dropped forever.** An endpoint whose `poll_ready` fails is charged a failure
//!   and ejected by the same rules, then comes back; tower's `Balance` drops it for good.
//! - **Retries go elsewhere.** With a retry layer above, a retry avoids the endpoint of the
//!   previous attempt when another candidate exists (see [`BalancerService`]).
//! - **Honest readiness.** `poll_ready` never fails; with no usable endpoint the call's future
//!   answers [`NoHealthyEndpoints`], a local rejection.
//!
//! [`Balancer`] is the handle: `Clone`, one `Arc` inside, so every clone and every
//! [`BalancerService`] made from it shares the endpoint set and the statistics (no `Buffer`
//! needed). The set is copied on write ([`insert`](Balancer::insert),
//! [`remove`](Balancer::remove)) and swapped atomically; a pick loads it without a lock, reads
//! two endpoints' atomics and chooses; a finished call updates the endpoint's pending count and
//! latency estimate with atomic operations. Nothing is allocated per call.
//!
//! Strategies ([`strategy`]): [`P2cPeakEwma`] (default), [`P2cPending`], [`LeastPending`]
//! (Ribbon `BestAvailableRule`), [`RoundRobin`], [`Random`], the weighted
//! [`WeightedP2cPeakEwma`], [`WeightedRandom`], [`WeightedRoundRobin`] (nginx's smooth
//! weighted round robin) and [`WeightedResponseTime`] (Ribbon), or your
//! own [`Strategy`].
//!
//! Affinity: [`Balancer::hashed`] sends each request to the endpoint its key hashes to
//! (rendezvous hashing over the healthy endpoints, O(n) per call; see [`hash`]), and
//! [`Balancer::maglev`] does it in O(1) from a Maglev lookup table (see [`maglev`]).
//!
//! Zones: with [`local_zone`](BalancerBuilder::local_zone), endpoints of other zones are
//! charged twice their latency, so the local zone takes the traffic while it costs less and
//! spills over when it slows down, fails or is ejected. [`slow_start`](BalancerBuilder::slow_start)
//! ramps a new or restored endpoint up over a window (Envoy).
//!
//! The set is built from a list ([`Balancer::new`]), changed through the handle, or follows a
//! tower `Discover` stream ([`Balancer::follow`]). What counts as an endpoint's failure is the
//! classifier's choice ([`Balancer::service_with`]; default: every error except a local
//! rejection). Per-endpoint circuit breakers are built in:
//! [`endpoint_breaker`](BalancerBuilder::endpoint_breaker) with [`fleet_breaker`]'s defaults
//! gives every endpoint its own, and an endpoint whose breaker is open is not a candidate
//! (see [`breaker`]). A breaker of your own also composes: wrap an endpoint in a breaker in
//! **gate mode** (open = not ready) and the balancer passes it over. An open gate says it is
//! *shut*, not busy (with how long), so the balancer does not wait on it, does not poll it
//! again until that wait is over, and with every endpoint shut answers
//! [`NoHealthyEndpoints`] at once, as with its own breakers. In reject mode its `CircuitOpen`
//! answers are charged the failure penalty, so the default strategy avoids it, but a pick
//! that still lands there answers the caller `CircuitOpen`, which palisade-retry returns at
//! once rather than retrying: prefer gate mode per endpoint (`tests/stacking.rs`).
//!
//! # Guarantees
//!
//! - An endpoint's pending count returns to zero however its calls end: answered, cancelled
//!   (future dropped), or unwound by a panic of the endpoint; also after its removal.
//! - At most `max_ejection_percent` of the set is ejected at once (at least one endpoint may
//!   be), and below the panic threshold every endpoint is a candidate.
//! - `poll_ready` never returns an error; `Pending` only with a wake-up registered with a busy
//!   endpoint (never for an endpoint that is only shut: an open breaker, built in or in gate
//!   mode).
//! - No lock and no allocation on a successful call's path (pick, call, record).
//!
//! # Example
//!
//! ```
//! use palisade_load_balancer::{Balancer, EndpointMeta, NoHealthyEndpoints};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let endpoint = |name: &'static str| {
//!     service_fn(move |req: String| async move {
//!         Ok::<_, std::io::Error>(format!("{name}: {req}"))
//!     })
//! };
//! let balancer = Balancer::new([("a", endpoint("a")), ("b", endpoint("b"))]);
//! balancer.insert("c", endpoint("c"), EndpointMeta::new().zone("eu-west-1b"));
//!
//! let svc = ServiceBuilder::new().service(balancer.service());
//! let answer = svc.clone().oneshot("GET /".to_owned()).await?;
//! assert!(answer.ends_with(": GET /"));
//!
//! // Endpoints come and go while traffic flows; an empty set rejects locally.
//! for key in ["a", "b", "c"] {
//!     balancer.remove(&key);
//! }
//! let err = svc.oneshot("GET /".to_owned()).await.unwrap_err();
//! assert!(err.downcast_ref::<NoHealthyEndpoints>().is_some());
//! assert!(palisade_core::is_local_rejection(&*err));
//! # Ok(())
//! # }
//! ```
//!
//! The recommended stack puts a retry with a budget above the balancer, so that the few calls
//! an endpoint fails before it is ejected are retried on another endpoint:
//!
//! ```
//! use palisade_load_balancer::Balancer;
//! use palisade_retry::RetryPolicy;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let failing = service_fn(|_: u32| async { Err::<u32, _>(std::io::Error::other("boom")) });
//! let healthy = service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x + 1) });
//! let balancer = Balancer::new([(0, tower::util::Either::Left(failing)),
//!                               (1, tower::util::Either::Right(healthy))]);
//! let svc = ServiceBuilder::new()
//!     .layer(RetryPolicy::builder().build()?.layer())
//!     .service(balancer.service());
//! for x in 0..20 {
//!     // Whichever endpoint the first attempt hits, a retry goes to the other one.
//!     assert_eq!(svc.clone().oneshot(x).await?, x + 1);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Events and metrics
//!
//! [`Balancer::subscribe`] delivers [`BalancerEvent`]s (endpoints added, removed, ejected,
//! restored; calls rejected and finished); with the `metrics` feature they are recorded as
//! `palisade_load_balancer_*` (see [`BalancerEvent`]), with `tracing` as events of target
//! `palisade`. [`Balancer::snapshot`] gives every endpoint's pending count, latency estimate,
//! calls, failures and ejection state.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod balancer;
pub mod breaker;
mod config;
mod endpoint;
mod error;
mod events;
pub mod ewma;
pub mod future;
pub mod hash;
pub mod health;
pub mod maglev;
mod service;
pub mod strategy;
mod wrr;

pub use balancer::{Balancer, BalancerSnapshot, EndpointSnapshot};
pub use breaker::fleet_breaker;
pub use config::{BalancerBuilder, EndpointMeta, WhenEmpty};
pub use error::NoHealthyEndpoints;
pub use events::BalancerEvent;
#[cfg(feature = "metrics")]
pub use events::BalancerMetrics;
pub use hash::HashService;
pub use health::{FailurePercentage, OutlierDetection, SuccessRate};
pub use maglev::MaglevService;
pub use service::BalancerService;
pub use strategy::{
    HotCold, LeastPending, Load, P2cPeakEwma, P2cPending, Random, RoundRobin, Strategy,
    WeightedP2cPeakEwma, WeightedRandom, WeightedResponseTime, WeightedRoundRobin,
};
