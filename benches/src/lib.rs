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
