//! `WeightedRoundRobin` through the balancer: weights come from `EndpointMeta`, and
//! unhealthy endpoints hand their turns to the others.
#![cfg(not(loom))]

use palisade_core::test_util::call_now;
use palisade_load_balancer::{Balancer, EndpointMeta, WeightedRoundRobin};
use std::future::{Ready, ready};
use std::task::{Context, Poll};

/// Answers its name.
#[derive(Clone, Copy, Debug)]
struct Named(&'static str);

impl tower::Service<u32> for Named {
    type Response = &'static str;
    type Error = std::io::Error;
    type Future = Ready<Result<&'static str, std::io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: u32) -> Self::Future {
        ready(Ok(self.0))
    }
}

#[test]
fn weights_from_the_meta_interleave_smoothly() {
    let balancer = Balancer::builder()
        .strategy(WeightedRoundRobin::new())
        .build()
        .unwrap();
    for (name, weight) in [("a", 5), ("b", 1), ("c", 1)] {
        balancer.insert(name, Named(name), EndpointMeta::new().weight(weight));
    }
    let mut svc = balancer.service();
    let order: String = (0..14)
        .map(|i| match call_now(&mut svc, i) {
            Some(Ok(name)) => name,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(order, "aabacaa".repeat(2));
    // A removed endpoint's turns go to the others (the weights restart from zero).
    balancer.remove(&"b");
    let mut counts = [0u32; 2];
    for i in 0..600 {
        match call_now(&mut svc, i) {
            Some(Ok("a")) => counts[0] += 1,
            Some(Ok("c")) => counts[1] += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(counts, [500, 100]);
}
