//! Zero allocations per call on the not-full path.

#![cfg(not(loom))]

use palisade_bulkhead::Bulkhead;
use palisade_bulkhead::adaptive::Aimd;
use palisade_core::test_util::{Echo, call_now};
use std::task::{Context, Poll, Waker};
use tower::{Layer, Service};

fn drive<S: Service<u64>>(svc: &mut S, n: u64) {
    for i in 0..n {
        assert!(matches!(call_now(svc, i), Some(Ok(_))));
    }
}

#[test]
fn fixed_limit_calls_allocate_nothing() {
    let bulkhead = Bulkhead::builder().max_concurrent_calls(4).build().unwrap();
    let mut svc = bulkhead.layer().layer(Echo);
    drive(&mut svc, 10);
    let info = allocation_counter::measure(|| drive(&mut svc, 1000));
    assert_eq!(info.count_total, 0);
    // Rejections are zero-sized errors: no allocation either.
    bulkhead.set_limit(0);
    let info = allocation_counter::measure(|| {
        for i in 0..100 {
            assert!(matches!(call_now(&mut svc, i), Some(Err(_))));
        }
    });
    assert_eq!(info.count_total, 0);
}

#[test]
fn adaptive_calls_allocate_nothing() {
    let bulkhead = Bulkhead::builder()
        .adaptive(Aimd::builder().build().unwrap())
        .build()
        .unwrap();
    let mut svc = bulkhead.layer().layer(Echo);
    drive(&mut svc, 10);
    let info = allocation_counter::measure(|| drive(&mut svc, 10_000));
    assert_eq!(info.count_total, 0);
}

#[test]
fn static_bulkhead_counts_slots_like_a_counted_one_and_allocates_nothing_per_call() {
    let bulkhead = Bulkhead::builder()
        .max_concurrent_calls(1)
        .build_static()
        .unwrap();
    let mut svc = bulkhead.layer().layer(Echo);
    let mut other = bulkhead.layer().layer(Echo);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(
        Service::<u64>::poll_ready(&mut svc, &mut cx),
        Poll::Ready(Ok(()))
    ));
    assert!(matches!(call_now(&mut other, 0), Some(Err(_))));
    drop(svc.call(1));
    assert_eq!(bulkhead.in_flight(), 0);
    let info = allocation_counter::measure(|| drive(&mut other, 1000));
    assert_eq!(info.count_total, 0);
}
