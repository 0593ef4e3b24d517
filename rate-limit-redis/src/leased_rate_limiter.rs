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
    key: String,
    word: AtomicU64,
    clock: Clock,
    max_batch: u32,
    lease_target: Duration,
    lease_ttl_ms: u64,
    refill: tokio::sync::Mutex<Option<(Instant, u32)>>,
    local_spends: AtomicU64,
    leases: AtomicU64,
    leased_tokens: AtomicU64,
    expired_tokens: AtomicU64,
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
}

impl fmt::Debug for LeasedRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeasedRateLimiter")
            .field("global", &self.inner.global)
            .field("key", &self.inner.key)
            .field("max_batch", &self.inner.max_batch)
            .field("lease_target", &self.inner.lease_target)
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
        if b.max_batch == 0 || u64::from(b.max_batch) > TOKEN_MAX {
            return Err(ConfigError::new(
                "max_batch",
                "must be between 1 and 2^24 - 1",
            ));
        }
        if b.max_batch > b.global.burst() {
            return Err(ConfigError::new(
                "max_batch",
                "must not exceed the global burst (a lease larger than the bucket is never granted whole)",
            ));
        }
        if b.lease_target.is_zero() {
            return Err(ConfigError::new("lease_target", "must be above zero"));
        }
        let lease_ttl_ms =
            u64::try_from(b.lease_ttl.as_millis()).unwrap_or(u64::MAX >> EXPIRY_SHIFT);
        if lease_ttl_ms == 0 {
            return Err(ConfigError::new("lease_ttl", "must be at least 1 ms"));
        }
        Ok(LeasedRateLimiter {
            inner: Arc::new(Inner {
                global: b.global,
                key: b.key,
                word: AtomicU64::new(0),
                clock: b.clock.unwrap_or_default(),
                max_batch: b.max_batch,
                lease_target: b.lease_target,
                lease_ttl_ms,
                refill: tokio::sync::Mutex::new(None),
                local_spends: AtomicU64::new(0),
                leases: AtomicU64::new(0),
                leased_tokens: AtomicU64::new(0),
                expired_tokens: AtomicU64::new(0),
            }),
        })
    }

    fn now_ms(&self) -> u64 {
        self.inner.clock.now().as_nanos() / 1_000_000
    }

    /// Spends `cost` tokens from the local pool, without a round trip; `false` when it lacks
    /// them (then [`acquire`](Self::acquire) leases more).
    pub fn try_acquire_local(&self, cost: u32) -> bool {
        let now_ms = self.now_ms();
        let word = &self.inner.word;
        // Relaxed: the word is the pool's whole state (see the type's memory ordering docs).
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
                    self.inner.local_spends.fetch_add(1, Ordering::Relaxed);
                    self.inner.global.permitted(cost, false);
                    return true;
                }
                Err(actual) => current = actual,
            }
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
        let global = &self.inner.global;
        if cost == 0 {
            return Ok(());
        }
        if cost > global.burst() {
            return Err(CostExceedsBurst::new(cost, global.burst()).into());
        }
        if self.try_acquire_local(cost) {
            return Ok(());
        }
        match tokio::time::timeout(global.call_timeout(), self.refill(cost)).await {
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

    async fn refill(&self, cost: u32) -> Result<(), BoxError> {
        let inner = &*self.inner;
        let mut last = inner.refill.lock().await;
        // Another call's refill may have filled the pool while this one waited.
        if self.try_acquire_local(cost) {
            return Ok(());
        }
        let now = inner.clock.now();
        let requested = next_batch(*last, now, inner.lease_target, inner.max_batch).max(cost);
        match inner.global.round_trip(&inner.key, cost, requested).await {
            Ok(reply) if reply.granted > 0 => {
                // parse_reply checked cost <= granted <= requested.
                let granted = u32::try_from(reply.granted).unwrap_or(requested);
                self.deposit(u64::from(granted - cost));
                *last = Some((now, granted));
                // Relaxed: statistics only, read by snapshot().
                inner.leases.fetch_add(1, Ordering::Relaxed);
                inner
                    .leased_tokens
                    .fetch_add(u64::from(granted), Ordering::Relaxed);
                inner
                    .global
                    .emit(|| RedisRateLimiterEvent::LeaseGranted { requested, granted });
                inner.global.permitted(cost, true);
                Ok(())
            }
            Ok(reply) => {
                *last = None;
                Err(inner
                    .global
                    .rejected(cost, Duration::from_micros(reply.retry_after_us))
                    .into())
            }
            Err(error) => inner.global.fail(cost, error),
        }
    }

    fn deposit(&self, tokens: u64) {
        let now_ms = self.now_ms();
        let expires_ms = now_ms.saturating_add(self.inner.lease_ttl_ms);
        let word = &self.inner.word;
        // Relaxed: the word is the pool's whole state (see the type's memory ordering docs).
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
                    self.inner
                        .expired_tokens
                        .fetch_add(dropped, Ordering::Relaxed);
                    return;
                }
                Err(actual) => current = actual,
            }
        }
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
        // Relaxed: a read of the pool's state for display; statistics each read on their own.
        let lease = Lease::unpack(inner.word.load(Ordering::Relaxed));
        LeasedSnapshot {
            local_tokens: if self.now_ms() <= lease.expires_ms {
                lease.tokens
            } else {
                0
            },
            local_spends: inner.local_spends.load(Ordering::Relaxed),
            leases: inner.leases.load(Ordering::Relaxed),
            leased_tokens: inner.leased_tokens.load(Ordering::Relaxed),
            expired_tokens: inner.expired_tokens.load(Ordering::Relaxed),
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

#[cfg(test)]
mod tests {
    use super::*;

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
