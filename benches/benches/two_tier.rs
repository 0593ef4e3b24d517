//! two_tier benchmarks (issue 13): the per-call cost of the two-tier Redis limiter (tokens
//! leased in batches into a local pool) beside the local `palisade-rate-limit` limiter and the
//! plain Redis limiter (one script round trip per call), and the Redis round trips each makes
//! per 1 000 calls.
//!
//! Needs a Redis: `source .ci/services.sh` exports `PALISADE_REDIS_URL`. Without it the bench
//! prints why and times only the local cases, so `benches/report.sh` never fails for want of
//! a server.
//!
//! Cases (group `two_tier/per_call_1_thread`, one current-thread runtime, each call awaited):
//! `local_check` (`RateLimiter::check`), `local_keyed_check` (`KeyedRateLimiter`, one key),
//! `palisade_two_tier` (`LeasedRateLimiter::acquire`, the reference of the group's ratios in
//! `benches/RESULTS.md`), `two_tier_local_hit` (the same with `max_batch` 2^24 - 1, so the
//! round trips vanish: the local pool's own cost), `keyed_two_tier`
//! (`KeyedLeasedRateLimiter::acquire`, 100 keys round-robin) and `redis_acquire`
//! (`RedisRateLimiter::acquire`). The global quota is one token per microsecond with a burst
//! of 10^9, so no case is refused: the leased cases pay a round trip per batch of
//! `max_batch` (16) calls, which is part of their per-call cost.
//!
//! Group `two_tier/refused_1_thread`: every call refused, on a bucket with one token an hour
//! that the case drains first: `palisade_two_tier` (the leased pool remembers Redis's refusal
//! until the time it named, so a refused call takes no round trip), `local_check` (the local
//! limiter's refusal) and `redis_acquire` (the plain Redis limiter, one round trip per refusal).
//!
//! Round trips per 1 000 calls are counted by the limiters' own snapshots
//! (`RedisRateLimiter::snapshot().round_trips`) over a fresh limiter and printed to stderr.

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]
#![allow(
    clippy::disallowed_types,
    reason = "criterion's iter_custom measures wall time, which is what a round trip costs"
)]

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_rate_limit::{KeyedRateLimiter, RateLimiter};
use palisade_rate_limit_redis::RedisRateLimiter;
use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

/// A rate no bench loop can exhaust.
const HUGE: u32 = u32::MAX;
const KEYS: u64 = 100;
const MAX_BATCH: u32 = 16;

fn redis_url() -> Option<String> {
    match std::env::var("PALISADE_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "two_tier: PALISADE_REDIS_URL is not set (run `source .ci/services.sh` to start \
                 Redis): timing the local cases only"
            );
            None
        }
    }
}

/// The fleet-wide limiter of a case: one token per microsecond, a burst no run exhausts.
/// Each build gets its own name, so no case starts on a bucket another one drained.
fn global(url: &str, case: &str) -> RedisRateLimiter {
    limiter(url, case, 1_000_000, Duration::from_secs(1), 1_000_000_000)
}

/// A Redis limiter of `count` tokens per `per` with `burst`, under a name of its own.
fn limiter(url: &str, case: &str, count: u32, per: Duration, burst: u32) -> RedisRateLimiter {
    RedisRateLimiter::builder()
        .url(url)
        .name(format!(
            "bench-{case}-{:x}",
            palisade_core::rng::random_seed()
        ))
        .rate(count, per)
        .burst(burst)
        .call_timeout(Duration::from_secs(1))
        .build()
        .unwrap()
}

/// The wall time of `iters` calls of `call`, each awaited before the next, on `rt`.
fn awaited(rt: &tokio::runtime::Runtime, iters: u64, call: impl AsyncFn(u64)) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..iters {
            call(i).await;
        }
        start.elapsed()
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn per_call(c: &mut Criterion) {
    let rt = runtime();
    let url = redis_url();
    let mut group = c.benchmark_group("two_tier/per_call_1_thread");

    let local = RateLimiter::builder()
        .rate(HUGE, Duration::from_secs(1))
        .burst(1_000_000_000)
        .build()
        .unwrap();
    group.bench_function("local_check", |b| {
        b.iter(|| black_box(local.check()));
    });
    let keyed = KeyedRateLimiter::<u64>::builder()
        .rate(HUGE, Duration::from_secs(1))
        .burst(1_000_000_000)
        .build()
        .unwrap();
    group.bench_function("local_keyed_check", |b| {
        b.iter(|| black_box(keyed.check(&7)));
    });

    let Some(url) = url else {
        group.finish();
        return;
    };
    let leased = global(&url, "leased")
        .leased("all")
        .max_batch(MAX_BATCH)
        .build()
        .unwrap();
    group.bench_function("palisade_two_tier", |b| {
        b.iter_custom(|iters| {
            awaited(&rt, iters, async |_| {
                leased.acquire(1).await.unwrap();
            })
        });
    });
    // The floor of the two-tier path: batches so large that the round trips vanish from the
    // per-call cost (a lease holds at most 2^24 - 1 tokens).
    let big = global(&url, "leased-big")
        .leased("all")
        .max_batch((1 << 24) - 1)
        .build()
        .unwrap();
    group.bench_function("two_tier_local_hit", |b| {
        b.iter_custom(|iters| {
            awaited(&rt, iters, async |_| {
                big.acquire(1).await.unwrap();
            })
        });
    });
    let keyed_leased = global(&url, "keyed")
        .keyed_leased::<u64>()
        .max_batch(MAX_BATCH)
        .build()
        .unwrap();
    group.bench_function("keyed_two_tier", |b| {
        b.iter_custom(|iters| {
            awaited(&rt, iters, async |i| {
                keyed_leased.acquire(&(i % KEYS), 1).await.unwrap();
            })
        });
    });
    let redis = global(&url, "redis");
    group.bench_function("redis_acquire", |b| {
        b.iter_custom(|iters| {
            awaited(&rt, iters, async |_| {
                redis.acquire("all", 1).await.unwrap();
            })
        });
    });
    group.finish();

    refused(c, &rt, &url);
    round_trips_per_1000(&rt, &url);
}

/// A drained bucket: one token an hour, taken before the case starts.
fn drained(rt: &tokio::runtime::Runtime, url: &str, case: &str) -> RedisRateLimiter {
    let limiter = limiter(url, case, 1, Duration::from_secs(3_600), 1);
    rt.block_on(limiter.acquire("all", 1)).unwrap();
    limiter
}

fn refused(c: &mut Criterion, rt: &tokio::runtime::Runtime, url: &str) {
    let mut group = c.benchmark_group("two_tier/refused_1_thread");
    let local = RateLimiter::builder()
        .rate(1, Duration::from_secs(3_600))
        .burst(1)
        .build()
        .unwrap();
    local.check().unwrap();
    group.bench_function("local_check", |b| {
        b.iter(|| black_box(local.check().is_err()));
    });
    let leased = drained(rt, url, "refused-leased")
        .leased("all")
        .max_batch(1)
        .build()
        .unwrap();
    group.bench_function("palisade_two_tier", |b| {
        b.iter_custom(|iters| {
            awaited(rt, iters, async |_| {
                black_box(leased.acquire(1).await.unwrap_err());
            })
        });
    });
    let redis = drained(rt, url, "refused-redis");
    group.bench_function("redis_acquire", |b| {
        b.iter_custom(|iters| {
            awaited(rt, iters, async |_| {
                black_box(redis.acquire("all", 1).await.unwrap_err());
            })
        });
    });
    group.finish();
}

/// Counts the Redis round trips of 1 000 calls on fresh limiters (a tight loop: the leases'
/// batches grow to `max_batch` at once) and prints them.
fn round_trips_per_1000(rt: &tokio::runtime::Runtime, url: &str) {
    rt.block_on(async {
        let g = global(url, "count-leased");
        let leased = g.leased("all").max_batch(MAX_BATCH).build().unwrap();
        for _ in 0..1_000 {
            leased.acquire(1).await.unwrap();
        }
        let leased_trips = g.snapshot().round_trips;

        let g = global(url, "count-keyed1");
        let keyed = g.keyed_leased::<u64>().max_batch(MAX_BATCH).build().unwrap();
        for _ in 0..1_000 {
            keyed.acquire(&0, 1).await.unwrap();
        }
        let keyed_one = g.snapshot().round_trips;

        let g = global(url, "count-keyed10");
        let keyed = g.keyed_leased::<u64>().max_batch(MAX_BATCH).build().unwrap();
        for i in 0..1_000 {
            keyed.acquire(&(i % 10), 1).await.unwrap();
        }
        let keyed_ten = g.snapshot().round_trips;

        let g = global(url, "count-redis");
        for _ in 0..1_000 {
            g.acquire("all", 1).await.unwrap();
        }
        let redis_trips = g.snapshot().round_trips;

        let _ = writeln!(
            std::io::stderr(),
            "two_tier: Redis round trips per 1 000 calls (max_batch {MAX_BATCH}): leased {leased_trips}, \
             keyed leased 1 key {keyed_one}, keyed leased 10 keys {keyed_ten}, plain Redis {redis_trips}"
        );
    });
}

criterion_group!(benches, per_call);
criterion_main!(benches);
