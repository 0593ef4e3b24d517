//! The incident behind `cargo run --example demo`, as a library so that a test can run it.
//!
//! A fleet of three simulated servers (`palisade::common::test_util::QueueingEndpoint`: 4
//! workers, a FIFO queue of 64, 8–12 ms per request, so about 1 200 requests a second for the
//! fleet) takes open-loop traffic of 480 requests a second (40 % of its capacity) through a
//! scripted incident, in tokio's paused time, so a minute of it runs in about a second:
//!
//! | phase | what happens |
//! |---|---|
//! | normal | every endpoint healthy |
//! | slow | `e2` answers 10× slower |
//! | failing | `e1` fails every call after 1 ms |
//! | surge | healthy again, but 3× the fleet's capacity is offered |
//! | recovery | normal traffic |
//!
//! The same incident (same seed, same arrivals, same service times) runs twice:
//!
//! - **bare**: a round-robin client over the three endpoints, nothing else;
//! - **palisade**: the recommended stack of the facade's docs with every default: retry (default
//!   budget; the deadline and per-attempt timeout of the facade's example, the two settings
//!   every user chooses) → bulkhead (default) → balancer (default strategy and health).
//!
//! Every request has the same caller deadline (2 s) in both runs.
//!
//! A request counts in the phase that sent it, however late it finishes, so the table splits
//! each phase's successes into those finished within the phase and after it. That matters in
//! the surge: both clients finish about the fleet's capacity within it, but bare's full server
//! queues (3 × 68 requests) keep finishing surge requests after it ends, at a p99 of some
//! 170 ms, where the bulkhead holds 25 calls and refuses the rest at once. Where Palisade ends
//! a phase below bare, the demo prints a note that measures why.

mod report;
mod svg;

pub use report::{IdleStart, PhaseReport, Report};

use palisade::common::BoxError;
use palisade::common::clock::{self, Clock};
use palisade::common::rng::SplitMix64;
use palisade::common::test_util::{FleetReply, FleetStats, Phase, QueueingEndpoint, ServiceTime};
use palisade::load_balancer::{BalancerEvent, EndpointMeta};
use palisade::prelude::*;
use palisade::retry::RetryEvent;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt as _};

/// Endpoints in the fleet.
pub const ENDPOINTS: usize = 3;
/// Workers per endpoint.
pub const WORKERS: usize = 4;
/// The mean service time of a healthy endpoint.
pub const MEAN_SERVICE: Duration = Duration::from_millis(10);
/// Requests a second the fleet can serve when healthy.
pub const CAPACITY: f64 = (ENDPOINTS * WORKERS) as f64 / 0.010;
/// Normal offered load: 40 % of the capacity.
pub const NORMAL_RATE: f64 = 0.4 * CAPACITY;
/// The caller's deadline on every request, in both runs.
pub const CALLER_DEADLINE: Duration = Duration::from_secs(2);
/// The width of one timeline bucket.
pub const BUCKET: Duration = Duration::from_millis(100);
/// The endpoint that turns slow.
pub const SLOW: usize = 2;
/// The endpoint that fails (or is down, in the outage scenario, or hangs, in the hang one).
pub const FAILING: usize = 1;

/// Which incident to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// normal, slow, failing, surge, recovery.
    Full,
    /// normal, one endpoint down (every call refused), recovery.
    Outage,
    /// normal, 3× the capacity, recovery.
    Surge,
    /// normal, one endpoint hung (takes every call, answers none), recovery.
    Hang,
}

impl Scenario {
    /// Parses `full`, `outage`, `surge` or `hang`.
    pub fn parse(s: &str) -> Option<Scenario> {
        match s {
            "full" => Some(Scenario::Full),
            "outage" => Some(Scenario::Outage),
            "surge" => Some(Scenario::Surge),
            "hang" => Some(Scenario::Hang),
            _ => None,
        }
    }

    /// The phases, in order.
    pub fn phases(self) -> &'static [PhaseKind] {
        match self {
            Scenario::Full => &[
                PhaseKind::Normal,
                PhaseKind::Slow,
                PhaseKind::Failing,
                PhaseKind::Surge,
                PhaseKind::Recovery,
            ],
            Scenario::Outage => &[PhaseKind::Normal, PhaseKind::Down, PhaseKind::Recovery],
            Scenario::Surge => &[PhaseKind::Normal, PhaseKind::Surge, PhaseKind::Recovery],
            Scenario::Hang => &[PhaseKind::Normal, PhaseKind::Hung, PhaseKind::Recovery],
        }
    }
}

/// One phase of an incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhaseKind {
    /// Everything healthy.
    Normal,
    /// Endpoint [`SLOW`] 10× slower.
    Slow,
    /// Endpoint [`FAILING`] fails every call after 1 ms.
    Failing,
    /// Endpoint [`FAILING`] refuses every call at once.
    Down,
    /// Endpoint [`FAILING`] takes every call and answers none until the phase ends (then
    /// the calls it holds fail).
    Hung,
    /// 3× the fleet's capacity offered.
    Surge,
    /// Normal traffic after the incident.
    Recovery,
}

impl PhaseKind {
    /// A short label.
    pub fn label(self) -> &'static str {
        match self {
            PhaseKind::Normal => "normal",
            PhaseKind::Slow => "e2 10x slow",
            PhaseKind::Failing => "e1 failing",
            PhaseKind::Down => "e1 down",
            PhaseKind::Hung => "e1 hung",
            PhaseKind::Surge => "surge 3x",
            PhaseKind::Recovery => "recovery",
        }
    }

    /// Offered requests a second.
    pub fn rate(self) -> f64 {
        if self == PhaseKind::Surge {
            3.0 * CAPACITY
        } else {
            NORMAL_RATE
        }
    }

    /// The endpoint that is slow in this phase.
    pub fn slow_endpoint(self) -> Option<usize> {
        (self == PhaseKind::Slow).then_some(SLOW)
    }

    /// The endpoint that fails (or is down, or hung) in this phase.
    pub fn failing_endpoint(self) -> Option<usize> {
        matches!(self, PhaseKind::Failing | PhaseKind::Down | PhaseKind::Hung).then_some(FAILING)
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Seeds arrivals, service times, the balancer and the retry jitter.
    pub seed: u64,
    /// Length of each phase.
    pub phase: Duration,
    /// The incident.
    pub scenario: Scenario,
    /// Where the SVG timeline goes (`None`: `target/palisade-demo.svg`, or the temp dir).
    pub out: Option<PathBuf>,
    /// Show a live progress line on stderr (only honoured when stderr is a terminal).
    pub progress: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 2026,
            phase: Duration::from_secs(8),
            scenario: Scenario::Full,
            out: None,
            progress: true,
        }
    }
}

/// Which client a run used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// Round robin, nothing else.
    Bare,
    /// The default recommended Palisade stack.
    Palisade,
}

impl Client {
    /// `bare` or `palisade`.
    pub fn label(self) -> &'static str {
        match self {
            Client::Bare => "bare",
            Client::Palisade => "palisade",
        }
    }
}

/// How one request ended, for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Answered within the deadline.
    Ok,
    /// A Palisade layer refused it without waiting on the fleet (a local rejection).
    Rejected,
    /// The fleet's error (failed, queue full, down), after any retries.
    Failed,
    /// The caller's deadline passed first (or the retry's own deadline).
    TimedOut,
}

/// One request.
#[derive(Clone, Copy, Debug)]
pub struct Record {
    /// When it was issued, since the start.
    pub issued: Duration,
    /// How long the caller waited.
    pub latency: Duration,
    /// How it ended.
    pub fate: Fate,
}

/// One sample of the fleet, taken every [`BUCKET`].
#[derive(Clone, Debug)]
pub struct Sample {
    /// When.
    pub at: Duration,
    /// Each endpoint's counters (cumulative).
    pub stats: [FleetStats; ENDPOINTS],
    /// Whether the Palisade balancer had each endpoint ejected (always false for bare).
    pub ejected: [bool; ENDPOINTS],
}

/// A notable event of the Palisade stack.
#[derive(Clone, Debug, PartialEq)]
pub enum Notable {
    /// The balancer ejected an endpoint for a while.
    Ejected {
        /// The endpoint.
        endpoint: usize,
        /// For how long.
        duration: Duration,
    },
    /// An ejected endpoint is a candidate again.
    Restored {
        /// The endpoint.
        endpoint: usize,
    },
    /// The bulkhead's limit changed.
    LimitChanged {
        /// Before.
        from: usize,
        /// After.
        to: usize,
    },
    /// The retry budget refused a retry.
    BudgetExhausted,
    /// A layer refused a call at once: `"bulkhead full"`, `"no healthy endpoint"`.
    Refused(&'static str),
}

/// Everything one run produced.
#[derive(Clone, Debug)]
pub struct Run {
    /// The client.
    pub client: Client,
    /// Every request, in issue order.
    pub records: Vec<Record>,
    /// The fleet over time.
    pub samples: Vec<Sample>,
    /// Events of the Palisade stack with their time (empty for bare).
    pub events: Vec<(Duration, Notable)>,
}

/// Runs the incident for both clients and writes the timeline. Returns the report (its
/// `Display` is what the demo prints) and the SVG's path.
///
/// # Errors
///
/// If the phase is shorter than 0.5 s or longer than an hour, a Palisade builder refuses its
/// configuration, or the SVG cannot be written.
pub fn run(config: &Config) -> Result<(Report, PathBuf), BoxError> {
    if config.phase < Duration::from_millis(500) || config.phase > Duration::from_secs(3600) {
        return Err(format!(
            "a phase of {:?} is not between 0.5 s and 1 h (the timeline needs a few 100 ms \
             buckets per phase)",
            config.phase
        )
        .into());
    }
    let bare = simulate(config, Client::Bare)?;
    let palisade = simulate(config, Client::Palisade)?;
    let report = Report::new(config, &bare, &palisade);
    let path = match &config.out {
        Some(path) => path.clone(),
        None => default_out(),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, svg::timeline(config, &bare, &palisade, &report))?;
    Ok((report, path))
}

/// `palisade-demo.svg` in `$CARGO_TARGET_DIR`, else in the workspace's `target/`, else in the
/// system's temp dir: never in the source tree.
fn default_out() -> PathBuf {
    let workspace_target = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|root| root.join("target"));
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or(workspace_target)
        .filter(|t| t.is_dir())
        .unwrap_or_else(std::env::temp_dir)
        .join("palisade-demo.svg")
}

/// The fleet of one run: identical in both runs (same seeds, same scripted phases).
fn fleet(config: &Config) -> Vec<QueueingEndpoint> {
    let phases = config.scenario.phases();
    (0..ENDPOINTS)
        .map(|i| {
            let mut builder = QueueingEndpoint::builder()
                .name(format!("e{i}"))
                .workers(WORKERS)
                .queue(64)
                .service_time(ServiceTime::uniform(
                    Duration::from_millis(8),
                    Duration::from_millis(12),
                ))
                .seed(config.seed.wrapping_add(100 + i as u64));
            for (n, kind) in phases.iter().enumerate() {
                let from = config.phase * n as u32;
                let until = from + config.phase;
                if kind.slow_endpoint() == Some(i) {
                    builder = builder.phase(Phase::slow(from, until, 10.0));
                }
                if kind.failing_endpoint() == Some(i) {
                    builder = builder.phase(match kind {
                        PhaseKind::Down => Phase::down(from, until),
                        PhaseKind::Hung => Phase::hung(from, until),
                        _ => Phase::failing(from, until, Duration::from_millis(1)),
                    });
                }
            }
            builder.build()
        })
        .collect()
}

type Stack = BoxCloneService<(), FleetReply, BoxError>;

/// The bare client: round robin over the endpoints.
fn bare_client(endpoints: &[QueueingEndpoint]) -> Stack {
    let endpoints: Arc<[QueueingEndpoint]> = endpoints.into();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    BoxCloneService::new(tower::service_fn(move |()| {
        // Relaxed: only spreads calls; no other memory is published through the counter.
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let endpoint = endpoints[i % endpoints.len()].clone();
        async move { endpoint.oneshot(()).await.map_err(BoxError::from) }
    }))
}

/// What the Palisade run keeps a handle on.
struct Guarded {
    stack: Stack,
    balancer: Balancer<usize, QueueingEndpoint>,
}

/// The default recommended stack (facade docs, "The order of layers"): retry → bulkhead →
/// balancer, every builder left at its defaults except the retry's deadline and per-attempt
/// timeout, which the docs ask every user to set (the facade example's values).
fn palisade_client(
    config: &Config,
    endpoints: &[QueueingEndpoint],
    events: &Arc<Mutex<Vec<(Duration, Notable)>>>,
    start: Instant,
) -> Result<Guarded, BoxError> {
    let retry = RetryPolicy::builder()
        .deadline(Duration::from_secs(2))
        .attempt_timeout(Duration::from_millis(500))
        .seed(config.seed)
        .build()?;
    let bulkhead = Bulkhead::builder().build()?;
    let balancer = Balancer::builder().seed(config.seed).build()?;
    for (key, endpoint) in endpoints.iter().enumerate() {
        balancer.insert(key, endpoint.clone(), EndpointMeta::new());
    }

    let log = Arc::clone(events);
    balancer.subscribe(move |event: &BalancerEvent<usize>| {
        let notable = match event {
            BalancerEvent::EndpointEjected { key, duration, .. } => Notable::Ejected {
                endpoint: *key,
                duration: *duration,
            },
            BalancerEvent::EndpointRestored { key, .. } => Notable::Restored { endpoint: *key },
            BalancerEvent::CallRejected { .. } => Notable::Refused("no healthy endpoint"),
            _ => return,
        };
        log.lock().unwrap().push((start.elapsed(), notable));
    });
    let log = Arc::clone(events);
    bulkhead.subscribe(move |event: &palisade::bulkhead::BulkheadEvent| {
        let notable = match *event {
            palisade::bulkhead::BulkheadEvent::LimitChanged { from, to } => {
                Notable::LimitChanged { from, to }
            }
            palisade::bulkhead::BulkheadEvent::CallRejected { .. } => {
                Notable::Refused("bulkhead full")
            }
            _ => return,
        };
        log.lock().unwrap().push((start.elapsed(), notable));
    });
    let log = Arc::clone(events);
    retry.subscribe(move |event: &RetryEvent| {
        if let RetryEvent::BudgetExhausted { .. } = event {
            log.lock()
                .unwrap()
                .push((start.elapsed(), Notable::BudgetExhausted));
        }
    });

    let stack = ServiceBuilder::new()
        .retry_policy(&retry)
        .bulkhead(&bulkhead)
        .balancer(&balancer);
    Ok(Guarded {
        stack: BoxCloneService::new(stack),
        balancer,
    })
}

/// One run of the incident, on a fresh paused runtime.
fn simulate(config: &Config, client: Client) -> Result<Run, BoxError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?;
    let _entered = runtime.enter();
    // Every Palisade layer built on this thread reads tokio's paused clock.
    let _clock = clock::set_default(Clock::tokio());
    runtime.block_on(drive(config, client))
}

async fn drive(config: &Config, client: Client) -> Result<Run, BoxError> {
    let start = Instant::now();
    let endpoints = fleet(config);
    let events = Arc::new(Mutex::new(Vec::new()));
    let (stack, balancer) = match client {
        Client::Bare => (bare_client(&endpoints), None),
        Client::Palisade => {
            let guarded = palisade_client(config, &endpoints, &events, start)?;
            (guarded.stack, Some(guarded.balancer))
        }
    };
    let phases = config.scenario.phases();
    let total = config.phase * phases.len() as u32;
    let records = Arc::new(Mutex::new(Vec::new()));
    let mut samples = Vec::new();
    let mut rng = SplitMix64::new(config.seed ^ 0x5eed);
    let progress = config.progress && std::io::stderr().is_terminal();
    let mut tasks = Vec::new();
    let mut next = Duration::ZERO;
    let mut next_sample = Duration::ZERO;
    let sample = |at: Duration| Sample {
        at,
        stats: std::array::from_fn(|i| endpoints[i].stats()),
        ejected: std::array::from_fn(|i| {
            balancer.as_ref().is_some_and(|b| {
                b.snapshot()
                    .endpoints
                    .iter()
                    .any(|e| e.key == i && e.ejected_for.is_some())
            })
        }),
    };
    while next < total {
        tokio::time::sleep_until(start + next).await;
        while next_sample <= next {
            samples.push(sample(next_sample));
            if progress && samples.len() % 10 == 1 {
                let phase = phases[phase_index(config, next_sample)];
                eprint!(
                    "\r  {:<8} t = {:>5.1} s of {:.0} s  phase: {:<12}",
                    client.label(),
                    next_sample.as_secs_f64(),
                    total.as_secs_f64(),
                    phase.label()
                );
                let _ = std::io::stderr().flush();
            }
            next_sample += BUCKET;
        }
        let svc = stack.clone();
        let records = Arc::clone(&records);
        let issued = next;
        tasks.push(tokio::spawn(async move {
            let began = Instant::now();
            let fate = match tokio::time::timeout(CALLER_DEADLINE, svc.oneshot(())).await {
                Ok(Ok(_)) => Fate::Ok,
                // The retry's own deadline is a local rejection too, but it is a time-out
                // for the caller, not a fast refusal.
                Ok(Err(e)) if e.is::<palisade::retry::DeadlineExceeded>() => Fate::TimedOut,
                Ok(Err(e)) if is_local_rejection(&*e) => Fate::Rejected,
                Ok(Err(_)) => Fate::Failed,
                Err(_) => Fate::TimedOut,
            };
            records.lock().unwrap().push(Record {
                issued,
                latency: began.elapsed(),
                fate,
            });
        }));
        // Poisson-like arrivals: spacing uniform in [0.5, 1.5) of the mean.
        let rate = phases[phase_index(config, next)].rate();
        next += Duration::from_secs_f64((0.5 + rng.next_f64()) / rate);
    }
    samples.push(sample(next_sample));
    for task in tasks {
        task.await?;
    }
    if progress {
        eprint!("\r{:70}\r", "");
    }
    let mut records = std::mem::take(&mut *records.lock().unwrap());
    records.sort_by_key(|r| r.issued);
    let events = std::mem::take(&mut *events.lock().unwrap());
    Ok(Run {
        client,
        records,
        samples,
        events,
    })
}

/// The index of the phase `at` falls in.
pub fn phase_index(config: &Config, at: Duration) -> usize {
    let n = config.scenario.phases().len();
    usize::try_from(at.as_nanos() / config.phase.as_nanos().max(1))
        .unwrap_or(usize::MAX)
        .min(n - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_timeline_path_is_outside_the_source_tree() {
        let path = default_out();
        let sources = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert!(!path.starts_with(sources), "{}", path.display());
        assert_eq!(path.file_name().unwrap(), "palisade-demo.svg");
    }

    #[test]
    fn a_phase_too_short_for_the_timeline_is_an_error_not_a_panic() {
        for phase in [Duration::ZERO, Duration::from_millis(100)] {
            let config = Config {
                phase,
                progress: false,
                out: Some(std::env::temp_dir().join("palisade-demo-unused.svg")),
                ..Config::default()
            };
            assert!(run(&config).is_err());
        }
    }

    #[test]
    fn flags_name_every_scenario() {
        for (name, scenario) in [
            ("full", Scenario::Full),
            ("outage", Scenario::Outage),
            ("surge", Scenario::Surge),
            ("hang", Scenario::Hang),
        ] {
            assert_eq!(Scenario::parse(name), Some(scenario));
        }
        assert_eq!(Scenario::parse("fulll"), None);
        assert_eq!(Scenario::Full.phases().len(), 5);
    }
}
