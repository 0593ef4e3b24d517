//! The shared state of one limiter: the TAT in one atomic word, and the quota it is measured
//! against, changeable at run time without a lock on the acquiring path.
//!
//! # Layout
//!
//! ```text
//!  63      60 59                                                      0
//! +----------+---------------------------------------------------------+
//! |   gen    |  TAT: ns since the limiter's origin (at most 2^60 - 1)   |
//! +----------+---------------------------------------------------------+
//! ```
//!
//! The quota lives in two slots; generation `g` reads slot `g % 2`. Changing the quota writes
//! the *other* slot, then installs the rescaled TAT with generation `g + 1` in one CAS. So an
//! acquirer always decides with the quota of the generation it read the TAT with, and its CAS
//! (which expects that exact word) fails if the quota changed meanwhile: a decision never mixes
//! an old TAT with a new quota or the reverse.
//!
//! # Memory ordering
//!
//! - Slot fields are stored `Release` and loaded `Acquire`; the state word is loaded `Acquire`
//!   and the quota-change CAS is `Release`. An acquirer that reads generation `g` from the word
//!   therefore sees slot `g % 2` as it was written for `g` (the slot writes happen before the
//!   CAS that published `g`, and acquirers' CASes continue that release sequence).
//! - A slot can be rewritten only for generation `g + 2`, after the word left `g`. If a stale
//!   acquirer's `Acquire` load of a slot sees such a rewrite, the change that published `g + 1`
//!   happens before everything that acquirer does next, so its CAS (or, for a denial, its
//!   re-check of the word) sees a word other than the one it expects and it starts over.
//! - The acquiring CAS succeeds `Relaxed`: admission only needs the word's single modification
//!   order (no two acquirers take the same tokens), and publishes no other data. It fails
//!   `Acquire`, because the retry reads the slot of the generation it just saw.
//! - Quota changers are serialized by a mutex (a cold path). Reusing a generation needs 16
//!   changes during one acquirer's load-to-CAS window *and* the TAT landing on the very same
//!   nanosecond, which we accept as impossible in practice.

use crate::gcra::{Decision, Gcra, NOW_MAX, TAT_MAX, decide, rescale};
use crossbeam_utils::CachePadded;
use palisade_core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use parking_lot::Mutex;

const GEN_SHIFT: u32 = 60;
const GEN_MASK: u64 = !TAT_MAX;
const _: () = assert!(TAT_MAX == (1 << GEN_SHIFT) - 1);

#[inline]
fn tat_of(word: u64) -> u64 {
    word & TAT_MAX
}

#[inline]
fn gen_of(word: u64) -> u64 {
    word >> GEN_SHIFT
}

#[inline]
fn pack(generation: u64, tat: u64) -> u64 {
    debug_assert!(tat <= TAT_MAX);
    ((generation << GEN_SHIFT) & GEN_MASK) | tat
}

#[derive(Debug)]
struct Slot {
    interval: AtomicU64,
    burst: AtomicU32,
}

impl Slot {
    fn new(gcra: Gcra) -> Slot {
        Slot {
            interval: AtomicU64::new(gcra.interval_nanos()),
            burst: AtomicU32::new(gcra.burst()),
        }
    }

    #[inline]
    fn load(&self) -> Option<Gcra> {
        // Acquire (both): see "Memory ordering" in the module docs; a rewrite seen here makes
        // the word's move to a newer generation visible to the caller's next access.
        let interval = self.interval.load(Ordering::Acquire);
        let burst = self.burst.load(Ordering::Acquire);
        // A torn read of a slot being rewritten can pair values that do not form a valid
        // quota; the caller's CAS or re-check fails in that case, so only refuse to build one
        // (with a multiplication: a division would cost more than the rest of the decision).
        let capacity = interval.checked_mul(u64::from(burst))?;
        (interval > 0 && burst > 0 && capacity <= crate::gcra::CAPACITY_MAX)
            .then_some(Gcra::new_unchecked(interval, burst))
    }

    fn store(&self, gcra: Gcra) {
        // Release (both): pairs with the Acquire loads in `load`.
        self.interval
            .store(gcra.interval_nanos(), Ordering::Release);
        self.burst.store(gcra.burst(), Ordering::Release);
    }
}

/// What an acquirer got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// Admitted; go after this many nanoseconds (zero: now).
    Now(u64),
    /// Refused; would conform after this many nanoseconds.
    Denied(u64),
    /// The cost exceeds this burst.
    TooCostly(u32),
}

/// One limiter's TAT and quota. See the module docs.
///
/// The word, which every admission writes, has a cache line to itself: the quota slots and the
/// limiter's other read-mostly fields then stay shared in every core's cache instead of being
/// invalidated by each CAS on another core.
#[derive(Debug)]
pub(crate) struct State {
    word: CachePadded<AtomicU64>,
    slots: [Slot; 2],
    change: Mutex<()>,
}

impl State {
    pub(crate) fn new(gcra: Gcra) -> State {
        State {
            word: CachePadded::new(AtomicU64::new(pack(0, 0))),
            slots: [Slot::new(gcra), Slot::new(gcra)],
            change: Mutex::new(()),
        }
    }

    /// Takes `cost` tokens at relative time `now` (clamped), reserving up to `max_wait` ns.
    #[inline]
    pub(crate) fn acquire(&self, now: u64, cost: u32, max_wait: u64) -> Acquired {
        let now = now.min(NOW_MAX);
        // Acquire: makes the slot of this generation visible (see module docs).
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let Some(gcra) = self.slots[(gen_of(word) & 1) as usize].load() else {
                // Torn read during a quota change: the word has moved on.
                // Acquire: as the first load.
                word = self.word.load(Ordering::Acquire);
                continue;
            };
            let denial = match decide(tat_of(word), now, cost, gcra, max_wait) {
                Decision::Admit { tat, wait } => {
                    // Relaxed on success: the word's modification order alone decides who got
                    // which tokens. Acquire on failure: the retry reads the slot of the
                    // generation it sees (module docs).
                    match self.word.compare_exchange_weak(
                        word,
                        pack(gen_of(word), tat),
                        Ordering::Relaxed,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => return Acquired::Now(wait),
                        Err(actual) => {
                            word = actual;
                            palisade_core::sync::hint::spin_loop();
                            continue;
                        }
                    }
                }
                Decision::Deny { retry_after } => Acquired::Denied(retry_after),
                Decision::TooCostly => Acquired::TooCostly(gcra.burst()),
            };
            // A denial writes nothing, so check that the quota it used is still the word's.
            // Acquire: as the first load; after the Acquire slot loads, this load sees any
            // generation change whose slot write they saw.
            let now_word = self.word.load(Ordering::Acquire);
            if now_word == word {
                return denial;
            }
            word = now_word;
        }
    }

    /// The current quota parameters and tokens left at relative time `now`.
    pub(crate) fn snapshot(&self, now: u64) -> (Gcra, u32) {
        let now = now.min(NOW_MAX);
        loop {
            // Acquire: as in `acquire`.
            let word = self.word.load(Ordering::Acquire);
            if let Some(gcra) = self.slots[(gen_of(word) & 1) as usize].load() {
                // Acquire: as in `acquire`'s denial re-check.
                if self.word.load(Ordering::Acquire) == word {
                    return (gcra, gcra.remaining(tat_of(word), now));
                }
            }
        }
    }

    /// Installs `new` at relative time `now`, carrying the available tokens over (see
    /// [`rescale`]). Returns the previous quota parameters.
    pub(crate) fn set_quota(&self, now: u64, new: Gcra) -> Gcra {
        let now = now.min(NOW_MAX);
        let _serial = self.change.lock();
        // Acquire: as in `acquire`. Only changers (serialized by the lock) write slots, so the
        // slot of this generation is stable while we hold it.
        let mut word = self.word.load(Ordering::Acquire);
        let generation = gen_of(word);
        let old = self.slots[(generation & 1) as usize]
            .load()
            .expect("slots are consistent while the change lock is held");
        self.slots[((generation + 1) & 1) as usize].store(new);
        loop {
            let next = pack(generation + 1, rescale(tat_of(word), now, old, new));
            // Release on success: publishes the slot just written to acquirers that read the
            // new generation. Acquire on failure: a fresh TAT from an acquirer (same
            // generation, since changers hold the lock).
            match self
                .word
                .compare_exchange_weak(word, next, Ordering::Release, Ordering::Acquire)
            {
                Ok(_) => return old,
                Err(actual) => word = actual,
            }
        }
    }

    /// The TAT and generation word, for tests.
    #[cfg(test)]
    pub(crate) fn tat(&self) -> u64 {
        // Relaxed: tests read it after the threads that wrote it were joined.
        tat_of(self.word.load(Ordering::Relaxed))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn word_layout_round_trips() {
        let w = pack(17, TAT_MAX);
        assert_eq!(gen_of(w), 1, "generations wrap at 16");
        assert_eq!(tat_of(w), TAT_MAX);
        assert_eq!(gen_of(pack(15, 5)), 15);
        assert_eq!(tat_of(pack(15, 5)), 5);
    }

    #[test]
    fn acquiring_matches_the_pure_function() {
        let s = State::new(Gcra::new(10, 2));
        assert_eq!(s.acquire(0, 1, 0), Acquired::Now(0));
        assert_eq!(s.acquire(0, 1, 0), Acquired::Now(0));
        assert_eq!(s.acquire(0, 1, 0), Acquired::Denied(10));
        assert_eq!(s.acquire(0, 3, 0), Acquired::TooCostly(2));
        assert_eq!(s.acquire(0, 1, 15), Acquired::Now(10));
        assert_eq!(s.tat(), 30);
        assert_eq!(s.snapshot(30), (Gcra::new(10, 2), 2));
    }

    #[test]
    fn quota_changes_flip_generations_and_keep_tokens() {
        let s = State::new(Gcra::new(10, 2));
        assert_eq!(s.acquire(0, 1, 0), Acquired::Now(0));
        for round in 0..40u32 {
            let burst = 2 + round % 3;
            let before = s.snapshot(0).1;
            s.set_quota(0, Gcra::new(10, burst));
            assert_eq!(s.snapshot(0), (Gcra::new(10, burst), before.min(burst)));
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use palisade_core::sync::{Arc, loom};

    /// Three threads race for a bucket of two at one instant: exactly two are admitted, the
    /// third is told to wait one interval, and the TAT counts exactly the two.
    #[test]
    fn loom_concurrent_acquirers_never_exceed_the_burst() {
        loom::model(|| {
            let state = Arc::new(State::new(Gcra::new(10, 2)));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let state = state.clone();
                    loom::thread::spawn(move || state.acquire(0, 1, 0))
                })
                .collect();
            let mine = state.acquire(0, 1, 0);
            let mut results: Vec<Acquired> =
                threads.into_iter().map(|t| t.join().unwrap()).collect();
            results.push(mine);
            let admitted = results.iter().filter(|r| **r == Acquired::Now(0)).count();
            assert_eq!(admitted, 2, "{results:?}");
            assert!(results.contains(&Acquired::Denied(10)));
            assert_eq!(state.tat(), 20);
        });
    }

    /// A quota change races two acquirers. Old quota: one token per 10 ns, burst 2, one token
    /// already taken. New quota: one per 5 ns, burst 4. Every serialization admits exactly one
    /// of the two and ends with an empty bucket under the new quota; a decision that mixed an
    /// old TAT with the new quota would find two tokens and admit both.
    #[test]
    fn loom_quota_change_is_atomic() {
        loom::model(|| {
            let state = Arc::new(State::new(Gcra::new(10, 2)));
            assert_eq!(state.acquire(0, 1, 0), Acquired::Now(0));
            let changer = {
                let state = state.clone();
                loom::thread::spawn(move || state.set_quota(0, Gcra::new(5, 4)))
            };
            let acquirer = {
                let state = state.clone();
                loom::thread::spawn(move || state.acquire(0, 1, 0))
            };
            let mine = state.acquire(0, 1, 0);
            assert_eq!(changer.join().unwrap(), Gcra::new(10, 2));
            let theirs = acquirer.join().unwrap();
            let admitted = [mine, theirs]
                .iter()
                .filter(|r| matches!(r, Acquired::Now(0)))
                .count();
            assert_eq!(admitted, 1, "{mine:?} {theirs:?}");
            // The denial names the wait of whichever quota decided it: 10 ns (old) or 5 ns.
            for r in [mine, theirs] {
                assert!(
                    matches!(r, Acquired::Now(0) | Acquired::Denied(5 | 10)),
                    "{r:?}"
                );
            }
            assert_eq!(state.snapshot(0), (Gcra::new(5, 4), 0));
        });
    }
}
