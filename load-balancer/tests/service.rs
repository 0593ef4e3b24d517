//! The balancing service: readiness, set changes, health, retries elsewhere, events.
#![cfg(not(loom))]

use palisade_core::clock::Clock;
use palisade_core::rejection::{Rejection, RejectionKind};
use palisade_load_balancer::{
    Balancer, BalancerEvent, EndpointMeta, NoHealthyEndpoints, OutlierDetection, P2cPeakEwma,
    Random, RoundRobin,
};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Service, ServiceExt};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A test endpoint: answers after `latency`, fails while `failing`, refuses readiness while
/// `broken`, is never ready while `busy`; counts calls.
#[derive(Clone)]
struct Endpoint {
    id: usize,
    latency: Duration,
    failing: Arc<AtomicBool>,
    reject_locally: Arc<AtomicBool>,
    broken: Arc<AtomicBool>,
    busy: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
}

impl Endpoint {
    fn new(id: usize, latency: Duration) -> Endpoint {
        Endpoint {
            id,
            latency,
            failing: Arc::default(),
            reject_locally: Arc::default(),
            broken: Arc::default(),
            busy: Arc::default(),
            calls: Arc::default(),
        }
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct Boom;
impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("boom")
    }
}
impl std::error::Error for Boom {}

static LOCAL: Rejection = Rejection::new(RejectionKind::CircuitOpen);
#[derive(Debug)]
struct Open;
impl std::fmt::Display for Open {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("circuit open")
    }
}
impl std::error::Error for Open {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&LOCAL)
    }
}

impl Service<u32> for Endpoint {
    type Response = usize;
    type Error = palisade_core::BoxError;
    type Future = BoxFuture<Result<usize, palisade_core::BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.broken.load(Ordering::Relaxed) {
            return Poll::Ready(Err(Box::new(Boom)));
        }
        if self.busy.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: u32) -> Self::Future {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let (id, latency) = (self.id, self.latency);
        let failing = self.failing.load(Ordering::Relaxed);
        let local = self.reject_locally.load(Ordering::Relaxed);
        Box::pin(async move {
            if local {
                return Err(Box::new(Open) as palisade_core::BoxError);
            }
            if failing {
                tokio::time::sleep(Duration::from_millis(1)).await;
                return Err(Box::new(Boom) as palisade_core::BoxError);
            }
            tokio::time::sleep(latency).await;
            Ok(id)
        })
    }
}

fn fleet(n: usize, latency: Duration) -> Vec<Endpoint> {
    (0..n).map(|i| Endpoint::new(i, latency)).collect()
}

fn balancer_over(
    endpoints: &[Endpoint],
    builder: palisade_load_balancer::BalancerBuilder,
) -> Balancer<usize, Endpoint> {
    let balancer = builder.clock(Clock::tokio()).seed(7).build().unwrap();
    for e in endpoints {
        balancer.insert(e.id, e.clone(), EndpointMeta::new());
    }
    balancer
}

async fn call(balancer: &Balancer<usize, Endpoint>) -> Result<usize, palisade_core::BoxError> {
    balancer.service().oneshot(0).await
}

#[tokio::test(start_paused = true)]
async fn spreads_calls_and_clones_share_statistics() {
    let endpoints = fleet(3, Duration::from_millis(10));
    let balancer = balancer_over(&endpoints, Balancer::builder());
    let handle = balancer.clone();
    let calls: Vec<_> = (0..300).map(|_| handle.service().oneshot(0)).collect();
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(Result::is_ok));
    for e in &endpoints {
        assert!(e.calls() > 60, "endpoint {} got {}", e.id, e.calls());
    }
    let snapshot = balancer.snapshot();
    assert_eq!(snapshot.endpoints.len(), 3);
    assert_eq!(snapshot.endpoints.iter().map(|e| e.calls).sum::<u64>(), 300);
    assert!(snapshot.endpoints.iter().all(|e| e.pending == 0));
    assert_eq!(snapshot.name.as_ref(), "load_balancer");
}

#[tokio::test(start_paused = true)]
async fn an_empty_set_rejects_from_the_future_and_recovers() {
    let balancer: Balancer<usize, Endpoint> = Balancer::builder().build().unwrap();
    let mut svc = balancer.service();
    // poll_ready is Ready (never an error), the future rejects.
    let mut ready = tokio_test::task::spawn(std::future::poll_fn(|cx| svc.poll_ready(cx)));
    tokio_test::assert_ready_ok!(ready.poll());
    drop(ready);
    let err = svc.call(0).await.unwrap_err();
    assert!(err.downcast_ref::<NoHealthyEndpoints>().is_some());
    assert_eq!(
        palisade_core::rejection(&*err).unwrap().kind(),
        RejectionKind::NoHealthyEndpoints
    );
    // The same service serves once an endpoint is there, even after a readiness that
    // decided to reject and was not spent.
    let mut ready = tokio_test::task::spawn(std::future::poll_fn(|cx| svc.poll_ready(cx)));
    tokio_test::assert_ready_ok!(ready.poll());
    drop(ready);
    let e = Endpoint::new(4, Duration::from_millis(1));
    balancer.insert(4, e.clone(), EndpointMeta::new());
    assert_eq!(svc.ready().await.unwrap().call(0).await.unwrap(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_removed_endpoints_calls_in_flight_finish_normally() {
    let endpoints = fleet(2, Duration::from_millis(50));
    let balancer = balancer_over(&endpoints, Balancer::builder());
    let in_flight: Vec<_> = (0..10).map(|_| balancer.service().oneshot(0)).collect();
    let joined = tokio::spawn(futures::future::join_all(in_flight));
    tokio::task::yield_now().await;
    assert!(balancer.remove(&0));
    assert!(!balancer.remove(&0), "already gone");
    let results = joined.await.unwrap();
    assert!(results.iter().all(Result::is_ok), "no call lost");
    let before = endpoints[0].calls();
    for _ in 0..20 {
        assert_eq!(call(&balancer).await.unwrap(), 1);
    }
    assert_eq!(
        endpoints[0].calls(),
        before,
        "no pick of a removed endpoint"
    );
    assert_eq!(balancer.keys(), vec![1]);
}

#[tokio::test(start_paused = true)]
async fn inserting_an_existing_key_replaces_the_endpoint() {
    let endpoints = fleet(1, Duration::from_millis(1));
    let balancer = balancer_over(&endpoints, Balancer::builder());
    let replacement = Endpoint::new(9, Duration::from_millis(1));
    balancer.insert(0, replacement.clone(), EndpointMeta::new().weight(3));
    assert_eq!(balancer.len(), 1);
    assert_eq!(call(&balancer).await.unwrap(), 9);
    assert_eq!(balancer.snapshot().endpoints[0].weight, 3);
}

#[tokio::test(start_paused = true)]
async fn a_busy_endpoint_is_passed_over() {
    let endpoints = fleet(3, Duration::from_millis(1));
    endpoints[1].busy.store(true, Ordering::Relaxed);
    let balancer = balancer_over(&endpoints, Balancer::builder());
    for _ in 0..100 {
        assert_ne!(call(&balancer).await.unwrap(), 1);
    }
    assert_eq!(endpoints[1].calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn all_busy_is_pending_and_wakes_when_one_is_ready() {
    // tower's ConcurrencyLimit clones share their semaphore: one call at a time per endpoint.
    let endpoint = tower::limit::ConcurrencyLimit::new(
        tower::service_fn(|_: u32| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<_, Infallible>(())
        }),
        1,
    );
    let balancer: Balancer<u8, _> = Balancer::builder().clock(Clock::tokio()).build().unwrap();
    balancer.insert(0, endpoint, EndpointMeta::new());
    let first = balancer.service().oneshot(0);
    let first = tokio::spawn(first);
    tokio::task::yield_now().await;
    let mut svc = balancer.service();
    let mut ready = tokio_test::task::spawn(std::future::poll_fn(|cx| svc.poll_ready(cx)));
    tokio_test::assert_pending!(ready.poll());
    first.await.unwrap().unwrap();
    assert!(
        ready.is_woken(),
        "the waiting endpoint's wake-up reached the balancer"
    );
    tokio_test::assert_ready_ok!(ready.poll());
}

#[tokio::test(start_paused = true)]
async fn a_failing_readiness_check_ejects_but_never_drops_the_endpoint() {
    let endpoints = fleet(2, Duration::from_millis(1));
    endpoints[0].broken.store(true, Ordering::Relaxed);
    let events = Arc::new(Mutex::new(Vec::new()));
    let balancer = balancer_over(&endpoints, Balancer::builder().strategy(RoundRobin::new()));
    let sink = events.clone();
    balancer.subscribe(move |e: &BalancerEvent<usize>| {
        if matches!(
            e,
            BalancerEvent::EndpointEjected { .. } | BalancerEvent::EndpointRestored { .. }
        ) {
            sink.lock().unwrap().push(e.clone());
        }
    });
    for _ in 0..20 {
        assert_eq!(
            call(&balancer).await.unwrap(),
            1,
            "passed over for the other"
        );
    }
    assert_eq!(balancer.len(), 2, "still in the set");
    let snap = balancer.snapshot();
    assert!(snap.endpoints[0].ejected_for.is_some(), "{snap:?}");
    assert!(matches!(
        events.lock().unwrap()[0],
        BalancerEvent::EndpointEjected {
            key: 0,
            times: 1,
            ..
        }
    ));
    // It recovers; after its ejection it is a candidate again and serves.
    endpoints[0].broken.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut served_by_0 = 0;
    for _ in 0..20 {
        if call(&balancer).await.unwrap() == 0 {
            served_by_0 += 1;
        }
    }
    assert!(served_by_0 >= 5, "{served_by_0}");
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, BalancerEvent::EndpointRestored { key: 0, .. }))
    );
}

#[tokio::test(start_paused = true)]
async fn fast_failures_never_look_fast() {
    // Regression for the fast-failure trap: an endpoint failing in 1 ms beside two that answer
    // in 20 ms. Without the penalty, P2C over latency prefers the failing one.
    let endpoints = fleet(3, Duration::from_millis(20));
    endpoints[2].failing.store(true, Ordering::Relaxed);
    let balancer = balancer_over(
        &endpoints,
        Balancer::builder()
            .strategy(P2cPeakEwma)
            .outlier_detection(OutlierDetection::disabled()),
    );
    for _ in 0..500 {
        let _ = call(&balancer).await;
    }
    let failing_share = endpoints[2].calls() as f64 / 500.0;
    assert!(failing_share < 0.03, "failing endpoint got {failing_share}");
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_unanswered_raises_the_latency_and_never_lowers_it() {
    // An endpoint that takes calls and never answers, under a caller that gives up after
    // 500 ms (a retry's attempt timeout above the balancer): the only signal is the drop.
    let endpoints = fleet(1, Duration::from_secs(3600));
    let balancer = balancer_over(&endpoints, Balancer::builder().strategy(P2cPeakEwma));
    let before = balancer.snapshot().endpoints[0].latency;
    assert!(before < Duration::from_millis(500), "{before:?}");
    let gave_up = tokio::time::timeout(Duration::from_millis(500), call(&balancer)).await;
    assert!(gave_up.is_err(), "the call hangs");
    let snapshot = balancer.snapshot().endpoints[0].clone();
    assert_eq!(snapshot.pending, 0);
    assert_eq!(snapshot.failures, 0, "a dropped call is not a failure");
    assert!(
        snapshot.latency >= Duration::from_millis(500),
        "{snapshot:?}"
    );
    // A call dropped at once says nothing about the latency: it stays where it was.
    let mut service = balancer.service();
    service.ready().await.unwrap();
    drop(service.call(0));
    let after = balancer.snapshot().endpoints[0].latency;
    assert!(after >= Duration::from_millis(500), "{after:?}");
}

#[tokio::test(start_paused = true)]
async fn a_recovered_endpoint_pays_its_penalty_off_in_a_few_successes() {
    // Regression for the demo's surge after a failing phase: the penalty used to decay only
    // with time (`e^(-t/τ)`, τ = 1 s), so 0.1 s of successes left ~0.9 s of it standing and
    // the recovered endpoint was under-used for seconds. Each success now halves it.
    let endpoints = fleet(2, Duration::from_millis(5));
    endpoints[0].failing.store(true, Ordering::Relaxed);
    let balancer = balancer_over(
        &endpoints,
        Balancer::builder()
            .strategy(RoundRobin::new())
            .outlier_detection(OutlierDetection::disabled()),
    );
    for _ in 0..4 {
        let _ = call(&balancer).await;
    }
    let charged = balancer.snapshot().endpoints[0].latency;
    assert!(charged >= Duration::from_millis(900), "{charged:?}");

    endpoints[0].failing.store(false, Ordering::Relaxed);
    // Eight successes of endpoint 0 (round robin over two), some 80 ms of virtual time.
    for _ in 0..16 {
        call(&balancer).await.unwrap();
    }
    let paid = balancer.snapshot().endpoints[0].latency;
    assert!(paid <= Duration::from_millis(40), "still charged {paid:?}");

    // A failure charges it in full again: one success does not erase a flapping endpoint's.
    endpoints[0].failing.store(true, Ordering::Relaxed);
    for _ in 0..2 {
        let _ = call(&balancer).await;
    }
    endpoints[0].failing.store(false, Ordering::Relaxed);
    for _ in 0..2 {
        call(&balancer).await.unwrap();
    }
    let again = balancer.snapshot().endpoints[0].latency;
    assert!(
        again >= Duration::from_millis(400) && again <= Duration::from_millis(600),
        "one success after a failure leaves half: {again:?}"
    );
}
#[tokio::test(start_paused = true)]
async fn local_rejections_from_below_are_penalised_but_do_not_eject() {
    let endpoints = fleet(2, Duration::from_millis(5));
    endpoints[0].reject_locally.store(true, Ordering::Relaxed);
    let balancer = balancer_over(&endpoints, Balancer::builder().strategy(RoundRobin::new()));
    for _ in 0..20 {
        let _ = call(&balancer).await;
    }
    let snap = balancer.snapshot();
    assert_eq!(
        snap.endpoints[0].failures, 0,
        "not a failure of the endpoint"
    );
    assert!(snap.endpoints[0].ejected_for.is_none());
    assert!(
        snap.endpoints[0].latency >= Duration::from_millis(900),
        "charged the penalty: {:?}",
        snap.endpoints[0].latency
    );
}

#[tokio::test(start_paused = true)]
async fn at_most_max_ejection_percent_is_ejected_and_panic_uses_all() {
    let endpoints = fleet(3, Duration::from_millis(1));
    for e in &endpoints {
        e.failing.store(true, Ordering::Relaxed);
    }
    let balancer = balancer_over(&endpoints, Balancer::builder().strategy(RoundRobin::new()));
    for _ in 0..60 {
        assert!(call(&balancer).await.is_err());
        let snap = balancer.snapshot();
        assert!(snap.ejected <= 1, "10 % of 3, at least one: {snap:?}");
    }
    assert_eq!(balancer.snapshot().ejected, 1);

    // A single endpoint, ejected: below the panic threshold it is used anyway.
    let single = fleet(1, Duration::from_millis(1));
    single[0].failing.store(true, Ordering::Relaxed);
    let balancer = balancer_over(&single, Balancer::builder());
    for _ in 0..5 {
        let _ = call(&balancer).await;
    }
    let snap = balancer.snapshot();
    assert_eq!(snap.ejected, 1);
    assert!(snap.panic);
    single[0].failing.store(false, Ordering::Relaxed);
    assert_eq!(call(&balancer).await.unwrap(), 0, "panic mode still sends");
}

#[tokio::test(start_paused = true)]
async fn retries_go_to_another_endpoint() {
    // Random ignores load and ejection is off, so only the retry mechanism keeps a retry away
    // from the failing endpoint: without it, 1 retry in 3 would return there and fail.
    let endpoints = fleet(3, Duration::from_millis(2));
    endpoints[0].failing.store(true, Ordering::Relaxed);
    let balancer = balancer_over(
        &endpoints,
        Balancer::builder()
            .strategy(Random)
            .outlier_detection(OutlierDetection::disabled()),
    );
    let policy = palisade_retry::RetryPolicy::builder()
        .max_attempts(2)
        .unlimited()
        .clock(Clock::tokio())
        .seed(1)
        .build()
        .unwrap();
    let svc = tower::ServiceBuilder::new()
        .layer(policy.layer())
        .service(balancer.service());
    let mut failed = 0;
    for _ in 0..300 {
        if svc.clone().oneshot(0).await.is_err() {
            failed += 1;
        }
    }
    assert!(
        endpoints[0].calls() > 50,
        "the failing endpoint was hit first"
    );
    assert_eq!(failed, 0, "every retry went to a healthy endpoint");

    // The same through one service called in sequence (no clone per request).
    let mut svc = svc;
    for _ in 0..100 {
        svc.ready().await.unwrap().call(0).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_root_service_does_not_avoid_anything() {
    // One endpoint: the only candidate, whatever a clone avoids.
    let endpoints = fleet(1, Duration::from_millis(1));
    let balancer = balancer_over(&endpoints, Balancer::builder());
    let mut svc = balancer.service();
    svc.ready().await.unwrap().call(0).await.unwrap();
    let mut clone = svc.clone();
    assert_eq!(clone.ready().await.unwrap().call(0).await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn cancelled_and_panicking_calls_give_their_pending_back() {
    let endpoints = fleet(2, Duration::from_secs(10));
    let balancer = balancer_over(&endpoints, Balancer::builder());
    let mut svc = balancer.service();
    let mut futures = Vec::new();
    for _ in 0..10 {
        svc.ready().await.unwrap();
        futures.push(svc.call(0));
    }
    assert_eq!(
        balancer
            .snapshot()
            .endpoints
            .iter()
            .map(|e| e.pending)
            .sum::<u64>(),
        10
    );
    drop(futures);
    assert!(balancer.snapshot().endpoints.iter().all(|e| e.pending == 0));

    let panicking = tower::service_fn(|_: u32| async {
        if true {
            panic!("endpoint panicked");
        }
        Ok::<u32, Infallible>(0)
    });
    let balancer: Balancer<u8, _> = Balancer::builder().clock(Clock::tokio()).build().unwrap();
    balancer.insert(0, panicking, EndpointMeta::new());
    let result = tokio::spawn(balancer.service().oneshot(0)).await;
    assert!(result.unwrap_err().is_panic());
    assert_eq!(balancer.snapshot().endpoints[0].pending, 0);

    // Regression: a panic in the endpoint's `call` itself (not in its future) leaked a
    // pending count, because the guard was made after `call` returned.
    #[derive(Clone)]
    struct PanicsInCall;
    impl Service<u32> for PanicsInCall {
        type Response = ();
        type Error = Infallible;
        type Future = std::future::Ready<Result<(), Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: u32) -> Self::Future {
            panic!("call panicked")
        }
    }
    let balancer: Balancer<u8, PanicsInCall> =
        Balancer::builder().clock(Clock::tokio()).build().unwrap();
    balancer.insert(0, PanicsInCall, EndpointMeta::new());
    let result = tokio::spawn(balancer.service().oneshot(0)).await;
    assert!(result.unwrap_err().is_panic());
    assert_eq!(balancer.snapshot().endpoints[0].pending, 0);
}

#[tokio::test(start_paused = true)]
async fn set_changes_emit_events() {
    let balancer: Balancer<&'static str, Endpoint> =
        Balancer::builder().name("api").build().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let id = balancer.subscribe(move |e: &BalancerEvent<&'static str>| {
        sink.lock().unwrap().push(e.clone());
    });
    balancer.insert("a", Endpoint::new(0, Duration::ZERO), EndpointMeta::new());
    balancer.insert("b", Endpoint::new(1, Duration::ZERO), EndpointMeta::new());
    balancer.remove(&"a");
    assert!(balancer.unsubscribe(id));
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            BalancerEvent::EndpointAdded {
                key: "a",
                endpoints: 1,
                ejected: 0
            },
            BalancerEvent::EndpointAdded {
                key: "b",
                endpoints: 2,
                ejected: 0
            },
            BalancerEvent::EndpointRemoved {
                key: "a",
                endpoints: 1,
                ejected: 0
            },
        ]
    );
    assert_eq!(balancer.name(), "api");
}

#[test]
fn bad_configuration_is_refused_by_name() {
    let field =
        |b: palisade_load_balancer::BalancerBuilder| b.build::<u8, Endpoint>().unwrap_err().field();
    assert_eq!(field(Balancer::builder().decay(Duration::ZERO)), "decay");
    assert_eq!(
        field(Balancer::builder().failure_penalty(Duration::ZERO)),
        "failure_penalty"
    );
    assert_eq!(
        field(Balancer::builder().max_ready_tries(0)),
        "max_ready_tries"
    );
    assert_eq!(
        field(Balancer::builder().max_ready_tries(9)),
        "max_ready_tries"
    );
    assert_eq!(
        field(Balancer::builder().slow_start(Duration::ZERO)),
        "slow_start"
    );
    for factor in [0.5, f64::NAN, f64::INFINITY] {
        assert_eq!(
            field(Balancer::builder().remote_zone_factor(factor)),
            "remote_zone_factor"
        );
    }
    assert_eq!(
        field(
            Balancer::builder().outlier_detection(OutlierDetection::new().panic_threshold(200.0))
        ),
        "panic_threshold"
    );
}

#[test]
fn send_sync_clone() {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_clone<T: Clone>() {}
    assert_send_sync::<Balancer<String, Endpoint>>();
    assert_send_sync::<palisade_load_balancer::BalancerService<String, Endpoint>>();
    fn assert_send<T: Send>() {}
    assert_send::<palisade_load_balancer::future::ResponseFuture<BoxFuture<()>>>();
    assert_clone::<Balancer<String, Endpoint>>();
    assert_clone::<palisade_load_balancer::BalancerService<String, Endpoint>>();
}

#[tokio::test(start_paused = true)]
async fn follows_a_discover_stream() {
    use tower::discover::Change;
    let a = Endpoint::new(0, Duration::from_millis(1));
    let b = Endpoint::new(1, Duration::from_millis(1));
    let changes = futures::stream::iter(vec![
        Ok::<_, Infallible>(Change::Insert(0usize, a)),
        Ok(Change::Insert(1, b)),
        Ok(Change::Remove(0)),
    ]);
    let balancer: Balancer<usize, Endpoint> = Balancer::builder().build().unwrap();
    balancer.clone().follow(changes).await.unwrap();
    assert_eq!(balancer.keys(), vec![1]);
    assert_eq!(call(&balancer).await.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_classifier_of_ours_decides_what_fails() {
    use palisade_core::classify::Outcome;
    // Endpoint 0 answers `Ok(0)`, which this classifier calls a failure (think HTTP 503);
    // endpoint 1's answers are ignored (think 404): they neither fail nor heal it.
    let endpoints = fleet(2, Duration::from_millis(1));
    let balancer = balancer_over(&endpoints, Balancer::builder().strategy(RoundRobin::new()));
    let classify = |result: Result<&usize, &palisade_core::BoxError>| match result {
        Ok(0) => Outcome::Failure,
        Ok(_) => Outcome::Ignore,
        Err(_) => Outcome::Failure,
    };
    for _ in 0..10 {
        let _ = balancer.service_with(classify).oneshot(0).await;
    }
    let snap = balancer.snapshot();
    assert_eq!(snap.endpoints[0].failures, 5);
    assert!(
        snap.endpoints[0].ejected_for.is_some(),
        "five failures in a row"
    );
    assert_eq!(snap.endpoints[1].failures, 0);
    assert!(
        snap.endpoints[1].latency < Duration::from_millis(100),
        "no penalty for Ignore"
    );
}

#[tokio::test(start_paused = true)]
async fn slow_start_ramps_a_new_endpoint_up() {
    let endpoints = fleet(4, Duration::from_millis(10));
    let balancer: Balancer<usize, Endpoint> = Balancer::builder()
        .clock(Clock::tokio())
        .seed(3)
        .slow_start(Duration::from_secs(10))
        .build()
        .unwrap();
    for e in &endpoints[..3] {
        balancer.insert(e.id, e.clone(), EndpointMeta::new());
    }
    // Past the first three's own window, so they are warm.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let share_of_new =
        |picks: &[usize]| picks.iter().filter(|&&id| id == 3).count() as f64 / picks.len() as f64;
    let mut warm = Vec::new();
    for _ in 0..100 {
        warm.push(call(&balancer).await.unwrap());
    }
    balancer.insert(3, endpoints[3].clone(), EndpointMeta::new());
    let mut first_second = Vec::new();
    for _ in 0..100 {
        first_second.push(call(&balancer).await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut after = Vec::new();
    for _ in 0..400 {
        after.push(call(&balancer).await.unwrap());
    }
    let (early, late) = (share_of_new(&first_second), share_of_new(&after));
    assert!(early < 0.05, "flooded in its first second: {early}");
    assert!(late > 0.15, "never ramped up: {late}");
    assert_eq!(share_of_new(&warm), 0.0);
}

#[tokio::test(start_paused = true)]
async fn a_service_waiting_on_a_removed_endpoint_picks_again() {
    let endpoints = fleet(2, Duration::from_millis(1));
    endpoints[0].busy.store(true, Ordering::Relaxed);
    let balancer: Balancer<usize, Endpoint> =
        Balancer::builder().clock(Clock::tokio()).build().unwrap();
    balancer.insert(0, endpoints[0].clone(), EndpointMeta::new());
    let mut svc = balancer.service();
    let mut ready = tokio_test::task::spawn(std::future::poll_fn(|cx| svc.poll_ready(cx)));
    tokio_test::assert_pending!(ready.poll());
    drop(ready);
    balancer.remove(&0);
    // The removed endpoint becomes ready: it must not take a new call.
    endpoints[0].busy.store(false, Ordering::Relaxed);
    balancer.insert(1, endpoints[1].clone(), EndpointMeta::new());
    assert_eq!(svc.ready().await.unwrap().call(0).await.unwrap(), 1);
    assert_eq!(endpoints[0].calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn hashing_keeps_affinity_and_moves_few_keys() {
    let endpoints = fleet(10, Duration::from_millis(1));
    let balancer = balancer_over(&endpoints, Balancer::builder());
    // Requests carry their key; the hash function is the caller's.
    let hashed = balancer.hashed(|req: &u32| palisade_core::rng::mix(u64::from(*req)));
    let owner_of = |svc: &palisade_load_balancer::HashService<usize, Endpoint, _>, key: u32| {
        svc.clone().oneshot(key)
    };
    let mut before = Vec::new();
    for key in 0..2_000u32 {
        before.push(owner_of(&hashed, key).await.unwrap());
    }
    // Affinity: the same key, the same endpoint.
    for key in 0..200u32 {
        assert_eq!(owner_of(&hashed, key).await.unwrap(), before[key as usize]);
    }
    balancer.remove(&3);
    let mut moved = 0;
    for key in 0..2_000u32 {
        let now = owner_of(&hashed, key).await.unwrap();
        if now != before[key as usize] {
            assert_eq!(
                before[key as usize], 3,
                "only the removed endpoint's keys move"
            );
            moved += 1;
        }
    }
    let share = f64::from(moved) / 2_000.0;
    assert!(share > 0.05 && share <= 0.1 + 0.02, "moved {share}");
    // Back in: its keys come back to it.
    balancer.insert(3, endpoints[3].clone(), EndpointMeta::new());
    for key in 0..2_000u32 {
        assert_eq!(owner_of(&hashed, key).await.unwrap(), before[key as usize]);
    }
    assert!(balancer.snapshot().endpoints.iter().all(|e| e.pending == 0));
}

#[tokio::test(start_paused = true)]
async fn hashing_routes_around_an_ejected_endpoint_and_rejects_when_empty() {
    let endpoints = fleet(3, Duration::from_millis(1));
    let balancer = balancer_over(&endpoints, Balancer::builder());
    let hashed = balancer.hashed(|req: &u32| u64::from(*req));
    // Find a key of endpoint 1, then make endpoint 1 fail until it is ejected.
    let mut key = 0;
    while hashed.clone().oneshot(key).await.unwrap() != 1 {
        key += 1;
    }
    endpoints[1].failing.store(true, Ordering::Relaxed);
    for _ in 0..5 {
        assert!(hashed.clone().oneshot(key).await.is_err());
    }
    assert!(balancer.snapshot().endpoints[1].ejected_for.is_some());
    assert_ne!(
        hashed.clone().oneshot(key).await.unwrap(),
        1,
        "moved while ejected"
    );
    // A dropped call gives its pending back, called or not.
    drop(hashed.clone().call(key));
    assert!(balancer.snapshot().endpoints.iter().all(|e| e.pending == 0));

    let empty: Balancer<usize, Endpoint> = Balancer::builder().build().unwrap();
    let err = empty
        .hashed(|req: &u32| u64::from(*req))
        .oneshot(1)
        .await
        .unwrap_err();
    assert!(err.downcast_ref::<NoHealthyEndpoints>().is_some());
}

#[tokio::test(start_paused = true)]
async fn an_empty_set_can_wait_for_its_first_endpoint() {
    let balancer: Balancer<usize, Endpoint> = Balancer::builder()
        .clock(Clock::tokio())
        .when_empty(palisade_load_balancer::WhenEmpty::Wait)
        .build()
        .unwrap();
    let mut svc = balancer.service();
    let mut ready = tokio_test::task::spawn(std::future::poll_fn(|cx| svc.poll_ready(cx)));
    tokio_test::assert_pending!(ready.poll());
    tokio_test::assert_pending!(ready.poll());
    balancer.insert(
        0,
        Endpoint::new(0, Duration::from_millis(1)),
        EndpointMeta::new(),
    );
    assert!(ready.is_woken(), "the insertion wakes the waiting task");
    tokio_test::assert_ready_ok!(ready.poll());
    drop(ready);
    assert_eq!(svc.call(0).await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_success_rate_detector_ejects_an_endpoint_failing_half_its_calls() {
    // Round robin and no consecutive-failure detector: only the success-rate detector (on by
    // default) can see that endpoint 5 fails every other call.
    let endpoints = fleet(6, Duration::from_millis(1));
    let balancer = balancer_over(
        &endpoints,
        Balancer::builder()
            .strategy(RoundRobin::new())
            .outlier_detection(OutlierDetection::new().consecutive_failures(0)),
    );
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    balancer.subscribe(move |e: &BalancerEvent<usize>| {
        if let BalancerEvent::EndpointEjected { key, .. } = e {
            sink.lock().unwrap().push(*key);
        }
    });
    for round in 0..200 {
        endpoints[5]
            .failing
            .store(round % 2 == 1, Ordering::Relaxed);
        for _ in 0..6 {
            let _ = call(&balancer).await;
        }
    }
    assert!(
        events.lock().unwrap().is_empty(),
        "judged only once the interval ends"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let _ = call(&balancer).await;
    assert_eq!(*events.lock().unwrap(), vec![5]);
    assert!(balancer.snapshot().endpoints[5].ejected_for.is_some());
}

/// tower's own `Retry`: one retry on error, no budget.
#[derive(Clone)]
struct OneRetry(bool);

impl<E> tower::retry::Policy<u32, usize, E> for OneRetry {
    type Future = std::future::Ready<()>;

    fn retry(&mut self, _: &mut u32, result: &mut Result<usize, E>) -> Option<Self::Future> {
        match result {
            Err(_) if self.0 => {
                self.0 = false;
                Some(std::future::ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &u32) -> Option<u32> {
        Some(*req)
    }
}

#[tokio::test(start_paused = true)]
async fn retries_through_towers_retry_go_to_another_endpoint_too() {
    // tower's `Retry` clones itself (and the balancer service) after the first call: the
    // clone's lineage is the endpoint just called.
    let endpoints = fleet(3, Duration::from_millis(2));
    endpoints[0].failing.store(true, Ordering::Relaxed);
    let balancer = balancer_over(
        &endpoints,
        Balancer::builder()
            .strategy(Random)
            .outlier_detection(OutlierDetection::disabled()),
    );
    let svc = tower::retry::Retry::new(OneRetry(true), balancer.service());
    let mut failed = 0;
    for _ in 0..300 {
        if svc.clone().oneshot(0).await.is_err() {
            failed += 1;
        }
    }
    assert!(endpoints[0].calls() > 50);
    assert_eq!(failed, 0, "every retry went to a healthy endpoint");
}

/// Guards the set a service keeps between its calls (checked by the set's generation, not
/// read afresh per pick): a long-lived service sees every insertion and removal at its next
/// `poll_ready`, and lets go of a removed endpoint's service then, not before.
#[tokio::test(start_paused = true)]
async fn a_long_lived_service_follows_set_changes_and_lets_removed_endpoints_go() {
    let endpoints = fleet(1, Duration::from_millis(1));
    let balancer = balancer_over(&endpoints, Balancer::builder());
    let mut svc = balancer.service();
    // Past its first polls: it keeps the set now.
    for _ in 0..3 {
        assert_eq!(svc.ready().await.unwrap().call(0).await.unwrap(), 0);
    }
    let held = || Arc::strong_count(&endpoints[0].calls);
    // This test's handle and the set's entry.
    assert_eq!(held(), 2);
    balancer.insert(
        1,
        Endpoint::new(1, Duration::from_millis(1)),
        EndpointMeta::new(),
    );
    assert!(balancer.remove(&0));
    // The service still keeps the set it last picked from.
    assert_eq!(held(), 2);
    for _ in 0..3 {
        assert_eq!(svc.ready().await.unwrap().call(0).await.unwrap(), 1);
    }
    assert_eq!(
        held(),
        1,
        "the removed endpoint's service is let go at the next poll"
    );
    assert_eq!(endpoints[0].calls(), 3);
}
