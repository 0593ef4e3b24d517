//! [`Hedge`]: send another copy of a slow request, take the first answer, cancel the rest.
//!
//! Tail latency is often one slow server, not a slow request. Hedging (Dean & Barroso, "The
//! Tail at Scale"; gRPC's hedging policy) sends a copy of a request that has not answered
//! after a delay, to be served elsewhere, and returns whichever answer comes first; the losers
//! are dropped, which cancels them. The delay is fixed, or the p-th percentile of recent
//! latencies (a lock-free histogram, see [`HedgePolicyBuilder::percentile`]), so only about
//! `100 - p` percent of requests are hedged. Hedges withdraw from the same
//! [`RetryBudget`](crate::RetryBudget) as retries (pass the same one to both), so hedging
//! cannot double the load on a struggling backend. A hedge asks the budget *before* it
//! reserves anything in the layers below (a bulkhead slot, a breaker probe, a rate-limit token,
//! all taken by the inner service's `poll_ready`): a refused hedge holds nothing. (Each layer deposits once per request it
//! sees; when a retry and a hedge wrap the same requests, give the hedge the budget with
//! [`HedgePolicyBuilder::budget_shared_with_retry`] so that a request is credited once.)
//!
//! Only hedge idempotent requests: two copies may both be executed.
//!
//! # Example
//!
//! ```
//! use palisade_retry::{HedgePolicy, RetryBudget};
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let budget = RetryBudget::default(); // share it with the RetryPolicy of the same backend
//! let hedge = HedgePolicy::builder()
//!     .percentile(95.0)
//!     .initial_delay(Duration::from_millis(50))
//!     .max_hedges(1)
//!     .budget(budget)
//!     .build()?;
//! let mut svc = ServiceBuilder::new()
//!     .layer(hedge.layer())
//!     .service(service_fn(|id: u64| async move { Ok::<_, std::io::Error>(id * 2) }));
//! assert_eq!(svc.ready().await?.call(21).await?, 42);
//! # Ok(())
//! # }
//! ```

mod config;
pub mod future;
mod hedge_policy;
mod layer;
mod service;

pub use self::config::HedgePolicyBuilder;
pub(crate) use self::hedge_policy::HedgeShared;
pub use self::hedge_policy::{HedgePolicy, HedgePolicySnapshot};
pub use self::layer::HedgePolicyLayer;
pub use self::service::HedgePolicyService;

/// Renamed to [`HedgePolicyService`] (CONVENTIONS rule 3: `<Noun>Service<S>`).
#[deprecated(note = "renamed to HedgePolicyService")]
pub type Hedge<S, C = palisade_core::ErrorIsFailure, Q = crate::CloneAll> =
    HedgePolicyService<S, C, Q>;

/// Renamed to [`HedgePolicyLayer`] (CONVENTIONS rule 3: `<Noun>Layer`).
#[deprecated(note = "renamed to HedgePolicyLayer")]
pub type HedgeLayer<C = palisade_core::ErrorIsFailure, Q = crate::CloneAll> =
    HedgePolicyLayer<C, Q>;

/// Renamed to [`future::ResponseFuture`] (CONVENTIONS rule 3).
#[deprecated(note = "renamed to hedge::future::ResponseFuture")]
pub type HedgeFuture<S, Req, C, Q> = future::ResponseFuture<S, Req, C, Q>;
