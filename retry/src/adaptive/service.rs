//! [`AdaptiveThrottleService`]: the service behind an adaptive throttle.

use super::adaptive_throttle::{AdaptiveThrottle, Shared};
use super::future::ResponseFuture;
use crate::backoff::SplitMix64;
use crate::events::AdaptiveThrottleEvent;
use palisade_core::BoxError;
use palisade_core::classify::{Classify, ErrorIsFailure};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// A service behind an [`AdaptiveThrottle`].
///
/// Every call counts as a request when it is made; the answer counts as an accept when the
/// classifier does not call it a failure.
///
/// # Errors
///
/// [`Throttled`](crate::Throttled) when rejected locally (a core local rejection); otherwise
/// the inner service's error, boxed.
pub struct AdaptiveThrottleService<S, C = ErrorIsFailure> {
    inner: S,
    rng: SplitMix64,
    shared: Arc<Shared<C>>,
}

impl<S, C> AdaptiveThrottleService<S, C> {
    /// Wraps `inner` with `throttle`.
    #[must_use]
    pub fn new(inner: S, throttle: &AdaptiveThrottle<C>) -> Self {
        AdaptiveThrottleService::from_shared(inner, Arc::clone(&throttle.shared))
    }

    pub(crate) fn from_shared(inner: S, shared: Arc<Shared<C>>) -> Self {
        AdaptiveThrottleService {
            inner,
            rng: shared.rng(),
            shared,
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

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, C> Clone for AdaptiveThrottleService<S, C> {
    /// The clone draws its own random stream.
    fn clone(&self) -> Self {
        AdaptiveThrottleService {
            inner: self.inner.clone(),
            rng: self.shared.rng(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for AdaptiveThrottleService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveThrottleService")
            .field("inner", &self.inner)
            .field("throttle", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Service<Req> for AdaptiveThrottleService<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let shared = &self.shared;
        let now = shared.clock.now();
        let p = shared.window.reject_probability(now);
        // Counted now, whether it is rejected, answered, or never completes.
        shared.window.record_request(now);
        if p > 0.0 && self.rng.next_f64() < p {
            shared
                .events
                .emit_call_with(|| AdaptiveThrottleEvent::Throttled { probability: p });
            return ResponseFuture::rejected();
        }
        ResponseFuture::called(self.inner.call(request), Arc::clone(shared))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::super::AdaptiveThrottle;
    use crate::error::Throttled;
    use palisade_core::clock::Clock;
    use palisade_core::sync::atomic::{AtomicU64, Ordering};
    use palisade_core::test_util::{MockBackend, Script, Step};
    use std::sync::Arc;
    use std::time::Duration;
    use tower::{Layer, ServiceExt};

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

    /// Regression (issue 9): the throttle counted only completed requests, so after 1 000
    /// requests that timed out it counted (0, 0) and never engaged against a hanging backend.
    /// Requests now count when sent.
    #[tokio::test(start_paused = true)]
    async fn requests_that_never_complete_engage_the_throttle() {
        let throttle = AdaptiveThrottle::builder()
            .clock(Clock::tokio())
            .seed(9)
            .build()
            .unwrap();
        let hanging = tower::service_fn(|()| std::future::pending::<Result<(), std::io::Error>>());
        let svc = throttle.layer().layer(hanging);
        let mut throttled = 0;
        for _ in 0..1000 {
            match tokio::time::timeout(Duration::from_millis(10), svc.clone().oneshot(())).await {
                Ok(Err(e)) if e.is::<Throttled>() => throttled += 1,
                Ok(other) => panic!("a hanging backend answered: {other:?}"),
                Err(_elapsed) => {}
            }
        }
        let snap = throttle.snapshot();
        assert_eq!(
            snap.requests, 1000,
            "every request counted, completed or not"
        );
        assert_eq!(snap.accepts, 0);
        assert!(snap.reject_probability > 0.99, "{snap:?}");
        assert!(
            throttled > 900,
            "the throttle engaged: {throttled} of 1000 rejected locally"
        );
    }
}
