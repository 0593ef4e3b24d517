//! The `metrics` feature: gauges right from build, calls by outcome, rejections by reason,
//! the default `name` label, recorded on a local recorder.

#![cfg(all(feature = "metrics", not(loom)))]

mod support;

use palisade_core::clock::ManualClock;
use palisade_core::test_util::TestRecorder;
use palisade_rate_limit::{KeyedRateLimiter, RateLimiter};
use std::time::Duration;
use support::{Echo, RejectsLocally, call_now};
use tower::{Layer, service_fn};

#[test]
fn gauges_from_build_and_calls_by_outcome_and_rejections_by_reason() {
    let recorder = TestRecorder::new();
    let manual = ManualClock::new();
    let (limiter, unnamed) = metrics::with_local_recorder(&recorder, || {
        let named = RateLimiter::builder()
            .name("orders")
            .rate(10, Duration::from_secs(1))
            .burst(3)
            .clock(manual.clock())
            .build()
            .unwrap();
        let unnamed = KeyedRateLimiter::<u8>::builder()
            .rate(5, Duration::from_secs(1))
            .clock(manual.clock())
            .build()
            .unwrap();
        (named, unnamed)
    });
    // Right from build, before any event.
    assert_eq!(
        recorder.get("palisade_rate_limit_burst{name=orders}"),
        Some(3.0)
    );
    assert_eq!(
        recorder.get("palisade_rate_limit_rate{name=orders}"),
        Some(10.0)
    );
    assert_eq!(
        recorder.get("palisade_rate_limit_burst{name=rate_limit}"),
        Some(5.0),
        "the default name is the layer's"
    );
    for name in [
        "palisade_rate_limit_calls_total",
        "palisade_rate_limit_rejections_total",
        "palisade_rate_limit_burst",
    ] {
        assert!(recorder.is_described(name), "{name}");
    }

    let mut ok = limiter.layer().layer(Echo);
    assert!(call_now(&mut ok, 1).unwrap().is_ok());
    let mut failing = limiter.layer().layer(service_fn(|_: u32| async {
        Err::<u32, tower::BoxError>("backend down".into())
    }));
    assert!(call_now(&mut failing, 1).unwrap().is_err());
    let mut below = limiter.layer().layer(RejectsLocally);
    assert!(call_now(&mut below, 1).unwrap().is_err());
    assert!(call_now(&mut ok, 2).unwrap().is_ok());
    // The refunded call left one token: the bucket of 3 is now empty.
    let err = call_now(&mut ok, 3).unwrap().unwrap_err();
    assert!(err.is::<palisade_rate_limit::RateLimited>());
    assert!(limiter.check_n(9).is_err());
    assert!(unnamed.check(&1).is_ok());

    let calls = |outcome: &str| {
        recorder.counter(&format!(
            "palisade_rate_limit_calls_total{{name=orders,outcome={outcome}}}"
        ))
    };
    assert_eq!(calls("success"), 2);
    assert_eq!(calls("failure"), 1);
    assert_eq!(calls("ignore"), 1);
    assert_eq!(calls("rejected"), 2);
    let reason = |r: &str| {
        recorder.counter(&format!(
            "palisade_rate_limit_rejections_total{{name=orders,reason={r}}}"
        ))
    };
    assert_eq!(reason("rate_limited"), 1);
    assert_eq!(reason("cost_exceeds_burst"), 1);
    assert_eq!(
        recorder.counter("palisade_rate_limit_refunded_total{name=orders}"),
        1
    );
    assert_eq!(
        recorder.counter("palisade_rate_limit_permitted_total{name=orders}"),
        4
    );
    assert_eq!(
        recorder.counter("palisade_rate_limit_permitted_total{name=rate_limit}"),
        1
    );

    limiter.set_quota(
        palisade_rate_limit::Quota::per_minute(120)
            .unwrap()
            .with_burst(7)
            .unwrap(),
    );
    assert_eq!(
        recorder.get("palisade_rate_limit_burst{name=orders}"),
        Some(7.0)
    );
    assert_eq!(
        recorder.get("palisade_rate_limit_rate{name=orders}"),
        Some(2.0)
    );
}
