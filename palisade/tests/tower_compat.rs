//! Every Palisade layer under tower's own middleware (issue 9 §2): `Buffer`, p2c `Balance`,
//! `LoadShed` and `ConcurrencyLimit`.
//!
//! Each case impairs the layer (breaker open, bulkhead full, limiter empty, a retry whose
//! bulkhead below is full or whose backend is down), sends a burst of calls that the layer
//! must refuse, clears the impairment and then asserts that the stack serves again: no
//! "buffered service failed", no endpoint dropped from the balancer, and no `poll_ready` error
//! ever reached tower (tower's contract: a service whose `poll_ready` fails is discarded).
//! A layer in reject mode must also refuse in zero virtual time.

#![cfg(all(
    feature = "circuit-breaker",
    feature = "bulkhead",
    feature = "rate-limit",
    feature = "retry"
))]

mod support;

use futures::FutureExt;
use palisade_bulkhead::Bulkhead;
use palisade_circuit_breaker::CircuitBreaker;
use palisade_core::BoxError;
use palisade_core::Clock;
use palisade_core::rejection::RejectionKind;
use palisade_core::test_util::{MockBackend, MockError, Reply, Script, Step};
use palisade_rate_limit::RateLimiter;
use palisade_retry::{Backoff, RetryPolicy};
use std::time::Duration;
use support::{ReadyCounts, ReadyProbe, SeededRng, burst, describe, fire, is_buffer_failure};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::ServiceList;
use tower::limit::ConcurrencyLimit;
use tower::load::{CompleteOnResponse, PendingRequests};
use tower::load_shed::LoadShed;
use tower::load_shed::error::Overloaded;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};

/// Calls per burst: more than any impaired layer admits.
const BURST: u32 = 12;
/// Calls after the impairment is cleared, 100 ms apart.
const SERVE: u32 = 30;

/// A layer around the mock backend, type-erased.
type Endpoint = BoxCloneSyncService<u32, Reply<u32>, BoxError>;

/// What the burst must be answered with.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// One of these local rejections.
    Local(&'static [RejectionKind]),
    /// The backend's own error (its outage), after the retries.
    Backend,
    /// One of these local rejections, or the backend's own error (a probabilistic throttle
    /// lets some calls through to a backend that is down).
    LocalOrBackend(&'static [RejectionKind]),
    /// No refusal at all: the layer makes callers wait (`Pending`) and then serves them; only a
    /// wrapper that sheds on `Pending` (`LoadShed`) answers `Overloaded`.
    Gated,
}

/// One layer, configured so that it can be impaired and healed at will.
trait Fixture {
    fn new() -> Self;
    /// The layer wrapped around `backend`, boxed so the cases need not name the layer types
    /// (`tests/send_sync.rs` names them). Boxing forwards `poll_ready` and `call` unchanged.
    fn endpoint(&mut self, backend: &MockBackend) -> Endpoint;
    /// Makes the layer refuse calls (or, for the outage fixture, the backend fail).
    async fn impair(&mut self);
    /// Takes the impairment away (in virtual time).
    async fn clear(&mut self);
    fn expect(&self) -> Expect;
    /// Whether refusing a call may take virtual time (a wait mode, a retry's backoff).
    fn waits(&self) -> bool;
    /// Whether the burst through the balancer must see a refusal. A waiting bulkhead need
    /// not refuse there: the balancer keeps a slot of each endpoint reserved (tower's "reserve
    /// in `poll_ready`"), every call spends that slot at once and the next `poll_ready` waits
    /// only until that call ends.
    fn refuses_in_balance(&self) -> bool {
        true
    }
}

/// Fills every free slot of `bulkhead` with a call that holds it for `hold`, and returns once
/// they hold them. (A service that a wrapper keeps ready, such as an endpoint in tower's
/// balancer, may hold a reserved slot already: tower's "reserve in `poll_ready`".)
async fn fill(bulkhead: &Bulkhead, hold: Duration) -> Vec<JoinHandle<()>> {
    let slow = MockBackend::new(Script::always(Step::ok().after(hold)));
    let holder = bulkhead.layer().layer(slow);
    let free = bulkhead.limit() - bulkhead.in_flight();
    let tasks = (0..free)
        .map(|i| {
            let call = holder.clone().oneshot(i as u32);
            tokio::spawn(async move {
                call.await.expect("a holder call fails");
            })
        })
        .collect();
    for _ in 0..1000 {
        if bulkhead.in_flight() == bulkhead.limit() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(
        bulkhead.in_flight(),
        bulkhead.limit(),
        "the holders took every free slot"
    );
    tasks
}

async fn join_all(tasks: &mut Vec<JoinHandle<()>>) {
    for task in tasks.drain(..) {
        task.await.expect("a holder task panicked");
    }
}

// --- fixtures ---------------------------------------------------------------------------------

/// A breaker in reject mode, forced open; healed by its open wait passing (then half-open
/// probes close it).
struct BreakerReject {
    breaker: CircuitBreaker,
}

impl Fixture for BreakerReject {
    fn new() -> Self {
        let breaker = CircuitBreaker::builder()
            .name("compat")
            .count_window(10)
            .minimum_calls(5)
            .wait_duration_in_open(Duration::from_secs(1))
            .permitted_calls_in_half_open(2)
            .clock(Clock::tokio())
            .build()
            .expect("valid breaker");
        BreakerReject { breaker }
    }

    fn endpoint(&mut self, backend: &MockBackend) -> Endpoint {
        BoxCloneSyncService::new(self.breaker.layer().layer(backend.clone()))
    }

    async fn impair(&mut self) {
        self.breaker.transition_to_open();
    }

    async fn clear(&mut self) {
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }

    fn expect(&self) -> Expect {
        Expect::Local(&[RejectionKind::CircuitOpen])
    }

    fn waits(&self) -> bool {
        false
    }
}

/// A breaker in gate mode, open: callers wait (`Pending`) for the open wait to pass, then the
/// half-open probes close it (they must not deadlock behind the gate).
struct BreakerGate {
    breaker: CircuitBreaker,
}

impl Fixture for BreakerGate {
    fn new() -> Self {
        let breaker = CircuitBreaker::builder()
            .name("compat")
            .count_window(10)
            .minimum_calls(5)
            .wait_duration_in_open(Duration::from_millis(500))
            .permitted_calls_in_half_open(2)
            .clock(Clock::tokio())
            .build()
            .expect("valid breaker");
        BreakerGate { breaker }
    }

    fn endpoint(&mut self, backend: &MockBackend) -> Endpoint {
        BoxCloneSyncService::new(self.breaker.layer().gate().layer(backend.clone()))
    }

    async fn impair(&mut self) {
        self.breaker.transition_to_open();
    }

    async fn clear(&mut self) {
        tokio::time::sleep(Duration::from_millis(600)).await;
    }

    fn expect(&self) -> Expect {
        Expect::Gated
    }

    fn waits(&self) -> bool {
        true
    }
}

/// Palisade's own balancer with its only endpoint removed: `NoHealthyEndpoints` from the
/// future; healed by putting the endpoint back.
struct BalancerEmpty {
    balancer: palisade_load_balancer::Balancer<usize, MockBackend>,
    backends: Vec<MockBackend>,
}

impl Fixture for BalancerEmpty {
    fn new() -> Self {
        let balancer = palisade_load_balancer::Balancer::builder()
            .name("compat")
            .clock(Clock::tokio())
            .seed(3)
            .build()
            .expect("valid balancer");
        BalancerEmpty {
            balancer,
            backends: Vec::new(),
        }
    }

    fn endpoint(&mut self, backend: &MockBackend) -> Endpoint {
        self.backends.push(backend.clone());
        self.balancer.insert(
            0,
            backend.clone(),
            palisade_load_balancer::EndpointMeta::new(),
        );
        BoxCloneSyncService::new(self.balancer.service())
    }

    async fn impair(&mut self) {
        self.balancer.remove(&0);
    }

    async fn clear(&mut self) {
        let backend = self.backends[0].clone();
        self.balancer
            .insert(0, backend, palisade_load_balancer::EndpointMeta::new());
    }

    fn expect(&self) -> Expect {
        Expect::Local(&[RejectionKind::NoHealthyEndpoints])
    }

    fn waits(&self) -> bool {
        false
    }
}

/// The SRE adaptive throttle (retry crate) after 200 failed calls against its backend, which
/// is down: it refuses most calls itself (`Throttled`, from the future), lets a few through.
/// Healed by the backend coming back and the throttle's 1 s window passing.
struct ThrottleEngaged {
    throttle: palisade_retry::AdaptiveThrottle,
    backends: Vec<MockBackend>,
}

impl Fixture for ThrottleEngaged {
    fn new() -> Self {
        let throttle = palisade_retry::AdaptiveThrottle::builder()
            .name("compat")
            .k(1.0)
            .window(Duration::from_secs(1))
            .seed(5)
            .clock(Clock::tokio())
            .build()
            .expect("valid throttle");
        ThrottleEngaged {
            throttle,
            backends: Vec::new(),
        }
    }

    fn endpoint(&mut self, backend: &MockBackend) -> Endpoint {
        self.backends.push(backend.clone());
        BoxCloneSyncService::new(self.throttle.layer().layer(backend.clone()))
    }

    async fn impair(&mut self) {
        let down = MockBackend::healthy();
        down.set_down(true);
        let side = self.throttle.layer().layer(down);
        for i in 0..200 {
            let _ = side.clone().oneshot(i).await;
        }
        assert!(
            self.throttle.reject_probability() > 0.5,
            "the throttle engaged"
        );
        for backend in &self.backends {
            backend.set_down(true);
        }
    }

    async fn clear(&mut self) {
        for backend in &self.backends {
            backend.set_down(false);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    fn expect(&self) -> Expect {
        Expect::LocalOrBackend(&[RejectionKind::Throttled])
    }

    fn waits(&self) -> bool {
        false
    }
}

/// A full bulkhead: its slots held by slow calls on the same handle; healed by those calls
/// ending. The bulkhead fixtures differ only in how the bulkhead is built and what a refused
/// call sees, which a [`BulkheadCase`] says.
struct FullBulkhead<C> {
    bulkhead: Bulkhead,
    holders: Vec<JoinHandle<()>>,
    case: std::marker::PhantomData<fn() -> C>,
}

trait BulkheadCase {
    fn build() -> Bulkhead;
    /// How long the holders keep their slots.
    const HOLD: Duration;
    const EXPECT: Expect;
    /// [`Fixture::waits`].
    const WAITS: bool;
    /// [`Fixture::refuses_in_balance`].
    const REFUSES_IN_BALANCE: bool = true;
}

impl<C: BulkheadCase> Fixture for FullBulkhead<C> {
    fn new() -> Self {
        FullBulkhead {
            bulkhead: C::build(),
            holders: Vec::new(),
            case: std::marker::PhantomData,
        }
    }

    fn endpoint(&mut self, backend: &MockBackend) -> Endpoint {
        BoxCloneSyncService::new(self.bulkhead.layer().layer(backend.clone()))
    }

    async fn impair(&mut self) {
        self.holders = fill(&self.bulkhead, C::HOLD).await;
    }

    async fn clear(&mut self) {
        join_all(&mut self.holders).await;
        assert_eq!(self.bulkhead.waiting(), 0);
    }

    fn expect(&self) -> Expect {
        C::EXPECT
    }

    fn waits(&self) -> bool {
        C::WAITS
    }

    fn refuses_in_balance(&self) -> bool {
        C::REFUSES_IN_BALANCE
    }
}

/// Reject mode.
struct Reject;

impl BulkheadCase for Reject {
    fn build() -> Bulkhead {
        Bulkhead::builder()
            .name("compat")
            .max_concurrent_calls(3)
            .clock(Clock::tokio())
            .build()
            .expect("valid bulkhead")
    }
    const HOLD: Duration = Duration::from_secs(1);
    const EXPECT: Expect = Expect::Local(&[RejectionKind::BulkheadFull]);
    const WAITS: bool = false;
}

/// Wait mode: callers queue up to 10 ms, then time out.
struct Wait;

impl BulkheadCase for Wait {
    fn build() -> Bulkhead {
        Bulkhead::builder()
            .name("compat")
            .max_concurrent_calls(2)
            .max_wait(Duration::from_millis(10))
            .max_waiting_calls(4)
            .clock(Clock::tokio())
            .build()
            .expect("valid bulkhead")
    }
    const HOLD: Duration = Duration::from_secs(5);
    const EXPECT: Expect =
        Expect::Local(&[RejectionKind::WaitTimeout, RejectionKind::BulkheadFull]);
    const WAITS: bool = true;
    const REFUSES_IN_BALANCE: bool = false;
}

/// An adaptive (AIMD) limit.
struct Adaptive;

impl BulkheadCase for Adaptive {
    fn build() -> Bulkhead {
        let aimd = palisade_bulkhead::adaptive::Aimd::builder()
            .initial_limit(3)
            .min_limit(1)
            .max_limit(8)
            .build()
            .expect("valid AIMD");
        Bulkhead::builder()
            .name("compat")
            .adaptive(aimd)
            .clock(Clock::tokio())
            .build()
            .expect("valid bulkhead")
    }
    const HOLD: Duration = Duration::from_secs(1);
    const EXPECT: Expect = Expect::Local(&[RejectionKind::BulkheadFull]);
    const WAITS: bool = false;
}

/// An empty rate limiter in reject mode (100/s, burst 5, drained through the handle).
struct LimiterReject {
    limiter: RateLimiter,
}

impl Fixture for LimiterReject {
    fn new() -> Self {
        let limiter = RateLimiter::builder()
            .name("compat")
            .rate(100, Duration::from_secs(1))
            .burst(5)
            .clock(Clock::tokio())
            .build()
            .expect("valid limiter");
        LimiterReject { limiter }
    }

    fn endpoint(&mut self, backend: &MockBackend) -> Endpoint {
        BoxCloneSyncService::new(self.limiter.layer().layer(backend.clone()))
    }

    async fn impair(&mut self) {
        while self.limiter.check().is_ok() {}
    }

    async fn clear(&mut self) {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    fn expect(&self) -> Expect {
        Expect::Local(&[RejectionKind::RateLimited])
    }

    fn waits(&self) -> bool {
        false
    }
}

/// A rate limiter in wait mode (100/s, burst 1, waits up to 5 ms), drained 6 ms ago: the
/// first caller waits 4 ms for the next token, callers behind it would wait longer and are
/// refused at once.
struct LimiterWait {
    limiter: RateLimiter,
}

impl Fixture for LimiterWait {
    fn new() -> Self {
        let limiter = RateLimiter::builder()
            .name("compat")
            .rate(100, Duration::from_secs(1))
            .burst(1)
            .wait(Duration::from_millis(5))
            .clock(Clock::tokio())
            .build()
            .expect("valid limiter");
        LimiterWait { limiter }
    }

    fn endpoint(&mut self, backend: &MockBackend) -> Endpoint {
        BoxCloneSyncService::new(self.limiter.layer().layer(backend.clone()))
    }

    async fn impair(&mut self) {
        while self.limiter.check().is_ok() {}
        tokio::time::sleep(Duration::from_millis(6)).await;
    }

    async fn clear(&mut self) {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    fn expect(&self) -> Expect {
        Expect::Local(&[RejectionKind::RateLimited])
    }

    fn waits(&self) -> bool {
        true
    }
}

/// A retry (3 attempts) over a full bulkhead: the local rejection must come back at once.
struct RetryOverFullBulkhead {
    retry: RetryPolicy,
    bulkhead: Bulkhead,
    holders: Vec<JoinHandle<()>>,
}

impl Fixture for RetryOverFullBulkhead {
    fn new() -> Self {
        let retry = RetryPolicy::builder()
            .name("compat")
            .max_attempts(3)
            .backoff(Backoff::constant(Duration::from_millis(20)))
            .clock(Clock::tokio())
            .seed(9)
            .build()
            .expect("valid retry policy");
        let bulkhead = Bulkhead::builder()
            .name("compat")
            .max_concurrent_calls(1)
            .clock(Clock::tokio())
            .build()
            .expect("valid bulkhead");
        RetryOverFullBulkhead {
            retry,
            bulkhead,
            holders: Vec::new(),
        }
    }

    fn endpoint(&mut self, backend: &MockBackend) -> Endpoint {
        BoxCloneSyncService::new(
            self.retry
                .layer()
                .layer(self.bulkhead.layer().layer(backend.clone())),
        )
    }

    async fn impair(&mut self) {
        self.holders = fill(&self.bulkhead, Duration::from_secs(1)).await;
    }

    async fn clear(&mut self) {
        join_all(&mut self.holders).await;
    }

    fn expect(&self) -> Expect {
        Expect::Local(&[RejectionKind::BulkheadFull])
    }

    fn waits(&self) -> bool {
        false
    }
}

/// A retry (3 attempts, 20 ms apart) over a backend that is down.
struct RetryOverOutage {
    retry: RetryPolicy,
    backends: Vec<MockBackend>,
}

impl Fixture for RetryOverOutage {
    fn new() -> Self {
        let retry = RetryPolicy::builder()
            .name("compat")
            .max_attempts(3)
            .backoff(Backoff::constant(Duration::from_millis(20)))
            .clock(Clock::tokio())
            .seed(9)
            .build()
            .expect("valid retry policy");
        RetryOverOutage {
            retry,
            backends: Vec::new(),
        }
    }

    fn endpoint(&mut self, backend: &MockBackend) -> Endpoint {
        self.backends.push(backend.clone());
        BoxCloneSyncService::new(self.retry.layer().layer(backend.clone()))
    }

    async fn impair(&mut self) {
        for backend in &self.backends {
            backend.set_down(true);
        }
    }

    async fn clear(&mut self) {
        for backend in &self.backends {
            backend.set_down(false);
        }
    }

    fn expect(&self) -> Expect {
        Expect::Backend
    }

    fn waits(&self) -> bool {
        true
    }
}

// --- checks -----------------------------------------------------------------------------------

fn chain_has<T: std::error::Error + 'static>(err: &BoxError) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(&**err);
    while let Some(e) = current {
        if e.is::<T>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// Every answer of the burst is a refusal of the expected kind (or, where `shed_ok`, tower's
/// `Overloaded`); at least one refusal came; none is a dead `Buffer`.
fn check_burst<R: std::fmt::Debug>(
    case: &str,
    expect: Expect,
    answers: &[Result<R, BoxError>],
    shed_ok: bool,
) {
    check_answers(case, expect, answers, shed_ok, true);
}

fn check_answers<R: std::fmt::Debug>(
    case: &str,
    expect: Expect,
    answers: &[Result<R, BoxError>],
    shed_ok: bool,
    must_refuse: bool,
) {
    let mut refused = 0;
    for (i, answer) in answers.iter().enumerate() {
        let Err(e) = answer else { continue };
        assert!(
            !is_buffer_failure(e),
            "{case}: call {i} found the buffer dead: {}",
            describe(e)
        );
        if shed_ok && e.is::<Overloaded>() {
            refused += 1;
            continue;
        }
        let fits = match expect {
            Expect::Local(kinds) => {
                support::rejection_kind(e).is_some_and(|kind| kinds.contains(&kind))
            }
            Expect::Backend => chain_has::<MockError>(e),
            Expect::LocalOrBackend(kinds) => {
                chain_has::<MockError>(e)
                    || support::rejection_kind(e).is_some_and(|kind| kinds.contains(&kind))
            }
            Expect::Gated => false,
        };
        assert!(
            fits,
            "{case}: call {i} answered {} (expected {expect:?})",
            describe(e)
        );
        refused += 1;
    }
    if must_refuse && !matches!(expect, Expect::Gated) {
        assert!(
            refused > 0,
            "{case}: the impaired layer refused nothing: {answers:?}"
        );
    }
}

fn check_took(case: &str, waits: bool, took: Duration) {
    if !waits {
        assert_eq!(
            took,
            Duration::ZERO,
            "{case}: a local rejection in reject mode must take no virtual time"
        );
    } else {
        assert!(
            took < Duration::from_secs(1),
            "{case}: the burst took {took:?} of virtual time"
        );
    }
}

/// Three healthy calls, 100 ms apart, before the impairment.
async fn warm_up<S>(svc: &S)
where
    S: Service<u32, Response = Reply<u32>, Error = BoxError> + Clone,
{
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Err(e) = svc.clone().oneshot(i).await {
            panic!("a healthy first call failed: {}", describe(&e));
        }
    }
}

/// `SERVE` calls, 100 ms apart, through clones of `svc`: every one succeeds.
async fn serve_clone<S>(case: &str, svc: &S)
where
    S: Service<u32, Response = Reply<u32>, Error = BoxError> + Clone,
{
    for i in 0..SERVE {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Err(e) = svc.clone().oneshot(i).await {
            panic!(
                "{case}: call {i} after the impairment cleared: {}",
                describe(&e)
            );
        }
    }
}

fn assert_no_ready_errors(case: &str, counts: &ReadyCounts) {
    assert_eq!(
        counts.errors(),
        0,
        "{case}: the layer returned an error from poll_ready ({} ready, {} pending)",
        counts.ready(),
        counts.pending()
    );
}

// --- the cases --------------------------------------------------------------------------------

async fn under_buffer<F: Fixture>(case: &str) {
    let mut fx = F::new();
    let backend = MockBackend::healthy();
    let counts = ReadyCounts::default();
    let svc = Buffer::new(ReadyProbe::new(fx.endpoint(&backend), &counts), 64);
    warm_up(&svc).await;

    fx.impair().await;
    let start = Instant::now();
    let answers = burst(&svc, BURST).await;
    check_burst(case, fx.expect(), &answers, false);
    check_took(case, fx.waits(), start.elapsed());

    fx.clear().await;
    serve_clone(case, &svc).await;
    assert_no_ready_errors(case, &counts);
}

async fn under_load_shed<F: Fixture>(case: &str) {
    let mut fx = F::new();
    let backend = MockBackend::healthy();
    let counts = ReadyCounts::default();
    let svc = LoadShed::new(ReadyProbe::new(fx.endpoint(&backend), &counts));
    warm_up(&svc).await;

    fx.impair().await;
    let start = Instant::now();
    let answers = burst(&svc, BURST).await;
    // A layer that waits is `Pending`, which `LoadShed` answers with `Overloaded`: that is
    // load shedding working. A layer in reject mode must answer from its future instead.
    check_burst(case, fx.expect(), &answers, fx.waits());
    check_took(case, fx.waits(), start.elapsed());

    fx.clear().await;
    serve_clone(case, &svc).await;
    assert_no_ready_errors(case, &counts);
}

async fn under_concurrency_limit<F: Fixture>(case: &str) {
    let mut fx = F::new();
    let backend = MockBackend::healthy();
    let counts = ReadyCounts::default();
    let svc = ConcurrencyLimit::new(ReadyProbe::new(fx.endpoint(&backend), &counts), 4);
    warm_up(&svc).await;

    fx.impair().await;
    let start = Instant::now();
    let answers = burst(&svc, BURST).await;
    check_burst(case, fx.expect(), &answers, false);
    check_took(case, fx.waits(), start.elapsed());

    fx.clear().await;
    serve_clone(case, &svc).await;
    assert_no_ready_errors(case, &counts);
}

/// Three endpoints, all impaired at once, behind tower's p2c balancer: after the burst none
/// has been dropped, and once healed every one of them serves again.
async fn in_balance<F: Fixture>(case: &str) {
    const ENDPOINTS: usize = 3;
    let mut fixtures: Vec<F> = (0..ENDPOINTS).map(|_| F::new()).collect();
    let backends: Vec<MockBackend> = (0..ENDPOINTS).map(|_| MockBackend::healthy()).collect();
    let counts = ReadyCounts::default();
    let endpoints: Vec<_> = fixtures
        .iter_mut()
        .zip(&backends)
        .map(|(fx, backend)| {
            PendingRequests::new(
                ReadyProbe::new(fx.endpoint(backend), &counts),
                CompleteOnResponse::default(),
            )
        })
        .collect();
    let mut balance = Balance::from_rng(ServiceList::new(endpoints), SeededRng::new(0x9a1a));
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let ready = balance.ready().await.expect("a ready balancer");
        ready.call(i).await.expect("a healthy first call");
    }
    assert_eq!(balance.len(), ENDPOINTS);

    for fx in &mut fixtures {
        fx.impair().await;
    }
    let start = Instant::now();
    let answers = fire(&mut balance, BURST).await;
    let must_refuse = fixtures[0].refuses_in_balance();
    check_answers(case, fixtures[0].expect(), &answers, false, must_refuse);
    check_took(case, fixtures[0].waits(), start.elapsed());
    assert_eq!(
        balance.len(),
        ENDPOINTS,
        "{case}: the balancer dropped an impaired endpoint"
    );

    for fx in &mut fixtures {
        fx.clear().await;
    }
    let before: Vec<u64> = backends.iter().map(|b| b.stats().calls).collect();
    for i in 0..SERVE {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let ready = balance.ready().await.unwrap_or_else(|e| {
            panic!("{case}: balancer not ready after healing: {}", describe(&e))
        });
        if let Err(e) = ready.call(i).await {
            panic!("{case}: call {i} after healing: {}", describe(&e));
        }
    }
    assert_eq!(balance.len(), ENDPOINTS, "{case}: an endpoint was dropped");
    for (i, backend) in backends.iter().enumerate() {
        assert!(
            backend.stats().calls > before[i],
            "{case}: endpoint {i} got no call after healing"
        );
    }
    assert_no_ready_errors(case, &counts);
}

/// Gate mode is what a breaker per endpoint inside a balancer is for: one open endpoint of
/// three is not ready, so tower's p2c sends every call to the other two (no `CircuitOpen`, no
/// wait), and the open endpoint comes back once its open wait passes.
#[tokio::test(start_paused = true)]
async fn gate_mode_balancer_routes_around_an_open_endpoint() {
    within_a_minute(async {
        let breakers: Vec<CircuitBreaker> = (0..3)
            .map(|_| {
                CircuitBreaker::builder()
                    .name("endpoint")
                    .wait_duration_in_open(Duration::from_secs(1))
                    .permitted_calls_in_half_open(1)
                    .clock(Clock::tokio())
                    .build()
                    .expect("valid breaker")
            })
            .collect();
        let backends: Vec<MockBackend> = (0..3).map(|_| MockBackend::healthy()).collect();
        let counts = ReadyCounts::default();
        let endpoints: Vec<_> = breakers
            .iter()
            .zip(&backends)
            .map(|(breaker, backend)| {
                PendingRequests::new(
                    ReadyProbe::new(breaker.layer().gate().layer(backend.clone()), &counts),
                    CompleteOnResponse::default(),
                )
            })
            .collect();
        let mut balance: Balance<_, u32> =
            Balance::from_rng(ServiceList::new::<u32>(endpoints), SeededRng::new(7));
        breakers[0].transition_to_open();

        let start = Instant::now();
        for i in 0..SERVE {
            let ready = balance.ready().await.expect("a ready balancer");
            if let Err(e) = ready.call(i).await {
                panic!("call {i} with one endpoint open: {}", describe(&e));
            }
        }
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "no call waited on the gate"
        );
        assert_eq!(
            backends[0].stats().calls,
            0,
            "the open endpoint got no call"
        );
        assert_eq!(
            backends[1].stats().calls + backends[2].stats().calls,
            u64::from(SERVE)
        );

        tokio::time::sleep(Duration::from_millis(1100)).await;
        for i in 0..SERVE {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let ready = balance.ready().await.expect("a ready balancer");
            ready.call(i).await.expect("a call after the open wait");
        }
        assert!(
            backends[0].stats().calls > 0,
            "the healed endpoint serves again"
        );
        assert_eq!(balance.len(), 3);
        assert_no_ready_errors("gate in Balance", &counts);
    })
    .await;
}

/// Nothing is consumed before it is used (issue 9 §2): a whole stack polled ready and dropped
/// without a call gives back the half-open probe, the token and the slot its layers reserved,
/// so the next caller finds each of them.
#[tokio::test(start_paused = true)]
async fn a_ready_stack_dropped_without_a_call_gives_everything_back() {
    within_a_minute(async {
        let breaker = CircuitBreaker::builder()
            .wait_duration_in_open(Duration::from_secs(1))
            .permitted_calls_in_half_open(1)
            .clock(Clock::tokio())
            .build()
            .expect("valid breaker");
        let limiter = RateLimiter::builder()
            .rate(1, Duration::from_secs(3600))
            .burst(1)
            .clock(Clock::tokio())
            .build()
            .expect("valid limiter");
        let bulkhead = Bulkhead::builder()
            .max_concurrent_calls(1)
            .clock(Clock::tokio())
            .build()
            .expect("valid bulkhead");
        let retry = RetryPolicy::builder()
            .max_attempts(2)
            .clock(Clock::tokio())
            .build()
            .expect("valid retry policy");
        let backend = MockBackend::healthy();
        let stack = tower::ServiceBuilder::new()
            .layer(retry.layer())
            .layer(breaker.layer())
            .layer(limiter.layer())
            .layer(bulkhead.layer())
            .service(backend.clone());
        breaker.transition_to_open();
        tokio::time::sleep(Duration::from_millis(1100)).await;

        for round in 0..100 {
            let mut ready = stack.clone();
            ServiceExt::<u32>::ready(&mut ready)
                .await
                .unwrap_or_else(|e| panic!("round {round}: not ready: {}", describe(&e)));
            drop(ready);
        }
        assert_eq!(bulkhead.snapshot().in_flight, 0, "a slot stayed reserved");
        assert_eq!(limiter.snapshot().remaining_burst, 1, "a token was spent");
        let answer = stack.clone().oneshot(7).await;
        assert!(
            answer.is_ok(),
            "the probe, the token and the slot were there: {:?}",
            answer.map_err(|e| describe(&e))
        );
        assert_eq!(
            breaker.state(),
            palisade_circuit_breaker::State::Closed,
            "the one probe closed the breaker"
        );
        assert_eq!(backend.stats().calls, 1);
    })
    .await;
}

/// A dropped waiter releases its place (issue 9 §2): a thousand callers that queue on a full
/// bulkhead, or wait for tokens, and give up, leave the next caller served as if they had
/// never come. (Before, 100 000 dropped waiters made a 100/s limiter refuse everyone for 999 s.)
#[tokio::test(start_paused = true)]
async fn dropped_waiters_release_their_places() {
    within_a_minute(async {
        let bulkhead = Bulkhead::builder()
            .max_concurrent_calls(1)
            .max_wait(Duration::from_secs(3600))
            .max_waiting_calls(2000)
            .clock(Clock::tokio())
            .build()
            .expect("valid bulkhead");
        let limiter = RateLimiter::builder()
            .rate(100, Duration::from_secs(1))
            .burst(10)
            .wait(Duration::from_secs(3600))
            .clock(Clock::tokio())
            .build()
            .expect("valid limiter");
        let backend = MockBackend::healthy();
        let queued = bulkhead.layer().layer(backend.clone());
        let metered = limiter.layer().layer(backend.clone());

        let mut holders = fill(&bulkhead, Duration::from_secs(1)).await;
        while limiter.check().is_ok() {}
        let waiters: Vec<_> = (0..1000)
            .flat_map(|i| {
                [
                    tokio::spawn(queued.clone().oneshot(i).map(drop)),
                    tokio::spawn(metered.clone().oneshot(i).map(drop)),
                ]
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(bulkhead.snapshot().waiting > 0, "the callers queue");
        for waiter in &waiters {
            waiter.abort();
        }
        for waiter in waiters {
            let _ = waiter.await;
        }
        assert_eq!(
            bulkhead.snapshot().waiting,
            0,
            "cancelled waiters left the queue"
        );

        join_all(&mut holders).await;
        let start = Instant::now();
        queued
            .clone()
            .oneshot(0)
            .await
            .expect("a free slot after the holders");
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "the free slot was not handed to a ghost"
        );

        // A second later the bucket is full again: the waiters reserved nothing for good.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            limiter.snapshot().remaining_burst,
            10,
            "cancelled waiters kept their tokens"
        );
        let start = Instant::now();
        for i in 0..10 {
            metered.clone().oneshot(i).await.expect("a token");
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst was there");
    })
    .await;
}

/// Runs a case with a limit of virtual time, so a stack that never answers fails the test
/// (paused time jumps to the limit once nothing else can run) instead of hanging it.
async fn within_a_minute(case: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(60), case)
        .await
        .expect("the case did not finish within 60 s of virtual time: a call hangs");
}

macro_rules! compat_cases {
    ($($module:ident: $fixture:ty $(, balance: #[$balance:meta])?;)*) => {$(
        mod $module {
            use super::*;

            #[tokio::test(start_paused = true)]
            async fn under_buffer() {
                let case = concat!(stringify!($module), " under Buffer");
                within_a_minute(super::under_buffer::<$fixture>(case)).await;
            }

            #[tokio::test(start_paused = true)]
            $(#[$balance])?
            async fn in_p2c_balance() {
                let case = concat!(stringify!($module), " in Balance");
                within_a_minute(super::in_balance::<$fixture>(case)).await;
            }

            #[tokio::test(start_paused = true)]
            async fn under_load_shed() {
                let case = concat!(stringify!($module), " under LoadShed");
                within_a_minute(super::under_load_shed::<$fixture>(case)).await;
            }

            #[tokio::test(start_paused = true)]
            async fn under_concurrency_limit() {
                let case = concat!(stringify!($module), " under ConcurrencyLimit");
                within_a_minute(super::under_concurrency_limit::<$fixture>(case)).await;
            }
        }
    )*};
}

compat_cases! {
    breaker_reject: BreakerReject;
    breaker_gate: BreakerGate;
    bulkhead_reject: FullBulkhead<Reject>;
    bulkhead_wait: FullBulkhead<Wait>;
    bulkhead_adaptive: FullBulkhead<Adaptive>;
    palisade_balancer_empty: BalancerEmpty;
    rate_limiter_reject: LimiterReject;
    rate_limiter_wait: LimiterWait;
    retry_over_full_bulkhead: RetryOverFullBulkhead;
    retry_over_outage: RetryOverOutage;
    adaptive_throttle_engaged: ThrottleEngaged;
}
