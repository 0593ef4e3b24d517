//! The [`Fallback`] handle and its shared state.

use super::config::FallbackBuilder;
use super::events::FallbackEvent;
use super::layer::FallbackLayer;
use palisade_core::events::{EventBus, Listener, ListenerId};
use palisade_core::{BoxError, ErrorIsFailure};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The function a [`Fallback`] calls: it gets the primary call's result (the failed response,
/// the error or the local rejection) and answers instead. Implemented by every
/// `Fn(Result<Res, BoxError>) -> impl Future<Output = Result<Res, BoxError>>`; for a
/// synchronous answer return `std::future::ready(..)`.
pub trait FallbackFn<Res>: Send + Sync {
    /// The fallback's future.
    type Future: Future<Output = Result<Res, BoxError>>;

    /// The answer to give instead of `primary`.
    fn fallback(&self, primary: Result<Res, BoxError>) -> Self::Future;
}

impl<Res, F, Fut> FallbackFn<Res> for F
where
    F: Fn(Result<Res, BoxError>) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Res, BoxError>>,
{
    type Future = Fut;

    #[inline]
    fn fallback(&self, primary: Result<Res, BoxError>) -> Fut {
        self(primary)
    }
}

/// The state every clone of a [`Fallback`] and of its services shares.
pub(crate) struct Shared<F, C> {
    pub(crate) fallback: F,
    pub(crate) classify: C,
    pub(crate) on_local_rejection: bool,
    pub(crate) max_concurrent: usize,
    /// Fallbacks running now, at most `max_concurrent`.
    in_flight: AtomicUsize,
    calls: AtomicU64,
    fallbacks: AtomicU64,
    fallback_failures: AtomicU64,
    fallback_rejections: AtomicU64,
    pub(crate) events: EventBus<FallbackEvent>,
    pub(crate) name: Arc<str>,
}

impl<F, C> Shared<F, C> {
    pub(crate) fn new(
        fallback: F,
        classify: C,
        on_local_rejection: bool,
        max_concurrent: usize,
        name: Arc<str>,
        events: EventBus<FallbackEvent>,
    ) -> Self {
        Shared {
            fallback,
            classify,
            on_local_rejection,
            max_concurrent,
            in_flight: AtomicUsize::new(0),
            calls: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            fallback_failures: AtomicU64::new(0),
            fallback_rejections: AtomicU64::new(0),
            events,
            name,
        }
    }

    /// Counts a finished primary call.
    pub(crate) fn count_call(&self) {
        // Relaxed: a statistic, read only by `snapshot()`, ordered with nothing.
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a fallback that was due but had no slot.
    pub(crate) fn count_rejection(&self) {
        // Relaxed: a statistic, read only by `snapshot()`.
        self.fallback_rejections.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a finished fallback.
    pub(crate) fn count_fallback(&self, succeeded: bool) {
        // Relaxed: statistics, read only by `snapshot()`.
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        if !succeeded {
            self.fallback_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        // Relaxed: a reading for metrics and snapshots; admission uses the CAS in
        // `try_acquire`, not this load.
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// One fallback slot, given back on drop (completion, failure, cancellation, panic).
pub(crate) struct Permit<F, C> {
    shared: Arc<Shared<F, C>>,
}

impl<F, C> Permit<F, C> {
    /// A slot when fewer than `max_concurrent` fallbacks run, else `None`.
    pub(crate) fn try_acquire(shared: &Arc<Shared<F, C>>) -> Option<Permit<F, C>> {
        // Relaxed on both sides: the counter guards no other memory (each fallback owns its
        // own future); the CAS alone keeps the count at most `max_concurrent`, since every
        // increment is checked against the value it replaces.
        shared
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < shared.max_concurrent).then_some(n + 1)
            })
            .ok()
            .map(|_| Permit {
                shared: Arc::clone(shared),
            })
    }
}

impl<F, C> Drop for Permit<F, C> {
    fn drop(&mut self) {
        // Relaxed: see `try_acquire`; the slot protects no data.
        self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A fallback: when a call fails (by its classifier), times out, or is refused by a Palisade
/// layer below, answer with the fallback function's response instead (Hystrix's
/// `getFallback`). Fallbacks run at most [`max_concurrent`](FallbackBuilder::max_concurrent)
/// at a time (Hystrix's `fallback.isolation.semaphore.maxConcurrentRequests`, default 10).
///
/// A handle: `Clone`, every clone and every layer made from it share one state. See the
/// [module docs](super) for the behaviour and an example.
///
/// # Memory ordering
///
/// The fallback slot count is one atomic counter admitted by a CAS (`Relaxed`: it guards no
/// other data); the statistics of [`snapshot`](Fallback::snapshot) are `Relaxed` counters.
pub struct Fallback<F, C = ErrorIsFailure> {
    pub(crate) shared: Arc<Shared<F, C>>,
}

impl<F> Fallback<F> {
    /// A builder for a fallback answering with `fallback`.
    #[must_use]
    pub fn builder(fallback: F) -> FallbackBuilder<F> {
        FallbackBuilder::new(fallback)
    }
}

impl<F, C> Fallback<F, C> {
    /// A layer that puts this fallback in a stack.
    #[must_use]
    pub fn layer(&self) -> FallbackLayer<F, C> {
        FallbackLayer::new(Arc::clone(&self.shared))
    }

    /// The instance name (metrics, traces). Default `"fallback"`.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Subscribes `listener` to this fallback's events.
    pub fn subscribe<L: Listener<FallbackEvent>>(&self, listener: L) -> ListenerId {
        self.shared.events.subscribe(listener)
    }

    /// Removes a listener; `false` if it was not subscribed.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        self.shared.events.unsubscribe(id)
    }

    /// The current counters.
    #[must_use]
    pub fn snapshot(&self) -> FallbackSnapshot {
        let s = &self.shared;
        // Relaxed: statistics; the fields may be a few calls apart from each other.
        FallbackSnapshot {
            max_concurrent: s.max_concurrent,
            in_flight: s.in_flight(),
            calls: s.calls.load(Ordering::Relaxed),
            fallbacks: s.fallbacks.load(Ordering::Relaxed),
            fallback_failures: s.fallback_failures.load(Ordering::Relaxed),
            fallback_rejections: s.fallback_rejections.load(Ordering::Relaxed),
        }
    }
}

impl<F, C> Clone for Fallback<F, C> {
    fn clone(&self) -> Self {
        Fallback {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<F, C> fmt::Debug for Fallback<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("name", &self.shared.name)
            .field("max_concurrent", &self.shared.max_concurrent)
            .field("on_local_rejection", &self.shared.on_local_rejection)
            .finish_non_exhaustive()
    }
}

/// A reading of a [`Fallback`]'s counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FallbackSnapshot {
    /// The cap on concurrent fallbacks.
    pub max_concurrent: usize,
    /// Fallbacks running now.
    pub in_flight: usize,
    /// Primary calls finished.
    pub calls: u64,
    /// Fallbacks finished (succeeded or failed).
    pub fallbacks: u64,
    /// Fallbacks that failed.
    pub fallback_failures: u64,
    /// Fallbacks due but refused for want of a slot.
    pub fallback_rejections: u64,
}
