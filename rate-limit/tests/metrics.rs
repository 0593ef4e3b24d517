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
    assert_eq!(
        recorder.counter("palisade_rate_limit_quota_changes_total{name=orders}"),
        1
    );
}

/// Regression (issue 9 §6): every limiter registered all three rejection reasons and the
/// quota-change counter, so a plain limiter exported `reason="too_many_keys"` and a keyed one a
/// `quota_changes_total`, series that could never carry data.
#[test]
fn each_limiter_registers_only_the_series_it_can_produce() {
    let recorder = TestRecorder::new();
    let manual = ManualClock::new();
    let (plain, keyed) = metrics::with_local_recorder(&recorder, || {
        let plain = RateLimiter::builder()
            .name("plain")
            .rate(1, Duration::from_secs(1))
            .clock(manual.clock())
            .build()
            .unwrap();
        let keyed = KeyedRateLimiter::<u8>::builder()
            .name("keyed")
            .rate(1, Duration::from_secs(1))
            .max_keys(1)
            .shards(1)
            .clock(manual.clock())
            .build()
            .unwrap();
        (plain, keyed)
    });
    let reason = |name: &str, r: &str| {
        format!("palisade_rate_limit_rejections_total{{name={name},reason={r}}}")
    };
    assert!(
        !recorder.is_registered(&reason("plain", "too_many_keys")),
        "a plain limiter has no keys to refuse"
    );
    assert!(
        !recorder.is_registered("palisade_rate_limit_quota_changes_total{name=keyed}"),
        "a keyed limiter's quota never changes"
    );
    // What each can produce is there from build, before any event.
    for name in ["plain", "keyed"] {
        for r in ["rate_limited", "cost_exceeds_burst"] {
            assert!(recorder.is_registered(&reason(name, r)), "{name} {r}");
        }
    }
    assert!(recorder.is_registered(&reason("keyed", "too_many_keys")));
    assert!(recorder.is_registered("palisade_rate_limit_quota_changes_total{name=plain}"));

    // And the keyed one counts its refusals of new keys.
    assert!(keyed.check(&1).is_ok());
    assert!(matches!(
        keyed.check(&2),
        Err(palisade_rate_limit::KeyedRejection::TooManyKeys(_))
    ));
    assert_eq!(recorder.counter(&reason("keyed", "too_many_keys")), 1);
    assert!(plain.check().is_ok());
    assert!(plain.check().is_err());
    assert_eq!(recorder.counter(&reason("plain", "rate_limited")), 1);
}

/// A keyed limiter built before the recorder is installed registers its `too_many_keys`
/// counter with the rest at the first event after the recorder arrives.
#[test]
fn a_keyed_limiter_built_before_the_recorder_registers_too_many_keys_late() {
    let manual = ManualClock::new();
    let keyed = KeyedRateLimiter::<u8>::builder()
        .name("early")
        .rate(1, Duration::from_secs(1))
        .max_keys(1)
        .shards(1)
        .clock(manual.clock())
        .build()
        .unwrap();
    let recorder = TestRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        assert!(keyed.check(&1).is_ok());
        assert!(keyed.check(&2).is_err());
    });
    assert_eq!(
        recorder.counter("palisade_rate_limit_rejections_total{name=early,reason=too_many_keys}"),
        1
    );
    assert!(!recorder.is_registered("palisade_rate_limit_quota_changes_total{name=early}"));
}
