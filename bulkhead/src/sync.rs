//! The cold-path lock, switched between `parking_lot` and loom like the atomics of
//! `palisade_core::sync` (which has no `Mutex`; a candidate for core).

#[cfg(not(loom))]
mod imp {
    /// `parking_lot::Mutex` outside loom.
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(parking_lot::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(parking_lot::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> parking_lot::MutexGuard<'_, T> {
            self.0.lock()
        }
    }
}

#[cfg(loom)]
mod imp {
    /// loom's `Mutex` under `cfg(loom)`, so models see every lock.
    #[derive(Debug)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
            self.0.lock().expect("no panics while the lock is held")
        }
    }
}

pub(crate) use imp::Mutex;
