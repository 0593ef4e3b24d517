//! [`AdaptiveThrottle`]: client-side throttling (Google SRE book, "Handling Overload"): stop
//! sending what the backend would reject anyway.
//!
//! Each client tracks, over a sliding window (default 2 minutes), how many requests it tried
//! (`requests`) and how many the backend accepted (`accepts`). While the backend accepts
//! everything, `requests ≈ accepts` and nothing is throttled. When it starts rejecting, the
//! client rejects new requests itself, before they reach the network, with probability
//!
//! ```text
//! max(0, (requests − K · accepts) / (requests + 1))
//! ```
//!
//! so that it sends only about `K` times what the backend accepts. `K = 2` (the default) lets a
//! recovering backend see twice what it can currently take; lower is more aggressive. A local
//! rejection is a [`Throttled`] error, and counts as a request.
//!
//! What "accepted" means is the classifier's call: results it calls
//! [`Outcome::Failure`] were rejected (default: every error).
//!
//! # Example
//!
//! ```
//! use palisade_retry::{AdaptiveThrottle, Throttled};
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let throttle = AdaptiveThrottle::builder()
//!     .k(2.0)
//!     .window(Duration::from_secs(60))
//!     .build()?;
//! let mut svc = ServiceBuilder::new()
//!     .layer(throttle.layer())
//!     .service(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }));
//! assert_eq!(svc.ready().await?.call(1).await?, 1);
//! assert_eq!(throttle.reject_probability(), 0.0);
//! # Ok(())
//! # }
//! ```

mod window;

use self::window::ThrottleWindow;
use crate::backoff::SplitMix64;
use crate::error::Throttled;
use palisade_core::classify::{Classify, ErrorIsFailure, Outcome};
use palisade_core::clock::{Clock, duration_to_nanos};
use palisade_core::error::{ConfigError, check_nonzero_duration};
use palisade_core::rng::random_seed;
use palisade_core::sync::atomic::{AtomicU64, Ordering};
use pin_project::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tower::BoxError;
use tower_layer::Layer;
use tower_service::Service;

struct Shared<C> {
    window: ThrottleWindow,
    classify: C,
    clock: Clock,
    seed: u64,
    /// Random streams handed out to service clones.
    streams: AtomicU64,
}

impl<C> Shared<C> {
    fn rng(&self) -> SplitMix64 {
        // Relaxed: only uniqueness of the stream number matters.
        let stream = self.streams.fetch_add(1, Ordering::Relaxed);
        SplitMix64::new(self.seed ^ stream.wrapping_mul(0xd6e8_feb8_6659_fd93))
    }
}

/// A client-side adaptive throttle: a handle shared by every layer and service made from it.
pub struct AdaptiveThrottle<C = ErrorIsFailure> {
    shared: Arc<Shared<C>>,
}

impl<C> Clone for AdaptiveThrottle<C> {
    fn clone(&self) -> Self {
        AdaptiveThrottle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C> fmt::Debug for AdaptiveThrottle<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveThrottle")
            .field("reject_probability", &self.reject_probability())
            .finish_non_exhaustive()
    }
}

impl AdaptiveThrottle {
    /// A builder with the SRE book's defaults: `K = 2`, a 2-minute window.
    #[must_use]
    pub fn builder() -> AdaptiveThrottleBuilder {
        AdaptiveThrottleBuilder {
            k: 2.0,
            window: Duration::from_secs(120),
            classify: ErrorIsFailure,
            clock: None,
            seed: None,
        }
    }
}

impl<C> AdaptiveThrottle<C> {
    /// The layer that wraps services with this throttle.
    #[must_use]
    pub fn layer(&self) -> AdaptiveThrottleLayer<C> {
        AdaptiveThrottleLayer {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The probability that a request sent now is rejected locally.
    #[must_use]
    pub fn reject_probability(&self) -> f64 {
        let now = self.shared.clock.now();
        self.shared.window.reject_probability(now)
    }

    /// `(requests, accepts)` in the current window.
    #[must_use]
    pub fn counts(&self) -> (u64, u64) {
        self.shared.window.totals(self.shared.clock.now())
    }
}

/// Builds an [`AdaptiveThrottle`].
#[derive(Clone, Debug)]
pub struct AdaptiveThrottleBuilder<C = ErrorIsFailure> {
    k: f64,
    window: Duration,
    classify: C,
    clock: Option<Clock>,
    seed: Option<u64>,
}

impl<C> AdaptiveThrottleBuilder<C> {
    /// The multiplier `K` (at least 1): the client sends about `K` times what the backend
    /// accepts. Default 2.
    #[must_use]
    pub fn k(mut self, k: f64) -> Self {
        self.k = k;
        self
    }

    /// The window of history (10 buckets). Default 2 minutes.
    #[must_use]
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Which results the backend rejected: those classified as failures. Default: errors.
    #[must_use]
    pub fn classify<C2>(self, classify: C2) -> AdaptiveThrottleBuilder<C2> {
        AdaptiveThrottleBuilder {
            k: self.k,
            window: self.window,
            classify,
            clock: self.clock,
            seed: self.seed,
        }
    }

    /// The clock. Default [`Clock::coarse`] (the window is seconds to minutes).
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Seeds the random draws. Default: random.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `k` (below 1 or not finite) or `window` (below 10 ms).
    pub fn build(self) -> Result<AdaptiveThrottle<C>, ConfigError> {
        if !(self.k.is_finite() && self.k >= 1.0) {
            return Err(ConfigError::new(
                "k",
                format!("must be at least 1, got {}", self.k),
            ));
        }
        let window = check_nonzero_duration("window", self.window)?;
        if window < Duration::from_millis(10) {
            return Err(ConfigError::new("window", "must be at least 10ms"));
        }
        Ok(AdaptiveThrottle {
            shared: Arc::new(Shared {
                window: ThrottleWindow::new(duration_to_nanos(window), self.k),
                classify: self.classify,
                clock: self.clock.unwrap_or_else(Clock::coarse),
                seed: self.seed.unwrap_or_else(random_seed),
                streams: AtomicU64::new(0),
            }),
        })
    }
}

/// Applies an [`AdaptiveThrottle`] to services.
pub struct AdaptiveThrottleLayer<C = ErrorIsFailure> {
    shared: Arc<Shared<C>>,
}

impl<C> Clone for AdaptiveThrottleLayer<C> {
    fn clone(&self) -> Self {
        AdaptiveThrottleLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C> fmt::Debug for AdaptiveThrottleLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveThrottleLayer")
            .finish_non_exhaustive()
    }
}

impl<S, C> Layer<S> for AdaptiveThrottleLayer<C> {
    type Service = AdaptiveThrottled<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        AdaptiveThrottled {
            inner,
            rng: self.shared.rng(),
            shared: Arc::clone(&self.shared),
        }
    }
}

/// A service behind an [`AdaptiveThrottle`].
///
/// # Errors
///
/// [`Throttled`] when rejected locally; otherwise the inner service's error, boxed.
pub struct AdaptiveThrottled<S, C = ErrorIsFailure> {
    inner: S,
    rng: SplitMix64,
    shared: Arc<Shared<C>>,
}

impl<S, C> AdaptiveThrottled<S, C> {
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

impl<S: Clone, C> Clone for AdaptiveThrottled<S, C> {
    /// The clone draws its own random stream.
    fn clone(&self) -> Self {
        AdaptiveThrottled {
            inner: self.inner.clone(),
            rng: self.shared.rng(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for AdaptiveThrottled<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveThrottled")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Service<Req> for AdaptiveThrottled<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ThrottleFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let shared = &self.shared;
        let now = shared.clock.now();
        let p = shared.window.reject_probability(now);
        if p > 0.0 && self.rng.next_f64() < p {
            shared.window.record(now, false);
            return ThrottleFuture {
                kind: Kind::Rejected,
            };
        }
        ThrottleFuture {
            kind: Kind::Called {
                future: self.inner.call(request),
                shared: Arc::clone(shared),
            },
        }
    }
}

/// The response future of [`AdaptiveThrottled`].
///
/// # Cancel safety
///
/// A call dropped before it completes counts neither as a request nor as an accept.
#[pin_project]
pub struct ThrottleFuture<F, C> {
    #[pin]
    kind: Kind<F, C>,
}

#[pin_project(project = KindProj)]
enum Kind<F, C> {
    Rejected,
    Called {
        #[pin]
        future: F,
        shared: Arc<Shared<C>>,
    },
}

impl<F, C> fmt::Debug for ThrottleFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Rejected => "rejected",
            Kind::Called { .. } => "called",
        };
        f.debug_struct("ThrottleFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<F, C, Res, E> Future for ThrottleFuture<F, C>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    C: Classify<Res, E>,
{
    type Output = Result<Res, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Rejected => Poll::Ready(Err(Throttled.into())),
            KindProj::Called { future, shared } => {
                let result = ready!(future.poll(cx));
                let accepted = shared.classify.classify(result.as_ref()) != Outcome::Failure;
                shared.window.record(shared.clock.now(), accepted);
                Poll::Ready(result.map_err(Into::into))
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use palisade_core::test_util::{MockBackend, Script, Step};
    use tower::ServiceExt;

    #[test]
    fn config_is_validated() {
        let err = AdaptiveThrottle::builder().k(0.5).build().unwrap_err();
        assert_eq!(err.field(), "k");
        let err = AdaptiveThrottle::builder()
            .window(Duration::from_millis(1))
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "window");
    }

    #[tokio::test(start_paused = true)]
    async fn an_overloaded_backend_is_sent_about_k_times_what_it_accepts() {
        let throttle = AdaptiveThrottle::builder()
            .clock(Clock::tokio())
            .seed(6)
            .build()
            .unwrap();
        // The backend takes at most one call per 10 ms and rejects the rest; the client tries
        // one call per millisecond for 10 s: ten times the capacity.
        let last_slot = Arc::new(AtomicU64::new(u64::MAX));
        let backend = MockBackend::new(Script::from_fn(move |ctx| {
            let slot = (ctx.elapsed.as_millis() / 10) as u64;
            // Relaxed: single-threaded test state.
            if last_slot.swap(slot, Ordering::Relaxed) == slot {
                Step::fail()
            } else {
                Step::ok()
            }
        }));
        let svc = throttle.layer().layer(backend.clone());
        let (mut throttled, mut attempted) = (0u64, 0u64);
        for _ in 0..10_000 {
            attempted += 1;
            if let Err(e) = svc.clone().oneshot(()).await
                && e.is::<Throttled>()
            {
                throttled += 1;
            }
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        let stats = backend.stats();
        println!(
            "adaptive throttle (K = 2): {attempted} requests, {throttled} throttled locally, {} sent, {} accepted",
            stats.calls, stats.succeeded
        );
        assert_eq!(stats.calls + throttled, attempted);
        // Without the throttle the backend would see all 10 000 calls for about 1 000 accepts;
        // with K = 2 it sees about twice what it accepts.
        assert!(stats.succeeded >= 800, "capacity is still used");
        assert!(
            stats.calls <= 3 * stats.succeeded,
            "{} sent for {} accepted",
            stats.calls,
            stats.succeeded
        );
    }
}
