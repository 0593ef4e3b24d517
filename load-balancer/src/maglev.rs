//! [`MaglevService`]: affinity by a request key in O(1) per call, with Maglev hashing.
//!
//! Maglev hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
//! Balancer", NSDI 2016, §3.4) fills a lookup table of prime size `M` (default 65 537, the
//! paper's) with endpoint indices: every endpoint walks its own permutation of the slots,
//! `(offset + j × skip) mod M` with `offset` and `skip` from two hashes of its key, and the
//! endpoints take turns claiming the next free slot of their permutation until the table is
//! full. A request goes to `table[hash mod M]`: one multiply-free lookup, whatever the number
//! of endpoints. Each endpoint gets `⌊M/N⌋` or `⌈M/N⌉` slots (balance, tested), and a
//! membership change moves little more than the `1/N` of keys that must move (tested: at most
//! `1/N + 0.02` for 10 endpoints; the paper reports the same small excess).
//!
//! The table is built once per endpoint-set snapshot, copy-on-write: the first call that sees
//! a new set (after an `insert` or `remove`) builds a table for it (O(M log M), about a
//! millisecond for the default size, on that call) and publishes it with an atomic swap;
//! concurrent calls never wait on it (a racing call builds its own copy, the last store wins,
//! both are identical). Every clone of a `MaglevService` shares the table: make one with
//! [`Balancer::maglev`](crate::Balancer::maglev) and clone it.
//!
//! Health does not rebuild the table: when the slot's endpoint is ejected or its breaker is
//! open, the call goes to the next slot whose endpoint is healthy (the table's slots are
//! spread over the endpoints, so the keys of an unhealthy endpoint are spread over the others
//! too), and come back with it. The endpoint is known only once the request is, so
//! `poll_ready` is always ready and the response future waits for the chosen endpoint's
//! readiness, as [`HashService`](crate::HashService) does. For tens of endpoints,
//! [`Balancer::hashed`](crate::Balancer::hashed) (rendezvous hashing, O(n), no table) is the simpler option.
//!
//! ```
//! use palisade_load_balancer::Balancer;
//! use tower::{ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let endpoint = |name: &'static str| {
//!     service_fn(move |user: u64| async move { Ok::<_, std::io::Error>((name, user)) })
//! };
//! let balancer = Balancer::new([("a", endpoint("a")), ("b", endpoint("b")), ("c", endpoint("c"))]);
//! let svc = balancer.maglev(|user: &u64| palisade_core::rng::mix(*user));
//! let (first, _) = svc.clone().oneshot(42).await?;
//! for _ in 0..10 {
//!     assert_eq!(svc.clone().oneshot(42).await?.0, first, "same key, same endpoint");
//! }
//! # Ok(())
//! # }
//! ```

use crate::balancer::{Entry, Shared};
use crate::hash::{HashFuture, hash_candidate};
use arc_swap::ArcSwapOption;
use palisade_core::BoxError;
use palisade_core::error::ConfigError;
use palisade_core::rng::mix;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// The default table size: the prime the Maglev paper uses, ample for a few hundred endpoints
/// (the paper asks for `M ≫ N`; choose a larger prime with [`MaglevService::table_size`] for
/// more).
pub const DEFAULT_TABLE_SIZE: usize = 65_537;

/// How many further slots a call looks at when its slot's endpoint is unhealthy, before it
/// scans the set for any healthy endpoint.
const MAX_PROBES: usize = 64;

/// Builds a Maglev lookup table of `size` slots (a prime) over endpoints with these key
/// hashes: `table[slot]` is an index into `endpoint_hashes`. Empty for no endpoints.
///
/// # Panics
///
/// When `size` is 0 or there are more endpoints than slots.
#[must_use]
pub fn table(endpoint_hashes: &[u64], size: usize) -> Vec<u32> {
    let n = endpoint_hashes.len();
    assert!(
        size > 0 && n <= size,
        "a table needs at least one slot per endpoint"
    );
    if n == 0 {
        return Vec::new();
    }
    let m = size as u64;
    let walks: Vec<(u64, u64)> = endpoint_hashes
        .iter()
        .map(|h| {
            let offset = mix(*h) % m;
            let skip = if m > 1 {
                mix(h.rotate_left(32) ^ 0xa076_1d64_78bd_642f) % (m - 1) + 1
            } else {
                1
            };
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; n];
    let mut slots = vec![u32::MAX; size];
    let mut filled = 0;
    'fill: loop {
        for (i, (offset, skip)) in walks.iter().enumerate() {
            let mut slot = ((offset + next[i] * skip) % m) as usize;
            while slots[slot] != u32::MAX {
                next[i] += 1;
                slot = ((offset + next[i] * skip) % m) as usize;
            }
            slots[slot] = i as u32;
            next[i] += 1;
            filled += 1;
            if filled == size {
                break 'fill;
            }
        }
    }
    slots
}

fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// A table and the set it was built for (held, so its address cannot be reused by another).
struct Table<K, S> {
    set: Arc<Vec<Entry<K, S>>>,
    slots: Vec<u32>,
}

/// A `Service` that sends each request to the endpoint its key hashes to, by a Maglev lookup
/// table. From [`Balancer::maglev`](crate::Balancer::maglev); see the [module docs](self).
pub struct MaglevService<K, S, H> {
    shared: Arc<Shared<K, S>>,
    hash: H,
    size: usize,
    table: Arc<ArcSwapOption<Table<K, S>>>,
}

impl<K, S, H: Clone> Clone for MaglevService<K, S, H> {
    fn clone(&self) -> Self {
        MaglevService {
            shared: Arc::clone(&self.shared),
            hash: self.hash.clone(),
            size: self.size,
            table: Arc::clone(&self.table),
        }
    }
}

impl<K, S, H> fmt::Debug for MaglevService<K, S, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaglevService")
            .field("balancer", &self.shared.core.name)
            .field("table_size", &self.size)
            .finish_non_exhaustive()
    }
}

impl<K, S> crate::Balancer<K, S> {
    /// A `Service` that sends each request to the endpoint its key hashes to, by a Maglev
    /// lookup table (O(1) per call; see [`MaglevService`]), for affinity over many endpoints:
    /// `balancer.maglev(|req: &Request| hash_of(req.user_id))`.
    #[must_use]
    pub fn maglev<H: Clone>(&self, hash: H) -> MaglevService<K, S, H> {
        MaglevService {
            shared: Arc::clone(&self.shared),
            hash,
            size: DEFAULT_TABLE_SIZE,
            table: Arc::new(ArcSwapOption::empty()),
        }
    }
}

impl<K, S, H> MaglevService<K, S, H> {
    /// The same service with a lookup table of `size` slots (a prime, at least the number of
    /// endpoints; default [`DEFAULT_TABLE_SIZE`]). A larger table balances more evenly and
    /// costs more memory (4 bytes a slot) and build time.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for `table_size` when `size` is not a prime.
    pub fn table_size(mut self, size: usize) -> Result<Self, ConfigError> {
        if !is_prime(size) {
            return Err(ConfigError::new(
                "table_size",
                format!("must be a prime, got {size}"),
            ));
        }
        self.size = size;
        self.table = Arc::new(ArcSwapOption::empty());
        Ok(self)
    }
}

impl<K, S, H> MaglevService<K, S, H>
where
    K: std::hash::Hash + Clone + Send + Sync + 'static,
    S: Clone,
{
    /// The table for `set`: the published one if it was built for this set, else a new one.
    fn table_for(&self, set: &Arc<Vec<Entry<K, S>>>) -> Arc<Table<K, S>> {
        let current = self.table.load_full();
        if let Some(table) = current
            && Arc::ptr_eq(&table.set, set)
        {
            return table;
        }
        let hashes: Vec<u64> = set.iter().map(|e| e.node.key_hash()).collect();
        // More endpoints than slots: grow the table to the next prime (never in practice with
        // the default size).
        let mut size = self.size;
        while size < hashes.len() || !is_prime(size) {
            size += 1;
        }
        let table = Arc::new(Table {
            set: Arc::clone(set),
            slots: table(&hashes, size),
        });
        self.table.store(Some(Arc::clone(&table)));
        table
    }
}

impl<K, S, H, Req> Service<Req> for MaglevService<K, S, H>
where
    K: std::hash::Hash + Clone + Send + Sync + 'static,
    S: Service<Req> + Clone,
    S::Error: Into<BoxError> + 'static,
    H: Fn(&Req) -> u64,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = HashFuture<S, Req>;

    /// Always ready: the endpoint is chosen in `call`, from the request.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> HashFuture<S, Req> {
        let core = &*self.shared.core;
        let request_hash = (self.hash)(&request);
        let set = self.shared.set.load_full();
        let now = core.clock.now();
        let chosen = if set.is_empty() {
            None
        } else {
            let table = self.table_for(&set);
            let panic = core.outlier.in_panic(core.ejected_count(), set.len());
            let healthy = |e: &Entry<K, S>| hash_candidate(e, &set, now, core, panic);
            let m = table.slots.len();
            let start = ((u128::from(mix(request_hash)) * m as u128) >> 64) as usize;
            (0..MAX_PROBES.min(m))
                .map(|j| &set[table.slots[(start + j) % m] as usize])
                .find(|e| healthy(e))
                .or_else(|| set.iter().find(|e| healthy(e)))
        };
        HashFuture::dispatch(core, chosen, request, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(ids: impl Iterator<Item = u64>) -> Vec<u64> {
        ids.map(|i| mix(i.wrapping_add(1_000)) | 1).collect()
    }

    #[test]
    fn every_endpoint_gets_its_share_of_the_slots() {
        let endpoints = hashes(0..10);
        let slots = table(&endpoints, DEFAULT_TABLE_SIZE);
        let mut counts = [0u32; 10];
        for s in &slots {
            counts[*s as usize] += 1;
        }
        // 65 537 / 10: 6 553 or 6 554 each.
        for c in counts {
            assert!((6_553..=6_554).contains(&c), "{counts:?}");
        }
        // Keys follow the slots: 100 000 hashed keys spread within 3 % of a tenth each.
        let mut keys = [0u32; 10];
        for k in 0..100_000u64 {
            let slot = ((u128::from(mix(k)) * slots.len() as u128) >> 64) as usize;
            keys[slots[slot] as usize] += 1;
        }
        for c in keys {
            assert!((9_700..=10_300).contains(&c), "{keys:?}");
        }
    }

    #[test]
    fn a_membership_change_moves_at_most_one_nth_and_a_little_of_the_keys() {
        // epsilon = 0.02: Maglev trades a little disruption beyond the minimum for balance.
        let size = DEFAULT_TABLE_SIZE;
        let ten = hashes(0..10);
        let before = table(&ten, size);
        // Remove endpoint 3: indices above it shift down by one in the new set.
        let nine: Vec<u64> = ten.iter().copied().filter(|h| *h != ten[3]).collect();
        let after = table(&nine, size);
        let id_before = |slot: usize| ten[before[slot] as usize];
        let id_after = |slot: usize| nine[after[slot] as usize];
        let moved = (0..size).filter(|s| id_before(*s) != id_after(*s)).count();
        let share = moved as f64 / size as f64;
        assert!(share <= 0.1 + 0.02, "removal moved {share}");
        // Every slot of the removed endpoint had to move; few others did.
        assert!(share >= 0.1 - 0.001, "{share}");
        // Add an eleventh endpoint.
        let eleven = hashes(0..11);
        let grown = table(&eleven, size);
        let moved = (0..size)
            .filter(|s| ten[before[*s] as usize] != eleven[grown[*s] as usize])
            .count();
        let share = moved as f64 / size as f64;
        assert!(share <= 1.0 / 11.0 + 0.02, "addition moved {share}");
    }

    #[test]
    fn table_sizes_are_primes_and_tables_are_full() {
        assert!(is_prime(65_537) && is_prime(13) && !is_prime(65_536) && !is_prime(1));
        let slots = table(&hashes(0..13), 13);
        let mut sorted = slots;
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (0..13).collect::<Vec<u32>>(),
            "13 endpoints, one slot each"
        );
        assert!(table(&[], 7).is_empty());
    }
}
