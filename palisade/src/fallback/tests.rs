//! Fallback tests, in tokio's paused time.

use super::*;
use crate::ServiceBuilderExt;
use palisade_core::rejection::{Rejection, RejectionKind};
use palisade_core::{BoxError, Outcome};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;
use tokio::sync::oneshot;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

/// The primary: `Ok(n)` for n >= 0, a remote error for -1, a local rejection for -2, a
/// 5-second hang for -3.
fn primary() -> impl Service<i32, Response = i32, Error = BoxError, Future: Send> + Clone {
    service_fn(|n: i32| async move {
        match n {
            -1 => Err::<i32, BoxError>("connection reset".into()),
            -2 => Err(Box::new(Rejection::new(RejectionKind::CircuitOpen)) as BoxError),
            -3 => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(3)
            }
            n => Ok(n),
        }
    })
}

fn answer_zero(_: Result<i32, BoxError>) -> std::future::Ready<Result<i32, BoxError>> {
    std::future::ready(Ok(0))
}

#[tokio::test(start_paused = true)]
async fn failures_timeouts_and_rejections_fall_back_successes_pass() {
    let fallback = Fallback::builder(answer_zero).build().unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    fallback.subscribe(move |e: &FallbackEvent| seen.lock().unwrap().push(*e));
    let stack = ServiceBuilder::new()
        .fallback(&fallback) // ServiceBuilderExt
        .layer(tower::timeout::TimeoutLayer::new(Duration::from_secs(1)))
        .service(primary());
    assert_eq!(stack.clone().oneshot(7).await.unwrap(), 7);
    assert_eq!(
        stack.clone().oneshot(-1).await.unwrap(),
        0,
        "remote failure"
    );
    assert_eq!(
        stack.clone().oneshot(-2).await.unwrap(),
        0,
        "local rejection"
    );
    let started = tokio::time::Instant::now();
    assert_eq!(
        stack.clone().oneshot(-3).await.unwrap(),
        0,
        "timeout (Elapsed)"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    let snap = fallback.snapshot();
    assert_eq!(
        (snap.calls, snap.fallbacks, snap.fallback_failures),
        (4, 3, 0)
    );
    assert_eq!(snap.in_flight, 0);
    let events = events.lock().unwrap();
    assert_eq!(
        events[0],
        FallbackEvent::CallFinished {
            outcome: PrimaryOutcome::Success
        }
    );
    assert!(events.contains(&FallbackEvent::CallFinished {
        outcome: PrimaryOutcome::Rejected(RejectionKind::CircuitOpen)
    }));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(
                e,
                FallbackEvent::FallbackFinished {
                    succeeded: true,
                    ..
                }
            ))
            .count(),
        3
    );
}

#[tokio::test(start_paused = true)]
async fn the_classifier_and_the_rejection_switch_decide() {
    // Odd numbers are failures, 100 is ignored; local rejections pass through.
    let fallback = Fallback::builder(answer_zero)
        .classify(|r: Result<&i32, &BoxError>| match r {
            Ok(100) => Outcome::Ignore,
            Ok(n) if n % 2 == 1 => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        })
        .fallback_on_local_rejection(false)
        .build()
        .unwrap();
    let stack = fallback.layer().layer(primary());
    assert_eq!(stack.clone().oneshot(3).await.unwrap(), 0);
    assert_eq!(stack.clone().oneshot(4).await.unwrap(), 4);
    assert_eq!(stack.clone().oneshot(100).await.unwrap(), 100);
    let err = stack.clone().oneshot(-2).await.unwrap_err();
    assert!(palisade_core::is_local_rejection(&*err), "passed through");
    assert_eq!(stack.oneshot(-1).await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failing_fallback_says_so() {
    let fallback = Fallback::builder(|primary: Result<i32, BoxError>| async move {
        let cause = primary.unwrap_err();
        Err::<i32, BoxError>(format!("cache empty after {cause}").into())
    })
    .build()
    .unwrap();
    let err = fallback
        .layer()
        .layer(primary())
        .oneshot(-1)
        .await
        .unwrap_err();
    let failed = err.downcast_ref::<FallbackFailed>().unwrap();
    assert_eq!(
        failed.fallback_error().to_string(),
        "cache empty after connection reset"
    );
    assert_eq!(
        err.to_string(),
        "the call and its fallback failed: cache empty after connection reset"
    );
    assert_eq!(fallback.snapshot().fallback_failures, 1);
}

#[tokio::test(start_paused = true)]
async fn fallbacks_are_capped_and_slots_come_back_on_completion_and_drop() {
    // Each fallback waits for its own release signal.
    let gates: Arc<Mutex<Vec<oneshot::Receiver<()>>>> = Arc::default();
    let gates_in = gates.clone();
    let fallback = Fallback::builder(move |_: Result<i32, BoxError>| {
        let gate = gates_in.lock().unwrap().remove(0);
        async move {
            let _ = gate.await;
            Ok::<i32, BoxError>(0)
        }
    })
    .max_concurrent(1)
    .build()
    .unwrap();
    let stack = fallback.layer().layer(primary());
    let (release_first, gate) = oneshot::channel();
    gates.lock().unwrap().push(gate);
    let first = tokio::spawn(stack.clone().oneshot(-1));
    tokio::task::yield_now().await;
    assert_eq!(fallback.snapshot().in_flight, 1);
    // The cap is reached: the second failure is returned as it was.
    let err = stack.clone().oneshot(-1).await.unwrap_err();
    assert_eq!(err.to_string(), "connection reset");
    assert_eq!(fallback.snapshot().fallback_rejections, 1);
    release_first.send(()).unwrap();
    assert_eq!(first.await.unwrap().unwrap(), 0);
    assert_eq!(fallback.snapshot().in_flight, 0);
    // A fallback whose future is dropped gives its slot back.
    let (_keep, gate) = oneshot::channel::<()>();
    gates.lock().unwrap().push(gate);
    let mut call = Box::pin(stack.clone().oneshot(-1));
    let pending = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx).is_pending())).await;
    assert!(pending);
    assert_eq!(fallback.snapshot().in_flight, 1);
    drop(call);
    assert_eq!(fallback.snapshot().in_flight, 0);
    let (release, gate) = oneshot::channel();
    gates.lock().unwrap().push(gate);
    release.send(()).unwrap();
    assert_eq!(
        stack.oneshot(-1).await.unwrap(),
        0,
        "the slot is usable again"
    );
}

#[test]
fn zero_fallbacks_is_a_config_error() {
    let err = Fallback::builder(answer_zero)
        .max_concurrent(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_concurrent");
    let ok = Fallback::builder(answer_zero).build().unwrap();
    assert_eq!(ok.name(), "fallback");
    assert_eq!(ok.snapshot().max_concurrent, 10);
    assert!(format!("{:?}", ok.layer()).contains("fallback"));
}

#[test]
fn public_types_are_send_sync_clone() {
    fn send_sync<T: Send + Sync>() {}
    fn clone<T: Clone>() {}
    type F = fn(Result<i32, BoxError>) -> std::future::Ready<Result<i32, BoxError>>;
    send_sync::<Fallback<F>>();
    send_sync::<FallbackLayer<F, palisade_core::ErrorIsFailure>>();
    send_sync::<FallbackFailed>();
    clone::<Fallback<F>>();
    clone::<FallbackLayer<F, palisade_core::ErrorIsFailure>>();
}

#[cfg(feature = "metrics")]
mod metrics_export {
    use super::*;
    use palisade_core::test_util::TestRecorder;

    #[tokio::test(start_paused = true)]
    async fn metrics_follow_the_label_scheme_and_gauges_are_set_at_build() {
        let recorder = TestRecorder::new();
        let fallback = metrics::with_local_recorder(&recorder, || {
            Fallback::builder(answer_zero)
                .max_concurrent(3)
                .name("recs")
                .build()
                .unwrap()
        });
        assert_eq!(
            recorder.get("palisade_fallback_max_concurrent{name=recs}"),
            Some(3.0)
        );
        assert_eq!(
            recorder.get("palisade_fallback_in_flight{name=recs}"),
            Some(0.0)
        );
        let stack = fallback.layer().layer(primary());
        for n in [1, 2, -1, -2, -1] {
            stack.clone().oneshot(n).await.unwrap();
        }
        let calls = |o: &str| {
            let series = format!("palisade_fallback_calls_total{{name=recs,outcome={o}}}");
            // Registered at build: a zero below is a series that exists and never moved.
            assert!(recorder.is_registered(&series), "{series} is registered");
            recorder.counter(&series)
        };
        assert_eq!(
            (
                calls("success"),
                calls("failure"),
                calls("ignore"),
                calls("rejected")
            ),
            (2, 2, 0, 1)
        );
        let runs = |o: &str| {
            let series = format!("palisade_fallback_executions_total{{name=recs,outcome={o}}}");
            // Registered at build: a zero below is a series that exists and never moved.
            assert!(recorder.is_registered(&series), "{series} is registered");
            recorder.counter(&series)
        };
        assert_eq!(
            (runs("success"), runs("failure"), runs("rejected")),
            (3, 0, 0)
        );
        for name in [
            "palisade_fallback_calls_total",
            "palisade_fallback_executions_total",
            "palisade_fallback_in_flight",
            "palisade_fallback_max_concurrent",
        ] {
            assert!(recorder.is_described(name), "{name} has help text");
        }
    }
}
