//! The mock backend service, its future and its counters.

use super::script::{Action, CallContext, Script, Step};
use pin_project::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;
use tower_service::Service;

/// A scripted stand-in for a dependency. See the [module docs](super).
///
/// Clones share one script and one set of counters, so a test keeps a clone to read
/// [`stats`](MockBackend::stats) after handing another to the layer under test.
///
/// Create it inside the tokio runtime of the test: its outage intervals are measured from its
/// creation in tokio time.
#[derive(Clone)]
pub struct MockBackend {
    shared: Arc<Shared>,
}

struct Shared {
    script: Script,
    start: tokio::time::Instant,
    outages: Vec<(Duration, Duration)>,
    down: AtomicBool,
    calls: AtomicU64,
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    down_rejections: AtomicU64,
    cancelled: AtomicU64,
    panicked: AtomicU64,
}

/// What reached the backend, as counted at the moment of [`MockBackend::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Calls received (`Service::call` invoked), whatever became of them.
    pub calls: u64,
    /// Response futures alive now: received and not yet answered, failed, panicked or dropped.
    pub in_flight: u64,
    /// The most calls ever in flight at once.
    pub peak_in_flight: u64,
    /// Calls answered with `Ok`.
    pub succeeded: u64,
    /// Calls answered with `Err`, those refused while down included.
    pub failed: u64,
    /// Calls refused because the backend was down (also counted in `failed`).
    pub down: u64,
    /// Calls whose future was dropped before it finished.
    pub cancelled: u64,
    /// Calls that panicked, in `call` or when polled.
    pub panicked: u64,
}

impl BackendStats {
    /// Calls that have finished one way or another.
    #[must_use]
    pub fn finished(&self) -> u64 {
        self.succeeded + self.failed + self.cancelled + self.panicked
    }
}

/// The successful answer of the mock backend: the request back, and which call it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply<Req> {
    /// The request, unchanged.
    pub request: Req,
    /// 0-based index of the call among all calls the backend received.
    pub call: u64,
}

/// Why a mock call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MockErrorKind {
    /// The script said to fail.
    Failed,
    /// The backend was down (an outage interval, or [`MockBackend::set_down`]).
    Down,
}

/// The error of a failed mock call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MockError {
    /// Why it failed.
    pub kind: MockErrorKind,
    /// 0-based index of the call.
    pub call: u64,
}

impl fmt::Display for MockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            MockErrorKind::Failed => write!(f, "mock backend failed call {}", self.call),
            MockErrorKind::Down => write!(f, "mock backend is down (call {})", self.call),
        }
    }
}

impl std::error::Error for MockError {}

impl MockBackend {
    /// A backend that follows `script`, up from now.
    #[must_use]
    pub fn new(script: Script) -> MockBackend {
        MockBackend {
            shared: Arc::new(Shared {
                script,
                start: tokio::time::Instant::now(),
                outages: Vec::new(),
                down: AtomicBool::new(false),
                calls: AtomicU64::new(0),
                in_flight: AtomicU64::new(0),
                peak_in_flight: AtomicU64::new(0),
                succeeded: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                down_rejections: AtomicU64::new(0),
                cancelled: AtomicU64::new(0),
                panicked: AtomicU64::new(0),
            }),
        }
    }

    /// A backend whose every call succeeds at once.
    #[must_use]
    pub fn healthy() -> MockBackend {
        MockBackend::new(Script::always(Step::ok()))
    }

    /// Adds an outage: from `from` to `until` after creation (tokio time, half-open interval),
    /// every call fails at once with [`MockErrorKind::Down`]; afterwards the script resumes.
    ///
    /// # Panics
    ///
    /// If called on a backend that has already been cloned (add outages while building it).
    #[must_use]
    pub fn with_outage(mut self, from: Duration, until: Duration) -> MockBackend {
        Arc::get_mut(&mut self.shared)
            .expect("add outages before cloning the backend")
            .outages
            .push((from, until));
        self
    }

    /// Takes the backend down (`true`) or brings it back (`false`) by hand.
    pub fn set_down(&self, down: bool) {
        // Relaxed: the flag carries no other data; tests read it on the calling task.
        self.shared.down.store(down, Ordering::Relaxed);
    }

    /// Whether a call arriving now would find the backend down.
    #[must_use]
    pub fn is_down(&self) -> bool {
        // Relaxed: see `set_down`.
        if self.shared.down.load(Ordering::Relaxed) {
            return true;
        }
        let elapsed = self.shared.start.elapsed();
        self.shared
            .outages
            .iter()
            .any(|&(from, until)| from <= elapsed && elapsed < until)
    }

    /// The counters now. Every counter is exact: each is a single atomic RMW per event.
    #[must_use]
    pub fn stats(&self) -> BackendStats {
        // Relaxed everywhere: statistics, read after the calls they count have been awaited on
        // the reading task (or a join), which orders them.
        let s = &self.shared;
        BackendStats {
            calls: s.calls.load(Ordering::Relaxed),
            in_flight: s.in_flight.load(Ordering::Relaxed),
            peak_in_flight: s.peak_in_flight.load(Ordering::Relaxed),
            succeeded: s.succeeded.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            down: s.down_rejections.load(Ordering::Relaxed),
            cancelled: s.cancelled.load(Ordering::Relaxed),
            panicked: s.panicked.load(Ordering::Relaxed),
        }
    }

    /// Sets the peak of in-flight calls back to the current number in flight.
    pub fn reset_peak(&self) {
        // Relaxed: statistics.
        let now = self.shared.in_flight.load(Ordering::Relaxed);
        self.shared.peak_in_flight.store(now, Ordering::Relaxed);
    }
}

impl fmt::Debug for MockBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockBackend")
            .field("script", &self.shared.script)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<Req> Service<Req> for MockBackend {
    type Response = Reply<Req>;
    type Error = MockError;
    type Future = MockFuture<Req>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let s = &self.shared;
        // Relaxed: the index only needs to be unique and dense; the RMW guarantees both.
        let index = s.calls.fetch_add(1, Ordering::Relaxed);
        let down = self.is_down();
        let step = if down {
            // Relaxed: statistic.
            s.down_rejections.fetch_add(1, Ordering::Relaxed);
            Step::fail()
        } else {
            // Relaxed: statistic (the count including this call).
            let in_flight = s.in_flight.load(Ordering::Relaxed) + 1;
            s.script.next_step(&CallContext {
                index,
                in_flight,
                elapsed: s.start.elapsed(),
            })
        };
        if step.action == Action::PanicInCall {
            // Relaxed: statistic.
            s.panicked.fetch_add(1, Ordering::Relaxed);
            panic!("mock backend: scripted panic in call {index}");
        }
        // Relaxed: exact counts come from the RMWs themselves; no other data hangs on them.
        let now = s.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        s.peak_in_flight.fetch_max(now, Ordering::Relaxed);
        MockFuture {
            delay: (!step.latency.is_zero()).then(|| tokio::time::sleep(step.latency)),
            request: Some(request),
            action: step.action,
            kind: if down {
                MockErrorKind::Down
            } else {
                MockErrorKind::Failed
            },
            call: index,
            guard: CallGuard {
                shared: Arc::clone(s),
                finished: false,
            },
        }
    }
}

/// Counts a call out of flight when its future goes away, as cancelled unless it finished.
struct CallGuard {
    shared: Arc<Shared>,
    finished: bool,
}

impl CallGuard {
    fn finish(&mut self, counter: fn(&Shared) -> &AtomicU64) {
        self.finished = true;
        // Relaxed: statistic.
        counter(&self.shared).fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        // Relaxed: statistics.
        self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        if !self.finished {
            self.shared.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The response future of [`MockBackend`].
#[pin_project]
pub struct MockFuture<Req> {
    #[pin]
    delay: Option<Sleep>,
    request: Option<Req>,
    action: Action,
    kind: MockErrorKind,
    call: u64,
    guard: CallGuard,
}

impl<Req> Future for MockFuture<Req> {
    type Output = Result<Reply<Req>, MockError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(delay) = this.delay.as_mut().as_pin_mut() {
            if delay.poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.delay.set(None);
        }
        assert!(!this.guard.finished, "MockFuture polled after completion");
        let call = *this.call;
        match this.action {
            Action::Succeed => {
                this.guard.finish(|s| &s.succeeded);
                let request = this
                    .request
                    .take()
                    .expect("request present until completion");
                Poll::Ready(Ok(Reply { request, call }))
            }
            Action::Fail => {
                this.guard.finish(|s| &s.failed);
                Poll::Ready(Err(MockError {
                    kind: *this.kind,
                    call,
                }))
            }
            // Never woken: the call ends when its future is dropped.
            Action::Hang => Poll::Pending,
            Action::Panic | Action::PanicInCall => {
                this.guard.finish(|s| &s.panicked);
                panic!("mock backend: scripted panic in call {call}");
            }
        }
    }
}

impl<Req> fmt::Debug for MockFuture<Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockFuture")
            .field("call", &self.call)
            .field("action", &self.action)
            .field("sleeping", &self.delay.is_some())
            .finish()
    }
}
