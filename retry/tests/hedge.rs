//! Virtual-time tests of the hedge layer, and the 5 %-slow tail-latency simulation.

#![cfg(not(loom))]

use palisade_core::clock::Clock;
use palisade_core::test_util::{MockBackend, RandomProfile, Script, Step};
use palisade_retry::{CallOutcome, HedgePolicy, HedgePolicyBuilder, RetryBudget, RetryEvent};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn fixed(delay: Duration) -> HedgePolicyBuilder {
    HedgePolicy::builder()
        .delay(delay)
        .clock(Clock::tokio())
        .unlimited()
}

#[tokio::test(start_paused = true)]
async fn a_slow_first_copy_loses_to_the_hedge_and_is_cancelled() {
    let policy = fixed(ms(20)).build().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    policy.subscribe(move |e: &RetryEvent| sink.lock().unwrap().push(*e));
    let backend = MockBackend::new(Script::sequence([
        Step::ok().after(ms(100)),
        Step::ok().after(ms(10)),
    ]));
    let start = Instant::now();
    let reply = policy
        .layer()
        .layer(backend.clone())
        .oneshot(5u8)
        .await
        .unwrap();
    assert_eq!((reply.call, reply.request), (1, 5));
    assert_eq!(start.elapsed(), ms(30));
    let stats = backend.stats();
    assert_eq!((stats.calls, stats.cancelled, stats.in_flight), (2, 1, 0));
    assert_eq!(
        *log.lock().unwrap(),
        [
            RetryEvent::HedgeSent { hedge: 1 },
            RetryEvent::CallFinished {
                outcome: CallOutcome::Success,
                attempts: 2
            }
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_fast_answer_sends_no_hedge() {
    let policy = fixed(ms(20)).build().unwrap();
    let backend = MockBackend::new(Script::always(Step::ok().after(ms(5))));
    policy
        .layer()
        .layer(backend.clone())
        .oneshot(())
        .await
        .unwrap();
    assert_eq!(backend.stats().calls, 1);
}

#[tokio::test(start_paused = true)]
async fn up_to_max_hedges_copies_go_out_one_delay_apart() {
    let policy = fixed(ms(10)).max_hedges(2).build().unwrap();
    let backend = MockBackend::new(Script::sequence([
        Step::hang(),
        Step::hang(),
        Step::ok().after(ms(5)),
    ]));
    let start = Instant::now();
    let reply = policy
        .layer()
        .layer(backend.clone())
        .oneshot(())
        .await
        .unwrap();
    assert_eq!(reply.call, 2);
    assert_eq!(start.elapsed(), ms(25));
    assert_eq!(backend.stats().cancelled, 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_first_copy_is_hedged_at_once_and_failures_surface_when_all_fail() {
    let policy = fixed(ms(50)).build().unwrap();
    let backend =
        MockBackend::new(Script::sequence([Step::fail()]).then(Script::always(Step::ok())));
    let start = Instant::now();
    let reply = policy
        .layer()
        .layer(backend.clone())
        .oneshot(())
        .await
        .unwrap();
    assert_eq!(reply.call, 1);
    assert_eq!(start.elapsed(), Duration::ZERO);

    let backend = MockBackend::new(Script::always(Step::fail()));
    let err = policy
        .layer()
        .layer(backend.clone())
        .oneshot(())
        .await
        .unwrap_err();
    assert!(err.is::<palisade_core::test_util::MockError>());
    assert_eq!(backend.stats().calls, 2);
}

#[tokio::test(start_paused = true)]
async fn hedges_draw_on_the_retry_budget() {
    let budget = RetryBudget::builder()
        .min_retries_per_sec(0)
        .percent_can_retry(0.5)
        .clock(Clock::tokio())
        .build()
        .unwrap();
    let policy = fixed(ms(10)).budget(budget.clone()).build().unwrap();
    let backend = MockBackend::new(Script::always(Step::ok().after(ms(30))));
    let svc = policy.layer().layer(backend.clone());
    // One deposit is half a hedge: refused. The second request makes it whole.
    svc.clone().oneshot(()).await.unwrap();
    assert_eq!(backend.stats().calls, 1);
    svc.oneshot(()).await.unwrap();
    assert_eq!(backend.stats().calls, 3);
    assert_eq!(budget.available(), 0);
}

#[tokio::test(start_paused = true)]
async fn non_idempotent_requests_are_never_hedged() {
    let policy = fixed(ms(10))
        .retry_requests_if(|r: &&str| *r == "GET")
        .build()
        .unwrap();
    let backend = MockBackend::new(Script::always(Step::ok().after(ms(30))));
    policy
        .layer()
        .layer(backend.clone())
        .oneshot("POST")
        .await
        .unwrap();
    assert_eq!(backend.stats().calls, 1);
    policy
        .layer()
        .layer(backend.clone())
        .oneshot("GET")
        .await
        .unwrap();
    assert_eq!(backend.stats().calls, 3);
}

struct Tail {
    p50: Duration,
    p99: Duration,
    extra_load: f64,
}

const REQUESTS: usize = 4000;

/// `REQUESTS` requests 2 ms apart; the backend answers in 8–12 ms, 5 % of calls in 100 ms.
async fn tail(hedge: Option<HedgePolicyBuilder>) -> Tail {
    let backend = MockBackend::new(Script::random(
        6,
        RandomProfile {
            latency: (ms(8), ms(12)),
            slow_rate: 0.05,
            slow_latency: ms(100),
            ..RandomProfile::default()
        },
    ));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(REQUESTS)));
    let mut tasks = Vec::new();
    let hedge = hedge.map(|b| b.clock(Clock::tokio()).build().unwrap());
    for _ in 0..REQUESTS {
        let latencies = latencies.clone();
        let backend = backend.clone();
        let hedge = hedge.clone();
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            match hedge {
                Some(h) => drop(h.layer().layer(backend).oneshot(()).await.unwrap()),
                None => drop(backend.oneshot(()).await.unwrap()),
            }
            latencies.lock().unwrap().push(start.elapsed());
        }));
        tokio::time::sleep(ms(2)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut l = latencies.lock().unwrap().clone();
    l.sort();
    let at = |p: f64| l[((p / 100.0) * (l.len() - 1) as f64).round() as usize];
    Tail {
        p50: at(50.0),
        p99: at(99.0),
        extra_load: backend.stats().calls as f64 / REQUESTS as f64 - 1.0,
    }
}

#[tokio::test(start_paused = true)]
async fn hedging_at_p95_cuts_the_tail_within_the_budget() {
    let plain = tail(None).await;
    let p95 = tail(Some(HedgePolicy::builder().percentile(95.0))).await;
    let p90 = tail(Some(HedgePolicy::builder().percentile(90.0))).await;
    let fixed15 = tail(Some(HedgePolicy::builder().delay(ms(15)))).await;
    for (label, t) in [
        ("no hedge", &plain),
        ("hedge at p95", &p95),
        ("hedge at p90", &p90),
        ("hedge at 15 ms", &fixed15),
    ] {
        println!(
            "{label:>15}: p50 {:>6.1?} p99 {:>6.1?} ({:.2}x the 12 ms slowest fast call) extra load {:>5.1}%",
            t.p50,
            t.p99,
            t.p99.as_secs_f64() / 0.012,
            t.extra_load * 100.0
        );
    }
    assert!(plain.p99 >= ms(100), "the tail is the slow calls");
    // A hedged slow call ends at (delay ≈ p95 of 8–12 ms, bucket-rounded) + a fresh fast call.
    assert!(p95.p99 <= ms(30), "p99 {:?}", p95.p99);
    // Extra load within the default budget: 20 % of requests (+ the 10/s floor).
    assert!(p95.extra_load <= 0.20, "extra load {}", p95.extra_load);
    assert!(p95.extra_load >= 0.04, "the slow 5 % are hedged");
}

#[tokio::test(start_paused = true)]
async fn a_budget_shared_with_retry_is_not_credited_twice() {
    let budget = RetryBudget::builder()
        .min_retries_per_sec(0)
        .percent_can_retry(1.0)
        .clock(Clock::tokio())
        .build()
        .unwrap();
    let policy = fixed(ms(10))
        .budget_shared_with_retry(budget.clone())
        .build()
        .unwrap();
    let backend = MockBackend::new(Script::always(Step::ok().after(ms(30))));
    policy
        .layer()
        .layer(backend.clone())
        .oneshot(())
        .await
        .unwrap();
    assert_eq!(backend.stats().calls, 1, "no deposit here, so no hedge");
    budget.deposit(); // what the retry layer would have deposited
    policy
        .layer()
        .layer(backend.clone())
        .oneshot(())
        .await
        .unwrap();
    assert_eq!(backend.stats().calls, 3);
}

/// A service that reserves a slot in `poll_ready` (as a bulkhead, a breaker's probe or a
/// rate limiter's token does) and spends it in `call`; a ready clone dropped without a call
/// gives it back. `reserved` counts the reservations held and not yet spent.
struct Reserving {
    reserved: Arc<std::sync::atomic::AtomicUsize>,
    holding: bool,
}

impl Clone for Reserving {
    /// A clone is not ready (tower's convention): it holds no reservation.
    fn clone(&self) -> Self {
        Reserving {
            reserved: self.reserved.clone(),
            holding: false,
        }
    }
}

impl Drop for Reserving {
    fn drop(&mut self) {
        if self.holding {
            // Relaxed: a test counter.
            self.reserved
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl tower::Service<()> for Reserving {
    type Response = ();
    type Error = std::io::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), std::io::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        if !self.holding {
            self.holding = true;
            // Relaxed: a test counter.
            self.reserved
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Self::Future {
        assert!(self.holding, "poll_ready must be called first");
        self.holding = false;
        // Relaxed: a test counter.
        self.reserved
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(())
        })
    }
}

/// Regression (issue 9): a hedge made the layers below reserve (poll_ready) before it asked
/// its budget, and when refused it held the reservation until the primary ended. Now the
/// budget is asked first, and a refused hedge holds nothing.
#[tokio::test(start_paused = true)]
async fn a_hedge_refused_by_its_budget_holds_nothing_below() {
    let empty = RetryBudget::builder()
        .min_retries_per_sec(0)
        .percent_can_retry(0.0)
        .clock(Clock::tokio())
        .build()
        .unwrap();
    let policy = HedgePolicy::builder()
        .delay(ms(10))
        .clock(Clock::tokio())
        .budget(empty)
        .build()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    policy.subscribe(move |e: &RetryEvent| sink.lock().unwrap().push(*e));
    let reserved = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let svc = policy.layer().layer(Reserving {
        reserved: reserved.clone(),
        holding: false,
    });
    let call = tokio::spawn(svc.oneshot(()));
    tokio::time::sleep(ms(50)).await; // the hedge delay passed; the primary is still running
    assert_eq!(
        *log.lock().unwrap(),
        [RetryEvent::BudgetExhausted { attempt: 2 }]
    );
    assert_eq!(
        reserved.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "the refused hedge reserved nothing below"
    );
    call.await.unwrap().unwrap();
    assert_eq!(reserved.load(std::sync::atomic::Ordering::Relaxed), 0);
}
