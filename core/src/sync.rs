//! The one switch between std and [loom](https://docs.rs/loom) synchronisation types.
//!
//! Every Palisade state machine imports its atomics and `Arc` from here. Built normally they are
//! `std`'s; built with `RUSTFLAGS="--cfg loom"` they are loom's, so the same code runs under
//! loom's model checker, which explores every interleaving of a small concurrent test.
//!
//! ```
//! use palisade_core::sync::Arc;
//! use palisade_core::sync::atomic::{AtomicU64, Ordering};
//!
//! let hits = Arc::new(AtomicU64::new(0));
//! // Relaxed: a statistic, nothing is published through it.
//! hits.fetch_add(1, Ordering::Relaxed);
//! assert_eq!(hits.load(Ordering::Relaxed), 1);
//! ```
//!
//! A loom model in a layer crate (built with `--cfg loom`, run with `--release`):
//!
//! ```ignore
//! #[cfg(loom)]
//! #[test]
//! fn two_threads_count_once_each() {
//!     use palisade_core::sync::{atomic::{AtomicU64, Ordering}, loom, Arc};
//!     loom::model(|| {
//!         let n = Arc::new(AtomicU64::new(0));
//!         let n2 = n.clone();
//!         let t = loom::thread::spawn(move || { n2.fetch_add(1, Ordering::Relaxed); });
//!         n.fetch_add(1, Ordering::Relaxed);
//!         t.join().unwrap();
//!         assert_eq!(n.load(Ordering::Relaxed), 2);
//!     });
//! }
//! ```

#[cfg(not(loom))]
pub use std::sync::Arc;

#[cfg(loom)]
pub use loom::sync::Arc;

/// Atomic types: `std::sync::atomic`, or loom's under `cfg(loom)`.
pub mod atomic {
    #[cfg(not(loom))]
    pub use std::sync::atomic::{
        AtomicBool, AtomicI64, AtomicIsize, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
    };

    #[cfg(loom)]
    pub use loom::sync::atomic::{
        AtomicBool, AtomicI64, AtomicIsize, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
    };
}

/// Spin-loop hint: `std::hint::spin_loop`, or loom's yield under `cfg(loom)` so CAS retry loops
/// terminate in models.
pub mod hint {
    #[cfg(not(loom))]
    pub use std::hint::spin_loop;

    #[cfg(loom)]
    pub use loom::hint::spin_loop;
}

/// The loom crate itself, for writing models (`loom::model`, `loom::thread`), only under
/// `cfg(loom)`: layer crates need no loom dependency of their own.
#[cfg(loom)]
pub use loom;

#[cfg(all(test, loom))]
mod loom_tests {
    use super::atomic::{AtomicU64, Ordering};
    use super::{Arc, loom};
    use crate::clock::{Instant, ManualClock};
    use std::time::Duration;

    /// The shim works: loom drives our atomics, and concurrent advances of a manual clock are
    /// never lost and never seen out of order.
    #[test]
    fn manual_clock_advances_are_not_lost() {
        loom::model(|| {
            let manual = ManualClock::new();
            let seen = Arc::new(AtomicU64::new(0));
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let manual = manual.clone();
                    let seen = seen.clone();
                    loom::thread::spawn(move || {
                        let before = manual.now();
                        manual.advance(Duration::from_nanos(5));
                        let after = manual.now();
                        assert!(after >= before + Duration::from_nanos(5));
                        // Relaxed: only the final value is checked after join.
                        seen.fetch_max(after.as_nanos(), Ordering::Relaxed);
                    })
                })
                .collect();
            for handle in handles {
                handle.join().unwrap();
            }
            assert_eq!(manual.now(), Instant::from_nanos(10));
            assert!(seen.load(Ordering::Relaxed) <= 10);
        });
    }
}
