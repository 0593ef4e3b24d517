//! stack benchmarks: the full recommended Palisade stack beside the equivalent tower +
//! tower-resilience stack, and the bare inner service, in one run.
//!
//! The Palisade stack is the facade's "order of layers" (`palisade/src/lib.rs`), every layer
//! on its defaults except the rate (set so high that no bench loop meets it):
//!
//! retry (default policy, default budget) → rate limit → bulkhead (64) → `Balancer`
//! (P2C + peak EWMA) over [`ENDPOINTS`] endpoints → per endpoint: a circuit breaker in gate
//! mode (default Hystrix-style time window) → the bare service.
//!
//! The tower + tower-resilience stack does the same work with the peers' parts: tower's
//! `Retry` with a `TpsBudget` (deposit on success, withdraw before a retry) →
//! tower-resilience's rate limiter → tower-resilience's bulkhead (64, reject when full) →
//! `Buffer` over tower's p2c `Balance` (the only way to share a `Balance`) over `PeakEwma`
//! endpoints → per endpoint: tower-resilience's circuit breaker (defaults) → the bare service.
//!
//! - `stack/success_1_thread`: `poll_ready` + `call` + completion of one request that
//!   succeeds. tower's `Buffer` needs its worker task, so the peer's loop runs in
//!   `block_on` on a current-thread runtime (the worker runs on the same thread); Palisade's
//!   stack needs no runtime and is polled directly.
//! - `stack/success_deadline_1_thread`: the same, with the retry settings the facade docs
//!   ask every user to choose, a 2 s deadline and a 500 ms per-attempt timeout (tokio
//!   timers, so both stacks run inside a runtime); the peer gets the same two limits as
//!   tower `Timeout` layers, one above its retry (the deadline) and one below (per attempt).
//! - `stack/success_2_threads`: two threads, each with its own clone of one shared stack
//!   (one limiter, one bulkhead, one balancer, one budget). The peer's `Buffer` worker runs
//!   on a one-worker runtime. `PALISADE_BENCH_THREADS=2,4,8,16` runs it (and every other
//!   contention group) at each of those thread counts instead.
//!
//! Each group has `bare`, so the report can state the stack's overhead per call.

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]
#![allow(
    clippy::disallowed_types,
    reason = "benchmarks measure wall time with std::time::Instant"
)]

#[path = "support/stack.rs"]
mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_benches::{Bare, call_now, contended, contention_threads};
use std::future;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;
use support::{ENDPOINTS, LIMIT, palisade_stack, palisade_stack_with_deadline};
use tower::balance::p2c::Balance;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PeakEwma};
use tower::retry::Policy;
use tower::retry::budget::{Budget, TpsBudget};
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};

/// tower's documented budgeted policy: deposit on success, withdraw before a retry, at most
/// three attempts (as Palisade's default policy).
#[derive(Clone, Debug)]
struct TowerBudgeted {
    budget: Arc<TpsBudget>,
    attempts_left: u32,
}

impl<E> Policy<u64, u64, E> for TowerBudgeted {
    type Future = future::Ready<()>;

    fn retry(&mut self, _: &mut u64, result: &mut Result<u64, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => {
                self.budget.deposit();
                None
            }
            Err(_) if self.attempts_left > 1 && self.budget.withdraw() => {
                self.attempts_left -= 1;
                Some(future::ready(()))
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

/// The tower + tower-resilience stack. Needs a tokio runtime context: `Buffer` spawns its
/// worker, and tower-resilience's layers use tokio's timers.
fn tower_stack() -> impl Service<u64, Response = u64, Error = BoxError> + Clone + Send {
    tower_stack_with(None)
}

/// [`tower_stack`] with a deadline above the retry and a per-attempt timeout below it.
fn tower_stack_with_deadline() -> impl Service<u64, Response = u64, Error = BoxError> + Clone + Send
{
    ServiceBuilder::new()
        .timeout(Duration::from_secs(2))
        .service(tower_stack_with(Some(Duration::from_millis(500))))
}

fn tower_stack_with(
    attempt_timeout: Option<Duration>,
) -> impl Service<u64, Response = u64, Error = BoxError> + Clone + Send {
    let endpoints: Vec<_> = (0..ENDPOINTS)
        .map(|_| {
            let breaker = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
                .build()
                .unwrap()
                .layer(Bare);
            PeakEwma::new(
                breaker,
                Duration::from_millis(30),
                10.0e9,
                CompleteOnResponse::default(),
            )
        })
        .collect();
    let balance = Balance::new(ServiceList::new::<u64>(endpoints));
    let buffered = tower::buffer::Buffer::new(balance, 1_024);
    let limiter = tower_resilience::ratelimiter::RateLimiterLayer::builder()
        .limit_for_period(usize::MAX / 2)
        .refresh_period(Duration::from_secs(1))
        .timeout_duration(Duration::ZERO)
        .burst_size(usize::MAX / 2)
        .build()
        .unwrap();
    let bulkhead = tower_resilience::bulkhead::BulkheadLayer::builder()
        .max_concurrent_calls(LIMIT)
        .reject_when_full()
        .build()
        .unwrap();
    let policy = TowerBudgeted {
        budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
        attempts_left: 3,
    };
    ServiceBuilder::new()
        .retry(policy)
        .option_layer(attempt_timeout.map(tower::timeout::TimeoutLayer::new))
        .map_err(Into::<BoxError>::into)
        .layer(limiter)
        .map_err(Into::<BoxError>::into)
        .layer(bulkhead)
        .map_err(Into::<BoxError>::into)
        .service(buffered)
}

/// `iters` calls through `svc` awaited one after the other (for stacks that need their
/// runtime to make progress).
async fn await_calls<S>(svc: &mut S, iters: u64)
where
    S: Service<u64, Response = u64, Error = BoxError>,
{
    for i in 0..iters {
        let ready = svc.ready().await.expect("the stack stays ready");
        black_box(ready.call(black_box(i)).await.expect("the call succeeds"));
    }
}

fn success_1_thread(c: &mut Criterion) {
    one_thread(c, "stack/success_1_thread", palisade_stack, tower_stack);
}

fn success_deadline_1_thread(c: &mut Criterion) {
    one_thread(
        c,
        "stack/success_deadline_1_thread",
        palisade_stack_with_deadline,
        tower_stack_with_deadline,
    );
}

/// One-thread group `name`: `bare`, the Palisade stack `palisade` builds (polled directly),
/// and the peer stack `tower` builds (awaited on a current-thread runtime, for `Buffer`'s
/// worker). Both are built inside the runtime, for the stacks whose timers are tokio's.
fn one_thread<P, T>(c: &mut Criterion, name: &str, palisade: impl Fn() -> P, tower: impl Fn() -> T)
where
    P: Service<u64, Response = u64, Error = BoxError>,
    T: Service<u64, Response = u64, Error = BoxError>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let mut group = c.benchmark_group(name);
    let mut bare = Bare;
    group.bench_function("bare", |b| {
        b.iter(|| black_box(call_now(&mut bare, black_box(1u64))));
    });

    let mut palisade = palisade();
    assert!(
        matches!(call_now(&mut palisade, 0), Some(Ok(0))),
        "the Palisade stack answers synchronously"
    );
    group.bench_function("palisade", |b| {
        b.iter(|| black_box(call_now(&mut palisade, black_box(1u64))));
    });

    let mut tower = tower();
    runtime.block_on(await_calls(&mut tower, 10));
    group.bench_function("tower_resilience", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = std::time::Instant::now();
                await_calls(&mut tower, iters).await;
                start.elapsed()
            })
        });
    });
    group.finish();
}

fn success_n_threads(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    for threads in contention_threads() {
        let mut group = c.benchmark_group(format!("stack/success_{threads}_threads"));
        group.bench_function("bare", |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, |_, iters| {
                    let mut svc = Bare;
                    for i in 0..iters {
                        black_box(call_now(&mut svc, black_box(i)));
                    }
                })
            });
        });

        let palisade = palisade_stack();
        group.bench_function("palisade", |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, |_, iters| {
                    let mut svc = palisade.clone();
                    for i in 0..iters {
                        black_box(call_now(&mut svc, black_box(i)));
                    }
                })
            });
        });

        let tower = {
            let _entered = runtime.enter();
            tower_stack()
        };
        runtime.block_on(await_calls(&mut tower.clone(), 10));
        group.bench_function("tower_resilience", |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, |_, iters| {
                    let mut svc = tower.clone();
                    runtime.block_on(await_calls(&mut svc, iters));
                })
            });
        });
        group.finish();
    }
}

criterion_group!(
    benches,
    success_1_thread,
    success_deadline_1_thread,
    success_n_threads
);
criterion_main!(benches);
