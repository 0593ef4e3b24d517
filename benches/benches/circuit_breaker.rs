//! circuit_breaker benchmarks: Palisade beside `failsafe`, `tower-resilience` and the bare
//! inner service, in one run.
//!
//! Cases: the success path on one thread (count window; the default time window; time window
//! with slow-call detection), the rejected (open) path, and two threads (or the counts in
//! `PALISADE_BENCH_THREADS`) sharing one breaker, closed and open. Every breaker is
//! built outside the timed loop. `failsafe` has no tower service, so its cases time its
//! closure API (`CircuitBreaker::call`); Palisade's permit API (`try_acquire`) is timed beside
//! it for the like-for-like comparison.

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

use criterion::{Criterion, criterion_group, criterion_main};
use failsafe::CircuitBreaker as _;
use palisade_benches::{Bare, Failing, call_now, contended, contention_threads};
use palisade_circuit_breaker::CircuitBreaker;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tower::{Layer, Service};
use tower_resilience::circuitbreaker::{CircuitBreakerLayer as TrLayer, SlidingWindowType};

const HOUR: Duration = Duration::from_secs(3600);

/// `call_now`, but polls until ready: tower-resilience's breaker sits behind an async mutex
/// that a second thread may hold, and its future must then be polled again.
fn call_spin<S: Service<u64>>(svc: &mut S, request: u64) -> Result<S::Response, S::Error> {
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        match svc.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => break,
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => std::hint::spin_loop(),
        }
    }
    let mut future = pin!(svc.call(request));
    loop {
        if let Poll::Ready(result) = future.as_mut().poll(&mut cx) {
            return result;
        }
        std::hint::spin_loop();
    }
}

fn palisade_count() -> CircuitBreaker {
    CircuitBreaker::builder().count_window(100).build().unwrap()
}

fn palisade_time_slow() -> CircuitBreaker {
    CircuitBreaker::builder()
        .time_window(Duration::from_secs(10))
        .slow_call_duration(Duration::from_secs(1))
        .slow_call_rate_threshold(80.0)
        .build()
        .unwrap()
}

fn tower_resilience_count() -> TrLayer {
    TrLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_type(SlidingWindowType::CountBased)
        .sliding_window_size(100)
        .build()
        .unwrap()
}

fn tower_resilience_time_slow() -> TrLayer {
    TrLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_type(SlidingWindowType::TimeBased)
        .sliding_window_duration(Duration::from_secs(10))
        .slow_call_duration_threshold(Duration::from_secs(1))
        .slow_call_rate_threshold(0.8)
        .build()
        .unwrap()
}

fn failsafe_default() -> impl failsafe::CircuitBreaker + Clone + Send + Sync {
    failsafe::Config::new().build()
}

fn success_1_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("circuit_breaker/success_1_thread");
    let mut bare = Bare;
    group.bench_function("bare", |b| {
        b.iter(|| black_box(call_now(&mut bare, black_box(1u64))));
    });
    let breaker = palisade_count();
    let mut palisade = breaker.layer().layer(Bare);
    group.bench_function("palisade", |b| {
        b.iter(|| black_box(call_now(&mut palisade, black_box(1u64))));
    });
    group.bench_function("palisade_try_acquire", |b| {
        b.iter(|| {
            let permit = breaker.try_acquire().unwrap();
            permit.record_result(&black_box(Ok::<u64, ()>(1)));
        });
    });
    // The defaults (a 10 s time window, as the stack's endpoints use them): a clock read per
    // call to find the bucket.
    let mut palisade_default = CircuitBreaker::new().layer().layer(Bare);
    group.bench_function("palisade_default_time_window", |b| {
        b.iter(|| black_box(call_now(&mut palisade_default, black_box(1u64))));
    });
    let failsafe = failsafe_default();
    group.bench_function("failsafe", |b| {
        b.iter(|| black_box(failsafe.call(|| Ok::<u64, ()>(black_box(1)))));
    });
    let mut tr = tower_resilience_count().layer(Bare);
    group.bench_function("tower_resilience", |b| {
        b.iter(|| black_box(call_now(&mut tr, black_box(1u64))));
    });
    group.finish();
}

fn success_time_slow_1_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("circuit_breaker/success_time_window_slow_calls_1_thread");
    let mut bare = Bare;
    group.bench_function("bare", |b| {
        b.iter(|| black_box(call_now(&mut bare, black_box(1u64))));
    });
    let breaker = palisade_time_slow();
    let mut palisade = breaker.layer().layer(Bare);
    group.bench_function("palisade", |b| {
        b.iter(|| black_box(call_now(&mut palisade, black_box(1u64))));
    });
    group.bench_function("palisade_try_acquire", |b| {
        b.iter(|| {
            let permit = breaker.try_acquire().unwrap();
            permit.record_result(&black_box(Ok::<u64, ()>(1)));
        });
    });
    // failsafe's default policy is a success rate over a time window (no slow calls).
    let failsafe = failsafe_default();
    group.bench_function("failsafe", |b| {
        b.iter(|| black_box(failsafe.call(|| Ok::<u64, ()>(black_box(1)))));
    });
    let mut tr = tower_resilience_time_slow().layer(Bare);
    group.bench_function("tower_resilience", |b| {
        b.iter(|| black_box(call_now(&mut tr, black_box(1u64))));
    });
    group.finish();
}

fn rejected_open(c: &mut Criterion) {
    let mut group = c.benchmark_group("circuit_breaker/rejected_open");
    let mut bare = Failing;
    group.bench_function("bare_failing", |b| {
        b.iter(|| black_box(call_now(&mut bare, black_box(1u64))));
    });
    let breaker = CircuitBreaker::builder()
        .wait_duration_in_open(HOUR)
        .build()
        .unwrap();
    breaker.transition_to_open();
    let mut palisade = breaker.layer().layer(Bare);
    group.bench_function("palisade", |b| {
        b.iter(|| black_box(call_now(&mut palisade, black_box(1u64))));
    });
    group.bench_function("palisade_try_acquire", |b| {
        b.iter(|| black_box(breaker.try_acquire().is_err()));
    });
    let forced = CircuitBreaker::new();
    forced.force_open();
    let mut palisade_forced = forced.layer().layer(Bare);
    group.bench_function("palisade_forced_open", |b| {
        b.iter(|| black_box(call_now(&mut palisade_forced, black_box(1u64))));
    });
    let failsafe = failsafe::Config::new()
        .failure_policy(failsafe::failure_policy::consecutive_failures(
            1,
            failsafe::backoff::constant(HOUR),
        ))
        .build();
    let _ = failsafe.call(|| Err::<(), ()>(()));
    assert!(!failsafe.is_call_permitted());
    group.bench_function("failsafe", |b| {
        b.iter(|| black_box(failsafe.call(|| Ok::<u64, ()>(black_box(1))).is_err()));
    });
    let mut tr = TrLayer::builder()
        .failure_rate_threshold(0.5)
        .minimum_number_of_calls(1)
        .sliding_window_size(1)
        .wait_duration_in_open(HOUR)
        .build()
        .unwrap()
        .layer(Failing);
    let _ = call_spin(&mut tr, 0);
    assert!(tr.is_open());
    group.bench_function("tower_resilience", |b| {
        b.iter(|| black_box(call_now(&mut tr, black_box(1u64))));
    });
    group.finish();
}

fn success_2_threads(c: &mut Criterion) {
    for threads in contention_threads() {
        let mut group = c.benchmark_group(format!("circuit_breaker/success_{threads}_threads"));
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
        let palisade = palisade_count().layer().layer(Bare);
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
        let palisade_time = palisade_time_slow().layer().layer(Bare);
        group.bench_function("palisade_time_window_slow_calls", |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, |_, iters| {
                    let mut svc = palisade_time.clone();
                    for i in 0..iters {
                        black_box(call_now(&mut svc, black_box(i)));
                    }
                })
            });
        });
        let failsafe = failsafe_default();
        group.bench_function("failsafe", |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, |_, iters| {
                    let cb = failsafe.clone();
                    for i in 0..iters {
                        let _ = black_box(cb.call(|| Ok::<u64, ()>(black_box(i))));
                    }
                })
            });
        });
        let tr = tower_resilience_count().layer(Bare);
        group.bench_function("tower_resilience", |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, |_, iters| {
                    let mut svc = tr.clone();
                    for i in 0..iters {
                        black_box(call_spin(&mut svc, black_box(i)).is_ok());
                    }
                })
            });
        });
        group.finish();
    }
}

/// `threads` threads rejected by one open breaker (each through its own clone of one service),
/// beside failsafe's open breaker shared by clones.
fn rejected_open_n_threads(c: &mut Criterion) {
    for threads in contention_threads() {
        let mut group =
            c.benchmark_group(format!("circuit_breaker/rejected_open_{threads}_threads"));
        let breaker = CircuitBreaker::builder()
            .wait_duration_in_open(HOUR)
            .build()
            .unwrap();
        breaker.transition_to_open();
        let palisade = breaker.layer().layer(Bare);
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
        group.bench_function("palisade_try_acquire", |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, |_, iters| {
                    for _ in 0..iters {
                        black_box(breaker.try_acquire().is_err());
                    }
                })
            });
        });
        let failsafe = failsafe::Config::new()
            .failure_policy(failsafe::failure_policy::consecutive_failures(
                1,
                failsafe::backoff::constant(HOUR),
            ))
            .build();
        let _ = failsafe.call(|| Err::<(), ()>(()));
        assert!(!failsafe.is_call_permitted());
        group.bench_function("failsafe", |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, |_, iters| {
                    let cb = failsafe.clone();
                    for i in 0..iters {
                        black_box(cb.call(|| Ok::<u64, ()>(black_box(i))).is_err());
                    }
                })
            });
        });
        group.finish();
    }
}

criterion_group!(
    benches,
    success_1_thread,
    success_time_slow_1_thread,
    rejected_open,
    success_2_threads,
    rejected_open_n_threads
);
criterion_main!(benches);
