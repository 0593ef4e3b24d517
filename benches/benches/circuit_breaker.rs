//! circuit_breaker benchmarks: Palisade beside its peers and the bare inner service.
//!
//! The Palisade and peer cases land with the circuit_breaker layer; the bare service is the
//! baseline every case is compared with.

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_benches::{Bare, call_now};
use std::hint::black_box;

fn success_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("circuit_breaker/success_1_thread");
    let mut bare = Bare;
    group.bench_function("bare", |b| {
        b.iter(|| black_box(call_now(&mut bare, black_box(1u64))));
    });
    group.finish();
}

criterion_group!(benches, success_path);
criterion_main!(benches);
