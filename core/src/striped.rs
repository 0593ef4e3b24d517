//! A statistic counter striped by thread, so that threads counting at the same time do not
//! bounce one cache line between their cores.
//!
//! A plain shared `AtomicU64` that two cores `fetch_add` into costs each of them a cache-line
//! transfer per addition: on a breaker that rejects every call, the rejected-calls count was
//! the only write of the rejection path, and two threads rejecting at once ran about four
//! times slower than one. A [`StripedCounter`] holds [`STRIPES`] counters, each on its own
//! cache line; a thread adds into the stripe of its own ([`stripe()`], taken round-robin the
//! first time a thread counts), and a reader sums the stripes. Up to [`STRIPES`] threads count
//! without sharing a line; more share stripes, and remain correct.
//!
//! What it is for: statistics that many threads write on a hot path and few read (a snapshot,
//! a metrics export). What it is not for: a count that decides anything, since
//! [`sum`](StripedCounter::sum) reads the stripes one after another, not atomically together.
//!
//! The same [`stripe()`] spreads the breaker's time-window buckets over their stripes, so
//! Palisade has one thread-to-stripe assignment.
//!
//! # Memory ordering
//!
//! Every operation is `Relaxed`: the counter publishes nothing, and each stripe is one atomic
//! location, so no addition to it is lost (an RMW always acts on the latest value of its
//! location). What `Relaxed` still guarantees, by coherence, is the property a statistic
//! needs: a [`sum`](StripedCounter::sum) that happens after an [`add`](StripedCounter::add)
//! (the adding thread released something the summing thread acquired, or joined it) includes
//! that addition, and a [`reset`](StripedCounter::reset) that happens before an addition does
//! not erase it. Additions concurrent with a sum may or may not be in it; additions
//! concurrent with a reset may or may not survive it.
//!
//! Internal to Palisade's layer crates (hidden from the docs): not part of the stable API.

#![doc(hidden)]

use crate::sync::atomic::{AtomicU64, Ordering};
use std::fmt;

/// Stripes per counter: the threads that count at once without sharing a cache line.
pub const STRIPES: usize = 4;

/// The stripe of the calling thread, below [`STRIPES`]: threads take stripes round-robin the
/// first time they ask, so the first [`STRIPES`] threads that count get one each.
///
/// Under `cfg(loom)` the stripe is the model thread's index modulo [`STRIPES`] (loom runs
/// every model thread on one OS thread, so a `std` thread-local would put them all on one
/// stripe), which is the same in every execution of a model, as loom requires.
#[inline]
pub fn stripe() -> usize {
    #[cfg(not(loom))]
    {
        // Not an atomic that publishes anything: it only hands out distinct stripes, so it is
        // std's, outside any model.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        thread_local! {
            // Relaxed: the RMW alone makes consecutive threads get consecutive numbers; nothing
            // else is ordered by it.
            static STRIPE: usize =
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % STRIPES;
        }
        STRIPE.with(|stripe| *stripe)
    }
    #[cfg(loom)]
    {
        loom_thread_index() % STRIPES
    }
}

/// The index of the current loom model thread (0 for the model's main thread, then 1, 2, …
/// in spawn order): loom shows it only through `ThreadId`'s `Debug`, `ThreadId(n)`.
#[cfg(loom)]
fn loom_thread_index() -> usize {
    let id = format!("{:?}", loom::thread::current().id());
    id.trim_start_matches("ThreadId(")
        .trim_end_matches(')')
        .parse()
        .expect("loom's ThreadId prints as ThreadId(n)")
}

/// One stripe, alone on its cache line. 128 bytes, not 64: x86-64 prefetches lines in
/// adjacent pairs, and some ARM cores have 128-byte lines (the size `crossbeam_utils`'s
/// `CachePadded` picks on both).
#[repr(align(128))]
struct Padded(AtomicU64);

/// A `u64` statistic that threads add to without sharing a cache line. See the
/// [module docs](self).
///
/// # Memory ordering
///
/// Every operation is `Relaxed` (see the [module docs](self#memory-ordering)): a sum includes
/// every addition that happened before it, and none is ever lost except to a
/// [`reset`](Self::reset) it did not happen after.
pub struct StripedCounter {
    stripes: [Padded; STRIPES],
}

impl StripedCounter {
    /// A counter at zero.
    pub fn new() -> StripedCounter {
        StripedCounter {
            stripes: std::array::from_fn(|_| Padded(AtomicU64::new(0))),
        }
    }

    /// Adds `n` into the calling thread's stripe.
    #[inline]
    pub fn add(&self, n: u64) {
        // Relaxed: a statistic that publishes nothing; the RMW alone keeps every addition.
        self.stripes[stripe()].0.fetch_add(n, Ordering::Relaxed);
    }

    /// The sum of the stripes (wrapping, as each stripe's additions do): every addition that
    /// happened before this call, and any number of those concurrent with it.
    pub fn sum(&self) -> u64 {
        self.stripes.iter().fold(0, |sum, stripe| {
            // Relaxed: a statistic; coherence alone makes the load see every addition to this
            // stripe that happened before it.
            sum.wrapping_add(stripe.0.load(Ordering::Relaxed))
        })
    }

    /// Back to zero: every addition that happened before this call is forgotten, every one
    /// that happens after it counts; one concurrent with it may land on either side.
    pub fn reset(&self) {
        for stripe in &self.stripes {
            // Relaxed: a statistic; an addition ordered after the reset is after this store in
            // the stripe's modification order, so it is never erased.
            stripe.0.store(0, Ordering::Relaxed);
        }
    }
}

impl Default for StripedCounter {
    fn default() -> StripedCounter {
        StripedCounter::new()
    }
}

impl fmt::Debug for StripedCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StripedCounter").field(&self.sum()).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{STRIPES, StripedCounter, stripe};
    use std::collections::HashSet;
    use std::sync::Arc;

    /// One test, not two: the round-robin check needs that no other thread of this test binary
    /// takes a stripe meanwhile, and this is the only test here that counts.
    #[test]
    fn threads_take_stripes_in_turn_and_the_sum_keeps_every_addition() {
        // Threads asking one after another take the stripes in turn and keep theirs.
        let stripes: Vec<usize> = (0..2 * STRIPES)
            .map(|_| {
                std::thread::spawn(|| {
                    let first = stripe();
                    assert_eq!(stripe(), first, "a thread keeps its stripe");
                    first
                })
                .join()
                .expect("no panic")
            })
            .collect();
        assert!(stripes.iter().all(|&s| s < STRIPES), "{stripes:?}");
        let taken: HashSet<usize> = stripes.iter().copied().collect();
        assert_eq!(taken.len(), STRIPES, "stripes taken: {stripes:?}");

        let counter = Arc::new(StripedCounter::new());
        counter.add(7);
        assert_eq!(counter.sum(), 7);
        // More threads than stripes: some share a stripe, and nothing is lost.
        let threads: Vec<_> = (1..=STRIPES as u64 + 2)
            .map(|n| {
                let counter = Arc::clone(&counter);
                std::thread::spawn(move || {
                    for _ in 0..1_000 {
                        counter.add(n);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("no panic");
        }
        let added: u64 = (1..=STRIPES as u64 + 2).map(|n| n * 1_000).sum();
        assert_eq!(counter.sum(), 7 + added);
        assert_eq!(
            format!("{counter:?}"),
            format!("StripedCounter({})", 7 + added)
        );
        counter.reset();
        assert_eq!(counter.sum(), 0);
        counter.add(1);
        assert_eq!(counter.sum(), 1);
        assert_eq!(StripedCounter::default().sum(), 0);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::StripedCounter;
    use crate::sync::atomic::{AtomicBool, Ordering};
    use crate::sync::{Arc, loom};

    /// Two threads add, each then raising a flag (Release); a third reads the flags (Acquire)
    /// and sums while they run. The sum holds every addition whose flag it saw (they happened
    /// before it) and never more than was added; after the joins it is exact.
    #[test]
    fn loom_striped_sum_never_misses_an_add_that_happened_before_it() {
        loom::model(|| {
            let counter = Arc::new(StripedCounter::new());
            counter.add(10);
            let flags: Arc<[AtomicBool; 2]> =
                Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
            let adders: Vec<_> = (0..2)
                .map(|i| {
                    let counter = Arc::clone(&counter);
                    let flags = Arc::clone(&flags);
                    loom::thread::spawn(move || {
                        counter.add(1 << i);
                        // Release: publishes the addition to whoever Acquires the flag.
                        flags[i].store(true, Ordering::Release);
                    })
                })
                .collect();
            // Acquire: pairs with the adder's Release, so its addition happened before the sum.
            let seen: u64 = (0..2)
                .filter(|&i| flags[i].load(Ordering::Acquire))
                .map(|i| 1 << i)
                .sum();
            let sum = counter.sum();
            assert_eq!(
                (sum - 10) & seen,
                seen,
                "an addition that happened before is missing"
            );
            assert!(
                (10..=13).contains(&sum),
                "sum {sum} is not made of additions"
            );
            for adder in adders {
                adder.join().unwrap();
            }
            assert_eq!(counter.sum(), 13);
        });
    }

    /// A reset races two adders: it erases what was added before it, never an addition that
    /// happened after it (the adder saw the reset's flag first), and never invents a count.
    #[test]
    fn loom_striped_reset_never_erases_an_add_that_happened_after_it() {
        loom::model(|| {
            let counter = Arc::new(StripedCounter::new());
            counter.add(10);
            let reset = Arc::new(AtomicBool::new(false));
            let adders: Vec<_> = (0..2)
                .map(|i| {
                    let counter = Arc::clone(&counter);
                    let reset = Arc::clone(&reset);
                    loom::thread::spawn(move || {
                        // Acquire: pairs with the Release after the reset: if the flag is up,
                        // the reset happened before the addition below.
                        let after_reset = reset.load(Ordering::Acquire);
                        counter.add(1 << i);
                        if after_reset { 1 << i } else { 0 }
                    })
                })
                .collect();
            counter.reset();
            // Release: publishes the reset to adders that Acquire the flag.
            reset.store(true, Ordering::Release);
            let after: u64 = adders.into_iter().map(|a| a.join().unwrap()).sum();
            let sum = counter.sum();
            assert_eq!(sum & after, after, "an addition after the reset was erased");
            assert!(sum <= 3, "the count from before the reset survived: {sum}");
        });
    }
}
