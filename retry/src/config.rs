//! [`RetryPolicyBuilder`]: what to retry, how often, how long to wait, and what it may cost.

use crate::backoff::Backoff;
use crate::budget::{RetryBudget, RetryBudgetBuilder};
use crate::events::RetryEvent;
use crate::remote_hint::NoRemoteHint;
use crate::request::{CloneAll, CloneIf, CloneWith};
use crate::retry_policy::{RetryPolicy, Shared};
use crate::throttle::RetryThrottle;
use crossbeam_utils::CachePadded;
use palisade_core::classify::{ErrorIsFailure, Outcome};
use palisade_core::clock::Clock;
use palisade_core::error::{ConfigError, check_nonzero_duration};
use palisade_core::events::EventBus;
use palisade_core::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// What retries and hedges spend.
#[derive(Clone, Debug)]
pub(crate) enum Spend {
    /// Nothing: every retry the policy allows is made (a retry storm waiting to happen).
    Unlimited,
    /// A Finagle budget: requests deposit, retries withdraw.
    Budget(RetryBudget),
    /// A gRPC throttle: outcomes fill and drain it, retries need it half full.
    Throttle(RetryThrottle),
}

impl Spend {
    /// An original request was sent.
    #[inline]
    pub(crate) fn on_request(&self) {
        if let Spend::Budget(budget) = self {
            budget.deposit();
        }
    }

    /// An attempt ended with `outcome`.
    #[inline]
    pub(crate) fn on_outcome(&self, outcome: Outcome) {
        if let Spend::Throttle(throttle) = self {
            match outcome {
                Outcome::Success => throttle.on_success(),
                Outcome::Failure => throttle.on_failure(),
                Outcome::Ignore => {}
            }
        }
    }

    /// Reports a refused retry or hedge: [`RetryEvent::RetryThrottled`] when a throttle
    /// refused it, [`RetryEvent::BudgetExhausted`] otherwise.
    pub(crate) fn emit_refusal(&self, events: &EventBus<RetryEvent>, attempt: u32) {
        if let Spend::Throttle(_) = self {
            events.emit_call_with(|| RetryEvent::RetryThrottled { attempt });
        } else {
            events.emit_call_with(|| RetryEvent::BudgetExhausted { attempt });
        }
    }

    /// Takes what one more attempt costs; `false` if it may not be made.
    pub(crate) fn try_spend(&self) -> bool {
        match self {
            Spend::Unlimited => true,
            Spend::Budget(budget) => budget.try_withdraw(),
            Spend::Throttle(throttle) => throttle.allows_retry(),
        }
    }
}

#[derive(Clone, Debug)]
enum SpendChoice {
    DefaultBudget,
    Budget(RetryBudget),
    Throttle(RetryThrottle),
    Unlimited,
}

/// Builds a [`RetryPolicy`].
///
/// Generic over the classifier `C`, the request policy `Q` and the
/// [`RemoteHint`](crate::RemoteHint) `H` that
/// reads hints from responses (default [`NoRemoteHint`]), like the [`RetryPolicy`] it builds.
#[derive(Clone, Debug)]
pub struct RetryPolicyBuilder<C = ErrorIsFailure, Q = CloneAll, H = NoRemoteHint> {
    max_attempts: u32,
    backoff: Backoff,
    deadline: Option<Duration>,
    attempt_timeout: Option<Duration>,
    strict_attempt_timeout: bool,
    remote_hint_per_endpoint: bool,
    max_retry_after: Option<Duration>,
    local_max_wait: Option<Duration>,
    classify: C,
    requests: Q,
    remote_hint: H,
    spend: SpendChoice,
    clock: Option<Clock>,
    seed: Option<u64>,
    name: Option<Arc<str>>,
}

impl RetryPolicyBuilder {
    pub(crate) fn new() -> Self {
        RetryPolicyBuilder {
            max_attempts: 3,
            backoff: Backoff::full_jitter(Duration::from_millis(50), Duration::from_secs(5)),
            deadline: None,
            attempt_timeout: None,
            strict_attempt_timeout: false,
            remote_hint_per_endpoint: false,
            max_retry_after: None,
            local_max_wait: None,
            classify: ErrorIsFailure,
            requests: CloneAll,
            remote_hint: NoRemoteHint,
            spend: SpendChoice::DefaultBudget,
            clock: None,
            seed: None,
            name: None,
        }
    }
}

impl<C, Q, H> RetryPolicyBuilder<C, Q, H> {
    /// Attempts per request, the first included: 1 (never retry) to 100. Default 3, as
    /// resilience4j's `maxAttempts` and the AWS SDKs' standard retry mode: two retries cover a
    /// transient failure, and with the default budget a failing dependency still sees at most
    /// ~1.2× its load, whatever this number (the budget, not the attempt count, bounds a storm).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// The wait before each retry. Default: full jitter from 50 ms, capped at 5 s. Full jitter
    /// because it spreads the retries of many callers failing together the most (Brooker,
    /// "Exponential Backoff And Jitter", AWS Architecture Blog, 2015); a 50 ms base so the
    /// first retry can still help a caller with a deadline of a second or so; a 5 s cap, which
    /// is also the default bound on any remote `retry_after` hint ([`max_retry_after`]), so a
    /// default policy never makes a caller wait longer than 5 s on anything.
    ///
    /// [`max_retry_after`]: RetryPolicyBuilder::max_retry_after
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// A deadline across all attempts, from the call: an attempt still running at the
    /// deadline fails with [`DeadlineExceeded`](crate::DeadlineExceeded), and no retry is
    /// scheduled that could not start before it. Default: none.
    #[must_use]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// A timeout for each attempt that another attempt can follow: an attempt that takes
    /// longer is dropped and counts as a failure ([`AttemptTimedOut`](crate::AttemptTimedOut)),
    /// retried like any other. A retry's attempt starts when it begins to wait for the inner
    /// service's readiness, so the timeout bounds that wait too. Default: none.
    ///
    /// With a [`deadline`](Self::deadline), an attempt that no retry could follow when its
    /// timeout comes (the last of [`max_attempts`](Self::max_attempts), a request that cannot
    /// be copied, the budget or throttle refusing, or no room left before the deadline) is not
    /// dropped: it goes on until the deadline. Dropping it could only turn a late answer the
    /// caller still waits for into a failure: under a slowdown of the whole dependency past
    /// the attempt timeout, every call would fail where a client without one answers them all.
    /// The refused retry is reported as usual (`BudgetExhausted`, say); the call's
    /// `GaveUp` comes only if that attempt fails. Without a deadline, or with
    /// [`strict_attempt_timeout`](Self::strict_attempt_timeout), every attempt ends at its
    /// timeout.
    #[must_use]
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// Ends every attempt at the [`attempt_timeout`](Self::attempt_timeout), even one that no
    /// retry could follow (which otherwise runs on until the deadline): the call then fails
    /// at that attempt's timeout instead of waiting for a late answer. Default: off.
    #[must_use]
    pub fn strict_attempt_timeout(mut self) -> Self {
        self.strict_attempt_timeout = true;
        self
    }

    /// The longest *remote* `retry_after` hint (a server's `Retry-After`, gRPC pushback: a
    /// [`RetryAfter`](palisade_core::RetryAfter) in the error's source chain that is not part of
    /// a local [`Rejection`](palisade_core::Rejection), or a response's hint read by
    /// [`remote_hint`](Self::remote_hint)) that a retry waits for. A retry waits
    /// the longer of its backoff and the hint; a hint above this cap (or one that reaches past
    /// the deadline) ends retrying at once, returning the error
    /// ([`GiveUpReason::RetryAfterTooLong`](crate::GiveUpReason::RetryAfterTooLong)).
    ///
    /// Default: the backoff's cap ([`Backoff::max`]), so a default policy never makes a caller
    /// wait longer than its backoff cap.
    #[must_use]
    pub fn max_retry_after(mut self, cap: Duration) -> Self {
        self.max_retry_after = Some(cap);
        self
    }

    /// Takes a remote hint as the word of the one endpoint that sent it: for a retry above a
    /// balancer, whose retries go to another endpoint (palisade's `Balancer` does that).
    ///
    /// A failed attempt whose answer carries a hint is retried after the backoff alone, as if
    /// it had none, however long the hint (no
    /// [`RetryAfterTooLong`](crate::GiveUpReason::RetryAfterTooLong)): the retry goes to
    /// another endpoint, which asked for no wait. When the next attempt's answer carries a
    /// hint too, the fleet is saying it, and that hint is honoured as usual: waited out, or
    /// above [`max_retry_after`](Self::max_retry_after) given up on. An attempt without a hint
    /// in between starts the count again.
    ///
    /// Without it, one endpoint's `Retry-After: 30` in a fleet of three fails every request
    /// whose attempt reached it (the hint is over the cap), and a `Retry-After: 1` makes each
    /// of them wait a second for an answer the other endpoints give at once
    /// (`palisade/tests/status_failures.rs`). Leave it off without a balancer below: the
    /// retry would go straight back to the server that asked it to wait. Default: off.
    #[must_use]
    pub fn remote_hint_per_endpoint(mut self) -> Self {
        self.remote_hint_per_endpoint = true;
        self
    }

    /// Opts in to retrying *local rejections* from the layers below (an open breaker, a full
    /// bulkhead, a rate limiter without a token: anything that carries a core
    /// [`Rejection`](palisade_core::Rejection)), after the longer of the backoff and the
    /// rejection's own `retry_after` hint, but only when that wait is at most `max_wait` and
    /// ends before the deadline; otherwise the rejection is returned at once.
    ///
    /// Default: off. A local rejection is returned to the caller at once, never slept on
    /// ([`GiveUpReason::LocalRejection`](crate::GiveUpReason::LocalRejection)), whatever the
    /// classifier says: a breaker exists to fail fast. With a balancer below, prefer letting
    /// the balancer pick another endpoint.
    #[must_use]
    pub fn retry_local_rejections(mut self, max_wait: Duration) -> Self {
        self.local_max_wait = Some(max_wait);
        self
    }

    /// Which results are retryable: those the classifier calls
    /// [`Outcome::Failure`]. Default [`ErrorIsFailure`]: errors are retried, responses are not.
    #[must_use]
    pub fn classify<C2>(self, classify: C2) -> RetryPolicyBuilder<C2, Q, H> {
        RetryPolicyBuilder {
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            deadline: self.deadline,
            attempt_timeout: self.attempt_timeout,
            strict_attempt_timeout: self.strict_attempt_timeout,
            remote_hint_per_endpoint: self.remote_hint_per_endpoint,
            max_retry_after: self.max_retry_after,
            local_max_wait: self.local_max_wait,
            classify,
            requests: self.requests,
            remote_hint: self.remote_hint,
            spend: self.spend,
            clock: self.clock,
            seed: self.seed,
            name: self.name,
        }
    }

    fn requests<Q2>(self, requests: Q2) -> RetryPolicyBuilder<C, Q2, H> {
        RetryPolicyBuilder {
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            deadline: self.deadline,
            attempt_timeout: self.attempt_timeout,
            strict_attempt_timeout: self.strict_attempt_timeout,
            remote_hint_per_endpoint: self.remote_hint_per_endpoint,
            max_retry_after: self.max_retry_after,
            local_max_wait: self.local_max_wait,
            classify: self.classify,
            requests,
            remote_hint: self.remote_hint,
            spend: self.spend,
            clock: self.clock,
            seed: self.seed,
            name: self.name,
        }
    }

    /// Retries only requests the predicate accepts (the idempotent ones); they are copied with
    /// `Clone`.
    #[must_use]
    pub fn retry_requests_if<F>(self, predicate: F) -> RetryPolicyBuilder<C, CloneIf<F>, H> {
        self.requests(CloneIf(predicate))
    }

    /// Copies requests for retries with `copy` (for requests that are not `Clone`); a `None`
    /// from it means the request is not retried.
    #[must_use]
    pub fn clone_requests_with<F>(self, copy: F) -> RetryPolicyBuilder<C, CloneWith<F>, H> {
        self.requests(CloneWith(copy))
    }

    /// Reads *remote* `retry_after` hints from responses too: when the classifier calls an
    /// `Ok` response a retryable failure (an HTTP `429` or `503`, say), `hint` is asked for the
    /// server's hint (its `Retry-After`), which is then honoured exactly like a remote hint in
    /// an error's source chain: the retry waits the longer of its backoff and the hint; a hint
    /// above [`max_retry_after`](Self::max_retry_after) (default: the backoff cap), or one that
    /// reaches past the [deadline](Self::deadline), ends retrying at once
    /// ([`GiveUpReason::RetryAfterTooLong`](crate::GiveUpReason::RetryAfterTooLong),
    /// [`GiveUpReason::Deadline`](crate::GiveUpReason::Deadline)) and the caller gets that
    /// response. Successes, ignored responses and errors never reach `hint`.
    ///
    /// Default: none ([`NoRemoteHint`]): a response's hint is not read, at no cost.
    ///
    /// `Res` is the response type of the service the layer wraps. A generic function such as
    /// `palisade_http::retry_after_of` plugs straight in; name its body type
    /// (`retry_after_of::<B>`) when nothing else in the function fixes it.
    ///
    /// ```
    /// use palisade_core::{BoxError, Outcome};
    /// use palisade_retry::{Backoff, RetryPolicy};
    /// use std::time::Duration;
    /// use tower::{ServiceExt, service_fn};
    ///
    /// /// A status, and the server's `Retry-After` in seconds.
    /// struct Answer { status: u16, retry_after: Option<u64> }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let policy = RetryPolicy::builder()
    ///     .backoff(Backoff::constant(Duration::from_millis(10)))
    ///     .classify(|result: Result<&Answer, &BoxError>| match result {
    ///         Ok(answer) if answer.status == 429 => Outcome::Failure,
    ///         Ok(_) => Outcome::Success,
    ///         Err(_) => Outcome::Failure,
    ///     })
    ///     .remote_hint(|answer: &Answer| answer.retry_after.map(Duration::from_secs))
    ///     .max_retry_after(Duration::from_secs(2))
    ///     .build()?;
    /// let server = service_fn(|_: ()| async {
    ///     Ok::<_, BoxError>(Answer { status: 429, retry_after: Some(60) })
    /// });
    /// // A 60 s hint is above the 2 s cap: no retry, the 429 comes back at once.
    /// let answer = policy.layer().layer(server).oneshot(()).await?;
    /// assert_eq!(answer.status, 429);
    /// # Ok(())
    /// # }
    /// # use tower::Layer;
    /// ```
    #[must_use]
    pub fn remote_hint<Res, H2>(self, hint: H2) -> RetryPolicyBuilder<C, Q, H2>
    where
        H2: Fn(&Res) -> Option<Duration> + Send + Sync,
    {
        RetryPolicyBuilder {
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            deadline: self.deadline,
            attempt_timeout: self.attempt_timeout,
            strict_attempt_timeout: self.strict_attempt_timeout,
            remote_hint_per_endpoint: self.remote_hint_per_endpoint,
            max_retry_after: self.max_retry_after,
            local_max_wait: self.local_max_wait,
            classify: self.classify,
            requests: self.requests,
            remote_hint: hint,
            spend: self.spend,
            clock: self.clock,
            seed: self.seed,
            name: self.name,
        }
    }

    /// Draws retries from `budget` (shared: hand the same budget to every policy and hedge
    /// that calls the same backend).
    #[must_use]
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.spend = SpendChoice::Budget(budget);
        self
    }

    /// Limits retries with a gRPC-style [`RetryThrottle`] instead of a budget.
    #[must_use]
    pub fn throttle(mut self, throttle: RetryThrottle) -> Self {
        self.spend = SpendChoice::Throttle(throttle);
        self
    }

    /// Makes every retry the policy allows, with no budget. Only for backends that can take
    /// `max_attempts` times their load when they are failing.
    #[must_use]
    pub fn unlimited(mut self) -> Self {
        self.spend = SpendChoice::Unlimited;
        self
    }

    /// The clock for the deadline, and for the default budget. Default: [`Clock::default`]
    /// for both (the deadline's is read only when one is set; no background thread is
    /// started); use [`Clock::tokio`] in paused-time tests.
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Seeds the jitter: the first call that retries waits exactly
    /// [`Backoff::delays(seed)`](Backoff::delays), later calls draw distinct streams derived
    /// from it. Default: a random seed.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The instance name for metrics and traces. Default `"retry"`.
    #[must_use]
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Validates the settings and builds the policy.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `max_attempts` (0 or above 100), `backoff` (base above cap),
    /// `deadline` or `attempt_timeout` (zero).
    pub fn build(self) -> Result<RetryPolicy<C, Q, H>, ConfigError> {
        if !(1..=100).contains(&self.max_attempts) {
            return Err(ConfigError::new(
                "max_attempts",
                format!("must be between 1 and 100, got {}", self.max_attempts),
            ));
        }
        self.backoff.validate()?;
        if let Some(deadline) = self.deadline {
            check_nonzero_duration("deadline", deadline)?;
        }
        if let Some(timeout) = self.attempt_timeout {
            check_nonzero_duration("attempt_timeout", timeout)?;
        }
        let spend = match self.spend {
            SpendChoice::DefaultBudget => {
                let clock = self.clock.clone().unwrap_or_default();
                Spend::Budget(RetryBudgetBuilder::default().clock(clock).build()?)
            }
            SpendChoice::Budget(budget) => Spend::Budget(budget),
            SpendChoice::Throttle(throttle) => Spend::Throttle(throttle),
            SpendChoice::Unlimited => Spend::Unlimited,
        };
        let name = self.name.unwrap_or_else(|| Arc::from("retry"));
        let events = EventBus::new();
        palisade_core::subscribe_feature_listeners!(events, "retry", name);
        Ok(RetryPolicy {
            shared: Arc::new(Shared {
                max_attempts: self.max_attempts,
                backoff: self.backoff,
                deadline: self.deadline,
                attempt_timeout: self.attempt_timeout,
                strict_attempt_timeout: self.strict_attempt_timeout,
                remote_hint_per_endpoint: self.remote_hint_per_endpoint,
                max_retry_after: self.max_retry_after.unwrap_or(self.backoff.max()),
                local_max_wait: self.local_max_wait,
                classify: self.classify,
                requests: self.requests,
                remote_hint: self.remote_hint,
                spend,
                clock: self.clock.unwrap_or_default(),
                seed: self.seed.unwrap_or_else(palisade_core::rng::random_seed),
                streams: CachePadded::new(AtomicU64::new(0)),
                events,
                name,
            }),
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn config_is_validated() {
        let field = |b: RetryPolicyBuilder| b.build().unwrap_err().field();
        assert_eq!(
            field(RetryPolicy::builder().max_attempts(0)),
            "max_attempts"
        );
        assert_eq!(
            field(RetryPolicy::builder().max_attempts(101)),
            "max_attempts"
        );
        assert_eq!(
            field(RetryPolicy::builder().backoff(Backoff::exponential(
                Duration::from_secs(2),
                Duration::from_secs(1)
            ))),
            "backoff"
        );
        assert_eq!(
            field(RetryPolicy::builder().deadline(Duration::ZERO)),
            "deadline"
        );
        assert_eq!(
            field(RetryPolicy::builder().attempt_timeout(Duration::ZERO)),
            "attempt_timeout"
        );
    }

    #[test]
    fn defaults_attach_a_finagle_budget() {
        let policy = RetryPolicy::builder().build().unwrap();
        let budget = policy.budget().expect("a budget by default");
        assert_eq!(budget.percent_can_retry(), 0.2);
        assert_ne!(
            budget.clock().kind(),
            "coarse",
            "no upkeep thread by default"
        );
        assert_eq!(budget.min_retries_per_sec(), 10);
        assert_eq!(budget.ttl(), Duration::from_secs(10));
        assert_eq!(policy.max_attempts(), 3);
        assert_eq!(policy.name(), "retry");
        assert!(
            RetryPolicy::builder()
                .unlimited()
                .build()
                .unwrap()
                .budget()
                .is_none()
        );
    }
}
