//! The `metrics` feature: events reach the `metrics` facade under Palisade's names and labels.
#![cfg(all(feature = "metrics", not(loom)))]

use palisade_core::test_util::{TestRecorder, call_now};
use palisade_load_balancer::{Balancer, BalancerService, EndpointMeta, RoundRobin};
use std::future::{Ready, ready};
use std::task::{Context, Poll};

/// Answers at once: `Ok` when `.0` is true, an error otherwise.
#[derive(Clone, Copy, Debug)]
struct Fixed(bool);

impl tower::Service<u32> for Fixed {
    type Response = u32;
    type Error = std::io::Error;
    type Future = Ready<Result<u32, std::io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u32) -> Self::Future {
        ready(if self.0 {
            Ok(req)
        } else {
            Err(std::io::Error::other("boom"))
        })
    }
}

/// The balancer "api" (round robin) over a good and a failing endpoint, and a service of it,
/// after ten calls: five to each, the failing endpoint ejected by outlier detection.
fn api_after_ten_calls() -> (
    Balancer<&'static str, Fixed>,
    BalancerService<&'static str, Fixed>,
) {
    let balancer = Balancer::builder()
        .name("api")
        .strategy(RoundRobin::new())
        .build()
        .unwrap();
    balancer.insert("good", Fixed(true), EndpointMeta::new());
    balancer.insert("bad", Fixed(false), EndpointMeta::new());
    let mut svc = balancer.service();
    for i in 0..10 {
        let _ = call_now(&mut svc, i);
    }
    (balancer, svc)
}

#[test]
fn events_are_recorded_under_palisade_names() {
    let recorder = TestRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        let (balancer, mut svc) = api_after_ten_calls();
        assert_eq!(balancer.snapshot().ejected, 1);
        balancer.remove(&"good");
        balancer.remove(&"bad");
        assert!(matches!(call_now(&mut svc, 0), Some(Err(_))));
    });
    let get = |key: &str| recorder.get(key);
    let calls = |outcome: &str| {
        get(&format!(
            "palisade_load_balancer_calls_total{{name=api,outcome={outcome}}}"
        ))
    };
    assert_eq!(calls("success"), Some(5.0));
    assert_eq!(calls("failure"), Some(5.0));
    assert_eq!(calls("rejected"), Some(1.0));
    assert_eq!(
        get("palisade_load_balancer_rejections_total{name=api,reason=no_healthy_endpoints}"),
        Some(1.0)
    );
    assert_eq!(
        get("palisade_load_balancer_ejections_total{name=api}"),
        Some(1.0)
    );
    assert_eq!(get("palisade_load_balancer_endpoints{name=api}"), Some(0.0));
    assert_eq!(
        get("palisade_load_balancer_ejected_endpoints{name=api}"),
        Some(0.0),
        "the ejected endpoint left the set"
    );
}

#[test]
fn gauges_are_set_at_build_and_the_name_defaults_to_the_layer() {
    let recorder = TestRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        let _balancer: Balancer<u8, Fixed> = Balancer::builder().build().unwrap();
    });
    assert_eq!(
        recorder.get("palisade_load_balancer_endpoints{name=load_balancer}"),
        Some(0.0)
    );
    assert_eq!(
        recorder.get("palisade_load_balancer_ejected_endpoints{name=load_balancer}"),
        Some(0.0)
    );
}

#[test]
fn per_endpoint_gauges_come_from_a_snapshot() {
    let recorder = TestRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        let (balancer, _svc) = api_after_ten_calls();
        balancer.export_endpoint_metrics();
    });
    let get = |key: &str| recorder.get(key);
    assert_eq!(
        get("palisade_load_balancer_endpoint_calls{endpoint=good,name=api}"),
        Some(5.0)
    );
    assert_eq!(
        get("palisade_load_balancer_endpoint_failures{endpoint=bad,name=api}"),
        Some(5.0)
    );
    assert_eq!(
        get("palisade_load_balancer_endpoint_ejected{endpoint=bad,name=api}"),
        Some(1.0)
    );
    assert_eq!(
        get("palisade_load_balancer_endpoint_ejected{endpoint=good,name=api}"),
        Some(0.0)
    );
    assert_eq!(
        get("palisade_load_balancer_endpoint_pending{endpoint=good,name=api}"),
        Some(0.0)
    );
}
