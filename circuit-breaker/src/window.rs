//! The two lock-free sliding windows a breaker records outcomes in: the last N calls, or the
//! last T of time in buckets that roll with the clock. No tower types here.
//!
//! Both windows tag what they hold with the breaker's [generation](crate::state): a record of
//! generation `g` only ever counts in generation `g`'s view, so a late result from an earlier
//! Closed period can neither land in a newer period's counts nor be mistaken for one. A new
//! generation starts with an empty window without anyone clearing memory: entries with an
//! older tag read as empty.
//!
//! # Memory ordering
//!
//! Counts are statistics: the trip decision that reads them is itself a CAS on the state word
//! guarded by the generation, so the windows need only that each RMW is atomic and that a
//! reader who sees a tag also sees the counts written before it (`Release` on publishing a
//! tag, `Acquire` on reading it).

use crate::state::{Tag, Tally, tag_is_newer};
use crossbeam_utils::CachePadded;
use palisade_core::clock::Instant;
use palisade_core::striped::{STRIPES, stripe};
use palisade_core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use palisade_core::sync::hint::spin_loop;
use std::fmt;

/// The largest count-based window (the biased 16-bit fields of the aggregate word).
pub(crate) const MAX_COUNT_WINDOW: u32 = 10_000;

/// One recorded outcome, as three flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) failure: bool,
    pub(crate) slow: bool,
}

impl Record {
    pub(crate) const SUCCESS: Record = Record {
        failure: false,
        slow: false,
    };

    const fn bits(self) -> u32 {
        COUNTED | ((self.failure as u32) << 1) | ((self.slow as u32) << 2)
    }
}

// ---- count-based window -------------------------------------------------------------------

/// Slot bits: bit 0 = holds a record, bit 1 = failure, bit 2 = slow; bits 16..32 generation.
const COUNTED: u32 = 1;
const SLOT_GEN_SHIFT: u32 = 16;

/// Aggregate word: bits 48..64 generation; three 16-bit fields, each biased by 2^15 so that a
/// transiently negative count (a removal applied before the matching addition) never borrows
/// from its neighbour: calls at 32..48, failures at 16..32, slow calls at 0..16.
const FIELD_BITS: u32 = 16;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
const BIAS: u64 = 1 << (FIELD_BITS - 1);
const CALLS_SHIFT: u32 = 2 * FIELD_BITS;
const FAILURES_SHIFT: u32 = FIELD_BITS;
const AGG_GEN_SHIFT: u32 = 3 * FIELD_BITS;
const AGG_FIELDS_MASK: u64 = (1 << AGG_GEN_SHIFT) - 1;
const EMPTY_FIELDS: u64 = (BIAS << CALLS_SHIFT) | (BIAS << FAILURES_SHIFT) | BIAS;

/// The aggregate contribution of a slot's bits (as a wrapping delta).
const fn contribution(bits: u32) -> u64 {
    if bits & COUNTED == 0 {
        return 0;
    }
    (1 << CALLS_SHIFT) | (((bits as u64 >> 1) & 1) << FAILURES_SHIFT) | ((bits as u64 >> 2) & 1)
}

/// The last `size` calls: a ring of tagged slots plus one aggregate word, so a decision reads
/// one word instead of summing the ring.
pub(crate) struct CountWindow {
    size: u32,
    /// The aggregate's fields when the window is full of successes.
    healthy: u64,
    cursor: CachePadded<AtomicU64>,
    aggregate: CachePadded<AtomicU64>,
    slots: Box<[AtomicU32]>,
}

impl CountWindow {
    pub(crate) fn new(size: u32) -> CountWindow {
        debug_assert!(size > 0 && size <= MAX_COUNT_WINDOW);
        CountWindow {
            size,
            healthy: EMPTY_FIELDS + (u64::from(size) << CALLS_SHIFT),
            cursor: CachePadded::new(AtomicU64::new(0)),
            aggregate: CachePadded::new(AtomicU64::new(EMPTY_FIELDS)),
            slots: (0..size).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    fn decode(&self, aggregate: u64) -> Tally {
        let field = |shift: u32| {
            let biased = (aggregate >> shift) & FIELD_MASK;
            // Clamp a transiently negative or over-full field into the window's range.
            biased.saturating_sub(BIAS).min(u64::from(self.size)) as u32
        };
        Tally {
            calls: field(CALLS_SHIFT),
            failures: field(FAILURES_SHIFT),
            slow: field(0),
        }
    }

    /// What generation `generation` holds now.
    pub(crate) fn tally(&self, generation: Tag) -> Tally {
        // Acquire: pairs with the AcqRel CAS in `record`; a statistic read.
        let aggregate = self.aggregate.load(Ordering::Acquire);
        if (aggregate >> AGG_GEN_SHIFT) as Tag == generation {
            self.decode(aggregate)
        } else {
            Tally::default()
        }
    }

    /// Whether generation `generation`'s window is full and holds only successes: then one
    /// more success changes nothing.
    #[inline]
    pub(crate) fn full_of_successes(&self, generation: Tag) -> bool {
        // Acquire: pairs with the AcqRel CAS in `record`.
        self.aggregate.load(Ordering::Acquire)
            == self.healthy | (u64::from(generation) << AGG_GEN_SHIFT)
    }

    /// Records one outcome of `generation`. Returns the window's tally after it, or `None` if
    /// the record is stale (a newer generation owns the window).
    pub(crate) fn record(&self, generation: Tag, record: Record) -> Option<Tally> {
        let new = record.bits();
        // Acquire: pairs with the AcqRel CAS below.
        let aggregate = self.aggregate.load(Ordering::Acquire);
        let tag = (aggregate >> AGG_GEN_SHIFT) as Tag;
        if tag_is_newer(tag, generation) {
            // Stale, and it must not take a slot from the newer generation's ring.
            return None;
        }
        // Fast path: a success entering a full window of successes changes nothing (it would
        // only replace another success), so a healthy breaker records with one load and no
        // write: threads recording at once share the line instead of bouncing it.
        if record == Record::SUCCESS
            && tag == generation
            && (aggregate & AGG_FIELDS_MASK) == EMPTY_FIELDS + (u64::from(self.size) << CALLS_SHIFT)
        {
            return Some(Tally {
                calls: self.size,
                failures: 0,
                slow: 0,
            });
        }
        // Relaxed: only picks a slot; the slot's own CAS orders what is written there.
        let index = self.cursor.fetch_add(1, Ordering::Relaxed) % u64::from(self.size);
        let slot = &self.slots[index as usize];
        let tagged = (u32::from(generation) << SLOT_GEN_SHIFT) | new;
        // Acquire: pairs with the AcqRel CAS that wrote the slot, to read its tag.
        let mut old = slot.load(Ordering::Acquire);
        loop {
            let old_generation = (old >> SLOT_GEN_SHIFT) as Tag;
            if old & COUNTED != 0 && tag_is_newer(old_generation, generation) {
                return None;
            }
            // AcqRel: publishes our tag to the next writer of this slot and reads the previous
            // writer's.
            match slot.compare_exchange_weak(old, tagged, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(actual) => old = actual,
            }
        }
        // An entry of an older generation counts as empty in ours.
        let replaced = if (old >> SLOT_GEN_SHIFT) as Tag == generation {
            old & 0xffff
        } else {
            0
        };
        let delta = contribution(new).wrapping_sub(contribution(replaced));
        // Acquire: as above.
        let mut aggregate = self.aggregate.load(Ordering::Acquire);
        loop {
            let tag = (aggregate >> AGG_GEN_SHIFT) as Tag;
            let next = if tag == generation {
                aggregate.wrapping_add(delta)
            } else if tag_is_newer(generation, tag) {
                // First record of our generation: start from an empty window.
                ((u64::from(generation)) << AGG_GEN_SHIFT) | EMPTY_FIELDS.wrapping_add(delta)
            } else {
                return None;
            };
            if next == aggregate {
                return Some(self.decode(next));
            }
            // AcqRel: the aggregate is read-modify-written by every recorder; Release publishes
            // the new generation tag with its fields, Acquire reads the previous writer's.
            match self.aggregate.compare_exchange_weak(
                aggregate,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(self.decode(next)),
                Err(actual) => aggregate = actual,
            }
        }
    }
}

impl fmt::Debug for CountWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountWindow")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

// ---- time-based window --------------------------------------------------------------------

/// Bucket stamp: bits 48..64 generation, bit 47 "being reset", bits 0..47 bucket number + 1
/// (0 = never used).
const STAMP_GEN_SHIFT: u32 = 48;
const RESETTING: u64 = 1 << 47;
const STAMP_SLOT_MASK: u64 = RESETTING - 1;
/// Bucket counts: calls at 42..63, failures at 21..42, slow calls at 0..21. Each saturates at
/// `COUNT_MASK` (about two million calls per bucket per stripe): a failure or slow call is
/// also a call, so neither of the lower fields can exceed the calls field, and no field ever
/// carries into the next.
const COUNT_BITS: u32 = 21;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// Adds `delta` to a stripe's packed counts unless its calls field is full. Returns whether
/// it did.
fn add_saturating(counts: &AtomicU64, delta: u64) -> bool {
    // Relaxed (load and CAS): a counter; the bucket stamp's Acquire, read before this, already
    // ordered us after the bucket's reset, and readers tolerate a count that lands a moment
    // late. A CAS rather than a `fetch_add`, so that a full field saturates instead of carrying
    // into its neighbour; the stripe is mostly this thread's own, so it rarely retries.
    let mut current = counts.load(Ordering::Relaxed);
    loop {
        if (current >> (2 * COUNT_BITS)) & COUNT_MASK == COUNT_MASK {
            return false;
        }
        match counts.compare_exchange_weak(
            current,
            current + delta,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => return true,
            Err(actual) => current = actual,
        }
    }
}
/// What [`TimeWindow::add`] did with a record.
enum Added {
    /// Counted.
    Counted,
    /// Not counted: its stripe of the bucket is full (the bucket's counts stand as they are).
    Saturated,
    /// Not counted: older than the window, of an older generation, or dropped while a
    /// descheduled thread held the bucket mid-reset.
    Stale,
}

/// How often a recorder spins on a bucket being reset before it drops its record.
const RESET_SPINS: u32 = 1_000;

const fn bucket_delta(record: Record) -> u64 {
    (1 << (2 * COUNT_BITS)) | ((record.failure as u64) << COUNT_BITS) | (record.slow as u64)
}

struct Bucket {
    stamp: CachePadded<AtomicU64>,
    /// Counter stripes: threads add into a stripe of their own (the same assignment as core's
    /// striped counters), so concurrent recorders do not bounce one cache line; readers sum
    /// the stripes.
    counts: [CachePadded<AtomicU64>; STRIPES],
}

/// The last `buckets × bucket_nanos` of time, as a ring of buckets that roll lazily: the first
/// record of a new bucket period resets the bucket it lands in. No timer, no background task.
pub(crate) struct TimeWindow {
    bucket_nanos: u64,
    buckets: Box<[Bucket]>,
    /// The newest bucket that was given a failure or a slow call, as a stamp (generation and
    /// bucket number; 0: none yet). Written only by failures and slow calls (a CAS that only
    /// moves it forward), read by successes: while it lies outside the window (or belongs to
    /// another generation), the window holds neither, so a success cannot trip the breaker and
    /// needs no tally ([`record_success_if_clean`](Self::record_success_if_clean)).
    last_bad: CachePadded<AtomicU64>,
    /// The bucket the clock was last found in, as `number << HINT_INDEX_BITS | index` (0:
    /// none yet): a cache of [`number`](Self::number) and the ring index, so that a call in
    /// the same bucket as the one before needs a multiplication instead of two divisions.
    /// Written once per bucket period (by whichever call first finds the clock past it).
    hint: AtomicU64,
}

/// Bits of [`TimeWindow::hint`] that hold the ring index (at most 1 000 buckets).
const HINT_INDEX_BITS: u32 = 16;
const HINT_INDEX_MASK: u64 = (1 << HINT_INDEX_BITS) - 1;

impl TimeWindow {
    pub(crate) fn new(buckets: u32, bucket_nanos: u64) -> TimeWindow {
        debug_assert!(buckets > 0 && bucket_nanos > 0);
        TimeWindow {
            bucket_nanos,
            buckets: (0..buckets)
                .map(|_| Bucket {
                    stamp: CachePadded::new(AtomicU64::new(0)),
                    counts: std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))),
                })
                .collect(),
            last_bad: CachePadded::new(AtomicU64::new(0)),
            hint: AtomicU64::new(0),
        }
    }

    fn number(&self, now: Instant) -> u64 {
        (now.as_nanos() / self.bucket_nanos + 1) & STAMP_SLOT_MASK
    }

    /// The bucket number of `now` (exactly [`number`](Self::number)) and its index in the
    /// ring, from [`hint`](Self::hint) when `now` lies in the bucket it holds.
    #[inline]
    fn locate(&self, now: Instant) -> (u64, usize) {
        let nanos = now.as_nanos();
        // Relaxed: a cache of a pure function of the time; whatever value is read is checked
        // against `now` before it is used, and no other memory is read on the strength of it.
        let hint = self.hint.load(Ordering::Relaxed);
        let number = hint >> HINT_INDEX_BITS;
        // Bucket `number` covers [(number - 1) · width, number · width): if `now` is in it,
        // `number(now)` is `number` (which was stored masked, so masking changes nothing).
        if let Some(start) = number
            .checked_sub(1)
            .and_then(|n| n.checked_mul(self.bucket_nanos))
            && nanos >= start
            && nanos - start < self.bucket_nanos
        {
            return (number, (hint & HINT_INDEX_MASK) as usize);
        }
        self.locate_slow(now)
    }

    /// [`locate`](Self::locate) by division, remembered in the hint.
    #[cold]
    fn locate_slow(&self, now: Instant) -> (u64, usize) {
        let number = self.number(now);
        let index = (number % self.buckets.len() as u64) as usize;
        // Relaxed: see `locate`; racing writers each store a correct pair for their own time.
        self.hint.store(
            (number << HINT_INDEX_BITS) | index as u64,
            Ordering::Relaxed,
        );
        (number, index)
    }

    /// Records one outcome of `generation` at `now`. Returns the window's tally, or `None` if
    /// the record is stale (a newer generation, or older than the window).
    pub(crate) fn record(&self, generation: Tag, now: Instant, record: Record) -> Option<Tally> {
        let (number, index) = self.locate(now);
        if record != Record::SUCCESS {
            self.mark_bad(generation, number);
        }
        match self.add(generation, number, index, record) {
            Added::Stale => None,
            Added::Counted | Added::Saturated => Some(self.tally_at(generation, number)),
        }
    }

    /// Records a success of `generation` at `now` if the window holds no failure and no slow
    /// call (then the success cannot trip the breaker, and no tally is needed) and returns
    /// `true`; otherwise records nothing and returns `false`: the caller records it with
    /// [`record`](Self::record), which returns the tally the decision needs.
    ///
    /// "Holds no failure" is judged by [`last_bad`](Self::last_bad), which every failure and
    /// slow call moves forward before counting itself. A failure recorded at the same moment
    /// on another thread may be missed; its own recorder tallies after counting it and makes
    /// the decision (two recorders' tallies race in the same way).
    #[inline]
    pub(crate) fn record_success_if_clean(&self, generation: Tag, now: Instant) -> bool {
        let (number, index) = self.locate(now);
        if !self.clean(generation, number) {
            return false;
        }
        // Stale or saturated: nothing more to do either way, as in `record`'s callers.
        let _ = self.add(generation, number, index, Record::SUCCESS);
        true
    }

    /// Whether the window of `generation` ending at bucket `number` holds no failure and no
    /// slow call, by [`last_bad`](Self::last_bad).
    #[inline]
    fn clean(&self, generation: Tag, number: u64) -> bool {
        // Relaxed: a hint read on its own (see `record_success_if_clean` for the race it
        // tolerates); no other memory is read on the strength of it.
        let bad = self.last_bad.load(Ordering::Relaxed);
        bad == 0
            || (bad >> STAMP_GEN_SHIFT) as Tag != generation
            || (bad & STAMP_SLOT_MASK) < self.oldest(number)
    }

    /// The oldest bucket number in the window that ends at bucket `number`.
    #[inline]
    fn oldest(&self, number: u64) -> u64 {
        number.saturating_sub(self.buckets.len() as u64 - 1)
    }

    /// Moves [`last_bad`](Self::last_bad) forward to bucket `number` of `generation` (a
    /// failure or slow call is about to be counted there). Never backwards: an older bucket,
    /// or a generation older than the one it holds, leaves it alone.
    #[cold]
    fn mark_bad(&self, generation: Tag, number: u64) {
        let want = (u64::from(generation) << STAMP_GEN_SHIFT) | number;
        // Relaxed (load and CAS): the word is a hint that only needs each update to be atomic
        // and forward-only; see `clean`.
        let mut current = self.last_bad.load(Ordering::Relaxed);
        loop {
            let tag = (current >> STAMP_GEN_SHIFT) as Tag;
            if current != 0
                && (tag_is_newer(tag, generation)
                    || (tag == generation && current & STAMP_SLOT_MASK >= number))
            {
                return;
            }
            match self.last_bad.compare_exchange_weak(
                current,
                want,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// Counts `record` into bucket `number` (at `index` in the ring), resetting the bucket
    /// first if it still holds an older period.
    #[inline]
    fn add(&self, generation: Tag, number: u64, index: usize, record: Record) -> Added {
        let want = (u64::from(generation) << STAMP_GEN_SHIFT) | number;
        let bucket = &self.buckets[index];
        let mut spins = 0;
        loop {
            // Acquire: pairs with the Release store that finished the bucket's reset, so the
            // reset of `counts` is ordered before our addition.
            let stamp = bucket.stamp.load(Ordering::Acquire);
            if stamp == want {
                if !add_saturating(&bucket.counts[stripe()], bucket_delta(record)) {
                    // This stripe of the bucket counts its maximum: the bucket's rates stand
                    // on the calls it holds until the window rolls past it.
                    return Added::Saturated;
                }
                return Added::Counted;
            }
            if stamp & RESETTING != 0 {
                spins += 1;
                if spins > RESET_SPINS {
                    // The resetting thread was descheduled mid-reset: drop this one record
                    // rather than block a request.
                    return Added::Stale;
                }
                spin_loop();
                continue;
            }
            let stamp_generation = (stamp >> STAMP_GEN_SHIFT) as Tag;
            if stamp != 0
                && (tag_is_newer(stamp_generation, generation)
                    || (stamp_generation == generation && stamp & STAMP_SLOT_MASK > number))
            {
                return Added::Stale;
            }
            // Acquire: we are about to write `counts`; order it after the last user's adds.
            if bucket
                .stamp
                .compare_exchange(
                    stamp,
                    want | RESETTING,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                let mine = stripe();
                for (i, counts) in bucket.counts.iter().enumerate() {
                    let value = if i == mine { bucket_delta(record) } else { 0 };
                    // Relaxed: published by the Release store of the stamp just below.
                    counts.store(value, Ordering::Relaxed);
                }
                // Release: publishes the reset counts to recorders that Acquire the stamp.
                bucket.stamp.store(want, Ordering::Release);
                return Added::Counted;
            }
        }
    }

    /// What generation `generation` holds at `now`.
    pub(crate) fn tally(&self, generation: Tag, now: Instant) -> Tally {
        self.tally_at(generation, self.locate(now).0)
    }

    fn tally_at(&self, generation: Tag, number: u64) -> Tally {
        let oldest = self.oldest(number);
        let mut tally = Tally::default();
        for bucket in &*self.buckets {
            // Acquire: pairs with the Release that published the bucket's reset.
            let stamp = bucket.stamp.load(Ordering::Acquire);
            let slot = stamp & STAMP_SLOT_MASK;
            if stamp & RESETTING != 0
                || (stamp >> STAMP_GEN_SHIFT) as Tag != generation
                || slot < oldest
                || slot > number
                || slot == 0
            {
                continue;
            }
            // Each stripe's fields are decoded on their own and summed as numbers: adding the
            // packed words would carry one field into the next (and overflow the u64).
            for stripe in &bucket.counts {
                // Relaxed: a statistic; the stamp's Acquire orders it after the reset.
                let counts = stripe.load(Ordering::Relaxed);
                let field = |shift: u32| ((counts >> shift) & COUNT_MASK) as u32;
                tally.calls = tally.calls.saturating_add(field(2 * COUNT_BITS));
                tally.failures = tally.failures.saturating_add(field(COUNT_BITS));
                tally.slow = tally.slow.saturating_add(field(0));
            }
        }
        tally
    }
}

impl fmt::Debug for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeWindow")
            .field("buckets", &self.buckets.len())
            .field("bucket_nanos", &self.bucket_nanos)
            .finish()
    }
}

/// Either window.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one window per breaker, inside its Arc; the count window's padding keeps its hot words apart"
)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    /// Whether recording needs the time of the call's end.
    pub(crate) fn needs_time(&self) -> bool {
        matches!(self, Window::Time(_))
    }

    pub(crate) fn record(&self, generation: Tag, now: Instant, record: Record) -> Option<Tally> {
        match self {
            Window::Count(w) => w.record(generation, record),
            Window::Time(w) => w.record(generation, now, record),
        }
    }

    /// Count window only: see [`CountWindow::full_of_successes`].
    #[inline]
    pub(crate) fn full_of_successes(&self, generation: Tag) -> bool {
        match self {
            Window::Count(w) => w.full_of_successes(generation),
            Window::Time(_) => false,
        }
    }

    /// Time window only: see [`TimeWindow::record_success_if_clean`]. A count window
    /// records nothing here and returns `false`.
    #[inline]
    pub(crate) fn record_success_if_clean(&self, generation: Tag, now: Instant) -> bool {
        match self {
            Window::Count(_) => false,
            Window::Time(w) => w.record_success_if_clean(generation, now),
        }
    }

    pub(crate) fn tally(&self, generation: Tag, now: Instant) -> Tally {
        match self {
            Window::Count(w) => w.tally(generation),
            Window::Time(w) => w.tally(generation, now),
        }
    }
}

#[cfg(all(test, loom))]
#[path = "window_loom_tests.rs"]
mod loom_tests;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    const F: Record = Record {
        failure: true,
        slow: false,
    };
    const S: Record = Record {
        failure: false,
        slow: true,
    };

    fn t(calls: u32, failures: u32, slow: u32) -> Tally {
        Tally {
            calls,
            failures,
            slow,
        }
    }

    #[test]
    fn count_window_keeps_the_last_n() {
        let w = CountWindow::new(4);
        assert_eq!(w.record(0, F), Some(t(1, 1, 0)));
        assert_eq!(w.record(0, Record::SUCCESS), Some(t(2, 1, 0)));
        assert_eq!(w.record(0, S), Some(t(3, 1, 1)));
        assert_eq!(w.record(0, F), Some(t(4, 2, 1)));
        // The first failure falls out.
        assert_eq!(w.record(0, Record::SUCCESS), Some(t(4, 1, 1)));
        for _ in 0..3 {
            w.record(0, Record::SUCCESS);
        }
        assert_eq!(w.tally(0), t(4, 0, 0));
        // Healthy fast path: nothing changes, nothing is written.
        assert_eq!(w.record(0, Record::SUCCESS), Some(t(4, 0, 0)));
        assert_eq!(w.record(0, F), Some(t(4, 1, 0)));
    }

    #[test]
    fn count_window_starts_empty_for_a_new_generation_and_refuses_stale_records() {
        let w = CountWindow::new(3);
        for _ in 0..3 {
            w.record(7, F);
        }
        assert_eq!(w.tally(7), t(3, 3, 0));
        assert_eq!(w.tally(8), Tally::default());
        assert_eq!(w.record(8, Record::SUCCESS), Some(t(1, 0, 0)));
        assert_eq!(w.record(7, F), None, "stale: generation 8 owns the window");
        assert_eq!(w.tally(8), t(1, 0, 0));
        assert_eq!(w.record(8, F), Some(t(2, 1, 0)));
        assert_eq!(w.record(8, F), Some(t(3, 2, 0)));
        assert_eq!(w.record(8, F), Some(t(3, 3, 0)));
    }

    #[test]
    fn count_window_handles_generation_wrap() {
        let w = CountWindow::new(2);
        w.record(u16::MAX, F);
        assert_eq!(w.record(0, F), Some(t(1, 1, 0)), "0 is newer than 65535");
        assert_eq!(w.record(u16::MAX, F), None);
    }

    #[test]
    fn time_window_rolls_buckets_with_the_clock() {
        let second = Duration::from_secs(1);
        let w = TimeWindow::new(3, 1_000_000_000);
        let at = |s: u64| Instant::ZERO + second * s as u32;
        assert_eq!(w.record(0, at(0), F), Some(t(1, 1, 0)));
        assert_eq!(w.record(0, at(1), Record::SUCCESS), Some(t(2, 1, 0)));
        assert_eq!(w.record(0, at(2), S), Some(t(3, 1, 1)));
        // Second 3 reuses the bucket of second 0: its failure is gone.
        assert_eq!(w.record(0, at(3), Record::SUCCESS), Some(t(3, 0, 1)));
        assert_eq!(w.tally(0, at(3)), t(3, 0, 1));
        assert_eq!(w.tally(0, at(10)), Tally::default(), "everything aged out");
        assert_eq!(w.tally(1, at(3)), Tally::default(), "other generation");
        assert_eq!(w.record(0, at(0), F), None, "older than the window");
        assert_eq!(w.record(1, at(3), F), Some(t(1, 1, 0)));
        assert_eq!(w.record(0, at(3), F), None, "stale generation");
    }

    /// The healthy path of a time window counts a success without a tally only while no
    /// failure or slow call of its generation lies inside the window; otherwise it counts
    /// nothing and leaves the success to `record`.
    #[test]
    fn time_window_skips_the_tally_only_while_the_window_holds_no_failure() {
        let second = Duration::from_secs(1);
        let w = TimeWindow::new(3, 1_000_000_000);
        let at = |s: u64| Instant::ZERO + second * s as u32;
        assert!(w.record_success_if_clean(0, at(0)));
        assert!(w.record_success_if_clean(0, at(0)));
        assert_eq!(w.tally(0, at(0)), t(2, 0, 0), "counted without a tally");
        assert_eq!(w.record(0, at(1), F), Some(t(3, 1, 0)));
        for s in 1..=3 {
            assert!(
                !w.record_success_if_clean(0, at(s)),
                "second {s}: failure in window"
            );
        }
        assert_eq!(
            w.tally(0, at(3)),
            t(1, 1, 0),
            "the refused successes were not counted"
        );
        // Second 4: the failure's bucket (second 1) has left the window.
        assert!(w.record_success_if_clean(0, at(4)));
        assert_eq!(w.tally(0, at(4)), t(1, 0, 0));
        // A slow call marks the window too.
        assert_eq!(w.record(0, at(5), S), Some(t(2, 0, 1)));
        assert!(!w.record_success_if_clean(0, at(5)));
        // Another generation's failures are not in this generation's window.
        assert!(w.record_success_if_clean(1, at(5)));
        assert_eq!(w.record(1, at(6), F), Some(t(2, 1, 0)));
        assert!(!w.record_success_if_clean(1, at(6)));
        // A stale failure of generation 0 never moves the mark back to its generation.
        assert_eq!(w.record(0, at(9), F), None);
        assert!(
            !w.record_success_if_clean(1, at(8)),
            "generation 1's failure is still in"
        );
        assert!(w.record_success_if_clean(1, at(9)));
    }

    /// The bucket hint gives exactly what the division gives, for times in any order (the
    /// hint moves back and forth between threads whose clocks are read at different moments),
    /// at bucket edges, and for widths that do not divide a second.
    #[test]
    fn time_window_locates_buckets_as_the_division_does() {
        for (buckets, width) in [(10u32, 1_000_000_000u64), (7, 1_000_001), (1000, 1_000_000)] {
            let w = TimeWindow::new(buckets, width);
            let mut rng = palisade_core::rng::SplitMix64::new(u64::from(buckets));
            let mut times = vec![0, 1, width - 1, width, width + 1, 2 * width - 1, u64::MAX];
            let mut last = 0u64;
            for _ in 0..20_000 {
                // Mostly small steps forward, sometimes back, sometimes a jump.
                last = match rng.next_u64() % 8 {
                    0 => last.saturating_sub(rng.next_u64() % (2 * width)),
                    1 => rng.next_u64() >> 8,
                    _ => last.saturating_add(rng.next_u64() % (width / 3 + 1)),
                };
                times.push(last);
            }
            for nanos in times {
                let now = Instant::from_nanos(nanos);
                let number = w.number(now);
                let index = (number % u64::from(buckets)) as usize;
                assert_eq!(
                    w.locate(now),
                    (number, index),
                    "{buckets} × {width} ns at {nanos}"
                );
            }
        }
    }

    /// Regression (issue 9 §3): a stripe's 21-bit fields had no saturation and the stripes were
    /// summed as packed words. After 2^21 successes in one bucket the calls field carried out
    /// and the window read 0 calls, so 100 failures then tripped at "100 %"; with overflow
    /// checks on, the stripe sum panicked.
    #[test]
    fn time_window_counts_saturate_instead_of_wrapping() {
        let w = TimeWindow::new(2, 1_000_000_000);
        let now = Instant::ZERO + Duration::from_millis(10);
        for _ in 0..(1u32 << COUNT_BITS) + 10 {
            w.record(0, now, Record::SUCCESS).unwrap();
        }
        let full = w.tally(0, now);
        assert_eq!(full, t(COUNT_MASK as u32, 0, 0), "saturated, not wrapped");
        for _ in 0..100 {
            w.record(0, now, F);
        }
        let after = w.tally(0, now);
        assert!(after.calls >= COUNT_MASK as u32, "{after:?}");
        assert!(
            after.failures <= 100 && after.failures * 100 < after.calls,
            "{after:?}"
        );
        // Four full stripes from four threads sum without overflow.
        let w = std::sync::Arc::new(TimeWindow::new(2, 1_000_000_000));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for _ in 0..(1u32 << COUNT_BITS) {
                        w.record(0, now, F);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let tally = w.tally(0, now);
        assert!(tally.calls >= COUNT_MASK as u32 && tally.calls <= 4 * COUNT_MASK as u32);
        assert_eq!(tally.failures, tally.calls);
    }

    #[test]
    fn time_window_stripes_sum_exactly_across_threads() {
        let w = std::sync::Arc::new(TimeWindow::new(2, 1_000_000_000));
        let now = Instant::ZERO + Duration::from_millis(1500);
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..1_000 {
                        w.record(3, now, if i % 2 == 0 { F } else { S }).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(w.tally(3, now), t(6_000, 3_000, 3_000));
    }
}
