//! Retries that cannot become a retry storm: backoff with jitter, a lock-free retry budget,
//! deadlines, per-attempt timeouts, and `retry_after` hints honoured.
//!
//! Retries save single requests and can kill whole systems: when a dependency is down, every
//! client retrying three times triples the load on it just when it can least take it. So in
//! this crate a retry costs something. Every [`RetryPolicy`] draws on a [`RetryBudget`] by
//! default (Finagle's: retries may add 20 % to the original requests over a 10 s window, plus a
//! reserve of 10 retries a second), which is lock-free: a deposit per request is one CAS, and
//! concurrent withdrawals can never overdraw it. A gRPC-style [`RetryThrottle`] is the
//! alternative.
//!
//! # Behaviour
//!
//! - **What is retried**: results that the classifier ([`palisade_core::Classify`]) calls
//!   [`Outcome::Failure`](palisade_core::Outcome::Failure) (default: every error, no response),
//!   of requests the request policy can copy ([`RetryRequest`]; default: every request, by
//!   `Clone`; [`retry_requests_if`](RetryPolicyBuilder::retry_requests_if) for idempotency).
//! - **How often**: at most `max_attempts` attempts (the first included), and only while the
//!   budget grants a withdrawal. A refused withdrawal ends retrying: the last result is returned
//!   as it is, and a [`RetryEvent::BudgetExhausted`] is emitted.
//! - **Local rejections fail fast**: an error from below that carries a core
//!   [`Rejection`](palisade_core::Rejection) (an open breaker, a full bulkhead, a rate limiter
//!   without a token) is returned at once, never slept on, whatever the classifier says.
//!   Retrying them is opt-in and bounded
//!   ([`retry_local_rejections`](RetryPolicyBuilder::retry_local_rejections)).
//! - **When**: after a [`Backoff`] (constant, exponential, full jitter, decorrelated jitter; all
//!   capped; the jitter's RNG seedable), or after a *remote* `retry_after` hint
//!   ([`palisade_core::retry_after`] outside a local rejection: a server's `Retry-After`; or,
//!   with [`remote_hint`](RetryPolicyBuilder::remote_hint), read from a response the
//!   classifier calls a failure, such as an HTTP `429`) if that is longer and at most
//!   [`max_retry_after`](RetryPolicyBuilder::max_retry_after) (default: the backoff cap; a
//!   longer hint ends retrying at once). So a default policy never
//!   makes a caller wait longer than its backoff cap. Above a balancer,
//!   [`remote_hint_per_endpoint`](RetryPolicyBuilder::remote_hint_per_endpoint) takes a hint
//!   as the word of the endpoint that sent it: the retry, which goes elsewhere, follows on the
//!   backoff alone, and only a second hint in a row binds. Sleeps are tokio's, so they run in
//!   paused time in tests.
//! - **How long**: an optional per-attempt timeout ([`AttemptTimedOut`], a retryable failure;
//!   it bounds an attempt's wait for the inner service's readiness too) and an optional overall
//!   deadline ([`DeadlineExceeded`], a local rejection, mid-attempt or while waiting for
//!   readiness, the first attempt's included: see [Readiness](#readiness); no retry is scheduled that could not start before it, including one a hint
//!   pushes past it). Under a deadline, the attempt timeout ends only attempts that a retry
//!   can follow: one that none could follow (the last, or the budget refusing) runs on to the
//!   deadline rather than lose a late answer (`strict_attempt_timeout` to end it anyway).
//! - **Copies**: the request is copied only when another attempt may follow; never before the
//!   last attempt, never with `max_attempts(1)`.
//!
//! # Readiness
//!
//! - **With a deadline or an attempt timeout**, [`RetryPolicyService`]'s `poll_ready` is ready
//!   at once and reserves nothing; the response future waits for the inner service's readiness
//!   itself (on the clone it keeps for retries), before the first attempt as before every
//!   retry. So the deadline, which starts at `call`, bounds the caller's whole wait: a 1 s
//!   deadline over a bulkhead that stays full for an hour answers [`DeadlineExceeded`] (a local
//!   rejection) after 1 s, not after the bulkhead's `max_wait`. The attempt timeout bounds the
//!   first attempt's readiness wait and its call together, as for a retry: a readiness wait
//!   that outlasts it is a timed-out attempt, retried as any other (the request was never
//!   sent, so even a request the request policy would not copy can be sent on the next one).
//!   An error from the inner service's `poll_ready` is the call's error. The cost: a layer
//!   *above* the retry no longer sees backpressure from below it (a `Buffer` or
//!   `ConcurrencyLimit` above admits calls that then wait, bounded, in their futures; a
//!   `LoadShed` above does not shed), which is what a deadline asks for: the caller's wait is
//!   bounded here, not there.
//! - **With neither**, `poll_ready` is the inner service's, delegated, and `call` sends the
//!   first attempt at once: no limit is set on the wait, so the retry adds none, and
//!   backpressure reaches the layers above unchanged.
//!
//! Either way, tower's contract holds: a ready service dropped without `call` has reserved
//! nothing of its own (and, with a limit, nothing below either, as the inner service was not
//! asked).
//!
//! # Example
//!
//! ```
//! use palisade_retry::{Backoff, RetryPolicy};
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let policy = RetryPolicy::builder()
//!     .max_attempts(3)
//!     .backoff(Backoff::full_jitter(Duration::from_millis(10), Duration::from_secs(1)))
//!     .deadline(Duration::from_secs(2))
//!     .attempt_timeout(Duration::from_millis(500))
//!     .retry_requests_if(|req: &String| !req.starts_with("POST"))
//!     .build()?;
//!
//! let mut svc = ServiceBuilder::new()
//!     .layer(policy.layer())
//!     .service(service_fn(|req: String| async move {
//!         Ok::<_, std::io::Error>(format!("echo {req}"))
//!     }));
//! let answer = svc.ready().await?.call("GET /".to_owned()).await?;
//! assert_eq!(answer, "echo GET /");
//! # Ok(())
//! # }
//! ```
//!
//! # Events and metrics
//!
//! Every handle has `subscribe`/`unsubscribe` and `snapshot()`: [`RetryPolicy`] and
//! [`HedgePolicy`] deliver [`RetryEvent`]s (one [`RetryEvent::CallFinished`] per call, with its
//! [`CallOutcome`]), [`RetryBudget`] [`BudgetEvent`]s, [`RetryThrottle`] [`ThrottleEvent`]s
//! (engaged, disengaged) and [`AdaptiveThrottle`] [`AdaptiveThrottleEvent`]s. With the
//! `metrics` feature they are recorded under core's label scheme (`name`, `outcome`,
//! `reason`): `palisade_retry_calls_total{outcome}`, `palisade_retry_attempts_total`,
//! `palisade_retry_retries_total`, `palisade_retry_rejections_total{reason}`
//! (`budget_exhausted`, `throttled`, `deadline_exceeded`) and more, listed in the `events`
//! table of each event type's docs; with `tracing`, per-call events are `TRACE` events with
//! structured fields, throttle transitions `WARN`/`INFO`. Default names: `"retry"`,
//! `"hedge"`, `"retry_budget"`, `"retry_throttle"`, `"adaptive_throttle"`.
//!
//! # Names
//!
//! CONVENTIONS rule 3, so nothing clashes with tower's own `Retry` in a `use` list: handle
//! [`RetryPolicy`], service [`RetryPolicyService`], layer [`RetryPolicyLayer`]; the same for
//! [`HedgePolicy`] and [`AdaptiveThrottle`]. The old names (`Retry`, `RetryLayer`, `Hedge`,
//! `HedgeLayer`, `AdaptiveThrottled`) remain as deprecated aliases.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod adaptive;
pub mod backoff;
pub mod budget;
mod config;
pub mod error;
mod events;
pub mod future;
pub mod hedge;
mod latency;
mod layer;
pub mod remote_hint;
mod request;
mod retry_policy;
#[cfg(feature = "serde")]
mod serde_config;
mod service;
pub mod throttle;
mod timer;

#[allow(deprecated)]
pub use adaptive::AdaptiveThrottled;
pub use adaptive::{
    AdaptiveThrottle, AdaptiveThrottleBuilder, AdaptiveThrottleLayer, AdaptiveThrottleService,
    AdaptiveThrottleSnapshot,
};
pub use backoff::Backoff;
pub use budget::{RetryBudget, RetryBudgetBuilder, RetryBudgetSnapshot};
pub use config::RetryPolicyBuilder;
pub use error::{AttemptTimedOut, DeadlineExceeded, Throttled};
#[cfg(feature = "metrics")]
pub use events::RetryMetrics;
pub use events::{
    AdaptiveThrottleEvent, BudgetEvent, CallOutcome, GiveUpReason, RetryEvent, ThrottleEvent,
};
#[allow(deprecated)]
pub use hedge::{Hedge, HedgeLayer};
pub use hedge::{
    HedgePolicy, HedgePolicyBuilder, HedgePolicyLayer, HedgePolicyService, HedgePolicySnapshot,
};
pub use layer::RetryPolicyLayer;
pub use remote_hint::{NoRemoteHint, RemoteHint};
pub use request::{CloneAll, CloneIf, CloneWith, RetryRequest};
pub use retry_policy::{RetryPolicy, RetryPolicySnapshot};
#[cfg(feature = "serde")]
pub use serde_config::{BackoffConfig, RetryBudgetConfig, RetryPolicyConfig};
pub use service::RetryPolicyService;

/// Renamed to [`RetryPolicyService`] (CONVENTIONS rule 3: `<Noun>Service<S>`; no clash with
/// `tower::retry::Retry`).
#[deprecated(note = "renamed to RetryPolicyService")]
pub type Retry<S, C = palisade_core::ErrorIsFailure, Q = CloneAll> = RetryPolicyService<S, C, Q>;

/// Renamed to [`RetryPolicyLayer`] (CONVENTIONS rule 3: `<Noun>Layer`; no clash with
/// `tower::retry::RetryLayer`).
#[deprecated(note = "renamed to RetryPolicyLayer")]
pub type RetryLayer<C = palisade_core::ErrorIsFailure, Q = CloneAll> = RetryPolicyLayer<C, Q>;
pub use throttle::{RetryThrottle, RetryThrottleBuilder, RetryThrottleSnapshot};
