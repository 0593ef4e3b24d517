//! Against a real Redis (issue 13): `source .ci/services.sh` starts one and exports
//! `PALISADE_REDIS_URL`. Without it each test prints why and skips, except under `CI`,
//! where a missing server is a failure.
//!
//! These tests run in real time: the buckets live on the Redis server's clock, which tokio's
//! paused time cannot move. Rates and windows are chosen so that scheduling noise on a loaded
//! 2-core machine cannot change an outcome (slow rates for exact checks, bounds with stated
//! slack for the fleet properties). The restart tests start their own `redis-server` on a free
//! port, so they never disturb the shared one.

// reason: real time is what these tests measure (the buckets run on the Redis server's clock).
#![allow(clippy::disallowed_types)]

use palisade_core::rejection::RejectionKind;
use palisade_rate_limit::RateLimiter;
use palisade_rate_limit_redis::{
    CostExceedsBurst, RateLimited, RedisRateLimiter, RedisRateLimiterEvent, StoreErrorKind,
    StoreUnavailable,
};
use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
// Real time is what these tests measure (see the module docs).
use std::time::Duration;
#[allow(clippy::disallowed_types)]
use std::time::Instant as WallClock;
use tower::{Service, ServiceBuilder, ServiceExt};

fn redis_url() -> Option<String> {
    match std::env::var("PALISADE_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "PALISADE_REDIS_URL is not set under CI: .ci/run must `source .ci/services.sh`"
            );
            // Straight to the process's stderr, past the test harness' capture, so the reason
            // shows in a passing run too.
            let _ = writeln!(
                std::io::stderr(),
                "skipping: PALISADE_REDIS_URL is not set (run `source .ci/services.sh` to start Redis)"
            );
            None
        }
    }
}

/// A name no other test (or earlier run) uses, so buckets never collide.
fn unique(test: &str) -> String {
    format!("{test}-{:x}", palisade_core::rng::random_seed())
}

fn events(limiter: &RedisRateLimiter) -> Arc<Mutex<Vec<RedisRateLimiterEvent>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    limiter.subscribe(move |e: &RedisRateLimiterEvent| {
        if !matches!(e, RedisRateLimiterEvent::RoundTrip { .. }) {
            sink.lock().unwrap().push(e.clone());
        }
    });
    seen
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` of the test's own, killed on drop.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    #[allow(clippy::zombie_processes)] // reason: the child is waited for in `kill`, run by drop
    fn start(port: u16) -> PrivateRedis {
        let binary =
            std::env::var("PALISADE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(binary)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            // `DEBUG SLEEP` makes a slow Redis (Redis 7 refuses DEBUG by default).
            .args(["--enable-debug-command", "yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (PALISADE_REDIS_URL is set, so services.sh found it)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return PrivateRedis {
                    port,
                    child: Some(child),
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not listen on {port}");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn limited(err: &tower::BoxError) -> Duration {
    err.downcast_ref::<RateLimited>()
        .unwrap_or_else(|| panic!("expected RateLimited, got {err}"))
        .retry_after()
}

#[tokio::test]
async fn admits_the_burst_then_rejects_with_the_wait() {
    let Some(url) = redis_url() else { return };
    let limiter = RedisRateLimiter::builder()
        .url(url)
        .name(unique("burst"))
        .rate(1, Duration::from_secs(10))
        .burst(3)
        .build()
        .unwrap();
    for _ in 0..3 {
        limiter.acquire("k", 1).await.unwrap();
    }
    let err = limiter.acquire("k", 1).await.unwrap_err();
    let wait = limited(&err);
    assert!(
        wait > Duration::from_secs(9) && wait <= Duration::from_secs(10),
        "{wait:?}"
    );
    assert_eq!(palisade_core::retry_after(&*err), Some(wait));
    assert_eq!(
        palisade_core::rejection(&*err).map(|r| r.kind()),
        Some(RejectionKind::RateLimited)
    );
    assert_eq!(limiter.available("k").await.unwrap(), 0);
    let snap = limiter.snapshot();
    assert_eq!(
        (snap.permitted, snap.rejected, snap.store_errors),
        (3, 1, 0)
    );
    // Five commands, or six when this test was the first to use the script (NOSCRIPT + EVAL).
    assert!((5..=6).contains(&snap.round_trips), "{snap:?}");
}

#[tokio::test]
async fn weighted_costs_and_separate_keys() {
    let Some(url) = redis_url() else { return };
    let limiter = RedisRateLimiter::builder()
        .url(url)
        .name(unique("weighted"))
        .rate(1, Duration::from_secs(60))
        .burst(5)
        .build()
        .unwrap();
    limiter.acquire("a", 3).await.unwrap();
    let err = limiter.acquire("a", 3).await.unwrap_err();
    assert!(
        limited(&err) > Duration::from_secs(50),
        "one token short: a minute's wait"
    );
    limiter.acquire("a", 2).await.unwrap();
    limiter.acquire("b", 5).await.unwrap();
    let before = limiter.snapshot().round_trips;
    let err = limiter.acquire("b", 6).await.unwrap_err();
    let too_big = err
        .downcast_ref::<CostExceedsBurst>()
        .expect("cost above burst");
    assert_eq!((too_big.cost(), too_big.burst()), (6, 5));
    assert_eq!(
        limiter.snapshot().round_trips,
        before,
        "decided without a round trip"
    );
    limiter.acquire("b", 0).await.unwrap();
}

#[tokio::test]
async fn noscript_falls_back_to_eval_once() {
    let Some(url) = redis_url() else { return };
    let limiter = RedisRateLimiter::builder()
        .url(url.clone())
        .name(unique("noscript"))
        .rate(1_000, Duration::from_secs(1))
        .burst(100)
        .build()
        .unwrap();
    limiter.acquire("k", 1).await.unwrap();
    let mut conn = raw(&url).await;
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let before = limiter.snapshot().round_trips;
    limiter.acquire("k", 1).await.unwrap();
    assert_eq!(
        limiter.snapshot().round_trips,
        before + 2,
        "EVALSHA, NOSCRIPT, then EVAL"
    );
    limiter.acquire("k", 1).await.unwrap();
    assert_eq!(
        limiter.snapshot().round_trips,
        before + 3,
        "EVAL cached it again"
    );
    assert_eq!(limiter.snapshot().store_errors, 0);
}

/// Bad input: a bucket key holding another type (a script error in Redis) or a value that is
/// not a number is a clear error and an event; fail closed rejects, fail open decides locally;
/// the limiter recovers when the key is fixed.
#[tokio::test]
async fn script_errors_fail_closed_or_open_and_recover() {
    let Some(url) = redis_url() else { return };
    let name = unique("script-error");
    let closed = RedisRateLimiter::builder()
        .url(url.clone())
        .name(name.clone())
        .rate(100, Duration::from_secs(1))
        .burst(10)
        .build()
        .unwrap();
    let seen = events(&closed);
    let mut conn = raw(&url).await;
    let key = format!("palisade:rl:{name}:k");
    let () = redis::cmd("HSET")
        .arg(&key)
        .arg("f")
        .arg("v")
        .query_async(&mut conn)
        .await
        .unwrap();
    let err = closed.acquire("k", 1).await.unwrap_err();
    let unavailable = err
        .downcast_ref::<StoreUnavailable>()
        .expect("fails closed");
    assert_eq!(unavailable.kind(), StoreErrorKind::Script);
    assert!(
        unavailable.detail().contains("WRONGTYPE"),
        "{}",
        unavailable.detail()
    );
    assert!(palisade_core::is_local_rejection(&*err));

    let () = redis::cmd("SET")
        .arg(&key)
        .arg("not a number")
        .query_async(&mut conn)
        .await
        .unwrap();
    let err = closed.acquire("k", 1).await.unwrap_err();
    let unavailable = err
        .downcast_ref::<StoreUnavailable>()
        .expect("fails closed");
    assert!(
        unavailable.detail().contains("non-number"),
        "{}",
        unavailable.detail()
    );

    let open = RedisRateLimiter::builder()
        .url(url.clone())
        .name(name.clone())
        .rate(100, Duration::from_secs(1))
        .burst(10)
        .fail_open(
            RateLimiter::builder()
                .rate(1, Duration::from_secs(60))
                .burst(2)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    open.acquire("k", 1).await.unwrap();
    open.acquire("k", 1).await.unwrap();
    let err = open.acquire("k", 1).await.unwrap_err();
    assert!(
        limited(&err) > Duration::from_secs(50),
        "the fallback's wait"
    );
    assert_eq!(open.snapshot().fallbacks, 3);

    let () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    closed.acquire("k", 1).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            RedisRateLimiterEvent::StoreUnavailable {
                kind: StoreErrorKind::Script,
                detail: match &seen[0] {
                    RedisRateLimiterEvent::StoreUnavailable { detail, .. } => detail.clone(),
                    other => panic!("{other:?}"),
                },
            },
            RedisRateLimiterEvent::StoreError {
                kind: StoreErrorKind::Script,
                fell_back: false
            },
            RedisRateLimiterEvent::StoreError {
                kind: StoreErrorKind::Script,
                fell_back: false
            },
            RedisRateLimiterEvent::StoreRecovered { failed_calls: 2 },
            RedisRateLimiterEvent::Permitted {
                cost: 1,
                round_trip: true
            },
        ]
    );
}

#[tokio::test]
async fn unreachable_redis_fails_fast_and_closed() {
    if redis_url().is_none() {
        return;
    }
    let limiter = RedisRateLimiter::builder()
        .url(format!("redis://127.0.0.1:{}/", free_port()))
        .name(unique("unreachable"))
        .rate(100, Duration::from_secs(1))
        .burst(10)
        .call_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let seen = events(&limiter);
    for _ in 0..20 {
        let started = WallClock::now();
        let err = limiter.acquire("k", 1).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "a call waited {:?}",
            started.elapsed()
        );
        let unavailable = err
            .downcast_ref::<StoreUnavailable>()
            .expect("fails closed");
        assert!(
            matches!(
                unavailable.kind(),
                StoreErrorKind::Connection | StoreErrorKind::Timeout
            ),
            "{unavailable}"
        );
    }
    let unavailable = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, RedisRateLimiterEvent::StoreUnavailable { .. }))
        .count();
    assert_eq!(unavailable, 1, "one event per outage");
    assert_eq!(limiter.snapshot().store_errors, 20);
    assert!(!limiter.snapshot().available);
}

/// Property: a Redis outage in fail-open mode keeps every replica within its local limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_in_fail_open_keeps_each_replica_within_its_local_limit() {
    if redis_url().is_none() {
        return;
    }
    let dead = format!("redis://127.0.0.1:{}/", free_port());
    let (replicas, local_rate, local_burst) = (4, 50_u32, 3_u32);
    let started = WallClock::now();
    let run_for = Duration::from_millis(600);
    let mut tasks = Vec::new();
    for _ in 0..replicas {
        let local = RateLimiter::builder()
            .rate(local_rate, Duration::from_secs(1))
            .burst(local_burst)
            .build()
            .unwrap();
        let limiter = RedisRateLimiter::builder()
            .url(dead.clone())
            .name("fleet-outage")
            .rate(1_000, Duration::from_secs(1))
            .burst(100)
            .call_timeout(Duration::from_millis(20))
            .fail_open(local)
            .build()
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let mut admitted = 0_u32;
            while started.elapsed() < run_for {
                if limiter.acquire("all", 1).await.is_ok() {
                    admitted += 1;
                } else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            (admitted, limiter.snapshot())
        }));
    }
    let mut total = 0;
    for task in tasks {
        let (admitted, snap) = task.await.unwrap();
        let elapsed = started.elapsed().as_secs_f64();
        let bound = f64::from(local_burst) + f64::from(local_rate) * elapsed;
        assert!(f64::from(admitted) <= bound, "{admitted} > {bound}");
        assert!(admitted >= local_burst, "the fallback admits: {admitted}");
        assert_eq!(snap.fallbacks, snap.store_errors);
        total += admitted;
    }
    assert!(total >= replicas * local_burst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_is_reconnected_and_no_call_hangs() {
    if redis_url().is_none() {
        return;
    }
    let port = free_port();
    let mut server = PrivateRedis::start(port);
    let limiter = RedisRateLimiter::builder()
        .url(server.url())
        .name(unique("restart"))
        .rate(1_000, Duration::from_secs(1))
        .burst(100)
        .call_timeout(Duration::from_millis(100))
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(200))
        .build()
        .unwrap();
    let seen = events(&limiter);
    limiter.acquire("k", 1).await.unwrap();
    server.kill();
    for _ in 0..10 {
        let started = WallClock::now();
        let err = limiter.acquire("k", 1).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "a call waited {:?}",
            started.elapsed()
        );
        assert!(err.is::<StoreUnavailable>(), "{err}");
    }
    let _server = PrivateRedis::start(port);
    let deadline = WallClock::now() + Duration::from_secs(10);
    loop {
        let started = WallClock::now();
        let result = limiter.acquire("k", 1).await;
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "a call waited {:?}",
            started.elapsed()
        );
        if result.is_ok() {
            break;
        }
        assert!(
            WallClock::now() < deadline,
            "not reconnected within 10 s: {result:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = seen.lock().unwrap();
    let outage = seen
        .iter()
        .position(|e| matches!(e, RedisRateLimiterEvent::StoreUnavailable { .. }));
    let recovered = seen
        .iter()
        .position(|e| matches!(e, RedisRateLimiterEvent::StoreRecovered { .. }));
    assert!(outage.is_some() && recovered > outage, "{seen:?}");
}

#[tokio::test]
async fn the_service_rejects_locally_and_never_calls_the_inner_service() {
    let Some(url) = redis_url() else { return };
    let limiter = RedisRateLimiter::builder()
        .url(url)
        .name(unique("service"))
        .rate(1, Duration::from_secs(60))
        .burst(1)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let mut svc = ServiceBuilder::new()
        .layer(limiter.layer(|req: &&'static str| (*req, 1)))
        .service_fn(move |req: &'static str| {
            counter.fetch_add(1, Ordering::Relaxed);
            async move { Ok::<_, tower::BoxError>(req.len()) }
        });
    assert_eq!(
        svc.ready().await.unwrap().call("tenant-a").await.unwrap(),
        8
    );
    assert_eq!(
        svc.ready().await.unwrap().call("tenant-b").await.unwrap(),
        8
    );
    let err = svc
        .ready()
        .await
        .unwrap()
        .call("tenant-a")
        .await
        .unwrap_err();
    assert!(limited(&err) > Duration::from_secs(50));
    assert_eq!(
        calls.load(Ordering::Relaxed),
        2,
        "a rejected request never reaches the service"
    );
}

#[tokio::test]
async fn the_leased_service_spends_locally_between_leases() {
    let Some(url) = redis_url() else { return };
    let global = RedisRateLimiter::builder()
        .url(url)
        .name(unique("leased-service"))
        .rate(100_000, Duration::from_secs(1))
        .burst(1_000)
        .build()
        .unwrap();
    let leased = global.leased("all").max_batch(16).build().unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(leased.layer())
        .service_fn(|req: u32| async move { Ok::<_, tower::BoxError>(req) });
    for i in 0..1_000 {
        assert_eq!(svc.ready().await.unwrap().call(i).await.unwrap(), i);
    }
    let snap = leased.snapshot();
    let trips = global.snapshot().round_trips;
    assert_eq!(snap.local_spends + snap.leases, 1_000);
    // Tight loop: the batch doubles to 16 at once, so ~1000/16 leases (+ a NOSCRIPT retry).
    assert!(
        trips <= 1_000 / 16 + 8,
        "{trips} round trips per 1 000 calls"
    );
    eprintln!("leased: {trips} Redis round trips per 1 000 calls ({snap:?})");
}

/// Runs `replicas` tasks, each a replica with its own handles on one global bucket of `rate`/s,
/// calling as fast as the limit lets them for `run_for`. Returns the admission times and the
/// total run time.
struct Fleet {
    url: String,
    name: String,
    replicas: usize,
    rate: u32,
    burst: u32,
    max_batch: u32,
    run_for: Duration,
}

async fn run_fleet(
    fleet: Fleet,
    during: impl std::future::Future<Output = ()>,
) -> (Vec<Duration>, Duration, u64) {
    let Fleet {
        url,
        name,
        replicas,
        rate,
        burst,
        max_batch,
        run_for,
    } = fleet;
    let started = WallClock::now();
    let mut tasks = Vec::new();
    for _ in 0..replicas {
        let global = RedisRateLimiter::builder()
            .url(url.clone())
            .name(name.clone())
            .rate(rate, Duration::from_secs(1))
            .burst(burst)
            .call_timeout(Duration::from_millis(100))
            .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(100))
            .build()
            .unwrap();
        let leased = global.leased("all").max_batch(max_batch).build().unwrap();
        tasks.push(tokio::spawn(async move {
            let mut admitted = Vec::new();
            while started.elapsed() < run_for {
                match leased.acquire(1).await {
                    Ok(()) => admitted.push(started.elapsed()),
                    Err(e) => {
                        let wait =
                            palisade_core::retry_after(&*e).unwrap_or(Duration::from_millis(5));
                        tokio::time::sleep(wait.min(Duration::from_millis(5))).await;
                    }
                }
            }
            (admitted, global.snapshot().store_errors)
        }));
    }
    during.await;
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (admitted, e) = task.await.unwrap();
        all.extend(admitted);
        errors += e;
    }
    all.sort();
    (all, started.elapsed(), errors)
}

/// The largest count of admissions within any window of length `window`.
fn max_in_window(times: &[Duration], window: Duration) -> usize {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi] - times[lo] > window {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// Property (issue 13): N replicas sharing a global R/s admit at most R·T + burst +
/// outstanding leases (<= N × max_batch) in any window T. The windows are measured on this
/// process's clock while Redis decides on its own, so each window gets a slack of R × 50 ms
/// for scheduling delay between a grant and its timestamp. Also: the fleet uses the quota
/// (>= 60 %), and leases save round trips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leased_fleet_stays_within_the_bound() {
    let Some(url) = redis_url() else { return };
    let (replicas, rate, burst, max_batch) = (8_usize, 400_u32, 20_u32, 8_u32);
    let (times, elapsed, errors) = run_fleet(
        Fleet {
            url,
            name: unique("fleet"),
            replicas,
            rate,
            burst,
            max_batch,
            run_for: Duration::from_millis(1_500),
        },
        async {},
    )
    .await;
    assert_eq!(errors, 0);
    let leases = (replicas as u32 * max_batch) as f64;
    let total = times.len() as f64;
    // From a fresh bucket and no lease outstanding at the start: R·T + burst exactly.
    let whole = f64::from(rate) * elapsed.as_secs_f64() + f64::from(burst);
    eprintln!("fleet: {total} admitted in {elapsed:?} (bound R·T + burst = {whole:.0})");
    assert!(
        total <= whole,
        "{total} admitted in {elapsed:?}, bound {whole}"
    );
    assert!(
        total >= 0.6 * f64::from(rate) * elapsed.as_secs_f64(),
        "only {total} admitted in {elapsed:?}"
    );
    for window_ms in [100_u64, 250, 500] {
        let window = Duration::from_millis(window_ms);
        let most = max_in_window(&times, window) as f64;
        let bound = f64::from(rate) * (window.as_secs_f64() + 0.05) + f64::from(burst) + leases;
        eprintln!("fleet: at most {most} within {window:?} (bound {bound:.0})");
        assert!(
            most <= bound,
            "{most} admitted within {window:?}, bound {bound}"
        );
    }
}

/// The same property under a Redis restart: the restarted Redis has forgotten the bucket, so
/// the bound gains one burst; no replica hangs through the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leased_fleet_stays_within_the_bound_under_a_restart() {
    if redis_url().is_none() {
        return;
    }
    let port = free_port();
    let server = Arc::new(Mutex::new(Some(PrivateRedis::start(port))));
    let url = server.lock().unwrap().as_ref().unwrap().url();
    let (replicas, rate, burst, max_batch) = (6_usize, 300_u32, 15_u32, 8_u32);
    let restarter = {
        let server = Arc::clone(&server);
        async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            server.lock().unwrap().take().unwrap().kill();
            tokio::time::sleep(Duration::from_millis(300)).await;
            *server.lock().unwrap() = Some(PrivateRedis::start(port));
        }
    };
    let (times, elapsed, errors) = run_fleet(
        Fleet {
            url,
            name: unique("fleet-restart"),
            replicas,
            rate,
            burst,
            max_batch,
            run_for: Duration::from_millis(1_800),
        },
        restarter,
    )
    .await;
    assert!(errors > 0, "the outage was seen");
    let total = times.len() as f64;
    let whole = f64::from(rate) * elapsed.as_secs_f64() + 2.0 * f64::from(burst);
    eprintln!(
        "fleet under restart: {total} admitted in {elapsed:?}, {errors} store errors (bound {whole:.0})"
    );
    assert!(
        total <= whole,
        "{total} admitted in {elapsed:?}, bound {whole}"
    );
    // Admissions resumed after the restart (the last 400 ms).
    assert!(
        times
            .iter()
            .any(|t| *t > elapsed.saturating_sub(Duration::from_millis(400))),
        "no admission after the restart"
    );
    drop(server);
}

/// A slow Redis (busy for 1 s, `DEBUG SLEEP`): every call is decided by the failure mode
/// within the call timeout, and the limiter recovers when Redis answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_is_bounded_by_the_call_timeout() {
    if redis_url().is_none() {
        return;
    }
    let server = PrivateRedis::start(free_port());
    let local = RateLimiter::builder()
        .rate(1, Duration::from_secs(60))
        .burst(3)
        .build()
        .unwrap();
    let limiter = RedisRateLimiter::builder()
        .url(server.url())
        .name(unique("slow"))
        .rate(1_000, Duration::from_secs(1))
        .burst(100)
        .call_timeout(Duration::from_millis(50))
        .fail_open(local)
        .build()
        .unwrap();
    limiter.acquire("k", 1).await.unwrap();
    let url = server.url();
    let sleeper = tokio::spawn(async move {
        let mut conn = raw(&url).await;
        let _: redis::RedisResult<()> = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(1)
            .query_async(&mut conn)
            .await;
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut admitted = 0;
    for _ in 0..5 {
        let started = WallClock::now();
        let result = limiter.acquire("k", 1).await;
        let took = started.elapsed();
        assert!(took < Duration::from_millis(300), "a call waited {took:?}");
        admitted += u32::from(result.is_ok());
    }
    assert_eq!(admitted, 3, "fail open: the local limit's burst, no more");
    let snap = limiter.snapshot();
    assert!(snap.fallbacks >= 5, "{snap:?}");
    sleeper.await.unwrap();
    let deadline = WallClock::now() + Duration::from_secs(5);
    while limiter.acquire("k", 1).await.is_err() {
        assert!(WallClock::now() < deadline, "not recovered after the sleep");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(limiter.snapshot().available);
}

/// Leased tokens not spent within the lease's TTL are dropped, not kept for a later burst.
#[tokio::test]
async fn unspent_leases_expire() {
    let Some(url) = redis_url() else { return };
    let global = RedisRateLimiter::builder()
        .url(url)
        .name(unique("lease-ttl"))
        .rate(100_000, Duration::from_secs(1))
        .burst(1_000)
        .build()
        .unwrap();
    let leased = global
        .leased("all")
        .max_batch(64)
        .lease_ttl(Duration::from_millis(100))
        .build()
        .unwrap();
    // A burst of calls grows the batch (1, 2, 4, ...), leaving tokens in the pool.
    let mut calls = 0;
    while leased.snapshot().local_tokens == 0 || calls < 16 {
        leased.acquire(1).await.unwrap();
        calls += 1;
        assert!(calls < 1_000, "the pool never held spare tokens");
    }
    let left = leased.snapshot().local_tokens;
    assert!(left > 0);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(leased.snapshot().local_tokens, 0, "the lease expired");
    assert!(
        !leased.try_acquire_local(1),
        "an expired lease is not spent"
    );
    leased.acquire(1).await.unwrap();
    assert_eq!(
        leased.snapshot().expired_tokens,
        left,
        "dropped at the next lease"
    );
}

#[test]
fn handles_are_send_sync_clone_debug() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug + 'static>() {}
    check::<RedisRateLimiter>();
    check::<palisade_rate_limit_redis::LeasedRateLimiter>();
    check::<palisade_rate_limit_redis::LeasedRateLimiterLayer>();
    check::<RateLimited>();
    check::<StoreUnavailable>();
    check::<CostExceedsBurst>();
    fn send<T: Send + 'static>() {}
    send::<
        palisade_rate_limit_redis::future::ResponseFuture<
            tower::util::BoxCloneSyncService<u32, u32, tower::BoxError>,
            u32,
        >,
    >();
}

#[test]
fn config_errors_name_the_field() {
    let field =
        |b: palisade_rate_limit_redis::RedisRateLimiterBuilder| b.build().unwrap_err().field();
    let ok = || {
        RedisRateLimiter::builder()
            .url("redis://127.0.0.1:1/")
            .rate(10, Duration::from_secs(1))
    };
    assert_eq!(
        field(RedisRateLimiter::builder().rate(1, Duration::from_secs(1))),
        "url"
    );
    assert_eq!(field(ok().url("http://not-redis/")), "url");
    assert_eq!(
        field(RedisRateLimiter::builder().url("redis://127.0.0.1:1/")),
        "rate"
    );
    assert_eq!(field(ok().rate(0, Duration::from_secs(1))), "rate");
    assert_eq!(field(ok().rate(2_000_000, Duration::from_secs(1))), "rate");
    assert_eq!(field(ok().burst(0)), "burst");
    assert_eq!(field(ok().call_timeout(Duration::ZERO)), "call_timeout");
    assert_eq!(field(ok().name("")), "name");
    assert_eq!(
        field(ok().reconnect_backoff(Duration::from_secs(2), Duration::from_secs(1))),
        "reconnect_backoff"
    );
    let global = ok().burst(16).build().unwrap();
    assert_eq!(
        global.leased("k").max_batch(0).build().unwrap_err().field(),
        "max_batch"
    );
    assert_eq!(
        global
            .leased("k")
            .max_batch(17)
            .build()
            .unwrap_err()
            .field(),
        "max_batch"
    );
    assert_eq!(
        global
            .leased("k")
            .lease_target(Duration::ZERO)
            .build()
            .unwrap_err()
            .field(),
        "lease_target"
    );
    assert_eq!(
        global
            .leased("k")
            .lease_ttl(Duration::ZERO)
            .build()
            .unwrap_err()
            .field(),
        "lease_ttl"
    );
}

/// A blackholed Redis (connections accepted, nothing answered): after the first timeout,
/// calls skip Redis for the backoff window instead of each waiting a full call timeout.
#[tokio::test]
async fn a_blackholed_redis_costs_one_timeout_per_backoff_window() {
    if redis_url().is_none() {
        return;
    }
    // The kernel completes connections into the backlog; nobody ever reads or answers.
    let blackhole = TcpListener::bind("127.0.0.1:0").unwrap();
    let limiter = RedisRateLimiter::builder()
        .url(format!(
            "redis://127.0.0.1:{}/",
            blackhole.local_addr().unwrap().port()
        ))
        .name(unique("blackhole"))
        .rate(100, Duration::from_secs(1))
        .burst(10)
        .call_timeout(Duration::from_millis(50))
        .reconnect_backoff(Duration::from_millis(500), Duration::from_secs(2))
        .build()
        .unwrap();
    let started = WallClock::now();
    for _ in 0..20 {
        let err = limiter.acquire("k", 1).await.unwrap_err();
        let unavailable = err
            .downcast_ref::<StoreUnavailable>()
            .expect("fails closed");
        assert_eq!(unavailable.kind(), StoreErrorKind::Timeout, "{unavailable}");
    }
    let took = started.elapsed();
    // Without the window: 20 x 50 ms = 1 s. With it: one timeout, then 19 skipped calls.
    assert!(took < Duration::from_millis(400), "20 calls took {took:?}");
    let snap = limiter.snapshot();
    assert!(snap.round_trips <= 2, "{snap:?}");
    assert_eq!(snap.store_errors, 20);
    drop(blackhole);
}

/// Reads one RESP command (an array of bulk strings) from `buf`, returning its length in
/// bytes, or `None` if `buf` does not hold a whole one yet.
fn resp_command_len(buf: &[u8]) -> Option<usize> {
    fn line(buf: &[u8], at: usize) -> Option<(usize, usize)> {
        let end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
        let n = std::str::from_utf8(&buf[at + 1..end]).ok()?.parse().ok()?;
        Some((n, end + 2))
    }
    let (items, mut at) = line(buf, 0)?;
    for _ in 0..items {
        let (len, start) = line(buf, at)?;
        at = start + len + 2;
        if at > buf.len() {
            return None;
        }
    }
    Some(at)
}

/// Bad input: a server that answers every command with `+OK` (the wrong type for the script)
/// is a clear `Reply` error, fails closed, and never admits by mistake or panics.
#[tokio::test]
async fn a_server_answering_the_wrong_type_is_a_reply_error() {
    if redis_url().is_none() {
        return;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0_u8; 4096];
                while let Ok(n) = socket.read(&mut chunk).await {
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(len) = resp_command_len(&buf) {
                        buf.drain(..len);
                        if socket.write_all(b"+OK\r\n").await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    let limiter = RedisRateLimiter::builder()
        .url(format!("redis://127.0.0.1:{port}/"))
        .name(unique("wrong-type"))
        .rate(100, Duration::from_secs(1))
        .burst(10)
        .call_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let seen = events(&limiter);
    for _ in 0..3 {
        let err = limiter.acquire("k", 1).await.unwrap_err();
        let unavailable = err
            .downcast_ref::<StoreUnavailable>()
            .expect("fails closed");
        assert_eq!(unavailable.kind(), StoreErrorKind::Reply, "{unavailable}");
        assert!(
            unavailable.detail().contains("unexpected reply"),
            "{}",
            unavailable.detail()
        );
    }
    assert_eq!(limiter.snapshot().permitted, 0);
    assert!(seen.lock().unwrap().iter().any(|e| matches!(
        e,
        RedisRateLimiterEvent::StoreUnavailable {
            kind: StoreErrorKind::Reply,
            ..
        }
    )));
    server.abort();
}

// ---- Keyed two-tier mode -------------------------------------------------------------------

struct KeyedFleet {
    url: String,
    name: String,
    replicas: usize,
    rate: u32,
    burst: u32,
    max_batch: u32,
    keys: Vec<u64>,
    run_for: Duration,
}

/// Runs N replicas, each with its own keyed two-tier limiter, over the keys round-robin as
/// fast as they are admitted; returns each admission (key, time), the run's length and the
/// store errors seen.
async fn run_keyed_fleet(
    fleet: KeyedFleet,
    during: impl std::future::Future<Output = ()>,
) -> (Vec<(u64, Duration)>, Duration, u64) {
    let started = WallClock::now();
    let mut tasks = Vec::new();
    for replica in 0..fleet.replicas {
        let global = RedisRateLimiter::builder()
            .url(fleet.url.clone())
            .name(fleet.name.clone())
            .rate(fleet.rate, Duration::from_secs(1))
            .burst(fleet.burst)
            .call_timeout(Duration::from_millis(100))
            .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(100))
            .build()
            .unwrap();
        let keyed = global
            .keyed_leased::<u64>()
            .max_batch(fleet.max_batch)
            .build()
            .unwrap();
        let (keys, run_for) = (fleet.keys.clone(), fleet.run_for);
        tasks.push(tokio::spawn(async move {
            let mut admitted: Vec<(u64, Duration)> = Vec::new();
            let mut i = replica;
            while started.elapsed() < run_for {
                let key = keys[i % keys.len()];
                i += 1;
                match keyed.acquire(&key, 1).await {
                    Ok(()) => admitted.push((key, started.elapsed())),
                    Err(e) => {
                        assert!(
                            e.is::<RateLimited>() || e.is::<StoreUnavailable>(),
                            "unexpected error: {e}"
                        );
                        let wait =
                            palisade_core::retry_after(&*e).unwrap_or(Duration::from_millis(5));
                        tokio::time::sleep(wait.min(Duration::from_millis(5))).await;
                    }
                }
                // Replicas share 2 worker threads: let the others run.
                if i % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            let snap = global.snapshot();
            eprintln!(
                "replica {replica}: {} admitted, {} round trips, {:?}",
                admitted.len(),
                snap.round_trips,
                keyed.snapshot()
            );
            (admitted, snap.store_errors)
        }));
    }
    during.await;
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (admitted, e) = task.await.unwrap();
        all.extend(admitted);
        errors += e;
    }
    (all, started.elapsed(), errors)
}

/// The admission times of `key`, sorted.
fn times_of(all: &[(u64, Duration)], key: u64) -> Vec<Duration> {
    let mut times: Vec<Duration> = all
        .iter()
        .filter(|(k, _)| *k == key)
        .map(|(_, t)| *t)
        .collect();
    times.sort();
    times
}

/// Property (issue 13), per key: N replicas, each with its own keyed two-tier limiter on one
/// shared global limit of R/s per key, admit for each key at most R·T + burst + that key's
/// outstanding leases (<= N × max_batch) in any window T (slack R × 50 ms per window, as for
/// the one-key property), under a load far above the quota; each key uses its quota (>= 50 %).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_leased_fleet_stays_within_the_bound_per_key() {
    let Some(url) = redis_url() else { return };
    let (replicas, rate, burst, max_batch) = (4_usize, 200_u32, 10_u32, 8_u32);
    let keys = vec![11_u64, 22, 33];
    let (all, elapsed, errors) = run_keyed_fleet(
        KeyedFleet {
            url,
            name: unique("keyed-fleet"),
            replicas,
            rate,
            burst,
            max_batch,
            keys: keys.clone(),
            run_for: Duration::from_millis(1_200),
        },
        async {},
    )
    .await;
    assert_eq!(errors, 0);
    let leases = (replicas as u32 * max_batch) as f64;
    for key in keys {
        let times = times_of(&all, key);
        let total = times.len() as f64;
        let whole = f64::from(rate) * elapsed.as_secs_f64() + f64::from(burst);
        eprintln!("key {key}: {total} admitted in {elapsed:?} (bound R·T + burst = {whole:.0})");
        assert!(total <= whole, "key {key}: {total} admitted, bound {whole}");
        assert!(
            total >= 0.5 * f64::from(rate) * elapsed.as_secs_f64(),
            "key {key}: only {total} admitted in {elapsed:?}"
        );
        for window_ms in [100_u64, 250, 500] {
            let window = Duration::from_millis(window_ms);
            let most = max_in_window(&times, window) as f64;
            let bound = f64::from(rate) * (window.as_secs_f64() + 0.05) + f64::from(burst) + leases;
            eprintln!("key {key}: at most {most} within {window:?} (bound {bound:.0})");
            assert!(
                most <= bound,
                "key {key}: {most} admitted within {window:?}, bound {bound}"
            );
        }
    }
}

/// The per-key property under a Redis restart (a private server, killed for 300 ms and
/// started again without the buckets): each key gains one burst at most, no replica hangs,
/// and admissions resume after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_leased_fleet_stays_within_the_bound_per_key_under_a_restart() {
    if redis_url().is_none() {
        return;
    }
    let port = free_port();
    let server = Arc::new(Mutex::new(Some(PrivateRedis::start(port))));
    let url = server.lock().unwrap().as_ref().unwrap().url();
    let (replicas, rate, burst, max_batch) = (4_usize, 150_u32, 10_u32, 8_u32);
    let keys = vec![1_u64, 2];
    let restarter = {
        let server = Arc::clone(&server);
        async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            server.lock().unwrap().take().unwrap().kill();
            tokio::time::sleep(Duration::from_millis(300)).await;
            *server.lock().unwrap() = Some(PrivateRedis::start(port));
        }
    };
    let (all, elapsed, errors) = run_keyed_fleet(
        KeyedFleet {
            url,
            name: unique("keyed-restart"),
            replicas,
            rate,
            burst,
            max_batch,
            keys: keys.clone(),
            run_for: Duration::from_millis(1_800),
        },
        restarter,
    )
    .await;
    assert!(errors > 0, "the outage was seen");
    for key in keys {
        let times = times_of(&all, key);
        let total = times.len() as f64;
        let whole = f64::from(rate) * elapsed.as_secs_f64() + 2.0 * f64::from(burst);
        eprintln!("key {key} under restart: {total} admitted in {elapsed:?} (bound {whole:.0})");
        assert!(total <= whole, "key {key}: {total} admitted, bound {whole}");
        assert!(
            times
                .iter()
                .any(|t| *t > elapsed.saturating_sub(Duration::from_millis(400))),
            "key {key}: no admission after the restart"
        );
    }
    drop(server);
}

/// With Redis unreachable, a keyed two-tier limiter fails closed within the call timeout
/// (its keys' pools are empty), as the global limiter does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_leased_fails_closed_fast_without_redis() {
    if redis_url().is_none() {
        return;
    }
    let global = RedisRateLimiter::builder()
        .url(format!("redis://127.0.0.1:{}/", free_port()))
        .name(unique("keyed-unreachable"))
        .rate(100, Duration::from_secs(1))
        .burst(10)
        .call_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let keyed = global.keyed_leased::<u64>().max_batch(4).build().unwrap();
    for key in 0..5 {
        let started = WallClock::now();
        let err = keyed.acquire(&key, 1).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "a call waited {:?}",
            started.elapsed()
        );
        assert!(err.is::<StoreUnavailable>(), "fails closed: {err}");
    }
    assert_eq!(keyed.snapshot().leases, 0);
}

/// Below the quota, each key's batch grows (1, 2, 4, … up to `max_batch`) by that key's own
/// rate, so most calls of every key are spent locally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_leased_batches_adapt_per_key_and_save_round_trips() {
    let Some(url) = redis_url() else { return };
    let global = RedisRateLimiter::builder()
        .url(url)
        .name(unique("keyed-batches"))
        .rate(1_000, Duration::from_secs(1))
        .burst(1_000)
        .build()
        .unwrap();
    let keyed = global.keyed_leased::<u32>().max_batch(16).build().unwrap();
    for _ in 0..200 {
        for key in [1, 2] {
            keyed.acquire(&key, 1).await.unwrap();
        }
    }
    let snap = keyed.snapshot();
    eprintln!("keyed batches: {snap:?}, {:?}", global.snapshot());
    assert_eq!(snap.local_spends + snap.leases, 400);
    // Per key: 1 + 2 + 4 + 8 = 15 tokens in 4 leases, then 16 a lease: about 16 leases.
    assert!(
        snap.leases <= 2 * 20,
        "{} leases for 400 calls",
        snap.leases
    );
    // One round trip per lease, plus one `EVAL` if this was the server's first script call
    // (`NOSCRIPT` on a freshly started Redis).
    let round_trips = global.snapshot().round_trips;
    assert!(
        (snap.leases..=snap.leases + 1).contains(&round_trips),
        "{round_trips} round trips for {} leases",
        snap.leases
    );
}

/// After Redis refuses a lease, calls of that cost are refused locally until the time Redis
/// named: no round trip each, the wait shrinking towards it, and admitted again after it.
#[tokio::test]
async fn a_refused_lease_is_remembered_until_the_time_redis_named() {
    let Some(url) = redis_url() else { return };
    let global = RedisRateLimiter::builder()
        .url(url)
        .name(unique("refusal"))
        .rate(1, Duration::from_millis(300))
        .burst(1)
        .build()
        .unwrap();
    let leased = global.leased("all").max_batch(1).build().unwrap();
    leased.acquire(1).await.unwrap();
    let first = limited(&leased.acquire(1).await.unwrap_err());
    assert!(
        first > Duration::from_millis(200) && first <= Duration::from_millis(300),
        "{first:?}"
    );
    let trips = global.snapshot().round_trips;
    let mut last = first;
    for _ in 0..100 {
        let err = leased.acquire(1).await.unwrap_err();
        let wait = limited(&err);
        assert!(
            wait <= last && wait > Duration::ZERO,
            "{wait:?} after {last:?}"
        );
        assert_eq!(palisade_core::retry_after(&*err), Some(wait));
        last = wait;
    }
    assert_eq!(
        global.snapshot().round_trips,
        trips,
        "refused without a round trip"
    );
    assert_eq!(leased.snapshot().cached_refusals, 100);
    assert_eq!(global.snapshot().rejected, 101, "each refusal counted");
    tokio::time::sleep(last + Duration::from_millis(20)).await;
    leased.acquire(1).await.unwrap();
    assert_eq!(
        global.snapshot().round_trips,
        trips + 1,
        "asked Redis again after the wait"
    );
}

/// A keyed limiter remembers a refusal per key: a refused key is turned away locally while
/// another key still leases from its own bucket.
#[tokio::test]
async fn keyed_refusals_are_remembered_per_key() {
    let Some(url) = redis_url() else { return };
    let global = RedisRateLimiter::builder()
        .url(url)
        .name(unique("keyed-refusal"))
        .rate(1, Duration::from_secs(10))
        .burst(1)
        .build()
        .unwrap();
    let keyed = global.keyed_leased::<u32>().max_batch(1).build().unwrap();
    keyed.acquire(&1, 1).await.unwrap();
    let first = limited(&keyed.acquire(&1, 1).await.unwrap_err());
    assert!(first > Duration::from_secs(9), "{first:?}");
    let trips = global.snapshot().round_trips;
    for _ in 0..10 {
        assert!(limited(&keyed.acquire(&1, 1).await.unwrap_err()) <= first);
    }
    assert_eq!(global.snapshot().round_trips, trips);
    keyed.acquire(&2, 1).await.unwrap();
    assert_eq!(
        global.snapshot().round_trips,
        trips + 1,
        "key 2 asked its own bucket"
    );
    assert_eq!(keyed.snapshot().cached_refusals, 10);
}

/// The keyed layer takes the key from the request: each key has its own global bucket
/// (`{prefix}{name}:{key}` in Redis), and a key over its quota is refused with the local
/// limiter's `RateLimited`, while other keys go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_leased_layer_limits_each_key_on_its_own_bucket() {
    let Some(url) = redis_url() else { return };
    let name = unique("keyed-layer");
    let global = RedisRateLimiter::builder()
        .url(url.clone())
        .name(name.clone())
        .rate(1, Duration::from_secs(60))
        .burst(3)
        .build()
        .unwrap();
    let keyed = global
        .keyed_leased::<String>()
        .max_batch(2)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let mut svc = ServiceBuilder::new()
        .layer(keyed.layer(|req: &(String, u32)| req.0.clone()))
        .service_fn(move |req: (String, u32)| {
            counted.fetch_add(1, Ordering::Relaxed);
            async move { Ok::<_, tower::BoxError>(req.1) }
        });
    for i in 0..3 {
        let got = svc
            .ready()
            .await
            .unwrap()
            .call(("a".into(), i))
            .await
            .unwrap();
        assert_eq!(got, i);
    }
    let refused = svc
        .ready()
        .await
        .unwrap()
        .call(("a".into(), 9))
        .await
        .unwrap_err();
    let limited = refused.downcast_ref::<RateLimited>().expect("RateLimited");
    assert!(limited.retry_after() > Duration::ZERO);
    assert_eq!(
        calls.load(Ordering::Relaxed),
        3,
        "a refused call never reaches the service"
    );
    // Another key has its own bucket.
    assert_eq!(
        svc.ready()
            .await
            .unwrap()
            .call(("b".into(), 5))
            .await
            .unwrap(),
        5
    );
    let mut conn = raw(&url).await;
    let exists: bool = redis::cmd("EXISTS")
        .arg(format!("palisade:rl:{name}:a"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(exists, "key a's bucket lives under its own Redis key");
    let snap = keyed.snapshot();
    assert_eq!(snap.keys, 2);
    assert!(
        snap.local_spends >= 1,
        "a lease served a call locally: {snap:?}"
    );
}

/// At the cap, a key whose pool is empty (its lease spent) is idle: a new key evicts it, and
/// the evicted key comes back as a fresh one without exceeding its bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_leased_evicts_idle_keys_at_the_cap() {
    let Some(url) = redis_url() else { return };
    let global = RedisRateLimiter::builder()
        .url(url)
        .name(unique("keyed-cap"))
        .rate(1, Duration::from_secs(60))
        .burst(2)
        .build()
        .unwrap();
    let keyed = global
        .keyed_leased::<&'static str>()
        .max_batch(1)
        .max_keys(1)
        .build()
        .unwrap();
    keyed.acquire(&"a", 1).await.unwrap();
    keyed.acquire(&"b", 1).await.unwrap();
    assert_eq!(keyed.len(), 1);
    assert_eq!(keyed.snapshot().evicted_keys, 1);
    // "a" comes back: its global bucket still holds one token, then refuses.
    keyed.acquire(&"a", 1).await.unwrap();
    let refused = keyed.acquire(&"a", 1).await.unwrap_err();
    assert!(refused.is::<RateLimited>(), "{refused}");
}
