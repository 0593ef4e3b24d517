//! The response future of a [`FallbackService`](super::FallbackService).

use super::error::FallbackFailed;
use super::events::{FallbackEvent, PrimaryOutcome};
use super::fallback::{FallbackFn, Permit, Shared};
use palisade_core::rejection::rejection;
use palisade_core::{BoxError, Classify, Outcome};
use pin_project::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

/// The future of a [`FallbackService`](super::FallbackService): the primary call, then the
/// fallback when one is due. A fallback slot is held by the future while the fallback runs
/// and given back when it ends or the future is dropped.
#[pin_project]
pub struct ResponseFuture<P, F, C, Res>
where
    F: FallbackFn<Res>,
{
    #[pin]
    state: State<P, F::Future, F, C>,
    shared: Arc<Shared<F, C>>,
}

#[pin_project(project = StateProj)]
enum State<P, Fut, F, C> {
    Primary {
        #[pin]
        future: P,
    },
    Fallback {
        #[pin]
        future: Fut,
        permit: Option<Permit<F, C>>,
    },
}

impl<P, F, C, Res> ResponseFuture<P, F, C, Res>
where
    F: FallbackFn<Res>,
{
    pub(crate) fn new(future: P, shared: Arc<Shared<F, C>>) -> Self {
        ResponseFuture {
            state: State::Primary { future },
            shared,
        }
    }
}

impl<P, F, C, Res, E> Future for ResponseFuture<P, F, C, Res>
where
    P: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    F: FallbackFn<Res>,
    C: Classify<Res, BoxError>,
{
    type Output = Result<Res, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            let shared = &**this.shared;
            match this.state.project() {
                StateProj::Primary { future } => {
                    let result = ready!(future.poll(cx)).map_err(Into::into);
                    // A local rejection is judged before the classifier: the default
                    // classifier ignores it, but a fallback exists to answer it.
                    let local = result.as_ref().err().and_then(|err| rejection(&**err));
                    let outcome = match local {
                        Some(found) => PrimaryOutcome::Rejected(found.kind()),
                        None => match shared.classify.classify(result.as_ref()) {
                            Outcome::Success => PrimaryOutcome::Success,
                            Outcome::Failure => PrimaryOutcome::Failure,
                            Outcome::Ignore => PrimaryOutcome::Ignore,
                        },
                    };
                    shared.count_call();
                    shared
                        .events
                        .emit_with(|| FallbackEvent::CallFinished { outcome });
                    let due = match outcome {
                        PrimaryOutcome::Failure => true,
                        PrimaryOutcome::Rejected(_) => shared.on_local_rejection,
                        _ => false,
                    };
                    if !due {
                        return Poll::Ready(result);
                    }
                    let Some(permit) = Permit::try_acquire(this.shared) else {
                        shared.count_rejection();
                        shared.events.emit_with(|| FallbackEvent::FallbackRejected {
                            max_concurrent: shared.max_concurrent,
                        });
                        return Poll::Ready(result);
                    };
                    let future = shared.fallback.fallback(result);
                    self.as_mut().project().state.set(State::Fallback {
                        future,
                        permit: Some(permit),
                    });
                }
                StateProj::Fallback { future, permit } => {
                    let result = ready!(future.poll(cx));
                    // The slot is free once the fallback has answered.
                    drop(permit.take());
                    let succeeded = result.is_ok();
                    shared.count_fallback(succeeded);
                    shared.events.emit_with(|| FallbackEvent::FallbackFinished {
                        succeeded,
                        in_flight: shared.in_flight(),
                    });
                    return Poll::Ready(
                        result.map_err(|err| Box::new(FallbackFailed::new(err)) as BoxError),
                    );
                }
            }
        }
    }
}

impl<P, F, C, Res> fmt::Debug for ResponseFuture<P, F, C, Res>
where
    F: FallbackFn<Res>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Primary { .. } => "primary",
            State::Fallback { .. } => "fallback",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("name", &self.shared.name)
            .finish()
    }
}
