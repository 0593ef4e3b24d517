//! palisade-http with palisade-retry and a breaker, in virtual time: a hinted 503 is retried
//! after its Retry-After (not the backoff), a hint above the cap ends retrying, a replayable
//! body is retried and an oversized one is sent once.
//!
//! Each Retry-After test runs two stacks: the retry reading hints itself
//! (`.remote_hint(palisade_http::retry_after_of)`, the way to do it), and the
//! `RetryAfterLayer`/`RecoverResponseLayer` adapter pair (kept for retry layers that read
//! hints from errors only); both must behave the same.

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use palisade_circuit_breaker::CircuitBreaker;
use palisade_core::BoxError;
use palisade_http::body::{BufferBodyLayer, BufferedBody};
use palisade_http::hint::{RecoverResponseLayer, RetryAfterLayer};
use palisade_http::{HttpClassifier, Idempotency};
use palisade_retry::{Backoff, RemoteHint, RetryPolicy, RetryPolicyBuilder, RetryRequest};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};

/// Attempt arrival times and the bodies they carried.
type Seen = Arc<Mutex<Vec<(Instant, Bytes)>>>;
/// Statuses to answer, each with an optional Retry-After, last first.
type Script = Arc<Mutex<Vec<(u16, Option<&'static str>)>>>;

/// A backend answering the scripted statuses in turn (then 200), recording when each attempt
/// arrived and the body it carried.
#[derive(Clone)]
struct Backend {
    script: Script,
    seen: Seen,
}

impl Backend {
    fn new(script: &[(u16, Option<&'static str>)]) -> Backend {
        let mut script = script.to_vec();
        script.reverse();
        Backend {
            script: Arc::new(Mutex::new(script)),
            seen: Arc::default(),
        }
    }

    async fn answer(
        self,
        request: Request<BufferedBody<Full<Bytes>>>,
    ) -> Result<Response<String>, BoxError> {
        let body = request.into_body().collect().await?.to_bytes();
        self.seen.lock().unwrap().push((Instant::now(), body));
        let (status, hint) = self.script.lock().unwrap().pop().unwrap_or((200, None));
        let mut response = Response::builder().status(status);
        if let Some(hint) = hint {
            response = response.header("retry-after", hint);
        }
        Ok(response.body(String::new())?)
    }
}

type Req = Request<BufferedBody<Full<Bytes>>>;

/// How the retry learns the server's hint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hints {
    /// `.remote_hint(palisade_http::retry_after_of)` on the retry policy.
    Hook,
    /// `RetryAfterLayer` below the retry and `RecoverResponseLayer` above it.
    Adapters,
}

const BOTH: [Hints; 2] = [Hints::Hook, Hints::Adapters];

fn builder(cap: Duration) -> RetryPolicyBuilder<HttpClassifier, impl RetryRequest<Req> + Clone> {
    let idempotency = Idempotency::rfc9110();
    RetryPolicy::builder()
        .max_attempts(3)
        .backoff(Backoff::constant(Duration::from_millis(10)))
        .max_retry_after(cap)
        .classify(HttpClassifier::new())
        .clone_requests_with(move |r: &Req| idempotency.clone_buffered(r))
        .unlimited()
        .seed(7)
}

/// The policy that reads `Retry-After` from responses itself: `retry_after_of` plugged
/// straight into the hook.
fn hinted_policy(
    cap: Duration,
) -> RetryPolicy<HttpClassifier, impl RetryRequest<Req> + Clone, impl RemoteHint<Response<String>>>
{
    builder(cap)
        .remote_hint(palisade_http::retry_after_of)
        .build()
        .unwrap()
}

async fn run(
    hints: Hints,
    backend: &Backend,
    cap: Duration,
    request: Request<Full<Bytes>>,
) -> Result<Response<String>, BoxError> {
    let breaker = CircuitBreaker::builder().build().unwrap();
    let backend = backend.clone();
    let client = service_fn(move |r| backend.clone().answer(r));
    match hints {
        Hints::Hook => {
            let stack = ServiceBuilder::new()
                .layer(BufferBodyLayer::new(64))
                .layer(hinted_policy(cap).layer())
                .layer(breaker.layer_with(HttpClassifier::new()))
                .service(client);
            stack.oneshot(request).await
        }
        Hints::Adapters => {
            let stack = ServiceBuilder::new()
                .layer(RecoverResponseLayer::new())
                .layer(BufferBodyLayer::new(64))
                .layer(builder(cap).build().unwrap().layer())
                .layer(breaker.layer_with(HttpClassifier::new()))
                .layer(RetryAfterLayer::new())
                .service(client);
            stack.oneshot(request).await
        }
    }
}

fn put(body: &'static [u8]) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::PUT)
        .uri("/item")
        .body(Full::new(Bytes::from_static(body)))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn retry_after_from_a_response_is_honoured_not_the_backoff() {
    for hints in BOTH {
        let backend = Backend::new(&[(503, Some("2")), (429, Some("1"))]);
        let response = run(hints, &backend, Duration::from_secs(5), put(b"payload"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let seen = backend.seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        // Exactly the hints (paused time; the 10 ms backoff is shorter).
        assert_eq!(seen[1].0 - seen[0].0, Duration::from_secs(2), "{hints:?}");
        assert_eq!(seen[2].0 - seen[1].0, Duration::from_secs(1), "{hints:?}");
        // Every attempt carried the whole body.
        assert!(seen.iter().all(|(_, body)| body == "payload"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_hint_above_the_cap_returns_the_answer_at_once() {
    for hints in BOTH {
        let backend = Backend::new(&[(503, Some("3600"))]);
        let started = Instant::now();
        let response = run(hints, &backend, Duration::from_secs(5), put(b"x"))
            .await
            .unwrap();
        assert_eq!(response.status(), 503, "the server's answer ({hints:?})");
        assert_eq!(response.headers()["retry-after"], "3600");
        assert_eq!(backend.seen.lock().unwrap().len(), 1);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}

/// A malformed `Retry-After` is no hint: the backoff.
#[tokio::test(start_paused = true)]
async fn unhinted_failures_retry_on_the_backoff() {
    for hints in BOTH {
        let backend = Backend::new(&[(500, None), (503, Some("soon"))]);
        let response = run(hints, &backend, Duration::from_secs(5), put(b"x"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let seen = backend.seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[1].0 - seen[0].0, Duration::from_millis(10));
        assert_eq!(seen[2].0 - seen[1].0, Duration::from_millis(10));
    }
}

/// The retry alone, no breaker: `retry_after_of` plugged straight into the hook, on a stack
/// whose deadline the hint would overrun.
#[tokio::test(start_paused = true)]
async fn retry_after_of_plugs_into_the_hook_and_the_deadline_bounds_it() {
    let retry = RetryPolicy::builder()
        .classify(HttpClassifier::new())
        .backoff(Backoff::constant(Duration::from_millis(10)))
        .max_retry_after(Duration::from_secs(30))
        .deadline(Duration::from_secs(3))
        .remote_hint(palisade_http::retry_after_of)
        .unlimited()
        .build()
        .unwrap();
    let calls: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let log = calls.clone();
    let client = service_fn(move |_: Request<String>| {
        let calls = log.clone();
        async move {
            let mut calls = calls.lock().unwrap();
            calls.push(Instant::now());
            let hint = if calls.len() == 1 { "1" } else { "10" };
            Response::builder()
                .status(429)
                .header("retry-after", hint)
                .body(String::new())
        }
    });
    let started = Instant::now();
    let response = retry
        .layer()
        .layer(client)
        .oneshot(Request::new(String::new()))
        .await
        .unwrap();
    // 1 s honoured; then 10 s would pass the 3 s deadline: the 429 at once.
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "10");
    assert_eq!(calls.lock().unwrap().len(), 2);
    assert_eq!(started.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_limit_or_a_post_is_sent_once() {
    let big: &'static [u8] = &[b'z'; 100];
    let backend = Backend::new(&[(503, None)]);
    let response = run(Hints::Hook, &backend, Duration::from_secs(5), put(big))
        .await
        .unwrap();
    assert_eq!(response.status(), 503, "not retried");
    assert_eq!(backend.seen.lock().unwrap().len(), 1);
    assert_eq!(backend.seen.lock().unwrap()[0].1.len(), 100, "sent whole");

    let backend = Backend::new(&[(503, None)]);
    let post = Request::post("/orders")
        .body(Full::new(Bytes::from_static(b"o")))
        .unwrap();
    let response = run(Hints::Hook, &backend, Duration::from_secs(5), post)
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        503,
        "POST is not idempotent: not retried"
    );
    assert_eq!(backend.seen.lock().unwrap().len(), 1);
}
