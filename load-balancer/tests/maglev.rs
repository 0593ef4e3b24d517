//! `Balancer::maglev`: affinity by key through the Maglev table, health, set changes.
#![cfg(not(loom))]

use palisade_core::rng::mix;
use palisade_load_balancer::{Balancer, EndpointMeta, NoHealthyEndpoints, fleet_breaker};
use std::collections::HashMap;
use std::convert::Infallible;
use tower::{ServiceExt, service_fn};

/// An endpoint answering its own id.
#[derive(Clone, Copy)]
struct Endpoint(usize);

impl tower::Service<u64> for Endpoint {
    type Response = usize;
    type Error = Infallible;
    type Future = std::future::Ready<Result<usize, Infallible>>;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: u64) -> Self::Future {
        std::future::ready(Ok(self.0))
    }
}

fn balancer(n: usize) -> Balancer<usize, Endpoint> {
    let balancer = Balancer::builder()
        .endpoint_breaker(fleet_breaker())
        .build()
        .unwrap();
    for k in 0..n {
        balancer.insert(k, Endpoint(k), EndpointMeta::new());
    }
    balancer
}

async fn owners<S>(svc: &S, keys: u64) -> HashMap<u64, usize>
where
    S: tower::Service<u64, Response = usize, Error = tower::BoxError> + Clone,
{
    let mut owners = HashMap::new();
    for key in 0..keys {
        owners.insert(key, svc.clone().oneshot(key).await.unwrap());
    }
    owners
}

#[tokio::test]
async fn a_key_keeps_its_endpoint_and_keys_spread_evenly() {
    let balancer = balancer(5);
    let svc = balancer.maglev(|key: &u64| mix(*key));
    let first = owners(&svc, 5_000).await;
    assert_eq!(first, owners(&svc, 5_000).await, "same key, same endpoint");
    let mut counts = [0u32; 5];
    for owner in first.values() {
        counts[*owner] += 1;
    }
    for c in counts {
        assert!((900..=1_100).contains(&c), "{counts:?}");
    }
}

#[tokio::test]
async fn a_membership_change_moves_about_one_nth_of_the_keys() {
    let balancer = balancer(10);
    let svc = balancer.maglev(|key: &u64| mix(*key));
    let before = owners(&svc, 10_000).await;
    balancer.remove(&4);
    let after = owners(&svc, 10_000).await;
    let moved = before.iter().filter(|(k, o)| after[*k] != **o).count();
    assert!(
        after.values().all(|o| *o != 4),
        "the removed endpoint gets nothing"
    );
    // epsilon 0.02 (see the maglev module): at most 1/N + epsilon of the keys move.
    assert!(moved as f64 / 10_000.0 <= 0.1 + 0.02, "{moved}");
    balancer.insert(4, Endpoint(4), EndpointMeta::new());
    let back = owners(&svc, 10_000).await;
    let gained = back.values().filter(|o| **o == 4).count();
    assert!(
        (800..=1_200).contains(&gained),
        "the new table gives it its share: {gained}"
    );
}

#[tokio::test]
async fn an_open_breakers_keys_go_elsewhere_and_come_back() {
    let balancer = balancer(4);
    let svc = balancer.maglev(|key: &u64| mix(*key));
    let before = owners(&svc, 2_000).await;
    let breaker = balancer.endpoint_breaker(&2).unwrap();
    breaker.force_open();
    let during = owners(&svc, 2_000).await;
    for (key, owner) in &before {
        if *owner == 2 {
            assert_ne!(during[key], 2);
        } else {
            assert_eq!(during[key], *owner, "other keys stay put");
        }
    }
    // Its keys are spread over the others, not piled on one.
    let mut moved_to = [0u32; 4];
    for (key, owner) in &before {
        if *owner == 2 {
            moved_to[during[key]] += 1;
        }
    }
    assert!(
        moved_to.iter().filter(|c| **c > 0).count() == 3,
        "{moved_to:?}"
    );
    breaker.transition_to_closed();
    assert_eq!(owners(&svc, 2_000).await, before, "back with it");
}

#[tokio::test]
async fn an_empty_set_is_a_local_rejection_and_sizes_must_be_prime() {
    let balancer = balancer(0);
    let svc = balancer.maglev(|key: &u64| mix(*key));
    let err = svc.clone().oneshot(1).await.unwrap_err();
    assert!(err.downcast_ref::<NoHealthyEndpoints>().is_some());
    let err = svc.clone().table_size(1_000).unwrap_err();
    assert!(err.to_string().contains("table_size"), "{err}");
    // A small prime table still serves.
    let small = Balancer::new([(
        0usize,
        service_fn(|_: u64| async { Ok::<_, Infallible>(7) }),
    )])
    .maglev(|key: &u64| *key)
    .table_size(101)
    .unwrap();
    assert_eq!(small.oneshot(3).await.unwrap(), 7);
}
