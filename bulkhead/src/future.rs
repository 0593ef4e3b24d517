//! The response future of [`BulkheadService`](crate::BulkheadService).

use crate::bulkhead::Permit;
use crate::error::{BoxError, BulkheadFull, WaitTimeout};
use crate::events::RejectReason;
use palisade_core::classify::{Classify, ErrorIsFailure};
use pin_project::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The inner service's future, holding the call's bulkhead slot; or, when the bulkhead was
/// full, a future that fails at once with [`BulkheadFull`] or [`WaitTimeout`] (the inner
/// service was not called).
///
/// The slot is given back when the inner future completes (success or error), or when this
/// future is dropped first (cancellation), or while unwinding from a panic in the inner
/// future. An adaptive bulkhead measures the call's RTT and classifies its result here.
#[pin_project]
pub struct ResponseFuture<F, C = ErrorIsFailure> {
    #[pin]
    kind: Kind<F>,
    permit: Option<Permit>,
    classifier: C,
}

#[pin_project(project = KindProj)]
enum Kind<F> {
    Called {
        #[pin]
        inner: F,
    },
    Rejected {
        reason: Option<RejectReason>,
    },
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ResponseFuture");
        match &self.kind {
            Kind::Called { .. } => d.field("permit", &self.permit),
            Kind::Rejected { reason } => d.field("rejected", reason),
        };
        d.finish_non_exhaustive()
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn called(inner: F, permit: Permit, classifier: C) -> Self {
        ResponseFuture {
            kind: Kind::Called { inner },
            permit: Some(permit),
            classifier,
        }
    }

    pub(crate) fn rejected(reason: RejectReason, classifier: C) -> Self {
        ResponseFuture {
            kind: Kind::Rejected {
                reason: Some(reason),
            },
            permit: None,
            classifier,
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let inner = match this.kind.project() {
            KindProj::Called { inner } => inner,
            KindProj::Rejected { reason } => {
                let error: BoxError = match reason.take().expect("polled after completion") {
                    RejectReason::WaitTimeout => Box::new(WaitTimeout),
                    // `Full` and `QueueFull`: zero-sized, so boxing allocates nothing.
                    _ => Box::new(BulkheadFull),
                };
                return Poll::Ready(Err(error));
            }
        };
        // A panic out of `inner.poll` leaves the flag set: the permit, dropped by the
        // unwinding, then reports a failure of the inner service, not a cancellation.
        if let Some(permit) = this.permit.as_mut() {
            permit.set_in_inner(true);
        }
        let poll = inner.poll(cx);
        if let Some(permit) = this.permit.as_mut() {
            permit.set_in_inner(false);
        }
        let Poll::Ready(result) = poll else {
            return Poll::Pending;
        };
        if let Some(permit) = this.permit.as_mut()
            && permit.wants_outcome()
        {
            let classifier = &*this.classifier;
            permit.complete(|rtt| match rtt {
                Some(rtt) => classifier.classify_timed(result.as_ref(), rtt),
                None => classifier.classify(result.as_ref()),
            });
        }
        // Dropped where it lies (not moved out first): the slot comes back.
        *this.permit = None;
        Poll::Ready(result.map_err(Into::into))
    }
}
