//! A queueing model of one endpoint of a fleet, for load-balancer simulations in tokio time.
//!
//! [`QueueingEndpoint`] is a `tower::Service` that behaves like a server with `k` workers in
//! front of a bounded FIFO queue: a request that finds a free worker is served at once, one
//! that finds all workers busy waits in the queue, and one that finds the queue full is
//! refused at once ([`FleetErrorKind::QueueFull`]). Service times are drawn from a seeded
//! [`ServiceTime`] distribution, so a simulation replays exactly.
//!
//! The schedule is fixed when the request arrives (the model is an M/G/k FIFO queue computed
//! event by event): a worker that took a request stays busy for its whole service time **even
//! if the caller gave up** and dropped the response future, as a real server keeps working on a
//! request whose client timed out. That is what makes retries and hedges cost capacity in a
//! simulation.
//!
//! [`Phase`]s script the endpoint's health over time, measured from the model's creation in
//! tokio time: slower by a factor, failing every call after a short latency, or down (every
//! call refused at once).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use palisade_core::test_util::{Phase, QueueingEndpoint, ServiceTime};
//! use std::time::Duration;
//! use tower::ServiceExt;
//!
//! let endpoint = QueueingEndpoint::builder()
//!     .workers(2)
//!     .queue(10)
//!     .service_time(ServiceTime::constant(Duration::from_millis(10)))
//!     .phase(Phase::failing(Duration::from_secs(1), Duration::from_secs(2), Duration::from_millis(1)))
//!     .seed(7)
//!     .build();
//! let reply = endpoint.clone().oneshot(()).await.unwrap();
//! assert_eq!(reply.latency, Duration::from_millis(10));
//! tokio::time::sleep(Duration::from_secs(1)).await;
//! assert!(endpoint.clone().oneshot(()).await.is_err());
//! assert_eq!(endpoint.stats().served, 1);
//! assert_eq!(endpoint.stats().failed, 1);
//! # }
//! ```

use crate::rng::SplitMix64;
use parking_lot::Mutex;
use pin_project::pin_project;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

/// How long one request occupies a worker, drawn per request from a seeded generator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ServiceTime {
    /// Always the same.
    Constant(Duration),
    /// Uniform between the two bounds (inclusive).
    Uniform(Duration, Duration),
    /// Exponential with this mean (memoryless: the classic M/M/k server).
    Exponential(Duration),
}

impl ServiceTime {
    /// Always `d`.
    #[must_use]
    pub const fn constant(d: Duration) -> ServiceTime {
        ServiceTime::Constant(d)
    }

    /// Uniform in `low..=high`.
    #[must_use]
    pub const fn uniform(low: Duration, high: Duration) -> ServiceTime {
        ServiceTime::Uniform(low, high)
    }

    /// Exponential with mean `mean`.
    #[must_use]
    pub const fn exponential(mean: Duration) -> ServiceTime {
        ServiceTime::Exponential(mean)
    }

    fn draw(&self, rng: &mut SplitMix64) -> Duration {
        match *self {
            ServiceTime::Constant(d) => d,
            ServiceTime::Uniform(lo, hi) => rng.duration_between(lo, hi),
            ServiceTime::Exponential(mean) => {
                // Inverse transform; 1 - u is in (0, 1], so the log is finite.
                let u = 1.0 - rng.next_f64();
                let secs = -u.ln() * mean.as_secs_f64();
                Duration::try_from_secs_f64(secs.min(1.0e6)).unwrap_or(mean)
            }
        }
    }
}

/// What the endpoint does during a [`Phase`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Service times are multiplied by this factor.
    Slow(f64),
    /// Every call fails after this latency (a worker is busy for it).
    Failing(Duration),
    /// Every call is refused at once, without a worker (connection refused).
    Down,
    /// Every call is taken and never answered while the phase lasts, without a worker (a
    /// stalled process whose connections stay open); when the phase ends, the calls it holds
    /// fail (their connections are reset).
    Hung,
}

/// A scripted interval `[from, until)` of the endpoint's life, in tokio time since
/// [`QueueingEndpointBuilder::build`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Phase {
    /// Start of the interval.
    pub from: Duration,
    /// End of the interval (exclusive).
    pub until: Duration,
    /// The behaviour in the interval.
    pub mode: Mode,
}

impl Phase {
    /// Service times `factor` times longer in `[from, until)`.
    #[must_use]
    pub const fn slow(from: Duration, until: Duration, factor: f64) -> Phase {
        Phase {
            from,
            until,
            mode: Mode::Slow(factor),
        }
    }

    /// Every call fails after `latency` in `[from, until)`.
    #[must_use]
    pub const fn failing(from: Duration, until: Duration, latency: Duration) -> Phase {
        Phase {
            from,
            until,
            mode: Mode::Failing(latency),
        }
    }

    /// Every call refused at once in `[from, until)`.
    #[must_use]
    pub const fn down(from: Duration, until: Duration) -> Phase {
        Phase {
            from,
            until,
            mode: Mode::Down,
        }
    }

    /// Every call taken and left unanswered in `[from, until)`; they fail at `until`.
    #[must_use]
    pub const fn hung(from: Duration, until: Duration) -> Phase {
        Phase {
            from,
            until,
            mode: Mode::Hung,
        }
    }
}

/// Builds a [`QueueingEndpoint`].
#[derive(Clone, Debug)]
pub struct QueueingEndpointBuilder {
    workers: usize,
    queue: usize,
    service_time: ServiceTime,
    phases: Vec<Phase>,
    seed: u64,
    name: String,
}

impl QueueingEndpointBuilder {
    /// Workers serving requests in parallel (default 4; at least 1).
    #[must_use]
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Requests that may wait for a worker (default 64); beyond it a call is refused at once.
    #[must_use]
    pub fn queue(mut self, queue: usize) -> Self {
        self.queue = queue;
        self
    }

    /// The service-time distribution (default constant 10 ms).
    #[must_use]
    pub fn service_time(mut self, service_time: ServiceTime) -> Self {
        self.service_time = service_time;
        self
    }

    /// Adds a scripted phase. Where phases overlap, the first added wins.
    #[must_use]
    pub fn phase(mut self, phase: Phase) -> Self {
        self.phases.push(phase);
        self
    }

    /// Seed of the service-time generator (default 0).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// A name for `Debug` output and replies (default `"endpoint"`).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The endpoint. Call inside the tokio runtime of the simulation: phases are measured
    /// from now in tokio time.
    #[must_use]
    pub fn build(self) -> QueueingEndpoint {
        QueueingEndpoint {
            shared: Arc::new(Shared {
                start: Instant::now(),
                name: self.name.into(),
                phases: self.phases,
                service_time: self.service_time,
                queue: self.queue,
                state: Mutex::new(State {
                    free_at: vec![Instant::now(); self.workers],
                    waiting: VecDeque::new(),
                    rng: SplitMix64::new(self.seed),
                    stats: FleetStats::default(),
                }),
            }),
        }
    }
}

/// A simulated server: `k` workers, a bounded FIFO queue, scripted phases. See the
/// [module docs](self). Clones share the server.
#[derive(Clone)]
pub struct QueueingEndpoint {
    shared: Arc<Shared>,
}

struct Shared {
    start: Instant,
    name: Arc<str>,
    phases: Vec<Phase>,
    service_time: ServiceTime,
    queue: usize,
    state: Mutex<State>,
}

struct State {
    /// When each worker is next free.
    free_at: Vec<Instant>,
    /// Start times of accepted requests that had not started when they arrived, in order.
    waiting: VecDeque<Instant>,
    rng: SplitMix64,
    stats: FleetStats,
}

/// What reached a [`QueueingEndpoint`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FleetStats {
    /// Calls received.
    pub calls: u64,
    /// Calls scheduled to succeed (counted on arrival: the work is done even if the caller
    /// gives up).
    pub served: u64,
    /// Calls scheduled to fail (a `Failing` phase).
    pub failed: u64,
    /// Calls refused because the queue was full.
    pub queue_full: u64,
    /// Calls refused because the endpoint was down.
    pub down: u64,
    /// Calls taken by a hung endpoint (answered by an error when the stall ends).
    pub hung: u64,
}

/// The successful answer of a [`QueueingEndpoint`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetReply {
    /// The endpoint's name.
    pub endpoint: Arc<str>,
    /// Time spent waiting for a worker.
    pub queued: Duration,
    /// Time from arrival to the answer.
    pub latency: Duration,
}

/// Why a [`QueueingEndpoint`] call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FleetErrorKind {
    /// The queue was full on arrival.
    QueueFull,
    /// A `Failing` phase.
    Failed,
    /// A `Down` phase.
    Down,
    /// A `Hung` phase: no answer until it ended, then the connection reset.
    Hung,
}

/// The error of a [`QueueingEndpoint`] call: a failure of the dependency, not a local
/// rejection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetError {
    /// What happened.
    pub kind: FleetErrorKind,
    /// The endpoint's name.
    pub endpoint: Arc<str>,
}

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            FleetErrorKind::QueueFull => "queue full",
            FleetErrorKind::Failed => "request failed",
            FleetErrorKind::Down => "endpoint down",
            FleetErrorKind::Hung => "no answer (connection reset after a stall)",
        };
        write!(f, "{}: {what}", self.endpoint)
    }
}

impl std::error::Error for FleetError {}

impl QueueingEndpoint {
    /// A builder with the defaults: 4 workers, a queue of 64, constant 10 ms, no phases.
    #[must_use]
    pub fn builder() -> QueueingEndpointBuilder {
        QueueingEndpointBuilder {
            workers: 4,
            queue: 64,
            service_time: ServiceTime::Constant(Duration::from_millis(10)),
            phases: Vec::new(),
            seed: 0,
            name: "endpoint".to_owned(),
        }
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> FleetStats {
        self.shared.state.lock().stats
    }

    /// The endpoint's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    fn phase_at(&self, now: Instant) -> Option<Phase> {
        let since = now.saturating_duration_since(self.shared.start);
        self.shared
            .phases
            .iter()
            .find(|p| p.from <= since && since < p.until)
            .copied()
    }

    /// Schedules one arrival now: when it ends and how.
    fn schedule(&self) -> (Instant, Result<Duration, FleetErrorKind>) {
        let now = Instant::now();
        let phase = self.phase_at(now);
        let mode = phase.map(|p| p.mode);
        let mut state = self.shared.state.lock();
        state.stats.calls += 1;
        if mode == Some(Mode::Down) {
            state.stats.down += 1;
            return (now, Err(FleetErrorKind::Down));
        }
        if let Some(Phase {
            until,
            mode: Mode::Hung,
            ..
        }) = phase
        {
            state.stats.hung += 1;
            return (self.shared.start + until, Err(FleetErrorKind::Hung));
        }
        while state.waiting.front().is_some_and(|start| *start <= now) {
            state.waiting.pop_front();
        }
        let (worker, free_at) = state
            .free_at
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|(_, at)| *at)
            .expect("at least one worker");
        let start = free_at.max(now);
        if start > now {
            if state.waiting.len() >= self.shared.queue {
                state.stats.queue_full += 1;
                return (now, Err(FleetErrorKind::QueueFull));
            }
            state.waiting.push_back(start);
        }
        let (busy, outcome) = match mode {
            Some(Mode::Failing(latency)) => (latency, Err(FleetErrorKind::Failed)),
            Some(Mode::Slow(factor)) => {
                let base = self.shared.service_time.draw(&mut state.rng);
                (base.mul_f64(factor.max(0.0)), Ok(()))
            }
            _ => (self.shared.service_time.draw(&mut state.rng), Ok(())),
        };
        let end = start + busy;
        state.free_at[worker] = end;
        match outcome {
            Ok(()) => state.stats.served += 1,
            Err(_) => state.stats.failed += 1,
        }
        (end, outcome.map(|()| start - now))
    }
}

impl fmt::Debug for QueueingEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueingEndpoint")
            .field("name", &self.shared.name)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<R> Service<R> for QueueingEndpoint {
    type Response = FleetReply;
    type Error = FleetError;
    type Future = FleetFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), FleetError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: R) -> FleetFuture {
        let arrived = Instant::now();
        let (end, outcome) = self.schedule();
        FleetFuture {
            sleep: tokio::time::sleep_until(end),
            arrived,
            outcome: Some(outcome),
            endpoint: Arc::clone(&self.shared.name),
        }
    }
}

/// The response future of a [`QueueingEndpoint`]: ready when the scheduled work ends.
#[pin_project]
#[derive(Debug)]
pub struct FleetFuture {
    #[pin]
    sleep: Sleep,
    arrived: Instant,
    outcome: Option<Result<Duration, FleetErrorKind>>,
    endpoint: Arc<str>,
}

impl Future for FleetFuture {
    type Output = Result<FleetReply, FleetError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if this.outcome.is_none() {
            panic!("FleetFuture polled after completion");
        }
        // Failures take their scheduled time too (refusals end at arrival).
        std::task::ready!(this.sleep.poll(cx));
        let endpoint = Arc::clone(this.endpoint);
        Poll::Ready(match this.outcome.take().expect("checked above") {
            Ok(queued) => Ok(FleetReply {
                endpoint,
                queued,
                latency: Instant::now().saturating_duration_since(*this.arrived),
            }),
            Err(kind) => Err(FleetError { kind, endpoint }),
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn call(svc: &QueueingEndpoint) -> Result<FleetReply, FleetError> {
        svc.clone().oneshot(()).await
    }

    #[tokio::test(start_paused = true)]
    async fn requests_beyond_the_workers_queue_in_fifo_order() {
        let ep = QueueingEndpoint::builder()
            .workers(2)
            .queue(1)
            .service_time(ServiceTime::constant(Duration::from_millis(10)))
            .build();
        let futures: Vec<_> = (0..4).map(|_| ep.clone().oneshot(())).collect();
        let results = futures::future::join_all(futures).await;
        let latencies: Vec<_> = results
            .iter()
            .map(|r| r.as_ref().map(|reply| reply.latency))
            .collect();
        assert_eq!(latencies[0], Ok(Duration::from_millis(10)));
        assert_eq!(latencies[1], Ok(Duration::from_millis(10)));
        assert_eq!(
            latencies[2],
            Ok(Duration::from_millis(20)),
            "queued behind a worker"
        );
        assert_eq!(
            results[3].as_ref().unwrap_err().kind,
            FleetErrorKind::QueueFull
        );
        assert_eq!(ep.stats().queue_full, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn work_is_done_even_when_the_caller_gives_up() {
        let ep = QueueingEndpoint::builder()
            .workers(1)
            .service_time(ServiceTime::constant(Duration::from_millis(50)))
            .build();
        // The first caller gives up at once; its work still occupies the only worker.
        let mut svc = ep.clone();
        let first = svc.call(());
        drop(first);
        let reply = call(&ep).await.unwrap();
        assert_eq!(reply.queued, Duration::from_millis(50));
        assert_eq!(ep.stats().served, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn phases_slow_fail_and_take_the_endpoint_down() {
        let ms = Duration::from_millis;
        let ep = QueueingEndpoint::builder()
            .workers(1)
            .service_time(ServiceTime::constant(ms(10)))
            .phase(Phase::slow(ms(100), ms(200), 10.0))
            .phase(Phase::failing(ms(200), ms(300), ms(1)))
            .phase(Phase::down(ms(300), ms(400)))
            .build();
        assert_eq!(call(&ep).await.unwrap().latency, ms(10));
        tokio::time::sleep_until(ep.shared.start + ms(100)).await;
        assert_eq!(call(&ep).await.unwrap().latency, ms(100));
        tokio::time::sleep_until(ep.shared.start + ms(200)).await;
        let started = Instant::now();
        assert_eq!(call(&ep).await.unwrap_err().kind, FleetErrorKind::Failed);
        assert_eq!(started.elapsed(), ms(1));
        tokio::time::sleep_until(ep.shared.start + ms(300)).await;
        assert_eq!(call(&ep).await.unwrap_err().kind, FleetErrorKind::Down);
        tokio::time::sleep_until(ep.shared.start + ms(400)).await;
        assert_eq!(call(&ep).await.unwrap().latency, ms(10));
        let stats = ep.stats();
        assert_eq!(
            (stats.calls, stats.served, stats.failed, stats.down),
            (5, 3, 1, 1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_endpoint_holds_its_calls_until_the_stall_ends_then_fails_them() {
        let ms = Duration::from_millis;
        let ep = QueueingEndpoint::builder()
            .workers(1)
            .queue(0)
            .service_time(ServiceTime::constant(ms(10)))
            .phase(Phase::hung(ms(100), ms(400)))
            .build();
        tokio::time::sleep_until(ep.shared.start + ms(100)).await;
        // More calls than workers and queue together: a stall takes them all, with no worker.
        let held: Vec<_> = (0..3)
            .map(|_| tower::ServiceExt::oneshot(ep.clone(), ()))
            .collect();
        let started = Instant::now();
        for answer in futures::future::join_all(held).await {
            assert_eq!(answer.unwrap_err().kind, FleetErrorKind::Hung);
        }
        assert_eq!(started.elapsed(), ms(300), "answered when the stall ended");
        assert_eq!(call(&ep).await.unwrap().latency, ms(10));
        let stats = ep.stats();
        assert_eq!((stats.calls, stats.hung, stats.served), (4, 3, 1));
    }

    #[test]
    fn service_times_are_seeded_and_within_bounds() {
        let mut a = SplitMix64::new(3);
        let mut b = SplitMix64::new(3);
        let dist = ServiceTime::exponential(Duration::from_millis(10));
        let xs: Vec<_> = (0..1000).map(|_| dist.draw(&mut a)).collect();
        let ys: Vec<_> = (0..1000).map(|_| dist.draw(&mut b)).collect();
        assert_eq!(xs, ys);
        let mean = xs.iter().sum::<Duration>() / 1000;
        assert!(
            mean > Duration::from_millis(8) && mean < Duration::from_millis(12),
            "{mean:?}"
        );
        let uniform = ServiceTime::uniform(Duration::from_millis(5), Duration::from_millis(6));
        assert!((0..100).all(|_| {
            let d = uniform.draw(&mut a);
            d >= Duration::from_millis(5) && d <= Duration::from_millis(6)
        }));
    }
}
