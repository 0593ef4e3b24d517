//! Bulkhead benchmarks: Palisade beside tower's `ConcurrencyLimit` (shared through
//! `GlobalConcurrencyLimitLayer`), tower-resilience's bulkhead and adaptive limiter, and the bare
//! inner service.
//!
//! Cases: the success path on one thread, the full-and-reject path, and two threads (or the
//! counts in `PALISADE_BENCH_THREADS`) calling through one shared bulkhead, on the success
//! path and on the reject path. Every layer is built outside the timed loop.

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use palisade_benches::{Bare, call_now, contended, contention_threads};
use palisade_bulkhead::Bulkhead;
use palisade_bulkhead::adaptive::Aimd;
use std::convert::Infallible;
use std::future::Pending;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::{Layer, ServiceBuilder};
use tower_service::Service;

const LIMIT: usize = 64;

/// An inner service whose calls never finish: holds a bulkhead slot for the reject cases.
#[derive(Clone, Copy, Debug)]
struct Hang;

impl Service<u64> for Hang {
    type Response = u64;
    type Error = Infallible;
    type Future = Pending<Result<u64, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: u64) -> Self::Future {
        std::future::pending()
    }
}

fn palisade_fixed() -> Bulkhead {
    Bulkhead::builder()
        .max_concurrent_calls(LIMIT)
        .build()
        .unwrap()
}

fn palisade_static() -> Bulkhead {
    Bulkhead::builder()
        .max_concurrent_calls(LIMIT)
        .build_static()
        .unwrap()
}

fn palisade_adaptive() -> Bulkhead {
    Bulkhead::builder()
        .adaptive(
            Aimd::builder()
                .initial_limit(LIMIT)
                .min_limit(1)
                .max_limit(1000)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

fn tr_bulkhead() -> tower_resilience::bulkhead::BulkheadLayer {
    tower_resilience::bulkhead::BulkheadLayer::builder()
        .max_concurrent_calls(LIMIT)
        .reject_when_full()
        .build()
        .unwrap()
}

fn tr_adaptive()
-> tower_resilience::adaptive::AdaptiveLimiterLayer<tower_resilience::adaptive::Aimd> {
    tower_resilience::adaptive::AdaptiveLimiterLayer::new(
        tower_resilience::adaptive::Aimd::builder()
            .initial_limit(LIMIT)
            .min_limit(1)
            .max_limit(1000)
            .build()
            .unwrap(),
    )
}

/// Benches one service on one thread, after checking that it answers synchronously.
fn one_thread<S>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut svc: S)
where
    S: Service<u64>,
{
    assert!(
        call_now(&mut svc, 0).is_some(),
        "{name}: not a synchronous path"
    );
    group.bench_function(name, |b| {
        b.iter(|| black_box(call_now(&mut svc, black_box(1u64)).is_some()));
    });
}

fn success_path(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let mut group = c.benchmark_group("bulkhead/success_1_thread");
    one_thread(&mut group, "bare", Bare);
    one_thread(&mut group, "palisade", palisade_fixed().layer().layer(Bare));
    one_thread(
        &mut group,
        "palisade_static",
        palisade_static().layer().layer(Bare),
    );
    one_thread(
        &mut group,
        "palisade_adaptive_aimd",
        palisade_adaptive().layer().layer(Bare),
    );
    one_thread(
        &mut group,
        "tower_global_concurrency_limit",
        GlobalConcurrencyLimitLayer::new(LIMIT).layer(Bare),
    );
    one_thread(
        &mut group,
        "tower_resilience_bulkhead",
        tr_bulkhead().layer(Bare),
    );
    one_thread(
        &mut group,
        "tower_resilience_adaptive_aimd",
        tr_adaptive().layer(Bare),
    );
    group.finish();
}

/// Fills a service's bulkhead (limit 1) with a call that never finishes, then benches the
/// rejected calls.
fn reject_path(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let mut group = c.benchmark_group("bulkhead/reject_1_thread");
    let mut bench_rejects = |name: &str,
                             mut holder: Box<dyn FnMut() -> Box<dyn std::any::Any>>,
                             mut svc: Box<dyn FnMut() -> bool>| {
        let _held = holder();
        assert!(svc(), "{name}: not rejecting");
        group.bench_function(name, |b| b.iter(|| black_box(svc())));
    };

    let bulkhead = Bulkhead::builder().max_concurrent_calls(1).build().unwrap();
    let mut holder = bulkhead.layer().layer(Hang);
    let mut svc = bulkhead.layer().layer(Hang);
    bench_rejects(
        "palisade",
        Box::new(move || {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            assert!(holder.poll_ready(&mut cx).is_ready());
            Box::new(holder.call(0))
        }),
        Box::new(move || matches!(call_now(&mut svc, 1), Some(Err(_)))),
    );

    let sem = Arc::new(tokio::sync::Semaphore::new(1));
    let mut holder = GlobalConcurrencyLimitLayer::with_semaphore(sem.clone()).layer(Hang);
    let mut svc = ServiceBuilder::new()
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::with_semaphore(sem))
        .service(Hang);
    bench_rejects(
        "tower_load_shed_global_concurrency_limit",
        Box::new(move || {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            assert!(holder.poll_ready(&mut cx).is_ready());
            Box::new(holder.call(0))
        }),
        Box::new(move || matches!(call_now(&mut svc, 1), Some(Err(_)))),
    );

    // tower-resilience's bulkhead is left out of this group: it rejects through
    // `tokio::time::timeout(0, acquire)`, which is not ready on its first poll (it needs a
    // runtime and the timer's next 1 ms tick), so it has no synchronous reject path to time.
    group.finish();
}

/// `threads` threads, each with its own clone of one service, sharing one bulkhead.
///
/// Each thread moves its clone onto its own stack before it starts, as the other contention
/// benches do: the clones side by side in one `Vec` would share cache lines, and a service
/// writes its reservation into itself on every call, so the threads would contend on the
/// harness's memory as well as on the bulkhead (false sharing the measurement must not have).
fn n_threads<S>(group: &mut BenchmarkGroup<'_, WallTime>, threads: usize, name: &str, svc: S)
where
    S: Service<u64> + Clone + Send,
{
    let handle = tokio::runtime::Handle::current();
    // A `Mutex` only to share a `Send` service with the threads, which clone it.
    let svc = Mutex::new(svc);
    assert!(call_now(&mut svc.lock().unwrap().clone(), 0).is_some());
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            contended(threads, iters, |_, iters| {
                // tower-resilience's futures need a tokio context on every thread.
                let _runtime = handle.enter();
                let mut svc = svc.lock().unwrap().clone();
                for i in 0..iters {
                    black_box(call_now(&mut svc, black_box(i)).is_some());
                }
            })
        });
    });
}

fn shared_path(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    for threads in contention_threads() {
        let mut group = c.benchmark_group(format!("bulkhead/success_{threads}_threads"));
        n_threads(&mut group, threads, "bare", Bare);
        n_threads(
            &mut group,
            threads,
            "palisade",
            palisade_fixed().layer().layer(Bare),
        );
        n_threads(
            &mut group,
            threads,
            "palisade_static",
            palisade_static().layer().layer(Bare),
        );
        n_threads(
            &mut group,
            threads,
            "palisade_adaptive_aimd",
            palisade_adaptive().layer().layer(Bare),
        );
        n_threads(
            &mut group,
            threads,
            "tower_global_concurrency_limit",
            GlobalConcurrencyLimitLayer::new(LIMIT).layer(Bare),
        );
        n_threads(
            &mut group,
            threads,
            "tower_resilience_bulkhead",
            tr_bulkhead().layer(Bare),
        );
        n_threads(
            &mut group,
            threads,
            "tower_resilience_adaptive_aimd",
            tr_adaptive().layer(Bare),
        );
        group.finish();
    }
}

/// `threads` threads rejected by one full bulkhead (limit 1, its slot held by a call that
/// never finishes), each through its own clone of one service: the reject path under
/// contention, beside tower's `LoadShed` over a shared `GlobalConcurrencyLimit`.
fn reject_shared_path(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let mut cx = Context::from_waker(std::task::Waker::noop());
    for threads in contention_threads() {
        let mut group = c.benchmark_group(format!("bulkhead/reject_{threads}_threads"));

        let bulkhead = Bulkhead::builder().max_concurrent_calls(1).build().unwrap();
        let mut holder = bulkhead.layer().layer(Hang);
        assert!(holder.poll_ready(&mut cx).is_ready());
        let _held = holder.call(0);
        let mut svc = bulkhead.layer().layer(Hang);
        assert!(matches!(call_now(&mut svc, 1), Some(Err(_))), "not full");
        n_threads(&mut group, threads, "palisade", svc);

        let sem = Arc::new(tokio::sync::Semaphore::new(1));
        let mut holder = GlobalConcurrencyLimitLayer::with_semaphore(sem.clone()).layer(Hang);
        assert!(holder.poll_ready(&mut cx).is_ready());
        let _held_too = holder.call(0);
        let mut svc = ServiceBuilder::new()
            .load_shed()
            .layer(GlobalConcurrencyLimitLayer::with_semaphore(sem))
            .service(Hang);
        assert!(matches!(call_now(&mut svc, 1), Some(Err(_))), "not full");
        n_threads(
            &mut group,
            threads,
            "tower_load_shed_global_concurrency_limit",
            svc,
        );
        group.finish();
    }
}

criterion_group!(
    benches,
    success_path,
    reject_path,
    shared_path,
    reject_shared_path
);
criterion_main!(benches);
