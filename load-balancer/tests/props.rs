//! Property tests: random sequences of set changes, calls (succeeding, failing, kept in
//! flight, cancelled) and time steps keep the balancer's books straight.
#![cfg(not(loom))]

use palisade_core::clock::ManualClock;
use palisade_load_balancer::{Balancer, BalancerEvent, EndpointMeta, OutlierDetection};
use proptest::prelude::*;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tower::Service;

/// Answers at once, `Ok` unless its shared flag says fail.
#[derive(Clone, Debug)]
struct Flaky(Arc<AtomicBool>);

impl Service<u8> for Flaky {
    type Response = u8;
    type Error = std::io::Error;
    type Future = Ready<Result<u8, std::io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u8) -> Self::Future {
        ready(if self.0.load(Ordering::Relaxed) {
            Err(std::io::Error::other("flaky"))
        } else {
            Ok(req)
        })
    }
}

#[derive(Clone, Debug)]
enum Op {
    Insert(u8),
    Remove(u8),
    SetFailing(u8, bool),
    /// A call polled to completion.
    Call,
    /// A call left in flight (its future kept, unpolled).
    Hold,
    /// The oldest held call dropped (cancelled) or completed.
    Release(bool),
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0u8..6).prop_map(Op::Insert),
        1 => (0u8..6).prop_map(Op::Remove),
        1 => ((0u8..6), any::<bool>()).prop_map(|(k, f)| Op::SetFailing(k, f)),
        4 => Just(Op::Call),
        1 => Just(Op::Hold),
        1 => any::<bool>().prop_map(Op::Release),
        1 => (1u16..2_000).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn books_stay_straight(ops in proptest::collection::vec(op(), 1..200), seed in any::<u64>()) {
        let manual = ManualClock::new();
        let outlier = OutlierDetection::new()
            .consecutive_failures(2)
            .max_ejection_percent(34.0);
        let balancer: Balancer<u8, Flaky> = Balancer::builder()
            .clock(manual.clock())
            .seed(seed)
            .outlier_detection(outlier)
            .build()
            .unwrap();
        // Every ejection, as the balancer saw it: (ejected now, endpoints in the set).
        let ejections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = ejections.clone();
        balancer.subscribe(move |e: &BalancerEvent<u8>| {
            if let BalancerEvent::EndpointEjected { ejected, endpoints, .. } = e {
                sink.lock().unwrap().push((*ejected, *endpoints));
            }
        });
        let flags: Vec<Arc<AtomicBool>> = (0..6).map(|_| Arc::default()).collect();
        let mut svc = balancer.service();
        let mut held = std::collections::VecDeque::new();
        let mut cx = Context::from_waker(Waker::noop());
        for op in ops {
            match op {
                Op::Insert(k) => balancer.insert(k, Flaky(flags[k as usize].clone()), EndpointMeta::new()),
                Op::Remove(k) => { balancer.remove(&k); }
                Op::SetFailing(k, f) => flags[k as usize].store(f, Ordering::Relaxed),
                Op::Call | Op::Hold => {
                    prop_assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))), "poll_ready never fails");
                    let future = svc.call(0);
                    if matches!(op, Op::Hold) {
                        held.push_back(Box::pin(future));
                    } else {
                        let _ = pin!(future).poll(&mut cx);
                    }
                }
                Op::Release(complete) => {
                    // Popped either way: completed, or dropped (cancelled) right here.
                    if let Some(mut future) = held.pop_front()
                        && complete
                    {
                        prop_assert!(future.as_mut().poll(&mut cx).is_ready());
                    }
                }
                Op::Advance(ms) => manual.advance(Duration::from_millis(u64::from(ms))),
            }
            let snap = balancer.snapshot();
            let pending: u64 = snap.endpoints.iter().map(|e| e.pending).sum();
            prop_assert!(pending <= held.len() as u64, "pending {pending} > held {}", held.len());
        }
        drop(held);
        // Every call's pending count is back, removed endpoints' calls included.
        let snap = balancer.snapshot();
        prop_assert!(snap.endpoints.iter().all(|e| e.pending == 0), "{snap:?}");
        // No ejection took more than 34 % of the set, except the one always allowed.
        for (ejected, endpoints) in ejections.lock().unwrap().iter() {
            let allowed = ((*endpoints as f64) * 0.34).floor().max(1.0) as usize;
            prop_assert!(ejected <= &allowed, "{ejected} of {endpoints} ejected");
        }
    }
}
