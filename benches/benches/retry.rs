//! retry benchmarks: Palisade beside tower's `Retry` (with and without `TpsBudget`),
//! tower-resilience's retry (with and without its token-bucket budget), and the bare service.
//!
//! - `retry/success_1_thread`: `poll_ready` + `call` + completion of a request whose first
//!   attempt succeeds (`u64` requests, so the request copy costs nothing).
//! - `retry/budget_exhausted_1_thread`: the first attempt fails and the empty budget refuses
//!   the retry (the rejected path).
//! - `retry/budget_1_thread`, `retry/budget_2_threads`: one deposit and one withdrawal attempt
//!   per iteration on one shared budget.
//! - `retry/success_2_threads`, `retry/budget_exhausted_2_threads`: both paths through clones
//!   of one service sharing one budget (or the counts in `PALISADE_BENCH_THREADS`).

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_benches::{Bare, BenchError, Failing, call_now, contended, contention_threads};
use palisade_retry::{RetryBudget, RetryPolicy};
use std::convert::Infallible;
use std::future;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;
use tower::Layer;
use tower::retry::Policy;
use tower::retry::budget::{Budget, TpsBudget};
use tower_resilience::retry::{RetryBudgetBuilder, RetryLayer as TrRetryLayer};

/// tower's documented budgeted policy: deposit on success, withdraw before a retry.
#[derive(Clone, Debug)]
struct TowerBudgeted {
    budget: Arc<TpsBudget>,
}

impl<E> Policy<u64, u64, E> for TowerBudgeted {
    type Future = future::Ready<()>;

    fn retry(&mut self, _: &mut u64, result: &mut Result<u64, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => {
                self.budget.deposit();
                None
            }
            Err(_) => self.budget.withdraw().then(|| future::ready(())),
        }
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

/// tower's retry with no budget: up to three attempts.
#[derive(Clone, Debug)]
struct TowerAttempts(u32);

impl<E> Policy<u64, u64, E> for TowerAttempts {
    type Future = future::Ready<()>;

    fn retry(&mut self, _: &mut u64, result: &mut Result<u64, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => None,
            Err(_) if self.0 > 1 => {
                self.0 -= 1;
                Some(future::ready(()))
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

fn tps_budget() -> Arc<TpsBudget> {
    Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2))
}

fn success_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("retry/success_1_thread");

    let mut bare = Bare;
    group.bench_function("bare", |b| {
        b.iter(|| black_box(call_now(&mut bare, black_box(1u64))));
    });

    let policy = RetryPolicy::builder().build().unwrap();
    let mut svc = policy.layer().layer(Bare);
    group.bench_function("palisade (default budget)", |b| {
        b.iter(|| black_box(call_now(&mut svc, black_box(1u64))));
    });

    let policy = RetryPolicy::builder().unlimited().build().unwrap();
    let mut svc = policy.layer().layer(Bare);
    group.bench_function("palisade (no budget)", |b| {
        b.iter(|| black_box(call_now(&mut svc, black_box(1u64))));
    });

    let mut svc = tower::retry::Retry::new(
        TowerBudgeted {
            budget: tps_budget(),
        },
        Bare,
    );
    group.bench_function("tower Retry + TpsBudget", |b| {
        b.iter(|| black_box(call_now(&mut svc, black_box(1u64))));
    });

    let mut svc = tower::retry::Retry::new(TowerAttempts(3), Bare);
    group.bench_function("tower Retry (no budget)", |b| {
        b.iter(|| black_box(call_now(&mut svc, black_box(1u64))));
    });

    let mut svc = TrRetryLayer::<u64, u64, Infallible>::builder()
        .max_attempts(3)
        .exponential_backoff(Duration::from_millis(50))
        .build()
        .layer(Bare);
    group.bench_function("tower-resilience retry", |b| {
        b.iter(|| black_box(call_now(&mut svc, black_box(1u64))));
    });

    let budget = RetryBudgetBuilder::new().token_bucket().build().unwrap();
    let mut svc = TrRetryLayer::<u64, u64, Infallible>::builder()
        .max_attempts(3)
        .exponential_backoff(Duration::from_millis(50))
        .budget(budget)
        .build()
        .layer(Bare);
    group.bench_function("tower-resilience retry + token bucket", |b| {
        b.iter(|| black_box(call_now(&mut svc, black_box(1u64))));
    });

    group.finish();
}

/// A failed first attempt whose retry the (empty) budget refuses: the error comes back at once.
fn budget_exhausted_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("retry/budget_exhausted_1_thread");

    let mut failing = Failing;
    group.bench_function("bare (failing)", |b| {
        b.iter(|| black_box(call_now(&mut failing, black_box(1u64))));
    });

    let empty = RetryBudget::builder()
        .min_retries_per_sec(0)
        .percent_can_retry(0.0)
        .build()
        .unwrap();
    let policy = RetryPolicy::builder().budget(empty).build().unwrap();
    let mut svc = policy.layer().layer(Failing);
    group.bench_function("palisade", |b| {
        b.iter(|| black_box(call_now(&mut svc, black_box(1u64))));
    });

    let mut svc = tower::retry::Retry::new(
        TowerBudgeted {
            budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 0, 0.0)),
        },
        Failing,
    );
    group.bench_function("tower Retry + TpsBudget", |b| {
        b.iter(|| black_box(call_now(&mut svc, black_box(1u64))));
    });

    let budget = RetryBudgetBuilder::new()
        .token_bucket()
        .initial_tokens(0)
        .tokens_per_second(0.001)
        .build()
        .unwrap();
    let mut svc = TrRetryLayer::<u64, u64, BenchError>::builder()
        .max_attempts(3)
        .exponential_backoff(Duration::from_millis(50))
        .budget(budget)
        .build()
        .layer(Failing);
    group.bench_function("tower-resilience retry + token bucket", |b| {
        b.iter(|| black_box(call_now(&mut svc, black_box(1u64))));
    });

    group.finish();
}

fn budget_ops(c: &mut Criterion) {
    for threads in std::iter::once(1).chain(contention_threads()) {
        let unit = if threads == 1 { "thread" } else { "threads" };
        let mut group = c.benchmark_group(format!("retry/budget_{threads}_{unit}"));

        let budget = RetryBudget::default();
        group.bench_function("palisade RetryBudget", |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, |_, iters| {
                    for _ in 0..iters {
                        budget.deposit();
                        black_box(budget.try_withdraw());
                    }
                })
            });
        });

        let budget = tps_budget();
        group.bench_function("tower TpsBudget", |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, |_, iters| {
                    for _ in 0..iters {
                        budget.deposit();
                        black_box(budget.withdraw());
                    }
                })
            });
        });

        let budget = RetryBudgetBuilder::new().token_bucket().build().unwrap();
        group.bench_function("tower-resilience token bucket", |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, |_, iters| {
                    for _ in 0..iters {
                        budget.deposit();
                        black_box(budget.try_withdraw());
                    }
                })
            });
        });

        group.finish();
    }
}

/// `threads` threads, each with its own clone of one retry service, sharing one budget: the
/// success path (a deposit per call) and the exhausted path (a refused withdrawal per call),
/// beside tower's `Retry` sharing one `TpsBudget`.
fn shared_paths(c: &mut Criterion) {
    for threads in contention_threads() {
        let mut group = c.benchmark_group(format!("retry/success_{threads}_threads"));
        let palisade = RetryPolicy::builder().build().unwrap().layer().layer(Bare);
        group.bench_function("palisade (default budget)", |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, |_, iters| {
                    let mut svc = palisade.clone();
                    for i in 0..iters {
                        black_box(call_now(&mut svc, black_box(i)));
                    }
                })
            });
        });
        let budget = tps_budget();
        group.bench_function("tower Retry + TpsBudget", |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, |_, iters| {
                    let mut svc = tower::retry::Retry::new(
                        TowerBudgeted {
                            budget: budget.clone(),
                        },
                        Bare,
                    );
                    for i in 0..iters {
                        black_box(call_now(&mut svc, black_box(i)));
                    }
                })
            });
        });
        group.finish();

        let mut group = c.benchmark_group(format!("retry/budget_exhausted_{threads}_threads"));
        let empty = RetryBudget::builder()
            .min_retries_per_sec(0)
            .percent_can_retry(0.0)
            .build()
            .unwrap();
        let palisade = RetryPolicy::builder()
            .budget(empty)
            .build()
            .unwrap()
            .layer()
            .layer(Failing);
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
        let budget = Arc::new(TpsBudget::new(Duration::from_secs(10), 0, 0.0));
        group.bench_function("tower Retry + TpsBudget", |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, |_, iters| {
                    let mut svc = tower::retry::Retry::new(
                        TowerBudgeted {
                            budget: budget.clone(),
                        },
                        Failing,
                    );
                    for i in 0..iters {
                        black_box(call_now(&mut svc, black_box(i)));
                    }
                })
            });
        });
        group.finish();
    }
}

criterion_group!(
    benches,
    success_path,
    budget_exhausted_path,
    budget_ops,
    shared_paths
);
criterion_main!(benches);
