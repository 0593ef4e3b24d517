//! [`BulkheadService`]: the `Service` wrapper.

use crate::bulkhead::{FullMode, Permit, SharedRef};
use crate::error::BoxError;
use crate::error::{BulkheadFull, WaitTimeout};
use crate::events::RejectReason;
use crate::future::ResponseFuture;
use crate::limiter::{Acquire, WaitHandle};
use palisade_core::classify::{Classify, ErrorIsFailure};
use palisade_core::clock::Instant;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;
use tower_service::Service;

/// A service whose calls are limited by a [`Bulkhead`](crate::Bulkhead); made by
/// [`BulkheadLayer`](crate::BulkheadLayer).
///
/// `poll_ready` takes a slot (tower's contract: reserve in `poll_ready`, spend in `call`); the
/// slot moves into the [`ResponseFuture`]. When the bulkhead is full, `poll_ready` either
/// returns [`BulkheadFull`] at once, or, with `max_wait`, waits in FIFO order: the task is woken
/// when a slot is handed to it, or fails with [`WaitTimeout`] after `max_wait`.
///
/// Cloning gives a service that shares the bulkhead but not a slot reserved by the original.
///
/// # Errors
///
/// `poll_ready` fails with [`BulkheadFull`] (full; or too many waiters) or [`WaitTimeout`],
/// boxed in `tower::BoxError`; the inner service's errors pass through, boxed.
///
/// # Panics
///
/// `call` panics if `poll_ready` did not return `Ready(Ok)` first. Waiting with a finite
/// `max_wait` outside a tokio runtime with time enabled panics (tokio's timer).
///
/// # Cancel safety
///
/// Dropping the service, or a `poll_ready` in progress, gives back a reserved slot and leaves
/// the waiting queue; a slot handed over at the same moment is passed on to the next waiter.
pub struct BulkheadService<S, C = ErrorIsFailure> {
    inner: S,
    shared: SharedRef,
    classifier: C,
    state: State,
}

enum State {
    Idle,
    Waiting(Waiting),
    Ready(Permit),
}

/// A caller in the queue. Dropping it leaves the queue (or passes on a slot just granted).
struct Waiting {
    shared: SharedRef,
    handle: Option<WaitHandle>,
    deadline: Option<Pin<Box<Sleep>>>,
    since: Instant,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.shared.limiter.cancel(handle);
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for BulkheadService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Idle => "idle",
            State::Waiting(_) => "waiting",
            State::Ready(_) => "ready",
        };
        f.debug_struct("BulkheadService")
            .field("inner", &self.inner)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<S: Clone, C: Clone> Clone for BulkheadService<S, C> {
    /// A service sharing the bulkhead, without the original's reserved slot.
    fn clone(&self) -> Self {
        BulkheadService {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            classifier: self.classifier.clone(),
            state: State::Idle,
        }
    }
}

impl<S, C> BulkheadService<S, C> {
    pub(crate) fn new(inner: S, shared: SharedRef, classifier: C) -> Self {
        BulkheadService {
            inner,
            shared,
            classifier,
            state: State::Idle,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the wrapper (giving back any reserved slot) and returns the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    #[cold]
    fn reject(&self, reason: RejectReason) -> BoxError {
        self.shared.rejected(reason);
        match reason {
            RejectReason::Full | RejectReason::QueueFull => Box::new(BulkheadFull),
            RejectReason::WaitTimeout => Box::new(WaitTimeout),
        }
    }

    /// Ready once this service holds a slot.
    fn poll_permit(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        loop {
            match &mut self.state {
                State::Ready(_) => return Poll::Ready(Ok(())),
                State::Idle => {
                    if let Some(in_flight) = self.shared.limiter.try_acquire() {
                        self.state =
                            State::Ready(Permit::new(&self.shared, in_flight, Duration::ZERO));
                        return Poll::Ready(Ok(()));
                    }
                    let FullMode::Wait {
                        max_wait,
                        max_waiters,
                    } = self.shared.mode
                    else {
                        return Poll::Ready(Err(self.reject(RejectReason::Full)));
                    };
                    self.state = match self.shared.limiter.acquire_or_wait(max_waiters) {
                        Acquire::Acquired(in_flight) => {
                            State::Ready(Permit::new(&self.shared, in_flight, Duration::ZERO))
                        }
                        Acquire::QueueFull => {
                            return Poll::Ready(Err(self.reject(RejectReason::QueueFull)));
                        }
                        Acquire::Queued(handle) => State::Waiting(Waiting {
                            shared: self.shared.clone(),
                            handle: Some(handle),
                            deadline: max_wait.map(|d| Box::pin(tokio::time::sleep(d))),
                            since: self.shared.clock.now(),
                        }),
                    };
                }
                State::Waiting(waiting) => {
                    let handle = waiting.handle.as_ref().expect("present while waiting");
                    if handle.poll_granted(cx).is_ready() {
                        waiting.handle = None; // the slot is ours: nothing to cancel
                        let waited = self.shared.clock.elapsed_since(waiting.since);
                        let in_flight = self.shared.limiter.in_flight().max(1) as u32;
                        self.state = State::Ready(Permit::new(&self.shared, in_flight, waited));
                        return Poll::Ready(Ok(()));
                    }
                    let expired = waiting
                        .deadline
                        .as_mut()
                        .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready());
                    if !expired {
                        return Poll::Pending;
                    }
                    // Dropping `Waiting` leaves the queue (or passes on a slot granted just now).
                    self.state = State::Idle;
                    return Poll::Ready(Err(self.reject(RejectReason::WaitTimeout)));
                }
            }
        }
    }
}

impl<S, C, Req> Service<Req> for BulkheadService<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !matches!(self.state, State::Ready(_)) {
            match self.poll_permit(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let State::Ready(permit) = std::mem::replace(&mut self.state, State::Idle) else {
            panic!("poll_ready must be called first");
        };
        // If the inner `call` panics, `permit` is dropped while unwinding: the slot comes back.
        let future = self.inner.call(request);
        ResponseFuture::new(future, permit, self.classifier.clone())
    }
}
