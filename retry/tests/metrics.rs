//! The `metrics` feature: calls by outcome, attempts and retries, rejections by reason,
//! gauges right from build, help text registered; one label scheme (`name`, `outcome`,
//! `reason`).

#![cfg(all(feature = "metrics", not(loom)))]

use palisade_core::clock::Clock;
use palisade_core::rejection::{Rejection, RejectionKind};
use palisade_core::test_util::TestRecorder;
use palisade_retry::{Backoff, RetryBudget, RetryPolicy, RetryThrottle};
use std::time::Duration;
use tower::{BoxError, Layer, ServiceExt, service_fn};

/// Request 0 succeeds, 1 fails remotely, 2 is a local rejection from below, 3 never answers.
fn scripted() -> impl tower::Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone {
    service_fn(|request: u32| async move {
        match request {
            0 => Ok(0),
            1 => Err("connection reset".into()),
            2 => Err(Box::new(Rejection::new(RejectionKind::CircuitOpen)) as BoxError),
            _ => std::future::pending().await,
        }
    })
}

#[test]
fn calls_attempts_and_rejections_by_outcome_and_reason() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let _entered = rt.enter();
    let recorder = TestRecorder::new();
    let (policy, empty, throttle) = metrics::with_local_recorder(&recorder, || {
        let policy = RetryPolicy::builder()
            .name("p")
            .clock(Clock::tokio())
            .unlimited()
            .max_attempts(3)
            .backoff(Backoff::constant(Duration::from_millis(10)))
            .deadline(Duration::from_secs(1))
            .build()
            .unwrap();
        let budget = RetryBudget::builder()
            .name("b")
            .min_retries_per_sec(0)
            .percent_can_retry(0.0)
            .build()
            .unwrap();
        let empty = RetryPolicy::builder()
            .name("e")
            .budget(budget)
            .backoff(Backoff::none())
            .build()
            .unwrap();
        let throttle = RetryThrottle::builder().name("t").build().unwrap();
        (policy, empty, throttle)
    });
    assert_eq!(
        recorder.get("palisade_retry_throttle_engaged{name=t}"),
        Some(0.0),
        "the gauge is set at build"
    );
    rt.block_on(async {
        for request in 0..4 {
            let _ = policy.layer().layer(scripted()).oneshot(request).await;
        }
        let _ = empty.layer().layer(scripted()).oneshot(1).await;
    });
    for _ in 0..5 {
        throttle.on_failure();
    }
    let calls = |outcome: &str| {
        recorder.get(&format!(
            "palisade_retry_calls_total{{name=p,outcome={outcome}}}"
        ))
    };
    assert_eq!(calls("success"), Some(1.0));
    assert_eq!(calls("failure"), Some(1.0), "3 attempts, then gave up");
    assert_eq!(calls("ignore"), Some(1.0), "a local rejection from below");
    assert_eq!(
        calls("rejected"),
        Some(1.0),
        "the deadline: the layer's own rejection"
    );
    assert_eq!(
        recorder.get("palisade_retry_attempts_total{name=p}"),
        Some(6.0)
    );
    assert_eq!(
        recorder.get("palisade_retry_retries_total{name=p}"),
        Some(2.0)
    );
    assert_eq!(
        recorder.get("palisade_retry_rejections_total{name=p,reason=deadline_exceeded}"),
        Some(1.0)
    );
    assert_eq!(
        recorder.get("palisade_retry_gave_up_total{name=p,reason=attempts_exhausted}"),
        Some(1.0)
    );
    assert_eq!(
        recorder.get("palisade_retry_gave_up_total{name=p,reason=local_rejection}"),
        Some(1.0)
    );
    assert_eq!(
        recorder.get("palisade_retry_rejections_total{name=e,reason=budget_exhausted}"),
        Some(1.0)
    );
    assert_eq!(
        recorder.get("palisade_retry_calls_total{name=e,outcome=failure}"),
        Some(1.0)
    );
    assert_eq!(
        recorder.get("palisade_retry_budget_refusals_total{name=b}"),
        Some(1.0)
    );
    assert_eq!(
        recorder.get("palisade_retry_throttle_engaged{name=t}"),
        Some(1.0)
    );
    assert_eq!(
        recorder.get("palisade_retry_throttle_transitions_total{name=t,state=engaged}"),
        Some(1.0)
    );
    for name in [
        "palisade_retry_calls_total",
        "palisade_retry_attempts_total",
        "palisade_retry_rejections_total",
        "palisade_retry_throttle_engaged",
    ] {
        assert!(recorder.is_described(name), "{name} has no help text");
    }
}
