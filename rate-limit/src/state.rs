//! The shared state of one limiter: the TAT in one atomic word, and the quota and time origin
//! it is measured against, changeable at run time without a lock on the acquiring path.
//!
//! # Layout
//!
//! ```text
//!  63      60 59                                                      0
//! +----------+---------------------------------------------------------+
//! |   gen    |  TAT: ns since the generation's origin (< 2^60)          |
//! +----------+---------------------------------------------------------+
//! ```
//!
//! The quota and the time origin live in two slots; generation `g` reads slot `g % 2`.
//! Changing the quota, or moving the origin forward (a *rebase*, once every 2^58 ns ≈ 9 years
//! of the clock, so relative times never run out), writes the *other* slot, then installs the
//! converted TAT with generation `g + 1` in one CAS. So an acquirer always decides with the
//! quota and origin of the generation it read the TAT with, and its CAS (which expects that
//! exact word) fails if either changed meanwhile: a decision never mixes an old TAT with a new
//! quota or origin, or the reverse.
//!
//! # Tokens given back
//!
//! A token taken for a call that never reached the dependency (the service was dropped ready,
//! or a layer below rejected the call locally) is given back with [`State::refund`]. The
//! refund is exact when it comes before the bucket would have been full again without that
//! token, and shrinks by the time elapsed after that: GCRA's update `max(tat, now) + cost·T`
//! is monotone and 1-Lipschitz in `tat`, so a taken token raises the TAT by `cost·T` at most,
//! and the raise only shrinks while the bucket would have overflowed without it, by at most
//! the time since then. Refunding `cost·T` minus that time therefore never leaves the bucket
//! fuller than if the token had never been taken, whatever happened in between: the
//! `burst + rate·W` promise holds. (The limiter makes no reservations for the future, which
//! would break that argument: waiting means sleeping until a token is due, then trying again.)
//!
//! # Memory ordering
//!
//! - Slot fields are stored `Release` and loaded `Acquire`; the state word is loaded `Acquire`
//!   and the change CAS is `Release`. An acquirer that reads generation `g` from the word
//!   therefore sees slot `g % 2` as it was written for `g` (the slot writes happen before the
//!   CAS that published `g`, and acquirers' CASes continue that release sequence).
//! - A slot can be rewritten only for generation `g + 2`, after the word left `g`. If a stale
//!   acquirer's `Acquire` load of a slot sees such a rewrite, the change that published `g + 1`
//!   happens before everything that acquirer does next, so its CAS (or, for a denial, its
//!   re-check of the word) sees a word other than the one it expects and it starts over.
//! - The acquiring and refunding CASes succeed `Relaxed`: admission only needs the word's
//!   single modification order (no two acquirers take the same tokens), and publishes no other
//!   data. They fail `Acquire`, because the retry reads the slot of the generation it just saw.
//! - Changers (quota changes and rebases) are serialized by a mutex (a cold path). Reusing a
//!   generation needs 16 changes during one acquirer's load-to-CAS window *and* the TAT landing
//!   on the very same nanosecond, which we accept as impossible in practice. A refund also
//!   checks that the slot still holds the quota and origin its token was taken with.

use crate::gcra::{CAPACITY_MAX, Decision, Gcra, REBASE_AT, TAT_MAX, decide, rescale};
use crossbeam_utils::CachePadded;
use palisade_core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use parking_lot::Mutex;

const GEN_SHIFT: u32 = 60;
const GEN_MASK: u64 = !TAT_MAX;
const _: () = assert!(TAT_MAX == (1 << GEN_SHIFT) - 1);
// A TAT is at most `now + capacity` with `now < REBASE_AT`: it always fits its 60 bits.
const _: () = assert!(REBASE_AT + CAPACITY_MAX < TAT_MAX);

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
    ((generation << GEN_SHIFT) & GEN_MASK) | tat.min(TAT_MAX)
}

#[derive(Debug)]
struct Slot {
    interval: AtomicU64,
    /// `interval · burst`, kept so that the admitting fast path needs no multiplication (and
    /// no load of `burst`: see [`State::acquire`]).
    capacity: AtomicU64,
    /// Absolute clock nanoseconds that relative time 0 of this generation stands for.
    origin: AtomicU64,
    /// Which change installed these values: 0 for the limiter's first quota, then one more
    /// for each change (a quota change or a rebase). Never repeats, unlike the word's 4-bit
    /// generation (this, modulo 16), so a token names the exact quota and origin it was taken
    /// under in 8 bytes (see [`Taken`]).
    epoch: AtomicU64,
    burst: AtomicU32,
}

/// One generation's parameters, read together from a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Params {
    gcra: Gcra,
    origin: u64,
    epoch: u64,
}

impl Params {
    /// Relative time of the absolute clock reading `now` (0 if the clock went back).
    #[inline]
    fn rel(self, now: u64) -> u64 {
        now.saturating_sub(self.origin)
    }
}

impl Slot {
    fn new(gcra: Gcra, origin: u64, epoch: u64) -> Slot {
        Slot {
            interval: AtomicU64::new(gcra.interval_nanos()),
            capacity: AtomicU64::new(gcra.capacity_nanos()),
            origin: AtomicU64::new(origin),
            epoch: AtomicU64::new(epoch),
            burst: AtomicU32::new(gcra.burst()),
        }
    }

    #[inline]
    fn load(&self) -> Option<Params> {
        // Acquire (all four): see "Memory ordering" in the module docs; a rewrite seen here
        // makes the word's move to a newer generation visible to the caller's next access.
        let interval = self.interval.load(Ordering::Acquire);
        let burst = self.burst.load(Ordering::Acquire);
        let origin = self.origin.load(Ordering::Acquire);
        let epoch = self.epoch.load(Ordering::Acquire);
        // A torn read of a slot being rewritten can pair values that do not form a valid
        // quota; the caller's CAS or re-check fails in that case, so only refuse to build one
        // (with a multiplication: a division would cost more than the rest of the decision).
        let capacity = interval.checked_mul(u64::from(burst))?;
        (interval > 0 && burst > 0 && capacity <= CAPACITY_MAX).then_some(Params {
            gcra: Gcra::new_unchecked(interval, burst),
            origin,
            epoch,
        })
    }

    fn store(&self, params: Params) {
        // Release (all five): pairs with the Acquire loads in `load` and `State::acquire_fast`.
        self.interval
            .store(params.gcra.interval_nanos(), Ordering::Release);
        self.capacity
            .store(params.gcra.capacity_nanos(), Ordering::Release);
        self.burst.store(params.gcra.burst(), Ordering::Release);
        self.origin.store(params.origin, Ordering::Release);
        self.epoch.store(params.epoch, Ordering::Release);
    }
}

/// A token taken from the bucket, with what [`State::refund`] needs to give it back (with the
/// cost, which the caller keeps).
///
/// Two words, so that a response future holding one stays small: the slot's epoch names the
/// quota and origin it was taken under (the TAT moved by `cost · interval` of that quota).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Taken {
    /// The epoch of the quota and origin it was taken under.
    epoch: u64,
    /// Relative time from which the bucket would have refilled without this token:
    /// `max(tat before, now)`.
    start: u64,
}

/// What an acquirer got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// Admitted; the token may be given back with [`State::refund`] if it goes unused.
    Now(Taken),
    /// Refused; would conform after this many nanoseconds.
    Denied(u64),
    /// The cost exceeds this burst.
    TooCostly(u32),
}

/// What [`State::acquire_fast`] settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fast {
    /// Admitted, as [`Acquired::Now`].
    Now(Taken),
    /// Refused, as [`Acquired::Denied`].
    Denied(u64),
    /// Not settled here: ask [`State::acquire_slow`].
    Slow,
}

/// One limiter's TAT, quota and origin. See the module docs.
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
    /// A full bucket of `gcra`, with relative time 0 at the absolute clock reading `origin`.
    pub(crate) fn new(gcra: Gcra, origin: u64) -> State {
        State {
            word: CachePadded::new(AtomicU64::new(pack(0, 0))),
            // The second slot is first read for generation 1, after the first change wrote
            // it; until then its epoch matches no token.
            slots: [
                Slot::new(gcra, origin, 0),
                Slot::new(gcra, origin, u64::MAX),
            ],
            change: Mutex::new(()),
        }
    }

    /// Takes `cost` tokens at the absolute clock reading `now`, if the bucket holds them.
    #[inline(always)]
    pub(crate) fn acquire(&self, now: u64, cost: u32) -> Acquired {
        match self.acquire_fast(now, cost) {
            Fast::Now(taken) => Acquired::Now(taken),
            Fast::Denied(after) => Acquired::Denied(after),
            Fast::Slow => self.acquire_slow(now, cost),
        }
    }

    /// The common cases of [`acquire`](Self::acquire), inlined into every caller: one load of
    /// the word, four loads of its slot (in a read-mostly line that stays shared between
    /// cores), the GCRA step in `u64` with no multiplication for a unit cost, then one CAS
    /// (admitted; a lost CAS tries again with the word it saw) or one more load of the word
    /// (refused). What it does not settle (a cost above the burst, a word that moved under a
    /// refusal, a clock before the
    /// origin, a rebase due) is [`Fast::Slow`]: [`acquire_slow`](Self::acquire_slow) decides
    /// it from scratch.
    ///
    /// The slot's fields are not validated against each other here, as `Slot::load` does: a
    /// torn read of a slot being rewritten (a quota change two generations on) means the word
    /// has moved on (see "Memory ordering" in the module docs), so the CAS, which expects the
    /// word read here, fails, and a refusal's re-check of the word differs; nothing is decided
    /// with such values. The arithmetic saturates, so they cannot overflow either.
    #[inline(always)]
    pub(crate) fn acquire_fast(&self, now: u64, cost: u32) -> Fast {
        // Acquire: makes the slot of this generation visible (see module docs).
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let slot = &self.slots[(gen_of(word) & 1) as usize];
            // Acquire (all four): as in `Slot::load`; all before the CAS or the re-check that
            // vouches for them.
            let interval = slot.interval.load(Ordering::Acquire);
            let capacity = slot.capacity.load(Ordering::Acquire);
            let origin = slot.origin.load(Ordering::Acquire);
            let epoch = slot.epoch.load(Ordering::Acquire);
            // Wrapping: a clock reading before the origin becomes a huge relative time, which
            // fails the rebase test and is left to the slow path (which saturates it to 0).
            let rel = now.wrapping_sub(origin);
            if rel >= REBASE_AT {
                return Fast::Slow;
            }
            let tat = tat_of(word);
            let start = tat.max(rel);
            let amount = u64::from(cost).saturating_mul(interval);
            let next = start.saturating_add(amount);
            // `rel < 2^58` and `capacity <= 2^57`: the sum cannot overflow. The test is
            // `decide`'s `next - capacity <= now` without the saturation; passing it implies
            // `amount <= capacity`, i.e. `cost <= burst`.
            let limit = rel + capacity;
            if next <= limit {
                // Relaxed on success: the word's modification order alone decides who got
                // which tokens (module docs). Acquire on failure: the retry reads the slot of
                // the generation it sees.
                match self.word.compare_exchange_weak(
                    word,
                    pack(gen_of(word), next),
                    Ordering::Relaxed,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return Fast::Now(Taken { epoch, start }),
                    // Lost to another acquirer: again with the word it wrote (no spin-loop
                    // hint: see `acquire_slow`).
                    Err(actual) => {
                        word = actual;
                        continue;
                    }
                }
            }
            // A cost above the burst is the slow path's to name.
            if amount > capacity {
                return Fast::Slow;
            }
            // A refusal writes nothing, so check that the quota it used is still the word's.
            // Acquire: as the first load; after the Acquire slot loads, this load sees any
            // generation change whose slot write they saw.
            return if self.word.load(Ordering::Acquire) == word {
                Fast::Denied(next - limit)
            } else {
                Fast::Slow
            };
        }
    }

    /// [`acquire`](Self::acquire) in full: the CAS loop with every case.
    #[inline(never)]
    pub(crate) fn acquire_slow(&self, now: u64, cost: u32) -> Acquired {
        // Acquire: makes the slot of this generation visible (see module docs).
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let Some(params) = self.slots[(gen_of(word) & 1) as usize].load() else {
                // Torn read during a change: the word has moved on.
                // Acquire: as the first load.
                word = self.word.load(Ordering::Acquire);
                continue;
            };
            let rel = params.rel(now);
            if rel >= REBASE_AT {
                word = self.rebase(now);
                continue;
            }
            let tat = tat_of(word);
            let denial = match decide(tat, rel, cost, params.gcra, 0) {
                Decision::Admit { tat: next, .. } => {
                    // Relaxed on success: the word's modification order alone decides who got
                    // which tokens. Acquire on failure: the retry reads the slot of the
                    // generation it sees (module docs).
                    match self.word.compare_exchange_weak(
                        word,
                        pack(gen_of(word), next),
                        Ordering::Relaxed,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => {
                            return Acquired::Now(Taken {
                                epoch: params.epoch,
                                start: tat.max(rel),
                            });
                        }
                        // No spin-loop hint before the retry: the failed CAS already
                        // brought the fresh word (and its cache line) here, and x86's `pause`
                        // costs more (~40 ns on recent cores) than the whole admission;
                        // governor retries at once too.
                        Err(actual) => {
                            word = actual;
                            continue;
                        }
                    }
                }
                Decision::Deny { retry_after } => Acquired::Denied(retry_after),
                Decision::TooCostly => Acquired::TooCostly(params.gcra.burst()),
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

    /// Whether `cost` tokens are there at the absolute clock reading `now`, taking nothing:
    /// `None` if [`acquire`](Self::acquire) would admit them now (or cannot tell: a quota
    /// change or a rebase under way, left to `acquire` to decide), else `Some(retry_after)`.
    ///
    /// Costs one load of the word and the slot's three loads (all plain loads on x86 and
    /// ARMv8's `ldar`), no write: the bucket's cache line stays shared.
    #[inline]
    pub(crate) fn peek(&self, now: u64, cost: u32) -> Option<u64> {
        // Acquire: makes the slot of this generation visible, as in `acquire`. An answer from
        // a stale word only errs one way or the other for this one readiness: `call` takes the
        // token with `acquire`, which decides for real.
        let word = self.word.load(Ordering::Acquire);
        let params = self.slots[(gen_of(word) & 1) as usize].load()?;
        let rel = params.rel(now);
        if rel >= REBASE_AT {
            return None;
        }
        match decide(tat_of(word), rel, cost, params.gcra, 0) {
            Decision::Admit { .. } => None,
            Decision::Deny { retry_after } => Some(retry_after),
            // Not for the unit-cost service (a burst is at least one token); refuse safely.
            Decision::TooCostly => Some(u64::MAX),
        }
    }

    /// Gives back a token taken by [`acquire`](Self::acquire) and never used, at the absolute
    /// clock reading `now`, as much of it as is safe (see "Tokens given back" in the module
    /// docs). Nothing is given back across a quota change or a rebase. `cost` is what it was
    /// taken for.
    pub(crate) fn refund(&self, taken: Taken, cost: u32, now: u64) {
        // Acquire: as in `acquire`.
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let params = match self.slots[(gen_of(word) & 1) as usize].load() {
                Some(params) if params.epoch == taken.epoch => params,
                // Another quota or origin (or a torn read of a slot being changed, which means
                // the same): the token's worth in this generation is unknown; keep it.
                _ => return,
            };
            // The epoch matches, so this is the quota it was taken under: the TAT moved by
            // `cost · interval` (saturating only for a cost that was never admitted).
            let amount = u64::from(cost).saturating_mul(params.gcra.interval_nanos());
            let held = params.rel(now).saturating_sub(taken.start);
            let credit = amount.saturating_sub(held);
            if credit == 0 {
                return;
            }
            let tat = tat_of(word).saturating_sub(credit);
            // Relaxed on success, Acquire on failure: as the acquiring CAS (module docs).
            match self.word.compare_exchange_weak(
                word,
                pack(gen_of(word), tat),
                Ordering::Relaxed,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => word = actual,
            }
        }
    }

    /// The current quota parameters and tokens left at the absolute clock reading `now`.
    pub(crate) fn snapshot(&self, now: u64) -> (Gcra, u32) {
        loop {
            // Acquire: as in `acquire`.
            let word = self.word.load(Ordering::Acquire);
            if let Some(params) = self.slots[(gen_of(word) & 1) as usize].load() {
                // Acquire: as in `acquire`'s denial re-check.
                if self.word.load(Ordering::Acquire) == word {
                    let rel = params.rel(now);
                    return (params.gcra, params.gcra.remaining(tat_of(word), rel));
                }
            }
        }
    }

    /// Installs `new` at the absolute clock reading `now`, carrying the available tokens over
    /// (see [`rescale`]). Returns the previous quota parameters.
    pub(crate) fn set_quota(&self, now: u64, new: Gcra) -> Gcra {
        self.change(now, Some(new))
    }

    /// Moves the origin forward to `now` once relative time reached [`REBASE_AT`]; returns
    /// the word to continue with. Cold: once every 2^58 ns of clock time.
    #[cold]
    #[inline(never)]
    fn rebase(&self, now: u64) -> u64 {
        self.change(now, None);
        // Acquire: as in `acquire`.
        self.word.load(Ordering::Acquire)
    }

    /// One serialized change: a new quota (`Some`), or a rebase check (`None`: moves the
    /// origin to `now` if relative time reached [`REBASE_AT`], else changes nothing). A quota
    /// change rebases too when due.
    fn change(&self, now: u64, quota: Option<Gcra>) -> Gcra {
        let _serial = self.change.lock();
        // Acquire: as in `acquire`. Only changers (serialized by the lock) write slots, so the
        // slot of this generation is stable while we hold it.
        let mut word = self.word.load(Ordering::Acquire);
        let generation = gen_of(word);
        let old = self.slots[(generation & 1) as usize]
            .load()
            .expect("slots are consistent while the change lock is held");
        let rel = old.rel(now);
        let rebase = rel >= REBASE_AT;
        if quota.is_none() && !rebase {
            return old.gcra; // another thread rebased first
        }
        let new = Params {
            gcra: quota.unwrap_or(old.gcra),
            origin: if rebase { now } else { old.origin },
            epoch: old.epoch + 1,
        };
        // Relative times move by `shift` (the whole of `rel` when rebasing).
        let shift = if rebase { rel } else { 0 };
        self.slots[((generation + 1) & 1) as usize].store(new);
        loop {
            let tat = tat_of(word).saturating_sub(shift);
            let now_rel = rel - shift;
            let tat = if quota.is_some() {
                rescale(tat, now_rel, old.gcra, new.gcra)
            } else {
                tat
            };
            let next = pack(generation + 1, tat);
            // Release on success: publishes the slot just written to acquirers that read the
            // new generation. Acquire on failure: a fresh TAT from an acquirer (same
            // generation, since changers hold the lock).
            match self
                .word
                .compare_exchange_weak(word, next, Ordering::Release, Ordering::Acquire)
            {
                Ok(_) => return old.gcra,
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

    fn g(interval: u64, burst: u32) -> Gcra {
        Gcra::new(interval, burst).unwrap()
    }

    fn now_ok(a: Acquired) -> Taken {
        match a {
            Acquired::Now(taken) => taken,
            other => panic!("not admitted: {other:?}"),
        }
    }

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
        let s = State::new(g(10, 2), 1_000);
        now_ok(s.acquire(1_000, 1));
        now_ok(s.acquire(1_000, 1));
        assert_eq!(s.acquire(1_000, 1), Acquired::Denied(10));
        assert_eq!(s.acquire(1_000, 3), Acquired::TooCostly(2));
        assert_eq!(s.tat(), 20);
        assert_eq!(s.snapshot(1_020), (g(10, 2), 2));
        // A clock reading before the origin counts as the origin.
        assert_eq!(s.acquire(0, 1), Acquired::Denied(10));
    }

    #[test]
    fn quota_changes_flip_generations_and_keep_tokens() {
        let s = State::new(g(10, 2), 0);
        now_ok(s.acquire(0, 1));
        for round in 0..40u32 {
            let burst = 2 + round % 3;
            let before = s.snapshot(0).1;
            s.set_quota(0, g(10, burst));
            assert_eq!(s.snapshot(0), (g(10, burst), before.min(burst)));
        }
    }

    /// A token given back at once restores the bucket exactly, even after others took tokens
    /// behind it; one held for a while comes back only in part (what the bucket would have
    /// refilled anyway is not credited twice); nothing comes back across a quota change.
    #[test]
    fn refunds_give_back_exactly_what_is_safe() {
        let s = State::new(g(10, 3), 0);
        let mine = now_ok(s.acquire(100, 1));
        let theirs = now_ok(s.acquire(100, 1));
        assert_eq!(s.snapshot(100).1, 1);
        s.refund(mine, 1, 100);
        assert_eq!(s.snapshot(100).1, 2);
        s.refund(theirs, 1, 100);
        assert_eq!(s.snapshot(100).1, 3);
        assert_eq!(s.tat(), 100, "as if nothing had been taken");

        // Full bucket at 100, token taken, held 4 ns: the bucket would have been full anyway
        // from 100 on, so only 10 - 4 = 6 ns come back.
        let held = now_ok(s.acquire(100, 1));
        assert_eq!(s.tat(), 110);
        s.refund(held, 1, 104);
        assert_eq!(s.tat(), 104);
        // Held for a whole interval: nothing comes back.
        let held = now_ok(s.acquire(104, 1));
        s.refund(held, 1, 200);
        assert_eq!(s.tat(), 114);

        // Across a quota change: kept.
        let held = now_ok(s.acquire(114, 1));
        s.set_quota(114, g(10, 4));
        let before = s.tat();
        s.refund(held, 1, 114);
        assert_eq!(s.tat(), before);
    }

    /// A token names the exact change it was taken under (its epoch), not the quota's values
    /// nor the word's 4-bit generation: one held across a change back to the very same quota,
    /// or across 16 changes (the generation back where it was), is kept, as the docs promise
    /// for every change. (Compared by values, both were credited.)
    #[test]
    fn nothing_is_given_back_across_any_change_even_to_the_same_quota() {
        let s = State::new(g(10, 4), 0);
        let held = now_ok(s.acquire(0, 1));
        s.set_quota(0, g(10, 4));
        let before = s.tat();
        s.refund(held, 1, 0);
        assert_eq!(s.tat(), before, "kept across a change to the same quota");

        let held = now_ok(s.acquire(0, 1));
        for _ in 0..16 {
            s.set_quota(0, g(10, 4));
        }
        let before = s.tat();
        s.refund(held, 1, 0);
        assert_eq!(s.tat(), before, "kept across 16 changes");

        // Without a change it comes back, for its whole cost.
        let held = now_ok(s.acquire(0, 2));
        let before = s.tat();
        s.refund(held, 2, 0);
        assert_eq!(s.tat(), before - 20);
    }

    /// Regression (issue 9 §3): relative time was clamped at 2^59 ns, so after 18 years of
    /// uptime (or a virtual clock set that far) tokens never came back. Now the origin moves
    /// forward, and the limiter works up to the end of the clock's range.
    #[test]
    fn time_never_runs_out_even_at_the_end_of_the_clock() {
        for start in [0, 1 << 59, (1 << 60) + 7, u64::MAX - (1 << 40)] {
            let s = State::new(g(10, 1), start);
            let mut last = None;
            for t in [
                start,
                start.saturating_add((1 << 58) - 100),
                start.saturating_add((1 << 58) + 100),
                start.saturating_add(1 << 59),
                start.saturating_add(1 << 61),
                u64::MAX - 100,
            ] {
                let t = t.min(u64::MAX - 100);
                if last.is_some_and(|last| t < last + 20) {
                    continue;
                }
                last = Some(t);
                now_ok(s.acquire(t, 1));
                assert_eq!(s.acquire(t, 1), Acquired::Denied(10), "at {t}");
                assert_eq!(s.acquire(t + 9, 1), Acquired::Denied(1), "at {t}");
                now_ok(s.acquire(t + 10, 1));
                assert_eq!(s.snapshot(t + 10).1, 0);
                assert_eq!(s.snapshot(t + 20).1, 1);
            }
        }
        // A token taken before a rebase is not credited after it.
        let s = State::new(g(10, 1), 0);
        let old = now_ok(s.acquire((1 << 58) - 5, 1));
        now_ok(s.acquire((1 << 58) + 5, 1));
        s.refund(old, 1, (1 << 58) + 5);
        assert_eq!(s.acquire((1 << 58) + 5, 1), Acquired::Denied(10));
    }
}

#[cfg(all(test, not(loom)))]
mod refund_properties {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::RngSeed;

    #[derive(Clone, Debug)]
    enum Op {
        /// Take a token and use it (a call reaches the dependency).
        Use,
        /// Take a token and hold it (a ready service, a call in flight below).
        Hold,
        /// Give back the held token `i` (modulo the number held).
        Refund(usize),
        /// Use the held token `i` after all (the call finally goes).
        Spend(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Use),
            Just(Op::Hold),
            any::<usize>().prop_map(Op::Refund),
            any::<usize>().prop_map(Op::Spend),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 512,
            rng_seed: RngSeed::Fixed(0x00EF_00D5),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Whatever is taken, held, given back or spent, and when: the tokens that reach the
        /// dependency in any window of length `W` number at most `burst + W / interval`. A
        /// held token counts as used from the moment it was taken, unless given back.
        #[test]
        fn refunds_never_let_more_than_the_quota_through(
            interval in 1u64..50,
            burst in 1u32..5,
            steps in prop::collection::vec((0u64..120, op()), 1..200),
        ) {
            let s = State::new(Gcra::new(interval, burst).unwrap(), 0);
            let mut now = 0u64;
            let mut used: Vec<u64> = Vec::new();
            let mut held: Vec<(Taken, u64)> = Vec::new();
            for (dt, op) in steps {
                now += dt;
                match op {
                    Op::Use => {
                        if let Acquired::Now(_) = s.acquire(now, 1) {
                            used.push(now);
                        }
                    }
                    Op::Hold => {
                        if let Acquired::Now(t) = s.acquire(now, 1) {
                            held.push((t, now));
                        }
                    }
                    Op::Refund(i) if !held.is_empty() => {
                        let (t, _) = held.remove(i % held.len());
                        s.refund(t, 1, now);
                    }
                    Op::Spend(i) if !held.is_empty() => {
                        let (_, at) = held.remove(i % held.len());
                        used.push(at);
                    }
                    _ => {}
                }
            }
            // Tokens still held count as used when taken: the worst case.
            used.extend(held.iter().map(|(_, at)| *at));
            used.sort_unstable();
            for i in 0..used.len() {
                for j in i..used.len() {
                    let window = used[j] - used[i];
                    let bound = u64::from(burst) + window / interval;
                    prop_assert!(
                        (j - i + 1) as u64 <= bound,
                        "{} uses in [{}, {}], bound {}",
                        j - i + 1, used[i], used[j], bound
                    );
                }
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod fast_path_properties {
    use super::*;
    use crate::gcra::decide;
    use proptest::prelude::*;
    use proptest::test_runner::RngSeed;

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 512,
            rng_seed: RngSeed::Fixed(0x00FA_57FA),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// The inlined fast path (no slot validation, no multiplication, its own conformance
        /// test) decides every request exactly as the pure `decide` does, or leaves it to the
        /// slow path, and only for the cases it documents (here, single-threaded: a cost
        /// above the burst, a clock before the origin). Across quota changes too.
        #[test]
        fn the_fast_path_decides_as_decide_does_or_defers(
            interval in 1u64..1_000,
            burst in 1u32..8,
            origin in 0u64..1_000,
            steps in prop::collection::vec((0u64..400, 1u32..10, 0u8..20), 1..200),
        ) {
            let mut gcra = Gcra::new(interval, burst).unwrap();
            let s = State::new(gcra, origin);
            let mut now = 0u64;
            let mut epoch = 0u64;
            for (dt, cost, change) in steps {
                now += dt;
                if change == 0 {
                    let burst = 1 + (dt % 7) as u32;
                    gcra = Gcra::new(interval + dt, burst).unwrap();
                    s.set_quota(now, gcra);
                    epoch += 1;
                }
                let tat = s.tat();
                let rel = now.saturating_sub(origin);
                let reference = decide(tat, rel, cost, gcra, 0);
                match (s.acquire_fast(now, cost), reference) {
                    (Fast::Now(taken), Decision::Admit { tat: next, wait: 0 }) => {
                        prop_assert_eq!(s.tat(), next);
                        prop_assert_eq!(taken.start, tat.max(rel));
                        prop_assert_eq!(taken.epoch, epoch);
                    }
                    (Fast::Denied(after), Decision::Deny { retry_after }) => {
                        prop_assert_eq!(after, retry_after);
                        prop_assert_eq!(s.tat(), tat, "a refusal writes nothing");
                    }
                    (Fast::Slow, reference) => {
                        prop_assert!(
                            cost > gcra.burst() || now < origin,
                            "deferred without cause: {:?}",
                            reference
                        );
                        // The slow path decides as `decide` too.
                        let slow = s.acquire_slow(now, cost);
                        match reference {
                            Decision::TooCostly => {
                                prop_assert_eq!(slow, Acquired::TooCostly(gcra.burst()));
                            }
                            Decision::Deny { retry_after } => {
                                prop_assert_eq!(slow, Acquired::Denied(retry_after));
                            }
                            Decision::Admit { tat: next, .. } => {
                                prop_assert!(matches!(slow, Acquired::Now(_)));
                                prop_assert_eq!(s.tat(), next);
                            }
                        }
                    }
                    (fast, reference) => {
                        prop_assert!(false, "fast path {:?}, decide {:?}", fast, reference);
                    }
                }
            }
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
            let state = Arc::new(State::new(Gcra::new(10, 2).unwrap(), 0));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let state = state.clone();
                    loom::thread::spawn(move || state.acquire(0, 1))
                })
                .collect();
            let mine = state.acquire(0, 1);
            let mut results: Vec<Acquired> =
                threads.into_iter().map(|t| t.join().unwrap()).collect();
            results.push(mine);
            let admitted = results
                .iter()
                .filter(|r| matches!(r, Acquired::Now(_)))
                .count();
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
            let state = Arc::new(State::new(Gcra::new(10, 2).unwrap(), 0));
            assert!(matches!(state.acquire(0, 1), Acquired::Now(_)));
            let changer = {
                let state = state.clone();
                loom::thread::spawn(move || state.set_quota(0, Gcra::new(5, 4).unwrap()))
            };
            let acquirer = {
                let state = state.clone();
                loom::thread::spawn(move || state.acquire(0, 1))
            };
            let mine = state.acquire(0, 1);
            assert_eq!(changer.join().unwrap(), Gcra::new(10, 2).unwrap());
            let theirs = acquirer.join().unwrap();
            let admitted = [mine, theirs]
                .iter()
                .filter(|r| matches!(r, Acquired::Now(_)))
                .count();
            assert_eq!(admitted, 1, "{mine:?} {theirs:?}");
            // The denial names the wait of whichever quota decided it: 10 ns (old) or 5 ns.
            for r in [mine, theirs] {
                assert!(
                    matches!(r, Acquired::Now(_) | Acquired::Denied(5 | 10)),
                    "{r:?}"
                );
            }
            assert_eq!(state.snapshot(0), (Gcra::new(5, 4).unwrap(), 0));
        });
    }

    /// A refund races two acquirers for a bucket of one whose token is held: the token is
    /// handed out at most once more, and the final TAT matches whoever got it.
    #[test]
    fn loom_a_refund_hands_the_token_out_at_most_once() {
        loom::model(|| {
            let state = Arc::new(State::new(Gcra::new(10, 1).unwrap(), 0));
            let Acquired::Now(held) = state.acquire(0, 1) else {
                panic!("a full bucket admits");
            };
            let refunder = {
                let state = state.clone();
                loom::thread::spawn(move || state.refund(held, 1, 0))
            };
            let acquirer = {
                let state = state.clone();
                loom::thread::spawn(move || state.acquire(0, 1))
            };
            let mine = state.acquire(0, 1);
            refunder.join().unwrap();
            let theirs = acquirer.join().unwrap();
            let admitted = [mine, theirs]
                .iter()
                .filter(|r| matches!(r, Acquired::Now(_)))
                .count();
            assert!(admitted <= 1, "{mine:?} {theirs:?}");
            assert_eq!(state.tat(), 10 * admitted as u64);
        });
    }
}
