//! The response futures of this crate's services: hand-written, no boxing.

use crate::body::{BufferedBody, Collect};
use crate::classify::HttpClassifier;
use crate::hint::RetryableResponse;
use crate::retry_after::retry_after_of;
use bytes::Bytes;
use http::{Request, Response, request::Parts};
use http_body::Body;
use palisade_core::{BoxError, Outcome};
use pin_project::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower_service::Service;

/// The future of [`BufferBodyService`](crate::body::BufferBodyService): buffers the body, then
/// calls the inner service.
#[pin_project]
pub struct BufferBodyFuture<S, B>
where
    S: Service<Request<BufferedBody<B>>>,
{
    #[pin]
    state: BufferState<S, B>,
}

// The request head waits in the future while the body is buffered; boxing it to shrink the
// enum would cost an allocation per call for no gain (the future is created once per call).
#[allow(clippy::large_enum_variant)]
#[pin_project(project = BufferStateProj)]
enum BufferState<S, B>
where
    S: Service<Request<BufferedBody<B>>>,
{
    Buffering {
        collect: Collect<B>,
        service: Option<S>,
        parts: Option<Parts>,
    },
    Calling {
        #[pin]
        future: S::Future,
    },
}

impl<S, B> BufferBodyFuture<S, B>
where
    S: Service<Request<BufferedBody<B>>>,
{
    pub(crate) fn new(service: S, parts: Parts, collect: Collect<B>) -> Self {
        BufferBodyFuture {
            state: BufferState::Buffering {
                collect,
                service: Some(service),
                parts: Some(parts),
            },
        }
    }
}

impl<S, B> Future for BufferBodyFuture<S, B>
where
    S: Service<Request<BufferedBody<B>>>,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            match this.state.project() {
                BufferStateProj::Buffering {
                    collect,
                    service,
                    parts,
                } => {
                    let body = ready!(Pin::new(collect).poll(cx)).map_err(Into::into)?;
                    let mut service = service.take().expect("polled after completion");
                    let parts = parts.take().expect("polled after completion");
                    let future = service.call(Request::from_parts(parts, body));
                    self.as_mut()
                        .project()
                        .state
                        .set(BufferState::Calling { future });
                }
                BufferStateProj::Calling { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
            }
        }
    }
}

impl<S, B> fmt::Debug for BufferBodyFuture<S, B>
where
    S: Service<Request<BufferedBody<B>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            BufferState::Buffering { .. } => "buffering",
            BufferState::Calling { .. } => "calling",
        };
        f.debug_struct("BufferBodyFuture")
            .field("state", &state)
            .finish()
    }
}

/// The future of [`RetryAfterService`](crate::hint::RetryAfterService).
#[pin_project]
#[derive(Debug)]
pub struct RetryAfterFuture<F> {
    #[pin]
    inner: F,
    classify: HttpClassifier,
}

impl<F> RetryAfterFuture<F> {
    pub(crate) fn new(inner: F, classify: HttpClassifier) -> Self {
        RetryAfterFuture { inner, classify }
    }
}

impl<F, B, E> Future for RetryAfterFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Send + 'static,
{
    type Output = Result<Response<B>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx)).map_err(Into::into)?;
        if this.classify.classify_status(response.status().as_u16()) == Outcome::Failure
            && let Some(hint) = retry_after_of(&response)
        {
            return Poll::Ready(Err(Box::new(RetryableResponse::new(response, hint))));
        }
        Poll::Ready(Ok(response))
    }
}

/// The future of [`RecoverResponseService`](crate::hint::RecoverResponseService).
#[pin_project]
#[derive(Debug)]
pub struct RecoverResponseFuture<F> {
    #[pin]
    inner: F,
}

impl<F> RecoverResponseFuture<F> {
    pub(crate) fn new(inner: F) -> Self {
        RecoverResponseFuture { inner }
    }
}

impl<F, B, E> Future for RecoverResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Send + 'static,
{
    type Output = Result<Response<B>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match ready!(self.project().inner.poll(cx)) {
            Ok(response) => Poll::Ready(Ok(response)),
            Err(err) => {
                let err: BoxError = err.into();
                Poll::Ready(match err.downcast::<RetryableResponse<B>>() {
                    Ok(retryable) => Ok(retryable.into_response()),
                    Err(other) => Err(other),
                })
            }
        }
    }
}
