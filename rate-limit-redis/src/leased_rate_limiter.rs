//! The two-tier limiter: a local pool of tokens leased in small batches from the global
//! bucket.

use crate::StoreErrorKind;
use crate::config::LeasedRateLimiterBuilder;
use crate::error::CostExceedsBurst;
use crate::events::RedisRateLimiterEvent;
use crate::layer::LeasedRateLimiterLayer;
use crate::redis_rate_limiter::{RedisRateLimiter, StoreError};
use palisade_core::events::ListenerId;
use palisade_core::{BoxError, Clock, ConfigError, Instant, Listener};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bits of the lease word that count the tokens left.
const TOKEN_BITS: u32 = 24;
/// The most tokens a lease word holds.
const TOKEN_MAX: u64 = (1 << TOKEN_BITS) - 1;
/// The lease's expiry, in milliseconds of the limiter's clock, sits above the tokens (40 bits:
/// 34 years).
const EXPIRY_SHIFT: u32 = TOKEN_BITS;

/// The state of the local pool, packed into one `AtomicU64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lease {
    expires_ms: u64,
    tokens: u64,
}

impl Lease {
    fn unpack(word: u64) -> Lease {
        Lease {
            expires_ms: word >> EXPIRY_SHIFT,
            tokens: word & TOKEN_MAX,
        }
    }

    fn pack(self) -> u64 {
        (self.expires_ms << EXPIRY_SHIFT) | self.tokens.min(TOKEN_MAX)
    }

    /// Pure transition: spend `cost` tokens at `now_ms`, if the lease is valid and holds them.
    fn spend(self, cost: u64, now_ms: u64) -> Option<Lease> {
        (now_ms <= self.expires_ms && self.tokens >= cost).then(|| Lease {
            tokens: self.tokens - cost,
            ..self
        })
    }

    /// Pure transition: add `tokens` leased at `now_ms`, valid until `expires_ms`; tokens of an
    /// expired lease are dropped. Returns the new lease and the tokens dropped.
    fn deposit(self, tokens: u64, now_ms: u64, expires_ms: u64) -> (Lease, u64) {
        let (kept, dropped) = if now_ms <= self.expires_ms {
            (self.tokens, 0)
        } else {
            (0, self.tokens)
        };
        let lease = Lease {
            expires_ms,
            tokens: (kept + tokens).min(TOKEN_MAX),
        };
        (lease, dropped)
    }
}

/// The adaptive batch, a pure function: the tokens the last lease held spread over the time it
/// lasted give this replica's rate; the next batch covers `target` at that rate, at most twice
/// the last one and at most `max_batch`, at least 1. The first lease is 1 token.
fn next_batch(last: Option<(Instant, u32)>, now: Instant, target: Duration, max_batch: u32) -> u32 {
    let Some((at, last_batch)) = last else {
        return 1;
    };
    let lasted = now.saturating_duration_since(at).as_secs_f64().max(1e-6);
    let rate = f64::from(last_batch) / lasted;
    let wanted = (rate * target.as_secs_f64()).ceil();
    let cap = last_batch.saturating_mul(2).min(max_batch);
    if wanted >= f64::from(cap) {
        cap.max(1)
    } else {
        // In range: 1 <= wanted < cap <= u32::MAX.
        (wanted as u32).max(1)
    }
}

/// A two-tier rate limit: each replica spends tokens from a local pool that it leases in
/// small batches from the global Redis bucket, so most calls cost one CAS and no round trip.
///
/// Made by [`RedisRateLimiter::leased`]; one pool per handle (one bucket `key`). Calls that
/// find the pool empty share one refill (a batch of `max(cost, adaptive batch)` tokens, see
/// [`LeasedRateLimiterBuilder::lease_target`]); Redis grants what it has, so a partly empty
/// bucket still serves the call.
///
/// # The bound
///
/// Redis grants at most `R·T + burst` tokens in any window `T` (GCRA, on its own clock).
/// A token is spent at most once, after it was granted and before its lease expires. So the
/// fleet admits, in any window `T`, at most **`R·T + burst + L`**, where `L` is the tokens
/// outstanding in leases at the window's start: for unit costs at most `replicas × max_batch`
/// (a pool refills only when empty). A Redis restarted without persistence forgets its
/// buckets and grants a fresh burst: add one `burst` per restart in the window. Tested in
/// `tests/redis.rs` (`leased_fleet_stays_within_the_bound*`).
///
/// # Refusals stay local
///
/// When Redis refuses a lease, the pool remembers the refusal (its cost and the time Redis
/// named): until then a call of at least that cost is refused at once, with the wait left as
/// its `retry_after`, and takes no round trip, so an overloaded caller is turned away as
/// cheaply as the local limiter turns it away, and Redis is not asked again and again for
/// tokens it cannot have. This refuses nothing Redis would admit: GCRA moves a bucket's next
/// admission only later as others spend, and the end is rounded down to the millisecond. The
/// one exception is a Redis restarted without persistence during the wait. Counted in
/// [`LeasedSnapshot::cached_refusals`].
///
/// # Failure mode
///
/// The global limiter's: with Redis unreachable, an empty pool is refilled by nothing and
/// the call is decided by [`FailureMode`](crate::FailureMode) (reject, or the local fallback
/// limiter) after at most the call timeout; tokens already leased are still spent.
///
/// # Memory ordering
///
/// The pool is one `AtomicU64` (tokens and expiry). Spends and deposits are CAS loops with
/// `Relaxed` ordering: the word is the whole state, no other memory is published with it, and
/// the CAS alone makes sure no token is spent twice. Refills are serialised by an async mutex
/// (never taken on the path that finds tokens). Counters are `Relaxed` statistics.
#[derive(Clone)]
pub struct LeasedRateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    global: RedisRateLimiter,
    pool: Pool,
    settings: LeaseSettings,
    stats: LeaseStats,
}

/// The lease settings shared by the one-key and the keyed two-tier limiters, validated.
#[derive(Clone, Debug)]
pub(crate) struct LeaseSettings {
    pub(crate) clock: Clock,
    pub(crate) max_batch: u32,
    pub(crate) lease_target: Duration,
    pub(crate) lease_ttl_ms: u64,
}

impl LeaseSettings {
    /// Validates the lease settings of a builder against its global limiter.
    pub(crate) fn new(
        global: &RedisRateLimiter,
        max_batch: u32,
        lease_target: Duration,
        lease_ttl: Duration,
        clock: Option<Clock>,
    ) -> Result<Self, ConfigError> {
        if max_batch == 0 || u64::from(max_batch) > TOKEN_MAX {
            return Err(ConfigError::new(
                "max_batch",
                "must be between 1 and 2^24 - 1",
            ));
        }
        if max_batch > global.burst() {
            return Err(ConfigError::new(
                "max_batch",
                "must not exceed the global burst (a lease larger than the bucket is never granted whole)",
            ));
        }
        if lease_target.is_zero() {
            return Err(ConfigError::new("lease_target", "must be above zero"));
        }
        let lease_ttl_ms = u64::try_from(lease_ttl.as_millis()).unwrap_or(u64::MAX >> EXPIRY_SHIFT);
        if lease_ttl_ms == 0 {
            return Err(ConfigError::new("lease_ttl", "must be at least 1 ms"));
        }
        Ok(LeaseSettings {
            clock: clock.unwrap_or_default(),
            max_batch,
            lease_target,
            lease_ttl_ms,
        })
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now().as_nanos() / 1_000_000
    }
}

/// Counters of the leases, shared by every pool of a limiter.
#[derive(Default)]
pub(crate) struct LeaseStats {
    pub(crate) local_spends: AtomicU64,
    pub(crate) leases: AtomicU64,
    pub(crate) leased_tokens: AtomicU64,
    pub(crate) expired_tokens: AtomicU64,
    pub(crate) cached_refusals: AtomicU64,
}

/// A refusal of the global bucket, remembered by a pool until the time Redis named: packed
/// into one `AtomicU64`, the end in clock milliseconds above the cost refused (0: none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Refusal {
    until_ms: u64,
    cost: u64,
}

impl Refusal {
    fn unpack(word: u64) -> Refusal {
        Refusal {
            until_ms: word >> EXPIRY_SHIFT,
            cost: word & TOKEN_MAX,
        }
    }

    fn pack(self) -> u64 {
        (self.until_ms << EXPIRY_SHIFT) | self.cost.min(TOKEN_MAX)
    }

    /// Pure: whether a call of `cost` at `now_ms` is refused by this remembered refusal, and
    /// for how long yet. GCRA only moves a bucket's next admission later as others spend, so
    /// a call that costs at least what Redis refused, before the time Redis named, would be
    /// refused by Redis too (a restarted Redis that forgot the bucket aside).
    fn refuses(self, cost: u64, now_ms: u64) -> Option<u64> {
        (self.cost > 0 && cost >= self.cost && now_ms < self.until_ms)
            .then(|| self.until_ms - now_ms)
    }
}

/// One local pool of leased tokens for one Redis bucket key: the lease word, the refill
/// that serialises the round trips of the calls that found it empty, and the last refusal.
#[derive(Debug)]
pub(crate) struct Pool {
    redis_key: String,
    word: AtomicU64,
    refused: AtomicU64,
    refill: tokio::sync::Mutex<Option<(Instant, u32)>>,
}

impl Pool {
    pub(crate) fn new(redis_key: String) -> Pool {
        Pool {
            redis_key,
            word: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            refill: tokio::sync::Mutex::new(None),
        }
    }

    /// The lease now: its tokens (0 once expired) and its expiry in clock milliseconds.
    pub(crate) fn lease_at(&self, now_ms: u64) -> (u64, u64) {
        // Relaxed: a read of the pool's whole state; a stale value only delays an eviction or
        // shows an old count (callers that evict hold the only reference to the pool).
        let lease = Lease::unpack(self.word.load(Ordering::Relaxed));
        let tokens = if now_ms <= lease.expires_ms {
            lease.tokens
        } else {
            0
        };
        (tokens, lease.expires_ms)
    }

    /// Spends `cost` tokens, if the lease is valid and holds them (one CAS loop).
    pub(crate) fn try_spend(&self, cost: u32, now_ms: u64, stats: &LeaseStats) -> bool {
        let word = &self.word;
        // Relaxed: the word is the pool's whole state (see the types' memory ordering docs).
        let mut current = word.load(Ordering::Relaxed);
        loop {
            let Some(next) = Lease::unpack(current).spend(u64::from(cost), now_ms) else {
                return false;
            };
            // Relaxed: the CAS alone keeps two callers from spending the same token.
            match word.compare_exchange_weak(
                current,
                next.pack(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    // Relaxed: statistics only, read by snapshot().
                    stats.local_spends.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// The remembered refusal of a call of `cost` at `now_ms`, if one still stands: refused
    /// locally, no round trip, with the wait left (rounded down to the millisecond, so a
    /// call is never refused past the time Redis named).
    pub(crate) fn cached_refusal(
        &self,
        global: &RedisRateLimiter,
        stats: &LeaseStats,
        cost: u32,
        now_ms: u64,
    ) -> Option<BoxError> {
        // Relaxed: the word is the whole refusal; a stale read only costs one round trip more
        // (no refusal seen) or refuses what Redis refused a moment ago (an old one, still
        // standing by its own end time).
        let refusal = Refusal::unpack(self.refused.load(Ordering::Relaxed));
        let wait_ms = refusal.refuses(u64::from(cost), now_ms)?;
        // Relaxed: statistics only, read by snapshot().
        stats.cached_refusals.fetch_add(1, Ordering::Relaxed);
        Some(global.rejected(cost, Duration::from_millis(wait_ms)).into())
    }

    /// Remembers Redis's refusal of `cost` at `now_ms` for `retry_after` (rounded down to the
    /// millisecond).
    fn remember_refusal(&self, cost: u32, now_ms: u64, retry_after: Duration) {
        let wait_ms = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX);
        let refusal = Refusal {
            until_ms: now_ms.saturating_add(wait_ms).min(u64::MAX >> EXPIRY_SHIFT),
            cost: u64::from(cost),
        };
        // Relaxed: the word is the whole refusal (see `cached_refusal`); written under the
        // refill lock, so refusals do not race each other.
        self.refused.store(refusal.pack(), Ordering::Relaxed);
    }

    /// Leases a batch for a call of `cost` that found the pool empty (one round trip, shared
    /// by the calls waiting on the refill lock).
    pub(crate) async fn refill(
        &self,
        global: &RedisRateLimiter,
        settings: &LeaseSettings,
        stats: &LeaseStats,
        cost: u32,
    ) -> Result<(), BoxError> {
        let mut last = self.refill.lock().await;
        // Another call's refill may have filled the pool, or been refused, while this one
        // waited.
        let now_ms = settings.now_ms();
        if self.try_spend(cost, now_ms, stats) {
            global.permitted(cost, false);
            return Ok(());
        }
        if let Some(refused) = self.cached_refusal(global, stats, cost, now_ms) {
            return Err(refused);
        }
        let now = settings.clock.now();
        let requested = next_batch(*last, now, settings.lease_target, settings.max_batch).max(cost);
        match global.round_trip(&self.redis_key, cost, requested).await {
            Ok(reply) if reply.granted > 0 => {
                // parse_reply checked cost <= granted <= requested.
                let granted = u32::try_from(reply.granted).unwrap_or(requested);
                self.deposit(u64::from(granted - cost), settings, stats);
                // Relaxed: see `remember_refusal`; a grant ends any refusal.
                self.refused.store(0, Ordering::Relaxed);
                *last = Some((now, granted));
                // Relaxed: statistics only, read by snapshot().
                stats.leases.fetch_add(1, Ordering::Relaxed);
                stats
                    .leased_tokens
                    .fetch_add(u64::from(granted), Ordering::Relaxed);
                global.emit(|| RedisRateLimiterEvent::LeaseGranted { requested, granted });
                global.permitted(cost, true);
                Ok(())
            }
            Ok(reply) => {
                *last = None;
                let retry_after = Duration::from_micros(reply.retry_after_us);
                self.remember_refusal(cost, settings.now_ms(), retry_after);
                Err(global.rejected(cost, retry_after).into())
            }
            Err(error) => global.fail(cost, error),
        }
    }

    fn deposit(&self, tokens: u64, settings: &LeaseSettings, stats: &LeaseStats) {
        let now_ms = settings.now_ms();
        let expires_ms = now_ms.saturating_add(settings.lease_ttl_ms);
        let word = &self.word;
        // Relaxed: the word is the pool's whole state (see the types' memory ordering docs).
        let mut current = word.load(Ordering::Relaxed);
        loop {
            let (next, dropped) = Lease::unpack(current).deposit(tokens, now_ms, expires_ms);
            // Relaxed: the CAS alone keeps a concurrent spend from being lost.
            match word.compare_exchange_weak(
                current,
                next.pack(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    // Relaxed: statistics only, read by snapshot().
                    stats.expired_tokens.fetch_add(dropped, Ordering::Relaxed);
                    return;
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Puts tokens into the pool as a lease would (tests of eviction, without Redis).
    #[cfg(test)]
    pub(crate) fn deposit_for_test(&self, tokens: u64, settings: &LeaseSettings) {
        self.deposit(tokens, settings, &LeaseStats::default());
    }
}

/// A point-in-time view of a [`LeasedRateLimiter`] (each counter read on its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeasedSnapshot {
    /// Tokens in the local pool now (0 if the lease expired).
    pub local_tokens: u64,
    /// Calls admitted from the local pool without a round trip.
    pub local_spends: u64,
    /// Leases taken (round trips that granted tokens).
    pub leases: u64,
    /// Tokens granted by those leases.
    pub leased_tokens: u64,
    /// Leased tokens dropped unspent because their lease expired.
    pub expired_tokens: u64,
    /// Calls refused locally, without a round trip, because Redis had refused a call of that
    /// cost and the time it named had not come yet.
    pub cached_refusals: u64,
}

impl fmt::Debug for LeasedRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeasedRateLimiter")
            .field("global", &self.inner.global)
            .field("key", &self.inner.pool.redis_key)
            .field("max_batch", &self.inner.settings.max_batch)
            .field("lease_target", &self.inner.settings.lease_target)
            .finish_non_exhaustive()
    }
}

impl LeasedRateLimiter {
    /// Starts a builder for a two-tier limiter on `global`'s bucket `key` (the same as
    /// [`RedisRateLimiter::leased`]).
    #[must_use]
    pub fn builder(global: &RedisRateLimiter, key: impl Into<String>) -> LeasedRateLimiterBuilder {
        global.leased(key)
    }

    pub(crate) fn from_builder(b: LeasedRateLimiterBuilder) -> Result<Self, ConfigError> {
        let settings =
            LeaseSettings::new(&b.global, b.max_batch, b.lease_target, b.lease_ttl, b.clock)?;
        Ok(LeasedRateLimiter {
            inner: Arc::new(Inner {
                global: b.global,
                pool: Pool::new(b.key),
                settings,
                stats: LeaseStats::default(),
            }),
        })
    }

    /// Spends `cost` tokens from the local pool, without a round trip; `false` when it lacks
    /// them (then [`acquire`](Self::acquire) leases more).
    pub fn try_acquire_local(&self, cost: u32) -> bool {
        let inner = &*self.inner;
        if inner
            .pool
            .try_spend(cost, inner.settings.now_ms(), &inner.stats)
        {
            inner.global.permitted(cost, false);
            true
        } else {
            false
        }
    }

    /// Takes `cost` tokens: from the local pool when it has them, else from a new lease (one
    /// round trip, shared by the calls waiting for it).
    ///
    /// # Errors
    ///
    /// As [`RedisRateLimiter::acquire`]: [`RateLimited`](crate::RateLimited) when the global
    /// bucket lacks `cost` tokens, [`CostExceedsBurst`], and the failure mode's decision when
    /// no lease arrives within the call timeout (waiting for another call's refill included).
    pub async fn acquire(&self, cost: u32) -> Result<(), BoxError> {
        let inner = &*self.inner;
        let global = &inner.global;
        if cost == 0 {
            return Ok(());
        }
        if cost > global.burst() {
            return Err(CostExceedsBurst::new(cost, global.burst()).into());
        }
        if self.try_acquire_local(cost) {
            return Ok(());
        }
        refill_within_timeout(global, &inner.pool, &inner.settings, &inner.stats, cost).await
    }

    /// A layer that takes one token per request.
    #[must_use]
    pub fn layer(&self) -> LeasedRateLimiterLayer {
        LeasedRateLimiterLayer::new(self.clone())
    }

    /// The global limiter this one leases from.
    #[must_use]
    pub fn global(&self) -> &RedisRateLimiter {
        &self.inner.global
    }

    /// The counters and the pool.
    #[must_use]
    pub fn snapshot(&self) -> LeasedSnapshot {
        let inner = &self.inner;
        let (local_tokens, _) = inner.pool.lease_at(inner.settings.now_ms());
        let stats = &inner.stats;
        // Relaxed: statistics, each read on its own.
        LeasedSnapshot {
            local_tokens,
            local_spends: stats.local_spends.load(Ordering::Relaxed),
            leases: stats.leases.load(Ordering::Relaxed),
            leased_tokens: stats.leased_tokens.load(Ordering::Relaxed),
            expired_tokens: stats.expired_tokens.load(Ordering::Relaxed),
            cached_refusals: stats.cached_refusals.load(Ordering::Relaxed),
        }
    }

    /// Registers a listener on the global limiter's events (shared with it).
    pub fn subscribe<L: Listener<RedisRateLimiterEvent>>(&self, listener: L) -> ListenerId {
        self.inner.global.subscribe(listener)
    }

    /// Removes a listener; `false` if it was not registered.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        self.inner.global.unsubscribe(id)
    }
}

/// A refill bounded by the global limiter's call timeout; past it, the failure mode decides.
pub(crate) async fn refill_within_timeout(
    global: &RedisRateLimiter,
    pool: &Pool,
    settings: &LeaseSettings,
    stats: &LeaseStats,
    cost: u32,
) -> Result<(), BoxError> {
    if let Some(refused) = pool.cached_refusal(global, stats, cost, settings.now_ms()) {
        return Err(refused);
    }
    match tokio::time::timeout(
        global.call_timeout(),
        pool.refill(global, settings, stats, cost),
    )
    .await
    {
        Ok(decided) => decided,
        Err(_elapsed) => global.fail(
            cost,
            StoreError {
                kind: StoreErrorKind::Timeout,
                detail: format!("no lease within {:?}", global.call_timeout()),
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_refuses_calls_of_at_least_its_cost_until_its_end() {
        let refusal = Refusal {
            until_ms: 1_000,
            cost: 2,
        };
        assert_eq!(Refusal::unpack(refusal.pack()), refusal);
        assert_eq!(refusal.refuses(2, 400), Some(600));
        assert_eq!(refusal.refuses(5, 999), Some(1));
        // A cheaper call may fit earlier: Redis decides it.
        assert_eq!(refusal.refuses(1, 400), None);
        // The end is the end.
        assert_eq!(refusal.refuses(2, 1_000), None);
        // No refusal remembered.
        assert_eq!(Refusal::unpack(0).refuses(1, 0), None);
    }

    #[test]
    fn lease_word_round_trips() {
        let lease = Lease {
            expires_ms: (1 << 40) - 1,
            tokens: TOKEN_MAX,
        };
        assert_eq!(Lease::unpack(lease.pack()), lease);
        let lease = Lease {
            expires_ms: 12_345,
            tokens: 7,
        };
        assert_eq!(Lease::unpack(lease.pack()), lease);
    }

    #[test]
    fn spends_only_valid_tokens() {
        let lease = Lease {
            expires_ms: 100,
            tokens: 3,
        };
        assert_eq!(
            lease.spend(2, 100),
            Some(Lease {
                expires_ms: 100,
                tokens: 1
            })
        );
        assert_eq!(lease.spend(4, 50), None, "not enough tokens");
        assert_eq!(lease.spend(1, 101), None, "expired");
    }

    #[test]
    fn deposits_drop_expired_tokens() {
        let lease = Lease {
            expires_ms: 100,
            tokens: 3,
        };
        assert_eq!(
            lease.deposit(5, 90, 1_090),
            (
                Lease {
                    expires_ms: 1_090,
                    tokens: 8
                },
                0
            )
        );
        assert_eq!(
            lease.deposit(5, 101, 1_101),
            (
                Lease {
                    expires_ms: 1_101,
                    tokens: 5
                },
                3
            )
        );
    }

    #[test]
    fn batch_adapts_to_the_local_rate() {
        let target = Duration::from_millis(100);
        let t0 = Instant::from_nanos(1_000_000_000);
        assert_eq!(
            next_batch(None, t0, target, 16),
            1,
            "first lease is one token"
        );
        // 1 token lasted 1 ms: 1000/s, 100 ms worth is 100, capped at 2x the last batch.
        let t1 = t0.saturating_add(Duration::from_millis(1));
        assert_eq!(next_batch(Some((t0, 1)), t1, target, 16), 2);
        assert_eq!(
            next_batch(Some((t0, 8)), t1, target, 16),
            16,
            "capped at max_batch"
        );
        // 4 tokens lasted 2 s: 2/s, 100 ms worth is 0.2: one token.
        let t2 = t0.saturating_add(Duration::from_secs(2));
        assert_eq!(next_batch(Some((t0, 4)), t2, target, 16), 1);
        // 10 tokens lasted 200 ms: 50/s, 100 ms worth is 5.
        let t3 = t0.saturating_add(Duration::from_millis(200));
        assert_eq!(next_batch(Some((t0, 10)), t3, target, 16), 5);
    }
}
