//! A proptest fault simulation of the whole recommended stack (issue 9 §7), in tokio's paused
//! time, over the core mock backend with scripted failures, latencies, an outage, hangs and
//! panics, with callers that give up (drop their future) part way.
//!
//! The stack: a retry with its budget, a deadline and (sometimes) an attempt timeout
//! outermost; a circuit breaker, a rate limiter and a bulkhead below it, in each order the
//! facade documents shows:
//!
//! - A: retry → bulkhead → breaker → client (DESIGN.md's order without a rate limit);
//! - B: retry → breaker → rate limit → bulkhead → client (the README's stack);
//! - C: retry → rate limit → breaker → client (a partner's quota counted per attempt);
//! - D: retry → rate limit → bulkhead → breaker → client (the facade's order for one
//!   endpoint, its fallback left out: it would turn every answer into a success);
//! - E: retry → rate limit → bulkhead → balancer → per endpoint: breaker in gate mode →
//!   client, three endpoints, the outage on one (the facade's full recommended order);
//! - F: fallback → D (the facade's example, with its fallback layer).
//!
//! Properties, for every case:
//!
//! 1. every caller gets exactly one answer (a result, or its own cancellation), within the
//!    retry's deadline;
//! 2. every permit comes back: the bulkhead has nothing in flight and nobody waiting, the
//!    backend has no call left in flight, the balancer counts nothing pending, every breaker
//!    takes and decides its probes once its open wait has passed, and the limiter's bucket
//!    refills to its burst;
//! 3. no backend sees more concurrent calls than the bulkhead's limit (all but C);
//! 4. the backend never sees more calls than the limiter admits: `burst + rate · T` (all but A);
//! 5. a healthy backend never trips the breaker, however tight the limiter or the bulkhead
//!    below it;
//! 6. no call waits on a local rejection: a call refused by a layer before it reached the
//!    backend answers in zero virtual time (or the wait-mode layers' own `max_wait`);
//! 7. the retry budget holds: the attempts that reach the backends exceed the callers by no
//!    more retries than the budget's reserve and share allow;
//! 8. the fallback (F) answers every failure and refusal (but those it refuses beyond its
//!    concurrency cap) and gives its slots back.

#![cfg(all(
    feature = "circuit-breaker",
    feature = "bulkhead",
    feature = "rate-limit",
    feature = "retry"
))]

mod support;

use palisade::fallback::Fallback;
use palisade_bulkhead::Bulkhead;
use palisade_circuit_breaker::{CircuitBreaker, CircuitBreakerEvent, CircuitBreakerService, State};
use palisade_core::BoxError;
use palisade_core::Clock;
use palisade_core::rejection::RejectionKind;
use palisade_core::test_util::{MockBackend, Reply, Script, Step, proptest_config, run_paused};
use palisade_load_balancer::{Balancer, EndpointMeta};
use palisade_rate_limit::RateLimiter;
use palisade_retry::{Backoff, RetryBudget, RetryPolicy};
use proptest::prelude::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

/// Which stack below the retry (always outermost), outer to inner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    /// retry → bulkhead → breaker → client
    BulkheadBreaker,
    /// retry → breaker → rate limit → bulkhead → client
    BreakerLimiterBulkhead,
    /// retry → rate limit → breaker → client
    LimiterBreaker,
    /// retry → rate limit → bulkhead → breaker → client (the facade's order for one
    /// endpoint)
    LimiterBulkheadBreaker,
    /// retry → rate limit → bulkhead → balancer → per endpoint: breaker (gate mode) → client,
    /// over three endpoints (the facade's full recommended order)
    LimiterBulkheadBalancerBreakers,
    /// fallback → retry → rate limit → bulkhead → breaker → client (the facade's example,
    /// with its fallback layer)
    FallbackLimiterBulkheadBreaker,
}

impl Order {
    fn has_bulkhead(self) -> bool {
        !matches!(self, Order::LimiterBreaker)
    }

    fn has_limiter(self) -> bool {
        !matches!(self, Order::BulkheadBreaker)
    }

    fn endpoints(self) -> usize {
        if self == Order::LimiterBulkheadBalancerBreakers {
            3
        } else {
            1
        }
    }
}

/// How the mock backend behaves.
#[derive(Clone, Debug)]
struct BackendCfg {
    failure_pct: u64,
    hang_pct: u64,
    panic_pct: u64,
    /// Latency drawn uniformly from `0..=max_latency_ms`.
    max_latency_ms: u64,
    /// An outage `(from, length)` in ms after the start.
    outage: Option<(u64, u64)>,
}

impl BackendCfg {
    fn healthy(max_latency_ms: u64) -> Self {
        BackendCfg {
            failure_pct: 0,
            hang_pct: 0,
            panic_pct: 0,
            max_latency_ms,
            outage: None,
        }
    }
}

#[derive(Clone, Debug)]
struct Case {
    seed: u64,
    calls: u32,
    /// Callers arrive `0..=max_gap_ms` apart.
    max_gap_ms: u64,
    /// The share of callers that drop their future after `0..=200` ms.
    cancel_pct: u64,
    backend: BackendCfg,
    bulkhead_limit: usize,
    bulkhead_wait_ms: Option<u64>,
    limiter_rate: u32,
    limiter_burst: u32,
    limiter_wait_ms: Option<u64>,
    attempts: u32,
    /// The retry budget (1 s window): a reserve of this many retries a second…
    budget_min_rps: u32,
    /// …plus this share (in %) of the requests.
    budget_percent: u32,
    backoff_ms: u64,
    deadline_ms: u64,
    attempt_timeout_ms: Option<u64>,
    breaker_window: u32,
    breaker_minimum: u32,
    breaker_threshold: f64,
    breaker_open_ms: u64,
    breaker_probes: u32,
}

fn backend_strategy() -> impl Strategy<Value = BackendCfg> {
    (
        0u64..=60,
        0u64..=5,
        0u64..=3,
        0u64..=40,
        proptest::option::of((0u64..=1_000, 50u64..=1_500)),
    )
        .prop_map(
            |(failure_pct, hang_pct, panic_pct, max_latency_ms, outage)| BackendCfg {
                failure_pct,
                hang_pct,
                panic_pct,
                max_latency_ms,
                outage,
            },
        )
}

fn case_strategy(backend: BoxedStrategy<BackendCfg>) -> impl Strategy<Value = Case> {
    let load = (any::<u64>(), 100u32..=300, 0u64..=10, 0u64..=15);
    let limits = (
        1usize..=8,
        proptest::option::of(1u64..=50),
        20u32..=400,
        1u32..=20,
        proptest::option::of(1u64..=30),
    );
    let retry = (
        1u32..=4,
        (0u32..=5, 0u32..=20),
        0u64..=50,
        200u64..=2_000,
        proptest::option::of(20u64..=400),
    );
    let breaker = (5u32..=40, 2u32..=20, 20u32..=80, 100u64..=2_000, 1u32..=5);
    (backend, load, limits, retry, breaker).prop_map(
        |(
            backend,
            (seed, calls, max_gap_ms, cancel_pct),
            (bulkhead_limit, bulkhead_wait_ms, limiter_rate, limiter_burst, limiter_wait_ms),
            (
                attempts,
                (budget_min_rps, budget_percent),
                backoff_ms,
                deadline_ms,
                attempt_timeout_ms,
            ),
            (breaker_window, breaker_minimum, threshold, breaker_open_ms, breaker_probes),
        )| Case {
            seed,
            calls,
            max_gap_ms,
            cancel_pct,
            backend,
            bulkhead_limit,
            bulkhead_wait_ms,
            limiter_rate,
            limiter_burst,
            limiter_wait_ms,
            attempts,
            budget_min_rps,
            budget_percent,
            backoff_ms,
            deadline_ms,
            attempt_timeout_ms,
            breaker_window,
            breaker_minimum,
            breaker_threshold: f64::from(threshold),
            breaker_open_ms,
            breaker_probes,
        },
    )
}

/// SplitMix64: the seeded randomness of the backend script and of the callers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max`.
    fn upto(&mut self, max: u64) -> u64 {
        self.next() % (max + 1)
    }

    fn pct(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
}

/// Records which requests reached the backend, and when each call arrived there.
#[derive(Clone)]
struct Tap {
    inner: MockBackend,
    seen: Arc<Mutex<HashSet<u32>>>,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl Service<u32> for Tap {
    type Response = Reply<u32>;
    type Error = BoxError;
    type Future = futures::future::MapErr<
        palisade_core::test_util::MockFuture<u32>,
        fn(palisade_core::test_util::MockError) -> BoxError,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Service::<u32>::poll_ready(&mut self.inner, cx).map_err(Into::into)
    }

    fn call(&mut self, request: u32) -> Self::Future {
        use futures::TryFutureExt;
        self.seen.lock().unwrap().insert(request);
        self.arrivals.lock().unwrap().push(Instant::now());
        let into: fn(palisade_core::test_util::MockError) -> BoxError = Into::into;
        self.inner.call(request).map_err(into)
    }
}

/// How one caller ended.
#[derive(Debug)]
#[allow(
    dead_code,
    reason = "the descriptions are read through `Debug`, in assertion messages"
)]
enum End {
    Ok,
    /// The fallback's answer.
    Fallback,
    /// A local rejection of a Palisade layer (other than the retry's deadline).
    Rejected(String),
    /// Any other error (the backend's, a timeout, the deadline).
    Failed(String),
    /// The caller dropped its future.
    Cancelled,
    /// The inner service panicked, and the panic reached the caller.
    Panicked,
}

struct Answer {
    id: u32,
    end: End,
    took: Duration,
}

/// Silences the scripted panics of the mock backend (they are expected), and only them.
fn quiet_scripted_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let scripted = info
                .payload()
                .downcast_ref::<String>()
                .is_some_and(|m| m.starts_with("mock backend: scripted panic"));
            if !scripted {
                default(info);
            }
        }));
    });
}

/// What the fallback answers.
const FALLBACK: Reply<u32> = Reply {
    request: u32::MAX,
    call: u64::MAX,
};

/// The window of the retry budget.
const BUDGET_TTL: Duration = Duration::from_secs(1);

/// The cap of the breakers' growing open wait.
const MAX_OPEN_WAIT: Duration = Duration::from_secs(8);

/// The handles of one case.
struct Handles {
    retry: RetryPolicy,
    /// One per endpoint.
    breakers: Vec<CircuitBreaker>,
    limiter: RateLimiter,
    bulkhead: Bulkhead,
}

fn build_breaker(case: &Case, endpoint: usize) -> CircuitBreaker {
    CircuitBreaker::builder()
        .name("stack")
        .count_window(case.breaker_window)
        .minimum_calls(case.breaker_minimum)
        .failure_rate_threshold(case.breaker_threshold)
        .wait_duration_in_open(Duration::from_millis(case.breaker_open_ms))
        .open_backoff(2.0, MAX_OPEN_WAIT)
        .permitted_calls_in_half_open(case.breaker_probes)
        .jitter_seed(case.seed ^ endpoint as u64)
        .clock(Clock::tokio())
        .build()
        .expect("valid breaker")
}

fn build(case: &Case, endpoints: usize) -> Handles {
    let mut retry = RetryPolicy::builder()
        .name("stack")
        .max_attempts(case.attempts)
        .backoff(Backoff::constant(Duration::from_millis(case.backoff_ms)))
        .deadline(Duration::from_millis(case.deadline_ms))
        .budget(
            RetryBudget::builder()
                .ttl(BUDGET_TTL)
                .min_retries_per_sec(case.budget_min_rps)
                .percent_can_retry(f64::from(case.budget_percent) / 100.0)
                .clock(Clock::tokio())
                .build()
                .expect("valid budget"),
        )
        .clock(Clock::tokio())
        .seed(case.seed);
    if let Some(ms) = case.attempt_timeout_ms {
        retry = retry.attempt_timeout(Duration::from_millis(ms));
    }
    let mut limiter = RateLimiter::builder()
        .name("stack")
        .rate(case.limiter_rate, Duration::from_secs(1))
        .burst(case.limiter_burst)
        .clock(Clock::tokio());
    if let Some(ms) = case.limiter_wait_ms {
        limiter = limiter.wait(Duration::from_millis(ms));
    }
    let mut bulkhead = Bulkhead::builder()
        .name("stack")
        .max_concurrent_calls(case.bulkhead_limit)
        .clock(Clock::tokio());
    if let Some(ms) = case.bulkhead_wait_ms {
        bulkhead = bulkhead.max_wait(Duration::from_millis(ms));
    }
    Handles {
        retry: retry.build().expect("valid retry policy"),
        breakers: (0..endpoints).map(|i| build_breaker(case, i)).collect(),
        limiter: limiter.build().expect("valid limiter"),
        bulkhead: bulkhead.build().expect("valid bulkhead"),
    }
}

/// Sends the case's callers through `svc`; every caller's answer.
async fn drive<S>(case: &Case, svc: S) -> Result<Vec<Answer>, TestCaseError>
where
    S: Service<u32, Response = Reply<u32>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let mut rng = Rng(case.seed ^ 0xca11_e125);
    let mut tasks = Vec::with_capacity(case.calls as usize);
    for id in 0..case.calls {
        tokio::time::sleep(Duration::from_millis(rng.upto(case.max_gap_ms))).await;
        let cancel_after = rng
            .pct(case.cancel_pct)
            .then(|| Duration::from_millis(rng.upto(200)));
        let call = svc.clone().oneshot(id);
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let result = match cancel_after {
                Some(after) => tokio::time::timeout(after, call).await.ok(),
                None => Some(call.await),
            };
            let end = match result {
                None => End::Cancelled,
                Some(Ok(reply)) if reply.request == FALLBACK.request => End::Fallback,
                Some(Ok(_)) => End::Ok,
                // The deadline is the caller's own limit, not a layer's refusal.
                Some(Err(e)) => match support::rejection_kind(&e) {
                    Some(RejectionKind::DeadlineExceeded) | None => {
                        End::Failed(support::describe(&e))
                    }
                    Some(_) => End::Rejected(support::describe(&e)),
                },
            };
            (end, start.elapsed())
        }));
    }
    // Every caller must answer; a minute of virtual time is far beyond any deadline.
    let limit = Instant::now() + Duration::from_secs(60);
    let mut answers = Vec::with_capacity(tasks.len());
    for (id, task) in (0..).zip(tasks) {
        match tokio::time::timeout_at(limit, task).await {
            Ok(Ok((end, took))) => answers.push(Answer { id, end, took }),
            Ok(Err(join)) if join.is_panic() => answers.push(Answer {
                id,
                end: End::Panicked,
                took: Duration::ZERO,
            }),
            Ok(Err(join)) => return Err(TestCaseError::fail(format!("caller {id}: {join}"))),
            Err(_) => {
                return Err(TestCaseError::fail(format!(
                    "caller {id} got no answer within 60 s of virtual time"
                )));
            }
        }
    }
    Ok(answers)
}

/// The backend of endpoint `endpoint`; the outage, if any, hits endpoint 0 only (with one
/// endpoint, the only one).
fn make_backend(case: &Case, endpoint: usize) -> MockBackend {
    let rng = Mutex::new(Rng(case.seed ^ (endpoint as u64).wrapping_mul(0x5851_f42d)));
    let cfg = case.backend.clone();
    let script = Script::from_fn(move |_ctx| {
        let mut rng = rng.lock().unwrap();
        let latency = Duration::from_millis(rng.upto(cfg.max_latency_ms));
        let roll = rng.upto(99);
        let step = if roll < cfg.hang_pct {
            Step::hang()
        } else if roll < cfg.hang_pct + cfg.panic_pct {
            // Half the panics inside `call`, half when the future is polled.
            if rng.pct(50) {
                Step::panic_in_call()
            } else {
                Step::panic()
            }
        } else if roll < cfg.hang_pct + cfg.panic_pct + cfg.failure_pct {
            Step::fail()
        } else {
            Step::ok()
        };
        step.after(latency)
    });
    let mut backend = MockBackend::new(script);
    if let (0, Some((from, len))) = (endpoint, case.backend.outage) {
        backend = backend.with_outage(
            Duration::from_millis(from),
            Duration::from_millis(from + len),
        );
    }
    backend
}

/// Which properties a run checks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Checks {
    All,
    /// All but property 6 (refusal timing), for the orders whose refusal timing runs as a test
    /// of its own (`*_refusals_are_immediate`), so a failure names the property.
    AllButRefusalTiming,
}

fn run_case(order: Order, case: &Case) -> Result<(), TestCaseError> {
    run_checks(order, case, Checks::All)
}

fn run_checks(order: Order, case: &Case, checks: Checks) -> Result<(), TestCaseError> {
    quiet_scripted_panics();
    run_paused(async {
        let endpoints = order.endpoints();
        let handles = build(case, endpoints);
        let backends: Vec<MockBackend> = (0..endpoints).map(|i| make_backend(case, i)).collect();
        let seen: Arc<Mutex<HashSet<u32>>> = Arc::default();
        let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let taps: Vec<Tap> = backends
            .iter()
            .map(|backend| Tap {
                inner: backend.clone(),
                seen: Arc::clone(&seen),
                arrivals: Arc::clone(&arrivals),
            })
            .collect();
        let transitions = Arc::new(AtomicU64::new(0));
        for breaker in &handles.breakers {
            let transitions = Arc::clone(&transitions);
            breaker.subscribe(move |event: &CircuitBreakerEvent| {
                if matches!(event, CircuitBreakerEvent::StateTransition { .. }) {
                    // Relaxed: a statistic, read after every caller has answered.
                    transitions.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let Handles {
            retry,
            breakers,
            limiter,
            bulkhead,
        } = &handles;
        let breaker = &breakers[0];
        let tap = &taps[0];
        let fallback = Fallback::builder(|_primary: Result<Reply<u32>, BoxError>| async {
            Ok::<_, BoxError>(FALLBACK)
        })
        .name("stack")
        .build()
        .expect("a fallback");
        let balancer = Balancer::builder()
            .name("stack")
            .clock(Clock::tokio())
            .seed(case.seed)
            .build::<usize, CircuitBreakerService<Tap>>()
            .expect("a balancer");

        let answers = match order {
            Order::BulkheadBreaker => {
                let svc = ServiceBuilder::new()
                    .layer(retry.layer())
                    .layer(bulkhead.layer())
                    .layer(breaker.layer())
                    .service(tap.clone());
                drive(case, svc).await?
            }
            Order::BreakerLimiterBulkhead => {
                let svc = ServiceBuilder::new()
                    .layer(retry.layer())
                    .layer(breaker.layer())
                    .layer(limiter.layer())
                    .layer(bulkhead.layer())
                    .service(tap.clone());
                drive(case, svc).await?
            }
            Order::LimiterBreaker => {
                let svc = ServiceBuilder::new()
                    .layer(retry.layer())
                    .layer(limiter.layer())
                    .layer(breaker.layer())
                    .service(tap.clone());
                drive(case, svc).await?
            }
            Order::FallbackLimiterBulkheadBreaker => {
                let svc = ServiceBuilder::new()
                    .layer(fallback.layer())
                    .layer(retry.layer())
                    .layer(limiter.layer())
                    .layer(bulkhead.layer())
                    .layer(breaker.layer())
                    .service(tap.clone());
                drive(case, svc).await?
            }
            Order::LimiterBulkheadBreaker => {
                let svc = ServiceBuilder::new()
                    .layer(retry.layer())
                    .layer(limiter.layer())
                    .layer(bulkhead.layer())
                    .layer(breaker.layer())
                    .service(tap.clone());
                drive(case, svc).await?
            }
            Order::LimiterBulkheadBalancerBreakers => {
                for (i, (breaker, tap)) in breakers.iter().zip(&taps).enumerate() {
                    let endpoint = breaker.layer().gate().layer(tap.clone());
                    balancer.insert(i, endpoint, EndpointMeta::new());
                }
                let svc = ServiceBuilder::new()
                    .layer(retry.layer())
                    .layer(limiter.layer())
                    .layer(bulkhead.layer())
                    .service(balancer.service());
                drive(case, svc).await?
            }
        };

        // Read before the probe check below moves the breakers.
        // Relaxed: see the listener.
        let transitions = transitions.load(Ordering::Relaxed);
        let states: Vec<State> = breakers.iter().map(CircuitBreaker::state).collect();

        // 1. One answer per caller, none later than the deadline.
        prop_assert_eq!(answers.len(), case.calls as usize);
        let deadline = Duration::from_millis(case.deadline_ms);
        let seen = seen.lock().unwrap().clone();
        let local_wait = Duration::from_millis(
            case.bulkhead_wait_ms
                .filter(|_| order.has_bulkhead())
                .unwrap_or(0)
                + case
                    .limiter_wait_ms
                    .filter(|_| order.has_limiter())
                    .unwrap_or(0),
        );
        // With gate-mode breakers under the balancer, a caller may wait for a gate to open
        // (bounded by the longest open wait): a wait for readiness, not for a refusal. A
        // refusal decided after it is still immediate once decided.
        let gate_wait = if order == Order::LimiterBulkheadBalancerBreakers {
            MAX_OPEN_WAIT
        } else {
            Duration::ZERO
        };
        for answer in &answers {
            // The deadline bounds the whole call, the caller's first wait for readiness
            // included (the retry waits for the layers below inside its future).
            if !matches!(answer.end, End::Cancelled | End::Panicked) {
                prop_assert!(
                    answer.took <= deadline + Duration::from_millis(1),
                    "caller {} answered after {:?}, past the {:?} deadline: {:?}",
                    answer.id,
                    answer.took,
                    deadline,
                    answer.end
                );
            }
            // 6. A local rejection before the backend saw the request is immediate.
            if checks == Checks::All
                && matches!(answer.end, End::Rejected(_))
                && !seen.contains(&answer.id)
            {
                prop_assert!(
                    answer.took <= local_wait + gate_wait,
                    "caller {} was refused locally after {:?} (the wait modes allow {:?}): {:?}",
                    answer.id,
                    answer.took,
                    local_wait + gate_wait,
                    answer.end
                );
            }
        }

        // 2. Every permit comes back, once every timer has run out.
        tokio::time::sleep(Duration::from_secs(30)).await;
        for backend in &backends {
            let stats = backend.stats();
            prop_assert_eq!(
                stats.in_flight,
                0,
                "backend calls still in flight: {:?}",
                stats
            );
            // 3. The bulkhead's limit held at the backend.
            if order.has_bulkhead() {
                prop_assert!(
                    stats.peak_in_flight <= case.bulkhead_limit as u64,
                    "the backend saw {} calls at once through a bulkhead of {}",
                    stats.peak_in_flight,
                    case.bulkhead_limit
                );
            }
        }
        if order == Order::FallbackLimiterBulkheadBreaker {
            // 8. The fallback answers every failure and refusal, and gives its slots back.
            let snapshot = fallback.snapshot();
            prop_assert_eq!(
                snapshot.in_flight,
                0,
                "fallback slots leaked: {:?}",
                snapshot
            );
            let errors = answers
                .iter()
                .filter(|a| matches!(a.end, End::Failed(_) | End::Rejected(_)))
                .count() as u64;
            prop_assert!(
                errors <= snapshot.fallback_rejections,
                "{} callers got an error through the fallback ({:?})",
                errors,
                snapshot
            );
        }
        if order == Order::LimiterBulkheadBalancerBreakers {
            let snapshot = balancer.snapshot();
            for endpoint in &snapshot.endpoints {
                prop_assert_eq!(
                    endpoint.pending,
                    0,
                    "balancer pending leaked: {:?}",
                    endpoint
                );
            }
        }
        if order.has_bulkhead() {
            let snapshot = bulkhead.snapshot();
            prop_assert_eq!(
                snapshot.in_flight,
                0,
                "bulkhead slots leaked: {:?}",
                snapshot
            );
            prop_assert_eq!(snapshot.waiting, 0, "bulkhead waiters left: {:?}", snapshot);
        }
        if order.has_limiter() {
            let snapshot = limiter.snapshot();
            prop_assert_eq!(
                snapshot.remaining_burst,
                case.limiter_burst,
                "limiter tokens leaked: {:?}",
                snapshot
            );
            // 4. No more calls than the limiter admits over the run. (A waiting bulkhead
            // between the limiter and the backend may bunch admitted calls up: then the
            // arrivals at the backend say nothing about the limiter.)
            let arrivals = arrivals.lock().unwrap();
            let direct = order == Order::LimiterBreaker || case.bulkhead_wait_ms.is_none();
            if let (true, Some(first), Some(last)) = (direct, arrivals.first(), arrivals.last()) {
                let span = last.duration_since(*first).as_secs_f64();
                let allowed = u64::from(case.limiter_burst)
                    + (span * f64::from(case.limiter_rate)).ceil() as u64;
                prop_assert!(
                    arrivals.len() as u64 <= allowed,
                    "{} calls reached the backend in {:.3} s through a limiter of {}/s, burst {}",
                    arrivals.len(),
                    span,
                    case.limiter_rate,
                    case.limiter_burst
                );
            }
        }
        // 7. The retry budget bounds the attempts: at most one first attempt per caller, and
        // retries within the budget's reserve per window plus its share of the requests. (Its
        // window moves in steps of a tenth of the ttl and a share can be credited in two
        // windows: the bound is loose by that much, never tighter than the budget's.)
        {
            let arrivals = arrivals.lock().unwrap();
            if let (Some(first), Some(last)) = (arrivals.first(), arrivals.last()) {
                let span = last.duration_since(*first).as_secs_f64();
                let windows = (span / (BUDGET_TTL.as_secs_f64() * 0.9)).floor() + 2.0;
                let reserve = f64::from(case.budget_min_rps) * BUDGET_TTL.as_secs_f64();
                let share = f64::from(case.budget_percent) / 100.0 * f64::from(case.calls);
                let retries = windows * reserve + 2.0 * share;
                let allowed = u64::from(case.calls) + retries.floor() as u64;
                prop_assert!(
                    arrivals.len() as u64 <= allowed,
                    "{} attempts reached the backend for {} callers in {:.3} s: more retries than \
                     a budget of {}/s + {} % allows ({})",
                    arrivals.len(),
                    case.calls,
                    span,
                    case.budget_min_rps,
                    case.budget_percent,
                    allowed
                );
            }
        }

        // The breaker's probes are all free: once its open wait has passed, probes taken now
        // and recorded as successes decide the half-open state (closed, or re-opened by the
        // failures recorded before). A probe held by a lost call would leave it half-open,
        // refusing, for good.
        for breaker in breakers {
            let mut decided = false;
            for i in 0..case.breaker_probes {
                let permit = breaker.try_acquire();
                prop_assert!(
                    permit.is_ok(),
                    "breaker probe {} refused after the run ({:?}): a probe leaked",
                    i + 1,
                    breaker.snapshot()
                );
                if let Ok(permit) = permit {
                    permit.success();
                }
                if breaker.state() != State::HalfOpen {
                    decided = true;
                    break;
                }
            }
            prop_assert!(
                decided,
                "{} successful probes left the breaker half-open ({:?}): a probe leaked",
                case.breaker_probes,
                breaker.snapshot()
            );
        }

        // 5. A healthy backend never trips the breaker.
        let healthy = case.backend.failure_pct == 0
            && case.backend.hang_pct == 0
            && case.backend.panic_pct == 0
            && case.backend.outage.is_none()
            && case
                .attempt_timeout_ms
                .is_none_or(|t| t > case.backend.max_latency_ms);
        if healthy {
            prop_assert_eq!(
                transitions,
                0,
                "a healthy backend tripped the breaker ({:?}); answers: {} ok, {} rejected",
                breaker.snapshot(),
                answers.iter().filter(|a| matches!(a.end, End::Ok)).count(),
                answers
                    .iter()
                    .filter(|a| matches!(a.end, End::Rejected(_)))
                    .count()
            );
            prop_assert!(states.iter().all(|s| *s == State::Closed), "{:?}", states);
            for answer in &answers {
                if let End::Failed(why) = &answer.end {
                    prop_assert!(
                        why.contains("deadline") || why.contains("timed out"),
                        "caller {} failed against a healthy backend: {}",
                        answer.id,
                        why
                    );
                }
            }
        }
        Ok(())
    })
}

fn faulty() -> BoxedStrategy<BackendCfg> {
    backend_strategy().boxed()
}

/// A healthy backend (latency only), under tight limits.
fn healthy() -> BoxedStrategy<BackendCfg> {
    (0u64..=30).prop_map(BackendCfg::healthy).boxed()
}

proptest! {
    #![proptest_config(proptest_config(32))]

    #[test]
    fn retry_bulkhead_breaker(case in case_strategy(faulty())) {
        run_case(Order::BulkheadBreaker, &case)?;
    }

    #[test]
    fn retry_breaker_limiter_bulkhead(case in case_strategy(faulty())) {
        run_checks(Order::BreakerLimiterBulkhead, &case, Checks::AllButRefusalTiming)?;
    }

    #[test]
    fn retry_breaker_limiter_bulkhead_refusals_are_immediate(case in case_strategy(faulty())) {
        run_case(Order::BreakerLimiterBulkhead, &case)?;
    }

    #[test]
    fn retry_limiter_breaker(case in case_strategy(faulty())) {
        run_case(Order::LimiterBreaker, &case)?;
    }

    #[test]
    fn fallback_retry_limiter_bulkhead_breaker(case in case_strategy(faulty())) {
        run_case(Order::FallbackLimiterBulkheadBreaker, &case)?;
    }

    #[test]
    fn retry_limiter_bulkhead_breaker(case in case_strategy(faulty())) {
        run_checks(Order::LimiterBulkheadBreaker, &case, Checks::AllButRefusalTiming)?;
    }

    #[test]
    fn retry_limiter_bulkhead_breaker_refusals_are_immediate(case in case_strategy(faulty())) {
        run_case(Order::LimiterBulkheadBreaker, &case)?;
    }

    #[test]
    fn retry_limiter_bulkhead_balancer_breakers(case in case_strategy(faulty())) {
        run_checks(
            Order::LimiterBulkheadBalancerBreakers,
            &case,
            Checks::AllButRefusalTiming,
        )?;
    }

    #[test]
    fn retry_limiter_bulkhead_balancer_breakers_refusals_are_immediate(
        case in case_strategy(faulty()),
    ) {
        run_case(Order::LimiterBulkheadBalancerBreakers, &case)?;
    }

    #[test]
    fn healthy_backend_never_trips_the_breaker(
        case in case_strategy(healthy()),
        order in prop_oneof![
            Just(Order::BulkheadBreaker),
            Just(Order::BreakerLimiterBulkhead),
            Just(Order::LimiterBreaker),
            Just(Order::LimiterBulkheadBreaker),
            Just(Order::LimiterBulkheadBalancerBreakers),
            Just(Order::FallbackLimiterBulkheadBreaker),
        ],
    ) {
        run_case(order, &case)?;
    }
}
