//! [`Hedge`]: send another copy of a slow request, take the first answer, cancel the rest.
//!
//! Tail latency is often one slow server, not a slow request. Hedging (Dean & Barroso, "The
//! Tail at Scale"; gRPC's hedging policy) sends a copy of a request that has not answered
//! after a delay, to be served elsewhere, and returns whichever answer comes first; the losers
//! are dropped, which cancels them. The delay is fixed, or the p-th percentile of recent
//! latencies (a lock-free histogram, see [`HedgePolicyBuilder::percentile`]), so only about
//! `100 - p` percent of requests are hedged. Hedges withdraw from the same
//! [`RetryBudget`] as retries (pass the same one to both), so hedging
//! cannot double the load on a struggling backend. (Each layer deposits once per request it
//! sees; when a `Retry` and a `Hedge` wrap the same requests, give the hedge the budget with
//! [`HedgePolicyBuilder::budget_shared_with_retry`] so that a request is credited once.)
//!
//! Only hedge idempotent requests: two copies may both be executed.
//!
//! # Example
//!
//! ```
//! use palisade_retry::{HedgePolicy, RetryBudget};
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let budget = RetryBudget::default(); // share it with the RetryPolicy of the same backend
//! let hedge = HedgePolicy::builder()
//!     .percentile(95.0)
//!     .initial_delay(Duration::from_millis(50))
//!     .max_hedges(1)
//!     .budget(budget)
//!     .build()?;
//! let mut svc = ServiceBuilder::new()
//!     .layer(hedge.layer())
//!     .service(service_fn(|id: u64| async move { Ok::<_, std::io::Error>(id * 2) }));
//! assert_eq!(svc.ready().await?.call(21).await?, 42);
//! # Ok(())
//! # }
//! ```

mod future;

pub use self::future::HedgeFuture;

use crate::budget::RetryBudget;
use crate::config::Spend;
use crate::events::RetryEvent;
use crate::latency::LatencyHistogram;
use crate::request::{CloneAll, CloneIf, CloneWith, RetryRequest};
use crate::throttle::RetryThrottle;
use palisade_core::classify::{Classify, ErrorIsFailure};
use palisade_core::clock::{Clock, Instant};
use palisade_core::error::{ConfigError, check_nonzero_duration};
use palisade_core::events::{EventBus, Listener, ListenerId};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::BoxError;
use tower_layer::Layer;
use tower_service::Service;

/// The state every clone of a [`Hedge`] shares.
pub(crate) struct HedgeShared<C, Q> {
    pub(crate) fixed: Option<Duration>,
    pub(crate) initial_delay: Duration,
    pub(crate) histogram: Option<LatencyHistogram>,
    pub(crate) max_hedges: u32,
    pub(crate) classify: C,
    pub(crate) requests: Q,
    pub(crate) spend: Spend,
    /// Whether requests deposit into the budget here (not when a retry layer's do).
    pub(crate) deposits: bool,
    pub(crate) clock: Clock,
    pub(crate) events: EventBus<RetryEvent>,
    name: Arc<str>,
}

impl<C, Q> HedgeShared<C, Q> {
    /// How long to wait before the next hedge.
    #[inline]
    pub(crate) fn delay(&self) -> Duration {
        match (self.fixed, &self.histogram) {
            (Some(fixed), _) => fixed,
            (None, Some(h)) => h.percentile().unwrap_or(self.initial_delay),
            (None, None) => self.initial_delay,
        }
    }

    /// The start of an attempt, read only when latencies are tracked.
    #[inline]
    pub(crate) fn start(&self) -> Instant {
        if self.histogram.is_some() {
            self.clock.now()
        } else {
            Instant::ZERO
        }
    }

    /// Counts the latency of an attempt that won.
    #[inline]
    pub(crate) fn record(&self, start: Instant) {
        if let Some(h) = &self.histogram {
            h.record(self.clock.elapsed_since(start));
        }
    }
}

/// A hedging policy: a handle shared by every [`HedgeLayer`] and [`Hedge`] made from it.
pub struct HedgePolicy<C = ErrorIsFailure, Q = CloneAll> {
    shared: Arc<HedgeShared<C, Q>>,
}

impl<C, Q> Clone for HedgePolicy<C, Q> {
    fn clone(&self) -> Self {
        HedgePolicy {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl HedgePolicy {
    /// A builder with the defaults: one hedge after the 95th percentile of recent latencies
    /// (100 ms until 100 latencies were seen), a default [`RetryBudget`], every request hedged.
    #[must_use]
    pub fn builder() -> HedgePolicyBuilder {
        HedgePolicyBuilder {
            fixed: None,
            percentile: 95.0,
            initial_delay: Duration::from_millis(100),
            window: 1000,
            min_samples: 100,
            max_hedges: 1,
            classify: ErrorIsFailure,
            requests: CloneAll,
            spend: None,
            deposits: true,
            clock: None,
            name: None,
        }
    }
}

impl<C, Q> HedgePolicy<C, Q> {
    /// The layer that wraps services with this policy.
    #[must_use]
    pub fn layer(&self) -> HedgeLayer<C, Q> {
        HedgeLayer {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The delay a request sent now would wait before its first hedge.
    #[must_use]
    pub fn current_delay(&self) -> Duration {
        self.shared.delay()
    }

    /// Adds a listener for [`RetryEvent::HedgeSent`] and [`RetryEvent::BudgetExhausted`].
    pub fn subscribe<L: Listener<RetryEvent>>(&self, listener: L) -> ListenerId {
        self.shared.events.subscribe(listener)
    }

    /// Removes a listener; `false` if it was not subscribed.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        self.shared.events.unsubscribe(id)
    }
}

impl<C, Q> fmt::Debug for HedgePolicy<C, Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgePolicy")
            .field("name", &self.shared.name)
            .field("max_hedges", &self.shared.max_hedges)
            .field("current_delay", &self.shared.delay())
            .field("spend", &self.shared.spend)
            .finish_non_exhaustive()
    }
}

/// Builds a [`HedgePolicy`].
#[derive(Clone, Debug)]
pub struct HedgePolicyBuilder<C = ErrorIsFailure, Q = CloneAll> {
    fixed: Option<Duration>,
    percentile: f64,
    initial_delay: Duration,
    window: u64,
    min_samples: u64,
    max_hedges: u32,
    classify: C,
    requests: Q,
    spend: Option<Spend>,
    deposits: bool,
    clock: Option<Clock>,
    name: Option<Arc<str>>,
}

impl<C, Q> HedgePolicyBuilder<C, Q> {
    /// Hedge after a fixed delay instead of a percentile.
    #[must_use]
    pub fn delay(mut self, delay: Duration) -> Self {
        self.fixed = Some(delay);
        self
    }

    /// Hedge after the `p`-th percentile (0 < p < 100) of the latencies of recent winning
    /// attempts. The percentile is the upper edge of a histogram bucket, at most 19 % above
    /// the true value; recent means the counts are halved every `window` samples (default
    /// 1000). Default: 95.
    #[must_use]
    pub fn percentile(mut self, p: f64) -> Self {
        self.fixed = None;
        self.percentile = p;
        self
    }

    /// How many samples the percentile's "recent" spans (halving period). Default 1000.
    #[must_use]
    pub fn window(mut self, samples: u64) -> Self {
        self.window = samples;
        self
    }

    /// The delay used until `min_samples` latencies were seen. Default 100 ms.
    #[must_use]
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Latencies needed before the percentile is trusted. Default 100.
    #[must_use]
    pub fn min_samples(mut self, samples: u64) -> Self {
        self.min_samples = samples;
        self
    }

    /// Copies in flight beyond the first, at most (1 to 10). Default 1.
    #[must_use]
    pub fn max_hedges(mut self, hedges: u32) -> Self {
        self.max_hedges = hedges;
        self
    }

    /// Which results do not win (they are failures, and the other copies are awaited).
    /// Default: errors.
    #[must_use]
    pub fn classify<C2>(self, classify: C2) -> HedgePolicyBuilder<C2, Q> {
        HedgePolicyBuilder {
            fixed: self.fixed,
            percentile: self.percentile,
            initial_delay: self.initial_delay,
            window: self.window,
            min_samples: self.min_samples,
            max_hedges: self.max_hedges,
            classify,
            requests: self.requests,
            spend: self.spend,
            deposits: self.deposits,
            clock: self.clock,
            name: self.name,
        }
    }

    fn requests<Q2>(self, requests: Q2) -> HedgePolicyBuilder<C, Q2> {
        HedgePolicyBuilder {
            fixed: self.fixed,
            percentile: self.percentile,
            initial_delay: self.initial_delay,
            window: self.window,
            min_samples: self.min_samples,
            max_hedges: self.max_hedges,
            classify: self.classify,
            requests,
            spend: self.spend,
            deposits: self.deposits,
            clock: self.clock,
            name: self.name,
        }
    }

    /// Hedges only requests the predicate accepts (the idempotent ones).
    #[must_use]
    pub fn retry_requests_if<F>(self, predicate: F) -> HedgePolicyBuilder<C, CloneIf<F>> {
        self.requests(CloneIf(predicate))
    }

    /// Copies requests for hedges with `copy`; `None` means: do not hedge this one.
    #[must_use]
    pub fn clone_requests_with<F>(self, copy: F) -> HedgePolicyBuilder<C, CloneWith<F>> {
        self.requests(CloneWith(copy))
    }

    /// Hedges withdraw from `budget` (give the retry policy of the same backend the same one).
    #[must_use]
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.spend = Some(Spend::Budget(budget));
        self
    }

    /// Hedges withdraw from `budget`, but requests do not deposit into it here: use this when
    /// a [`Retry`](crate::Retry) with the same budget wraps the same requests (its deposits
    /// fund both), so that one request is not credited twice.
    #[must_use]
    pub fn budget_shared_with_retry(mut self, budget: RetryBudget) -> Self {
        self.spend = Some(Spend::Budget(budget));
        self.deposits = false;
        self
    }

    /// Hedges are allowed by a gRPC-style throttle instead.
    #[must_use]
    pub fn throttle(mut self, throttle: RetryThrottle) -> Self {
        self.spend = Some(Spend::Throttle(throttle));
        self
    }

    /// No budget: every request slower than the delay is hedged.
    #[must_use]
    pub fn unlimited(mut self) -> Self {
        self.spend = Some(Spend::Unlimited);
        self
    }

    /// The clock for latencies (read twice per request in percentile mode, never with a fixed
    /// delay) and the default budget. Default [`Clock::default`] (and the coarse clock for the
    /// default budget).
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The instance name for metrics and traces. Default `"hedge"`.
    #[must_use]
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `delay`, `initial_delay` (zero), `percentile` (not strictly
    /// between 0 and 100), `window` (zero) or `max_hedges` (0 or above 10).
    pub fn build(self) -> Result<HedgePolicy<C, Q>, ConfigError> {
        if let Some(delay) = self.fixed {
            check_nonzero_duration("delay", delay)?;
        }
        check_nonzero_duration("initial_delay", self.initial_delay)?;
        if !(self.percentile > 0.0 && self.percentile < 100.0) {
            return Err(ConfigError::new(
                "percentile",
                format!(
                    "must be between 0 and 100 (exclusive), got {}",
                    self.percentile
                ),
            ));
        }
        if self.window == 0 {
            return Err(ConfigError::new("window", "must be at least 1 sample"));
        }
        if !(1..=10).contains(&self.max_hedges) {
            return Err(ConfigError::new(
                "max_hedges",
                format!("must be between 1 and 10, got {}", self.max_hedges),
            ));
        }
        let spend = match self.spend {
            Some(spend) => spend,
            None => {
                let mut budget = RetryBudget::builder();
                if let Some(clock) = &self.clock {
                    budget = budget.clock(clock.clone());
                }
                Spend::Budget(budget.build()?)
            }
        };
        let name = self.name.unwrap_or_else(|| Arc::from("hedge"));
        let events = EventBus::new();
        palisade_core::subscribe_feature_listeners!(events, "hedge", name);
        Ok(HedgePolicy {
            shared: Arc::new(HedgeShared {
                fixed: self.fixed,
                initial_delay: self.initial_delay,
                histogram: self
                    .fixed
                    .is_none()
                    .then(|| LatencyHistogram::new(self.percentile, self.window, self.min_samples)),
                max_hedges: self.max_hedges,
                classify: self.classify,
                requests: self.requests,
                spend,
                deposits: self.deposits,
                clock: self.clock.unwrap_or_default(),
                events,
                name,
            }),
        })
    }
}

/// Applies a [`HedgePolicy`] to services.
pub struct HedgeLayer<C = ErrorIsFailure, Q = CloneAll> {
    shared: Arc<HedgeShared<C, Q>>,
}

impl<C, Q> Clone for HedgeLayer<C, Q> {
    fn clone(&self) -> Self {
        HedgeLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C, Q> fmt::Debug for HedgeLayer<C, Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeLayer")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl<S, C, Q> Layer<S> for HedgeLayer<C, Q> {
    type Service = Hedge<S, C, Q>;

    fn layer(&self, inner: S) -> Self::Service {
        Hedge {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Sends hedged copies of slow requests to the inner service; see the [module docs](self).
///
/// # Errors
///
/// When every copy failed, the error (boxed) of the last one to fail.
pub struct Hedge<S, C = ErrorIsFailure, Q = CloneAll> {
    inner: S,
    shared: Arc<HedgeShared<C, Q>>,
}

impl<S, C, Q> Hedge<S, C, Q> {
    /// Wraps `inner` with `policy`.
    #[must_use]
    pub fn new(inner: S, policy: &HedgePolicy<C, Q>) -> Self {
        policy.layer().layer(inner)
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

impl<S: Clone, C, Q> Clone for Hedge<S, C, Q> {
    fn clone(&self) -> Self {
        Hedge {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, C, Q> fmt::Debug for Hedge<S, C, Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedge")
            .field("inner", &self.inner)
            .field("policy", &self.shared.name)
            .finish()
    }
}

impl<S, C, Q, Req> Service<Req> for Hedge<S, C, Q>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
    Q: RetryRequest<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = HedgeFuture<S, Req, C, Q>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    /// # Panics
    ///
    /// Outside a tokio runtime, when the request may be hedged (the hedge timer is tokio's).
    fn call(&mut self, request: Req) -> Self::Future {
        let shared = &self.shared;
        if shared.deposits {
            shared.spend.on_request();
        }
        let copy = shared.requests.clone_request(&request);
        let start = shared.start();
        let service = self.inner.clone();
        let future = self.inner.call(request);
        HedgeFuture::new(future, start, service, copy, Arc::clone(shared))
    }
}
