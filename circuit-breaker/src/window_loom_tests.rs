//! Loom models of the time window's `last_bad` hint, the word that lets a success into a
//! window without failures skip the tally (`record_success_if_clean`).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release -p palisade-circuit-breaker --lib -- loom`.

use super::*;
use palisade_core::sync::loom;
use std::time::Duration;

const FAILURE: Record = Record {
    failure: true,
    slow: false,
};

/// Bucket `n` of a window of one-second buckets.
fn at(n: u32) -> Instant {
    Instant::ZERO + Duration::from_secs(1) * n
}

/// A window of four one-second buckets, to share between model threads.
fn shared_window() -> palisade_core::sync::Arc<TimeWindow> {
    palisade_core::sync::Arc::new(TimeWindow::new(4, 1_000_000_000))
}

fn tally(calls: u32, failures: u32) -> Tally {
    Tally {
        calls,
        failures,
        slow: 0,
    }
}

/// Two failures in different buckets, recorded at once: `last_bad` ends on the newer bucket
/// whatever the order of their CASes (it only moves forward), both are counted, and a success
/// after them is not let past the tally.
#[test]
fn loom_last_bad_only_moves_forward() {
    loom::model(|| {
        let window = shared_window();
        let older = window.clone();
        let t = loom::thread::spawn(move || older.record(0, at(1), FAILURE));
        let newer = window.record(0, at(2), FAILURE);
        let older = t.join().unwrap();
        assert!(newer.is_some() && older.is_some());
        // Relaxed: the threads are joined; this reads their final value.
        let stamp = window.last_bad.load(Ordering::Relaxed);
        assert_eq!(
            stamp & STAMP_SLOT_MASK,
            window.number(at(2)),
            "the newer bucket, never the older"
        );
        assert_eq!(window.tally(0, at(2)), tally(2, 2));
        assert!(!window.record_success_if_clean(0, at(2)));
    });
}

/// A failure and a success at the same moment. The success either sees the failure's mark
/// and records with a tally, or skips the tally because it read `last_bad` before the mark.
/// Either way both are counted (nothing is lost), and when both tallied, one of the tallies
/// holds both records: the decision sees the whole window (the failure's own tally is what
/// decides when the success skipped, as `record_success_if_clean` documents).
#[test]
fn loom_a_success_racing_a_failure_is_counted_and_the_failure_decides() {
    loom::model(|| {
        let window = shared_window();
        let failing = window.clone();
        let t = loom::thread::spawn(move || failing.record(0, at(1), FAILURE));
        let success = if window.record_success_if_clean(0, at(1)) {
            None
        } else {
            Some(window.record(0, at(1), Record::SUCCESS).expect("current"))
        };
        let failure = t.join().unwrap().expect("current");
        assert!(failure.failures == 1, "the failure's tally holds itself");
        assert_eq!(window.tally(0, at(1)), tally(2, 1), "both counted");
        if let Some(success) = success {
            assert!(
                success.calls == 2 || failure.calls == 2,
                "a tally saw both: {success:?} {failure:?}"
            );
        }
        // From now on the window is not clean: successes tally.
        assert!(!window.record_success_if_clean(0, at(1)));
    });
}
