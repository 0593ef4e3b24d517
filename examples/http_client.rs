//! A hyper-util HTTP client behind the recommended Palisade stack, against a fault-injecting
//! hyper server on 127.0.0.1 (a free port; loopback only).
//!
//! Run it with `cargo run -p palisade-examples --example http_client`. The integration test
//! `examples/tests/http_client.rs` runs the same [`run`] and asserts what this prints.
//!
//! Routes of the fault server:
//!
//! - `/healthy`: 200 after 1 ms.
//! - `/failing`: always 500, so its breaker opens (and only its breaker).
//! - `/limited`: the first attempt of every third request (by `x-request-id`) gets
//!   `429 Too Many Requests` with `Retry-After: 1`, every other attempt 200.
//! - `/slow`: answers after 2 s, past the 300 ms per-attempt timeout.
//!
//! The stack, outer to inner, one per route (so each route has its own breaker; the retry
//! budget, limiter, bulkhead and fallback are shared):
//!
//! ```text
//! fallback -> retry (budget, deadline, Retry-After read from the response up to
//!   max_retry_after, idempotent only) -> circuit breaker (per route) -> rate limiter
//!   -> bulkhead -> timeout -> client
//! ```

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use palisade::bulkhead::Bulkhead;
use palisade::circuit_breaker::{CircuitBreaker, State};
use palisade::common::BoxError;
use palisade::fallback::Fallback;
use palisade::http::{HttpClassifier, Idempotency};
use palisade::rate_limit::RateLimiter;
use palisade::retry::{Backoff, RetryBudget, RetryEvent, RetryPolicy};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

/// The routes of the fault server, with how many requests the load sends to each.
pub const ROUTES: [(&str, usize); 4] = [
    ("/healthy", 400),
    ("/failing", 60),
    ("/limited", 6),
    ("/slow", 4),
];

/// A stack for one route, stored in a struct: `Clone + Send + Sync`.
type RouteClient = BoxCloneSyncService<Request<Full<Bytes>>, Response<Bytes>, BoxError>;

/// What the run saw, per route and per layer.
#[derive(Debug, Default)]
pub struct Report {
    /// Per route: requests sent by the load.
    pub sent: HashMap<&'static str, usize>,
    /// Per route: answers by status (fallback answers count as status 200 with
    /// `x-fallback: 1`, under [`Report::fallbacks`]).
    pub statuses: HashMap<&'static str, HashMap<u16, usize>>,
    /// Per route: answers given by the fallback.
    pub fallbacks: HashMap<&'static str, usize>,
    /// Per route: calls that ended in an error reaching the caller.
    pub errors: HashMap<&'static str, usize>,
    /// Per route: the breaker's state at the end, and its rejections.
    pub breakers: HashMap<&'static str, (State, u64)>,
    /// Per route: attempts the server received.
    pub server_hits: HashMap<&'static str, u64>,
    /// The gaps between the first and second attempt of each `/limited` request.
    pub limited_gaps: Vec<Duration>,
    /// Retries scheduled, all routes.
    pub retries: u64,
    /// Retries whose wait came from a remote hint (≥ 1 s here).
    pub hinted_retries: u64,
}

/// The fault server's shared record.
#[derive(Default)]
struct ServerLog {
    hits: Mutex<HashMap<String, u64>>,
    /// `x-request-id` of `/limited` requests -> arrival times of its attempts.
    limited: Mutex<HashMap<String, Vec<Instant>>>,
}

async fn fault(request: Request<Incoming>, log: Arc<ServerLog>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    *log.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let answer = |status: u16| {
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from(format!("{status} {path}"))))
            .unwrap()
    };
    match path.as_str() {
        "/healthy" => {
            tokio::time::sleep(Duration::from_millis(1)).await;
            answer(200)
        }
        "/failing" => answer(500),
        "/limited" => {
            let id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let paced = id
                .rsplit('-')
                .next()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n % 3 == 0);
            let mut limited = log.limited.lock().unwrap();
            let attempts = limited.entry(id).or_default();
            attempts.push(Instant::now());
            if paced && attempts.len() == 1 {
                let mut response = answer(429);
                response
                    .headers_mut()
                    .insert("retry-after", http::HeaderValue::from_static("1"));
                response
            } else {
                answer(200)
            }
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            answer(200)
        }
        _ => answer(404),
    }
}

/// Starts the fault server on a free loopback port.
async fn serve(log: Arc<ServerLog>) -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let log = log.clone();
                    async move { Ok::<_, std::convert::Infallible>(fault(req, log).await) }
                });
                // A connection error (the client went away) ends this connection only.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// Runs the server, the stacks and the load; returns what happened.
///
/// # Errors
///
/// A setup failure (binding the port, a refused configuration). Calls that fail are counted
/// in the report, not returned.
///
/// # Panics
///
/// If a load task panicked (a bug), through a poisoned lock of the server's record.
pub async fn run() -> Result<Report, BoxError> {
    let log = Arc::new(ServerLog::default());
    let addr = serve(log.clone()).await?;

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let network = tower::service_fn(move |request: Request<Full<Bytes>>| {
        let client = client.clone();
        async move {
            let response = client.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, BoxError>(Response::from_parts(parts, body))
        }
    });

    // Shared by every route.
    let budget = RetryBudget::builder().build()?;
    let limiter = RateLimiter::builder()
        // Well above this load: a quota that never refuses a healthy call here.
        .rate(10_000, Duration::from_secs(1))
        .burst(1_000)
        .name("partner_quota")
        .build()?;
    let bulkhead = Bulkhead::builder()
        .max_concurrent_calls(32)
        .name("client")
        .build()?;
    let fallback = Fallback::builder(|_primary: Result<Response<Bytes>, BoxError>| {
        let mut response = Response::new(Bytes::from_static(b"fallback"));
        response
            .headers_mut()
            .insert("x-fallback", http::HeaderValue::from_static("1"));
        std::future::ready(Ok::<_, BoxError>(response))
    })
    // 5xx and 429 answers fall back too, not only errors and local rejections.
    .classify(HttpClassifier::new())
    .max_concurrent(64)
    .build()?;
    let retries = Arc::new(AtomicU64::new(0));
    let hinted = Arc::new(AtomicU64::new(0));

    let mut stacks: HashMap<&'static str, (RouteClient, CircuitBreaker)> = HashMap::new();
    for (route, _) in ROUTES {
        let idempotency = Idempotency::rfc9110();
        let retry = RetryPolicy::builder()
            .max_attempts(3)
            .backoff(Backoff::full_jitter(
                Duration::from_millis(5),
                Duration::from_millis(100),
            ))
            // A 429's or 503's `Retry-After`, read from the response itself: the retry waits
            // for it (up to the cap, within the deadline) and the caller gets the last answer
            // when retrying ends.
            .remote_hint(palisade::http::retry_after_of)
            .max_retry_after(Duration::from_secs(2))
            .deadline(Duration::from_secs(5))
            .budget(budget.clone())
            .classify(HttpClassifier::new())
            .clone_requests_with(move |r: &Request<Full<Bytes>>| idempotency.clone_request(r))
            .name(route)
            .build()?;
        let (r, h) = (retries.clone(), hinted.clone());
        retry.subscribe(move |event: &RetryEvent| {
            if let RetryEvent::RetryScheduled { delay, .. } = *event {
                // Relaxed: counters read after the load has finished.
                r.fetch_add(1, Ordering::Relaxed);
                if delay >= Duration::from_secs(1) {
                    h.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let breaker = CircuitBreaker::builder()
            .name(route)
            .count_window(20)
            .minimum_calls(10)
            .failure_rate_threshold(50.0)
            .build()?;
        let stack = ServiceBuilder::new()
            .layer(fallback.layer())
            .layer(retry.layer())
            .layer(breaker.layer_with(HttpClassifier::new()))
            .layer(limiter.layer())
            .layer(bulkhead.layer())
            .layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(
                300,
            )))
            .service(network.clone());
        stacks.insert(route, (BoxCloneSyncService::new(stack), breaker));
    }

    // The load: every route's requests interleaved, at most 8 in flight.
    let mut calls = Vec::new();
    for (route, count) in ROUTES {
        for i in 0..count {
            calls.push((route, i));
        }
    }
    calls.sort_by_key(|(_, i)| *i);
    let mut report = Report::default();
    for chunk in calls.chunks(8) {
        let mut tasks = Vec::new();
        for &(route, i) in chunk {
            let client = stacks[route].0.clone();
            let request = Request::get(format!("http://{addr}{route}"))
                .header("x-request-id", format!("{route}-{i}"))
                .body(Full::new(Bytes::new()))?;
            tasks.push((route, tokio::spawn(client.oneshot(request))));
        }
        for (route, task) in tasks {
            *report.sent.entry(route).or_default() += 1;
            match task.await? {
                Ok(response) if response.headers().contains_key("x-fallback") => {
                    *report.fallbacks.entry(route).or_default() += 1;
                }
                Ok(response) => {
                    *report
                        .statuses
                        .entry(route)
                        .or_default()
                        .entry(response.status().as_u16())
                        .or_default() += 1;
                }
                Err(_) => *report.errors.entry(route).or_default() += 1,
            }
        }
    }

    for (route, (_, breaker)) in &stacks {
        let snapshot = breaker.snapshot();
        report
            .breakers
            .insert(route, (snapshot.state, snapshot.rejected_calls));
    }
    for (route, _) in ROUTES {
        let hits = log.hits.lock().unwrap().get(route).copied().unwrap_or(0);
        report.server_hits.insert(route, hits);
    }
    for attempts in log.limited.lock().unwrap().values() {
        if let [first, second, ..] = attempts[..] {
            report.limited_gaps.push(second - first);
        }
    }
    // Relaxed: the load has finished; these are plain counters.
    report.retries = retries.load(Ordering::Relaxed);
    report.hinted_retries = hinted.load(Ordering::Relaxed);
    Ok(report)
}

/// Prints what each layer did.
///
/// # Panics
///
/// On a report that [`run`] did not make (a route missing).
pub fn print(report: &Report) {
    println!(
        "route       sent  server  answers                 fallback  errors  breaker (rejected)"
    );
    for (route, _) in ROUTES {
        let mut statuses: Vec<_> = report
            .statuses
            .get(route)
            .map(|s| s.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default();
        statuses.sort_unstable();
        let statuses = statuses
            .iter()
            .map(|(status, n)| format!("{status}x{n}"))
            .collect::<Vec<_>>()
            .join(" ");
        let (state, rejected) = report.breakers[route];
        println!(
            "{route:<10} {:>5} {:>7}  {statuses:<22} {:>8} {:>7}  {state:?} ({rejected})",
            report.sent[route],
            report.server_hits[route],
            report.fallbacks.get(route).copied().unwrap_or(0),
            report.errors.get(route).copied().unwrap_or(0),
        );
    }
    println!(
        "retry: {} retries scheduled, {} of them waited for a server's Retry-After",
        report.retries, report.hinted_retries
    );
    let min_gap = report
        .limited_gaps
        .iter()
        .min()
        .copied()
        .unwrap_or_default();
    println!(
        "Retry-After: 1 honoured: {} hinted requests, shortest gap between attempts {min_gap:?}",
        report.limited_gaps.len()
    );
}

#[allow(dead_code)] // reason: the integration test includes this file as a module and calls `run`
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let report = run().await?;
    print(&report);
    Ok(())
}
