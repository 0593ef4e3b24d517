//! Shared test support: a reference token bucket, written the plain way (a level and a last
//! update time, in exact integer arithmetic), to check the GCRA limiter against.

#![allow(
    dead_code,
    unused_imports,
    unreachable_pub,
    reason = "each test binary uses part of the support"
)]

/// A token bucket of `burst` tokens gaining one token every `interval` ns. The level is kept
/// in nanoseconds of credit (tokens · interval) so every operation is exact.
#[derive(Clone, Debug)]
pub struct ModelBucket {
    interval: u128,
    burst: u128,
    level: u128,
    last: u128,
}

impl ModelBucket {
    pub fn new(interval_ns: u64, burst: u32) -> Self {
        let (interval, burst) = (u128::from(interval_ns), u128::from(burst));
        ModelBucket {
            interval,
            burst,
            level: interval * burst,
            last: 0,
        }
    }

    fn refill(&mut self, now: u64) {
        let now = u128::from(now);
        assert!(now >= self.last, "the model's time goes forward");
        self.level = (self.level + (now - self.last)).min(self.interval * self.burst);
        self.last = now;
    }

    /// Takes `cost` tokens at `now` if the bucket holds them.
    pub fn try_take(&mut self, now: u64, cost: u32) -> bool {
        self.refill(now);
        let need = u128::from(cost) * self.interval;
        if u128::from(cost) <= self.burst && self.level >= need {
            self.level -= need;
            true
        } else {
            false
        }
    }

    /// Whole tokens in the bucket at `now`.
    pub fn tokens(&mut self, now: u64) -> u32 {
        self.refill(now);
        u32::try_from(self.level / self.interval).unwrap()
    }

    /// Whether the bucket is full at `now` (an idle key).
    pub fn is_full(&mut self, now: u64) -> bool {
        self.refill(now);
        self.level == self.interval * self.burst
    }
}

pub use palisade_core::test_util::{Echo, call_now};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

/// A service whose readiness is switched from outside (a full bulkhead below, a connection
/// not yet up): `Pending` while closed, waking the last poller when opened. Counts calls.
#[derive(Clone, Debug, Default)]
pub struct Gate {
    open: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    waker: Arc<std::sync::Mutex<Option<Waker>>>,
}

impl Gate {
    pub fn set_open(&self, open: bool) {
        // SeqCst: test code, simplest to reason about.
        self.open.store(open, Ordering::SeqCst);
        let waker = if open {
            self.waker.lock().unwrap().take()
        } else {
            None
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    pub fn calls(&self) -> u64 {
        // SeqCst: test code.
        self.calls.load(Ordering::SeqCst)
    }
}

impl<Req: Send + 'static> tower::Service<Req> for Gate {
    type Response = Req;
    type Error = tower::BoxError;
    type Future = std::future::Ready<Result<Req, tower::BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), tower::BoxError>> {
        // SeqCst: test code.
        if self.open.load(Ordering::SeqCst) {
            Poll::Ready(Ok(()))
        } else {
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        // SeqCst: test code.
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(req))
    }
}

/// A layer below that rejects every call locally (as a full bulkhead in reject mode does):
/// its error carries a core `Rejection`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RejectsLocally;

impl<Req> tower::Service<Req> for RejectsLocally {
    type Response = Req;
    type Error = tower::BoxError;
    type Future = std::future::Ready<Result<Req, tower::BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), tower::BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Req) -> Self::Future {
        use palisade_core::rejection::{Rejection, RejectionKind};
        std::future::ready(Err(Box::new(Rejection::new(RejectionKind::BulkheadFull))))
    }
}
