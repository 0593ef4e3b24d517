//! The balancer's response future.

use crate::endpoint::{CallResult, Record};
use crate::error::NoHealthyEndpoints;
use palisade_core::BoxError;
use palisade_core::classify::{Classify, ErrorIsFailure, Outcome, is_local_rejection_any};
use palisade_core::clock::Instant;
use pin_project::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

/// A call in flight on one endpoint: one pending count, given back however the call ends
/// (answered, cancelled by dropping the future, or unwound by a panic of the endpoint).
pub(crate) struct InFlight {
    node: Arc<dyn Record>,
    picked: Instant,
    finished: bool,
    /// The endpoint breaker's permit, recorded with the call's outcome (dropped unrecorded,
    /// a cancelled call, which the breaker does not count).
    permit: Option<palisade_circuit_breaker::OwnedPermit>,
}

impl InFlight {
    pub(crate) fn new(node: Arc<dyn Record>, picked: Instant) -> Self {
        InFlight::with_permit(node, picked, None)
    }

    /// A guard that also completes the endpoint breaker's `permit` (built in one piece: a
    /// `None` permit replaced afterwards would be dropped on the hot path).
    pub(crate) fn with_permit(
        node: Arc<dyn Record>,
        picked: Instant,
        permit: Option<palisade_circuit_breaker::OwnedPermit>,
    ) -> Self {
        InFlight {
            node,
            picked,
            finished: false,
            permit,
        }
    }

    pub(crate) fn finish(&mut self, result: CallResult) {
        if !self.finished {
            self.finished = true;
            if let Some(permit) = self.permit.take() {
                permit.record(match result {
                    CallResult::Success => Outcome::Success,
                    CallResult::Failure => Outcome::Failure,
                    CallResult::Rejected | CallResult::Ignored => Outcome::Ignore,
                });
            }
            self.node.finish(result, self.picked);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.finished {
            self.finished = true;
            self.node.cancel(self.picked);
        }
    }
}

/// The response future of a [`BalancerService`](crate::BalancerService): the endpoint's
/// future, recording the outcome (classified by `C`) and latency in the endpoint's statistics
/// when it ends, or the balancer's [`NoHealthyEndpoints`] rejection.
///
/// # Cancel safety
///
/// Dropping it before it finishes gives the endpoint's pending count back and counts no
/// outcome (no failure, nothing for the endpoint's breaker); the time it was waited on is a
/// lower bound of the endpoint's latency, which raises the estimate when it is above it.
#[pin_project]
pub struct ResponseFuture<F, C = ErrorIsFailure> {
    #[pin]
    state: State<F, C>,
}

#[pin_project(project = StateProj)]
enum State<F, C> {
    Called {
        #[pin]
        future: F,
        guard: InFlight,
        classify: C,
    },
    Rejected,
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn called(future: F, guard: InFlight, classify: C) -> Self {
        ResponseFuture {
            state: State::Called {
                future,
                guard,
                classify,
            },
        }
    }

    pub(crate) fn rejected() -> Self {
        ResponseFuture {
            state: State::Rejected,
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Called { .. } => "called",
            State::Rejected => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError> + 'static,
    C: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called {
                future,
                guard,
                classify,
            } => {
                let output = ready!(future.poll(cx));
                guard.finish(match classify.classify(output.as_ref()) {
                    Outcome::Success => CallResult::Success,
                    Outcome::Failure => CallResult::Failure,
                    Outcome::Ignore => match &output {
                        Err(err) if is_local_rejection_any(err) => CallResult::Rejected,
                        _ => CallResult::Ignored,
                    },
                });
                Poll::Ready(output.map_err(Into::into))
            }
            StateProj::Rejected => Poll::Ready(Err(Box::new(NoHealthyEndpoints))),
        }
    }
}
