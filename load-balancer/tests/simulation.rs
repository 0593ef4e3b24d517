//! Fault simulations in tokio's paused time: a fleet of three queueing endpoints
//! (`palisade_core::test_util::QueueingEndpoint`: 4 workers, a FIFO queue of 64, 8–12 ms
//! service times), four open-loop clients, each with its own stack of the recommended order
//! with **default configurations**: palisade-retry (default budget) over its own balancer
//! (default strategy and health). Each request has a 2 s caller deadline.
//!
//! (d) adds zones: two endpoints in the clients' local zone, two in another. (e) puts a
//! bulkhead between the retry and the balancer and offers 3x the fleet's capacity. (f) replays
//! the demo's script (one endpoint failing, then healthy exactly when a 3x surge starts).
//!
//! The same scenarios run through tower's `p2c::Balance` over `PeakEwma` behind a `Buffer`
//! (with the same retry above) for comparison; run with `--nocapture` to see both sets of
//! figures.
#![cfg(not(loom))]

use palisade_core::BoxError;
use palisade_core::clock::Clock;
use palisade_core::rng::SplitMix64;
use palisade_core::test_util::{FleetReply, Phase, QueueingEndpoint, ServiceTime};
use palisade_load_balancer::{Balancer, EndpointMeta};
use palisade_retry::RetryPolicy;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt};

type Stack = BoxCloneService<(), FleetReply, BoxError>;

const CLIENTS: usize = 4;
const RATE_PER_CLIENT: f64 = 100.0;
const DEADLINE: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
struct Record {
    /// When the open-loop schedule issues the request. Phases are judged by it: tokio's timer
    /// has a resolution of 1 ms, so a request due at 9.9995 s is sent at 10.000 s (`issued`),
    /// and judged by `issued` a request of the surge's rate would count as one after it.
    arrival: Duration,
    /// When the client actually sent it (latencies are measured from here).
    issued: Duration,
    done: Duration,
    ok: bool,
    endpoint: Option<Arc<str>>,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn fleet(phases: [&[Phase]; 3]) -> Vec<QueueingEndpoint> {
    phases
        .iter()
        .enumerate()
        .map(|(i, phases)| {
            let mut builder = QueueingEndpoint::builder()
                .name(format!("e{i}"))
                .workers(4)
                .queue(64)
                .service_time(ServiceTime::uniform(
                    Duration::from_millis(8),
                    Duration::from_millis(12),
                ))
                .seed(100 + i as u64);
            for phase in phases.iter() {
                builder = builder.phase(*phase);
            }
            builder.build()
        })
        .collect()
}

fn retry(client: usize) -> RetryPolicy {
    RetryPolicy::builder()
        .clock(Clock::tokio())
        .seed(client as u64)
        .build()
        .unwrap()
}

/// Palisade: retry over a default balancer, one per client.
fn palisade_stacks(
    endpoints: &[QueueingEndpoint],
) -> (Vec<Balancer<usize, QueueingEndpoint>>, Vec<Stack>) {
    palisade_stacks_with(endpoints, false)
}

/// As [`palisade_stacks`], with the built-in per-endpoint breakers (`fleet_breaker`) when
/// `breakers`.
fn palisade_stacks_with(
    endpoints: &[QueueingEndpoint],
    breakers: bool,
) -> (Vec<Balancer<usize, QueueingEndpoint>>, Vec<Stack>) {
    (0..CLIENTS)
        .map(|client| {
            let mut builder = Balancer::builder()
                .clock(Clock::tokio())
                .seed(client as u64);
            if breakers {
                builder = builder.endpoint_breaker(palisade_load_balancer::fleet_breaker());
            }
            let balancer = builder.build().unwrap();
            for (key, endpoint) in endpoints.iter().enumerate() {
                balancer.insert(key, endpoint.clone(), EndpointMeta::new());
            }
            let stack = ServiceBuilder::new()
                .layer(retry(client).layer())
                .service(balancer.service());
            (balancer, BoxCloneService::new(stack))
        })
        .unzip()
}

/// tower: the same retry over `Buffer(p2c::Balance(PeakEwma))`, one per client.
fn tower_stacks(endpoints: &[QueueingEndpoint]) -> Vec<Stack> {
    (0..CLIENTS)
        .map(|client| {
            let stack = ServiceBuilder::new()
                .layer(retry(client).layer())
                .service(tower_balance(endpoints));
            BoxCloneService::new(stack)
        })
        .collect()
}

/// `Buffer(p2c::Balance(PeakEwma))` over the endpoints, with tower's usual settings (30 ms
/// default RTT, 10 s decay).
fn tower_balance(endpoints: &[QueueingEndpoint]) -> Stack {
    use tower::balance::p2c::Balance;
    use tower::discover::ServiceList;
    use tower::load::{CompleteOnResponse, PeakEwma};
    let list: Vec<_> = endpoints
        .iter()
        .map(|e| {
            PeakEwma::new(
                e.clone(),
                Duration::from_millis(30),
                10.0e9,
                CompleteOnResponse::default(),
            )
        })
        .collect();
    let balance: Balance<_, ()> = Balance::new(ServiceList::new::<()>(list));
    BoxCloneService::new(tower::buffer::Buffer::new(balance, 1024))
}

/// Open-loop traffic: each client issues `RATE_PER_CLIENT` requests a second (jittered
/// spacing) for `length`, each with the caller deadline. `during(t)` runs between issues.
async fn drive(
    stacks: &[Stack],
    length: Duration,
    seed: u64,
    during: impl FnMut(Duration),
) -> Vec<Record> {
    drive_at(stacks, length, seed, during, |_| 1.0).await
}

/// As [`drive`], with the rate multiplied by `load(t)` at time `t`.
async fn drive_at(
    stacks: &[Stack],
    length: Duration,
    seed: u64,
    mut during: impl FnMut(Duration),
    load: impl Fn(Duration) -> f64,
) -> Vec<Record> {
    let start = Instant::now();
    let records = Arc::new(Mutex::new(Vec::new()));
    let mut rng = SplitMix64::new(seed);
    let base_spacing = 1.0 / (RATE_PER_CLIENT * stacks.len() as f64);
    let mut next = 0.0f64;
    let mut tasks = Vec::new();
    let mut i = 0usize;
    while secs(next) < length {
        tokio::time::sleep_until(start + secs(next)).await;
        during(start.elapsed());
        let svc = stacks[i % stacks.len()].clone();
        i += 1;
        let records = Arc::clone(&records);
        let issued = start.elapsed();
        let arrival = secs(next);
        tasks.push(tokio::spawn(async move {
            let result = tokio::time::timeout(DEADLINE, svc.oneshot(())).await;
            let (ok, endpoint) = match result {
                Ok(Ok(reply)) => (true, Some(reply.endpoint)),
                _ => (false, None),
            };
            records.lock().unwrap().push(Record {
                arrival,
                issued,
                done: start.elapsed(),
                ok,
                endpoint,
            });
        }));
        next += base_spacing / load(secs(next)) * (0.5 + rng.next_f64());
    }
    for task in tasks {
        task.await.expect("no panic in a request");
    }
    let mut records = std::mem::take(&mut *records.lock().unwrap());
    records.sort_by_key(|r| r.issued);
    records
}

fn success_rate(records: &[Record], from: Duration, until: Duration) -> f64 {
    let window: Vec<_> = records
        .iter()
        .filter(|r| r.arrival >= from && r.arrival < until)
        .collect();
    window.iter().filter(|r| r.ok).count() as f64 / window.len().max(1) as f64
}

fn p99(records: &[Record]) -> Duration {
    let mut latencies: Vec<_> = records
        .iter()
        .filter(|r| r.ok)
        .map(|r| r.done - r.issued)
        .collect();
    latencies.sort();
    latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)]
}

fn share_of(endpoints: &[QueueingEndpoint], index: usize) -> f64 {
    let total: u64 = endpoints.iter().map(|e| e.stats().calls).sum();
    endpoints[index].stats().calls as f64 / total as f64
}

const FOREVER: Duration = Duration::from_secs(1_000_000);

async fn baseline_p99(tower: bool) -> Duration {
    let endpoints = fleet([&[], &[], &[]]);
    let stacks = if tower {
        tower_stacks(&endpoints)
    } else {
        palisade_stacks(&endpoints).1
    };
    p99(&drive(&stacks, secs(10.0), 1, |_| {}).await)
}

async fn one_slow_endpoint(tower: bool) -> (f64, f64, Duration) {
    let slow = [Phase::slow(Duration::ZERO, FOREVER, 10.0)];
    let endpoints = fleet([&[], &[], &slow]);
    let stacks = if tower {
        tower_stacks(&endpoints)
    } else {
        palisade_stacks(&endpoints).1
    };
    let records = drive(&stacks, secs(10.0), 2, |_| {}).await;
    (
        share_of(&endpoints, 2),
        success_rate(&records, Duration::ZERO, FOREVER),
        p99(&records),
    )
}

#[tokio::test(start_paused = true)]
async fn a_ten_times_slower_endpoint_gets_little_traffic() {
    let healthy = baseline_p99(false).await;
    let (share, success, slow_p99) = one_slow_endpoint(false).await;
    let tower_healthy = baseline_p99(true).await;
    let (t_share, t_success, t_p99) = one_slow_endpoint(true).await;
    println!(
        "(a) one endpoint 10x slow: palisade share {:.2} %, success {:.3} %, p99 {:?} \
         (all-healthy p99 {:?}, ratio {:.2}); tower p2c+PeakEwma+Buffer share {:.2} %, \
         success {:.3} %, p99 {:?} (all-healthy {:?}, ratio {:.2})",
        share * 100.0,
        success * 100.0,
        slow_p99,
        healthy,
        slow_p99.as_secs_f64() / healthy.as_secs_f64(),
        t_share * 100.0,
        t_success * 100.0,
        t_p99,
        tower_healthy,
        t_p99.as_secs_f64() / tower_healthy.as_secs_f64(),
    );
    assert!(share <= 0.03, "slow endpoint share {share}");
    assert!(success >= 0.999, "success {success}");
    assert!(
        slow_p99.as_secs_f64() <= 1.3 * healthy.as_secs_f64(),
        "p99 {slow_p99:?} against {healthy:?} all healthy"
    );
}

async fn one_failing_endpoint(tower: bool, breakers: bool) -> (f64, Option<Duration>, f64) {
    // Endpoint 2 fails every call in 1 ms from 5 s to 15 s.
    let failing = [Phase::failing(
        secs(5.0),
        secs(15.0),
        Duration::from_millis(1),
    )];
    let endpoints = fleet([&[], &[], &failing]);
    let stacks = if tower {
        tower_stacks(&endpoints)
    } else {
        palisade_stacks_with(&endpoints, breakers).1
    };
    let records = drive(&stacks, secs(25.0), 3, |_| {}).await;
    let phase = success_rate(&records, secs(5.0), secs(15.0));
    let back = records
        .iter()
        .filter(|r| r.ok && r.done >= secs(15.0) && r.endpoint.as_deref() == Some("e2"))
        .map(|r| r.done - secs(15.0))
        .min();
    let late: Vec<_> = records.iter().filter(|r| r.issued >= secs(18.0)).collect();
    let late_share = late
        .iter()
        .filter(|r| r.endpoint.as_deref() == Some("e2"))
        .count() as f64
        / late.len() as f64;
    (phase, back, late_share)
}

#[tokio::test(start_paused = true)]
async fn a_fast_failing_endpoint_is_covered_and_comes_back() {
    let (phase, back, late_share) = one_failing_endpoint(false, false).await;
    let (t_phase, t_back, t_late) = one_failing_endpoint(true, false).await;
    let (b_phase, b_back, b_late) = one_failing_endpoint(false, true).await;
    println!(
        "(b) the same with the built-in endpoint breakers (fleet_breaker): success over the \
         phase {:.3} %, back after {:?}, share from 3 s after {:.1} %",
        b_phase * 100.0,
        b_back,
        b_late * 100.0,
    );
    assert!(b_phase >= 0.999, "with endpoint breakers: {b_phase}");
    println!(
        "(b) one endpoint failing in 1 ms for 10 s: palisade success over the phase {:.3} %, \
         first success of the recovered endpoint {:?} after recovery, its share from 3 s \
         after {:.1} %; tower p2c+PeakEwma+Buffer success {:.3} %, back after {:?}, share \
         {:.1} %",
        phase * 100.0,
        back,
        late_share * 100.0,
        t_phase * 100.0,
        t_back,
        t_late * 100.0,
    );
    assert!(phase >= 0.999, "success over the failing phase {phase}");
    let back = back.expect("the endpoint came back");
    assert!(back <= Duration::from_secs(2), "back after {back:?}");
    assert!(late_share > 0.2, "in rotation again: {late_share}");
}

#[tokio::test(start_paused = true)]
async fn endpoints_come_and_go_while_traffic_flows() {
    let endpoints = fleet([&[], &[], &[]]);
    let spare = QueueingEndpoint::builder()
        .name("e3")
        .workers(4)
        .service_time(ServiceTime::uniform(
            Duration::from_millis(8),
            Duration::from_millis(12),
        ))
        .build();
    let (balancers, stacks) = palisade_stacks(&endpoints);
    let mut step = 0u64;
    let mut changes = 0;
    let records = drive(&stacks, secs(10.0), 4, |now| {
        // Every 100 ms, each client's balancer loses one endpoint and gets another back.
        let due = now.as_millis() as u64 / 100;
        while step < due {
            step += 1;
            for balancer in &balancers {
                let out = (step % 4) as usize;
                let back = ((step + 2) % 4) as usize;
                balancer.remove(&out);
                let endpoint = if back == 3 {
                    spare.clone()
                } else {
                    endpoints[back].clone()
                };
                balancer.insert(back, endpoint, EndpointMeta::new());
                changes += 1;
            }
        }
    })
    .await;
    let failed = records.iter().filter(|r| !r.ok).count();
    println!(
        "(c) {} set changes under traffic: {} calls, {} failed",
        changes,
        records.len(),
        failed
    );
    assert!(changes > 300);
    assert_eq!(failed, 0, "no call lost");
    for balancer in &balancers {
        assert!(balancer.snapshot().endpoints.iter().all(|e| e.pending == 0));
    }
    let (tower_calls, tower_failed) = tower_set_changes().await;
    println!(
        "(c) tower p2c+PeakEwma+Buffer over a Discover stream, the same changes: {tower_calls} \
         calls, {tower_failed} failed"
    );
}

/// Scenario (c) through tower: per client, `Buffer(p2c::Balance(PeakEwma))` over a `Discover`
/// channel that receives the same removals and insertions.
async fn tower_set_changes() -> (usize, usize) {
    use futures::StreamExt;
    use tower::balance::p2c::Balance;
    use tower::discover::Change;
    use tower::load::{CompleteOnResponse, PeakEwma};
    type Peak = PeakEwma<QueueingEndpoint>;
    let endpoints = fleet([&[], &[], &[]]);
    let spare = QueueingEndpoint::builder()
        .name("e3")
        .workers(4)
        .service_time(ServiceTime::uniform(
            Duration::from_millis(8),
            Duration::from_millis(12),
        ))
        .build();
    let peak = |e: &QueueingEndpoint| {
        PeakEwma::new(
            e.clone(),
            Duration::from_millis(30),
            10.0e9,
            CompleteOnResponse::default(),
        )
    };
    let mut senders = Vec::new();
    let stacks: Vec<Stack> = (0..CLIENTS)
        .map(|client| {
            let (tx, rx) = futures::channel::mpsc::unbounded::<Change<usize, Peak>>();
            for (key, endpoint) in endpoints.iter().enumerate() {
                tx.unbounded_send(Change::Insert(key, peak(endpoint)))
                    .unwrap();
            }
            senders.push(tx);
            let balance: Balance<_, ()> = Balance::new(rx.map(Ok::<_, std::convert::Infallible>));
            let inner: Stack = BoxCloneService::new(tower::buffer::Buffer::new(balance, 1024));
            BoxCloneService::new(
                ServiceBuilder::new()
                    .layer(retry(client).layer())
                    .service(inner),
            )
        })
        .collect();
    let mut step = 0u64;
    let records = drive(&stacks, secs(10.0), 4, |now| {
        let due = now.as_millis() as u64 / 100;
        while step < due {
            step += 1;
            for tx in &senders {
                let out = (step % 4) as usize;
                let back = ((step + 2) % 4) as usize;
                let endpoint = if back == 3 { &spare } else { &endpoints[back] };
                tx.unbounded_send(Change::Remove(out)).unwrap();
                tx.unbounded_send(Change::Insert(back, peak(endpoint)))
                    .unwrap();
            }
        }
    })
    .await;
    (records.len(), records.iter().filter(|r| !r.ok).count())
}

#[tokio::test(start_paused = true)]
async fn a_whole_zone_down_spills_to_the_other_zone() {
    // Zone "a" (local to every client): e0, e1; zone "b": e2, e3. Zone a refuses every call
    // from 5 s to 15 s.
    let down = [Phase::down(secs(5.0), secs(15.0))];
    // Phases run from a fleet's creation: each run gets a fresh fleet.
    let make_fleet = || -> Vec<QueueingEndpoint> {
        fleet([&down, &down, &[]])
            .into_iter()
            .chain(fleet([&[], &[], &[]]).into_iter().skip(2))
            .collect()
    };
    let endpoints = make_fleet();
    let zone = |i: usize| if i < 2 { "a" } else { "b" };
    let stacks: Vec<Stack> = (0..CLIENTS)
        .map(|client| {
            let balancer = Balancer::builder()
                .clock(Clock::tokio())
                .seed(client as u64)
                .local_zone("a")
                .build()
                .unwrap();
            for (key, endpoint) in endpoints.iter().enumerate() {
                balancer.insert(key, endpoint.clone(), EndpointMeta::new().zone(zone(key)));
            }
            BoxCloneService::new(
                ServiceBuilder::new()
                    .layer(retry(client).layer())
                    .service(balancer.service()),
            )
        })
        .collect();
    let records = drive(&stacks, secs(25.0), 5, |_| {}).await;
    let tower_records = drive(&tower_stacks(&make_fleet()), secs(25.0), 5, |_| {}).await;
    // Zone b's two endpoints are both named "e2" (each the third of a fleet of three); zone a
    // answers only as "e0" or "e1".
    let local_share_of = |records: &[Record], from: f64, until: f64| {
        let window: Vec<_> = records
            .iter()
            .filter(|r| r.ok && r.issued >= secs(from) && r.issued < secs(until))
            .collect();
        window
            .iter()
            .filter(|r| matches!(r.endpoint.as_deref(), Some("e0" | "e1")))
            .count() as f64
            / window.len() as f64
    };
    let before = local_share_of(&records, 1.0, 5.0);
    let during = local_share_of(&records, 6.0, 15.0);
    let after = local_share_of(&records, 18.0, 25.0);
    let success = success_rate(&records, secs(5.0), secs(15.0));
    println!(
        "(d) zone a (local) down for 10 s: local share before {:.1} %, during {:.2} %, 3 s \
         after {:.1} %; success over the outage {:.3} %; tower p2c+PeakEwma+Buffer (no \
         zones): local share before {:.1} %, during {:.2} %, success over the outage {:.3} %",
        before * 100.0,
        during * 100.0,
        after * 100.0,
        success * 100.0,
        local_share_of(&tower_records, 1.0, 5.0) * 100.0,
        local_share_of(&tower_records, 6.0, 15.0) * 100.0,
        success_rate(&tower_records, secs(5.0), secs(15.0)) * 100.0,
    );
    assert!(before > 0.6, "the local zone is preferred: {before}");
    assert!(during < 0.01, "traffic spilled to zone b: {during}");
    assert!(success >= 0.999, "{success}");
    assert!(after > 0.6, "the local zone is preferred again: {after}");
}

/// Retry over a bulkhead over the balancer, per client; tower's balancer when `tower`.
fn bulkhead_stacks(endpoints: &[QueueingEndpoint], adaptive: bool, tower: bool) -> Vec<Stack> {
    (0..CLIENTS)
        .map(|client| {
            let balancer = Balancer::builder()
                .clock(Clock::tokio())
                .seed(client as u64)
                .build()
                .unwrap();
            for (key, endpoint) in endpoints.iter().enumerate() {
                balancer.insert(key, endpoint.clone(), EndpointMeta::new());
            }
            let builder = palisade_bulkhead::Bulkhead::builder().clock(Clock::tokio());
            let bulkhead = if adaptive {
                builder
                    .adaptive(
                        palisade_bulkhead::adaptive::Gradient2::builder()
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap()
            } else {
                // 4 clients x 5 = 20 calls in flight for the fleet's 12 workers: enough to keep
                // every worker busy, too few to build long queues. Reject mode (the default).
                builder.max_concurrent_calls(5).build().unwrap()
            };
            let inner = if tower {
                tower_balance(endpoints)
            } else {
                BoxCloneService::new(balancer.service())
            };
            BoxCloneService::new(
                ServiceBuilder::new()
                    .layer(retry(client).layer())
                    .layer(bulkhead.layer())
                    .service(inner),
            )
        })
        .collect()
}

async fn surge(adaptive: bool, tower: bool) -> (f64, Duration, Duration, f64, Duration) {
    let endpoints = fleet([&[], &[], &[]]);
    let unloaded = p99(&drive(
        &bulkhead_stacks(&endpoints, adaptive, tower),
        secs(5.0),
        6,
        |_| {},
    )
    .await);
    let endpoints = fleet([&[], &[], &[]]);
    let stacks = bulkhead_stacks(&endpoints, adaptive, tower);
    // 400 requests/s, then 3 600/s (3x the fleet's 1 200/s) from 5 s to 10 s.
    let records = drive_at(
        &stacks,
        secs(15.0),
        7,
        |_| {},
        |t| {
            if t >= secs(5.0) && t < secs(10.0) {
                9.0
            } else {
                1.0
            }
        },
    )
    .await;
    let in_surge: Vec<_> = records
        .iter()
        .filter(|r| r.ok && r.done >= secs(5.0) && r.done < secs(10.0))
        .cloned()
        .collect();
    // Workers x seconds / mean service time: what the fleet can serve in the surge.
    let capacity = 12.0 * 5.0 / 0.010;
    (
        in_surge.len() as f64 / capacity,
        p99(&in_surge),
        unloaded,
        success_rate(&records, secs(10.0), secs(11.0)),
        // How long after the surge the last failure was issued.
        records
            .iter()
            .filter(|r| !r.ok && r.arrival >= secs(10.0))
            .map(|r| r.arrival - secs(10.0))
            .max()
            .unwrap_or_default(),
    )
}

#[tokio::test(start_paused = true)]
async fn a_surge_of_three_times_capacity_is_shed_at_the_bulkhead() {
    let mut fixed = None;
    for (adaptive, tower) in [(false, false), (true, false), (false, true)] {
        let (served, surge_p99, unloaded, after, last_failure) = surge(adaptive, tower).await;
        let kind = match (adaptive, tower) {
            (true, _) => "adaptive (Gradient2 defaults) bulkhead over Palisade's balancer",
            (false, false) => "fixed (5 per client) bulkhead over Palisade's balancer",
            (false, true) => "fixed (5 per client) bulkhead over tower p2c+PeakEwma+Buffer",
        };
        let ratio = surge_p99.as_secs_f64() / unloaded.as_secs_f64();
        println!(
            "(e) 3x surge for 5 s, {kind}: successes {:.1} % of \
             the fleet's capacity, success p99 {surge_p99:?} ({ratio:.2}x the unloaded \
             {unloaded:?}), success in the first second after {:.2} %, last failure issued \
             {last_failure:?} after the surge",
            served * 100.0,
            after * 100.0,
        );
        if !adaptive && !tower {
            fixed = Some((served, ratio, last_failure, after));
        }
    }
    let (served, ratio, last_failure, after) = fixed.unwrap();
    assert!(served >= 0.98, "{served}");
    assert!(ratio <= 3.0, "{ratio}");
    assert!(last_failure <= secs(1.0), "{last_failure:?}");
    // The few failures left after the surge are calls that found their client's bulkhead
    // still full of surge work for the first milliseconds (`BulkheadFull`); the balancer holds
    // no ejection, penalty or open breaker from the surge (its endpoints never failed).
    assert!(
        after >= 0.99,
        "success in the first second after the surge: {after}"
    );
}

/// The demo's script, shortened: one client at 480 requests/s over the fleet, `e1` failing every
/// call in 1 ms for 8 s, healthy again exactly when a 3x surge (3 600/s) starts; the demo's
/// stack: retry (2 s deadline, 500 ms per attempt) → default bulkhead (25) → default balancer.
/// Returns when `e1` first answered after the surge started, and its share of the successes
/// finished in the surge's first 0.5 s.
async fn demo_script(idle_probe: Option<Duration>) -> (Option<Duration>, f64) {
    let failing = [Phase::failing(
        secs(1.0),
        secs(9.0),
        Duration::from_millis(1),
    )];
    let endpoints = fleet([&[], &failing, &[]]);
    let balancer = Balancer::builder()
        .clock(Clock::tokio())
        .seed(2026)
        .idle_probe_interval(idle_probe)
        .build()
        .unwrap();
    for (key, endpoint) in endpoints.iter().enumerate() {
        balancer.insert(key, endpoint.clone(), EndpointMeta::new());
    }
    let retry = RetryPolicy::builder()
        .clock(Clock::tokio())
        .deadline(Duration::from_secs(2))
        .attempt_timeout(Duration::from_millis(500))
        .seed(2026)
        .build()
        .unwrap();
    let bulkhead = palisade_bulkhead::Bulkhead::builder()
        .clock(Clock::tokio())
        .build()
        .unwrap();
    let stack: Stack = BoxCloneService::new(
        ServiceBuilder::new()
            .layer(retry.layer())
            .layer(bulkhead.layer())
            .service(balancer.service()),
    );
    let records = drive_at(
        &[stack],
        secs(10.0),
        2026,
        |_| {},
        |t| {
            if t >= secs(9.0) { 36.0 } else { 4.8 }
        },
    )
    .await;
    let first = records
        .iter()
        .filter(|r| r.ok && r.issued >= secs(9.0) && r.endpoint.as_deref() == Some("e1"))
        .map(|r| r.done - secs(9.0))
        .min();
    let early: Vec<_> = records
        .iter()
        .filter(|r| r.ok && r.done >= secs(9.0) && r.done < secs(9.5))
        .collect();
    let share = early
        .iter()
        .filter(|r| r.endpoint.as_deref() == Some("e1"))
        .count() as f64
        / early.len() as f64;
    (first, share)
}

#[tokio::test(start_paused = true)]
async fn the_demo_script_finds_a_recovered_endpoint_at_the_surge() {
    let (first, share) = demo_script(Some(Duration::from_millis(100))).await;
    let (off_first, off_share) = demo_script(None).await;
    println!(
        "(f) the demo's script (e1 fails 8 s, then a 3x surge): e1's first success {first:?} \
         after the surge began, its share of the first 0.5 s {:.1} %; without idle probing \
         {off_first:?}, {:.1} %",
        share * 100.0,
        off_share * 100.0,
    );
    let first = first.expect("e1 answered in the surge");
    assert!(first <= Duration::from_millis(100), "{first:?}");
    assert!(share >= 0.25, "{share}");
}
