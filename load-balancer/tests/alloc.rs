//! Zero allocations per call on the hot path (pick, call, record), counted by a global
//! allocator.
#![cfg(not(loom))]

use palisade_core::test_util::{Echo, call_now};
use palisade_load_balancer::{
    Balancer, BalancerService, EndpointMeta, HotCold, LeastPending, P2cPending, Random, RoundRobin,
    Strategy, WeightedP2cPeakEwma, WeightedRandom, WeightedResponseTime,
};
use tower::Service;

fn balancer_of(n: u32, strategy: impl Strategy) -> Balancer<u32, Echo> {
    let balancer = Balancer::builder()
        .strategy(strategy)
        .seed(3)
        .build()
        .unwrap();
    for key in 0..n {
        balancer.insert(key, Echo, EndpointMeta::new());
    }
    balancer
}

fn call_ok<S: Service<u64>>(svc: &mut S, request: u64) -> bool {
    matches!(call_now(svc, request), Some(Ok(_)))
}

fn assert_no_allocations(balancer: &Balancer<u32, Echo>) {
    let mut svc: BalancerService<u32, Echo> = balancer.service();
    // Warm up: the clock's process-wide origin, arc-swap's thread-local debt slots.
    for i in 0..100 {
        assert!(call_ok(&mut svc, i));
    }
    let info = allocation_counter::measure(|| {
        for i in 0..10_000 {
            assert!(call_ok(&mut svc, i));
        }
    });
    assert_eq!(info.count_total, 0, "the success path allocated");
    // Retry layers clone the service per call: a clone allocates nothing either.
    let info = allocation_counter::measure(|| {
        for i in 0..1_000 {
            let mut clone = svc.clone();
            assert!(call_ok(&mut clone, i));
        }
    });
    assert_eq!(info.count_total, 0, "a service clone allocated");
}

#[test]
fn p2c_peak_ewma_allocates_nothing() {
    assert_no_allocations(&Balancer::new((0..1_000).map(|k| (k, Echo))));
}

#[test]
fn other_strategies_allocate_nothing() {
    assert_no_allocations(&balancer_of(10, P2cPending));
    assert_no_allocations(&balancer_of(10, LeastPending));
    assert_no_allocations(&balancer_of(10, RoundRobin::new()));
    assert_no_allocations(&balancer_of(10, Random));
    assert_no_allocations(&balancer_of(10, WeightedP2cPeakEwma));
    assert_no_allocations(&balancer_of(10, WeightedRandom));
    assert_no_allocations(&balancer_of(10, WeightedResponseTime));
    assert_no_allocations(&balancer_of(10, HotCold::new()));
}

#[test]
fn the_rejection_of_an_empty_set_allocates_nothing() {
    let balancer = balancer_of(0, RoundRobin::new());
    let mut svc = balancer.service();
    let _ = call_now(&mut svc, 0u64);
    let info = allocation_counter::measure(|| {
        for i in 0..1_000u64 {
            assert!(matches!(call_now(&mut svc, i), Some(Err(_))));
        }
    });
    assert_eq!(info.count_total, 0, "NoHealthyEndpoints is zero-sized");
}

#[test]
fn the_hashed_service_allocates_nothing() {
    let balancer = balancer_of(10, RoundRobin::new());
    let hashed = balancer.hashed(|req: &u64| *req);
    let mut svc = hashed.clone();
    for i in 0..100 {
        assert!(call_ok(&mut svc, i));
    }
    let info = allocation_counter::measure(|| {
        for i in 0..1_000 {
            assert!(call_ok(&mut svc, i));
        }
    });
    assert_eq!(info.count_total, 0, "a hashed call allocated");
}

#[test]
fn smooth_weighted_round_robin_allocates_nothing() {
    assert_no_allocations(&balancer_of(
        10,
        palisade_load_balancer::WeightedRoundRobin::new(),
    ));
}

#[test]
fn endpoint_breakers_allocate_nothing_per_call() {
    let balancer = Balancer::builder()
        .seed(3)
        .endpoint_breaker(palisade_load_balancer::fleet_breaker())
        .build()
        .unwrap();
    for key in 0..100 {
        balancer.insert(key, Echo, EndpointMeta::new());
    }
    assert_no_allocations(&balancer);
}

#[test]
fn the_maglev_service_allocates_nothing_once_its_table_is_built() {
    let balancer = balancer_of(100, RoundRobin::new());
    let mut svc = balancer.maglev(|req: &u64| palisade_core::rng::mix(*req));
    for i in 0..100 {
        assert!(call_ok(&mut svc, i));
    }
    let info = allocation_counter::measure(|| {
        for i in 0..1_000 {
            assert!(call_ok(&mut svc, i));
        }
    });
    assert_eq!(info.count_total, 0, "a maglev call allocated");
}
