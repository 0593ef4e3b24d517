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
//! - `stack/fleet_down_1_thread` (an incident): every endpoint's breaker is open. Palisade's
//!   balancer passes every shut gate over and answers `NoHealthyEndpoints`, which the retry
//!   returns at once; the peer's open breakers answer each call their `CircuitOpen` error,
//!   which tower's `Retry` retries while its budget allows. Palisade's breakers are opened
//!   again before each sample (their default 5 s wait would end during a long run); the
//!   peer's are forced open (its `force_open`, the only way to open them without failing
//!   calls).
//! - `stack/rate_limited_1_thread` (a surge): the rate limiter's token is spent and every call
//!   is refused by it, at the top of the stack, with the rest of the stack as above. (The
//!   peer's rate limiter refuses from `poll_ready`, an error its `Retry` passes on.)
//!
//! Each success group has `bare`, so the report can state the stack's overhead per call; the
//! incident groups compare the stacks' answers directly (no inner service is called).

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
use palisade_core::rejection::{RejectionKind, rejection};
use palisade_rate_limit::RateLimiter;
use palisade_retry::RetryPolicy;
use std::future;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;
use support::{
    ENDPOINTS, LIMIT, palisade_stack, palisade_stack_parts, palisade_stack_with_deadline,
    unmetered_limiter,
};
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
    tower_stack_with(TowerSetup::default())
}

/// [`tower_stack`] with a deadline above the retry and a per-attempt timeout below it.
fn tower_stack_with_deadline() -> impl Service<u64, Response = u64, Error = BoxError> + Clone + Send
{
    ServiceBuilder::new()
        .timeout(Duration::from_secs(2))
        .service(tower_stack_with(TowerSetup {
            attempt_timeout: Some(Duration::from_millis(500)),
            ..TowerSetup::default()
        }))
}

/// How [`tower_stack_with`] departs from the success stack.
#[derive(Default)]
struct TowerSetup {
    /// A per-attempt timeout below the retry.
    attempt_timeout: Option<Duration>,
    /// Every endpoint's breaker forced open.
    fleet_down: bool,
    /// A rate of one call per hour, its token already spent.
    rate_limited: bool,
}

fn tower_stack_with(
    setup: TowerSetup,
) -> impl Service<u64, Response = u64, Error = BoxError> + Clone + Send {
    let endpoints: Vec<_> = (0..ENDPOINTS)
        .map(|_| {
            let breaker = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
                .build()
                .unwrap()
                .layer(Bare);
            if setup.fleet_down {
                futures::executor::block_on(breaker.force_open());
            }
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
    // A token bucket of `limit + burst` tokens, `limit` refilled per period.
    let (limit, burst, refresh) = if setup.rate_limited {
        (1, 0, Duration::from_secs(3_600))
    } else {
        (usize::MAX / 2, usize::MAX / 2, Duration::from_secs(1))
    };
    let limiter = tower_resilience::ratelimiter::RateLimiterLayer::builder()
        .limit_for_period(limit)
        .refresh_period(refresh)
        .timeout_duration(Duration::ZERO)
        .burst_size(burst)
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
        .option_layer(setup.attempt_timeout.map(tower::timeout::TimeoutLayer::new))
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

/// `iters` calls through `svc` awaited one after the other, each refused: by its response,
/// or by `poll_ready` (tower-resilience's rate limiter refuses there).
async fn await_rejections<S>(svc: &mut S, iters: u64)
where
    S: Service<u64, Response = u64, Error = BoxError>,
{
    for i in 0..iters {
        match svc.ready().await {
            Ok(ready) => {
                black_box(
                    ready
                        .call(black_box(i))
                        .await
                        .expect_err("the call is refused"),
                );
            }
            Err(refused) => {
                black_box(refused);
            }
        }
    }
}

/// The Palisade stack over a limiter whose one token is spent: every call is refused by it.
fn palisade_rate_limited() -> impl Service<u64, Response = u64, Error = BoxError> + Clone + Send {
    let limiter = RateLimiter::builder()
        .rate(1, Duration::from_secs(3_600))
        .burst(1)
        .build()
        .unwrap();
    assert!(limiter.check().is_ok(), "the one token is spent here");
    palisade_stack_parts(RetryPolicy::builder().build().unwrap(), limiter).0
}

fn fleet_down_1_thread(c: &mut Criterion) {
    let (mut palisade, breakers) =
        palisade_stack_parts(RetryPolicy::builder().build().unwrap(), unmetered_limiter());
    let open_all = || breakers.iter().for_each(|b| b.transition_to_open());
    open_all();
    incident_1_thread(
        c,
        "stack/fleet_down_1_thread",
        &mut palisade,
        &open_all,
        RejectionKind::NoHealthyEndpoints,
        || {
            tower_stack_with(TowerSetup {
                fleet_down: true,
                ..TowerSetup::default()
            })
        },
    );
}

fn rate_limited_1_thread(c: &mut Criterion) {
    incident_1_thread(
        c,
        "stack/rate_limited_1_thread",
        &mut palisade_rate_limited(),
        &|| {},
        RejectionKind::RateLimited,
        || {
            tower_stack_with(TowerSetup {
                rate_limited: true,
                ..TowerSetup::default()
            })
        },
    );
}

/// One-thread incident group `name`: every call through `palisade` (after `before_sample`,
/// outside the timing) is refused with a local rejection of `kind`, and every call through
/// the peer stack `tower` builds is refused too (awaited on a current-thread runtime).
fn incident_1_thread<P, T>(
    c: &mut Criterion,
    name: &str,
    palisade: &mut P,
    before_sample: &dyn Fn(),
    kind: RejectionKind,
    tower: impl Fn() -> T,
) where
    P: Service<u64, Response = u64, Error = BoxError>,
    T: Service<u64, Response = u64, Error = BoxError>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let mut group = c.benchmark_group(name);
    match call_now(palisade, 0) {
        Some(Err(err)) => assert_eq!(
            rejection(&*err).map(|r| r.kind()),
            Some(kind),
            "the Palisade stack refuses with {kind:?}: {err}"
        ),
        _ => panic!("the Palisade stack refuses synchronously"),
    }
    group.bench_function("palisade", |b| {
        b.iter_custom(|iters| {
            before_sample();
            let start = std::time::Instant::now();
            for i in 0..iters {
                black_box(call_now(palisade, black_box(i)));
            }
            start.elapsed()
        });
    });

    let mut tower = tower();
    // The first call spends what the peer still admits (the rate-limited stack's one token).
    runtime.block_on(async {
        if let Ok(ready) = tower.ready().await {
            let _ = ready.call(0).await;
        }
    });
    runtime.block_on(await_rejections(&mut tower, 10));
    group.bench_function("tower_resilience", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = std::time::Instant::now();
                await_rejections(&mut tower, iters).await;
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
    success_n_threads,
    fleet_down_1_thread,
    rate_limited_1_thread
);
criterion_main!(benches);
