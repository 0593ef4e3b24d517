//! Issue 9 §1/§3: local rejections do not poison an adaptive limit. An instant local
//! rejection from a layer below (an open breaker, a rate limiter, another bulkhead) never
//! reached the dependency: the default classifier calls it `Ignore`, and an `Ignore` is
//! neither an RTT sample nor a drop.

#![cfg(not(loom))]

use palisade_bulkhead::adaptive::{AdaptiveConfig, Aimd, Gradient2, LimitAlgorithm, Vegas};
use palisade_bulkhead::{Bulkhead, BulkheadFull};
use palisade_core::clock::Clock;
use palisade_core::rejection::{Rejection, RejectionKind};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{BoxError, Layer, Service, ServiceExt};

/// Answers every call at once with an error: a core `Rejection` (what an open breaker or a
/// rate limiter below returns, wrapped in its own type), or a remote failure.
#[derive(Clone, Copy, Debug)]
struct Instant(Option<RejectionKind>);

impl Service<u32> for Instant {
    type Response = u32;
    type Error = BoxError;
    type Future = std::future::Ready<Result<u32, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: u32) -> Self::Future {
        std::future::ready(Err(match self.0 {
            Some(kind) => Box::new(Rejection::new(kind)),
            None => "connection reset".into(),
        }))
    }
}

fn adaptive(algorithm: impl LimitAlgorithm) -> Bulkhead {
    Bulkhead::builder()
        .adaptive(algorithm)
        .adaptive_config(AdaptiveConfig::new().min_samples(1))
        .clock(Clock::tokio())
        .build()
        .unwrap()
}

const ALGORITHMS: [&str; 3] = ["aimd", "gradient2", "vegas"];

/// A fresh algorithm starting at 50, free to go down to 1.
fn algorithm(name: &str) -> Box<dyn LimitAlgorithm> {
    match name {
        "aimd" => Box::new(
            Aimd::builder()
                .initial_limit(50)
                .min_limit(1)
                .build()
                .unwrap(),
        ),
        "gradient2" => Box::new(
            Gradient2::builder()
                .initial_limit(50)
                .min_limit(1)
                .build()
                .unwrap(),
        ),
        _ => Box::new(
            Vegas::builder()
                .initial_limit(50)
                .min_limit(1)
                .build()
                .unwrap(),
        ),
    }
}

/// Drives `calls` calls one after another, 1 ms of virtual time apart (so a window could
/// close after every call), and returns the lowest and highest limit seen after each.
async fn drive<S>(bulkhead: &Bulkhead, mut svc: S, calls: u32) -> (usize, usize)
where
    S: Service<u32, Error = BoxError>,
{
    let (mut low, mut high) = (bulkhead.limit(), bulkhead.limit());
    for i in 0..calls {
        let result = svc.ready().await.unwrap().call(i).await;
        assert!(result.is_err());
        tokio::time::advance(Duration::from_millis(1)).await;
        low = low.min(bulkhead.limit());
        high = high.max(bulkhead.limit());
    }
    assert_eq!(bulkhead.in_flight(), 0);
    (low, high)
}

/// Regression (issue 9): instant local rejections were fed to the algorithm as RTT samples
/// (and, by the old default classifier, as drops): 1 000 of them moved every algorithm.
#[tokio::test(start_paused = true)]
async fn a_thousand_instant_local_rejections_do_not_move_any_limit() {
    for name in ALGORITHMS {
        for kind in [
            RejectionKind::CircuitOpen,
            RejectionKind::RateLimited,
            RejectionKind::BulkheadFull,
        ] {
            let bulkhead = adaptive(algorithm(name));
            let svc = bulkhead.layer().layer(Instant(Some(kind)));
            let seen = drive(&bulkhead, svc, 1000).await;
            assert_eq!(seen, (50, 50), "{name} moved on {kind} rejections");
        }
        // A full bulkhead below (the real `BulkheadFull`, through its source chain).
        let below = Bulkhead::builder().max_concurrent_calls(1).build().unwrap();
        below.set_limit(0);
        let bulkhead = adaptive(algorithm(name));
        let svc = bulkhead.layer().layer(below.layer().layer(Instant(None)));
        let mut probe = below.layer().layer(Instant(None));
        let err = probe.ready().await.unwrap().call(0).await.unwrap_err();
        assert!(err.is::<BulkheadFull>());
        let seen = drive(&bulkhead, svc, 1000).await;
        assert_eq!(seen, (50, 50), "{name} moved on a full bulkhead below");
    }
}

/// The control: the same thousand calls failing remotely are drops and move the limit, so
/// the test above can fail.
#[tokio::test(start_paused = true)]
async fn remote_failures_still_move_the_limit() {
    for name in ALGORITHMS {
        let bulkhead = adaptive(algorithm(name));
        let svc = bulkhead.layer().layer(Instant(None));
        let (low, _) = drive(&bulkhead, svc, 1000).await;
        assert!(low < 50, "{name}: remote failures are samples");
    }
}
