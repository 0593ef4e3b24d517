//! The rate-limit services.

use crate::config::Mode;
use crate::cost::{Cost, UnitCost};
use crate::error::{BoxError, RateLimited};
use crate::future::{DeferredFuture, ResponseFuture, Source, Spent};
use crate::keyed::KeyedRateLimiter;
use crate::limiter::RateLimiter;
use crate::state::Acquired;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::Sleep;
use tower_service::Service;

/// Limits the rate of requests to `S` with a shared [`RateLimiter`], one token per request.
///
/// # Readiness
///
/// Following tower's contract, `poll_ready` never fails for "limited" (only when the inner
/// service fails), and nothing is consumed before it is used:
///
/// - In [`Mode::Reject`] (the default) `poll_ready` is the inner service's readiness, and
///   `call` takes the token or fails with [`RateLimited`] without calling the inner service
///   (which stays ready for the next call). While the inner service is *not* ready,
///   `poll_ready` checks the bucket, taking nothing (one load of the bucket's word and of its
///   quota, no write): empty, it is ready at once and the next `call` fails with
///   [`RateLimited`] without calling it — a refusal needs nothing from the layers below, so it
///   never waits for a full bulkhead or a gated breaker there. The check is made only on that
///   path, so an admitted call over a ready service pays nothing for it.
/// - In [`Mode::Wait`] `poll_ready` takes the token first, then readies the inner service; if
///   the inner service is not ready the token is given back at once and the service waits for
///   the inner one (so a full bulkhead below burns no tokens). While the bucket is empty,
///   `poll_ready` is `Pending` and a tokio timer wakes the task when the next token is due.
///   The waits for tokens of one readiness-to-call cycle share one `max_wait`, counted from
///   the cycle's first `poll_ready` until `call`: once no token is due before that deadline,
///   it turns ready and `call` fails with [`RateLimited`], without waiting. If the inner
///   service is ready then, `call` decides afresh (a service kept ready for long, as tower's
///   p2c does, is not stuck with a stale refusal): it takes a token if one has come since,
///   else fails; if it is not, `call` fails without calling it, at once.
///   A service dropped ready, holding its token, gives it back.
///
/// Either way, a call that a layer below rejects locally (its error carries a
/// `palisade_core::Rejection`: a full bulkhead, an open breaker) gets its token back, since the
/// dependency never saw it.
///
/// Errors are `tower::BoxError`: downcast to [`RateLimited`], or to the inner service's error.
///
/// [`Mode::Reject`]: crate::Mode::Reject
/// [`Mode::Wait`]: crate::Mode::Wait
pub struct RateLimiterService<S> {
    inner: S,
    limiter: RateLimiter,
    state: Ready,
    /// The wait mode's timer, kept to be reset rather than allocated again.
    sleep: Option<Pin<Box<Sleep>>>,
    /// The wait mode's deadline (the limiter's clock, ns) for the current readiness-to-call
    /// cycle: set at its first `poll_ready`, kept until `call`, so that the waits for tokens
    /// between waits for the inner service add up to `max_wait` at most.
    deadline: Option<u64>,
}

enum Ready {
    /// Not polled since the last call.
    Idle,
    /// Reject mode: the inner service reported ready.
    Polled,
    /// The bucket was empty at a `poll_ready` that found the inner service not ready (reject
    /// mode), or the wait mode's `max_wait` is spent while the inner service is not ready:
    /// `call` refuses without calling the inner service, since the refusal needs nothing from
    /// it. Holds the limiter's clock (ns) when the next token is due.
    Refused(u64),
    /// Wait mode: a token taken for the next call (given back if dropped).
    Held(Held),
    /// Wait mode: sleeping until a token is due.
    Waiting,
    /// Wait mode: no token within `max_wait` (due at this reading of the limiter's clock,
    /// ns); `call` tries once more, then fails.
    Rejected(u64),
}

/// A token held by a ready service, given back on drop unless spent by `call`.
struct Held(Option<Spent>);

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(spent) = self.0.take() {
            spent.limiter.refund(spent.taken, spent.cost);
        }
    }
}

impl<S> RateLimiterService<S> {
    /// Wraps `inner`, drawing from `limiter`.
    pub fn new(inner: S, limiter: RateLimiter) -> Self {
        RateLimiterService {
            inner,
            limiter,
            state: Ready::Idle,
            sleep: None,
            deadline: None,
        }
    }

    /// The limiter this service draws from.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service (a token this service holds is given back).
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for RateLimiterService<S> {
    /// A clone shares the limiter but not a token this service holds.
    fn clone(&self) -> Self {
        RateLimiterService::new(self.inner.clone(), self.limiter.clone())
    }
}

impl<S: fmt::Debug> fmt::Debug for RateLimiterService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            Ready::Idle => "idle",
            Ready::Polled => "ready",
            Ready::Refused(_) => "refused",
            Ready::Held(_) => "holding a token",
            Ready::Waiting => "waiting",
            Ready::Rejected(_) => "rejected",
        };
        f.debug_struct("RateLimiterService")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .field("state", &state)
            .finish()
    }
}

impl<S> RateLimiterService<S> {
    /// Wait mode: takes a token, or sleeps until one is due, or gives up after `max_wait`.
    /// `Ready` means `self.state` is `Held` or `Rejected`.
    fn poll_token(&mut self, cx: &mut Context<'_>, max_wait: u64) -> Poll<()> {
        loop {
            match self.state {
                Ready::Held(_) | Ready::Rejected(_) => return Poll::Ready(()),
                Ready::Waiting => {
                    let sleep = self.sleep.as_mut().expect("waiting has a timer");
                    ready!(sleep.as_mut().poll(cx));
                    self.state = Ready::Idle;
                }
                Ready::Idle | Ready::Polled | Ready::Refused(_) => {
                    let (acquired, now) = self.limiter.acquire(1);
                    // The first poll of the cycle starts its clock; later ones (after the
                    // inner service was not ready and the token went back) keep it.
                    let deadline = *self.deadline.get_or_insert(now.saturating_add(max_wait));
                    let after = match acquired {
                        Acquired::Now(taken) => {
                            self.state = Ready::Held(Held(Some(Spent {
                                limiter: self.limiter.clone(),
                                taken,
                                cost: 1,
                            })));
                            return Poll::Ready(());
                        }
                        Acquired::Denied(after) => after,
                        // A burst is at least one token: cannot happen; refuse safely.
                        Acquired::TooCostly(_) => u64::MAX,
                    };
                    if now.saturating_add(after) > deadline {
                        self.state = Ready::Rejected(now.saturating_add(after));
                        return Poll::Ready(());
                    }
                    let until = tokio::time::Instant::now() + Duration::from_nanos(after);
                    match &mut self.sleep {
                        Some(sleep) => sleep.as_mut().reset(until),
                        None => self.sleep = Some(Box::pin(tokio::time::sleep_until(until))),
                    }
                    self.state = Ready::Waiting;
                }
            }
        }
    }
}

impl<S> RateLimiterService<S> {
    /// Takes the token now and calls the ready inner service, or rejects.
    #[inline]
    fn call_now<Req>(&mut self, request: Req) -> ResponseFuture<S::Future>
    where
        S: Service<Req>,
    {
        match self.limiter.acquire(1).0 {
            Acquired::Now(taken) => ResponseFuture::called(
                self.inner.call(request),
                Spent {
                    limiter: self.limiter.clone(),
                    taken,
                    cost: 1,
                },
            ),
            Acquired::Denied(after) => {
                ResponseFuture::rejected(Box::new(RateLimited::new(Duration::from_nanos(after))))
            }
            // A burst is at least one token: cannot happen; refuse safely.
            Acquired::TooCostly(_) => {
                ResponseFuture::rejected(Box::new(RateLimited::new(Duration::MAX)))
            }
        }
    }
}

impl<S, Req> Service<Req> for RateLimiterService<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let max_wait = match self.limiter.mode() {
            Mode::Reject => {
                // The inner service first: when it is ready (the common case) this costs
                // nothing more, and `call` takes the token or refuses. Only while it is not
                // ready do we look at the bucket, with a check that takes nothing: an empty
                // bucket's refusal needs nothing from the inner service, so it must not wait
                // for it (a full bulkhead, a gated breaker below).
                return match self.inner.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        self.state = Ready::Polled;
                        Poll::Ready(Ok(()))
                    }
                    Poll::Ready(Err(error)) => {
                        self.state = Ready::Idle;
                        Poll::Ready(Err(error.into()))
                    }
                    Poll::Pending => match self.limiter.peek() {
                        Some((after, now)) => {
                            self.state = Ready::Refused(now.saturating_add(after));
                            Poll::Ready(Ok(()))
                        }
                        None => {
                            self.state = Ready::Idle;
                            Poll::Pending
                        }
                    },
                };
            }
            Mode::Wait { .. } => self.limiter.max_wait_nanos(),
        };
        // Held (a token for the call) or Rejected (none within `max_wait`: `call` decides
        // afresh, so a service kept ready for long, as tower's p2c does, is not stuck with a
        // stale refusal). Either way the inner service must be ready for the call, except to
        // refuse it.
        ready!(self.poll_token(cx, max_wait));
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Pending => {
                if let Ready::Rejected(due) = self.state {
                    // The wait for the limiter is over and the refusal needs nothing from the
                    // inner service: refuse now rather than after its wait.
                    self.state = Ready::Refused(due);
                    return Poll::Ready(Ok(()));
                }
                // Give the token back (dropping `Held`) while the inner service is not ready:
                // a full layer below must not burn tokens. Its waker is registered; when it
                // wakes us, we take a token again.
                self.state = Ready::Idle;
                Poll::Pending
            }
            Poll::Ready(Err(error)) => {
                self.state = Ready::Idle;
                self.deadline = None;
                Poll::Ready(Err(error.into()))
            }
        }
    }

    fn call(&mut self, request: Req) -> Self::Future {
        // The call ends the readiness cycle: the next `poll_ready` starts a fresh `max_wait`.
        self.deadline = None;
        // The common case (reject mode, inner service ready) first, without moving the state
        // out: `Ready` is as large as a held token, and the move cost a visible share of the
        // call.
        if let Ready::Polled = self.state {
            self.state = Ready::Idle;
            return self.call_now(request);
        }
        match std::mem::replace(&mut self.state, Ready::Idle) {
            Ready::Polled => self.call_now(request),
            Ready::Refused(due) => {
                // The inner service is not ready: it must not be called. A token that came
                // since is left for the next call (decided afresh at the next `poll_ready`).
                let after = due.saturating_sub(self.limiter.now_nanos());
                self.limiter.refused(after);
                ResponseFuture::rejected(Box::new(RateLimited::new(Duration::from_nanos(after))))
            }
            Ready::Held(mut held) => {
                let spent = held.0.take().expect("a held token");
                ResponseFuture::called(self.inner.call(request), spent)
            }
            // No token came within `max_wait` when polled; one may have since.
            Ready::Rejected(_) => self.call_now(request),
            Ready::Idle | Ready::Waiting => panic!("poll_ready must be called first"),
        }
    }
}

/// Limits the rate of requests to `S` with a shared [`RateLimiter`], each request taking the
/// tokens its [`Cost`] says.
///
/// The cost is known only from the request, so the tokens are taken in `call` (`poll_ready`
/// is the inner service's readiness). Over the limit the response future fails with
/// [`RateLimited`]; a cost above the burst fails at once with
/// [`CostExceedsBurst`](crate::CostExceedsBurst), whatever the mode. In
/// [`Mode::Wait`](crate::Mode::Wait), a request that must wait takes nothing while it waits:
/// its future sleeps with a clone of the inner service (so `S` must be `Clone`) and takes the
/// tokens when due (see [`DeferredFuture`]). A call that a layer below rejects locally gets
/// its tokens back.
pub struct WeightedRateLimiterService<S, C> {
    inner: S,
    limiter: RateLimiter,
    cost: C,
}

impl<S, C> WeightedRateLimiterService<S, C> {
    /// Wraps `inner`, drawing `cost` tokens per request from `limiter`.
    pub fn new(inner: S, limiter: RateLimiter, cost: C) -> Self {
        WeightedRateLimiterService {
            inner,
            limiter,
            cost,
        }
    }

    /// The limiter this service draws from.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, C: Clone> Clone for WeightedRateLimiterService<S, C> {
    fn clone(&self) -> Self {
        WeightedRateLimiterService::new(self.inner.clone(), self.limiter.clone(), self.cost.clone())
    }
}

impl<S: fmt::Debug, C> fmt::Debug for WeightedRateLimiterService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeightedRateLimiterService")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Service<Req> for WeightedRateLimiterService<S, C>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Cost<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = DeferredFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let cost = self.cost.cost(&request);
        DeferredFuture::new(
            Source::Shared(self.limiter.clone()),
            cost,
            &mut self.inner,
            request,
        )
    }
}

/// Limits each key's rate with a shared [`KeyedRateLimiter`]; `F` extracts the key from the
/// request, `C` its cost ([`UnitCost`] by default).
///
/// Decided in `call`, like [`WeightedRateLimiterService`]; failures are [`RateLimited`],
/// [`CostExceedsBurst`](crate::CostExceedsBurst) or [`TooManyKeys`](crate::TooManyKeys),
/// boxed.
pub struct KeyedRateLimiterService<S, K, F, C = UnitCost> {
    inner: S,
    limiter: KeyedRateLimiter<K>,
    key: F,
    cost: C,
}

impl<S, K, F, C> KeyedRateLimiterService<S, K, F, C> {
    /// Wraps `inner`, drawing `cost` tokens per request from the bucket of the key `key`
    /// extracts.
    pub fn new(inner: S, limiter: KeyedRateLimiter<K>, key: F, cost: C) -> Self {
        KeyedRateLimiterService {
            inner,
            limiter,
            key,
            cost,
        }
    }

    /// The limiter this service draws from.
    pub fn limiter(&self) -> &KeyedRateLimiter<K> {
        &self.limiter
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, K, F: Clone, C: Clone> Clone for KeyedRateLimiterService<S, K, F, C> {
    fn clone(&self) -> Self {
        KeyedRateLimiterService::new(
            self.inner.clone(),
            self.limiter.clone(),
            self.key.clone(),
            self.cost.clone(),
        )
    }
}

impl<S: fmt::Debug, K, F, C> fmt::Debug for KeyedRateLimiterService<S, K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiterService")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<S, K, F, C, Req> Service<Req> for KeyedRateLimiterService<S, K, F, C>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone,
    F: Fn(&Req) -> K,
    C: Cost<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = DeferredFuture<S, Req, K>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let key = (self.key)(&request);
        let cost = self.cost.cost(&request);
        DeferredFuture::new(
            Source::Keyed(self.limiter.clone(), key),
            cost,
            &mut self.inner,
            request,
        )
    }
}
