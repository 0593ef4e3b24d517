//! The handle of the global limiter: one GCRA bucket per key in Redis.

use crate::config::{FailureMode, LeasedRateLimiterBuilder, RedisRateLimiterBuilder};
use crate::error::{CostExceedsBurst, RateLimited, StoreErrorKind, StoreUnavailable};
use crate::events::RedisRateLimiterEvent;
use crate::layer::RedisRateLimiterLayer;
use crate::script::{self, BadReply, Reply};
use palisade_core::events::{EventBus, ListenerId};
use palisade_core::{BoxError, Clock, ConfigError, Listener};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A rate limit shared by every replica of a service, kept in Redis: a GCRA bucket per key,
/// decided atomically by one script call (one round trip) on the Redis server's clock.
///
/// A handle: `Clone` is an `Arc` clone, every clone and every service built from it share one
/// connection and one set of counters. See the [crate docs](crate) for semantics, the
/// failure mode and the two-tier mode.
///
/// # Memory ordering
///
/// The handle's atomics are statistics (`Relaxed`: each is read alone by
/// [`snapshot`](Self::snapshot), no other memory depends on them) and the `available` flag,
/// which only decides which of two events to emit and is swapped (`AcqRel`) so that exactly one
/// caller sees each transition. The skip window after an outage is three `Relaxed` words, each
/// an independent hint: a stale read costs one round trip more or one skipped call.
#[derive(Clone)]
pub struct RedisRateLimiter {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    name: String,
    key_prefix: String,
    interval_us: u64,
    burst: u32,
    call_timeout: Duration,
    reconnect_min: Duration,
    reconnect_max: Duration,
    failure_mode: FailureMode,
    /// Times round trips (events and metrics only; decisions use the Redis server's clock).
    clock: Clock,
    client: redis::Client,
    manager_config: ConnectionManagerConfig,
    /// Made at the first call, inside the caller's tokio runtime (the manager spawns its
    /// reconnection there); `build()` needs no runtime.
    connection: OnceLock<Result<ConnectionManager, String>>,
    script: redis::Script,
    available: AtomicBool,
    /// After a timeout or connection error, calls skip Redis (straight to the failure mode)
    /// until this instant (nanoseconds of `clock`; 0: none), so a blackholed Redis costs each
    /// call nothing instead of a full call timeout, and a struggling one gets no retry storm.
    skip_until: AtomicU64,
    /// The current skip window in nanoseconds: `reconnect_min`, doubling per failure up to
    /// `reconnect_max`; 0 after a success.
    skip_nanos: AtomicU64,
    /// The kind of the failure that opened the skip window (`StoreErrorKind` as `u8`).
    skip_kind: std::sync::atomic::AtomicU8,
    stats: Stats,
    pub(crate) events: EventBus<RedisRateLimiterEvent>,
}

#[derive(Default)]
struct Stats {
    permitted: AtomicU64,
    rejected: AtomicU64,
    store_errors: AtomicU64,
    fallbacks: AtomicU64,
    round_trips: AtomicU64,
    outage_failures: AtomicU64,
}

/// A point-in-time view of a [`RedisRateLimiter`]'s counters (each read on its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// Calls admitted (by Redis or, in an outage, the fallback), leases counted once.
    pub permitted: u64,
    /// Calls rejected as over the limit.
    pub rejected: u64,
    /// Calls Redis did not decide (timeout, connection, script or reply error).
    pub store_errors: u64,
    /// Of those, calls the fail-open fallback limiter decided.
    pub fallbacks: u64,
    /// Commands sent to Redis (a `NOSCRIPT` retry counts twice).
    pub round_trips: u64,
    /// Whether the last round trip succeeded.
    pub available: bool,
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("name", &self.inner.name)
            .field("interval_us", &self.inner.interval_us)
            .field("burst", &self.inner.burst)
            .field("failure_mode", &self.inner.failure_mode)
            .finish_non_exhaustive()
    }
}

/// A failed round trip, before the failure mode turns it into a decision.
#[derive(Debug)]
pub(crate) struct StoreError {
    pub(crate) kind: StoreErrorKind,
    pub(crate) detail: String,
}

impl From<BadReply> for StoreError {
    fn from(bad: BadReply) -> Self {
        StoreError {
            kind: StoreErrorKind::Reply,
            detail: bad.to_string(),
        }
    }
}

fn classify(error: &redis::RedisError) -> StoreErrorKind {
    if error.is_timeout() {
        StoreErrorKind::Timeout
    } else if error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
    {
        StoreErrorKind::Connection
    } else if matches!(
        error.kind(),
        redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType
    ) {
        StoreErrorKind::Reply
    } else {
        StoreErrorKind::Script
    }
}

impl RedisRateLimiter {
    /// Starts a builder.
    ///
    /// ```
    /// use palisade_rate_limit_redis::RedisRateLimiter;
    /// use std::time::Duration;
    ///
    /// let limiter = RedisRateLimiter::builder()
    ///     .url("redis://127.0.0.1:6379/")
    ///     .name("partner_api")
    ///     .rate(1_000, Duration::from_secs(1))
    ///     .burst(50)
    ///     .build()?; // connects at the first call
    /// # Ok::<(), palisade_core::ConfigError>(())
    /// ```
    #[must_use]
    pub fn builder() -> RedisRateLimiterBuilder {
        RedisRateLimiterBuilder::default()
    }

    pub(crate) fn from_builder(b: RedisRateLimiterBuilder) -> Result<Self, ConfigError> {
        if b.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        let interval_us = b.interval_us()?;
        let burst = b.burst.unwrap_or(1);
        if burst == 0 {
            return Err(ConfigError::new("burst", "must be at least 1"));
        }
        if b.call_timeout.is_zero() {
            return Err(ConfigError::new("call_timeout", "must be above zero"));
        }
        if b.reconnect_min.is_zero() || b.reconnect_min > b.reconnect_max {
            return Err(ConfigError::new(
                "reconnect_backoff",
                "needs 0 < min <= max",
            ));
        }
        let url = b
            .url
            .as_deref()
            .ok_or_else(|| ConfigError::new("url", "is required"))?;
        let client = redis::Client::open(url)
            .map_err(|e| ConfigError::new("url", format!("not a Redis URL: {e}")))?;
        let min_ms = u64::try_from(b.reconnect_min.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(b.call_timeout))
            .set_connection_timeout(Some(b.call_timeout.max(Duration::from_millis(200))))
            .set_min_delay(Duration::from_millis(min_ms))
            .set_max_delay(b.reconnect_max)
            .set_exponent_base(2.0)
            .set_number_of_retries(3);
        let inner = Arc::new(Inner {
            name: b.name,
            key_prefix: b.key_prefix,
            interval_us,
            burst,
            call_timeout: b.call_timeout,
            reconnect_min: b.reconnect_min,
            reconnect_max: b.reconnect_max,
            failure_mode: b.failure_mode,
            clock: Clock::default(),
            client,
            manager_config,
            connection: OnceLock::new(),
            script: redis::Script::new(script::GCRA_LUA),
            available: AtomicBool::new(true),
            skip_until: AtomicU64::new(0),
            skip_nanos: AtomicU64::new(0),
            skip_kind: std::sync::atomic::AtomicU8::new(0),
            stats: Stats::default(),
            events: EventBus::new(),
        });
        palisade_core::subscribe_feature_listeners!(inner.events, "rate_limit", inner.name);
        Ok(RedisRateLimiter { inner })
    }

    /// Takes `cost` tokens from the bucket of `key`, in one round trip.
    ///
    /// # Errors
    ///
    /// [`RateLimited`] when the bucket lacks `cost` tokens (with the wait), [`CostExceedsBurst`]
    /// when it can never hold them (no round trip), and when Redis cannot decide within the
    /// call timeout: [`StoreUnavailable`] in [`FailureMode::Closed`], the fallback's decision
    /// (as [`RateLimited`] or [`CostExceedsBurst`]) in [`FailureMode::Open`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes may or may not have taken the tokens (the
    /// script may already run on the server), never more than `cost`.
    pub async fn acquire(&self, key: &str, cost: u32) -> Result<(), BoxError> {
        if cost == 0 {
            return Ok(());
        }
        if cost > self.inner.burst {
            return Err(CostExceedsBurst::new(cost, self.inner.burst).into());
        }
        match self.round_trip(key, cost, cost).await {
            Ok(reply) if reply.granted > 0 => {
                self.permitted(cost, true);
                Ok(())
            }
            Ok(reply) => Err(self
                .rejected(cost, Duration::from_micros(reply.retry_after_us))
                .into()),
            Err(error) => self.fail(cost, error),
        }
    }

    /// Tokens the bucket of `key` has now, in one round trip (takes none).
    ///
    /// # Errors
    ///
    /// A [`StoreUnavailable`] when Redis cannot answer within the call timeout.
    pub async fn available(&self, key: &str) -> Result<u64, BoxError> {
        match self.round_trip(key, 1, 0).await {
            Ok(reply) => Ok(reply.available + reply.granted),
            Err(e) => Err(StoreUnavailable::new(e.kind, e.detail, self.inner.reconnect_min).into()),
        }
    }

    /// A two-tier limiter on the bucket `key`: calls spend tokens leased in small batches,
    /// so most calls take no round trip. See [`LeasedRateLimiter`](crate::LeasedRateLimiter).
    #[must_use]
    pub fn leased(&self, key: impl Into<String>) -> LeasedRateLimiterBuilder {
        LeasedRateLimiterBuilder::new(self.clone(), key.into())
    }

    /// A keyed two-tier limiter: one leased pool per key `K` (its Redis bucket is
    /// `{prefix}{name}:{key}`, the key written with `Display`), in bounded memory. See
    /// [`KeyedLeasedRateLimiter`](crate::KeyedLeasedRateLimiter).
    #[must_use]
    pub fn keyed_leased<K>(&self) -> crate::KeyedLeasedRateLimiterBuilder<K> {
        crate::KeyedLeasedRateLimiterBuilder::new(self.clone())
    }

    /// A layer that rate limits each request on the bucket and cost `key_and_cost` gives it.
    pub fn layer<F>(&self, key_and_cost: F) -> RedisRateLimiterLayer<F> {
        RedisRateLimiterLayer::new(self.clone(), key_and_cost)
    }

    /// The name (events, metrics, and part of the keys).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The bucket's capacity.
    #[must_use]
    pub fn burst(&self) -> u32 {
        self.inner.burst
    }

    /// The emission interval: the time one token takes to come back.
    #[must_use]
    pub fn interval(&self) -> Duration {
        Duration::from_micros(self.inner.interval_us)
    }

    /// The call timeout.
    #[must_use]
    pub fn call_timeout(&self) -> Duration {
        self.inner.call_timeout
    }

    /// The counters.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        let s = &self.inner.stats;
        // Relaxed: statistics, each read on its own (see the type's memory ordering docs).
        Snapshot {
            permitted: s.permitted.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
            store_errors: s.store_errors.load(Ordering::Relaxed),
            fallbacks: s.fallbacks.load(Ordering::Relaxed),
            round_trips: s.round_trips.load(Ordering::Relaxed),
            // Relaxed: a hint for the caller; no memory is published with it.
            available: self.inner.available.load(Ordering::Relaxed),
        }
    }

    /// Registers a listener for this limiter's events (and those of leased limiters built
    /// from it).
    pub fn subscribe<L: Listener<RedisRateLimiterEvent>>(&self, listener: L) -> ListenerId {
        self.inner.events.subscribe(listener)
    }

    /// Removes a listener; `false` if it was not registered.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        self.inner.events.unsubscribe(id)
    }

    pub(crate) fn permitted(&self, cost: u32, round_trip: bool) {
        // Relaxed: statistics only, read by snapshot().
        self.inner.stats.permitted.fetch_add(1, Ordering::Relaxed);
        self.inner
            .events
            .emit_call_with(|| RedisRateLimiterEvent::Permitted { cost, round_trip });
    }

    pub(crate) fn rejected(&self, cost: u32, retry_after: Duration) -> RateLimited {
        // Relaxed: statistics only, read by snapshot().
        self.inner.stats.rejected.fetch_add(1, Ordering::Relaxed);
        self.inner
            .events
            .emit_call_with(|| RedisRateLimiterEvent::Rejected { cost, retry_after });
        RateLimited::new(retry_after)
    }

    /// Emits a per-call event (traced at `TRACE`: a lease granted), built only when consumed.
    pub(crate) fn emit(&self, event: impl FnOnce() -> RedisRateLimiterEvent) {
        self.inner.events.emit_call_with(event);
    }

    /// The failure mode decides a call Redis could not.
    pub(crate) fn fail(&self, cost: u32, error: StoreError) -> Result<(), BoxError> {
        let inner = &self.inner;
        // Relaxed: statistics only, read by snapshot().
        inner.stats.store_errors.fetch_add(1, Ordering::Relaxed);
        inner.stats.outage_failures.fetch_add(1, Ordering::Relaxed);
        // AcqRel: a swap, so exactly one of the callers that saw Redis fail emits the outage
        // event; nothing else is published through this flag.
        if inner.available.swap(false, Ordering::AcqRel) {
            let (kind, detail) = (error.kind, error.detail.clone());
            inner
                .events
                .emit_with(|| RedisRateLimiterEvent::StoreUnavailable { kind, detail });
        }
        match &inner.failure_mode {
            FailureMode::Closed => {
                let kind = error.kind;
                inner
                    .events
                    .emit_with(|| RedisRateLimiterEvent::StoreError {
                        kind,
                        fell_back: false,
                    });
                Err(StoreUnavailable::new(error.kind, error.detail, inner.reconnect_min).into())
            }
            FailureMode::Open(local) => {
                // Relaxed: statistics only, read by snapshot().
                inner.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
                let kind = error.kind;
                inner
                    .events
                    .emit_with(|| RedisRateLimiterEvent::StoreError {
                        kind,
                        fell_back: true,
                    });
                match local.check_n(cost) {
                    Ok(Ok(())) => {
                        self.permitted(cost, false);
                        Ok(())
                    }
                    Ok(Err(limited)) => Err(self.rejected(cost, limited.retry_after()).into()),
                    Err(too_big) => Err(CostExceedsBurst::new(cost, too_big.burst()).into()),
                }
            }
        }
    }

    fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let inner = &self.inner;
        let made = inner.connection.get_or_init(|| {
            ConnectionManager::new_lazy_with_config(
                inner.client.clone(),
                inner.manager_config.clone(),
            )
            .map_err(|e| e.to_string())
        });
        match made {
            Ok(manager) => Ok(manager.clone()),
            Err(detail) => Err(StoreError {
                kind: StoreErrorKind::Connection,
                detail: detail.clone(),
            }),
        }
    }

    /// One script call (two on `NOSCRIPT`), bounded by the call timeout as a whole.
    pub(crate) async fn round_trip(
        &self,
        key: &str,
        need: u32,
        want: u32,
    ) -> Result<Reply, StoreError> {
        let inner = &self.inner;
        let started = inner.clock.now();
        // Relaxed: the skip window is a hint; a stale read costs one round trip more or less.
        if started.as_nanos() < inner.skip_until.load(Ordering::Relaxed) {
            let kind = match inner.skip_kind.load(Ordering::Relaxed) {
                0 => StoreErrorKind::Timeout,
                _ => StoreErrorKind::Connection,
            };
            return Err(StoreError {
                kind,
                detail: "Redis failed recently; not asked until the backoff ends".to_owned(),
            });
        }
        let result = tokio::time::timeout(inner.call_timeout, self.eval(key, need, want)).await;
        let reply = match result {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                if e.kind == StoreErrorKind::Connection {
                    self.open_skip_window(started, e.kind);
                }
                return Err(e);
            }
            Err(_elapsed) => {
                self.open_skip_window(started, StoreErrorKind::Timeout);
                return Err(StoreError {
                    kind: StoreErrorKind::Timeout,
                    detail: format!("no answer within {:?}", inner.call_timeout),
                });
            }
        };
        // Relaxed: as above; read first so that the common case (no window) writes nothing.
        if inner.skip_nanos.load(Ordering::Relaxed) != 0 {
            inner.skip_nanos.store(0, Ordering::Relaxed);
        }
        let latency = inner.clock.elapsed_since(started);
        inner
            .events
            .emit_call_with(|| RedisRateLimiterEvent::RoundTrip { latency });
        // AcqRel: a swap, so exactly one caller emits the recovery; see `fail`.
        if !inner.available.swap(true, Ordering::AcqRel) {
            // Relaxed: statistics of the outage, read and reset by the one caller that saw
            // the transition.
            let failed_calls = inner.stats.outage_failures.swap(0, Ordering::Relaxed);
            inner
                .events
                .emit_with(|| RedisRateLimiterEvent::StoreRecovered { failed_calls });
        } else {
            // Relaxed: as above; the outage counter only matters between the two events.
            inner.stats.outage_failures.store(0, Ordering::Relaxed);
        }
        Ok(reply)
    }

    /// A timeout or connection error: skip Redis for the next backoff step. Script and reply
    /// errors do not open a window: they belong to one key or one reply, not to the store.
    fn open_skip_window(&self, now: palisade_core::Instant, kind: StoreErrorKind) {
        let inner = &self.inner;
        let min = u64::try_from(inner.reconnect_min.as_nanos()).unwrap_or(u64::MAX);
        let max = u64::try_from(inner.reconnect_max.as_nanos()).unwrap_or(u64::MAX);
        // Relaxed: each word is an independent hint (see `skip_until`); callers failing at
        // once may double the window more than once, which the cap bounds.
        let last = inner.skip_nanos.load(Ordering::Relaxed);
        let window = if last == 0 {
            min
        } else {
            last.saturating_mul(2).min(max)
        };
        inner.skip_nanos.store(window, Ordering::Relaxed);
        inner
            .skip_kind
            .store(u8::from(kind != StoreErrorKind::Timeout), Ordering::Relaxed);
        inner
            .skip_until
            .store(now.as_nanos().saturating_add(window), Ordering::Relaxed);
    }

    async fn eval(&self, key: &str, need: u32, want: u32) -> Result<Reply, StoreError> {
        let inner = &self.inner;
        let mut conn = self.connection()?;
        let full_key = format!("{}{}:{}", inner.key_prefix, inner.name, key);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(inner.script.get_hash())
            .arg(1)
            .arg(&full_key)
            .arg(inner.interval_us)
            .arg(inner.burst)
            .arg(need)
            .arg(want);
        // Relaxed: statistics only, read by snapshot().
        inner.stats.round_trips.fetch_add(1, Ordering::Relaxed);
        let value = match cmd.query_async::<redis::Value>(&mut conn).await {
            Ok(value) => value,
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // A Redis restarted (or `SCRIPT FLUSH`ed) since the script was cached: EVAL
                // runs it and caches it again, so the next call is an EVALSHA again.
                let mut eval = redis::cmd("EVAL");
                eval.arg(script::GCRA_LUA)
                    .arg(1)
                    .arg(&full_key)
                    .arg(inner.interval_us)
                    .arg(inner.burst)
                    .arg(need)
                    .arg(want);
                // Relaxed: statistics only, read by snapshot().
                inner.stats.round_trips.fetch_add(1, Ordering::Relaxed);
                eval.query_async::<redis::Value>(&mut conn)
                    .await
                    .map_err(|e| StoreError {
                        kind: classify(&e),
                        detail: e.to_string(),
                    })?
            }
            Err(e) => {
                return Err(StoreError {
                    kind: classify(&e),
                    detail: e.to_string(),
                });
            }
        };
        Ok(script::parse_reply(&value, need, want)?)
    }
}
