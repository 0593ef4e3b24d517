//! Idle probing (`BalancerBuilder::idle_probe_interval`): an endpoint priced out by its failure
//! penalty is offered one call at a time, so its recovery is found by traffic, in paused time.
#![cfg(not(loom))]

use palisade_core::clock::Clock;
use palisade_load_balancer::{Balancer, BalancerBuilder, EndpointMeta, OutlierDetection};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Answers after 10 ms, or fails after 1 ms while `failing`; records when each call started
/// and how many are in flight at most.
#[derive(Clone)]
struct Endpoint {
    id: usize,
    failing: Arc<AtomicBool>,
    starts: Arc<Mutex<Vec<Instant>>>,
    in_flight: Arc<AtomicU64>,
    max_in_flight: Arc<AtomicU64>,
}

impl Endpoint {
    fn new(id: usize) -> Endpoint {
        Endpoint {
            id,
            failing: Arc::default(),
            starts: Arc::default(),
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
        }
    }

    fn calls_since(&self, since: Instant) -> usize {
        self.starts
            .lock()
            .unwrap()
            .iter()
            .filter(|t| **t >= since)
            .count()
    }

    fn first_call_since(&self, since: Instant) -> Option<Duration> {
        self.starts
            .lock()
            .unwrap()
            .iter()
            .find(|t| **t >= since)
            .map(|t| *t - since)
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

impl Service<()> for Endpoint {
    type Response = usize;
    type Error = palisade_core::BoxError;
    type Future = BoxFuture<Result<usize, palisade_core::BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: ()) -> Self::Future {
        self.starts.lock().unwrap().push(Instant::now());
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_in_flight.fetch_max(now, Ordering::Relaxed);
        let failing = self.failing.load(Ordering::Relaxed);
        let (id, in_flight) = (self.id, Arc::clone(&self.in_flight));
        Box::pin(async move {
            let result = if failing {
                tokio::time::sleep(Duration::from_millis(1)).await;
                Err(Box::new(Boom) as palisade_core::BoxError)
            } else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(id)
            };
            in_flight.fetch_sub(1, Ordering::Relaxed);
            result
        })
    }
}

fn balancer(endpoints: &[Endpoint], builder: BalancerBuilder) -> Balancer<usize, Endpoint> {
    // Ejection out of the way: these tests are about the penalty's pricing alone.
    let balancer = builder
        .clock(Clock::tokio())
        .seed(7)
        .outlier_detection(OutlierDetection::new().consecutive_failures(1_000))
        .build()
        .unwrap();
    for e in endpoints {
        balancer.insert(e.id, e.clone(), EndpointMeta::new());
    }
    balancer
}

/// Open-loop traffic: `per_ms` calls every millisecond for `duration` (with 10 ms calls,
/// `10 × per_ms` in flight over the fleet), each through a fresh root service (no retry
/// lineage).
async fn drive(balancer: &Balancer<usize, Endpoint>, duration: Duration, per_ms: usize) {
    let end = Instant::now() + duration;
    let mut calls = Vec::new();
    while Instant::now() < end {
        for _ in 0..per_ms {
            let service = balancer.service();
            calls.push(tokio::spawn(async move {
                let _ = service.oneshot(()).await;
            }));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for call in calls {
        call.await.unwrap();
    }
}

/// Warms the fleet, then makes endpoint 0 fail calls until one failure has been charged, and
/// returns the instant of that failure's end.
async fn charge_one_failure(balancer: &Balancer<usize, Endpoint>, e0: &Endpoint) -> Instant {
    drive(balancer, Duration::from_millis(100), 1).await;
    e0.failing.store(true, Ordering::Relaxed);
    for _ in 0..200 {
        let _ = balancer.service().oneshot(()).await;
        if balancer.snapshot().endpoints[0].failures > 0 {
            return Instant::now();
        }
    }
    panic!("endpoint 0 never failed");
}

/// The demo's defect: an endpoint that recovered right after a failed call stayed idle while
/// its peers queued (a surge: 15 calls in flight on each), because its penalty priced it above
/// them and an idle endpoint earns no successes to pay it off. With idle probing it takes a
/// probe one interval after the failure and its share back within a few calls.
#[tokio::test(start_paused = true)]
async fn a_recovered_endpoint_priced_out_by_its_penalty_is_probed_and_back_in_a_few_calls() {
    let endpoints: Vec<_> = (0..3).map(Endpoint::new).collect();
    let balancer = balancer(&endpoints, Balancer::builder());
    let failed_at = charge_one_failure(&balancer, &endpoints[0]).await;
    // It recovers at once.
    endpoints[0].failing.store(false, Ordering::Relaxed);
    drive(&balancer, Duration::from_millis(400), 3).await;
    let first = endpoints[0]
        .first_call_since(failed_at)
        .expect("the recovered endpoint was probed");
    // Not before the probe interval (100 ms), and within a few picks after it.
    assert!(
        (Duration::from_millis(100)..Duration::from_millis(110)).contains(&first),
        "first probe {first:?} after the failure"
    );
    // 1 200 calls in 400 ms, a third of them its share once back: it has most of it.
    let share = endpoints[0].calls_since(failed_at);
    assert!(share >= 100, "calls to the recovered endpoint: {share}");
}

/// With idle probing off, the same endpoint waits out the penalty's decay: no call for the
/// whole 400 ms (the behaviour before the fix).
#[tokio::test(start_paused = true)]
async fn without_idle_probing_a_recovered_endpoint_waits_for_the_decay() {
    let endpoints: Vec<_> = (0..3).map(Endpoint::new).collect();
    let balancer = balancer(&endpoints, Balancer::builder().idle_probe_interval(None));
    let failed_at = charge_one_failure(&balancer, &endpoints[0]).await;
    endpoints[0].failing.store(false, Ordering::Relaxed);
    drive(&balancer, Duration::from_millis(400), 3).await;
    assert_eq!(endpoints[0].calls_since(failed_at), 0);
}

/// A lightly loaded fleet does not need the penalised endpoint: one call at a time, its peers
/// answer at once (a cost of one latency, below the eight a probe is priced at), so it gets no
/// probe and its penalty decays as before.
#[tokio::test(start_paused = true)]
async fn a_quiet_client_sends_no_probes() {
    let endpoints: Vec<_> = (0..3).map(Endpoint::new).collect();
    let balancer = balancer(&endpoints, Balancer::builder());
    let failed_at = charge_one_failure(&balancer, &endpoints[0]).await;
    for _ in 0..40 {
        let _ = balancer.service().oneshot(()).await;
    }
    assert!(Instant::now() - failed_at >= Duration::from_millis(400));
    assert_eq!(endpoints[0].calls_since(failed_at), 0);
}

/// A failing endpoint is probed with one call in flight at most and one per interval: 4 s of a
/// surge (24 000 calls, 30 in flight on each healthy endpoint, well above the eight-deep queue
/// a probe is priced at, whatever peak the endpoint's latency estimate kept) send it about 40.
#[tokio::test(start_paused = true)]
async fn a_failing_endpoint_is_probed_one_call_at_a_time_once_per_interval() {
    let endpoints: Vec<_> = (0..3).map(Endpoint::new).collect();
    let balancer = balancer(&endpoints, Balancer::builder());
    let failed_at = charge_one_failure(&balancer, &endpoints[0]).await;
    endpoints[0].max_in_flight.store(0, Ordering::Relaxed);
    drive(&balancer, Duration::from_secs(4), 6).await;
    assert_eq!(endpoints[0].max_in_flight.load(Ordering::Relaxed), 1);
    let starts = endpoints[0].starts.lock().unwrap().clone();
    let probes: Vec<_> = starts.into_iter().filter(|t| *t >= failed_at).collect();
    // Each probe ends (fails) 1 ms after it starts; the next waits at least an interval from
    // there, and is sent within a few picks once it may be.
    let mut previous_end = failed_at;
    for (k, probe) in probes.iter().enumerate() {
        let after = *probe - previous_end;
        assert!(
            after >= Duration::from_millis(100) && after <= Duration::from_millis(115),
            "probe {k} came {after:?} after the last failure"
        );
        previous_end = *probe + Duration::from_millis(1);
    }
    assert!((35..=40).contains(&probes.len()), "{}", probes.len());
    // The healthy endpoints answered everything else.
    let served = endpoints[1].calls_since(failed_at) + endpoints[2].calls_since(failed_at);
    assert!(served >= 23_950, "{served}");
}

/// A zero interval is refused by name.
#[test]
fn a_zero_idle_probe_interval_is_refused() {
    let error = Balancer::builder()
        .idle_probe_interval(Some(Duration::ZERO))
        .build::<u8, Endpoint>()
        .unwrap_err();
    assert_eq!(error.field(), "idle_probe_interval");
}
