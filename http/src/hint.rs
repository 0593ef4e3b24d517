//! Adapters for retry layers that read remote hints from errors only: a `429`/`503`'s
//! `Retry-After` (or gRPC pushback) as an error.
//!
//! **With `palisade-retry`, use its hook instead**:
//! `RetryPolicy::builder().remote_hint(palisade_http::retry_after_of)` reads the hint from a
//! response the classifier calls a failure, under the same cap (`max_retry_after`, default
//! the backoff cap) and deadline as a hint in an error, and gives the caller the last
//! response when retrying ends: no layers needed.
//!
//! These adapters remain for retry layers without such a hook, which take a remote hint only
//! from an *error*'s source chain ([`palisade_core::retry_after`]) — tower's own `Retry` with
//! a policy that reads it, or your own. An HTTP client answers `Ok(response)` for a `503`, so
//! such a layer never sees the hint in its headers: a retry comes after the backoff (a few
//! ms), not after the server's `Retry-After: 1`. They also let the layers between see a
//! hinted answer as an error. Two small layers close the gap:
//!
//! - [`RetryAfterLayer`], **below** the retry layer, turns a response that the classifier calls
//!   a failure *and* that carries a hint ([`retry_after_of`](crate::retry_after_of)) into
//!   `Err(`[`RetryableResponse`]`)`, whose source is a [`RetryAfter`]: the retry waits for the
//!   hint (within its cap and deadline) and tries again. Responses without a hint pass as
//!   they are (the retry's classifier, e.g. [`HttpClassifier`], retries them on its backoff).
//! - [`RecoverResponseLayer`], **above** the retry layer, turns a `RetryableResponse` that is
//!   still there when the retry gives up back into `Ok(response)`, so the caller sees the
//!   server's last answer, not an error.
//!
//! ```text
//! RecoverResponseLayer        Err(RetryableResponse) -> Ok(response)
//!   a retry layer             waits max(backoff, hint in the error), within its limits
//!     ... breaker, limiter, bulkhead, timeout
//!       RetryAfterLayer       Ok(503 + Retry-After) -> Err(RetryableResponse)
//!         the client
//! ```
//!
//! A breaker between the two sees the hinted answer as an `Err` that is not a local rejection:
//! a failure, as [`HttpClassifier`] calls a 503 anyway.
//!
//! ```
//! use http::Response;
//! use palisade_http::hint::{RecoverResponseLayer, RetryAfterLayer, RetryableResponse};
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let server = service_fn(|_: ()| async {
//!     Ok::<_, std::io::Error>(
//!         Response::builder().status(503).header("retry-after", "1").body(()).unwrap(),
//!     )
//! });
//! let mut below = ServiceBuilder::new().layer(RetryAfterLayer::new()).service(server);
//! let err = below.ready().await.unwrap().call(()).await.unwrap_err();
//! assert_eq!(palisade_core::retry_after(&*err), Some(Duration::from_secs(1)));
//! assert!(err.downcast_ref::<RetryableResponse<()>>().is_some());
//!
//! let mut whole = ServiceBuilder::new().layer(RecoverResponseLayer::new()).service(below);
//! let response = whole.ready().await.unwrap().call(()).await.unwrap();
//! assert_eq!(response.status(), 503);
//! # }
//! ```

use crate::classify::HttpClassifier;
use crate::future::{RecoverResponseFuture, RetryAfterFuture};
use http::{Response, StatusCode};
use palisade_core::{BoxError, RetryAfter};
use std::error::Error;
use std::fmt;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_layer::Layer;
use tower_service::Service;

/// A server's answer that asked to be retried later: the error [`RetryAfterLayer`] makes of
/// it. Its [`source`](Error::source) is the [`RetryAfter`] hint, a *remote* one (no local
/// rejection), so the retry layer honours it within its cap.
///
/// Find it with `err.downcast_ref::<RetryableResponse<B>>()` or get the response back with
/// [`RecoverResponseLayer`].
pub struct RetryableResponse<B> {
    status: StatusCode,
    hint: RetryAfter,
    // Behind a mutex only to be `Sync` (a `BoxError` must be) for any `Send` body; never
    // locked, taken out by value in `into_response`.
    response: Mutex<Response<B>>,
}

impl<B> RetryableResponse<B> {
    /// The response with its hint.
    #[must_use]
    pub fn new(response: Response<B>, hint: Duration) -> RetryableResponse<B> {
        RetryableResponse {
            status: response.status(),
            hint: RetryAfter::new(hint),
            response: Mutex::new(response),
        }
    }

    /// The response's status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The hint the response carried.
    #[must_use]
    pub fn retry_after(&self) -> Duration {
        self.hint.duration()
    }

    /// The response.
    #[must_use]
    pub fn into_response(self) -> Response<B> {
        self.response
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<B> fmt::Debug for RetryableResponse<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryableResponse")
            .field("status", &self.status)
            .field("retry_after", &self.hint.duration())
            .finish_non_exhaustive()
    }
}

impl<B> fmt::Display for RetryableResponse<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "server answered {} and asked to retry after {:?}",
            self.status,
            self.hint.duration()
        )
    }
}

impl<B> Error for RetryableResponse<B> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.hint)
    }
}

/// Below the retry layer: hinted failure responses become [`RetryableResponse`] errors. See the
/// [module docs](self).
#[derive(Clone, Copy, Debug, Default)]
pub struct RetryAfterLayer {
    classify: HttpClassifier,
}

impl RetryAfterLayer {
    /// Responses that [`HttpClassifier::new()`] calls failures (408, 429, 5xx) and that carry
    /// a hint become errors.
    #[must_use]
    pub const fn new() -> RetryAfterLayer {
        RetryAfterLayer {
            classify: HttpClassifier::new(),
        }
    }

    /// Responses that `classify` calls failures and that carry a hint become errors.
    #[must_use]
    pub const fn with_classifier(classify: HttpClassifier) -> RetryAfterLayer {
        RetryAfterLayer { classify }
    }
}

impl<S> Layer<S> for RetryAfterLayer {
    type Service = RetryAfterService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RetryAfterService {
            inner,
            classify: self.classify,
        }
    }
}

/// The service of [`RetryAfterLayer`].
#[derive(Clone, Debug)]
pub struct RetryAfterService<S> {
    inner: S,
    classify: HttpClassifier,
}

impl<S> RetryAfterService<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req, B> Service<Req> for RetryAfterService<S>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = RetryAfterFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        RetryAfterFuture::new(self.inner.call(request), self.classify)
    }
}

/// Above the retry layer: a [`RetryableResponse`] error becomes its response again. See the
/// [module docs](self).
#[derive(Clone, Copy, Debug, Default)]
pub struct RecoverResponseLayer {
    _private: (),
}

impl RecoverResponseLayer {
    /// The layer.
    #[must_use]
    pub const fn new() -> RecoverResponseLayer {
        RecoverResponseLayer { _private: () }
    }
}

impl<S> Layer<S> for RecoverResponseLayer {
    type Service = RecoverResponseService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RecoverResponseService { inner }
    }
}

/// The service of [`RecoverResponseLayer`].
#[derive(Clone, Debug)]
pub struct RecoverResponseService<S> {
    inner: S,
}

impl<S> RecoverResponseService<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req, B> Service<Req> for RecoverResponseService<S>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = RecoverResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        RecoverResponseFuture::new(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    fn answer(status: u16, retry_after: Option<&str>) -> Response<String> {
        let mut b = Response::builder().status(status);
        if let Some(v) = retry_after {
            b = b.header("retry-after", v);
        }
        b.body(String::new()).unwrap()
    }

    async fn through(
        status: u16,
        hint: Option<&'static str>,
    ) -> Result<Response<String>, BoxError> {
        let svc = ServiceBuilder::new()
            .layer(RetryAfterLayer::new())
            .service(service_fn(move |_: ()| async move {
                Ok::<_, BoxError>(answer(status, hint))
            }));
        svc.oneshot(()).await
    }

    #[tokio::test]
    async fn only_hinted_failures_become_errors() {
        let err = through(429, Some("2")).await.unwrap_err();
        assert_eq!(
            palisade_core::retry_after(&*err),
            Some(Duration::from_secs(2))
        );
        assert!(!palisade_core::is_local_rejection(&*err), "a remote hint");
        let found = err.downcast_ref::<RetryableResponse<String>>().unwrap();
        assert_eq!(found.status(), 429);
        assert_eq!(found.retry_after(), Duration::from_secs(2));
        assert_eq!(
            err.to_string(),
            "server answered 429 Too Many Requests and asked to retry after 2s"
        );
        // No hint, a malformed one, or not a failure: the response passes.
        assert_eq!(through(503, None).await.unwrap().status(), 503);
        assert_eq!(through(503, Some("soon")).await.unwrap().status(), 503);
        assert_eq!(through(200, Some("5")).await.unwrap().status(), 200);
        assert_eq!(through(404, Some("5")).await.unwrap().status(), 404);
        // Classifier choice.
        let strict =
            RetryAfterLayer::with_classifier(HttpClassifier::new().without_failures(429..=429));
        let svc = strict.layer(service_fn(|_: ()| async {
            Ok::<_, BoxError>(answer(429, Some("1")))
        }));
        assert_eq!(svc.oneshot(()).await.unwrap().status(), 429);
    }

    #[tokio::test]
    async fn recover_gives_the_response_back_and_passes_other_errors() {
        let svc = ServiceBuilder::new()
            .layer(RecoverResponseLayer::new())
            .layer(RetryAfterLayer::new())
            .service(service_fn(|fail: bool| async move {
                if fail {
                    Err::<Response<String>, BoxError>("reset".into())
                } else {
                    Ok(answer(503, Some("1")))
                }
            }));
        let response = svc.clone().oneshot(false).await.unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(svc.oneshot(true).await.unwrap_err().to_string(), "reset");
    }
}
