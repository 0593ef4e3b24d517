//! A sliding window of two counters, lock-free: a ring of epoch-tagged atomic buckets.
//!
//! Time is cut into *epochs* of `width` nanoseconds; the window is the last [`BUCKETS`] epochs.
//! Bucket `epoch % BUCKETS` holds the counts of one epoch in one `AtomicU64`: an epoch tag
//! (24 bits, the epoch modulo 2²⁴) and two saturating 20-bit counters, `first` and `second`
//! (the retry budget's deposits and withdrawals, the adaptive throttle's requests and
//! accepts). An update is one CAS on the current bucket; reading the window sums the buckets
//! whose tag is that of their epoch in the window. A bucket whose epoch has left the window is
//! swapped empty by whoever touches it first, with one CAS, so its content expires exactly
//! once, and the caller learns what expired (the budget gives expired withdrawals back).
//!
//! # Time arithmetic for the life of any clock
//!
//! Epochs are full `u64`s (`now / width`: no wrap for any [`Instant`]); only the tags are
//! truncated. A tag is compared with the epoch a bucket should hold, so it can only be
//! misread if the bucket went untouched for about 2²³ epochs or more (97 days at a 1 s width)
//! — an earlier version of this ring read a bucket left alone for 5·2²⁴ epochs (2.7 years) as
//! live, and one left alone for 2²³ to 2²⁴ epochs as "from the future", refusing updates for
//! months. So the ring never lets a bucket get that old: it keeps the latest epoch it has seen
//! (`latest`, a full `u64`), and the first operation of an epoch that jumps a whole window
//! ahead of it, or crosses a multiple of 2¹⁶ epochs, *sweeps* the ring: every bucket whose
//! content is not of the current window is emptied. The sweeper knows the full epoch of every
//! tag it meets (they were all written at most 2¹⁷ epochs before `latest`), so it decides
//! exactly, whatever the gap. Between sweeps every tag is within 2¹⁷ epochs of `latest`, far
//! from the 2²³ where tags become ambiguous.
//!
//! The one approximation: an operation racing the sweep after an idle gap within 2¹⁷ epochs
//! of a multiple of 2²⁴ may have its update swept away with the stale buckets (a count lost
//! once, never one from an old window counted).
//!
//! # Memory ordering
//!
//! Each bucket changes only by CAS, so no count is lost. Updates succeed with `AcqRel` and
//! every load of a bucket is `Acquire`: a caller that records something in a bucket (a retry
//! budget's withdrawal, after adding to its own ledger) has it published by the `Release`, and
//! whoever empties the bucket later reads it with `Acquire` before reporting what expired, so
//! the report is ordered after everything the recorder did first. The epoch hint is stored
//! (`Release`) only after the sweep its epoch triggered, and loaded with `Acquire`, so a
//! caller that takes the fast path sees the swept buckets. `latest` only needs its RMW to be
//! atomic (`Relaxed`): it elects the one sweeper of a jump.

use crate::clock::Instant;
use crate::sync::atomic::{AtomicU64, Ordering};
use std::fmt;

/// Buckets in the ring: the window is `BUCKETS` epochs.
pub const BUCKETS: usize = 10;
const RING: u64 = BUCKETS as u64;

/// Bits of each counter.
pub const COUNT_BITS: u32 = 20;
/// The largest count a bucket holds (counters saturate there).
pub const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const TAG_BITS: u32 = 64 - 2 * COUNT_BITS;
const FIRST_SHIFT: u32 = 0;
const SECOND_SHIFT: u32 = FIRST_SHIFT + COUNT_BITS;
const TAG_SHIFT: u32 = SECOND_SHIFT + COUNT_BITS;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
/// Tags this far or farther "ahead" of the expected one are older, not newer.
const TAG_HALF: u64 = 1 << (TAG_BITS - 1);
/// A sweep happens at least once every `2^SWEEP_PERIOD_BITS` epochs.
const SWEEP_PERIOD_BITS: u32 = 16;
/// Every tag in the ring was written at most this many epochs before `latest`.
const STALE_BAND: u64 = 1 << (SWEEP_PERIOD_BITS + 1);

// The band of live tags must stay far inside the unambiguous half of the tag space.
const _: () = assert!(STALE_BAND < TAG_HALF / 4 && TAG_SHIFT + TAG_BITS == 64);

/// The two counters of a bucket, or of the whole window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// The first counter (a budget's deposits, a throttle's requests).
    pub first: u64,
    /// The second counter (a budget's withdrawals, a throttle's accepts).
    pub second: u64,
}

/// A bucket word, unpacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    tag: u64,
    counts: Counts,
}

impl Slot {
    const fn unpack(word: u64) -> Slot {
        Slot {
            tag: word >> TAG_SHIFT,
            counts: Counts {
                first: (word >> FIRST_SHIFT) & COUNT_MAX,
                second: (word >> SECOND_SHIFT) & COUNT_MAX,
            },
        }
    }

    const fn pack(self) -> u64 {
        (self.tag << TAG_SHIFT)
            | (self.counts.second << SECOND_SHIFT)
            | (self.counts.first << FIRST_SHIFT)
    }

    const fn empty(epoch: u64) -> u64 {
        Slot {
            tag: epoch & TAG_MASK,
            counts: Counts {
                first: 0,
                second: 0,
            },
        }
        .pack()
    }
}

/// Where a bucket's content lies relative to the window of the caller's epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Age {
    Live,
    /// Already moved on by a caller whose clock read later.
    Ahead,
    /// Fell out of the window: to be emptied.
    Expired,
}

/// What [`EpochRing::update`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Update {
    /// The bucket took the new counts.
    Done,
    /// The closure refused (returned `None`): nothing changed.
    Refused,
    /// The caller's epoch has already left the window (a later clock moved its bucket on):
    /// nothing was recorded, and nothing needs to be.
    Stale,
}

/// The buckets, aligned to a cache line pair (128 bytes: the line and the one the adjacent-line
/// prefetcher pairs it with) so that they share no line with the ring's read-mostly fields:
/// every deposit writes a bucket, while every operation reads `width` and `hint`.
#[repr(align(128))]
struct Buckets([AtomicU64; BUCKETS]);

/// A sliding window of two counters over [`BUCKETS`] epochs. See the [module docs](self).
pub struct EpochRing {
    width: u64,
    slots: Buckets,
    /// The latest epoch any operation has computed (a full `u64`).
    latest: AtomicU64,
    /// The last epoch computed by division: spares the division while time stays in it.
    hint: AtomicU64,
}

impl EpochRing {
    /// A ring whose window is `window_nanos` (each epoch `window_nanos / BUCKETS`, at least
    /// 1 ns).
    #[must_use]
    pub fn new(window_nanos: u64) -> EpochRing {
        EpochRing {
            width: (window_nanos / RING).max(1),
            // Slot i starts tagged with epoch i - BUCKETS: empty and out of any window.
            slots: Buckets(std::array::from_fn(|i| {
                AtomicU64::new(Slot::empty((i as u64).wrapping_sub(RING)))
            })),
            latest: AtomicU64::new(0),
            hint: AtomicU64::new(0),
        }
    }

    /// The width of an epoch, in nanoseconds.
    #[must_use]
    pub fn width_nanos(&self) -> u64 {
        self.width
    }

    /// The epoch of `now`. The first caller of an epoch that jumps a window or more ahead (or
    /// crosses a sweep period) empties the stale buckets first, reporting each non-empty
    /// bucket's counts to `expired`.
    #[inline]
    pub fn epoch(&self, now: Instant, expired: impl FnMut(Counts)) -> u64 {
        let nanos = now.as_nanos();
        // Acquire: pairs with the Release below, so the sweep this epoch triggered is visible.
        let hint = self.hint.load(Ordering::Acquire);
        // No overflow: hint ≤ u64::MAX / width, as every stored hint is a quotient.
        if nanos.wrapping_sub(hint * self.width) < self.width {
            return hint;
        }
        self.new_epoch(nanos / self.width, expired)
    }

    #[cold]
    fn new_epoch(&self, epoch: u64, expired: impl FnMut(Counts)) -> u64 {
        // Relaxed: the RMW alone elects one sweeper per jump; the buckets carry their own
        // ordering.
        let prev = self.latest.fetch_max(epoch, Ordering::Relaxed);
        if epoch > prev
            && (epoch - prev >= RING || epoch >> SWEEP_PERIOD_BITS != prev >> SWEEP_PERIOD_BITS)
        {
            self.sweep(epoch, prev, expired);
        }
        // Release: publishes the sweep to callers that take the fast path with this hint.
        self.hint.store(epoch, Ordering::Release);
        epoch
    }

    /// Empties every bucket that does not hold its epoch of the window ending at `epoch`,
    /// knowing that every tag written before was written at most `STALE_BAND` epochs before
    /// `prev`.
    fn sweep(&self, epoch: u64, prev: u64, mut expired: impl FnMut(Counts)) {
        for index in 0..RING {
            let expected = expected(epoch, index);
            let slot = &self.slots.0[index as usize];
            // Acquire: see "Memory ordering" in the module docs.
            let mut word = slot.load(Ordering::Acquire);
            loop {
                let tag = Slot::unpack(word).tag;
                let back = prev.wrapping_sub(tag) & TAG_MASK;
                let keep = if back < STALE_BAND {
                    // Written before the jump, in epoch `prev - back`: exact.
                    prev.checked_sub(back) == Some(expected)
                } else {
                    // Written after the jump by a caller racing this sweep.
                    age(tag, expected) != Age::Expired
                };
                if keep {
                    break;
                }
                match self.expire(index as usize, word, expected, &mut expired) {
                    Ok(()) => break,
                    Err(actual) => word = actual,
                }
            }
        }
    }

    /// Empties bucket `index` if it still holds `seen`; on failure, the word it holds.
    fn expire(
        &self,
        index: usize,
        seen: u64,
        expected: u64,
        expired: &mut impl FnMut(Counts),
    ) -> Result<(), u64> {
        // AcqRel: the Acquire reads the Release of every update recorded in `seen`, so what we
        // report as expired comes after what their callers did before recording; the Release
        // publishes the emptied bucket. Failure (Acquire): the caller re-examines the word.
        self.slots.0[index].compare_exchange(
            seen,
            Slot::empty(expected),
            Ordering::AcqRel,
            Ordering::Acquire,
        )?;
        let counts = Slot::unpack(seen).counts;
        if counts != Counts::default() {
            expired(counts);
        }
        Ok(())
    }

    /// Applies `f` to the counts of `epoch`'s bucket (emptying it first if it expired). `f`
    /// returns the new counts, or `None` to change nothing; counts above [`COUNT_MAX`] are
    /// saturated.
    #[inline]
    pub fn update(
        &self,
        epoch: u64,
        mut f: impl FnMut(Counts) -> Option<Counts>,
        mut expired: impl FnMut(Counts),
    ) -> Update {
        let index = (epoch % RING) as usize;
        let slot = &self.slots.0[index];
        // Acquire: see "Memory ordering" in the module docs.
        let mut word = slot.load(Ordering::Acquire);
        loop {
            let current = Slot::unpack(word);
            match age(current.tag, epoch) {
                Age::Live => {
                    let Some(next) = f(current.counts) else {
                        return Update::Refused;
                    };
                    let next = Slot {
                        tag: current.tag,
                        counts: Counts {
                            first: next.first.min(COUNT_MAX),
                            second: next.second.min(COUNT_MAX),
                        },
                    };
                    // AcqRel: the Release publishes what the caller did before this update to
                    // whoever empties the bucket (see "Memory ordering"); Acquire on failure
                    // for the re-read.
                    match slot.compare_exchange_weak(
                        word,
                        next.pack(),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => return Update::Done,
                        Err(actual) => word = actual,
                    }
                }
                Age::Ahead => return Update::Stale,
                Age::Expired => {
                    if let Err(actual) = self.expire(index, word, epoch, &mut expired) {
                        word = actual;
                    } else {
                        // Acquire: as above.
                        word = slot.load(Ordering::Acquire);
                    }
                }
            }
        }
    }

    /// The counts of the window ending at `epoch`, emptying the buckets that left it.
    pub fn totals(&self, epoch: u64, mut expired: impl FnMut(Counts)) -> Counts {
        let mut total = Counts::default();
        for index in 0..RING {
            let expected = expected(epoch, index);
            let slot = &self.slots.0[index as usize];
            // Acquire: see "Memory ordering" in the module docs.
            let mut word = slot.load(Ordering::Acquire);
            loop {
                let current = Slot::unpack(word);
                match age(current.tag, expected) {
                    Age::Live => {
                        total.first += current.counts.first;
                        total.second += current.counts.second;
                        break;
                    }
                    Age::Ahead => break,
                    Age::Expired => {
                        match self.expire(index as usize, word, expected, &mut expired) {
                            Ok(()) => break,
                            Err(actual) => word = actual,
                        }
                    }
                }
            }
        }
        total
    }

    /// The counts recorded in the bucket of `epoch`, if it holds that epoch (for tests and
    /// ledgers that check themselves).
    #[must_use]
    pub fn bucket(&self, epoch: u64) -> Option<Counts> {
        // Acquire: as in `totals`.
        let slot = Slot::unpack(self.slots.0[(epoch % RING) as usize].load(Ordering::Acquire));
        (slot.tag == epoch & TAG_MASK).then_some(slot.counts)
    }
}

impl fmt::Debug for EpochRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EpochRing")
            .field("width_nanos", &self.width)
            // Relaxed: a diagnostic snapshot.
            .field("latest_epoch", &self.latest.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The epoch within `(epoch - BUCKETS, epoch]` that bucket `index` holds.
const fn expected(epoch: u64, index: u64) -> u64 {
    let offset = (epoch % RING + RING - index) % RING;
    epoch.wrapping_sub(offset)
}

fn age(tag: u64, expected: u64) -> Age {
    let ahead = tag.wrapping_sub(expected) & TAG_MASK;
    if ahead == 0 {
        Age::Live
    } else if ahead < TAG_HALF {
        Age::Ahead
    } else {
        Age::Expired
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const W: u64 = 1_000; // epoch width in these tests

    fn ring() -> EpochRing {
        EpochRing::new(W * RING)
    }

    fn at(epoch: u64) -> Instant {
        Instant::from_nanos(epoch * W)
    }

    #[test]
    fn the_buckets_share_no_cache_line_pair_with_the_read_mostly_fields() {
        let ring = ring();
        let block = |addr: usize| addr / 128;
        let first = std::ptr::from_ref(&ring.slots.0[0]) as usize;
        let last = std::ptr::from_ref(&ring.slots.0[BUCKETS - 1]) as usize;
        assert_eq!(first % 128, 0, "the buckets start a 128-byte block");
        for (name, addr) in [
            ("width", std::ptr::from_ref(&ring.width) as usize),
            ("hint", std::ptr::from_ref(&ring.hint) as usize),
        ] {
            assert!(
                !(block(first)..=block(last)).contains(&block(addr)),
                "`{name}` shares a 128-byte block with the buckets"
            );
        }
    }

    fn add_first(ring: &EpochRing, now: Instant, expired: &mut Vec<Counts>) -> Update {
        let epoch = ring.epoch(now, |c| expired.push(c));
        ring.update(
            epoch,
            |c| {
                Some(Counts {
                    first: c.first + 1,
                    ..c
                })
            },
            |c| expired.push(c),
        )
    }

    fn window(ring: &EpochRing, now: Instant) -> Counts {
        let epoch = ring.epoch(now, |_| {});
        ring.totals(epoch, |_| {})
    }

    #[test]
    fn packing_round_trips() {
        let slot = Slot {
            tag: TAG_MASK,
            counts: Counts {
                first: 12345,
                second: COUNT_MAX,
            },
        };
        assert_eq!(Slot::unpack(slot.pack()), slot);
    }

    #[test]
    fn counts_slide_out_of_the_window() {
        let r = ring();
        let mut expired = Vec::new();
        for _ in 0..3 {
            assert_eq!(add_first(&r, at(0), &mut expired), Update::Done);
        }
        assert_eq!(add_first(&r, at(5), &mut expired), Update::Done);
        assert_eq!(window(&r, at(9)).first, 4);
        assert_eq!(window(&r, at(10)).first, 1, "epoch 0 left the window");
        assert_eq!(window(&r, at(15)).first, 0);
        assert!(
            expired.is_empty(),
            "the reads emptied the buckets, not the updates"
        );
    }

    #[test]
    fn expiry_is_reported_once() {
        let r = ring();
        let epoch = r.epoch(at(3), |_| panic!("nothing to expire"));
        let _ = r.update(
            epoch,
            |_| {
                Some(Counts {
                    first: 2,
                    second: 1,
                })
            },
            |_| {},
        );
        let mut seen = Vec::new();
        let later = r.epoch(at(13), |c| seen.push(c));
        let _ = r.totals(later, |c| seen.push(c));
        let _ = r.totals(later, |c| seen.push(c));
        assert_eq!(
            seen,
            [Counts {
                first: 2,
                second: 1
            }]
        );
    }

    #[test]
    fn counters_saturate_and_refusals_change_nothing() {
        let r = ring();
        let e = r.epoch(at(1), |_| {});
        let _ = r.update(
            e,
            |_| {
                Some(Counts {
                    first: u64::MAX,
                    second: 7,
                })
            },
            |_| {},
        );
        assert_eq!(
            r.bucket(e),
            Some(Counts {
                first: COUNT_MAX,
                second: 7
            })
        );
        assert_eq!(r.update(e, |_| None, |_| {}), Update::Refused);
        assert_eq!(
            r.bucket(e),
            Some(Counts {
                first: COUNT_MAX,
                second: 7
            })
        );
    }

    #[test]
    fn an_epoch_overtaken_by_a_later_clock_is_stale() {
        let r = ring();
        let mut expired = Vec::new();
        assert_eq!(add_first(&r, at(12), &mut expired), Update::Done);
        // A caller whose clock read epoch 2 (same bucket, one window earlier) comes late.
        assert_eq!(
            r.update(
                2,
                |c| Some(Counts {
                    first: c.first + 1,
                    ..c
                }),
                |_| {}
            ),
            Update::Stale
        );
        assert_eq!(window(&r, at(12)).first, 1);
    }

    /// Regression (issue 9): tags are 24 bits. Left alone for 5·2²⁴ epochs (the first gap that
    /// maps a bucket onto its own index and tag: 2.7 years at a 1 s width), a bucket read as
    /// live again; left alone for 2²³..2²⁴ epochs (97 to 194 days) it read as "ahead", and
    /// updates to it were dropped for months.
    #[test]
    fn no_idle_gap_aliases() {
        let alias = 5 * (1u64 << TAG_BITS);
        for gap in [
            alias,
            alias - 3,
            alias + 4,
            3 * alias,
            TAG_HALF + 1,
            TAG_HALF + 12_345,
            (1 << TAG_BITS) - 1,
            1 << 40,
        ] {
            let r = ring();
            let mut expired = Vec::new();
            for e in 0..RING {
                let _ = add_first(&r, at(100 + e), &mut expired);
            }
            let now = at(100 + RING - 1 + gap);
            let epoch = r.epoch(now, |c| expired.push(c));
            assert_eq!(
                r.totals(epoch, |c| expired.push(c)).first,
                0,
                "gap {gap}: old counts look live"
            );
            assert_eq!(add_first(&r, now, &mut expired), Update::Done, "gap {gap}");
            assert_eq!(window(&r, now).first, 1, "gap {gap}: update dropped");
            assert_eq!(expired.len(), 10, "gap {gap}: each old bucket expired once");
        }
    }

    /// Updates at a steady pace (every 8th epoch: never a window-long gap) visit only the
    /// even buckets for 1.5 · 2²³ epochs; an odd bucket touched once at the start must then
    /// read as expired, not "ahead" (which would drop the next update to it).
    #[test]
    fn buckets_skipped_for_months_do_not_come_back() {
        let r = ring();
        let mut expired = Vec::new();
        let _ = add_first(&r, at(1), &mut expired);
        let mut epoch = 2;
        let end = TAG_HALF + TAG_HALF / 2;
        while epoch < end {
            assert_eq!(add_first(&r, at(epoch), &mut expired), Update::Done);
            epoch += 8;
        }
        let last_even = epoch - 8;
        let odd = (last_even + 1..).find(|e| e % RING == 1).unwrap();
        assert_eq!(add_first(&r, at(odd), &mut expired), Update::Done);
        let live = window(&r, at(odd)).first;
        let even_in_window = u64::from(last_even + RING > odd);
        assert_eq!(live, 1 + even_in_window);
    }

    /// Any instant, up to `Instant::MAX`, works: epochs are full u64 quotients.
    #[test]
    fn works_near_the_end_of_time() {
        let r = EpochRing::new(10);
        let mut expired = Vec::new();
        let near = Instant::from_nanos(u64::MAX - 5);
        assert_eq!(add_first(&r, near, &mut expired), Update::Done);
        assert_eq!(add_first(&r, Instant::MAX, &mut expired), Update::Done);
        assert_eq!(window(&r, Instant::MAX).first, 2);
        let r = EpochRing::new(u64::MAX);
        assert_eq!(add_first(&r, Instant::MAX, &mut expired), Update::Done);
        assert_eq!(window(&r, Instant::MAX).first, 1);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::{Arc, loom};

    /// Two updates racing a sweep after a long gap: both land or are reported as stale, and
    /// the old content is reported expired exactly once.
    #[test]
    fn loom_sweep_racing_updates_loses_nothing_of_the_new_window() {
        loom::model(|| {
            let ring = Arc::new(EpochRing::new(10 * RING));
            let e = ring.epoch(Instant::from_nanos(0), |_| {});
            let _ = ring.update(
                e,
                |_| {
                    Some(Counts {
                        first: 1,
                        second: 1,
                    })
                },
                |_| {},
            );
            let later = Instant::from_nanos(10 * 1_000_000);
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let ring = ring.clone();
                    loom::thread::spawn(move || {
                        let mut expired = 0;
                        let e = ring.epoch(later, |c| expired += c.second);
                        let u = ring.update(
                            e,
                            |c| {
                                Some(Counts {
                                    first: c.first + 1,
                                    ..c
                                })
                            },
                            |c| expired += c.second,
                        );
                        (u, expired)
                    })
                })
                .collect();
            let mut expired = 0;
            for t in threads {
                let (u, x) = t.join().unwrap();
                assert_eq!(u, Update::Done);
                expired += x;
            }
            let e = ring.epoch(later, |_| {});
            let _ = ring.totals(e, |c| expired += c.second);
            assert_eq!(expired, 1, "the old bucket expired exactly once");
            assert_eq!(ring.totals(e, |_| {}).first, 2);
        });
    }
}
