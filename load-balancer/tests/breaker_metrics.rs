//! The `metrics` feature with the built-in endpoint breakers: the balancer's
//! `endpoint_breaker_open` gauge and each breaker's own series under `<balancer>/<key:?>`.
#![cfg(all(feature = "metrics", not(loom)))]

use palisade_core::test_util::{TestRecorder, call_now};
use palisade_load_balancer::{Balancer, EndpointMeta, RoundRobin, fleet_breaker};
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

#[test]
fn an_open_endpoint_breaker_shows_in_gauges_and_in_its_own_series() {
    let recorder = TestRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        let balancer = Balancer::builder()
            .name("api")
            .strategy(RoundRobin::new())
            .endpoint_breaker(fleet_breaker())
            .build()
            .unwrap();
        balancer.insert("good", Fixed(true), EndpointMeta::new());
        balancer.insert("bad", Fixed(false), EndpointMeta::new());
        let mut svc = balancer.service();
        for i in 0..20 {
            let _ = call_now(&mut svc, i);
        }
        balancer.export_endpoint_metrics();
    });
    assert_eq!(
        recorder.get("palisade_load_balancer_endpoint_breaker_open{endpoint=bad,name=api}"),
        Some(1.0)
    );
    assert_eq!(
        recorder.get("palisade_load_balancer_endpoint_breaker_open{endpoint=good,name=api}"),
        Some(0.0)
    );
    let opened: Vec<_> = recorder
        .values()
        .into_iter()
        .filter(|(key, value)| {
            key.starts_with("palisade_circuit_breaker_transitions_total")
                && key.contains("state=open")
                && *value > 0.0
        })
        .map(|(key, _)| key)
        .collect();
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert!(opened[0].contains("api/\"bad\""), "{opened:?}");
}
