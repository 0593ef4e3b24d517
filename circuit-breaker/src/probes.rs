//! The two small generation-tagged words beside the state word: the results of the current
//! half-open period's probes, and the failures in a row of the current closed period. No tower
//! types, no state-word logic: [`crate::shared`] decides what they mean.
//!
//! # Memory ordering
//!
//! Both words are read-modify-written by every recorder with `AcqRel` CASes and read with
//! `Acquire`, so a reader that sees a generation tag also sees the counts stored with it. They
//! are statistics that feed decisions, and every decision is a CAS on the state word that
//! checks the generation again; a count that lands a moment late changes which recorder makes
//! the decision, never whether a stale period can decide.

use crate::state::{Tag, Tally, tag_is_newer};
use crate::window::Record;
use crossbeam_utils::CachePadded;
use palisade_core::sync::atomic::{AtomicU64, Ordering};

/// Both words: bits 48..64 generation.
const TAG_SHIFT: u32 = 48;
const LOW_MASK: u64 = (1 << TAG_SHIFT) - 1;
/// Probe word fields: recorded probes at 32..48, failures at 16..32, slow at 0..16 (the probe
/// count is at most 4095, so a field never carries into its neighbour).
const PROBE_FIELD: u32 = 16;
const PROBE_FIELD_MASK: u64 = (1 << PROBE_FIELD) - 1;

const fn tag(word: u64) -> Tag {
    (word >> TAG_SHIFT) as Tag
}

/// The recorded results of one half-open period's probes.
#[derive(Debug)]
pub(crate) struct ProbeResults {
    word: CachePadded<AtomicU64>,
}

impl ProbeResults {
    pub(crate) fn new() -> ProbeResults {
        ProbeResults {
            word: CachePadded::new(AtomicU64::new(0)),
        }
    }

    fn decode(word: u64) -> Tally {
        Tally {
            calls: ((word >> (2 * PROBE_FIELD)) & PROBE_FIELD_MASK) as u32,
            failures: ((word >> PROBE_FIELD) & PROBE_FIELD_MASK) as u32,
            slow: (word & PROBE_FIELD_MASK) as u32,
        }
    }

    /// What `generation`'s probes have recorded so far.
    pub(crate) fn tally(&self, generation: Tag) -> Tally {
        // Acquire: pairs with the AcqRel CAS of `record`.
        let word = self.word.load(Ordering::Acquire);
        if tag(word) == generation {
            ProbeResults::decode(word)
        } else {
            Tally::default()
        }
    }

    /// Adds one probe result of `generation`; returns the tally after it, or `None` when a
    /// newer generation already owns the word (the probe is stale).
    pub(crate) fn record(&self, generation: Tag, record: Record) -> Option<Tally> {
        let delta = (1 << (2 * PROBE_FIELD))
            | (u64::from(record.failure) << PROBE_FIELD)
            | u64::from(record.slow);
        // Acquire: pairs with the AcqRel CAS below.
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let next = if tag(word) == generation {
                word + delta
            } else if tag_is_newer(generation, tag(word)) || word == 0 {
                (u64::from(generation) << TAG_SHIFT) | delta
            } else {
                return None;
            };
            // AcqRel: the probe results are read-modify-written by every probe; Release
            // publishes a new tag together with its counts.
            match self
                .word
                .compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(ProbeResults::decode(next)),
                Err(actual) => word = actual,
            }
        }
    }
}

/// Failures in a row of one closed period (counted only with `consecutive_failures` set).
#[derive(Debug)]
pub(crate) struct Streak {
    word: CachePadded<AtomicU64>,
}

impl Streak {
    pub(crate) fn new() -> Streak {
        Streak {
            word: CachePadded::new(AtomicU64::new(0)),
        }
    }

    /// Whether `generation` has no failure streak (the healthy path's check).
    #[inline]
    pub(crate) fn is_zero(&self, generation: Tag) -> bool {
        // Acquire: pairs with the AcqRel CAS of `count`.
        self.word.load(Ordering::Acquire) == u64::from(generation) << TAG_SHIFT
    }

    /// Failures in a row of `generation` now.
    pub(crate) fn get(&self, generation: Tag) -> u32 {
        // Acquire: pairs with the AcqRel CAS of `count`; a statistic.
        let word = self.word.load(Ordering::Acquire);
        if tag(word) == generation {
            (word & LOW_MASK).min(u64::from(u32::MAX)) as u32
        } else {
            0
        }
    }

    /// Counts one outcome of `generation`; returns the failures in a row after it (0 for a
    /// stale record).
    pub(crate) fn count(&self, generation: Tag, failure: bool) -> u32 {
        // Acquire: pairs with the AcqRel CAS below.
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            let count = if tag(current) == generation {
                current & LOW_MASK
            } else if tag_is_newer(generation, tag(current)) {
                0
            } else {
                return 0;
            };
            let count = if failure {
                (count + 1).min(LOW_MASK)
            } else {
                0
            };
            let next = (u64::from(generation) << TAG_SHIFT) | count;
            if next == current {
                return count.min(u64::from(u32::MAX)) as u32;
            }
            // AcqRel: a read-modify-write shared by all recorders; the tag and the count
            // travel together.
            match self.word.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return count.min(u64::from(u32::MAX)) as u32,
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const F: Record = Record {
        failure: true,
        slow: false,
    };

    #[test]
    fn probe_results_are_per_generation() {
        let p = ProbeResults::new();
        assert_eq!(p.tally(3), Tally::default());
        assert_eq!(p.record(3, F).map(|t| (t.calls, t.failures)), Some((1, 1)));
        assert_eq!(
            p.record(3, Record::SUCCESS).map(|t| (t.calls, t.failures)),
            Some((2, 1))
        );
        assert_eq!(p.record(5, Record::SUCCESS).map(|t| t.calls), Some(1));
        assert_eq!(p.record(3, F), None, "stale");
        assert_eq!(p.tally(3), Tally::default());
    }

    #[test]
    fn a_streak_counts_failures_in_a_row() {
        let s = Streak::new();
        assert!(s.is_zero(0));
        assert_eq!(s.count(0, true), 1);
        assert_eq!(s.count(0, true), 2);
        assert_eq!(s.get(0), 2);
        assert_eq!(s.count(0, false), 0);
        assert_eq!(s.count(1, true), 1);
        assert_eq!(s.count(0, true), 0, "stale");
        assert_eq!(s.get(1), 1);
    }
}
