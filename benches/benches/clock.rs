//! What one clock read costs, for each clock a layer can use.
//!
//! The production default of `palisade_core::clock::Clock` is chosen from these numbers.

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]
#![allow(
    clippy::disallowed_types,
    reason = "this bench measures std::time::Instant itself"
)]

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_core::clock::{Clock, ManualClock};
use std::hint::black_box;

fn clock_reads(c: &mut Criterion) {
    let mut group = c.benchmark_group("clock_read");

    group.bench_function("std::time::Instant::now", |b| {
        b.iter(|| black_box(std::time::Instant::now()));
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
    let _guard = runtime.enter();
    group.bench_function("tokio::time::Instant::now", |b| {
        b.iter(|| black_box(tokio::time::Instant::now()));
    });

    let quanta_clock = quanta::Clock::new();
    group.bench_function("quanta::Clock::now", |b| {
        b.iter(|| black_box(quanta_clock.now()));
    });

    let palisade_default = Clock::default();
    group.bench_function("palisade Clock::default (tsc)", |b| {
        b.iter(|| black_box(palisade_default.now()));
    });

    let palisade_coarse = Clock::coarse();
    group.bench_function("palisade Clock::coarse", |b| {
        b.iter(|| black_box(palisade_coarse.now()));
    });

    let palisade_std = Clock::std();
    group.bench_function("palisade Clock::std", |b| {
        b.iter(|| black_box(palisade_std.now()));
    });

    let palisade_tokio = Clock::tokio();
    group.bench_function("palisade Clock::tokio", |b| {
        b.iter(|| black_box(palisade_tokio.now()));
    });

    let manual = ManualClock::new().clock();
    group.bench_function("palisade ManualClock", |b| {
        b.iter(|| black_box(manual.now()));
    });

    group.finish();
}

criterion_group!(benches, clock_reads);
criterion_main!(benches);
