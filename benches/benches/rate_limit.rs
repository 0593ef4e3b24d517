//! rate_limit benchmarks: Palisade beside governor, tower's `RateLimit`, tower-resilience's
//! rate limiter and the bare inner service.
//!
//! Groups: the admit path on one thread (direct handle and tower service), the reject path,
//! two threads (or the counts in `PALISADE_BENCH_THREADS`) on one shared limiter admitted and
//! refused, and keyed limiting over 10 000 hot keys (one and two
//! threads), both with keys that refill between visits (swept out and admitted anew) and with
//! keys that stay held (a lookup of a present key). Palisade runs with its default TSC clock and, marked `coarse`, with
//! `Clock::coarse()` (~1 ms stale: see the crate docs for that trade-off).
//!
//! tower's `RateLimit` cannot be shared (not `Clone`, state per instance), so its two-thread
//! case gives each thread its own limiter: it is a lower bound, not the same work.

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

use criterion::{Criterion, criterion_group, criterion_main};
use governor::Quota as GQuota;
use palisade_benches::{Bare, call_now, contended, contention_threads};
use palisade_core::clock::Clock;
use palisade_rate_limit::{KeyedRateLimiter, RateLimiter};
use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;
use tower::Layer;

/// A rate no bench loop can exhaust: about 4.3 billion per second.
const HUGE: u32 = u32::MAX;
const KEYS: u64 = 10_000;

fn palisade(clock: Clock) -> RateLimiter {
    RateLimiter::builder()
        .rate(HUGE, Duration::from_secs(1))
        .burst(1_000_000_000)
        .clock(clock)
        .build()
        .unwrap()
}

fn palisade_exhausted() -> RateLimiter {
    let limiter = RateLimiter::builder()
        .rate(1, Duration::from_secs(3600))
        .build()
        .unwrap();
    let _ = limiter.check();
    limiter
}

fn governor_direct() -> governor::DefaultDirectRateLimiter {
    governor::RateLimiter::direct(
        GQuota::per_second(NonZeroU32::MAX).allow_burst(NonZeroU32::new(1_000_000_000).unwrap()),
    )
}

fn tower_resilience(limit: usize, burst: usize) -> tower_resilience::ratelimiter::RateLimiterLayer {
    tower_resilience::ratelimiter::RateLimiterLayer::builder()
        .limit_for_period(limit)
        .refresh_period(Duration::from_secs(1))
        .timeout_duration(Duration::ZERO)
        .burst_size(burst)
        .build()
        .unwrap()
}

fn admit_1_thread(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let mut group = c.benchmark_group("rate_limit/admit_1_thread");

    let limiter = palisade(Clock::default());
    group.bench_function("palisade_check", |b| {
        b.iter(|| black_box(limiter.check()));
    });
    let coarse = palisade(Clock::coarse());
    group.bench_function("palisade_check_coarse", |b| {
        b.iter(|| black_box(coarse.check()));
    });
    let governor = governor_direct();
    group.bench_function("governor_check", |b| {
        b.iter(|| black_box(governor.check()));
    });
    // The answer as a caller uses it (`if limiter.check().is_ok()`), as the breaker's and the
    // bulkhead's direct-handle cases take theirs: `black_box` of the whole `Result` also
    // times its volatile copy, byte by byte for Palisade's, which no caller pays.
    group.bench_function("palisade_check_is_ok", |b| {
        b.iter(|| black_box(limiter.check().is_ok()));
    });
    group.bench_function("governor_check_is_ok", |b| {
        b.iter(|| black_box(governor.check().is_ok()));
    });

    let mut svc = limiter.layer().layer(Bare);
    group.bench_function("palisade_service", |b| {
        b.iter(|| black_box(call_now(&mut svc, black_box(1u64))));
    });
    let mut svc = coarse.layer().layer(Bare);
    group.bench_function("palisade_service_coarse", |b| {
        b.iter(|| black_box(call_now(&mut svc, black_box(1u64))));
    });
    let mut tower_rl = tower::limit::RateLimit::new(
        Bare,
        tower::limit::rate::Rate::new(u64::MAX, Duration::from_secs(1)),
    );
    group.bench_function("tower_rate_limit_service", |b| {
        b.iter(|| black_box(call_now(&mut tower_rl, black_box(1u64))));
    });
    let mut resilience = tower_resilience(usize::MAX / 2, usize::MAX / 2).layer(Bare);
    group.bench_function("tower_resilience_service", |b| {
        b.iter(|| black_box(call_now(&mut resilience, black_box(1u64))));
    });
    let mut bare = Bare;
    group.bench_function("bare", |b| {
        b.iter(|| black_box(call_now(&mut bare, black_box(1u64))));
    });
    group.finish();
}

fn reject_1_thread(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let mut group = c.benchmark_group("rate_limit/reject_1_thread");

    let limiter = palisade_exhausted();
    group.bench_function("palisade_check", |b| {
        b.iter(|| black_box(limiter.check()));
    });
    let governor = governor::RateLimiter::direct(GQuota::per_hour(NonZeroU32::MIN));
    let _ = governor.check();
    group.bench_function("governor_check", |b| {
        b.iter(|| black_box(governor.check()));
    });
    // The service rejection is a boxed error (`tower::BoxError`): one allocation.
    let mut svc = limiter.layer().layer(Bare);
    group.bench_function("palisade_service", |b| {
        b.iter(|| black_box(call_now(&mut svc, black_box(1u64))));
    });
    let mut resilience = tower_resilience(1, 1).layer(Bare);
    let _ = call_now(&mut resilience, 0u64);
    group.bench_function("tower_resilience_service", |b| {
        b.iter(|| black_box(call_now(&mut resilience, black_box(1u64))));
    });
    let mut bare = Bare;
    group.bench_function("bare", |b| {
        b.iter(|| black_box(call_now(&mut bare, black_box(1u64))));
    });
    group.finish();
}

fn admit_2_threads(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let handle = runtime.handle().clone();
    for threads in contention_threads() {
        let mut group = c.benchmark_group(format!("rate_limit/admit_{threads}_threads"));

        let limiter = palisade(Clock::default());
        group.bench_function("palisade_check", |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, |_, n| {
                    for _ in 0..n {
                        let _ = black_box(limiter.check());
                    }
                })
            });
        });
        let coarse = palisade(Clock::coarse());
        group.bench_function("palisade_check_coarse", |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, |_, n| {
                    for _ in 0..n {
                        let _ = black_box(coarse.check());
                    }
                })
            });
        });
        let governor = governor_direct();
        group.bench_function("governor_check", |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, |_, n| {
                    for _ in 0..n {
                        let _ = black_box(governor.check());
                    }
                })
            });
        });
        let layer = limiter.layer();
        group.bench_function("palisade_service", |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, |_, n| {
                    let mut svc = layer.layer(Bare);
                    for _ in 0..n {
                        let _ = black_box(call_now(&mut svc, 1u64));
                    }
                })
            });
        });
        // Not shared: each thread owns a limiter (tower's `RateLimit` cannot be cloned).
        group.bench_function("tower_rate_limit_service_unshared", |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, |_, n| {
                    let _guard = handle.enter();
                    let mut svc = tower::limit::RateLimit::new(
                        Bare,
                        tower::limit::rate::Rate::new(u64::MAX, Duration::from_secs(1)),
                    );
                    for _ in 0..n {
                        let _ = black_box(call_now(&mut svc, 1u64));
                    }
                })
            });
        });
        let resilience = {
            let _guard = handle.enter();
            tower_resilience(usize::MAX / 2, usize::MAX / 2).layer(Bare)
        };
        group.bench_function("tower_resilience_service", |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, |_, n| {
                    let _guard = handle.enter();
                    let mut svc = resilience.clone();
                    for _ in 0..n {
                        let _ = black_box(call_now(&mut svc, 1u64));
                    }
                })
            });
        });
        group.bench_function("bare", |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, |_, n| {
                    let mut bare = Bare;
                    for _ in 0..n {
                        let _ = black_box(call_now(&mut bare, 1u64));
                    }
                })
            });
        });
        group.finish();
    }
}

/// `threads` threads refused by one exhausted limiter: the reject path under contention (a
/// refusal writes nothing, so the bucket's cache line stays shared), beside governor.
fn reject_n_threads(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    for threads in contention_threads() {
        let mut group = c.benchmark_group(format!("rate_limit/reject_{threads}_threads"));
        let limiter = palisade_exhausted();
        group.bench_function("palisade_check", |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, |_, n| {
                    for _ in 0..n {
                        let _ = black_box(limiter.check());
                    }
                })
            });
        });
        let governor = governor::RateLimiter::direct(GQuota::per_hour(NonZeroU32::MIN));
        let _ = governor.check();
        group.bench_function("governor_check", |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, |_, n| {
                    for _ in 0..n {
                        let _ = black_box(governor.check());
                    }
                })
            });
        });
        let layer = limiter.layer();
        group.bench_function("palisade_service", |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, |_, n| {
                    let mut svc = layer.layer(Bare);
                    for _ in 0..n {
                        let _ = black_box(call_now(&mut svc, 1u64));
                    }
                })
            });
        });
        group.finish();
    }
}

fn keyed(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit/keyed_10k_hot_keys");
    let palisade = KeyedRateLimiter::<u64>::builder()
        .rate(HUGE, Duration::from_secs(1))
        .burst(1_000_000_000)
        .max_keys(100_000)
        .build()
        .unwrap();
    let coarse = KeyedRateLimiter::<u64>::builder()
        .rate(HUGE, Duration::from_secs(1))
        .burst(1_000_000_000)
        .max_keys(100_000)
        .clock(Clock::coarse())
        .build()
        .unwrap();
    let governor = governor::RateLimiter::keyed(
        GQuota::per_second(NonZeroU32::MAX).allow_burst(NonZeroU32::new(1_000_000_000).unwrap()),
    );
    for key in 0..KEYS {
        palisade.check(&key).unwrap();
        coarse.check(&key).unwrap();
        governor.check_key(&key).unwrap();
    }
    walk_keys(&mut group, "palisade", |k| palisade.check(k).is_ok());
    walk_keys(&mut group, "palisade_coarse", |k| coarse.check(k).is_ok());
    walk_keys(&mut group, "governor_dashmap", |k| {
        governor.check_key(k).is_ok()
    });
    group.finish();
}

/// The cases `{name}_1_thread` and `{name}_2_threads` of a keyed group: `check` on a key walk
/// that visits all [`KEYS`] keys in a scrambled order (the two threads start half a walk
/// apart).
fn walk_keys(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    check: impl Fn(&u64) -> bool + Sync,
) {
    let next = |k: u64| (k + 7_919) % KEYS;
    let mut key = 0;
    group.bench_function(format!("{name}_1_thread"), |b| {
        b.iter(|| {
            key = next(key);
            black_box(check(&key))
        });
    });
    group.bench_function(format!("{name}_2_threads"), |b| {
        b.iter_custom(|iters| {
            contended(2, iters, |t, n| {
                let mut key = t as u64 * 5_000;
                for _ in 0..n {
                    key = next(key);
                    black_box(check(&key));
                }
            })
        });
    });
}

/// `keyed` with a quota under which every key stays held: each admission adds a millisecond
/// of debt (one token per ms, a burst no bench run spends), so a key revisited 10 000 calls
/// later is still in debt. In `keyed`, a key's bucket refills within a nanosecond, so every
/// key is idle at its next visit: Palisade sweeps idle keys out (its bound on memory) and
/// admits each visit as a new key, while governor keeps every key until `retain_recent`.
/// This group times the lookup of keys that are present; that one, the churn.
fn keyed_held(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit/keyed_10k_held_keys");
    let rate = NonZeroU32::new(1_000).unwrap();
    let palisade = KeyedRateLimiter::<u64>::builder()
        .rate(rate.get(), Duration::from_secs(1))
        .burst(1_000_000_000)
        .max_keys(100_000)
        .build()
        .unwrap();
    let governor = governor::RateLimiter::keyed(
        GQuota::per_second(rate).allow_burst(NonZeroU32::new(1_000_000_000).unwrap()),
    );
    for key in 0..KEYS {
        palisade.check(&key).unwrap();
        governor.check_key(&key).unwrap();
    }
    walk_keys(&mut group, "palisade", |k| palisade.check(k).is_ok());
    walk_keys(&mut group, "governor_dashmap", |k| {
        governor.check_key(k).is_ok()
    });
    group.finish();
}

criterion_group!(
    benches,
    admit_1_thread,
    reject_1_thread,
    admit_2_threads,
    reject_n_threads,
    keyed,
    keyed_held
);
criterion_main!(benches);
