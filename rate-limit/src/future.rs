//! Response futures of the rate-limit services.

use crate::error::BoxError;
use pin_project::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::Sleep;
use tower_service::Service;

/// The response future of [`RateLimiterService`](crate::RateLimiterService): the inner service's future, or
/// the rejection decided in `poll_ready`.
#[pin_project]
pub struct ResponseFuture<F> {
    #[pin]
    kind: Kind<F>,
}

#[pin_project(project = KindProj)]
enum Kind<F> {
    Called {
        #[pin]
        future: F,
    },
    Rejected {
        error: Option<BoxError>,
    },
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(future: F) -> Self {
        ResponseFuture {
            kind: Kind::Called { future },
        }
    }

    pub(crate) fn rejected(error: BoxError) -> Self {
        ResponseFuture {
            kind: Kind::Rejected { error: Some(error) },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future } => future.poll(cx).map_err(Into::into),
            KindProj::Rejected { error } => Poll::Ready(Err(error
                .take()
                .expect("ResponseFuture polled after completion"))),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.kind {
            Kind::Called { .. } => "called",
            Kind::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

/// The response future of the services that decide in `call` (per-request cost or key):
/// [`WeightedRateLimiterService`](crate::WeightedRateLimiterService) and [`KeyedRateLimiterService`](crate::KeyedRateLimiterService).
///
/// A request admitted with a wait holds its reservation, the request and the inner service
/// that was made ready for it, sleeps on the tokio timer, then calls the service.
///
/// # Cancel safety
///
/// Dropping the future while it waits forfeits the reserved tokens: the limiter errs on the
/// side of admitting less.
#[pin_project]
pub struct DeferredFuture<S, Req>
where
    S: Service<Req>,
{
    #[pin]
    kind: Deferred<S, Req>,
}

#[pin_project(project = DeferredProj)]
enum Deferred<S, Req>
where
    S: Service<Req>,
{
    Called {
        #[pin]
        future: S::Future,
    },
    Waiting {
        #[pin]
        sleep: Sleep,
        service: Option<S>,
        request: Option<Req>,
    },
    Calling {
        service: S,
        request: Option<Req>,
    },
    Rejected {
        error: Option<BoxError>,
    },
}

impl<S, Req> DeferredFuture<S, Req>
where
    S: Service<Req> + Clone,
{
    /// Goes now (`Ok(0)`), after a wait (`Ok(nanos)`) or not at all (`Err`). `service` is the
    /// ready inner service; for a wait, it moves into the future and a clone takes its place.
    pub(crate) fn new(decision: Result<u64, BoxError>, service: &mut S, request: Req) -> Self {
        let kind = match decision {
            Ok(0) => Deferred::Called {
                future: service.call(request),
            },
            Ok(wait) => {
                let clone = service.clone();
                Deferred::Waiting {
                    sleep: tokio::time::sleep(Duration::from_nanos(wait)),
                    service: Some(std::mem::replace(service, clone)),
                    request: Some(request),
                }
            }
            Err(error) => Deferred::Rejected { error: Some(error) },
        };
        DeferredFuture { kind }
    }
}

impl<S, Req> Future for DeferredFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        loop {
            match kind.as_mut().project() {
                DeferredProj::Called { future } => return future.poll(cx).map_err(Into::into),
                DeferredProj::Waiting {
                    sleep,
                    service,
                    request,
                } => {
                    ready!(sleep.poll(cx));
                    let service = service.take().expect("polled after completion");
                    let request = request.take();
                    kind.set(Deferred::Calling { service, request });
                }
                DeferredProj::Calling { service, request } => {
                    // Ready before the wait, but readiness may have lapsed while sleeping.
                    if let Err(error) = ready!(service.poll_ready(cx)) {
                        return Poll::Ready(Err(error.into()));
                    }
                    let request = request.take().expect("polled after completion");
                    let future = service.call(request);
                    kind.set(Deferred::Called { future });
                }
                DeferredProj::Rejected { error } => {
                    return Poll::Ready(Err(error.take().expect("polled after completion")));
                }
            }
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for DeferredFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.kind {
            Deferred::Called { .. } => "called",
            Deferred::Waiting { .. } => "waiting",
            Deferred::Calling { .. } => "calling",
            Deferred::Rejected { .. } => "rejected",
        };
        f.debug_struct("DeferredFuture")
            .field("state", &state)
            .finish()
    }
}
