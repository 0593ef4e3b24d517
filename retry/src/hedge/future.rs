//! The response future of [`HedgePolicyService`](super::HedgePolicyService).

use super::HedgeShared;
use crate::events::{CallOutcome, RetryEvent};
use crate::request::RetryRequest;
use palisade_core::BoxError;
use palisade_core::classify::{Classify, Outcome};
use palisade_core::clock::Instant;
use pin_project::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::time::Sleep;
use tower_service::Service;

/// The response future of [`HedgePolicyService`](super::HedgePolicyService): the first copy to
/// succeed wins.
///
/// The first copy lives inline; hedges, sent only when it is slow, are boxed.
///
/// # Cancel safety
///
/// Dropping it drops every copy in flight. When one copy wins, the others are dropped before
/// the result is returned.
///
/// A hedge is paid for from the budget *before* the inner service is asked to be ready for it
/// (its `poll_ready` is what reserves a bulkhead slot, a breaker probe or a rate-limit token
/// below), so a hedge the budget refuses reserves nothing.
#[pin_project]
pub struct ResponseFuture<S, Req, C, Q>
where
    S: Service<Req>,
{
    #[pin]
    primary: Option<S::Future>,
    primary_start: Instant,
    hedges: Vec<(Instant, Pin<Box<S::Future>>)>,
    #[pin]
    timer: Option<Sleep>,
    /// A hedge is due and already paid for by the budget: it waits only for readiness.
    want_hedge: bool,
    service: S,
    request: Option<Req>,
    sent: u32,
    last: Option<Result<S::Response, BoxError>>,
    shared: Arc<HedgeShared<C, Q>>,
}

impl<S, Req, C, Q> ResponseFuture<S, Req, C, Q>
where
    S: Service<Req>,
{
    pub(super) fn new(
        future: S::Future,
        start: Instant,
        service: S,
        request: Option<Req>,
        shared: Arc<HedgeShared<C, Q>>,
    ) -> Self {
        let timer = request.as_ref().map(|_| tokio::time::sleep(shared.delay()));
        ResponseFuture {
            primary: Some(future),
            primary_start: start,
            hedges: Vec::new(),
            timer,
            want_hedge: false,
            service,
            request,
            sent: 0,
            last: None,
            shared,
        }
    }
}

/// A finished copy: it won, or it failed and the others are awaited.
enum Finished<T> {
    /// With how the classifier saw it (a success, or an ignored result).
    Won(T, Outcome),
    Failed(T),
}

fn finish<C, Q, Res, E>(
    shared: &HedgeShared<C, Q>,
    result: Result<Res, E>,
    start: Instant,
) -> Finished<Result<Res, BoxError>>
where
    C: Classify<Res, E>,
    E: Into<BoxError>,
{
    let outcome = shared.classify.classify(result.as_ref());
    shared.spend.on_outcome(outcome);
    if outcome == Outcome::Failure {
        Finished::Failed(result.map_err(Into::into))
    } else {
        shared.record(start);
        Finished::Won(result.map_err(Into::into), outcome)
    }
}

impl<S, Req, C, Q> Future for ResponseFuture<S, Req, C, Q>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
    Q: RetryRequest<Req>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let shared = &**this.shared;
        loop {
            if let Some(future) = this.primary.as_mut().as_pin_mut()
                && let Poll::Ready(result) = future.poll(cx)
            {
                this.primary.set(None);
                match finish(shared, result, *this.primary_start) {
                    Finished::Won(result, outcome) => {
                        this.hedges.clear();
                        return finished(shared, *this.sent, outcome.into(), result);
                    }
                    Finished::Failed(result) => *this.last = Some(result),
                }
            }
            let mut i = 0;
            while i < this.hedges.len() {
                if let Poll::Ready(result) = this.hedges[i].1.as_mut().poll(cx) {
                    let (start, _) = this.hedges.swap_remove(i);
                    match finish(shared, result, start) {
                        Finished::Won(result, outcome) => {
                            this.primary.set(None);
                            this.hedges.clear();
                            return finished(shared, *this.sent, outcome.into(), result);
                        }
                        Finished::Failed(result) => *this.last = Some(result),
                    }
                } else {
                    i += 1;
                }
            }

            let in_flight = this.primary.is_some() || !this.hedges.is_empty();
            let can_hedge = this.request.is_some() && *this.sent < shared.max_hedges;
            if !in_flight && !can_hedge {
                let last = this.last.take();
                let last = last.expect("a copy finished before none was left");
                return finished(shared, *this.sent, CallOutcome::Failure, last);
            }
            if can_hedge && !*this.want_hedge {
                // Every copy failed: the next one goes out now rather than after the delay.
                let due = !in_flight
                    || this
                        .timer
                        .as_mut()
                        .as_pin_mut()
                        .is_some_and(|timer| timer.poll(cx).is_ready());
                if due {
                    // The budget first: a refused hedge must not have reserved anything below.
                    if !shared.spend.try_spend() {
                        shared.spend.emit_refusal(&shared.events, *this.sent + 2);
                        *this.request = None;
                        this.timer.set(None);
                        continue;
                    }
                    *this.want_hedge = true;
                }
            }
            if !*this.want_hedge {
                return Poll::Pending;
            }
            match this.service.poll_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(err)) => {
                    *this.want_hedge = false;
                    *this.request = None;
                    if !in_flight {
                        return finished(shared, *this.sent, CallOutcome::Failure, Err(err.into()));
                    }
                }
                Poll::Ready(Ok(())) => {
                    *this.want_hedge = false;
                    let request = this
                        .request
                        .take()
                        .expect("a hedge is wanted only with a copy of the request");
                    *this.sent += 1;
                    if *this.sent < shared.max_hedges {
                        *this.request = shared.requests.clone_request(&request);
                    }
                    let start = shared.start();
                    let future = this.service.call(request);
                    this.hedges.push((start, Box::pin(future)));
                    let hedge = *this.sent;
                    shared
                        .events
                        .emit_call_with(|| RetryEvent::HedgeSent { hedge });
                    if this.request.is_some() {
                        this.timer.set(Some(tokio::time::sleep(shared.delay())));
                    } else {
                        this.timer.set(None);
                    }
                }
            }
        }
    }
}

/// The call ends with `result` after `hedges` hedges: the one event every call emits at its
/// end.
#[inline]
fn finished<C, Q, T>(
    shared: &HedgeShared<C, Q>,
    hedges: u32,
    outcome: CallOutcome,
    result: T,
) -> Poll<T> {
    shared.events.emit_call_with(|| RetryEvent::CallFinished {
        outcome,
        attempts: hedges + 1,
    });
    Poll::Ready(result)
}

impl<S, Req, C, Q> fmt::Debug for ResponseFuture<S, Req, C, Q>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("primary_in_flight", &self.primary.is_some())
            .field("hedges_in_flight", &self.hedges.len())
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}
