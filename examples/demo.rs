//! The Palisade demo: a dependency goes down, and two clients meet it.
//!
//! A simulated backend answers in 20–40 ms and fails 1 % of calls. At t = 8 s it goes down
//! for 8 s, then recovers. Clients send 200 requests a second for 30 s of *virtual* time (tokio's
//! paused clock: the whole program runs in about a second) through one of two stacks:
//!
//! - **naive**: retry every failure up to 3 attempts, 10 ms apart, with no budget: what most
//!   hand-written clients do;
//! - **palisade**: `ServiceBuilder` with Palisade's retry (3 attempts, default retry budget,
//!   a 500 ms deadline), circuit breaker, rate limiter and bulkhead, in that order.
//!
//! It prints, per 2 s of virtual time, what the backend had to take and what the callers got,
//! then the breaker's state transitions and a summary of the outage.
//!
//! Run it with `cargo run --example demo`.

use palisade::circuit_breaker::CircuitBreakerEvent;
use palisade::common::Clock;
use palisade::common::test_util::{MockBackend, RandomProfile, Script};
use palisade::prelude::*;
use palisade::retry::Backoff;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

const RUN_FOR: Duration = Duration::from_secs(30);
const REQUEST_EVERY: Duration = Duration::from_millis(5);
const OUTAGE: (Duration, Duration) = (Duration::from_secs(8), Duration::from_secs(16));
const ROW: Duration = Duration::from_secs(2);
const ROWS: usize = 15;

/// What became of each request, per row of the table.
#[derive(Clone, Copy, Default)]
struct Row {
    sent: u64,
    ok: u64,
    failed: u64,
    shed: u64,
    backend_calls: u64,
}

#[derive(Default)]
struct Tally {
    rows: [Row; ROWS],
}

impl Tally {
    fn record(&mut self, at: Duration, result: &Result<(), BoxError>) {
        let row = &mut self.rows[row_of(at)];
        row.sent += 1;
        match result {
            Ok(()) => row.ok += 1,
            Err(e) if is_shed_locally(e) => row.shed += 1,
            Err(_) => row.failed += 1,
        }
    }
}

fn row_of(at: Duration) -> usize {
    usize::try_from(at.as_millis() / ROW.as_millis())
        .unwrap_or(usize::MAX)
        .min(ROWS - 1)
}

/// Rejected by a Palisade layer without reaching the backend.
fn is_shed_locally(error: &BoxError) -> bool {
    error.is::<CircuitOpen>() || error.is::<RateLimited>() || error.is::<BulkheadFull>()
}

fn backend() -> MockBackend {
    MockBackend::new(Script::random(
        2026,
        RandomProfile {
            failure_rate: 0.01,
            latency: (Duration::from_millis(20), Duration::from_millis(40)),
            ..RandomProfile::default()
        },
    ))
    .with_outage(OUTAGE.0, OUTAGE.1)
}

/// Sends the open-loop traffic through `client` and fills a tally; samples the backend's call
/// counter at each row boundary.
async fn drive<S>(client: S, backend: &MockBackend) -> Tally
where
    S: Service<u64, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
{
    let clock = Clock::tokio();
    let origin = clock.now();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut tasks = Vec::new();
    let mut next_row = ROW;
    let mut calls_at_row_start = 0;
    let mut i = 0u64;
    while clock.elapsed_since(origin) < RUN_FOR {
        let at = clock.elapsed_since(origin);
        if at >= next_row {
            let calls = backend.stats().calls;
            tally.lock().expect("tally").rows[row_of(at) - 1].backend_calls =
                calls - calls_at_row_start;
            calls_at_row_start = calls;
            next_row += ROW;
        }
        let client = client.clone();
        let tally = Arc::clone(&tally);
        tasks.push(tokio::spawn(async move {
            let result = client.oneshot(i).await.map(drop);
            tally.lock().expect("tally").record(at, &result);
        }));
        i += 1;
        tokio::time::sleep(REQUEST_EVERY).await;
    }
    for task in tasks {
        task.await.expect("no request task panics");
    }
    let calls = backend.stats().calls;
    tally.lock().expect("tally").rows[ROWS - 1].backend_calls = calls - calls_at_row_start;
    Arc::try_unwrap(tally)
        .ok()
        .expect("all tasks joined")
        .into_inner()
        .expect("tally")
}

async fn naive() -> Tally {
    let backend = backend();
    let retry = RetryPolicy::builder()
        .max_attempts(3)
        .backoff(Backoff::constant(Duration::from_millis(10)))
        .unlimited()
        .clock(Clock::tokio())
        .seed(1)
        .build()
        .expect("valid retry policy");
    let client = ServiceBuilder::new()
        .retry_policy(&retry)
        .map_err(BoxError::from)
        .service(backend.clone().map_response(drop));
    drive(client, &backend).await
}

async fn protected(transitions: Arc<Mutex<Vec<(Duration, String)>>>) -> Tally {
    let backend = backend();
    let clock = Clock::tokio();
    let origin = clock.now();

    let retry = RetryPolicy::builder()
        .name("demo")
        .max_attempts(3)
        .backoff(Backoff::full_jitter(
            Duration::from_millis(10),
            Duration::from_millis(200),
        ))
        .deadline(Duration::from_millis(500))
        .clock(clock.clone())
        .seed(1)
        .build()
        .expect("valid retry policy");
    let breaker = CircuitBreaker::builder()
        .name("demo")
        .count_window(100)
        .minimum_calls(20)
        .failure_rate_threshold(50.0)
        .wait_duration_in_open(Duration::from_secs(1))
        .permitted_calls_in_half_open(5)
        .jitter_seed(1)
        .clock(clock.clone())
        .build()
        .expect("valid breaker");
    let limiter = RateLimiter::builder()
        .name("demo")
        .rate(300, Duration::from_secs(1))
        .burst(60)
        .clock(clock.clone())
        .build()
        .expect("valid rate limit");
    let bulkhead = Bulkhead::builder()
        .name("demo")
        .max_concurrent_calls(32)
        .clock(clock.clone())
        .build()
        .expect("valid bulkhead");

    let watch = clock.clone();
    breaker.subscribe(move |event: &CircuitBreakerEvent| {
        if let CircuitBreakerEvent::StateTransition { from, to } = event {
            transitions
                .lock()
                .expect("transitions")
                .push((watch.elapsed_since(origin), format!("{from:?} -> {to:?}")));
        }
    });

    let client = ServiceBuilder::new()
        .retry_policy(&retry)
        .circuit_breaker(&breaker)
        .rate_limiter(&limiter)
        .bulkhead(&bulkhead)
        .map_err(BoxError::from)
        .service(backend.clone().map_response(drop));
    drive(client, &backend).await
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let naive = naive().await;
    let transitions = Arc::new(Mutex::new(Vec::new()));
    let protected = protected(Arc::clone(&transitions)).await;

    println!(
        "200 requests/s for {}s; the backend is down from t={}s to t={}s (virtual time)\n",
        RUN_FOR.as_secs(),
        OUTAGE.0.as_secs(),
        OUTAGE.1.as_secs()
    );
    println!(
        "            |      naive: retry x3, no budget      |  palisade: retry+budget, breaker, limit, bulkhead"
    );
    println!(
        "  t (s)     | backend calls      ok  failed        | backend calls      ok  failed  shed locally"
    );
    for (r, (n, p)) in naive.rows.iter().zip(protected.rows.iter()).enumerate() {
        let from = r as u64 * ROW.as_secs();
        let down = from >= OUTAGE.0.as_secs() && from < OUTAGE.1.as_secs();
        println!(
            "  {:>2}-{:<2} {} | {:>13} {:>7} {:>7}        | {:>13} {:>7} {:>7} {:>13}",
            from,
            from + ROW.as_secs(),
            if down { "down" } else { "    " },
            n.backend_calls,
            n.ok,
            n.failed + n.shed,
            p.backend_calls,
            p.ok,
            p.failed,
            p.shed
        );
    }

    let outage_rows = row_of(OUTAGE.0)..row_of(OUTAGE.1);
    let sum = |rows: &[Row], f: fn(&Row) -> u64| -> u64 { rows.iter().map(f).sum() };
    let sent = sum(&naive.rows[outage_rows.clone()], |r| r.sent);
    let naive_load = sum(&naive.rows[outage_rows.clone()], |r| r.backend_calls);
    let palisade_load = sum(&protected.rows[outage_rows], |r| r.backend_calls);
    println!("\nbreaker transitions (virtual time):");
    for (at, what) in transitions.lock().expect("transitions").iter() {
        println!("  {:>7.3}s  {what}", at.as_secs_f64());
    }
    println!("\nduring the outage, {sent} requests were sent by each client:");
    println!(
        "  naive client:    the backend took {naive_load} calls ({:.2}x the requests)",
        naive_load as f64 / sent as f64
    );
    println!(
        "  palisade client: the backend took {palisade_load} calls ({:.2}x the requests); the rest failed fast",
        palisade_load as f64 / sent as f64
    );
    let after = row_of(OUTAGE.1)..ROWS;
    println!(
        "after recovery: naive {} ok of {}, palisade {} ok of {}",
        sum(&naive.rows[after.clone()], |r| r.ok),
        sum(&naive.rows[after.clone()], |r| r.sent),
        sum(&protected.rows[after.clone()], |r| r.ok),
        sum(&protected.rows[after], |r| r.sent),
    );
}
