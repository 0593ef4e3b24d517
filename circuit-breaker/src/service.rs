//! [`CircuitBreakerService`]: the `Service` wrapper.

use crate::circuit_breaker::CircuitBreaker;
use crate::error::CircuitOpen;
use crate::future::ResponseFuture;
use crate::permit::OwnedPermit;
use crate::state::State;
use palisade_core::classify::{Classify, ErrorIsFailure, Outcome};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::BoxError;
use tower_service::Service;

/// How a [`CircuitBreakerService`] answers while its breaker admits no call. Set it with
/// [`CircuitBreakerLayer::mode`](crate::CircuitBreakerLayer::mode) or
/// [`CircuitBreakerLayer::gate`](crate::CircuitBreakerLayer::gate).
///
/// - **`Reject`** (the default) fails fast: `poll_ready` is ready and the call answers with
///   [`CircuitOpen`] without calling the inner service. Use it at the top of a stack, where a
///   caller must hear "no" at once: waiting would defeat the point of a breaker.
/// - **`Gate`** (linkerd2-proxy's `Gate`) makes the service *not ready*: `poll_ready` returns
///   `Pending` and wakes the task when probes may start (the end of the open wait), when a
///   half-open probe is given back or the probes decide, or at a manual transition. Use it per
///   endpoint inside a readiness-aware balancer (tower's p2c `Balance`), which then routes
///   around an open endpoint instead of preferring its instant rejections. Bound the wait with
///   a timeout above it, or rely on the balancer's other endpoints: a forced-open gate waits
///   for a person. An open (or forced-open) gate also tells its poller that it is *shut* for
///   the rest of its wait, not busy: Palisade's balancer then passes it over without polling
///   it again until then, and with every endpoint shut rejects the call at once
///   (`NoHealthyEndpoints`) instead of waiting. Half-open with its probes out is only busy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// Ready at once; the call fails with [`CircuitOpen`].
    #[default]
    Reject,
    /// `Pending` until the breaker may admit the call, with a wake-up.
    Gate,
}

/// A service guarded by a [`CircuitBreaker`]. Built by [`CircuitBreakerLayer`](crate::CircuitBreakerLayer).
///
/// `poll_ready` asks the breaker for a permit. Admitted, it reserves the permit (a half-open
/// probe slot is taken from then on) and then polls the inner service. Rejected, in
/// [`Mode::Reject`] (the default) it is ready at once without polling the inner service, and
/// `call` answers with a [`CircuitOpen`] error without calling it, like tower's `LoadShed`:
/// the rejection is fast and the service stays usable. In [`Mode::Gate`] it is `Pending`
/// instead, and wakes the task when the breaker may admit the call. Errors are [`BoxError`];
/// downcast to [`CircuitOpen`] to tell a rejection from an inner error.
///
/// A clone shares the breaker but not a reservation.
///
/// # Panics
///
/// In [`Mode::Gate`], `poll_ready` on an open breaker arms a `tokio` timer: it must run inside
/// a tokio runtime with time enabled. With tokio's paused time, give the breaker
/// `Clock::tokio()` so that both read the same time.
///
/// # Cancel safety
///
/// Dropping the service with a reserved permit, or dropping a response future before it
/// completes, gives the permit back and records nothing (a cancelled call does not count).
/// A panic in the inner service's `call` or while its future is polled counts as a failure
/// and also gives the permit back.
pub struct CircuitBreakerService<S, C = ErrorIsFailure> {
    inner: S,
    breaker: CircuitBreaker,
    classifier: C,
    mode: Mode,
    /// The permit `poll_ready` reserved for the next `call`.
    reserved: Option<OwnedPermit>,
    /// Or the rejection `poll_ready` got instead (never both). A field of its own, one
    /// pointer wide: `call` reads back exactly the word `poll_ready` wrote (read out of a
    /// shared enum, it was loaded in wider words than it was stored: a store-forwarding
    /// stall on the reject path).
    rejected: Option<Box<CircuitOpen>>,
    /// Gate mode's timer, allocated the first time the gate waits and reused after.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S, C> CircuitBreakerService<S, C> {
    /// Wraps `inner` in `breaker`, classifying results with `classifier`, in
    /// [`Mode::Reject`].
    pub fn new(inner: S, breaker: CircuitBreaker, classifier: C) -> Self {
        CircuitBreakerService::with_mode(inner, breaker, classifier, Mode::Reject)
    }

    /// Wraps `inner` in `breaker`, classifying results with `classifier`, in `mode`.
    pub fn with_mode(inner: S, breaker: CircuitBreaker, classifier: C, mode: Mode) -> Self {
        CircuitBreakerService {
            inner,
            breaker,
            classifier,
            mode,
            reserved: None,
            rejected: None,
            sleep: None,
        }
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Gate mode: a permit, or `Pending` with the task registered to be woken (by a
    /// transition, a returned probe, or the timer at the end of the wait).
    fn poll_gate(&mut self, cx: &mut Context<'_>) -> Poll<OwnedPermit> {
        let shared = self.breaker.shared();
        let mut looked_again = false;
        let mut timer_fired = false;
        loop {
            let seen = shared.load();
            let open = match self.breaker.acquire_quietly() {
                Ok(permit) => return Poll::Ready(permit),
                Err(open) => open,
            };
            // Register, then look again: a change between our look and the registration
            // would otherwise wake nobody. An `Open` without a known wait was rejected in the
            // instant between its transition and the publication of its wait, which wakes the
            // registered waiters: one more look after registering sees it or gets woken.
            let unknown_wait = open.state() == State::Open && open.retry_after().is_none();
            if shared.register_waiter(cx.waker()) != seen || (unknown_wait && !looked_again) {
                looked_again = true;
                continue;
            }
            let recheck = shared.recheck_after(&open);
            if let Some(after) = recheck {
                let deadline = tokio::time::Instant::now() + after;
                let sleep = match &mut self.sleep {
                    Some(sleep) => {
                        sleep.as_mut().reset(deadline);
                        sleep
                    }
                    None => self
                        .sleep
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                if sleep.as_mut().poll(cx).is_ready() {
                    if timer_fired {
                        // The timer's clock ran ahead of the breaker's (a breaker clock other
                        // than tokio's): yield instead of spinning inside this poll.
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    timer_fired = true;
                    continue;
                }
            }
            // Open is shut, not busy: a balancer polling this endpoint learns so (core's
            // readiness note) and passes it over for the rest of the wait instead of waiting
            // on it; with every endpoint shut it rejects at once. A forced-open breaker has no
            // known end: shut for now, asked again at the next pick. Half-open with its probes
            // out is busy: their answers come within a call.
            if matches!(open.state(), State::Open | State::ForcedOpen) {
                palisade_core::readiness::report_shut(recheck.unwrap_or(Duration::ZERO));
            }
            return Poll::Pending;
        }
    }

    /// The breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service (a reserved permit is given back).
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, C: Clone> Clone for CircuitBreakerService<S, C> {
    fn clone(&self) -> Self {
        // Never clone a reservation: the clone must ask for its own permit. `share`, not
        // `clone`: a service clone must not allocate (tower clones services per call).
        CircuitBreakerService::with_mode(
            self.inner.clone(),
            self.breaker.share(),
            self.classifier.clone(),
            self.mode,
        )
    }
}

impl<S: fmt::Debug, C> fmt::Debug for CircuitBreakerService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerService")
            .field("inner", &self.inner)
            .field("breaker", &self.breaker)
            .field("mode", &self.mode)
            .field("reserved", &self.reserved)
            .field("rejected", &self.rejected)
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Service<Req> for CircuitBreakerService<S, C>
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
        if self.reserved.is_none() {
            // A rejection from an earlier `poll_ready` is stale: ask again.
            self.rejected = None;
            match self.mode {
                Mode::Reject => match self.breaker.acquire_boxed() {
                    Ok(permit) => self.reserved = Some(permit),
                    Err(open) => {
                        self.rejected = Some(open);
                        return Poll::Ready(Ok(()));
                    }
                },
                Mode::Gate => {
                    let permit = std::task::ready!(self.poll_gate(cx));
                    self.reserved = Some(permit);
                }
            }
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(error)) => {
                // The call will not happen: give the permit back unrecorded.
                self.reserved = None;
                Poll::Ready(Err(error.into()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// # Panics
    ///
    /// If `poll_ready` did not return `Ready(Ok(()))` before.
    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match &mut self.reserved {
            Some(permit) => permit.0.start(),
            None => match self.rejected.take() {
                Some(open) => return ResponseFuture::rejected(open),
                None => panic!("poll_ready must be called first"),
            },
        }
        // The permit stays where `poll_ready` wrote it while the inner service's `call` runs,
        // and moves once, after. A panic of that `call` is the dependency's failure: the guard
        // records it while unwinding (a caller's own panic never passes through here). Moved
        // out first (into the guard, then out of it), the permit was read back in wider words
        // than `poll_ready` had just written it: a store-forwarding stall.
        let guard = CallGuard(&mut self.reserved);
        let future = self.inner.call(request);
        let permit = guard.disarm();
        ResponseFuture::called(future, permit, self.classifier.clone())
    }
}

/// Watches the reserved permit while the inner service's `call` runs: dropped with it still
/// there, `call` panicked, which counts as a failure.
struct CallGuard<'a>(&'a mut Option<OwnedPermit>);

impl CallGuard<'_> {
    fn disarm(self) -> OwnedPermit {
        let mut this = std::mem::ManuallyDrop::new(self);
        match this.0.take() {
            Some(permit) => permit,
            None => unreachable!("call checked the reservation"),
        }
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.0.take() {
            permit.record(Outcome::Failure);
        }
    }
}
