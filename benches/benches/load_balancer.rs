//! load-balancer benchmarks: Palisade's `Balancer` beside tower's `p2c::Balance` over
//! `PeakEwma`, and the bare service.
//!
//! - `load_balancer/pick_call_1_thread/{10,100,1000}`: `poll_ready` (pick) + `call` +
//!   completion (record) of one request on one thread, over 10, 100 and 1 000 endpoints that
//!   answer at once. tower's `Balance` is used directly (one owner, no `Buffer`). Beside the
//!   default strategy: the same balancer with per-endpoint breakers (`fleet_breaker`),
//!   Maglev hashing (`Balancer::maglev`, the table built before timing), and endpoints
//!   whose service costs a reference count to clone (`palisade P2cPeakEwma, gated
//!   endpoints`: each endpoint a `CircuitBreakerService` in gate mode over the bare service,
//!   as in the `stack` bench; the balancer clones the endpoint's service per call).
//! - `load_balancer/pick_call_2_threads/{10,100,1000}`: two threads on one shared balancer. Palisade:
//!   one `BalancerService` per thread, same `Balancer`. tower: one `Buffer` over the `Balance`,
//!   cloned per thread, as users must share it; its calls go through the buffer's channel to
//!   its worker task on a tokio runtime.
//!
//! Goal (issue 10): ≤ 50 ns added per call at 1 000 endpoints on one thread, flat in the
//! endpoint count, and ≥ 5× cheaper than tower's shared balancer on two threads.

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use palisade_benches::{Bare, call_now, contended, contention_threads};
use palisade_circuit_breaker::CircuitBreaker;
use palisade_load_balancer::{Balancer, BalancerService, EndpointMeta, fleet_breaker};
use std::hint::black_box;
use std::time::Duration;
use tower::balance::p2c::Balance;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PeakEwma};
use tower::{Layer, Service, ServiceExt};

type TowerBalance = Balance<ServiceList<Vec<PeakEwma<Bare>>>, u64>;

fn tower_balance(n: usize) -> TowerBalance {
    let endpoints: Vec<_> = (0..n)
        .map(|_| {
            PeakEwma::new(
                Bare,
                Duration::from_millis(30),
                10.0e9,
                CompleteOnResponse::default(),
            )
        })
        .collect();
    Balance::new(ServiceList::new::<u64>(endpoints))
}

fn palisade_balancer(n: usize) -> Balancer<usize, Bare> {
    Balancer::new((0..n).map(|k| (k, Bare)))
}

fn one_thread(c: &mut Criterion) {
    // The gated endpoints' breakers would need a timer only to wait; a runtime is entered
    // so that they could.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let _entered = runtime.enter();
    let mut group = c.benchmark_group("load_balancer/pick_call_1_thread");
    let mut bare = Bare;
    group.bench_function("bare", |b| {
        b.iter(|| black_box(call_now(&mut bare, black_box(1u64))));
    });
    for n in [10usize, 100, 1_000] {
        let balancer = palisade_balancer(n);
        let mut svc: BalancerService<usize, Bare> = balancer.service();
        group.bench_with_input(BenchmarkId::new("palisade P2cPeakEwma", n), &n, |b, _| {
            b.iter(|| black_box(call_now(&mut svc, black_box(1u64))));
        });

        let guarded: Balancer<usize, Bare> = Balancer::builder()
            .endpoint_breaker(fleet_breaker())
            .build()
            .expect("valid settings");
        for k in 0..n {
            guarded.insert(k, Bare, EndpointMeta::new());
        }
        let mut svc = guarded.service();
        group.bench_with_input(
            BenchmarkId::new("palisade P2cPeakEwma + endpoint breakers", n),
            &n,
            |b, _| {
                b.iter(|| black_box(call_now(&mut svc, black_box(1u64))));
            },
        );

        let gated = Balancer::new((0..n).map(|k| {
            let breaker = CircuitBreaker::builder()
                .name(format!("endpoint-{k}"))
                .build()
                .expect("valid settings");
            (k, breaker.layer().gate().layer(Bare))
        }));
        let mut svc = gated.service();
        group.bench_with_input(
            BenchmarkId::new("palisade P2cPeakEwma, gated endpoints", n),
            &n,
            |b, _| {
                b.iter(|| black_box(call_now(&mut svc, black_box(1u64))));
            },
        );

        let mut maglev = balancer.maglev(|key: &u64| palisade_core::rng::mix(*key));
        // Build the table for this set before timing.
        let _ = call_now(&mut maglev, 0u64);
        let mut key = 0u64;
        group.bench_with_input(BenchmarkId::new("palisade maglev", n), &n, |b, _| {
            b.iter(|| {
                key = key.wrapping_add(1);
                black_box(call_now(&mut maglev, black_box(key)))
            });
        });

        let mut tower = tower_balance(n);
        // Discover every endpoint before timing.
        let _ = call_now(&mut tower, 0u64);
        group.bench_with_input(BenchmarkId::new("tower p2c PeakEwma", n), &n, |b, _| {
            b.iter(|| black_box(call_now(&mut tower, black_box(1u64))));
        });
    }
    group.finish();
}

fn two_threads(c: &mut Criterion) {
    for threads in contention_threads() {
        let mut group = c.benchmark_group(format!("load_balancer/pick_call_{threads}_threads"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("a tokio runtime");
        for n in [10usize, 100, 1_000] {
            let balancer = palisade_balancer(n);
            group.bench_with_input(BenchmarkId::new("palisade P2cPeakEwma", n), &n, |b, _| {
                b.iter_custom(|iters| {
                    contended(threads, iters, |_, iters| {
                        let mut svc = balancer.service();
                        for i in 0..iters {
                            black_box(call_now(&mut svc, black_box(i)));
                        }
                    })
                });
            });

            let buffered = {
                let _entered = runtime.enter();
                tower::buffer::Buffer::new(tower_balance(n), 1_024)
            };
            group.bench_with_input(
                BenchmarkId::new("tower Buffer(p2c PeakEwma)", n),
                &n,
                |b, _| {
                    b.iter_custom(|iters| {
                        contended(threads, iters, |_, iters| {
                            let mut svc = buffered.clone();
                            runtime.block_on(async {
                                for i in 0..iters {
                                    let ready = svc.ready().await.expect("buffer worker alive");
                                    black_box(ready.call(black_box(i)).await.ok());
                                }
                            });
                        })
                    });
                },
            );
        }
        group.finish();
    }
}

criterion_group!(benches, one_thread, two_threads);
criterion_main!(benches);
