//! The response future of the Redis rate limiting services.

use palisade_core::BoxError;
use pin_project::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower_service::Service;

/// The decision of the global limiter, a network round trip. Boxed: its cost (~20 ns) is
/// nothing next to the round trip, and only calls that go to Redis make one.
pub(crate) type Acquire = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// The future of [`RedisRateLimiterService`](crate::RedisRateLimiterService) and
/// [`LeasedRateLimiterService`](crate::LeasedRateLimiterService): waits for the limiter's
/// decision (when it needs a round trip), then calls the inner service (already ready, taken
/// out of the service in `call`) and forwards its response.
///
/// # Cancel safety
///
/// Dropping it while it waits for Redis drops the ready inner service and the request
/// unsent; the tokens may or may not have been taken (see
/// [`RedisRateLimiter::acquire`](crate::RedisRateLimiter::acquire)).
#[pin_project]
pub struct ResponseFuture<S: Service<Req>, Req> {
    #[pin]
    state: State<S, Req>,
}

#[pin_project(project = StateProj)]
enum State<S: Service<Req>, Req> {
    Acquiring {
        acquire: Acquire,
        call: Option<(S, Req)>,
    },
    Calling {
        #[pin]
        future: S::Future,
    },
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    pub(crate) fn acquiring(acquire: Acquire, service: S, request: Req) -> Self {
        ResponseFuture {
            state: State::Acquiring {
                acquire,
                call: Some((service, request)),
            },
        }
    }

    pub(crate) fn calling(future: S::Future) -> Self {
        ResponseFuture {
            state: State::Calling { future },
        }
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Acquiring { acquire, call } => {
                    ready!(acquire.as_mut().poll(cx))?;
                    let (mut service, request) =
                        call.take().expect("ResponseFuture polled after completion");
                    let future = service.call(request);
                    this.state.set(State::Calling { future });
                }
                StateProj::Calling { future } => return future.poll(cx).map_err(Into::into),
            }
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Acquiring { .. } => "acquiring",
            State::Calling { .. } => "calling",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
