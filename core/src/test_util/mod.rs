//! Helpers for tests and simulations (feature `test-util`).
//!
//! The centre piece is [`MockBackend`]: a `tower::Service` standing in for a dependency whose
//! behaviour per call is scripted ([`Script`]): succeed, fail, answer after a latency (in
//! tokio time, so paused-time tests run instantly), hang until cancelled, panic, or be down for
//! an interval and then recover. It counts what reached it ([`BackendStats`]): calls, calls in
//! flight and their peak, outcomes, cancellations and panics, so a test can assert exactly what
//! a layer let through.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use palisade_core::test_util::{MockBackend, Script, Step};
//! use std::time::Duration;
//! use tower::{Service, ServiceExt};
//!
//! let backend = MockBackend::new(Script::sequence([
//!     Step::ok().after(Duration::from_millis(20)),
//!     Step::fail(),
//! ]));
//! let mut svc = backend.clone();
//! let reply = ServiceExt::<&str>::ready(&mut svc).await.unwrap().call("hello").await.unwrap();
//! assert_eq!(reply.request, "hello");
//! let second = ServiceExt::<&str>::ready(&mut svc).await.unwrap().call("again").await;
//! assert!(second.is_err());
//!
//! let stats = backend.stats();
//! assert_eq!((stats.calls, stats.succeeded, stats.failed), (2, 1, 1));
//! # }
//! ```

mod backend;
pub mod fleet;
mod immediate;
#[cfg(feature = "metrics")]
pub mod metrics;
mod runtime;
mod script;
#[cfg(feature = "tracing")]
pub mod trace;

#[cfg(feature = "metrics")]
pub use self::metrics::{Description, Registered, TestRecorder};
pub use backend::{BackendStats, MockBackend, MockError, MockErrorKind, MockFuture, Reply};
pub use fleet::{
    FleetError, FleetErrorKind, FleetReply, FleetStats, Phase, QueueingEndpoint, ServiceTime,
};
pub use immediate::{Echo, call_now};
pub use runtime::{
    PROPTEST_CASES_VAR, PROPTEST_DEFAULT_SEED, PROPTEST_SEED_VAR, paused_runtime, proptest_config,
    run_paused,
};
pub use script::{Action, CallContext, RandomProfile, Script, Step};
#[cfg(feature = "tracing")]
pub use trace::{CapturedEvent, TraceCapture};

#[cfg(all(test, not(loom)))]
mod tests;
