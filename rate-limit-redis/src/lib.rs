//! A rate limit shared by a fleet: GCRA on Redis, for tower, with a two-tier mode that keeps
//! most calls off the network.
//!
//! Twenty replicas of a service that must share one partner quota of 1 000 requests/s cannot
//! each run a local limiter of 50/s (the load is never spread evenly, and replicas come and
//! go). Here the bucket lives in Redis, as Envoy's global rate limit service keeps its counters:
//! a [`RedisRateLimiter`] decides each call with one script call, atomic per key, on the Redis
//! server's clock (so the replicas' clocks need not agree). A [`LeasedRateLimiter`] leases
//! small batches of tokens instead, so that most calls cost one CAS; a
//! [`KeyedLeasedRateLimiter`] does so per key (tenant, route), in bounded memory.
//!
//! ```no_run
//! use palisade_rate_limit_redis::{RedisRateLimiter, RateLimited};
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let global = RedisRateLimiter::builder()
//!     .url("redis://127.0.0.1:6379/")
//!     .name("partner_api")
//!     .rate(1_000, Duration::from_secs(1)) // for the whole fleet
//!     .burst(50)
//!     .build()?;
//!
//! // One bucket per tenant, one token per request:
//! let mut svc = ServiceBuilder::new()
//!     .layer(global.layer(|req: &(String, u32)| (req.0.clone(), 1)))
//!     .service_fn(|req: (String, u32)| async move { Ok::<_, tower::BoxError>(req.1) });
//! match svc.ready().await?.call(("tenant-a".to_owned(), 7)).await {
//!     Ok(n) => assert_eq!(n, 7),
//!     Err(e) if e.is::<RateLimited>() => { /* over the fleet's quota */ }
//!     Err(e) => return Err(e),
//! }
//!
//! // Two-tier: one pool for the whole partner API, leased in batches of up to 16.
//! let leased = global.leased("all").max_batch(16).build()?;
//! let mut svc = ServiceBuilder::new()
//!     .layer(leased.layer())
//!     .service_fn(|req: u32| async move { Ok::<_, tower::BoxError>(req) });
//! svc.ready().await?.call(1).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Semantics
//!
//! The local limiter's ([`palisade_rate_limit`]): a bucket of `burst` tokens refilled at
//! `rate` per `period`; a request of cost `n` is admitted exactly when the bucket holds `n`
//! tokens; in any window `T` at most `burst + rate·T` tokens are admitted; a rejection is a
//! [`RateLimited`] carrying the wait (`palisade_core::retry_after` finds it), a cost above the
//! burst is [`CostExceedsBurst`] at once. Time is the Redis server's `TIME` in microseconds
//! (the emission interval is rounded up to whole microseconds). Each key has its own bucket
//! (`{prefix}{name}:{key}`), which expires from Redis once full again, so idle keys cost no
//! memory.
//!
//! The script ([`GCRA_SCRIPT`]) is sent by `EVALSHA` of its SHA-1; on `NOSCRIPT` (a
//! restarted or flushed Redis) the call is repeated once with `EVAL`, which caches it again.
//!
//! # Two-tier mode and its bound
//!
//! [`LeasedRateLimiter`]: calls spend tokens from a local pool (one `AtomicU64`, a CAS per
//! call); an empty pool is refilled by one round trip that leases a batch of
//! `rate × lease_target` tokens at this replica's recent rate (1 to `max_batch`, doubling at
//! most per lease); unspent tokens expire after `lease_ttl`. **The fleet admits at most
//! `R·T + burst + L` in any window `T`, where `L` is the tokens outstanding in leases, at most
//! `replicas × max_batch` for unit costs** (see [`LeasedRateLimiter`] for the argument).
//!
//! [`KeyedLeasedRateLimiter`] keeps one such pool per key, its layer taking the key from the
//! request (`Fn(&Req) -> K`): the same bound holds for each key on its own bucket. Its keys
//! are capped ([`max_keys`](KeyedLeasedRateLimiterBuilder::max_keys)); a key whose pool holds
//! no valid token and is not being refilled is idle and evicted when room is needed, and a
//! new key finding only busy keys is refused with [`TooManyKeys`] (the local keyed limiter's
//! rules and type).
//!
//! # When Redis is unreachable, slow or restarting
//!
//! Every call is bounded by [`call_timeout`](RedisRateLimiterBuilder::call_timeout) (50 ms by
//! default), connecting and a `NOSCRIPT` retry included: no call hangs. Then the
//! [`FailureMode`] decides: [`FailureMode::Closed`] (the default, see there for why) rejects
//! with [`StoreUnavailable`], [`FailureMode::Open`] decides with a local
//! `palisade_rate_limit::RateLimiter` sized to the replica's share. Script errors (a bucket
//! key overwritten with another type, a read-only replica) and replies of the wrong type take
//! the same path, with their own [`StoreErrorKind`]; nothing panics and nothing is admitted
//! by mistake. The connection ([`redis`]' `ConnectionManager`) reconnects in the background
//! with exponential backoff and jitter
//! ([`reconnect_backoff`](RedisRateLimiterBuilder::reconnect_backoff)), and after a timeout
//! or a connection error calls skip Redis for the same backoff (doubling while it keeps
//! failing, reset by a success), so a blackholed Redis costs each call nothing rather than a
//! call timeout and gets no retry storm. A Redis restarted
//! without persistence forgets its buckets: each restart may admit one more burst.
//!
//! # Events and metrics
//!
//! [`RedisRateLimiterEvent`]: per call `Permitted`/`Rejected`/`RoundTrip`/`LeaseGranted`
//! (`TRACE` with `tracing`), `StoreError` per undecided call (`DEBUG`), and once per outage
//! `StoreUnavailable` (`WARN`) and `StoreRecovered` (`INFO`). With the `metrics` feature see
//! `RedisRateLimiterMetrics` for the table (`palisade_rate_limit_calls_total{name, outcome}`,
//! `palisade_rate_limit_store_errors_total{name, kind}`,
//! `palisade_rate_limit_store_available{name}`, …; default `name` `rate_limit_redis`).
//! [`RedisRateLimiter::snapshot`] counts round trips, errors and fallbacks.
//!
//! # Why `redis` and not `fred`
//!
//! `redis` (redis-rs) is the client most of the ecosystem already has in its lock file, with
//! one well-known maintainer team; its tokio `ConnectionManager` is exactly what a limiter
//! needs: one multiplexed connection shared by every clone, reconnection in the background
//! with exponential backoff and jitter, a response timeout, and lazy connection (a limiter can
//! be built before Redis is up). `fred` has more (cluster routing, pools, client-side
//! caching) that a one-script limiter does not use, a larger build, and reconnection policies
//! that would duplicate the failure mode this crate owns. With default features off,
//! `redis` adds ~45 s to a cold build on 2 cores.
//!
//! # Running the tests
//!
//! The integration tests (`tests/redis.rs`) run against a real `redis-server`:
//! `source .ci/services.sh` (installs it when missing, starts it on a free port, exports
//! `PALISADE_REDIS_URL`), then `cargo test -p palisade-rate-limit-redis`. Without
//! `PALISADE_REDIS_URL` they print why and skip, except under `CI`, where they fail.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
mod events;
pub mod future;
mod keyed_leased_rate_limiter;
mod layer;
mod leased_rate_limiter;
mod redis_rate_limiter;
mod script;
mod service;

pub use config::{
    FailureMode, KeyedLeasedRateLimiterBuilder, LeasedRateLimiterBuilder, RedisRateLimiterBuilder,
};
pub use error::{CostExceedsBurst, RateLimited, StoreErrorKind, StoreUnavailable, TooManyKeys};
pub use events::RedisRateLimiterEvent;
#[cfg(feature = "metrics")]
pub use events::RedisRateLimiterMetrics;
pub use keyed_leased_rate_limiter::{KeyedLeasedRateLimiter, KeyedLeasedSnapshot};
pub use layer::{KeyedLeasedRateLimiterLayer, LeasedRateLimiterLayer, RedisRateLimiterLayer};
pub use leased_rate_limiter::{LeasedRateLimiter, LeasedSnapshot};
pub use redis_rate_limiter::{RedisRateLimiter, Snapshot};
pub use service::{
    KeyedLeasedRateLimiterService, LeasedRateLimiterService, RedisRateLimiterService,
};

/// The Lua source of the GCRA script Redis runs (for review, or to load it by hand).
pub const GCRA_SCRIPT: &str = script::GCRA_LUA;
