//! Criterion benchmarks of Palisade beside its peers, and the helpers they share.
//!
//! Run them all with `cargo bench -p palisade-benches`, one file with
//! `cargo bench -p palisade-benches --bench <name>`. Every group puts Palisade, the peers and
//! the bare inner service side by side, so a report's ratios come from one run.

#![forbid(unsafe_code)]
#![allow(
    clippy::disallowed_types,
    reason = "benchmarks measure wall time with std::time::Instant"
)]

use std::future::{Ready, ready};
use std::sync::Barrier;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower_service::Service;

/// The inner service of every bench: ready at once, answers at once with its request (core's
/// `Echo`, under the name the bench groups use for the baseline).
pub use palisade_core::test_util::{Echo as Bare, call_now};

/// The inner service answering with an error, for rejected/failure paths.
#[derive(Clone, Copy, Debug, Default)]
pub struct Failing;

/// The error of [`Failing`].
#[derive(Clone, Copy, Debug, Default)]
pub struct BenchError;

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bench error")
    }
}

impl std::error::Error for BenchError {}

impl<R> Service<R> for Failing {
    type Response = R;
    type Error = BenchError;
    type Future = Ready<Result<R, BenchError>>;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BenchError>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, _request: R) -> Self::Future {
        ready(Err(BenchError))
    }
}

/// Runs `per_thread(thread_index, iters)` on `threads` threads released together by a barrier,
/// and returns the wall time from their release until the last one finished. When each thread
/// makes `iters` calls, `Criterion::iter_custom` reports this as the time per call per thread.
pub fn contended<F>(threads: usize, iters: u64, per_thread: F) -> Duration
where
    F: Fn(usize, u64) + Sync,
{
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let barrier = &barrier;
            let per_thread = &per_thread;
            scope.spawn(move || {
                barrier.wait();
                per_thread(t, iters);
            });
        }
        barrier.wait();
        let start = Instant::now();
        // Scope end joins every thread.
        start
    })
    .elapsed()
}

#[cfg(feature = "obs")]
pub use recorder::CountingRecorder;

/// A `metrics` recorder as cheap as a real one can be: every handle it registers is a real
/// atomic cell (so the layers' recording work is all done), and nothing is exported.
#[cfg(feature = "obs")]
mod recorder {
    use metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata,
        Recorder, SharedString, Unit,
    };
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// One metric's value: a counter's count, a gauge's bits, a histogram's sample count.
    #[derive(Debug, Default)]
    struct Cell(AtomicU64);

    // Relaxed on every cell: the values are never read while the benches run, so no other
    // memory needs to be ordered with them; the atomic RMW itself is the work a real
    // recorder does.
    impl CounterFn for Cell {
        fn increment(&self, value: u64) {
            self.0.fetch_add(value, Ordering::Relaxed);
        }
        fn absolute(&self, value: u64) {
            self.0.store(value, Ordering::Relaxed);
        }
    }

    impl GaugeFn for Cell {
        fn increment(&self, value: f64) {
            self.set(f64::from_bits(self.0.load(Ordering::Relaxed)) + value);
        }
        fn decrement(&self, value: f64) {
            self.set(f64::from_bits(self.0.load(Ordering::Relaxed)) - value);
        }
        fn set(&self, value: f64) {
            self.0.store(value.to_bits(), Ordering::Relaxed);
        }
    }

    impl HistogramFn for Cell {
        fn record(&self, _value: f64) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Registers a fresh atomic cell per handle and counts the registrations.
    #[derive(Debug, Default)]
    pub struct CountingRecorder {
        registrations: AtomicU64,
    }

    impl CountingRecorder {
        /// How many handles were registered so far.
        pub fn registrations(&self) -> u64 {
            // Relaxed: a statistic read after the work it counts, on the same thread.
            self.registrations.load(Ordering::Relaxed)
        }

        fn cell(&self) -> Arc<Cell> {
            // Relaxed: a statistic; nothing is published through it.
            self.registrations.fetch_add(1, Ordering::Relaxed);
            Arc::new(Cell::default())
        }
    }

    impl Recorder for CountingRecorder {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.cell())
        }

        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(self.cell())
        }

        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(self.cell())
        }
    }
}

/// The thread counts of the contention cases ("N threads sharing one instance"): the
/// comma-separated list in `PALISADE_BENCH_THREADS` (e.g. `2,4,8,16` on a machine with that
/// many cores), or 2 when it is unset. Each count is a group of its own, named with it
/// (e.g. `bulkhead/success_4_threads`).
///
/// # Panics
///
/// When `PALISADE_BENCH_THREADS` holds anything but positive integers: a bench run with a
/// mistyped list stops at once rather than timing something else.
pub fn contention_threads() -> Vec<usize> {
    const VAR: &str = "PALISADE_BENCH_THREADS";
    match std::env::var(VAR) {
        Err(_) => vec![2],
        Ok(list) => list
            .split(',')
            .map(|t| match t.trim().parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => panic!("{VAR}={list}: {t:?} is not a positive thread count"),
            })
            .collect(),
    }
}
