//! Breakers in a stack: local rejections of the layers below are not failures of the
//! dependency (issue 9 §1).
#![cfg(not(loom))]

use palisade_circuit_breaker::{CircuitBreaker, CircuitOpen, State};
use palisade_core::classify::Outcome;
use palisade_core::clock::Clock;
use palisade_core::rejection::{Rejection, RejectionKind, rejection};
use std::error::Error;
use std::fmt;
use std::time::Duration;
use tower::{BoxError, Layer, Service, ServiceExt, service_fn};

/// A rejection of some layer below, as a third-party layer would write one: its source is a
/// core `Rejection`.
#[derive(Debug)]
struct LimitedBelow {
    rejection: Rejection,
}

impl fmt::Display for LimitedBelow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("rate limited below")
    }
}

impl Error for LimitedBelow {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.rejection)
    }
}

fn always_limited() -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone {
    service_fn(|_: u32| async {
        Err::<u32, BoxError>(Box::new(LimitedBelow {
            rejection: Rejection::new(RejectionKind::RateLimited)
                .with_retry_after(Duration::from_millis(10)),
        }))
    })
}

fn breaker() -> CircuitBreaker {
    CircuitBreaker::builder()
        .clock(Clock::tokio())
        .count_window(10)
        .minimum_calls(5)
        .build()
        .unwrap()
}

/// Regression (issue 9: "our own rate limiter trips our own breaker"): at 100 % local
/// rejections from below, the default classifier never opens the breaker.
#[tokio::test(start_paused = true)]
async fn local_rejections_from_below_never_open_the_breaker() {
    let breaker = breaker();
    let svc = breaker.layer().layer(always_limited());
    for _ in 0..200 {
        let err = svc.clone().oneshot(1).await.unwrap_err();
        assert!(err.downcast_ref::<CircuitOpen>().is_none(), "{err}");
        assert_eq!(
            rejection(&*err).map(Rejection::kind),
            Some(RejectionKind::RateLimited)
        );
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().calls, 0, "ignored, not recorded");
}

/// A user's classifier still decides: one that counts every error trips on the same errors.
#[tokio::test(start_paused = true)]
async fn a_user_classifier_can_still_count_local_rejections() {
    let breaker = breaker();
    let every_error_fails = |result: Result<&u32, &BoxError>| match result {
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    };
    let svc = breaker
        .layer_with(every_error_fails)
        .layer(always_limited());
    for _ in 0..5 {
        svc.clone().oneshot(1).await.unwrap_err();
    }
    assert_eq!(breaker.state(), State::Open);
    let err = svc.oneshot(1).await.unwrap_err();
    let open = err
        .downcast_ref::<CircuitOpen>()
        .expect("rejected by the breaker");
    assert_eq!(open.rejection().kind(), RejectionKind::CircuitOpen);
}

/// Two breakers stacked: the outer one sees the inner one's `CircuitOpen` as a local
/// rejection and stays closed while the inner one is open.
#[tokio::test(start_paused = true)]
async fn an_open_inner_breaker_does_not_open_the_outer_one() {
    let (outer, inner) = (breaker(), breaker());
    inner.force_open();
    let backend = service_fn(|x: u32| async move { Ok::<_, BoxError>(x) });
    let svc = outer.layer().layer(inner.layer().layer(backend));
    for _ in 0..50 {
        let err = svc.clone().oneshot(1).await.unwrap_err();
        let open = err
            .downcast_ref::<CircuitOpen>()
            .expect("the inner rejection");
        assert_eq!(open.state(), State::ForcedOpen);
        assert!(palisade_core::rejection::is_local_rejection(&*err));
    }
    assert_eq!(outer.state(), State::Closed);
    assert_eq!(inner.state(), State::ForcedOpen);
}
