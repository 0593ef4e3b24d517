//! The keyed two-tier limiter: one leased pool per key (tenant, route, partner), in bounded
//! memory.

use crate::config::KeyedLeasedRateLimiterBuilder;
use crate::error::CostExceedsBurst;
use crate::events::RedisRateLimiterEvent;
use crate::layer::KeyedLeasedRateLimiterLayer;
use crate::leased_rate_limiter::{LeaseSettings, LeaseStats, Pool, refill_within_timeout};
use crate::redis_rate_limiter::RedisRateLimiter;
use crossbeam_utils::CachePadded;
use hashbrown::HashTable;
use palisade_core::events::ListenerId;
use palisade_core::{BoxError, ConfigError, Listener};
use palisade_rate_limit::TooManyKeys;
use parking_lot::Mutex;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// A shard sweeps its idle keys when it has grown to this many keys, at the least.
const MIN_SWEEP: usize = 8;

/// A two-tier rate limit with one leased pool per key: each key has its own global bucket in
/// Redis (`{prefix}{name}:{key}`, the key written with its `Display`), and this replica leases
/// small batches of each key's tokens into a local pool, so most calls cost a hash, a shard
/// lock and one CAS, and no round trip.
///
/// Made by [`RedisRateLimiter::keyed_leased`]. Per key it behaves exactly as a
/// [`LeasedRateLimiter`](crate::LeasedRateLimiter) on that key: the same adaptive batch (by
/// the key's own recent rate), lease expiry and failure mode.
///
/// ```no_run
/// use palisade_rate_limit_redis::RedisRateLimiter;
/// use std::time::Duration;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let global = RedisRateLimiter::builder()
///     .url("redis://127.0.0.1:6379/")
///     .name("per_tenant")
///     .rate(100, Duration::from_secs(1)) // per tenant, for the whole fleet
///     .burst(20)
///     .build()?;
/// let keyed = global.keyed_leased::<u64>().max_batch(8).max_keys(10_000).build()?;
/// // The key of a request is its tenant id.
/// let mut svc = ServiceBuilder::new()
///     .layer(keyed.layer(|req: &(u64, &'static str)| req.0))
///     .service_fn(|req: (u64, &'static str)| async move { Ok::<_, tower::BoxError>(req.1.len()) });
/// assert_eq!(svc.ready().await?.call((7, "hello")).await?, 5);
/// # Ok(())
/// # }
/// ```
///
/// # The bound, per key
///
/// Each key's global bucket grants at most `R·T + burst` tokens in any window `T`, and each
/// leased token is spent at most once, before its lease expires. So the fleet admits for each
/// key, in any window `T`, at most **`R·T + burst + L(key)`**, where `L(key)` is the key's
/// tokens outstanding in leases at the window's start: at most `replicas × max_batch` for
/// unit costs. Eviction never adds to it: a pool is only evicted when it holds no valid token
/// and no call is refilling it, so nothing leased is forgotten and spent twice. (As for the
/// one-key limiter, a Redis restarted without persistence adds one `burst` per restart.)
/// Tested in `tests/redis.rs` (`keyed_leased_fleet_stays_within_the_bound_per_key`).
///
/// # Memory is bounded
///
/// The rules of `palisade_rate_limit::KeyedRateLimiter`'s cap, adapted to leases. A key is
/// **idle** when its pool holds no valid token (empty, or its lease expired after
/// [`lease_ttl`](KeyedLeasedRateLimiterBuilder::lease_ttl)) and no call is leasing for it;
/// evicting it changes no decision, only forgets the key's batch estimate (its next lease
/// starts at one token again).
///
/// - A shard sweeps out its idle keys when a new key arrives and the shard has doubled since
///   its last sweep (amortised O(1) per new key).
/// - At the cap, [`max_keys`](KeyedLeasedRateLimiterBuilder::max_keys) for the whole limiter,
///   a new key sweeps its own shard, then every shard; if no key is idle, the request is
///   refused with `palisade_rate_limit::TooManyKeys` (the local keyed limiter's type, so a
///   caller downcasts one type), whose `retry_after` is the earliest time a held lease
///   expires. Until then new keys are refused at once without another sweep (a hint: a key
///   that empties its pool earlier could have made room; refusing is the safe side). Known
///   keys are never affected, and no key is evicted while it holds leased tokens.
///
/// Nothing runs in the background; [`evict_idle`](Self::evict_idle) sweeps every shard.
///
/// # Memory ordering
///
/// Every lookup, insertion and eviction of a key happens under its shard's mutex (its lock
/// and unlock order them); a pool's reference count is read there too, and a new reference
/// is only ever made under that lock, so a count of one seen under it means no call holds
/// the pool. Each pool's lease word is changed by `Relaxed` CAS loops: the word is the pool's
/// whole state, and the CAS alone makes sure no token is spent twice. The key count and the
/// "no room until" hint are `Relaxed` atomics: the count's read-modify-writes alone keep it
/// at most `max_keys` and it publishes no data (the keys are behind the shard locks); the
/// hint only decides whether to sweep. Counters are `Relaxed` statistics.
pub struct KeyedLeasedRateLimiter<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for KeyedLeasedRateLimiter<K> {
    fn clone(&self) -> Self {
        KeyedLeasedRateLimiter {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<K> {
    global: RedisRateLimiter,
    settings: LeaseSettings,
    stats: LeaseStats,
    shards: Box<[CachePadded<Mutex<Shard<K>>>]>,
    shard_mask: usize,
    hasher: foldhash::fast::RandomState,
    max_keys: usize,
    /// Keys held in all shards together, at most `max_keys`.
    count: CachePadded<AtomicUsize>,
    /// At the cap: clock milliseconds before which no key is expected to go idle.
    no_room_until_ms: AtomicU64,
    evicted: AtomicU64,
    too_many_keys: AtomicU64,
}

struct Shard<K> {
    table: HashTable<(K, Arc<Pool>)>,
    /// Sweep when the table reaches this length.
    sweep_at: usize,
}

/// A point-in-time view of a [`KeyedLeasedRateLimiter`] (each counter read on its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyedLeasedSnapshot {
    /// Keys held now (busy ones, and idle ones not yet swept).
    pub keys: usize,
    /// The cap on keys.
    pub max_keys: usize,
    /// Calls admitted from a local pool without a round trip.
    pub local_spends: u64,
    /// Leases taken (round trips that granted tokens), all keys together.
    pub leases: u64,
    /// Tokens granted by those leases.
    pub leased_tokens: u64,
    /// Leased tokens dropped unspent because their lease expired.
    pub expired_tokens: u64,
    /// Calls refused locally, without a round trip, because Redis had refused a call of that
    /// key and cost and the time it named had not come yet.
    pub cached_refusals: u64,
    /// Idle keys evicted.
    pub evicted_keys: u64,
    /// Requests of new keys refused with `TooManyKeys`.
    pub too_many_keys: u64,
}

impl<K> fmt::Debug for KeyedLeasedRateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLeasedRateLimiter")
            .field("global", &self.inner.global)
            .field("max_batch", &self.inner.settings.max_batch)
            .field("lease_target", &self.inner.settings.lease_target)
            .field("max_keys", &self.inner.max_keys)
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}

impl<K> KeyedLeasedRateLimiter<K> {
    /// Keys held now (busy ones, and idle ones not yet swept); never above the cap.
    #[must_use]
    pub fn len(&self) -> usize {
        // Relaxed: a count for display; see the type's memory ordering docs.
        self.inner.count.load(Ordering::Relaxed)
    }

    /// `true` when no key is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cap on keys.
    #[must_use]
    pub fn max_keys(&self) -> usize {
        self.inner.max_keys
    }

    /// The global limiter this one leases from.
    #[must_use]
    pub fn global(&self) -> &RedisRateLimiter {
        &self.inner.global
    }

    /// The counters.
    #[must_use]
    pub fn snapshot(&self) -> KeyedLeasedSnapshot {
        let inner = &*self.inner;
        let stats = &inner.stats;
        // Relaxed: statistics, each read on its own.
        KeyedLeasedSnapshot {
            keys: self.len(),
            max_keys: inner.max_keys,
            local_spends: stats.local_spends.load(Ordering::Relaxed),
            leases: stats.leases.load(Ordering::Relaxed),
            leased_tokens: stats.leased_tokens.load(Ordering::Relaxed),
            expired_tokens: stats.expired_tokens.load(Ordering::Relaxed),
            cached_refusals: stats.cached_refusals.load(Ordering::Relaxed),
            evicted_keys: inner.evicted.load(Ordering::Relaxed),
            too_many_keys: inner.too_many_keys.load(Ordering::Relaxed),
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

    /// Counts one more key, unless the limiter holds `max_keys`.
    fn claim_slot(&self) -> bool {
        // Relaxed: the count's own modification order keeps it at most `max_keys`; it
        // publishes no data.
        self.inner
            .count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.inner.max_keys).then_some(n + 1)
            })
            .is_ok()
    }
}

impl<K> KeyedLeasedRateLimiter<K>
where
    K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
{
    pub(crate) fn from_builder(b: KeyedLeasedRateLimiterBuilder<K>) -> Result<Self, ConfigError> {
        let settings =
            LeaseSettings::new(&b.global, b.max_batch, b.lease_target, b.lease_ttl, b.clock)?;
        if b.max_keys == 0 {
            return Err(ConfigError::new("max_keys", "must be at least 1"));
        }
        if !b.shards.is_power_of_two() {
            return Err(ConfigError::new("shards", "must be a power of two"));
        }
        let shards = (0..b.shards)
            .map(|_| {
                CachePadded::new(Mutex::new(Shard {
                    table: HashTable::new(),
                    sweep_at: MIN_SWEEP,
                }))
            })
            .collect();
        Ok(KeyedLeasedRateLimiter {
            inner: Arc::new(Inner {
                global: b.global,
                settings,
                stats: LeaseStats::default(),
                shards,
                shard_mask: b.shards - 1,
                hasher: foldhash::fast::RandomState::default(),
                max_keys: b.max_keys,
                count: CachePadded::new(AtomicUsize::new(0)),
                no_room_until_ms: AtomicU64::new(0),
                evicted: AtomicU64::new(0),
                too_many_keys: AtomicU64::new(0),
            }),
        })
    }

    /// Evicts every idle key now (never needed for the bound; frees memory after a spike).
    /// Returns how many keys it evicted.
    pub fn evict_idle(&self) -> usize {
        let now_ms = self.inner.settings.now_ms();
        let before = self.inner.evicted.load(Ordering::Relaxed); // Relaxed: statistics only.
        for shard in self.inner.shards.iter() {
            self.sweep(&mut shard.lock(), now_ms);
        }
        let after = self.inner.evicted.load(Ordering::Relaxed); // Relaxed: statistics only.
        usize::try_from(after - before).unwrap_or(usize::MAX)
    }

    /// Sweeps the idle keys out of `shard`; returns the earliest clock millisecond at which a
    /// key still held is expected to go idle (`u64::MAX` if none is held).
    fn sweep(&self, shard: &mut Shard<K>, now_ms: u64) -> u64 {
        let inner = &*self.inner;
        let refill_ms = u64::try_from(inner.global.call_timeout().as_millis()).unwrap_or(u64::MAX);
        let mut earliest = u64::MAX;
        let mut evicted = 0_usize;
        shard.table.retain(|(_, pool)| {
            let (tokens, expires_ms) = pool.lease_at(now_ms);
            // The count is read under the shard lock, where every new reference is made.
            let in_use = Arc::strong_count(pool) > 1;
            if tokens == 0 && !in_use {
                evicted += 1;
                return false;
            }
            // A pool being refilled is decided within the call timeout; one holding tokens
            // goes idle when its lease expires, at the latest.
            let idle_at = if in_use {
                now_ms.saturating_add(refill_ms)
            } else {
                expires_ms.saturating_add(1)
            };
            earliest = earliest.min(idle_at);
            true
        });
        if evicted > 0 {
            // Relaxed: the count's own modification order keeps it exact (see the type docs).
            inner.count.fetch_sub(evicted, Ordering::Relaxed);
            // Relaxed: statistics only, read by snapshot().
            inner.evicted.fetch_add(evicted as u64, Ordering::Relaxed);
        }
        let len = shard.table.len();
        shard.sweep_at = (len * 2).max(MIN_SWEEP);
        if shard.table.capacity() > 4 * len.max(MIN_SWEEP) {
            let hasher = &inner.hasher;
            shard.table.shrink_to(len * 2, |(k, _)| hasher.hash_one(k));
        }
        earliest
    }

    fn shard(&self, hash: u64) -> &Mutex<Shard<K>> {
        // Truncation is the point: the low bits pick the shard.
        #[allow(clippy::cast_possible_truncation)]
        let index = (hash as usize) & self.inner.shard_mask;
        &self.inner.shards[index]
    }

    /// Spends `cost` tokens from `key`'s local pool, without a round trip; `false` when the
    /// key holds no lease with that many tokens (then [`acquire`](Self::acquire) leases).
    /// No allocation; one hash, one shard lock, one CAS.
    pub fn try_acquire_local(&self, key: &K, cost: u32) -> bool {
        let inner = &*self.inner;
        let hash = inner.hasher.hash_one(key);
        let now_ms = inner.settings.now_ms();
        let spent = {
            let shard = self.shard(hash).lock();
            shard
                .table
                .find(hash, |(k, _)| k == key)
                .is_some_and(|(_, pool)| pool.try_spend(cost, now_ms, &inner.stats))
        };
        if spent {
            inner.global.permitted(cost, false);
        }
        spent
    }

    /// Tokens in `key`'s local pool now (0 if it holds none, or is not held).
    #[must_use]
    pub fn local_tokens(&self, key: &K) -> u64 {
        let inner = &*self.inner;
        let hash = inner.hasher.hash_one(key);
        let now_ms = inner.settings.now_ms();
        let shard = self.shard(hash).lock();
        shard
            .table
            .find(hash, |(k, _)| k == key)
            .map_or(0, |(_, pool)| pool.lease_at(now_ms).0)
    }

    /// Takes `cost` tokens of `key`: from its local pool when it has them, else from a new
    /// lease of the key's global bucket (one round trip, shared by the calls of that key
    /// waiting for it).
    ///
    /// # Errors
    ///
    /// As [`LeasedRateLimiter::acquire`](crate::LeasedRateLimiter::acquire), and
    /// `palisade_rate_limit::TooManyKeys` when `key` is new and the limiter holds `max_keys`
    /// keys that are not idle.
    pub async fn acquire(&self, key: &K, cost: u32) -> Result<(), BoxError> {
        let inner = &*self.inner;
        let global = &inner.global;
        if cost == 0 {
            return Ok(());
        }
        if cost > global.burst() {
            return Err(CostExceedsBurst::new(cost, global.burst()).into());
        }
        if self.try_acquire_local(key, cost) {
            return Ok(());
        }
        let pool = self.pool_for(key)?;
        refill_within_timeout(global, &pool, &inner.settings, &inner.stats, cost).await
    }

    /// The pool of `key`, inserted if new (sweeping idle keys as the type's docs say).
    fn pool_for(&self, key: &K) -> Result<Arc<Pool>, TooManyKeys> {
        let inner = &*self.inner;
        let hash = inner.hasher.hash_one(key);
        let hasher = &inner.hasher;
        let rehash = |(k, _): &(K, Arc<Pool>)| hasher.hash_one(k);
        let now_ms = inner.settings.now_ms();
        let mut earliest = u64::MAX;
        for attempt in 0..2 {
            {
                let mut shard = self.shard(hash).lock();
                if let Some((_, pool)) = shard.table.find(hash, |(k, _)| k == key) {
                    return Ok(Arc::clone(pool));
                }
                if shard.table.len() >= shard.sweep_at {
                    self.sweep(&mut shard, now_ms);
                }
                // Relaxed: a hint (see the type's memory ordering docs).
                let no_room =
                    attempt == 0 && now_ms < inner.no_room_until_ms.load(Ordering::Relaxed);
                let mut room = self.claim_slot();
                if !room && attempt == 0 && !no_room {
                    self.sweep(&mut shard, now_ms);
                    room = self.claim_slot();
                }
                if room {
                    let pool = Arc::new(Pool::new(key.to_string()));
                    shard
                        .table
                        .insert_unique(hash, (key.clone(), Arc::clone(&pool)), rehash);
                    return Ok(pool);
                }
                if no_room {
                    break;
                }
                if attempt == 1 {
                    // Every shard was swept and nothing is idle: no sweep before `earliest`.
                    // Relaxed: a hint (see the type's memory ordering docs).
                    inner.no_room_until_ms.store(earliest, Ordering::Relaxed);
                    break;
                }
            }
            // At the cap and the own shard had nothing idle: sweep every shard (one lock at a
            // time), then try once more.
            for shard in inner.shards.iter() {
                earliest = earliest.min(self.sweep(&mut shard.lock(), now_ms));
            }
            // A held key goes idle once a lease taken now would have expired, at the latest.
            let latest = now_ms.saturating_add(inner.settings.lease_ttl_ms + 1);
            earliest = earliest.min(latest);
        }
        // Relaxed: statistics only, read by snapshot().
        inner.too_many_keys.fetch_add(1, Ordering::Relaxed);
        // Relaxed: a hint (see the type's memory ordering docs).
        let until = inner.no_room_until_ms.load(Ordering::Relaxed);
        let retry_after = Duration::from_millis(until.saturating_sub(now_ms).max(1));
        let max_keys = inner.max_keys;
        inner.global.emit(|| RedisRateLimiterEvent::TooManyKeys {
            max_keys,
            retry_after,
        });
        Err(TooManyKeys::new(max_keys, retry_after))
    }

    /// A layer that takes one token per request from the key `key_fn` gives it.
    #[must_use]
    pub fn layer<F>(&self, key_fn: F) -> KeyedLeasedRateLimiterLayer<K, F> {
        KeyedLeasedRateLimiterLayer::new(self.clone(), key_fn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::clock::ManualClock;

    /// A limiter whose Redis is never asked: these tests exercise the key table only.
    fn limiter(max_keys: usize, clock: &ManualClock) -> KeyedLeasedRateLimiter<&'static str> {
        let global = RedisRateLimiter::builder()
            .url("redis://127.0.0.1:1/")
            .rate(10, Duration::from_secs(1))
            .burst(10)
            .build()
            .unwrap();
        global
            .keyed_leased()
            .max_batch(4)
            .lease_ttl(Duration::from_millis(100))
            .max_keys(max_keys)
            .shards(2)
            .clock(clock.clock())
            .build()
            .unwrap()
    }

    fn lease(limiter: &KeyedLeasedRateLimiter<&'static str>, key: &'static str, tokens: u64) {
        let pool = limiter.pool_for(&key).unwrap();
        pool.deposit_for_test(tokens, &limiter.inner.settings);
    }

    #[tokio::test]
    async fn local_pools_are_per_key() {
        let clock = ManualClock::new();
        let limiter = limiter(10, &clock);
        lease(&limiter, "a", 2);
        assert_eq!(limiter.local_tokens(&"a"), 2);
        assert!(limiter.try_acquire_local(&"a", 1));
        assert!(limiter.try_acquire_local(&"a", 1));
        assert!(!limiter.try_acquire_local(&"a", 1), "a's pool is empty");
        assert!(!limiter.try_acquire_local(&"b", 1), "b holds no lease");
        assert_eq!(limiter.snapshot().local_spends, 2);
        assert_eq!(limiter.len(), 1);
    }

    #[tokio::test]
    async fn leased_tokens_expire() {
        let clock = ManualClock::new();
        let limiter = limiter(10, &clock);
        lease(&limiter, "a", 3);
        clock.advance(Duration::from_millis(101));
        assert_eq!(limiter.local_tokens(&"a"), 0);
        assert!(!limiter.try_acquire_local(&"a", 1), "the lease expired");
    }

    #[tokio::test]
    async fn new_keys_are_refused_at_the_cap_while_every_key_holds_a_lease() {
        let clock = ManualClock::new();
        let limiter = limiter(2, &clock);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        limiter.subscribe(move |e: &RedisRateLimiterEvent| {
            if let RedisRateLimiterEvent::TooManyKeys { .. } = e {
                sink.lock().push(e.clone());
            }
        });
        lease(&limiter, "a", 3);
        lease(&limiter, "b", 3);
        let refused = limiter.pool_for(&"c").unwrap_err();
        assert_eq!(
            *seen.lock(),
            [RedisRateLimiterEvent::TooManyKeys {
                max_keys: 2,
                retry_after: Duration::from_millis(101)
            }]
        );
        assert_eq!(refused.max_keys(), 2);
        // Both leases expire after 100 ms: a key goes idle at 101 ms.
        assert_eq!(refused.retry_after(), Duration::from_millis(101));
        // Known keys are unaffected at the cap.
        assert!(limiter.try_acquire_local(&"a", 1));
        assert!(limiter.pool_for(&"b").is_ok());
        // The hint refuses at once, with the remaining time.
        clock.advance(Duration::from_millis(50));
        assert_eq!(
            limiter.pool_for(&"c").unwrap_err().retry_after(),
            Duration::from_millis(51)
        );
        assert_eq!(limiter.snapshot().too_many_keys, 2);
        // Once the leases expired, the idle keys make room.
        clock.advance(Duration::from_millis(51));
        assert!(limiter.pool_for(&"c").is_ok());
        assert!(limiter.snapshot().evicted_keys >= 1);
        assert!(limiter.len() <= limiter.max_keys());
        // The other expired key goes with the next sweep ("c"'s pool was dropped: idle too).
        limiter.evict_idle();
        assert_eq!(limiter.snapshot().evicted_keys, 3);
        assert!(limiter.is_empty());
    }

    #[tokio::test]
    async fn an_empty_pool_is_idle_unless_a_call_is_leasing_for_it() {
        let clock = ManualClock::new();
        let limiter = limiter(10, &clock);
        let leasing = limiter.pool_for(&"a").unwrap();
        lease(&limiter, "b", 1);
        assert!(limiter.try_acquire_local(&"b", 1));
        // "a" is being refilled (a reference is held), "b" is empty and nobody holds it.
        assert_eq!(limiter.evict_idle(), 1);
        assert_eq!(limiter.len(), 1);
        drop(leasing);
        assert_eq!(limiter.evict_idle(), 1);
        assert!(limiter.is_empty());
    }

    #[tokio::test]
    async fn a_key_being_leased_blocks_the_cap_for_a_call_timeout_at_most() {
        let clock = ManualClock::new();
        let limiter = limiter(1, &clock);
        let _leasing = limiter.pool_for(&"a").unwrap();
        let refused = limiter.pool_for(&"b").unwrap_err();
        assert_eq!(refused.retry_after(), limiter.global().call_timeout());
    }

    #[tokio::test]
    async fn a_growing_shard_sweeps_its_idle_keys() {
        let clock = ManualClock::new();
        let limiter = limiter(1_000, &clock);
        for key in [
            "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9", "k10", "k11", "k12", "k13",
            "k14", "k15", "k16", "k17", "k18", "k19",
        ] {
            limiter.pool_for(&key).unwrap();
        }
        // 20 idle keys in 2 shards: each shard swept when it reached 8 keys at the latest.
        assert!(limiter.len() < 20, "held {}", limiter.len());
        assert!(limiter.snapshot().evicted_keys > 0);
    }

    /// Regression: a shrunk table still finds its keys (the shrink rehashes with the
    /// limiter's hasher).
    #[tokio::test]
    async fn keys_are_found_after_the_table_shrinks() {
        let clock = ManualClock::new();
        let limiter = limiter(1_000, &clock);
        for i in 0..100 {
            let key: &'static str = Box::leak(format!("k{i}").into_boxed_str());
            lease(&limiter, key, 1);
        }
        assert_eq!(limiter.len(), 100, "keys holding leases are never evicted");
        clock.advance(Duration::from_millis(101));
        lease(&limiter, "k7", 2);
        assert_eq!(limiter.evict_idle(), 99);
        assert_eq!(limiter.local_tokens(&"k7"), 2);
        assert!(limiter.try_acquire_local(&"k7", 2));
        let shard = limiter.shard(limiter.inner.hasher.hash_one("k7")).lock();
        assert!(shard.table.capacity() < 64, "the table shrank");
    }

    #[tokio::test]
    async fn config_is_validated() {
        let global = RedisRateLimiter::builder()
            .url("redis://127.0.0.1:1/")
            .rate(10, Duration::from_secs(1))
            .burst(20)
            .build()
            .unwrap();
        let field = |b: KeyedLeasedRateLimiterBuilder<u64>| b.build().unwrap_err().field();
        assert_eq!(field(global.keyed_leased().max_keys(0)), "max_keys");
        assert_eq!(field(global.keyed_leased().shards(3)), "shards");
        assert_eq!(field(global.keyed_leased().max_batch(21)), "max_batch");
        assert_eq!(
            field(global.keyed_leased().lease_ttl(Duration::ZERO)),
            "lease_ttl"
        );
        assert!(global.keyed_leased::<u64>().build().is_ok());
    }
}
