//! [`KeyedRateLimiter`]: one bucket per key (tenant, client IP, route), in bounded memory.

use crate::config::{KeyedRateLimiterBuilder, Mode, Quota, WhenFull};
use crate::error::{CostExceedsBurst, KeyedRejection, RateLimited, TooManyKeys};
use crate::events::RateLimiterEvent;
use crate::gcra::{Decision, Gcra, NOW_MAX, decide};
use crate::layer::KeyedRateLimiterLayer;
use crossbeam_utils::CachePadded;
use hashbrown::HashTable;
use palisade_core::clock::{Clock, Instant};
use palisade_core::events::{EventBus, Listener, ListenerId};
use palisade_core::sync::Arc;
use parking_lot::Mutex;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::time::Duration;

/// Shards sweep their idle keys once they hold this many, at the least.
const MIN_SWEEP: usize = 32;

/// A shard first sweeps when half full (or at [`MIN_SWEEP`] keys, whichever is more): below
/// that, idle keys cost little memory, and keeping them spares a hot set of keys that refill
/// between requests from being evicted and re-inserted (a write lock each) over and over.
fn sweep_floor(per_shard: usize) -> usize {
    (per_shard / 2).max(MIN_SWEEP).min(per_shard)
}

/// A rate limiter with one token bucket per key, all with the same quota, in bounded memory.
///
/// Each key's bucket is a GCRA theoretical arrival time (one `u64`) in a sharded hash table.
/// A request of a **known key** hashes once (foldhash, randomly seeded per limiter), locks its
/// shard (a `parking_lot` mutex: one uncontended CAS to lock, one to release), and updates the
/// TAT in place: no global lock, no allocation. Requests of different keys in one shard take
/// turns for a few nanoseconds; with the default 64 shards that is rare.
///
/// Why a mutex and not a read-write lock with an atomic TAT per key (governor's DashMap
/// design)? A shared read lock costs two atomic read-modify-writes (lock and unlock) and the
/// CAS on the TAT a third; a mutex costs two and makes the TAT a plain integer. Measured on
/// 10 000 hot keys, that is about 0.65× governor's keyed limiter, on one thread and on two.
///
/// # Memory is bounded by design
///
/// - **Idle keys are evicted without a `retain` call.** A key whose bucket has refilled is
///   indistinguishable from a key never seen, so dropping it changes no decision. A shard
///   sweeps out its idle keys when a new key arrives and the shard is at least half full and
///   has doubled since its last sweep (amortized O(1) per new key), and shrinks its table when
///   it is mostly empty.
/// - **A cap**, [`max_keys`](KeyedRateLimiterBuilder::max_keys), split evenly across the
///   shards. When a new key arrives at a full shard whose keys are all busy, the policy is
///   [`WhenFull::RejectNewKeys`]: the request fails with [`TooManyKeys`] until a key goes idle.
///   No key is ever evicted while its bucket is not full, so no key can exceed its quota.
///   Each shard holds `max_keys / shards` keys, so with an uneven spread of keys a shard can
///   refuse a new key a little before the total reaches `max_keys`.
///   While the shard stays full, a new key costs one comparison: the shard remembers when its
///   first key will go idle and does not sweep again before then.
///
/// Nothing runs in the background: a limiter that stops receiving new keys keeps its table
/// (at most the cap) until the next new key, or [`evict_idle`](Self::evict_idle).
///
/// ```
/// use palisade_rate_limit::KeyedRateLimiter;
/// use std::time::Duration;
///
/// let limiter = KeyedRateLimiter::<&str>::builder()
///     .rate(1, Duration::from_secs(1))
///     .max_keys(10_000)
///     .build()?;
/// assert!(limiter.check(&"tenant-a").is_ok());
/// assert!(limiter.check(&"tenant-a").is_err()); // tenant-a used its burst of one
/// assert!(limiter.check(&"tenant-b").is_ok()); // tenant-b has its own bucket
/// assert_eq!(limiter.len(), 2);
/// # Ok::<(), palisade_core::ConfigError>(())
/// ```
///
/// # Memory ordering
///
/// Every read and write of a key's TAT, and every insertion and eviction, happens under its
/// shard's mutex, whose lock and unlock (`Acquire` / `Release`) order them: no atomics of our
/// own are involved. The quota of a keyed limiter is fixed at build time.
pub struct KeyedRateLimiter<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for KeyedRateLimiter<K> {
    fn clone(&self) -> Self {
        KeyedRateLimiter {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<K> {
    shards: Box<[CachePadded<Mutex<Shard<K>>>]>,
    shard_mask: usize,
    hasher: foldhash::fast::RandomState,
    quota: Quota,
    gcra: Gcra,
    mode: Mode,
    max_wait: u64,
    max_keys: usize,
    per_shard: usize,
    when_full: WhenFull,
    clock: Clock,
    origin: Instant,
    events: EventBus<RateLimiterEvent>,
    name: String,
}

struct Shard<K> {
    table: HashTable<(K, u64)>,
    /// Sweep when the table reaches this length.
    sweep_at: usize,
    /// While full: the earliest time (relative ns) a key goes idle; no sweep before it.
    full_until: u64,
}

impl<K: Hash + Eq + Clone> KeyedRateLimiter<K> {
    /// A builder: set [`rate`](KeyedRateLimiterBuilder::rate) (required), then `build()`.
    #[must_use]
    pub fn builder() -> KeyedRateLimiterBuilder {
        KeyedRateLimiterBuilder::default()
    }

    pub(crate) fn from_parts(
        quota: Quota,
        mode: Mode,
        clock: Clock,
        name: String,
        max_keys: usize,
        shards: usize,
        when_full: WhenFull,
    ) -> Self {
        let per_shard = max_keys / shards;
        let origin = clock.now();
        let limiter = KeyedRateLimiter {
            inner: Arc::new(Inner {
                shards: (0..shards)
                    .map(|_| {
                        CachePadded::new(Mutex::new(Shard {
                            table: HashTable::new(),
                            sweep_at: sweep_floor(per_shard),
                            full_until: 0,
                        }))
                    })
                    .collect(),
                shard_mask: shards - 1,
                hasher: foldhash::fast::RandomState::default(),
                quota,
                gcra: quota.gcra(),
                mode,
                max_wait: mode.max_wait_nanos(),
                max_keys,
                per_shard,
                when_full,
                clock,
                origin,
                events: EventBus::new(),
                name,
            }),
        };
        palisade_core::subscribe_feature_listeners!(
            limiter,
            "rate_limit",
            limiter.inner.name.as_str()
        );
        limiter
    }

    /// Takes one token from `key`'s bucket now. Never waits.
    ///
    /// # Errors
    ///
    /// [`KeyedRejection::RateLimited`] when the key's bucket is empty,
    /// [`KeyedRejection::TooManyKeys`] when `key` is new and the table is full.
    #[inline]
    pub fn check(&self, key: &K) -> Result<(), KeyedRejection> {
        self.acquire(key, 1, 0).map(drop)
    }

    /// Takes `cost` tokens from `key`'s bucket now. Never waits.
    ///
    /// # Errors
    ///
    /// As [`check`](Self::check), and [`KeyedRejection::CostExceedsBurst`] when `cost` can
    /// never pass.
    pub fn check_n(&self, key: &K, cost: u32) -> Result<(), KeyedRejection> {
        self.acquire(key, cost, 0).map(drop)
    }

    /// Whole tokens left in `key`'s bucket (the burst for a key not held).
    #[must_use]
    pub fn remaining_burst(&self, key: &K) -> u32 {
        let now = self.now();
        let hash = self.inner.hasher.hash_one(key);
        let shard = self.shard(hash).lock();
        shard
            .table
            .find(hash, |(k, _)| k == key)
            .map_or(self.inner.gcra.burst(), |(_, tat)| {
                self.inner.gcra.remaining(*tat, now)
            })
    }

    /// Takes `cost` tokens for `key`, reserving up to the mode's wait; returns the wait.
    #[inline]
    pub(crate) fn acquire_for_mode(&self, key: &K, cost: u32) -> Result<u64, KeyedRejection> {
        self.acquire(key, cost, self.inner.max_wait)
    }

    fn acquire(&self, key: &K, cost: u32, max_wait: u64) -> Result<u64, KeyedRejection> {
        let now = self.now();
        let hash = self.inner.hasher.hash_one(key);
        let mut shard = self.shard(hash).lock();
        let result = match shard.table.find_mut(hash, |(k, _)| k == key) {
            Some((_, tat)) => self.decide_entry(tat, now, cost, max_wait),
            None => self.acquire_new(&mut shard, hash, key, now, cost, max_wait),
        };
        drop(shard);
        self.inner.events.emit_with(|| match result {
            Ok(wait) => RateLimiterEvent::Permitted {
                cost,
                wait: Duration::from_nanos(wait),
            },
            Err(KeyedRejection::RateLimited(e)) => RateLimiterEvent::Rejected {
                cost,
                retry_after: Some(e.retry_after()),
            },
            Err(_) => RateLimiterEvent::Rejected {
                cost,
                retry_after: None,
            },
        });
        result
    }

    #[cold]
    #[inline(never)]
    fn acquire_new(
        &self,
        shard: &mut Shard<K>,
        hash: u64,
        key: &K,
        now: u64,
        cost: u32,
        max_wait: u64,
    ) -> Result<u64, KeyedRejection> {
        // A new key has a full bucket: the same as a TAT of zero.
        let (tat, wait) = match decide(0, now, cost, self.inner.gcra, max_wait) {
            Decision::Admit { tat, wait } => (tat, wait),
            other => return Self::rejection(other, cost, self.inner.gcra),
        };
        let Shard {
            table,
            sweep_at,
            full_until,
        } = shard;
        if table.len() >= *sweep_at && now >= *full_until {
            self.sweep(table, now);
            *sweep_at =
                (table.len() * 2).clamp(sweep_floor(self.inner.per_shard), self.inner.per_shard);
            *full_until = if table.len() >= self.inner.per_shard {
                table.iter().map(|(_, tat)| *tat).min().unwrap_or(0)
            } else {
                0
            };
        }
        if table.len() >= self.inner.per_shard {
            return match self.inner.when_full {
                WhenFull::RejectNewKeys => Err(KeyedRejection::TooManyKeys(TooManyKeys::new(
                    self.inner.max_keys,
                ))),
            };
        }
        let hasher = &self.inner.hasher;
        table.insert_unique(hash, (key.clone(), tat), |(k, _)| hasher.hash_one(k));
        Ok(wait)
    }

    /// Removes the keys whose bucket is full at `now`, and shrinks a mostly empty table.
    fn sweep(&self, table: &mut HashTable<(K, u64)>, now: u64) {
        table.retain(|(_, tat)| *tat > now);
        if table.capacity() > 4 * table.len().max(MIN_SWEEP) {
            let hasher = &self.inner.hasher;
            table.shrink_to(2 * table.len(), |(k, _)| hasher.hash_one(k));
        }
    }

    /// Evicts every idle key now (never needed for the bound; frees memory after a spike
    /// when no new keys arrive). Returns how many keys remain.
    pub fn evict_idle(&self) -> usize {
        let now = self.now();
        let mut remaining = 0;
        for shard in self.inner.shards.iter() {
            let mut shard = shard.lock();
            self.sweep(&mut shard.table, now);
            shard.full_until = 0;
            remaining += shard.table.len();
        }
        remaining
    }

    #[inline]
    fn decide_entry(
        &self,
        tat: &mut u64,
        now: u64,
        cost: u32,
        max_wait: u64,
    ) -> Result<u64, KeyedRejection> {
        match decide(*tat, now, cost, self.inner.gcra, max_wait) {
            Decision::Admit { tat: next, wait } => {
                *tat = next;
                Ok(wait)
            }
            other => Self::rejection(other, cost, self.inner.gcra),
        }
    }

    fn rejection(decision: Decision, cost: u32, gcra: Gcra) -> Result<u64, KeyedRejection> {
        match decision {
            Decision::Admit { wait, .. } => Ok(wait),
            Decision::Deny { retry_after } => Err(KeyedRejection::RateLimited(RateLimited::new(
                Duration::from_nanos(retry_after),
            ))),
            Decision::TooCostly => Err(KeyedRejection::CostExceedsBurst(CostExceedsBurst::new(
                cost,
                gcra.burst(),
            ))),
        }
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Mutex<Shard<K>> {
        // Bits 40.. pick the shard: hashbrown uses the low bits for the bucket and the top
        // seven for its control bytes, so a shard's keys still spread over its table.
        &self.inner.shards[(hash >> 40) as usize & self.inner.shard_mask]
    }

    /// A layer whose services limit by the key `key_fn` extracts from each request.
    #[must_use]
    pub fn layer<F>(&self, key_fn: F) -> KeyedRateLimiterLayer<K, F> {
        KeyedRateLimiterLayer::new(self.clone(), key_fn)
    }
}

impl<K> KeyedRateLimiter<K> {
    #[inline]
    fn now(&self) -> u64 {
        self.inner
            .clock
            .now()
            .as_nanos()
            .saturating_sub(self.inner.origin.as_nanos())
            .min(NOW_MAX)
    }

    /// Keys held now (busy ones, and idle ones not yet swept). Never above
    /// [`max_keys`](Self::max_keys).
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| s.lock().table.len()).sum()
    }

    /// Whether no key is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hash table slots allocated across all shards (each holds one key and its TAT): at most
    /// about 4 × [`max_keys`](Self::max_keys) (the table's load factor, and one doubling that
    /// tombstones of evicted keys can cause until the next sweep shrinks it).
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().table.capacity())
            .sum()
    }

    /// The cap on keys.
    #[must_use]
    pub fn max_keys(&self) -> usize {
        self.inner.max_keys
    }

    /// The quota every key gets.
    #[must_use]
    pub fn quota(&self) -> Quota {
        self.inner.quota
    }

    /// What the layer does over the limit.
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    /// The instance name given to the builder.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Adds a listener of this limiter's [`RateLimiterEvent`]s.
    pub fn subscribe<L: Listener<RateLimiterEvent>>(&self, listener: L) -> ListenerId {
        self.inner.events.subscribe(listener)
    }

    /// Removes a listener; `false` if it was not subscribed.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        self.inner.events.unsubscribe(id)
    }
}

impl<K> fmt::Debug for KeyedRateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiter")
            .field("name", &self.inner.name)
            .field("quota", &self.inner.quota)
            .field("mode", &self.inner.mode)
            .field("max_keys", &self.inner.max_keys)
            .field("shards", &self.inner.shards.len())
            .finish_non_exhaustive()
    }
}
