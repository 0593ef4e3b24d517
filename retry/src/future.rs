//! The response future of [`RetryPolicyService`](crate::RetryPolicyService).

use crate::backoff::SplitMix64;
use crate::error::{AttemptTimedOut, DeadlineExceeded};
use crate::events::{CallOutcome, GiveUpReason, RetryEvent};
use crate::remote_hint::{NoRemoteHint, RemoteHint};
use crate::request::RetryRequest;
use crate::retry_policy::Shared;
use crate::timer::LazyTimer;
use palisade_core::BoxError;
use palisade_core::classify::{Classify, Outcome};
use palisade_core::clock::Instant;
use palisade_core::error::retry_after;
use palisade_core::rejection::{is_local_rejection, rejection};
use pin_project::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tower_service::Service;

/// The response future of [`RetryPolicyService`](crate::RetryPolicyService): runs attempts, waits out backoffs, and
/// resolves to the first result that is not a retryable failure, or to the last one.
///
/// The deadline bounds attempts, backoffs and every wait for the inner service's readiness
/// (the first attempt's included: with a deadline or an attempt timeout the service's
/// `poll_ready` is ready at once and this future waits for the inner service instead); the
/// attempt timeout bounds an attempt's readiness wait and its call together.
///
/// # Cancel safety
///
/// Dropping it drops the attempt in flight (or the backoff timer) and nothing else: no budget
/// is held across attempts, so there is nothing to return.
#[pin_project]
pub struct ResponseFuture<S, Req, C, Q, H = NoRemoteHint>
where
    S: Service<Req>,
{
    #[pin]
    state: State<S::Future>,
    /// One timer, for whichever wait is current: in an attempt, its limit (its timeout, or the
    /// deadline if that is sooner); in a backoff, the end of the backoff. Armed only when a
    /// wait is `Pending` (`timer.rs`).
    #[pin]
    timer: LazyTimer,
    /// Whether `timer` is the overall deadline (rather than the attempt's own timeout).
    timer_is_deadline: bool,
    service: S,
    /// The request for the next attempt: a copy, made only when one may follow; or, while the
    /// first attempt waits for readiness, the caller's request itself.
    request: Option<Req>,
    /// Attempts started so far (0 while the first waits for readiness; an attempt whose
    /// readiness wait outlasted its timeout counts as started).
    attempt: u32,
    deadline: Option<Instant>,
    rng: Option<SplitMix64>,
    /// What the retry decisions of this call carry from one to the next.
    memory: Memory,
    /// Set when the current attempt outlived its timeout with no retry possible: it runs on
    /// until the deadline, and if it fails the call gives up for this reason.
    last: Option<GiveUpReason>,
    shared: Arc<Shared<C, Q, H>>,
}

#[pin_project(project = StateProj)]
enum State<F> {
    /// An attempt is in flight.
    Attempt {
        #[pin]
        future: F,
    },
    /// Waiting before the next attempt, on `timer`.
    Backoff,
    /// Waiting for the service to be ready for the next attempt, the first one included when
    /// there is a deadline or an attempt timeout (bounded by `timer` then).
    Ready,
}

impl<S, Req, C, Q, H> ResponseFuture<S, Req, C, Q, H>
where
    S: Service<Req>,
{
    pub(crate) fn new(
        future: S::Future,
        service: S,
        request: Option<Req>,
        shared: Arc<Shared<C, Q, H>>,
    ) -> Self {
        let mut timer_is_deadline = false;
        let mut deadline = None;
        let timer = if shared.deadline.is_some() || shared.attempt_timeout.is_some() {
            let now = shared.clock.now();
            deadline = shared.deadline.map(|d| now + d);
            let (limit, is_deadline) = attempt_limit(shared.attempt_timeout, deadline, now);
            timer_is_deadline = is_deadline;
            LazyTimer::new(limit.map(|limit| now + limit))
        } else {
            LazyTimer::new(None)
        };
        ResponseFuture {
            state: State::Attempt { future },
            timer,
            timer_is_deadline,
            service,
            request,
            attempt: 1,
            deadline,
            rng: None,
            memory: Memory::default(),
            last: None,
            shared,
        }
    }
}

impl<S, Req, C, Q, H> ResponseFuture<S, Req, C, Q, H>
where
    S: Service<Req>,
{
    /// The future of a call whose first attempt has not been sent: it first waits for
    /// `service`'s readiness, under the timer armed now (the attempt timeout, or the deadline
    /// if that is sooner), exactly as before a retry. Used when the policy has a deadline or an
    /// attempt timeout, so that `poll_ready` can be ready at once (crate docs, "Readiness").
    pub(crate) fn awaiting_ready(service: S, request: Req, shared: Arc<Shared<C, Q, H>>) -> Self {
        let now = shared.clock.now();
        let deadline = shared.deadline.map(|d| now + d);
        let (limit, timer_is_deadline) = attempt_limit(shared.attempt_timeout, deadline, now);
        ResponseFuture {
            state: State::Ready,
            timer: LazyTimer::new(limit.map(|limit| now + limit)),
            timer_is_deadline,
            service,
            // The request itself, not a copy: the `Ready` state sends it as attempt 1 (and
            // copies it then if another attempt may follow).
            request: Some(request),
            attempt: 0,
            deadline,
            rng: None,
            memory: Memory::default(),
            last: None,
            shared,
        }
    }
}

/// How long the next attempt may run, and whether that limit is the deadline.
fn attempt_limit(
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    now: Instant,
) -> (Option<Duration>, bool) {
    let remaining = deadline.map(|d| d.saturating_duration_since(now));
    match (timeout, remaining) {
        (Some(t), Some(r)) if r <= t => (Some(r), true),
        (Some(t), _) => (Some(t), false),
        (None, Some(r)) => (Some(r), true),
        (None, None) => (None, false),
    }
}

impl<S, Req, C, Q, H> Future for ResponseFuture<S, Req, C, Q, H>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
    Q: RetryRequest<Req>,
    H: RemoteHint<S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Attempt { future } => {
                    // The retry decision, when it was taken before the attempt ended.
                    let decided: Option<Result<Duration, GiveUpReason>>;
                    let result: Result<S::Response, BoxError> = match future.poll(cx) {
                        Poll::Ready(result) => {
                            let outcome = this.shared.classify.classify(result.as_ref());
                            let result = result.map_err(Into::into);
                            // A local rejection from below is not the dependency's outcome,
                            // whatever the classifier says, and is retried only on opt-in.
                            let local = matches!(&result, Err(err) if is_local_rejection(&**err));
                            if local {
                                this.shared.spend.on_outcome(Outcome::Ignore);
                                if this.shared.local_max_wait.is_none() {
                                    let attempts = *this.attempt;
                                    this.shared.events.emit_with(|| RetryEvent::GaveUp {
                                        attempts,
                                        reason: GiveUpReason::LocalRejection,
                                    });
                                    return finished(
                                        this.shared,
                                        attempts,
                                        CallOutcome::Ignore,
                                        result,
                                    );
                                }
                            } else {
                                this.shared.spend.on_outcome(outcome);
                                if outcome != Outcome::Failure {
                                    return finished(
                                        this.shared,
                                        *this.attempt,
                                        CallOutcome::from(outcome),
                                        result,
                                    );
                                }
                            }
                            // An attempt kept past its timeout was the last: no retry.
                            decided = this.last.take().map(Err);
                            result
                        }
                        Poll::Pending => {
                            let Some(elapsed) =
                                this.timer.as_mut().poll_elapsed(cx, &this.shared.clock)
                            else {
                                return Poll::Pending;
                            };
                            ready!(elapsed);
                            if *this.timer_is_deadline {
                                this.shared.spend.on_outcome(Outcome::Failure);
                                return Poll::Ready(give_up_at_deadline(
                                    this.shared,
                                    *this.attempt,
                                ));
                            }
                            let result = Err(AttemptTimedOut.into());
                            // An attempt that may run on is counted when it ends; one that ends
                            // here is counted before the decision, as a throttle expects.
                            let may_run_on =
                                this.deadline.is_some() && !this.shared.strict_attempt_timeout;
                            if !may_run_on {
                                this.shared.spend.on_outcome(Outcome::Failure);
                            }
                            let decision = decide(
                                this.shared,
                                *this.attempt,
                                this.request.is_some(),
                                *this.deadline,
                                this.rng,
                                this.memory,
                                &result,
                            );
                            // The timeout is there to make room for another attempt. When none
                            // can follow, dropping this one only turns a late answer into a
                            // failure: under a deadline it runs on until the deadline.
                            if may_run_on {
                                if let (Err(reason), Some(deadline)) = (decision, *this.deadline) {
                                    *this.last = Some(reason);
                                    *this.timer_is_deadline = true;
                                    this.timer.as_mut().set(Some(deadline));
                                    continue;
                                }
                                this.shared.spend.on_outcome(Outcome::Failure);
                            }
                            decided = Some(decision);
                            result
                        }
                    };
                    let decision = match decided {
                        Some(decision) => decision,
                        None => decide(
                            this.shared,
                            *this.attempt,
                            this.request.is_some(),
                            *this.deadline,
                            this.rng,
                            this.memory,
                            &result,
                        ),
                    };
                    match decision {
                        Ok(delay) => {
                            if delay.is_zero() {
                                start_ready(
                                    this.shared,
                                    *this.deadline,
                                    this.timer.as_mut(),
                                    this.timer_is_deadline,
                                );
                                this.state.set(State::Ready);
                            } else {
                                let end = this.shared.clock.now() + delay;
                                this.timer.as_mut().set(Some(end));
                                this.state.set(State::Backoff);
                            }
                        }
                        Err(reason) => {
                            let attempts = *this.attempt;
                            this.shared
                                .events
                                .emit_with(|| RetryEvent::GaveUp { attempts, reason });
                            let outcome = if matches!(&result, Err(e) if is_local_rejection(&**e)) {
                                CallOutcome::Ignore
                            } else {
                                CallOutcome::Failure
                            };
                            return finished(this.shared, attempts, outcome, result);
                        }
                    }
                }
                StateProj::Backoff => {
                    if let Some(elapsed) = this.timer.as_mut().poll_elapsed(cx, &this.shared.clock)
                    {
                        ready!(elapsed);
                    }
                    start_ready(
                        this.shared,
                        *this.deadline,
                        this.timer.as_mut(),
                        this.timer_is_deadline,
                    );
                    this.state.set(State::Ready);
                }
                StateProj::Ready => {
                    match this.service.poll_ready(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(err)) => {
                            let attempts = *this.attempt;
                            return finished(
                                this.shared,
                                attempts,
                                CallOutcome::Failure,
                                Err(err.into()),
                            );
                        }
                        Poll::Pending => {
                            let Some(elapsed) =
                                this.timer.as_mut().poll_elapsed(cx, &this.shared.clock)
                            else {
                                return Poll::Pending;
                            };
                            ready!(elapsed);
                            if *this.timer_is_deadline {
                                return Poll::Ready(give_up_at_deadline(
                                    this.shared,
                                    *this.attempt,
                                ));
                            }
                            // The attempt's time ran out before it could be sent: a timed-out
                            // attempt (the copy of the request is kept for the next one).
                            *this.attempt += 1;
                            let result: Result<S::Response, BoxError> = Err(AttemptTimedOut.into());
                            match decide(
                                this.shared,
                                *this.attempt,
                                this.request.is_some(),
                                *this.deadline,
                                this.rng,
                                this.memory,
                                &result,
                            ) {
                                Ok(delay) => {
                                    let end = this.shared.clock.now() + delay;
                                    this.timer.as_mut().set(Some(end));
                                    this.state.set(State::Backoff);
                                    continue;
                                }
                                Err(reason) => {
                                    let attempts = *this.attempt;
                                    this.shared
                                        .events
                                        .emit_with(|| RetryEvent::GaveUp { attempts, reason });
                                    return finished(
                                        this.shared,
                                        attempts,
                                        CallOutcome::Failure,
                                        result,
                                    );
                                }
                            }
                        }
                    }
                    let request = this
                        .request
                        .take()
                        .expect("the ready state is entered only with a request to send");
                    *this.attempt += 1;
                    if *this.attempt < this.shared.max_attempts {
                        *this.request = this.shared.requests.clone_request(&request);
                    }
                    let future = this.service.call(request);
                    // The attempt keeps the timer set when its readiness wait began.
                    this.state.set(State::Attempt { future });
                }
            }
        }
    }
}

/// Arms `timer` for a retry's readiness wait and attempt: the attempt timeout, or the rest of
/// the deadline if that is sooner (none if neither is set).
fn start_ready<C, Q, H>(
    shared: &Shared<C, Q, H>,
    deadline: Option<Instant>,
    timer: Pin<&mut LazyTimer>,
    timer_is_deadline: &mut bool,
) {
    if shared.attempt_timeout.is_none() && deadline.is_none() {
        timer.set(None);
        return;
    }
    let now = shared.clock.now();
    let (limit, is_deadline) = attempt_limit(shared.attempt_timeout, deadline, now);
    *timer_is_deadline = is_deadline;
    timer.set(limit.map(|limit| now + limit));
}

/// The deadline passed: the events, and the error (the layer's own rejection).
fn give_up_at_deadline<C, Q, H, Res>(
    shared: &Shared<C, Q, H>,
    attempts: u32,
) -> Result<Res, BoxError> {
    shared.events.emit_with(|| RetryEvent::GaveUp {
        attempts,
        reason: GiveUpReason::Deadline,
    });
    shared.events.emit_call_with(|| RetryEvent::CallFinished {
        outcome: CallOutcome::Rejected,
        attempts,
    });
    Err(DeadlineExceeded.into())
}

/// The call ends with `result`: the one event every call emits at its end.
#[inline]
fn finished<C, Q, H, Res>(
    shared: &Shared<C, Q, H>,
    attempts: u32,
    outcome: CallOutcome,
    result: Result<Res, BoxError>,
) -> Poll<Result<Res, BoxError>> {
    shared
        .events
        .emit_call_with(|| RetryEvent::CallFinished { outcome, attempts });
    Poll::Ready(result)
}

/// What one call's retry decisions carry from one to the next.
#[derive(Clone, Copy, Debug, Default)]
struct Memory {
    /// The last backoff delay (decorrelated jitter grows from it).
    previous_delay: Duration,
    /// Whether the last failed attempt's answer carried a remote hint (read only with
    /// `remote_hint_per_endpoint`, where a hint binds when two attempts in a row bring one).
    hinted: bool,
}

/// Whether to retry after a failed attempt (an error, or a response the classifier called a
/// failure), and after what delay.
fn decide<C, Q, H: RemoteHint<Res>, Res>(
    shared: &Shared<C, Q, H>,
    attempt: u32,
    have_copy: bool,
    deadline: Option<Instant>,
    rng: &mut Option<SplitMix64>,
    memory: &mut Memory,
    result: &Result<Res, BoxError>,
) -> Result<Duration, GiveUpReason> {
    if attempt >= shared.max_attempts {
        return Err(GiveUpReason::AttemptsExhausted);
    }
    if !have_copy {
        return Err(GiveUpReason::NotRetryable);
    }
    // A local rejection from below: retried only on opt-in (checked by the caller), and only
    // within its cap, which the jittered delay counts against.
    let local = match result {
        Err(err) => rejection(&**err),
        Ok(_) => None,
    };
    let remote = match (local, result) {
        (Some(_), _) => None,
        (None, Err(err)) => retry_after(&**err),
        // A response the classifier called a failure: its hint, if the policy reads one
        // (`NoRemoteHint` is an inlined `None`).
        (None, Ok(response)) => shared.remote_hint.remote_hint(response),
    };
    // Per endpoint, a hint is the word of the endpoint that sent it, and the retry goes to
    // another one: it binds only when the previous attempt's answer brought one too.
    let remote = if shared.remote_hint_per_endpoint {
        let previous_hinted = std::mem::replace(&mut memory.hinted, remote.is_some());
        remote.filter(|_| previous_hinted)
    } else {
        remote
    };
    if remote.is_some_and(|hint| hint > shared.max_retry_after) {
        return Err(GiveUpReason::RetryAfterTooLong);
    }
    // Without a deadline or a local rejection's cap, no decision depends on the delay: ask
    // the budget first, so that a refused retry draws no jitter stream (the stream counter is
    // shared by every call: a contended write on the path where every call fails).
    let delay_decides = local.is_some() || deadline.is_some();
    if !delay_decides && !spend(shared, attempt) {
        return Err(GiveUpReason::BudgetExhausted);
    }
    let rng = rng.get_or_insert_with(|| SplitMix64::new(shared.next_stream_seed()));
    let mut delay = shared.backoff.delay(attempt, memory.previous_delay, rng);
    memory.previous_delay = delay;
    if let Some(local) = local {
        let cap = shared.local_max_wait.unwrap_or(Duration::ZERO);
        delay = delay.max(local.retry_after().unwrap_or(Duration::ZERO));
        if delay > cap {
            return Err(GiveUpReason::LocalRejection);
        }
    }
    if let Some(hint) = remote {
        delay = delay.max(hint);
    }
    if let Some(deadline) = deadline
        && shared.clock.now() + delay >= deadline
    {
        return Err(GiveUpReason::Deadline);
    }
    if delay_decides && !spend(shared, attempt) {
        return Err(GiveUpReason::BudgetExhausted);
    }
    shared.events.emit_call_with(|| RetryEvent::RetryScheduled {
        attempt: attempt + 1,
        delay,
    });
    Ok(delay)
}

/// Takes one retry from the policy's budget or throttle; on a refusal, reports it.
fn spend<C, Q, H>(shared: &Shared<C, Q, H>, attempt: u32) -> bool {
    if shared.spend.try_spend() {
        return true;
    }
    shared.spend.emit_refusal(&shared.events, attempt + 1);
    false
}

impl<S, Req, C, Q, H> fmt::Debug for ResponseFuture<S, Req, C, Q, H>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Attempt { .. } => "attempt",
            State::Backoff => "backoff",
            State::Ready => "ready",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}
