//! The balancer's response future.

use crate::endpoint::{CallResult, Record};
use crate::error::NoHealthyEndpoints;
use palisade_core::BoxError;
use palisade_core::classify::is_local_rejection_any;
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
}

impl InFlight {
    pub(crate) fn new(node: Arc<dyn Record>, picked: Instant) -> Self {
        InFlight {
            node,
            picked,
            finished: false,
        }
    }

    fn finish(&mut self, result: CallResult) {
        if !self.finished {
            self.finished = true;
            self.node.finish(result, self.picked);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.finished {
            self.finished = true;
            self.node.cancel();
        }
    }
}

/// The response future of a [`BalancerService`](crate::BalancerService): the endpoint's
/// future, recording the outcome and latency in the endpoint's statistics when it ends, or the
/// balancer's [`NoHealthyEndpoints`] rejection.
///
/// # Cancel safety
///
/// Dropping it before it finishes gives the endpoint's pending count back and records no
/// latency sample.
#[pin_project]
pub struct ResponseFuture<F> {
    #[pin]
    state: State<F>,
}

#[pin_project(project = StateProj)]
enum State<F> {
    Called {
        #[pin]
        future: F,
        guard: InFlight,
    },
    Rejected,
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(future: F, guard: InFlight) -> Self {
        ResponseFuture {
            state: State::Called { future, guard },
        }
    }

    pub(crate) fn rejected() -> Self {
        ResponseFuture {
            state: State::Rejected,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
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

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError> + 'static,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called { future, guard } => {
                let output = ready!(future.poll(cx));
                guard.finish(match &output {
                    Ok(_) => CallResult::Success,
                    Err(err) if is_local_rejection_any(err) => CallResult::Rejected,
                    Err(_) => CallResult::Failure,
                });
                Poll::Ready(output.map_err(Into::into))
            }
            StateProj::Rejected => Poll::Ready(Err(Box::new(NoHealthyEndpoints))),
        }
    }
}
