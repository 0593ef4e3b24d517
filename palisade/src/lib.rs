//! Palisade: resilience layers for [tower](https://docs.rs/tower).
//!
//! Stack them around your own clients with `tower::ServiceBuilder`:
//!
//! | module | feature | what |
//! |---|---|---|
//! | [`circuit_breaker`] | `circuit-breaker` | lock-free breaker, count and time windows, slow calls, half-open probes |
//! | [`bulkhead`] | `bulkhead` | fixed and adaptive (AIMD, Gradient2, Vegas) concurrency limits |
//! | [`rate_limit`] | `rate-limit` | GCRA in one atomic, shared across clones, keyed with bounded memory |
//! | [`retry`] | `retry` | backoff with jitter, lock-free retry budget, throttles, hedging |
//! | [`load_balancer`] | `load-balancer` | cloneable, lock-free P2C + peak EWMA with failure penalties, outlier ejection, retries to another endpoint |
//! | [`fallback`] | always | a Hystrix-style fallback answer, with its own concurrency cap |
//! | `registry` | `serde` | named instances from a TOML/YAML/JSON file, resilience4j style (`configs.default` + `instances.<name>`) |
//! | `http` | `http` | `palisade-http`: HTTP/gRPC classifiers, `Retry-After` hints, idempotency, rejection → response |
//! | `rate_limit_redis` | `redis` | `palisade-rate-limit-redis`: a fleet-wide GCRA limit on Redis, two-tier leased mode (one key or keyed) |
//! | `discovery` | `discovery-dns`, `discovery-etcd` | `palisade-discovery`: balancer endpoints from DNS A/AAAA/SRV, and (with `discovery-etcd`) etcd watches and lease registration |
//! | [`common`] | always | `palisade-core`: clocks, outcome classification, local rejections, events, errors, `test-util` mock backend |
//!
//! The five layer features (the four layers and `load-balancer`) are on by default; `full`
//! adds `http`, `redis`, `discovery-dns`, `serde`, `metrics` and `tracing`. `discovery-etcd` is
//! left out of `full` because its etcd client needs `protoc` at build time (install
//! `protobuf-compiler`, then enable it, or build with `--all-features` as CI does).
//! [`ServiceBuilderExt`] adds a method per layer to `ServiceBuilder`, and [`prelude`] imports
//! the handles and the shared vocabulary. (The shared crate is re-exported as `common`, not
//! `core`: a module named `core` would make `core::fmt` ambiguous after `use palisade::*;`.)
//!
//! # Example
//!
//! ```
//! # #[cfg(all(feature = "circuit-breaker", feature = "retry"))]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! use palisade::prelude::*;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! let breaker = CircuitBreaker::builder().name("payments").build()?;
//! let retry = RetryPolicy::builder().max_attempts(2).build()?;
//! let client = ServiceBuilder::new()
//!     .retry_policy(&retry)
//!     .circuit_breaker(&breaker)
//!     .service_fn(|amount: u64| async move { Ok::<_, tower::BoxError>(amount) });
//! assert_eq!(client.oneshot(7).await?, 7);
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "circuit-breaker", feature = "retry")))]
//! # fn main() {}
//! ```

//! # The order of layers
//!
//! A stack protects only as a whole. From the outside in (the first layer listed sees a
//! request first), and why each sits where it does:
//!
//! 1. **Fallback** (your own: e.g. `ServiceBuilder::map_result` turning an error into a
//!    degraded answer). Outermost, so it answers for everything below: the retry's last
//!    error and every layer's local rejection alike.
//! 2. **Retry**, with a budget, a deadline and a per-attempt timeout. Above every layer that
//!    can fail or refuse, so each attempt passes through them all again: it takes a fresh
//!    bulkhead slot, is counted by the breaker, and with a balancer below goes to another
//!    endpoint. The budget caps the extra load retries add in an incident, the deadline
//!    bounds the whole call (waits for readiness included), and the per-attempt timeout turns
//!    a hanging attempt into a failure the retry can act on (an attempt that no retry could
//!    follow runs on to the deadline instead: dropping it would only lose a late answer). A local rejection from below
//!    ([`Rejection`](common::Rejection): an open breaker, a full bulkhead, a rate limit) is
//!    returned at once by default, never slept on: waiting would defeat failing fast. With a
//!    balancer below, a server's `Retry-After` is its endpoint's own and the retry goes
//!    elsewhere: give the retry `remote_hint_per_endpoint()`, so that only a second hint in a
//!    row (the fleet saying it) makes a caller wait.
//! 3. **Rate limit** that models a partner's quota: below the retry, where attempts are
//!    counted, because the partner counts every attempt, retries included. (A limit that
//!    protects *your* service from its callers belongs at your server's edge, not here.)
//! 4. **Bulkhead or adaptive concurrency limit.** Caps the attempts in flight to the
//!    dependency, retries included, across all its endpoints; its rejection is local, so the
//!    breaker below never sees it and the breaker's rejections never shrink an adaptive limit.
//! 5. **Balancer** (feature `load-balancer`, or tower's p2c `Balance`), over the endpoints of
//!    the dependency: spreads attempts and skips endpoints that are not ready or not healthy.
//! 6. **Per endpoint: breaker (gate mode) or outlier health**, inside the balancer, so one
//!    failing endpoint is routed around instead of a breaker opening for the whole dependency.
//!    A hung endpoint needs no timeout of its own here: the retry's attempt timeout drops the
//!    stuck attempt and sends the next elsewhere, and Palisade's balancer takes each dropped
//!    call as a latency of at least that long, which prices the endpoint out
//!    (`tests/hung_endpoint.rs`). A timeout per endpoint (tower's `TimeoutLayer` under the
//!    breaker) makes a hang that endpoint's *failure*, counted by its breaker, the outlier
//!    detection and an adaptive limit above (as a drop), which the retry's timer does not;
//!    but it also says "an answer later than this is a failure" for every endpoint at once.
//!    Set one below the deadline and a slowdown of the whole dependency past it fails every
//!    call and opens every breaker where a bare client still answers them all: the README's
//!    stack with a 400 ms timeout per endpoint answered 0 of 2 000 requests while every
//!    endpoint took 450 ms, and 2 000 without it (`tests/status_failures.rs`). Only use one
//!    with a value the dependency must never exceed.
//! 7. **The client** of one endpoint.
//!
//! Without a balancer (one endpoint, or one client that balances by itself), steps 5 and 6
//! become one circuit breaker in reject mode between the bulkhead and the client.
//!
//! **One classifier for every layer that judges results.** Each layer classifies on its own:
//! the retry (its builder's `classify`), a breaker (`breaker.layer().classify(..)`,
//! [`ServiceBuilderExt::circuit_breaker_with`]), an adaptive bulkhead
//! ([`ServiceBuilderExt::bulkhead_with`]) and the balancer
//! ([`ServiceBuilderExt::balancer_with`], `Balancer::service_with`). Their default counts
//! only an `Err` as a failure. A client whose failures come back as `Ok` answers (HTTP: a
//! `500`; gRPC: a `grpc-status`) must give each of them the same classifier
//! (`palisade::http::HttpClassifier`, `GrpcClassifier`), not only the retry: to a balancer
//! with the default, an endpoint that answers `500` at once is the fastest endpoint there is.
//! Under the README's HTTP stack with only the retry classifying, such an endpoint drew 1 749
//! of 2 600 attempts and 1 149 of 2 000 requests failed; with every layer classifying, it drew
//! 6 and none failed (`tests/status_failures.rs`).
//!
//! ## The breaker's two modes
//!
//! - **Reject mode** (the default, `circuit_breaker::Mode::Reject`): an open breaker answers
//!   each call at once with `CircuitOpen`, from the response future; `poll_ready` stays
//!   ready. Use it wherever a caller, a retry or a bulkhead is directly above, the top of a
//!   stack in the sense that nothing above can route elsewhere: there, waiting for the breaker
//!   would defeat failing fast, and a fast local rejection is what the layers above know how
//!   to handle.
//! - **Gate mode** (`breaker.layer().gate()`, `circuit_breaker::Mode::Gate`): an open breaker
//!   is `Pending` in `poll_ready` until its half-open probes may start (a timer wakes the
//!   task). Use it per endpoint inside a balancer (Palisade's or tower's p2c `Balance`): a
//!   readiness-aware balancer then routes around the open endpoint instead of preferring its
//!   instant rejections as the fastest answers. Palisade's balancer tells an open gate
//!   (*shut*) from a busy endpoint: with every endpoint's breaker open it answers
//!   `NoHealthyEndpoints` at once, which the retry returns at once; tower's `Balance` waits.
//!   Never at the top of a stack, where `Pending` makes the caller wait out the open state.
//!
//! ```
//! # #[cfg(all(feature = "circuit-breaker", feature = "bulkhead", feature = "rate-limit", feature = "retry"))]
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower::BoxError> {
//! use palisade::prelude::*;
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! let retry = RetryPolicy::builder()
//!     .max_attempts(3)
//!     .deadline(Duration::from_secs(2))
//!     .attempt_timeout(Duration::from_millis(500))
//!     .build()?;
//! let quota = RateLimiter::builder().rate(100, Duration::from_secs(1)).burst(10).build()?;
//! let bulkhead = Bulkhead::builder().max_concurrent_calls(32).build()?;
//! let breaker = CircuitBreaker::builder().name("inventory").build()?;
//!
//! let client = ServiceBuilder::new()
//!     // 1. fallback: a degraded answer when everything below said no
//!     .map_result(|result: Result<u32, tower::BoxError>| Ok::<_, tower::BoxError>(result.unwrap_or(0)))
//!     .retry_policy(&retry) // 2.
//!     .rate_limiter(&quota) // 3. the partner's quota counts attempts
//!     .bulkhead(&bulkhead) // 4.
//!     .circuit_breaker(&breaker) // 6. one endpoint: reject mode, no balancer
//!     .service_fn(|id: u32| async move { Ok::<_, tower::BoxError>(id) });
//! assert_eq!(client.oneshot(7).await?, 7);
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "circuit-breaker", feature = "bulkhead", feature = "rate-limit", feature = "retry")))]
//! # fn main() {}
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder_ext;
pub mod fallback;
#[cfg(feature = "serde")]
pub mod registry;

pub use builder_ext::ServiceBuilderExt;
/// `palisade-core`, the vocabulary every layer shares: clocks, outcome classification, local
/// rejections, events and metrics, errors, and (feature `test-util`) the mock backend.
///
/// Named `common` rather than `core`, so that `use palisade::*;` leaves `core::fmt` and the
/// other paths into the language's `core` unambiguous:
///
/// ```
/// use palisade::*;
/// // `core` is still the language's own (a `palisade::core` made this error E0659).
/// use core::fmt::Write as _;
///
/// let mut text = String::new();
/// write!(text, "{}", common::Outcome::Success.as_str()).unwrap();
/// assert_eq!(text, "success");
/// ```
pub use palisade_core as common;

#[cfg(feature = "bulkhead")]
pub use palisade_bulkhead as bulkhead;
#[cfg(feature = "circuit-breaker")]
pub use palisade_circuit_breaker as circuit_breaker;
/// `palisade-discovery` (feature `discovery-dns`; etcd with `discovery-etcd`): the balancer's
/// endpoints from DNS records re-resolved on their TTL, or from an etcd prefix.
///
/// ```
/// use palisade::discovery::{DiscoveryEvent, DnsDiscovery, Endpoint};
///
/// fn takes<T>() {}
/// takes::<(DnsDiscovery, Endpoint, DiscoveryEvent)>();
/// // With `discovery-etcd`, the etcd side too.
/// # #[cfg(feature = "discovery-etcd")]
/// takes::<(palisade::discovery::EtcdDiscovery, palisade::discovery::EtcdRegistration)>();
/// ```
#[cfg(feature = "discovery-dns")]
pub use palisade_discovery as discovery;
#[cfg(feature = "http")]
pub use palisade_http as http;
#[cfg(feature = "load-balancer")]
pub use palisade_load_balancer as load_balancer;
#[cfg(feature = "rate-limit")]
pub use palisade_rate_limit as rate_limit;
/// `palisade-rate-limit-redis` (feature `redis`): a rate limit shared by a fleet, GCRA on
/// Redis, with a two-tier leased mode for one key or per key.
///
/// ```no_run
/// use palisade::rate_limit_redis::{KeyedLeasedRateLimiter, RedisRateLimiter};
/// use std::time::Duration;
///
/// # fn main() -> Result<(), palisade::common::ConfigError> {
/// let global = RedisRateLimiter::builder()
///     .url("redis://127.0.0.1:6379/")
///     .rate(1_000, Duration::from_secs(1))
///     .burst(50)
///     .build()?;
/// let per_tenant: KeyedLeasedRateLimiter<u64> = global.keyed_leased().build()?;
/// # let _ = per_tenant;
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "redis")]
pub use palisade_rate_limit_redis as rate_limit_redis;
#[cfg(feature = "retry")]
pub use palisade_retry as retry;

/// The handles, the rejections to `downcast_ref` to, the shared vocabulary (local
/// rejections, classification, clock, errors) and [`ServiceBuilderExt`].
///
/// ```
/// # #[cfg(feature = "circuit-breaker")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), palisade::common::BoxError> {
/// use palisade::prelude::*;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// let breaker = CircuitBreaker::builder().name("search").build()?;
/// breaker.force_open();
/// let client = ServiceBuilder::new()
///     .circuit_breaker(&breaker)
///     .service_fn(|q: &'static str| async move { Ok::<_, BoxError>(q.len()) });
/// let error: BoxError = client.oneshot("rust").await.unwrap_err();
/// // A layer said no (the dependency was never asked): found without naming the layer.
/// assert!(is_local_rejection(&*error));
/// assert_eq!(rejection(&*error).map(Rejection::kind), Some(RejectionKind::CircuitOpen));
/// assert!(error.downcast_ref::<CircuitOpen>().is_some());
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "circuit-breaker"))]
/// # fn main() {}
/// ```
pub mod prelude {
    pub use crate::ServiceBuilderExt;
    pub use palisade_core::{
        BoxError, Classify, Clock, ConfigError, ErrorIsFailure, Outcome, Rejection, RejectionKind,
        RetryAfter, is_local_rejection, rejection, retry_after,
    };

    #[cfg(feature = "bulkhead")]
    pub use palisade_bulkhead::{Bulkhead, BulkheadFull, WaitTimeout};
    #[cfg(feature = "circuit-breaker")]
    pub use palisade_circuit_breaker::{CircuitBreaker, CircuitOpen};
    #[cfg(feature = "load-balancer")]
    pub use palisade_load_balancer::{Balancer, NoHealthyEndpoints};
    #[cfg(feature = "rate-limit")]
    pub use palisade_rate_limit::{KeyedRateLimiter, RateLimited, RateLimiter};
    #[cfg(feature = "retry")]
    pub use palisade_retry::{RetryBudget, RetryPolicy};
}

/// The README's code blocks, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
