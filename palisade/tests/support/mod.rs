//! Shared helpers of the whole-stack test binaries (`tower_compat`, `stack_props`,
//! `regressions`): a readiness probe, a seeded RNG for tower's balancer, and ways to name what
//! an error is.

#![allow(
    dead_code,
    reason = "each test binary includes this module and uses a different part of it"
)]

use palisade_core::BoxError;
use palisade_core::rejection::RejectionKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use tower::Service;

/// Counts what the layer below answered from `poll_ready`, to check tower's readiness
/// contract: `poll_ready` errors only when a service is broken for good.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReadyCounts {
    inner: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    ready_err: AtomicU64,
    ready_ok: AtomicU64,
    pending: AtomicU64,
}

impl ReadyCounts {
    /// `poll_ready` calls that returned `Ready(Err(_))`.
    pub(crate) fn errors(&self) -> u64 {
        // Relaxed: a statistic, read on the test task after the calls it counts were awaited.
        self.inner.ready_err.load(Ordering::Relaxed)
    }

    /// `poll_ready` calls that returned `Ready(Ok(()))`.
    pub(crate) fn ready(&self) -> u64 {
        // Relaxed: as in `errors`.
        self.inner.ready_ok.load(Ordering::Relaxed)
    }

    /// `poll_ready` calls that returned `Pending`.
    pub(crate) fn pending(&self) -> u64 {
        // Relaxed: as in `errors`.
        self.inner.pending.load(Ordering::Relaxed)
    }
}

/// A transparent wrapper that records every `poll_ready` answer of `S` in a [`ReadyCounts`].
#[derive(Clone, Debug)]
pub(crate) struct ReadyProbe<S> {
    inner: S,
    counts: ReadyCounts,
}

impl<S> ReadyProbe<S> {
    pub(crate) fn new(inner: S, counts: &ReadyCounts) -> Self {
        ReadyProbe {
            inner,
            counts: counts.clone(),
        }
    }
}

impl<S, Req> Service<Req> for ReadyProbe<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let answer = self.inner.poll_ready(cx);
        let counter = match &answer {
            Poll::Ready(Ok(())) => &self.counts.inner.ready_ok,
            Poll::Ready(Err(_)) => &self.counts.inner.ready_err,
            Poll::Pending => &self.counts.inner.pending,
        };
        // Relaxed: a statistic (see `ReadyCounts::errors`).
        counter.fetch_add(1, Ordering::Relaxed);
        answer
    }

    fn call(&mut self, request: Req) -> Self::Future {
        self.inner.call(request)
    }
}

/// SplitMix64, seeded: the random numbers of tower's p2c balancer, so a test picks the same
/// endpoints every run.
#[derive(Clone, Debug)]
pub(crate) struct SeededRng(u64);

impl SeededRng {
    pub(crate) fn new(seed: u64) -> Self {
        SeededRng(seed)
    }
}

impl tower::util::rng::Rng for SeededRng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The local rejection `err` is or wraps, if any.
pub(crate) fn rejection_kind(err: &BoxError) -> Option<RejectionKind> {
    palisade_core::rejection(&**err).map(|r| r.kind())
}

/// `true` when `err` says a `Buffer` worker died or closed (tower's `ServiceError`/`Closed`):
/// what a layer that errors from `poll_ready` does to every later call under a `Buffer`.
pub(crate) fn is_buffer_failure(err: &BoxError) -> bool {
    err.is::<tower::buffer::error::ServiceError>() || err.is::<tower::buffer::error::Closed>()
}

/// The whole chain of `err`, for assertion messages.
pub(crate) fn describe(err: &BoxError) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(" <- ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// Sends `n` requests `0..n` through clones of `svc` concurrently (one task each) and returns
/// the answers in request order.
pub(crate) async fn burst<S, Resp>(svc: &S, n: u32) -> Vec<Result<Resp, BoxError>>
where
    S: Service<u32, Response = Resp, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    Resp: Send + 'static,
{
    use tower::ServiceExt;
    let tasks: Vec<_> = (0..n)
        .map(|i| tokio::spawn(svc.clone().oneshot(i)))
        .collect();
    let mut answers = Vec::with_capacity(tasks.len());
    for task in tasks {
        answers.push(task.await.expect("a burst call panicked"));
    }
    answers
}

/// Drives `n` requests through one service that is not `Clone` (tower's `Balance`): waits
/// for readiness, calls, and spawns the response future, so the calls run at once as they
/// would for `n` callers; returns the answers in request order.
pub(crate) async fn fire<S, Resp>(svc: &mut S, n: u32) -> Vec<Result<Resp, BoxError>>
where
    S: Service<u32, Response = Resp>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    Resp: Send + 'static,
{
    use tower::ServiceExt;
    let mut tasks = Vec::new();
    for i in 0..n {
        match svc.ready().await {
            Ok(ready) => {
                let future = ready.call(i);
                tasks.push(tokio::spawn(
                    async move { future.await.map_err(Into::into) },
                ));
            }
            Err(e) => {
                let e: BoxError = e.into();
                tasks.push(tokio::spawn(async move { Err(e) }));
            }
        }
    }
    let mut answers = Vec::with_capacity(tasks.len());
    for task in tasks {
        answers.push(task.await.expect("a call panicked"));
    }
    answers
}
