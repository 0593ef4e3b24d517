//! The response future of [`CircuitBreakerService`](crate::CircuitBreakerService).

use crate::error::CircuitOpen;
use crate::permit::OwnedPermit;
use palisade_core::classify::{Classify, Outcome};
use pin_project::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower::BoxError;

/// The future of a call through a [`CircuitBreakerService`](crate::CircuitBreakerService):
/// the inner future with the call's permit, or an immediate [`CircuitOpen`] rejection.
///
/// When the inner future completes, the result is classified and recorded. Dropped before
/// that, the permit is given back and nothing is recorded. A panic while polling the inner
/// future records a failure.
#[pin_project]
pub struct ResponseFuture<F, C> {
    #[pin]
    kind: Kind<F, C>,
}

#[pin_project(project = KindProj)]
enum Kind<F, C> {
    Called {
        #[pin]
        future: F,
        permit: Option<OwnedPermit>,
        classifier: C,
    },
    Rejected {
        error: Option<Box<CircuitOpen>>,
    },
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn called(future: F, permit: OwnedPermit, classifier: C) -> Self {
        ResponseFuture {
            kind: Kind::Called {
                future,
                permit: Some(permit),
                classifier,
            },
        }
    }

    pub(crate) fn rejected(error: Box<CircuitOpen>) -> Self {
        ResponseFuture {
            kind: Kind::Rejected { error: Some(error) },
        }
    }
}

/// Records a failure if the inner future panics while polled: dropped while `polling` is
/// still set, the poll unwound. (An executor that catches the panic drops the future only
/// after unwinding, and a permit dropped then counts as cancelled.) No `thread::panicking()`:
/// a response future dropped while its *caller* panics for its own reasons is a cancelled
/// call, not a failure of the dependency.
struct PanicGuard<'a> {
    permit: &'a mut Option<OwnedPermit>,
    polling: bool,
}

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if self.polling
            && let Some(permit) = self.permit.take()
        {
            permit.record(Outcome::Failure);
        }
    }
}

impl<F, C, Res, Err> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Res, Err>>,
    Err: Into<BoxError>,
    C: Classify<Res, Err>,
{
    type Output = Result<Res, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                future,
                permit,
                classifier,
            } => {
                let result = {
                    let mut guard = PanicGuard {
                        permit,
                        polling: true,
                    };
                    let poll = future.poll(cx);
                    guard.polling = false;
                    ready!(poll)
                };
                if let Some(permit) = permit.as_mut() {
                    permit
                        .0
                        .classify_and_complete_in_place(classifier, result.as_ref());
                }
                // Dropped where it lies, recorded (not moved out first).
                *permit = None;
                Poll::Ready(result.map_err(Into::into))
            }
            KindProj::Rejected { error } => {
                Poll::Ready(Err(error.take().expect("polled after completion")))
            }
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Called { permit, .. } => f
                .debug_struct("ResponseFuture")
                .field("permit", permit)
                .finish_non_exhaustive(),
            Kind::Rejected { error } => f
                .debug_struct("ResponseFuture")
                .field("rejected", error)
                .finish(),
        }
    }
}
