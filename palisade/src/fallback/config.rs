//! The builder of a [`Fallback`].

use super::events::FallbackEvent;
use super::fallback::{Fallback, Shared};
use palisade_core::events::EventBus;
use palisade_core::{ConfigError, ErrorIsFailure};
use std::sync::Arc;

/// Hystrix's `fallback.isolation.semaphore.maxConcurrentRequests` default.
const DEFAULT_MAX_CONCURRENT: usize = 10;

/// Builds a [`Fallback`].
///
/// | setting | default | source |
/// | --- | --- | --- |
/// | [`classify`](Self::classify) | [`ErrorIsFailure`]: every error (a timeout's `Elapsed` too) falls back | Hystrix: failures and timeouts fall back |
/// | [`fallback_on_local_rejection`](Self::fallback_on_local_rejection) | `true`: an open breaker, a full bulkhead, a rate limit below fall back | Hystrix: short-circuited and rejected commands fall back |
/// | [`max_concurrent`](Self::max_concurrent) | 10 | Hystrix `fallback.isolation.semaphore.maxConcurrentRequests` |
/// | [`name`](Self::name) | `"fallback"` | |
#[derive(Clone, Debug)]
pub struct FallbackBuilder<F, C = ErrorIsFailure> {
    fallback: F,
    classify: C,
    on_local_rejection: bool,
    max_concurrent: usize,
    name: Option<Arc<str>>,
}

impl<F> FallbackBuilder<F> {
    pub(crate) fn new(fallback: F) -> Self {
        FallbackBuilder {
            fallback,
            classify: ErrorIsFailure,
            on_local_rejection: true,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            name: None,
        }
    }
}

impl<F, C> FallbackBuilder<F, C> {
    /// Which results fall back: those `classify` calls a
    /// [`Failure`](palisade_core::Outcome::Failure) (e.g. `palisade_http::HttpClassifier`
    /// for 5xx responses). Local rejections are decided by
    /// [`fallback_on_local_rejection`](Self::fallback_on_local_rejection), whatever the
    /// classifier says.
    #[must_use]
    pub fn classify<C2>(self, classify: C2) -> FallbackBuilder<F, C2> {
        FallbackBuilder {
            fallback: self.fallback,
            classify,
            on_local_rejection: self.on_local_rejection,
            max_concurrent: self.max_concurrent,
            name: self.name,
        }
    }

    /// Whether a local rejection from a Palisade layer below (an open breaker, a full
    /// bulkhead, a rate limit, an exhausted retry budget) falls back. Default `true`.
    #[must_use]
    pub fn fallback_on_local_rejection(mut self, yes: bool) -> Self {
        self.on_local_rejection = yes;
        self
    }

    /// At most this many fallbacks run at once; a fallback due beyond it is refused and the
    /// primary's result returned as it was. Default 10 (Hystrix).
    #[must_use]
    pub fn max_concurrent(mut self, limit: usize) -> Self {
        self.max_concurrent = limit;
        self
    }

    /// The instance name for metrics and traces. Default `"fallback"`.
    #[must_use]
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `max_concurrent` when it is 0 (no fallback could ever run).
    pub fn build(self) -> Result<Fallback<F, C>, ConfigError> {
        if self.max_concurrent == 0 {
            return Err(ConfigError::new(
                "max_concurrent",
                "must be at least 1 (no fallback could run)",
            ));
        }
        let name = self.name.unwrap_or_else(|| Arc::from("fallback"));
        let events: EventBus<FallbackEvent> = EventBus::new();
        let max = self.max_concurrent;
        let _ = max; // used only under the `metrics` feature
        palisade_core::subscribe_feature_listeners!(
            events,
            "fallback",
            name,
            move |m: &super::events::FallbackMetrics| m.max_concurrent.set(max as f64)
        );
        Ok(Fallback {
            shared: Arc::new(Shared::new(
                self.fallback,
                self.classify,
                self.on_local_rejection,
                self.max_concurrent,
                name,
                events,
            )),
        })
    }
}
