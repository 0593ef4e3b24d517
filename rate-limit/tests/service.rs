//! The tower services: shared state across clones, readiness, wait mode in paused tokio time,
//! weighted costs, events, and a fault simulation against the mock backend.

#![cfg(not(loom))]

mod support;

use palisade_core::clock::{Clock, ManualClock};
use palisade_core::rejection::RejectionKind;
use palisade_core::test_util::{MockBackend, Script, Step};
use palisade_rate_limit::{
    CostExceedsBurst, KeyedRateLimiter, Mode, RateLimited, RateLimiter, RateLimiterEvent,
    TooManyKeys,
};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::Duration;
use support::{Echo, Gate, RejectsLocally, call_now};
use tokio_test::{assert_pending, assert_ready_ok};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

fn manual_limiter(rate: u32, burst: u32) -> (RateLimiter, ManualClock) {
    let manual = ManualClock::new();
    let limiter = RateLimiter::builder()
        .rate(rate, Duration::from_secs(1))
        .burst(burst)
        .clock(manual.clock())
        .build()
        .unwrap();
    (limiter, manual)
}

/// Regression guard for the trap of tower's `RateLimit`: clones must share one bucket.
#[test]
fn every_clone_and_every_layered_service_shares_one_bucket() {
    let (limiter, _manual) = manual_limiter(1, 3);
    let layer = limiter.layer();
    let mut a = layer.layer(Echo);
    let mut b = a.clone();
    let handle = limiter.clone();
    let mut c = palisade_rate_limit::RateLimiterLayer::new(handle).layer(Echo);
    assert!(call_now(&mut a, 1).unwrap().is_ok());
    assert!(call_now(&mut b, 2).unwrap().is_ok());
    assert!(call_now(&mut c, 3).unwrap().is_ok());
    let err = call_now(&mut a, 4).unwrap().unwrap_err();
    let limited = err.downcast_ref::<RateLimited>().expect("a RateLimited");
    assert_eq!(limited.retry_after(), Duration::from_secs(1));
    assert_eq!(
        palisade_core::retry_after(&*err),
        Some(Duration::from_secs(1))
    );
    assert_eq!(limiter.remaining_burst(), 0);
}

/// Regression (issue 9 §2/§3): `poll_ready` took the token, so a ready service dropped
/// without `call` burned it. Now, in reject mode, `poll_ready` is the inner service's
/// readiness, never an error for "limited", and only `call` takes a token.
#[test]
fn reject_mode_takes_the_token_in_call_and_never_fails_poll_ready() {
    let (limiter, manual) = manual_limiter(1, 1);
    let mut svc = limiter.layer().layer(Echo);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..3 {
        assert!(matches!(
            Service::<u32>::poll_ready(&mut svc, &mut cx),
            std::task::Poll::Ready(Ok(()))
        ));
    }
    assert_eq!(limiter.remaining_burst(), 1, "ready takes nothing");
    let mut clone = svc.clone();
    drop(svc); // a ready service dropped without call
    assert_eq!(limiter.remaining_burst(), 1);
    assert!(call_now(&mut clone, 7).unwrap().is_ok());
    assert_eq!(limiter.remaining_burst(), 0);
    // Limited: still ready (no error from poll_ready), and the response future fails.
    for _ in 0..3 {
        let err = call_now(&mut clone, 0).unwrap().unwrap_err();
        assert!(err.is::<RateLimited>());
    }
    manual.advance(Duration::from_secs(1));
    assert!(call_now(&mut clone, 8).unwrap().is_ok());
    assert!(format!("{clone:?}").contains("RateLimiterService"));
    let _: &Echo = clone.get_ref();
    let _: &mut Echo = clone.get_mut();
    let _: Echo = clone.into_inner();
}

/// Regression (issue 9 §3): the token was taken before the inner service was ready, so a full
/// layer below burned tokens. In both modes, an inner service that is not ready costs none,
/// and a call a layer below rejects locally gets its token back.
#[tokio::test(start_paused = true)]
async fn a_layer_below_that_is_full_or_rejects_burns_no_tokens() {
    for wait in [false, true] {
        let mut builder = RateLimiter::builder()
            .rate(1, Duration::from_secs(1))
            .burst(2)
            .clock(Clock::tokio());
        if wait {
            builder = builder.wait(Duration::from_secs(10));
        }
        let limiter = builder.build().unwrap();
        let gate = Gate::default();
        let mut svc = ServiceBuilder::new()
            .layer(limiter.layer())
            .service(gate.clone());
        let mut task = tokio_test::task::spawn(());
        for _ in 0..100 {
            task.enter(|cx, _| assert_pending!(Service::<u32>::poll_ready(&mut svc, cx)));
        }
        assert_eq!(limiter.remaining_burst(), 2, "wait={wait}: nothing taken");
        gate.set_open(true);
        assert!(task.is_woken());
        task.enter(|cx, _| assert_ready_ok!(Service::<u32>::poll_ready(&mut svc, cx)));
        if wait {
            assert_eq!(limiter.remaining_burst(), 1, "held for the call");
            drop(svc); // dropped ready, holding its token: given back
            assert_eq!(limiter.remaining_burst(), 2);
        } else {
            drop(svc);
            assert_eq!(limiter.remaining_burst(), 2);
        }
        assert_eq!(gate.calls(), 0);

        // A layer below that rejects locally (a full bulkhead in reject mode).
        let mut svc = ServiceBuilder::new()
            .layer(limiter.layer())
            .service(RejectsLocally);
        for _ in 0..50 {
            let err = ServiceExt::<u32>::ready(&mut svc)
                .await
                .unwrap()
                .call(1)
                .await
                .unwrap_err();
            assert!(palisade_core::is_local_rejection(&*err));
            assert!(!err.is::<RateLimited>(), "the limiter itself never refused");
        }
        assert_eq!(limiter.remaining_burst(), 2, "wait={wait}: all given back");
    }
}

/// A response future that outlives its limiter (every handle and service dropped while the
/// call is in flight) still completes, whether the call succeeds or a layer below rejects it
/// locally (its token has no bucket left to go back to). And a listener subscribed while a
/// call is in flight does not break its refund.
#[test]
fn a_response_future_may_outlive_its_limiter() {
    let (limiter, _manual) = manual_limiter(1, 2);
    let mut ok = limiter.layer().layer(Echo);
    let mut below = limiter.layer().layer(RejectsLocally);
    let noop = Waker::noop();
    let mut cx = Context::from_waker(noop);
    assert!(Service::<u32>::poll_ready(&mut ok, &mut cx).is_ready());
    let success = ok.call(1u32);
    assert!(Service::<u32>::poll_ready(&mut below, &mut cx).is_ready());
    let rejected = below.call(2u32);
    assert_eq!(limiter.remaining_burst(), 0);

    // Subscribed after admission: the refund still happens (and the listener hears of it).
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let listener = limiter.subscribe(move |e: &RateLimiterEvent| seen.lock().unwrap().push(*e));
    let err = tokio_test::block_on(rejected).unwrap_err();
    assert!(palisade_core::is_local_rejection(&*err));
    assert_eq!(limiter.remaining_burst(), 1, "the token went back");
    assert!(
        events
            .lock()
            .unwrap()
            .contains(&RateLimiterEvent::Refunded { cost: 1 })
    );

    // Now everything of the limiter goes; the futures in flight still complete.
    assert!(limiter.unsubscribe(listener));
    let rejected = {
        assert!(Service::<u32>::poll_ready(&mut below, &mut cx).is_ready());
        below.call(3u32)
    };
    drop((ok, below, limiter));
    assert_eq!(tokio_test::block_on(success).unwrap(), 1);
    assert!(tokio_test::block_on(rejected).is_err());
}

#[test]
#[should_panic(expected = "poll_ready must be called first")]
fn call_without_poll_ready_panics() {
    let (limiter, _manual) = manual_limiter(1, 1);
    let mut svc = limiter.layer().layer(Echo);
    drop(svc.call(1));
}

#[tokio::test(start_paused = true)]
async fn wait_mode_sleeps_in_tokio_time_until_the_token_is_due() {
    let limiter = RateLimiter::builder()
        .rate(10, Duration::from_secs(1))
        .burst(1)
        .wait(Duration::from_millis(250))
        .clock(Clock::tokio())
        .build()
        .unwrap();
    assert_eq!(
        limiter.mode(),
        Mode::Wait {
            max_wait: Duration::from_millis(250)
        }
    );
    let mut svc = ServiceBuilder::new().layer(limiter.layer()).service(Echo);
    let start = tokio::time::Instant::now();
    assert_eq!(
        ServiceExt::<u32>::ready(&mut svc)
            .await
            .unwrap()
            .call(1)
            .await
            .unwrap(),
        1
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(
        ServiceExt::<u32>::ready(&mut svc)
            .await
            .unwrap()
            .call(2)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(100),
        "waited exactly one interval"
    );

    // Readiness is Pending while waiting, and wakes the task when due.
    let mut task = tokio_test::task::spawn(());
    task.enter(|cx, _| assert_pending!(Service::<u32>::poll_ready(&mut svc, cx)));
    tokio::time::advance(Duration::from_millis(99)).await;
    task.enter(|cx, _| assert_pending!(Service::<u32>::poll_ready(&mut svc, cx)));
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(task.is_woken());
    task.enter(|cx, _| assert_ready_ok!(Service::<u32>::poll_ready(&mut svc, cx)));
    assert_eq!(svc.call(3).await.unwrap(), 3);

    // Nothing is reserved: three waiters all sleep until the next token (100 ms), one takes
    // it, the others sleep again. A waiter whose token is not due within max_wait (250 ms)
    // gives up: ready, and its call fails.
    let mut clones: Vec<_> = (0..3).map(|_| svc.clone()).collect();
    let mut task = tokio_test::task::spawn(());
    for c in clones.iter_mut() {
        task.enter(|cx, _| assert_pending!(Service::<u32>::poll_ready(c, cx)));
    }
    assert_eq!(limiter.remaining_burst(), 0);
    let t0 = tokio::time::Instant::now();
    let mut done = Vec::new();
    let mut rejected = Vec::new();
    while done.len() + rejected.len() < 3 {
        tokio::time::advance(Duration::from_millis(1)).await;
        for (i, c) in clones.iter_mut().enumerate() {
            if done.contains(&i) || rejected.contains(&i) {
                continue;
            }
            let polled = task.enter(|cx, _| Service::<u32>::poll_ready(c, cx));
            if polled.is_ready() {
                match c.call(i as u32).await {
                    Ok(_) => done.push(i),
                    Err(e) => {
                        assert!(e.is::<RateLimited>());
                        rejected.push(i);
                    }
                }
            }
        }
    }
    assert_eq!(done.len(), 2, "one token at 100 ms, one at 200 ms");
    assert_eq!(rejected.len(), 1, "the third is not due within 250 ms");
    assert!(t0.elapsed() <= Duration::from_millis(251));
}

#[tokio::test(start_paused = true)]
async fn weighted_requests_take_their_cost_and_never_wait_for_the_impossible() {
    let limiter = RateLimiter::builder()
        .rate(10, Duration::from_secs(1))
        .burst(5)
        .wait(Duration::from_secs(60))
        .clock(Clock::tokio())
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(limiter.layer().cost(|req: &u32| *req))
        .service(Echo);
    let start = tokio::time::Instant::now();
    assert_eq!(svc.ready().await.unwrap().call(5).await.unwrap(), 5);
    assert_eq!(limiter.remaining_burst(), 0);
    // Costs 3: waits for three intervals.
    assert_eq!(svc.ready().await.unwrap().call(3).await.unwrap(), 3);
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    // Costs 6 > burst 5: fails at once even with a minute of allowed wait.
    let err = svc.ready().await.unwrap().call(6).await.unwrap_err();
    let e = err.downcast_ref::<CostExceedsBurst>().unwrap();
    assert_eq!((e.cost(), e.burst()), (6, 5));
    assert_eq!(start.elapsed(), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn the_direct_handle_waits_with_until_ready() {
    let limiter = RateLimiter::builder()
        .rate(4, Duration::from_secs(1))
        .burst(1)
        .clock(Clock::tokio())
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    for _ in 0..5 {
        limiter.until_ready().await;
    }
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(limiter.until_ready_n(2).await.unwrap_err().burst(), 1);
}

#[test]
fn events_report_permits_rejections_and_quota_changes() {
    let (limiter, _manual) = manual_limiter(1, 1);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let id = limiter.subscribe(move |e: &RateLimiterEvent| sink.lock().unwrap().push(*e));
    limiter.check().unwrap();
    limiter.check().unwrap_err();
    let _ = limiter.check_n(2);
    let q = palisade_rate_limit::Quota::per_second(2).unwrap();
    limiter.set_quota(q);
    assert!(limiter.unsubscribe(id));
    limiter.check().unwrap_err();
    let seen = seen.lock().unwrap();
    assert_eq!(
        *seen,
        vec![
            RateLimiterEvent::Permitted { cost: 1 },
            RateLimiterEvent::Rejected {
                cost: 1,
                reason: RejectionKind::RateLimited,
                retry_after: Some(Duration::from_secs(1))
            },
            RateLimiterEvent::Rejected {
                cost: 2,
                reason: RejectionKind::CostExceedsBurst,
                retry_after: None
            },
            RateLimiterEvent::QuotaChanged {
                from: palisade_rate_limit::Quota::per_second(1).unwrap(),
                to: q
            },
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn keyed_layer_limits_each_key_on_its_own() {
    let limiter = KeyedRateLimiter::<u32>::builder()
        .rate(1, Duration::from_secs(1))
        .max_keys(2)
        .shards(1)
        .clock(Clock::tokio())
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(limiter.layer(|req: &(u32, &str)| req.0))
        .service(Echo);
    assert!(svc.ready().await.unwrap().call((1, "a")).await.is_ok());
    assert!(svc.ready().await.unwrap().call((2, "b")).await.is_ok());
    let err = svc
        .ready()
        .await
        .unwrap()
        .call((1, "again"))
        .await
        .unwrap_err();
    assert!(err.downcast_ref::<RateLimited>().is_some());
    let err = svc
        .ready()
        .await
        .unwrap()
        .call((3, "new"))
        .await
        .unwrap_err();
    assert_eq!(err.downcast_ref::<TooManyKeys>().unwrap().max_keys(), 2);
    // Once key 1 and 2 are idle, key 3 gets a slot.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(svc.ready().await.unwrap().call((3, "new")).await.is_ok());
    assert_eq!(limiter.len(), 1, "the idle keys were swept out");
}

#[tokio::test(start_paused = true)]
async fn keyed_wait_mode_and_cost() {
    let limiter = KeyedRateLimiter::<&'static str>::builder()
        .rate(10, Duration::from_secs(1))
        .burst(2)
        .wait(Duration::from_secs(1))
        .clock(Clock::tokio())
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(
            limiter
                .layer(|req: &(&'static str, u32)| req.0)
                .cost(|req: &(&'static str, u32)| req.1),
        )
        .service(Echo);
    let start = tokio::time::Instant::now();
    svc.ready().await.unwrap().call(("a", 2)).await.unwrap();
    svc.ready().await.unwrap().call(("b", 2)).await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    svc.ready().await.unwrap().call(("a", 1)).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert!(
        svc.ready()
            .await
            .unwrap()
            .call(("a", 3))
            .await
            .unwrap_err()
            .is::<CostExceedsBurst>()
    );
}

/// Fault simulation in virtual time: many clients hammer a mock backend through clones of one
/// layered service for 10 virtual seconds; the backend sees at most burst + rate · T calls.
#[tokio::test(start_paused = true)]
async fn simulated_clients_never_push_the_backend_over_the_quota() {
    let limiter = RateLimiter::builder()
        .rate(50, Duration::from_secs(1))
        .burst(10)
        .clock(Clock::tokio())
        .build()
        .unwrap();
    let backend = MockBackend::new(Script::always(Step::ok().after(Duration::from_millis(5))));
    let svc = ServiceBuilder::new()
        .layer(limiter.layer())
        .service(backend.clone());
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for client in 0..8u64 {
        let mut svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut limited) = (0u64, 0u64);
            for i in 0..1_000u64 {
                match ServiceExt::<u64>::ready(&mut svc)
                    .await
                    .unwrap()
                    .call(client * 10_000 + i)
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(e) if e.is::<RateLimited>() => limited += 1,
                    Err(e) => panic!("unexpected {e}"),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (ok, limited)
        }));
    }
    let (mut ok, mut limited) = (0, 0);
    for t in tasks {
        let (o, l) = t.await.unwrap();
        ok += o;
        limited += l;
    }
    let elapsed = start.elapsed();
    let stats = backend.stats();
    assert_eq!(stats.calls, ok);
    assert_eq!(ok + limited, 8_000);
    // burst + rate · T, in whole calls.
    let bound = 10 + elapsed.as_nanos() as u64 * 50 / 1_000_000_000;
    assert!(
        ok <= bound,
        "admitted {ok} > bound {bound} over {elapsed:?}"
    );
    // Demand (800/s) far exceeds the rate, so the limiter is saturated: it admits its rate.
    assert!(
        ok + 2 >= bound,
        "admitted {ok}, far under the bound {bound}"
    );
    println!(
        "simulation: {elapsed:?}, admitted {ok}, rejected {limited}, bound {bound}, backend calls {}",
        stats.calls
    );
}

/// Regression (issue 9 §3): a waiter dropped before its turn forfeited its reserved token.
/// Now waiting takes nothing: after a dropped waiter the next token is still at 100 ms.
#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_forfeits_nothing() {
    let limiter = RateLimiter::builder()
        .rate(10, Duration::from_secs(1))
        .burst(1)
        .wait(Duration::from_secs(1))
        .clock(Clock::tokio())
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new().layer(limiter.layer()).service(Echo);
    ServiceExt::<u32>::ready(&mut svc).await.unwrap();
    svc.call(1).await.unwrap();
    for _ in 0..1_000 {
        let mut waiter = svc.clone();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Service::<u32>::poll_ready(&mut waiter, &mut cx).is_pending());
        drop(waiter);
    }
    let start = tokio::time::Instant::now();
    ServiceExt::<u32>::ready(&mut svc).await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(100),
        "the next token, not a later one"
    );
    svc.call(2).await.unwrap();
}

/// Regression (issue 9 §3): 100 000 cancelled `until_ready` calls made a 100/s limiter refuse
/// everyone for 999 s. Now a cancelled wait costs nothing.
#[tokio::test(start_paused = true)]
async fn cancelled_until_ready_calls_forfeit_no_tokens() {
    let limiter = RateLimiter::builder()
        .rate(100, Duration::from_secs(1))
        .burst(1)
        .clock(Clock::tokio())
        .build()
        .unwrap();
    limiter.check().unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..100_000 {
        let mut waiter = Box::pin(limiter.until_ready());
        assert!(waiter.as_mut().poll(&mut cx).is_pending());
    }
    tokio::time::advance(Duration::from_millis(10)).await;
    assert!(limiter.check().is_ok(), "the next token is due after 10 ms");
    let start = tokio::time::Instant::now();
    limiter.until_ready().await;
    assert_eq!(start.elapsed(), Duration::from_millis(10));
}

/// The weighted and keyed services in wait mode take nothing while their futures wait, so
/// dropped waiting futures forfeit nothing either.
#[tokio::test(start_paused = true)]
async fn dropped_waiting_futures_of_the_call_time_services_forfeit_nothing() {
    let limiter = RateLimiter::builder()
        .rate(10, Duration::from_secs(1))
        .burst(2)
        .wait(Duration::from_secs(10))
        .clock(Clock::tokio())
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(limiter.layer().cost(|req: &u32| *req))
        .service(Echo);
    assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), 2);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000 {
        let mut waiting = Box::pin(svc.ready().await.unwrap().call(2));
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
    }
    tokio::time::advance(Duration::from_millis(200)).await;
    assert_eq!(
        limiter.remaining_burst(),
        2,
        "the bucket refilled as if no one had waited"
    );

    let keyed = KeyedRateLimiter::<u8>::builder()
        .rate(10, Duration::from_secs(1))
        .wait(Duration::from_secs(10))
        .burst(1)
        .clock(Clock::tokio())
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(keyed.layer(|req: &u8| *req))
        .service(Echo);
    svc.ready().await.unwrap().call(1).await.unwrap();
    for _ in 0..1_000 {
        let mut waiting = Box::pin(svc.ready().await.unwrap().call(1));
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
    }
    tokio::time::advance(Duration::from_millis(100)).await;
    assert_eq!(keyed.remaining_burst(&1), 1);
    // A waiting keyed future whose inner service is not ready gives its token back.
    let gate = Gate::default();
    let mut svc = ServiceBuilder::new()
        .layer(keyed.layer(|req: &u8| *req))
        .service(gate.clone());
    gate.set_open(true);
    let mut first = Box::pin(svc.ready().await.unwrap().call(2));
    assert!(first.as_mut().poll(&mut cx).is_ready());
    let mut waiting = Box::pin(svc.ready().await.unwrap().call(2));
    gate.set_open(false);
    assert!(waiting.as_mut().poll(&mut cx).is_pending());
    tokio::time::advance(Duration::from_millis(150)).await;
    assert!(waiting.as_mut().poll(&mut cx).is_pending());
    assert_eq!(
        keyed.remaining_burst(&2),
        1,
        "given back while the gate is closed"
    );
    gate.set_open(true);
    assert!(waiting.as_mut().poll(&mut cx).is_ready());
    assert_eq!(keyed.remaining_burst(&2), 0);
    assert_eq!(gate.calls(), 2);
}

/// A wait-mode service polled ready while no token was due within `max_wait` decides afresh
/// at `call`: kept ready for a second (as tower's p2c keeps endpoints), it is not stuck with
/// the stale refusal.
#[tokio::test(start_paused = true)]
async fn a_refusal_at_poll_ready_is_decided_afresh_at_call() {
    let limiter = RateLimiter::builder()
        .rate(100, Duration::from_secs(1))
        .burst(1)
        .wait(Duration::from_millis(5))
        .clock(Clock::tokio())
        .build()
        .unwrap();
    limiter.check().unwrap();
    let mut svc = ServiceBuilder::new().layer(limiter.layer()).service(Echo);
    let mut cx = Context::from_waker(Waker::noop());
    // The next token is due in 10 ms > 5 ms: ready at once, to refuse.
    assert!(Service::<u32>::poll_ready(&mut svc, &mut cx).is_ready());
    let err = svc.call(1).await.unwrap_err();
    assert!(err.is::<RateLimited>());
    assert!(Service::<u32>::poll_ready(&mut svc, &mut cx).is_ready());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        svc.call(2).await.unwrap(),
        2,
        "the bucket refilled since poll_ready"
    );
}
