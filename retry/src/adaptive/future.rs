//! The response future of [`AdaptiveThrottleService`](super::AdaptiveThrottleService).

use super::adaptive_throttle::Shared;
use crate::error::Throttled;
use palisade_core::BoxError;
use palisade_core::classify::{Classify, Outcome};
use pin_project::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

/// The response future of [`AdaptiveThrottleService`](super::AdaptiveThrottleService).
///
/// # Cancel safety
///
/// The request was counted when it was made; a call dropped before it completes counts as a
/// request that was not accepted (which is what a hanging backend looks like).
#[pin_project]
pub struct ResponseFuture<F, C> {
    #[pin]
    kind: Kind<F, C>,
}

#[pin_project(project = KindProj)]
enum Kind<F, C> {
    Rejected,
    Called {
        #[pin]
        future: F,
        shared: Arc<Shared<C>>,
    },
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn rejected() -> Self {
        ResponseFuture {
            kind: Kind::Rejected,
        }
    }

    pub(crate) fn called(future: F, shared: Arc<Shared<C>>) -> Self {
        ResponseFuture {
            kind: Kind::Called { future, shared },
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Rejected => "rejected",
            Kind::Called { .. } => "called",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<F, C, Res, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    C: Classify<Res, E>,
{
    type Output = Result<Res, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Rejected => Poll::Ready(Err(Throttled.into())),
            KindProj::Called { future, shared } => {
                let result = ready!(future.poll(cx));
                if shared.classify.classify(result.as_ref()) != Outcome::Failure {
                    shared.window.record_accept(shared.clock.now());
                }
                Poll::Ready(result.map_err(Into::into))
            }
        }
    }
}
