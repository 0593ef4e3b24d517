//! Response futures of the rate-limit services.

use crate::error::{BoxError, CostExceedsBurst, KeyedRejection, RateLimited};
use crate::keyed::{self, KeyedRateLimiter};
use crate::limiter::RateLimiter;
use crate::state::{Acquired, Taken};
use palisade_core::classify::Outcome;
use palisade_core::rejection::is_local_rejection;
use pin_project::pin_project;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::Sleep;
use tower_service::Service;

/// A token spent on a call: given back if a layer below rejects the call locally.
pub(crate) struct Spent {
    pub(crate) limiter: RateLimiter,
    pub(crate) taken: Taken,
    pub(crate) cost: u32,
}

/// How a call the limiter admitted ended; a local rejection from below gets its tokens back.
fn finish<T, E: Into<BoxError>>(
    result: Result<T, E>,
    give_back: impl FnOnce(),
    report: impl FnOnce(Outcome),
) -> Result<T, BoxError> {
    match result {
        Ok(response) => {
            report(Outcome::Success);
            Ok(response)
        }
        Err(error) => {
            let error = error.into();
            if is_local_rejection(&*error) {
                // The call never reached the dependency (a full bulkhead, an open breaker…
                // below): the tokens were not used.
                give_back();
                report(Outcome::Ignore);
            } else {
                report(Outcome::Failure);
            }
            Err(error)
        }
    }
}

/// The response future of [`RateLimiterService`](crate::RateLimiterService): the inner
/// service's future, or the rejection decided before calling it.
///
/// # Cancel safety
///
/// Dropping it after the inner service was called keeps the token spent: the request may have
/// reached the dependency.
#[pin_project]
pub struct ResponseFuture<F> {
    #[pin]
    kind: Kind<F>,
}

#[pin_project(project = KindProj)]
enum Kind<F> {
    Called {
        #[pin]
        future: F,
        spent: Option<Spent>,
    },
    Rejected {
        error: Option<BoxError>,
    },
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(future: F, spent: Spent) -> Self {
        ResponseFuture {
            kind: Kind::Called {
                future,
                spent: Some(spent),
            },
        }
    }

    pub(crate) fn rejected(error: BoxError) -> Self {
        ResponseFuture {
            kind: Kind::Rejected { error: Some(error) },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future, spent } => {
                let result = ready!(future.poll(cx));
                // Read where it lies and dropped in place below, not moved out first: when
                // the inner future is ready at once (a local rejection from a layer below, a
                // cached answer), the move read it back in wider words than `call` had just
                // written it, a store-forwarding stall.
                let held = spent.as_ref();
                let output = finish(
                    result,
                    || {
                        if let Some(s) = held {
                            s.limiter.refund(s.taken, s.cost);
                        }
                    },
                    |outcome| {
                        if let Some(s) = held {
                            s.limiter.completed(outcome);
                        }
                    },
                );
                *spent = None;
                Poll::Ready(output)
            }
            KindProj::Rejected { error } => Poll::Ready(Err(error
                .take()
                .expect("ResponseFuture polled after completion"))),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.kind {
            Kind::Called { .. } => "called",
            Kind::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

/// Where the tokens of a request decided in `call` come from.
pub(crate) enum Source<K> {
    Shared(RateLimiter),
    Keyed(KeyedRateLimiter<K>, K),
}

enum Token {
    Shared(Taken),
    Keyed(keyed::Taken),
}

enum Drawn {
    Now(Token),
    /// Not yet: due after `after` ns; `now` is the limiter's clock reading.
    Denied {
        after: u64,
        now: u64,
    },
    Refused(BoxError),
}

impl<K: Hash + Eq + Clone> Source<K> {
    fn draw(&self, cost: u32) -> Drawn {
        match self {
            Source::Shared(limiter) => match limiter.acquire(cost) {
                (Acquired::Now(taken), _) => Drawn::Now(Token::Shared(taken)),
                (Acquired::Denied(after), now) => Drawn::Denied { after, now },
                (Acquired::TooCostly(burst), _) => {
                    Drawn::Refused(Box::new(CostExceedsBurst::new(cost, burst)))
                }
            },
            Source::Keyed(limiter, key) => match limiter.draw(key, cost) {
                (Ok(taken), _) => Drawn::Now(Token::Keyed(taken)),
                (Err(KeyedRejection::RateLimited(e)), now) => Drawn::Denied {
                    after: palisade_core::clock::duration_to_nanos(e.retry_after()),
                    now,
                },
                (Err(other), _) => Drawn::Refused(other.boxed()),
            },
        }
    }

    fn give_back(&self, token: Token, cost: u32) {
        match (self, token) {
            (Source::Shared(limiter), Token::Shared(taken)) => limiter.refund(taken, cost),
            (Source::Keyed(limiter, key), Token::Keyed(taken)) => {
                limiter.refund(key, taken, cost);
            }
            _ => {}
        }
    }

    fn completed(&self, outcome: Outcome) {
        match self {
            Source::Shared(limiter) => limiter.completed(outcome),
            Source::Keyed(limiter, _) => limiter.completed(outcome),
        }
    }

    fn max_wait_nanos(&self) -> u64 {
        match self {
            Source::Shared(limiter) => limiter.max_wait_nanos(),
            Source::Keyed(limiter, _) => limiter.max_wait_nanos(),
        }
    }
}

/// The response future of the services that decide in `call` (per-request cost or key):
/// [`WeightedRateLimiterService`](crate::WeightedRateLimiterService) (`K = ()`) and
/// [`KeyedRateLimiterService`](crate::KeyedRateLimiterService).
///
/// In [`Mode::Wait`](crate::Mode::Wait), a request whose tokens are not there yet holds the
/// request and a clone of the inner service (not yet ready, so it holds nothing of the layers
/// below), sleeps on the tokio timer until the tokens are due, then takes them, readies the
/// clone and calls it; if they are not due within `max_wait`, it fails with [`RateLimited`].
///
/// # Cancel safety
///
/// Nothing is taken while it waits, so dropping it then costs the limiter nothing. Dropping it
/// after the inner service was called keeps the tokens spent.
#[pin_project]
pub struct DeferredFuture<S, Req, K = ()>
where
    S: Service<Req>,
{
    #[pin]
    kind: Deferred<S, Req>,
    source: Source<K>,
    cost: u32,
}

#[pin_project(project = DeferredProj)]
enum Deferred<S, Req>
where
    S: Service<Req>,
{
    Called {
        #[pin]
        future: S::Future,
        token: Option<Token>,
    },
    Waiting {
        #[pin]
        sleep: Sleep,
        service: Option<S>,
        request: Option<Req>,
        deadline: u64,
    },
    Rejected {
        error: Option<BoxError>,
    },
}

impl<S, Req, K> DeferredFuture<S, Req, K>
where
    S: Service<Req> + Clone,
    K: Hash + Eq + Clone,
{
    /// Decides the request now: calls the ready `service` if the tokens are there, waits for
    /// them with a clone of it (wait mode), or rejects.
    pub(crate) fn new(source: Source<K>, cost: u32, service: &mut S, request: Req) -> Self {
        let kind = match source.draw(cost) {
            Drawn::Now(token) => Deferred::Called {
                future: service.call(request),
                token: Some(token),
            },
            Drawn::Denied { after, now } => {
                let max_wait = source.max_wait_nanos();
                if after > max_wait {
                    Deferred::Rejected {
                        error: Some(Box::new(RateLimited::new(Duration::from_nanos(after)))),
                    }
                } else {
                    Deferred::Waiting {
                        sleep: tokio::time::sleep(Duration::from_nanos(after)),
                        service: Some(service.clone()),
                        request: Some(request),
                        deadline: now.saturating_add(max_wait),
                    }
                }
            }
            Drawn::Refused(error) => Deferred::Rejected { error: Some(error) },
        };
        DeferredFuture { kind, source, cost }
    }
}

impl<S, Req, K> Future for DeferredFuture<S, Req, K>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (source, cost) = (&*this.source, *this.cost);
        let mut kind = this.kind;
        loop {
            match kind.as_mut().project() {
                DeferredProj::Called { future, token } => {
                    let result = ready!(future.poll(cx));
                    let token = token.take();
                    return Poll::Ready(finish(
                        result,
                        || {
                            if let Some(token) = token {
                                source.give_back(token, cost);
                            }
                        },
                        |outcome| source.completed(outcome),
                    ));
                }
                DeferredProj::Waiting {
                    mut sleep,
                    service,
                    request,
                    deadline,
                } => {
                    ready!(sleep.as_mut().poll(cx));
                    let token = match source.draw(cost) {
                        Drawn::Now(token) => token,
                        Drawn::Denied { after, now } => {
                            if now.saturating_add(after) > *deadline {
                                let error = RateLimited::new(Duration::from_nanos(after));
                                kind.set(Deferred::Rejected {
                                    error: Some(Box::new(error)),
                                });
                            } else {
                                let until =
                                    tokio::time::Instant::now() + Duration::from_nanos(after);
                                sleep.reset(until);
                            }
                            continue;
                        }
                        Drawn::Refused(error) => {
                            kind.set(Deferred::Rejected { error: Some(error) });
                            continue;
                        }
                    };
                    // The tokens are ours: ready the service. If it is not ready, give them
                    // back and wait for it (its waker is registered), trying again when woken.
                    let svc = service.as_mut().expect("polled after completion");
                    match svc.poll_ready(cx) {
                        Poll::Pending => {
                            source.give_back(token, cost);
                            return Poll::Pending;
                        }
                        Poll::Ready(Err(error)) => {
                            source.give_back(token, cost);
                            let error = error.into();
                            kind.set(Deferred::Rejected { error: None });
                            return Poll::Ready(Err(error));
                        }
                        Poll::Ready(Ok(())) => {
                            let request = request.take().expect("polled after completion");
                            let future = svc.call(request);
                            kind.set(Deferred::Called {
                                future,
                                token: Some(token),
                            });
                        }
                    }
                }
                DeferredProj::Rejected { error } => {
                    return Poll::Ready(Err(error.take().expect("polled after completion")));
                }
            }
        }
    }
}

impl<S: Service<Req>, Req, K> fmt::Debug for DeferredFuture<S, Req, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.kind {
            Deferred::Called { .. } => "called",
            Deferred::Waiting { .. } => "waiting",
            Deferred::Rejected { .. } => "rejected",
        };
        f.debug_struct("DeferredFuture")
            .field("state", &state)
            .field("cost", &self.cost)
            .finish()
    }
}
