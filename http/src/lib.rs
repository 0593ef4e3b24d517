//! HTTP and gRPC for the Palisade resilience layers: response classifiers, `Retry-After` and
//! gRPC pushback as remote hints, idempotency, replayable bodies, and local rejections turned
//! into `429`/`503` responses.
//!
//! Palisade's layers speak `Result<Response, BoxError>`; HTTP says most of what matters in an
//! `Ok`: a `503` is an answer, not an error, and its `Retry-After` is a header. This crate
//! teaches the layers HTTP without tying them to a client: it depends on the `http` and
//! `http-body` crates only (no hyper, no axum), so it works with hyper-util's client, reqwest's
//! tower services, tonic channels and axum servers alike.
//!
//! | need | here |
//! | --- | --- |
//! | which answers count against health, which are retried | [`HttpClassifier`], [`GrpcClassifier`] ([`classify`]) |
//! | the server's "come back in 2 s" | [`retry_after_of`], [`mod@retry_after`]; plug it into the retry's `remote_hint` hook ([`hint`] for other retry layers) |
//! | retry only what may be sent twice | [`Idempotency`], [`is_idempotent`] |
//! | retry a request whose body is not `Clone` | [`body::BufferBodyLayer`], [`body::BufferedBody`] |
//! | a server answering its own rejections | [`server::rejection_response`], [`server::handle_error`] |
//!
//! # Using Palisade with HTTP
//!
//! ## Dependencies
//!
//! ```toml
//! [dependencies]
//! palisade = { version = "0.1", features = ["http"] }   # or palisade-http and the layer crates
//! tower = { version = "0.5", features = ["util", "timeout"] } # ServiceBuilder, BoxCloneSyncService, Timeout
//! http = "1"
//! ```
//!
//! tower's `util` feature gives `ServiceBuilder`, `ServiceExt::oneshot` and
//! `BoxCloneSyncService`; `timeout` gives `TimeoutLayer`.
//!
//! ## The order of layers, and why
//!
//! Outer to inner (the first `.layer()` of a `ServiceBuilder` is the outermost):
//!
//! 1. **Fallback** (facade, `palisade::fallback`): last, so it answers for everything below,
//!    the retry's final failure included.
//! 2. [`body::BufferBodyLayer`]: makes the body replayable before the retry needs a copy.
//! 3. **Retry** with its budget, a deadline and `max_retry_after`, classifier
//!    [`HttpClassifier`], requests copied by [`Idempotency::clone_buffered`], and
//!    `.remote_hint(retry_after_of)` so that it waits out a `429`/`503`'s `Retry-After`
//!    (above a balancer, with `.remote_hint_per_endpoint()` too: see "Retry-After").
//! 4. **Circuit breaker** (classifier [`HttpClassifier`]): one attempt, one sample; an open
//!    breaker's rejection is a local rejection, which the retry returns at once.
//! 5. **Rate limit** for a partner's quota: below the retry, where attempts are counted.
//! 6. **Bulkhead**: caps the attempts in flight on the client.
//! 7. **Timeout** (`tower::timeout::TimeoutLayer`): per attempt, below the breaker, so a hang
//!    is a failure the breaker counts (`Elapsed` is an `Err`, a failure by default everywhere)
//!    and the retry tries again. (A retry's own `attempt_timeout` does the same from above,
//!    without the breaker counting it.) Choose it as the latency past which an answer is
//!    worth nothing: when the dependency slows down past it, every attempt fails and the
//!    breaker opens, where a client without it still gets its answers (over a fleet, the
//!    facade's `tests/status_failures.rs`: 0 of 2 000 answered at 450 ms with a 400 ms
//!    timeout per endpoint).
//! 8. The client.
//!
//! With a retry layer that reads hints from errors only (tower's own `Retry` with a policy
//! that looks at [`palisade_core::retry_after`], say), put [`hint::RetryAfterLayer`] right
//! above the client and [`hint::RecoverResponseLayer`] above the retry instead.
//!
//! ## Classifiers
//!
//! Give every layer that classifies the same classifier: [`HttpClassifier`] counts 408, 429
//! and 5xx as failures, ignores other 4xx, ignores local rejections, fails transport errors.
//! It implements `Classify<Response<B>, E>` for any `E`, so it is right both at the top of a
//! stack (where the error is `BoxError`) and directly over a client (where it is the
//! client's own error type). A closure classifier typed `Result<&Response<B>, &hyper::Error>`
//! placed over a Palisade layer does not compile (the layer's error is `BoxError`): the
//! usual source of an `E0599 … trait bounds were not satisfied` on `oneshot`.
//!
//! Over a fleet, that means the balancer (`Balancer::service_with(HttpClassifier::new())`,
//! or the facade's `ServiceBuilder::balancer_with`) and each endpoint's breaker too, not
//! only the retry. Their default counts only an `Err` as a failure, so to them an endpoint
//! answering `500` at once is healthy and the fastest of all, and P2C sends it the most
//! attempts (the facade's `tests/status_failures.rs`: 1 749 of 2 600 attempts, 1 149 of
//! 2 000 requests failed; with the classifier everywhere, 6 attempts and none failed).
//!
//! ## Retry-After
//!
//! [`retry_after_of`] reads `Retry-After` (seconds or HTTP-date) and `grpc-retry-pushback-ms`,
//! capped at a day, ignoring malformed values. It plugs straight into the retry policy's hook,
//! `RetryPolicy::builder().remote_hint(palisade_http::retry_after_of)`: when the classifier
//! calls a response a failure, the retry waits the longer of its backoff and the response's
//! hint. Set the retry's `max_retry_after` to the longest hint you will wait for (default: its
//! backoff cap); a longer hint, or one that reaches past the retry's deadline, returns the
//! answer at once. (Name the body type, `retry_after_of::<B>`, where nothing else in the
//! function fixes it.) [`hint`] has the adapter layers for retry layers without such a hook.
//!
//! Above a balancer, one endpoint's `Retry-After` speaks for that endpoint, and the retry goes
//! to another one: add `.remote_hint_per_endpoint()`, and the first hinted answer of a call is
//! retried on the backoff alone (however long its hint); a second in a row, from another
//! endpoint, is the fleet's and is waited out as above. Without it, over a fleet of three, an
//! endpoint answering `503` with `Retry-After: 30` failed every request whose attempt reached
//! it (over the cap), and one with `Retry-After: 1` kept each of them a second (the facade's
//! `tests/status_failures.rs`). Leave it off for a single server: the retry would go straight
//! back to the server that asked it to wait.
//!
//! ## Storing a stack in a struct
//!
//! A `ServiceBuilder` stack has a long type; box it once with
//! `tower::util::BoxCloneSyncService` (`Clone + Send + Sync`, so the struct is too):
//!
//! ```
//! use http::{Request, Response};
//! use palisade_core::BoxError;
//! use palisade_http::{HttpClassifier, retry_after_of};
//! use palisade_retry::RetryPolicy;
//! use palisade_circuit_breaker::CircuitBreaker;
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt, service_fn, util::BoxCloneSyncService};
//!
//! struct Inventory {
//!     client: BoxCloneSyncService<Request<String>, Response<String>, BoxError>,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let retry = RetryPolicy::builder()
//!     .classify(HttpClassifier::new())
//!     .remote_hint(retry_after_of)
//!     .max_retry_after(Duration::from_secs(2))
//!     .deadline(Duration::from_secs(5))
//!     .build()?;
//! let breaker = CircuitBreaker::builder().name("inventory").build()?;
//! // Stands in for hyper-util's client.
//! let network = service_fn(|req: Request<String>| async move {
//!     Ok::<_, std::io::Error>(Response::new(format!("stock for {}", req.uri())))
//! });
//! let stack = ServiceBuilder::new()
//!     .layer(retry.layer())
//!     .layer(breaker.layer_with(HttpClassifier::new()))
//!     .layer(tower::timeout::TimeoutLayer::new(Duration::from_secs(1)))
//!     .service(network);
//! let inventory = Inventory { client: BoxCloneSyncService::new(stack) };
//!
//! let answer = inventory.client.clone().oneshot(Request::new(String::new())).await?;
//! assert_eq!(answer.body(), "stock for /");
//! # Ok(())
//! # }
//! ```

//!
//! ## Compile errors, explained
//!
//! Two mistakes give an `E0599 … trait bounds were not satisfied` on `oneshot`/`ready` that
//! does not name the cause. A classifier typed with the *client's* error, placed above another
//! layer (whose error is `BoxError`):
//!
//! ```compile_fail
//! # use http::{Request, Response};
//! # use palisade_core::{BoxError, Outcome};
//! # use palisade_http::hint::RetryAfterLayer;
//! # use palisade_retry::RetryPolicy;
//! # use tower::{ServiceBuilder, ServiceExt, service_fn};
//! # async fn f() -> Result<(), BoxError> {
//! let classify = |result: Result<&Response<String>, &std::io::Error>| match result {
//!     Ok(response) if response.status().is_server_error() => Outcome::Failure,
//!     Ok(_) => Outcome::Success,
//!     Err(_) => Outcome::Failure,
//! };
//! let retry = RetryPolicy::builder().classify(classify).build()?;
//! let network = service_fn(|_: Request<String>| async {
//!     Ok::<_, std::io::Error>(Response::new(String::new()))
//! });
//! let stack = ServiceBuilder::new()
//!     .layer(retry.layer())
//!     .layer(RetryAfterLayer::new()) // its error is BoxError, not std::io::Error
//!     .service(network);
//! stack.oneshot(Request::new(String::new())).await?; // error[E0599]
//! # Ok(()) }
//! ```
//!
//! The fix: type the closure with `&BoxError`, or use [`HttpClassifier`], which takes any
//! error type. And a request whose body is not `Clone` (hyper's `Incoming`, a boxed body)
//! under a retry that copies requests with `Clone` (the default):
//!
//! ```compile_fail
//! # use bytes::Bytes;
//! # use http::{Request, Response};
//! # use http_body_util::{BodyExt, combinators::BoxBody};
//! # use palisade_core::BoxError;
//! # use palisade_retry::RetryPolicy;
//! # use tower::{ServiceBuilder, ServiceExt, service_fn};
//! # async fn f(request: Request<BoxBody<Bytes, BoxError>>) -> Result<(), BoxError> {
//! let retry = RetryPolicy::builder().build()?;
//! let network = service_fn(|_: Request<BoxBody<Bytes, BoxError>>| async {
//!     Ok::<_, BoxError>(Response::new(String::new()))
//! });
//! let stack = ServiceBuilder::new().layer(retry.layer()).service(network);
//! stack.oneshot(request).await?; // error[E0599]: Request<BoxBody<..>> is not Clone
//! # Ok(()) }
//! ```
//!
//! The fix: buffer the body above the retry and copy with
//! [`Idempotency::clone_buffered`]:
//!
//! ```
//! # use bytes::Bytes;
//! # use http::{Request, Response};
//! # use http_body_util::{BodyExt, Full, combinators::BoxBody};
//! # use palisade_core::BoxError;
//! # use palisade_http::{Idempotency, body::{BufferBodyLayer, BufferedBody}};
//! # use palisade_retry::RetryPolicy;
//! # use tower::{ServiceBuilder, ServiceExt, service_fn};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! type Body = BoxBody<Bytes, BoxError>;
//! let idempotency = Idempotency::rfc9110();
//! let retry = RetryPolicy::builder()
//!     .clone_requests_with(move |r: &Request<BufferedBody<Body>>| idempotency.clone_buffered(r))
//!     .build()?;
//! let network = service_fn(|_: Request<BufferedBody<Body>>| async {
//!     Ok::<_, BoxError>(Response::new(String::new()))
//! });
//! let stack = ServiceBuilder::new()
//!     .layer(BufferBodyLayer::new(64 * 1024))
//!     .layer(retry.layer())
//!     .service(network);
//! let body: Body = Full::new(Bytes::from_static(b"{}")).map_err(|e| match e {}).boxed();
//! stack.oneshot(Request::put("/item").body(body)?).await?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body;
pub mod classify;
pub mod future;
pub mod hint;
pub mod idempotency;
pub mod retry_after;
pub mod server;

pub use classify::{GrpcClassifier, GrpcCode, HttpClassifier, StatusSet};
pub use idempotency::{Idempotency, is_idempotent};
pub use retry_after::{MAX_RETRY_AFTER, retry_after_of};
