//! The recommended stack exporting its metrics through `metrics-exporter-prometheus`, scraped
//! over a real HTTP GET on 127.0.0.1.
//!
//! `examples/prometheus.rs` prints the scrape; `examples/tests/prometheus.rs` runs the same
//! [`run`] and asserts on it. The stack, outer to inner:
//!
//! ```text
//! retry (budget "client") -> circuit breaker "backends" -> rate limiter "client"
//!   -> bulkhead "client" -> balancer "backends" over three in-process endpoints
//! ```
//!
//! The endpoints stand in for the network: each answers after 1 ms, and a request whose id is
//! a multiple of [`FAIL_EVERY`] fails its first attempt (wherever it lands) and succeeds when
//! retried. So the load of [`CALLS`] requests implies exact counts: every request succeeds at
//! the retry layer, and every layer below it sees `CALLS` successes and `CALLS / FAIL_EVERY`
//! failures. Time is tokio's paused clock, so the run is deterministic and takes no real time
//! beyond the scrape.
//!
//! The exporter serves on its own HTTP listener (`with_http_listener`) at a free loopback port,
//! and [`run`] scrapes it with a plain HTTP/1.1 GET, as Prometheus would. The recorder is
//! installed for the run's thread only (`metrics::with_local_recorder` around a current-thread
//! runtime), so a process may call [`run`] more than once (the tests do); a service installs it
//! for the whole process instead: `PrometheusBuilder::new().with_http_listener(addr).install()`.
//!
//! A handle built before any recorder exists registers its metrics at its first event after
//! one is installed: [`run`] builds the breaker `early` before the recorder and calls it once
//! under it. The breaker `idle` is built under the recorder and never called: it exports its
//! closed state from build.

use metrics_exporter_prometheus::{
    BuildError, ExporterFuture, PrometheusBuilder, PrometheusRecorder,
};
use palisade::bulkhead::Bulkhead;
use palisade::circuit_breaker::CircuitBreaker;
use palisade::common::BoxError;
use palisade::common::clock::{self, Clock};
use palisade::load_balancer::{Balancer, EndpointMeta};
use palisade::rate_limit::RateLimiter;
use palisade::retry::{Backoff, RetryBudget, RetryPolicy};
use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt};

/// Requests the load sends.
pub const CALLS: u32 = 300;
/// A request whose id is a multiple of this fails its first attempt.
pub const FAIL_EVERY: u32 = 10;
/// Requests in flight at once.
const CONCURRENCY: usize = 8;
/// Histogram buckets, in seconds (without them the exporter renders summaries, not `_bucket`).
const BUCKETS: [f64; 8] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0];

/// What [`run`] saw: the scrape and how the load ended.
#[derive(Debug)]
pub struct Scrape {
    /// The body of the scrape, in the Prometheus text format.
    pub text: String,
    /// Where the exporter listened.
    pub address: SocketAddr,
    /// Requests that returned an error to the caller.
    pub errors: u32,
}

/// One sample line of a scrape: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series name (`palisade_bulkhead_calls_total`, `…_bucket`).
    pub name: String,
    /// Label name → value.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

impl Scrape {
    /// The lines about `palisade_*` metrics: each family's `# HELP` and `# TYPE` lines, then
    /// its samples, sorted (the exporter's own order changes from run to run).
    pub fn palisade_lines(&self) -> Vec<&str> {
        // The exporter writes each family's lines together, after its `#` lines.
        let mut families: BTreeMap<&str, (Vec<&str>, Vec<&str>)> = BTreeMap::new();
        let mut family = "";
        for line in self.text.lines() {
            if let Some(rest) = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "))
            {
                family = rest.split(' ').next().unwrap_or_default();
                families.entry(family).or_default().0.push(line);
            } else if line.starts_with("palisade_") {
                let key = if line.starts_with(family) && !family.is_empty() {
                    family
                } else {
                    line.split(['{', ' ']).next().unwrap_or_default()
                };
                families.entry(key).or_default().1.push(line);
            }
        }
        families
            .into_iter()
            .filter(|(name, _)| name.starts_with("palisade_"))
            .flat_map(|(_, (mut comments, mut samples))| {
                comments.sort_unstable();
                samples.sort_by(|a, b| {
                    let (a, b) = (sort_key(a), sort_key(b));
                    (&a.0, &a.1, a.2)
                        .cmp(&(&b.0, &b.1, b.2))
                        .then(a.3.total_cmp(&b.3))
                });
                comments.into_iter().chain(samples)
            })
            .collect()
    }

    /// Every sample of the scrape (comment lines skipped; a line that does not parse too).
    pub fn samples(&self) -> Vec<Sample> {
        self.text.lines().filter_map(parse_sample).collect()
    }

    /// The value of the one series `name` whose labels include `labels`; `None` if there is
    /// none or more than one.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = self.samples().into_iter().filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|have| have == v))
        });
        let first = found.next()?;
        found.next().is_none().then_some(first.value)
    }
}

/// Orders a family's samples by series, a histogram's `_bucket`s (by `le`, `+Inf` last)
/// before its `_sum` and `_count`.
fn sort_key(line: &str) -> (String, BTreeMap<String, String>, u8, f64) {
    let Some(mut sample) = parse_sample(line) else {
        return (line.to_owned(), BTreeMap::new(), 0, 0.0);
    };
    let le = sample
        .labels
        .remove("le")
        .map_or(0.0, |le| le.parse().unwrap_or(f64::INFINITY));
    let (base, rank) = [("_bucket", 0), ("_sum", 1), ("_count", 2)]
        .into_iter()
        .find_map(|(suffix, rank)| {
            sample
                .name
                .strip_suffix(suffix)
                .map(|b| (b.to_owned(), rank))
        })
        .unwrap_or((sample.name, 0));
    (base, sample.labels, rank, le)
}

/// Parses `name{k="v",…} value` or `name value`. Label values here never hold `"` or `,`.
fn parse_sample(line: &str) -> Option<Sample> {
    if line.starts_with('#') || line.is_empty() {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().ok()?,
    };
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => {
            let mut labels = BTreeMap::new();
            for pair in rest.strip_suffix('}')?.split(',').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=')?;
                labels.insert(k.to_owned(), v.trim_matches('"').to_owned());
            }
            (name, labels)
        }
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Builds the exporter with its HTTP listener on a free loopback port.
///
/// The builder binds the address it is given, so the port is found first by binding port 0
/// and letting it go; should another process take it in between, try again with a new one.
fn exporter() -> Result<(PrometheusRecorder, ExporterFuture, SocketAddr), BoxError> {
    let mut last = None;
    for _ in 0..5 {
        let address = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        match PrometheusBuilder::new()
            .with_http_listener(address)
            .set_buckets(&BUCKETS)?
            .build()
        {
            Ok((recorder, serve)) => return Ok((recorder, serve, address)),
            Err(error @ BuildError::FailedToCreateHTTPListener(_)) => last = Some(error),
            Err(error) => return Err(error.into()),
        }
    }
    Err(last.map_or_else(|| "no free port".into(), Into::into))
}

/// Runs the stack under a Prometheus recorder and scrapes the exporter's listener.
///
/// # Errors
///
/// A setup failure (no free port, a refused configuration), or a scrape that failed or did
/// not answer `200 OK`. Calls that fail are counted in [`Scrape::errors`].
pub fn run() -> Result<Scrape, BoxError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()?;
    // Built while no recorder exists: it registers at its first event under one.
    let early = CircuitBreaker::builder().name("early").build()?;
    let (recorder, serve, address) = {
        // The exporter spawns its upkeep task, so it is built inside the runtime.
        let _context = runtime.enter();
        exporter()?
    };
    runtime.spawn(serve);
    metrics::with_local_recorder(&recorder, || runtime.block_on(load(early, address)))
}

/// An endpoint: answers after 1 ms; fails the first attempt of a request `FAIL_EVERY` divides.
fn endpoint(
    seen: Arc<Mutex<HashSet<u32>>>,
) -> impl tower::Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send + Sync
{
    tower::service_fn(move |id: u32| {
        let first = seen.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
        async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            if first && id.is_multiple_of(FAIL_EVERY) {
                Err::<u32, BoxError>(format!("request {id}: connection reset").into())
            } else {
                Ok(id)
            }
        }
    })
}

async fn load(early: CircuitBreaker, address: SocketAddr) -> Result<Scrape, BoxError> {
    // The layers built from here on time calls on tokio's paused clock, so the durations
    // they record are virtual and the same on every run.
    let _clock = clock::set_default(Clock::tokio());
    // Built under the recorder and never called: its state gauge comes from build.
    let _idle = CircuitBreaker::builder().name("idle").build()?;

    let seen = Arc::new(Mutex::new(HashSet::new()));
    let balancer = Balancer::builder().name("backends").build()?;
    for key in ["a", "b", "c"] {
        balancer.insert(key, endpoint(seen.clone()), EndpointMeta::new());
    }
    let retry = RetryPolicy::builder()
        .name("client")
        .max_attempts(2)
        .backoff(Backoff::constant(Duration::from_millis(10)))
        .budget(RetryBudget::builder().name("client").build()?)
        .seed(7)
        .build()?;
    let breaker = CircuitBreaker::builder()
        .name("backends")
        // Slow-call detection times every call, so the breaker records its duration histogram.
        .slow_call_duration(Duration::from_secs(1))
        .build()?;
    let limiter = RateLimiter::builder()
        .name("client")
        // Well above this load: it never refuses here.
        .rate(10_000, Duration::from_secs(1))
        .burst(1_000)
        .build()?;
    let bulkhead = Bulkhead::builder()
        .name("client")
        .max_concurrent_calls(2 * CONCURRENCY)
        .build()?;
    let stack = ServiceBuilder::new()
        .layer(retry.layer())
        .layer(breaker.layer())
        .layer(limiter.layer())
        .layer(bulkhead.layer())
        .service(balancer.service());

    let mut errors = 0;
    let ids: Vec<u32> = (0..CALLS).collect();
    for chunk in ids.chunks(CONCURRENCY) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|&id| tokio::spawn(stack.clone().oneshot(id)))
            .collect();
        for task in tasks {
            if task.await?.is_err() {
                errors += 1;
            }
        }
    }

    // One call through the breaker built before the recorder.
    ServiceBuilder::new()
        .layer(early.layer())
        .service(tower::service_fn(
            |id: u32| async move { Ok::<_, BoxError>(id) },
        ))
        .oneshot(0)
        .await?;

    let text = tokio::task::spawn_blocking(move || scrape(address)).await??;
    Ok(Scrape {
        text,
        address,
        errors,
    })
}

/// `GET /metrics` over a plain TCP connection; returns the body of a `200 OK`.
fn scrape(address: SocketAddr) -> Result<String, BoxError> {
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or("scrape: no end of headers")?;
    let status = head.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("scrape: {status}").into());
    }
    Ok(body.to_owned())
}
