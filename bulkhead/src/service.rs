//! [`BulkheadService`]: the `Service` wrapper.

use crate::bulkhead::{FullMode, SharedRef, Starting};
use crate::error::BoxError;
#[cfg(doc)]
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
/// `poll_ready` takes a slot (tower's contract: reserve in `poll_ready`, spend in `call`), then
/// polls the inner service; the slot moves into the [`ResponseFuture`] at `call`. When the
/// bulkhead is full:
///
/// - **reject mode** (the default): `poll_ready` is still `Ready(Ok)` (the service is not
///   broken, only busy: tower discards a service whose `poll_ready` fails), without polling the
///   inner service, and `call` returns a future that fails at once with [`BulkheadFull`],
///   without calling the inner service. Each `poll_ready` decides afresh, so a service kept
///   ready (by a balancer's ready cache, say) takes a slot freed in between;
/// - **wait mode** ([`max_wait`](crate::BulkheadBuilder::max_wait)): `poll_ready` is `Pending`,
///   queued in FIFO order, and the task is woken when a slot is handed to it. When `max_wait`
///   passes first (or the queue is at its bound), `poll_ready` is `Ready(Ok)` and `call` fails
///   at once with [`WaitTimeout`] (or [`BulkheadFull`]).
///
/// Inside a readiness-aware balancer (tower's p2c `Balance`), prefer wait mode per endpoint:
/// a full endpoint is then `Pending` and the balancer routes around it, where in reject mode it
/// looks ready and answers instantly with rejections.
///
/// Cloning gives a service that shares the bulkhead but not a slot reserved by the original.
///
/// # Errors
///
/// The response future fails with [`BulkheadFull`] (full; or too many waiters) or
/// [`WaitTimeout`], boxed in `tower::BoxError`; the inner service's errors pass through, boxed.
/// `poll_ready` fails only when the inner service's `poll_ready` does (the reserved slot is
/// given back then).
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
    slot: Slot,
    classifier: C,
}

/// The service's way to the shared state and what it holds of it between `poll_ready` and
/// `call`. Dropping it gives back a reserved slot (with the service, or with
/// [`BulkheadService::into_inner`]).
///
/// A reserved slot is two plain numbers here, not a [`Permit`]: the permit (and its
/// reference to the shared state, which the `'static` response future needs) is made at
/// `call`, directly for the future, so nothing larger than this state is moved on the way.
struct Slot {
    shared: SharedRef,
    state: State,
}

enum State {
    Idle,
    Waiting(Waiting),
    /// A slot is held for the next `call` (taken from the limiter; [`Slot`] gives it back if
    /// no call comes).
    Ready {
        /// Calls in flight when it was taken, this one included (adaptive samples).
        in_flight: u32,
        /// How long the caller queued for it.
        waited: Duration,
    },
    /// Full: the next `call` answers with this rejection, without calling the inner service.
    Rejecting(RejectReason),
}

impl Slot {
    /// Gives back a slot reserved and not used (a cold path: most reservations are used).
    fn release_reserved(&mut self) {
        if matches!(self.state, State::Ready { .. }) {
            self.state = State::Idle;
            self.shared.reservation_released();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.release_reserved();
    }
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
        let state = match &self.slot.state {
            State::Idle => "idle",
            State::Waiting(_) => "waiting",
            State::Ready { .. } => "ready",
            State::Rejecting(_) => "rejecting",
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
            slot: Slot {
                shared: self.slot.shared.clone(),
                state: State::Idle,
            },
            classifier: self.classifier.clone(),
        }
    }
}

impl<S, C> BulkheadService<S, C> {
    pub(crate) fn new(inner: S, shared: SharedRef, classifier: C) -> Self {
        BulkheadService {
            inner,
            slot: Slot {
                shared,
                state: State::Idle,
            },
            classifier,
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

    /// Ready once this service holds a slot (`Ok`), or once it knows the next call is to be
    /// rejected, and why (`Err`).
    fn poll_permit(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), RejectReason>> {
        let slot = &mut self.slot;
        loop {
            match &mut slot.state {
                State::Ready { .. } => return Poll::Ready(Ok(())),
                State::Idle | State::Rejecting(_) => {
                    if let Some(in_flight) = slot.shared.limiter.try_acquire() {
                        slot.state = State::Ready {
                            in_flight,
                            waited: Duration::ZERO,
                        };
                        return Poll::Ready(Ok(()));
                    }
                    let FullMode::Wait {
                        max_wait,
                        max_waiters,
                    } = slot.shared.mode
                    else {
                        return Poll::Ready(Err(RejectReason::Full));
                    };
                    slot.state = match slot.shared.limiter.acquire_or_wait(max_waiters) {
                        Acquire::Acquired(in_flight) => State::Ready {
                            in_flight,
                            waited: Duration::ZERO,
                        },
                        Acquire::QueueFull => return Poll::Ready(Err(RejectReason::QueueFull)),
                        Acquire::Queued(handle) => State::Waiting(Waiting {
                            shared: slot.shared.clone(),
                            handle: Some(handle),
                            deadline: max_wait.map(|d| Box::pin(tokio::time::sleep(d))),
                            since: slot.shared.clock.now(),
                        }),
                    };
                }
                State::Waiting(waiting) => {
                    let handle = waiting.handle.as_ref().expect("present while waiting");
                    if handle.poll_granted(cx).is_ready() {
                        waiting.handle = None; // the slot is ours: nothing to cancel
                        let waited = slot.shared.clock.elapsed_since(waiting.since);
                        let in_flight = slot.shared.limiter.in_flight().max(1) as u32;
                        slot.state = State::Ready { in_flight, waited };
                        return Poll::Ready(Ok(()));
                    }
                    let expired = waiting
                        .deadline
                        .as_mut()
                        .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready());
                    if !expired {
                        return Poll::Pending;
                    }
                    // Replacing `Waiting` leaves the queue (or passes on a slot granted just
                    // now) before the state says so.
                    return Poll::Ready(Err(RejectReason::WaitTimeout));
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
        if !matches!(self.slot.state, State::Ready { .. }) {
            match self.poll_permit(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(reason)) => {
                    // Full is not broken: ready, and `call` rejects without the inner service.
                    self.slot.state = State::Rejecting(reason);
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(error)) => {
                // The inner service is broken and the call will not happen: the slot goes
                // back now rather than with this (discarded) service.
                self.slot.release_reserved();
                Poll::Ready(Err(error.into()))
            }
            // The slot stays reserved while the inner service gets ready (as tower's
            // `ConcurrencyLimit` does): the call it is reserved for is the next one.
            Poll::Pending => Poll::Pending,
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let slot = &mut self.slot;
        match slot.state {
            State::Ready { in_flight, waited } => {
                // The slot moves from the service's state into `starting` (and from it into
                // the response future's permit): nothing between the two lines can panic, so
                // it is never held by neither.
                slot.state = State::Idle;
                let mut starting = Starting::new(&slot.shared, in_flight);
                // If a listener or the inner `call` panics, `starting` is dropped while
                // unwinding: the slot comes back.
                starting.start(waited);
                let future = self.inner.call(request);
                ResponseFuture::called(future, starting.into_permit(), self.classifier.clone())
            }
            State::Rejecting(reason) => {
                slot.state = State::Idle;
                slot.shared.rejected(reason);
                ResponseFuture::rejected(reason, self.classifier.clone())
            }
            State::Idle | State::Waiting(_) => panic!("poll_ready must be called first"),
        }
    }
}
