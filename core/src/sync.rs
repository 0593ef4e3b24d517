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
//!
//! Internal to Palisade's layer crates (hidden from the docs): not part of the stable API.

#![doc(hidden)]

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

/// A lock for cold paths (waiter queues, registries, listener lists): `parking_lot::Mutex`,
/// or loom's `Mutex` under `cfg(loom)` so models see every acquisition.
///
/// Never on a hot path: DESIGN.md keeps admitted, successful calls lock-free.
pub struct Mutex<T>(MutexImpl<T>);

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T> std::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mutex").finish_non_exhaustive()
    }
}

#[cfg(not(loom))]
type MutexImpl<T> = parking_lot::Mutex<T>;
#[cfg(loom)]
type MutexImpl<T> = loom::sync::Mutex<T>;

/// The guard of a locked [`Mutex`].
#[cfg(not(loom))]
pub type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;
/// The guard of a locked [`Mutex`].
#[cfg(loom)]
pub type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    /// An unlocked mutex holding `value`.
    pub fn new(value: T) -> Self {
        Mutex(MutexImpl::new(value))
    }

    /// Locks, blocking the thread until the lock is free.
    ///
    /// # Panics
    ///
    /// Under loom only, if a thread panicked while holding the lock (loom's mutex poisons);
    /// `parking_lot`'s does not poison.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        #[cfg(not(loom))]
        {
            self.0.lock()
        }
        #[cfg(loom)]
        {
            self.0.lock().expect("no panics while the lock is held")
        }
    }
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{Arc, Mutex};

    #[test]
    fn mutex_serialises_updates_across_threads() {
        let total = Arc::new(Mutex::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let total = Arc::clone(&total);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        *total.lock() += 1;
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("no panic");
        }
        assert_eq!(*total.lock(), 4000);
        assert_eq!(format!("{:?}", Mutex::<u8>::default()), "Mutex { .. }");
    }
}
