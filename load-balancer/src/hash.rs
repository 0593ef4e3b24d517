//! [`HashService`]: affinity by a request key, with rendezvous hashing.
//!
//! Requests with the same key go to the same endpoint while it is healthy, so per-key caches
//! and sessions stay warm. The endpoint is chosen by rendezvous (highest random weight)
//! hashing (Thaler and Ravishankar, "Using name-based mappings to increase hit rates", 1998):
//! every candidate gets the score `mix(request hash, endpoint key hash)` and the highest score
//! wins. A membership change moves only the keys of the endpoint that left, or `1/N` of the
//! keys to one that joined: the minimum possible (tested). Ejected endpoints are not
//! candidates, so their keys move to their next-best endpoint while they are out and come
//! back with them. O(n) per call, no table to rebuild on a change: the simple option for tens
//! of endpoints; for hundreds or thousands, [`MaglevService`](crate::MaglevService)
//! ([`Balancer::maglev`](crate::Balancer::maglev)) answers in O(1) from a lookup table.
//!
//! The endpoint is known only once the request is, so `poll_ready` is always ready and the
//! response future waits for the chosen endpoint's readiness before calling it (as
//! `ServiceExt::oneshot` does); a readiness failure is the call's error and counts as the
//! endpoint's failure.

use crate::balancer::{Entry, Shared, fleet_estimate};
use crate::endpoint::{CallResult, Core, Node, Record};
use crate::error::NoHealthyEndpoints;
use crate::events::BalancerEvent;
use crate::future::{InFlight, ResponseFuture};
use palisade_core::BoxError;
use palisade_core::classify::ErrorIsFailure;
use palisade_core::clock::Instant;
use palisade_core::rejection::RejectionKind;
use palisade_core::rng::{GAMMA, mix};
use pin_project::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tower_service::Service;

/// The rendezvous score of an endpoint for a request hash.
#[inline]
#[must_use]
pub fn rendezvous_score(request_hash: u64, endpoint_hash: u64) -> u64 {
    mix(request_hash ^ endpoint_hash.wrapping_mul(GAMMA))
}

/// A `Service` that sends each request to the endpoint its key hashes to. From
/// [`Balancer::hashed`](crate::Balancer::hashed); see the [module docs](self).
pub struct HashService<K, S, H> {
    shared: Arc<Shared<K, S>>,
    hash: H,
}

impl<K, S, H: Clone> Clone for HashService<K, S, H> {
    fn clone(&self) -> Self {
        HashService {
            shared: Arc::clone(&self.shared),
            hash: self.hash.clone(),
        }
    }
}

impl<K, S, H> fmt::Debug for HashService<K, S, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashService")
            .field("balancer", &self.shared.core.name)
            .finish_non_exhaustive()
    }
}

impl<K, S, H> HashService<K, S, H> {
    pub(crate) fn new(shared: Arc<Shared<K, S>>, hash: H) -> Self {
        HashService { shared, hash }
    }
}

impl<K, S, H, Req> Service<Req> for HashService<K, S, H>
where
    K: std::hash::Hash + Clone + Send + Sync + 'static,
    S: Service<Req> + Clone,
    S::Error: Into<BoxError> + 'static,
    H: Fn(&Req) -> u64,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = HashFuture<S, Req>;

    /// Always ready: the endpoint is chosen in `call`, from the request.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> HashFuture<S, Req> {
        let core = &*self.shared.core;
        let request_hash = (self.hash)(&request);
        let set = self.shared.set.load();
        let now = core.clock.now();
        let panic = core.outlier.in_panic(core.ejected_count(), set.len());
        let chosen = set
            .iter()
            .filter(|e| hash_candidate(e, &set, now, core, panic))
            .max_by_key(|e| rendezvous_score(request_hash, e.node.key_hash()));
        HashFuture::dispatch(core, chosen, request, now)
    }
}

/// Whether a hashing service may send a request to `entry`: its breaker (if any) lets calls
/// through, and it is not ejected, unless the fleet is `in_panic` (then every endpoint is
/// used). Shared by [`HashService`] and [`MaglevService`](crate::maglev::MaglevService).
pub(crate) fn hash_candidate<K: Clone + Send + Sync + 'static, S>(
    entry: &Entry<K, S>,
    set: &[Entry<K, S>],
    now: Instant,
    core: &Core<K>,
    in_panic: bool,
) -> bool {
    entry.node.breaker_allows(now)
        && (in_panic
            || !entry
                .node
                .is_ejected(now, || fleet_estimate(set, now, core, Some(entry.node.id))))
}

/// The response future of a [`HashService`]: waits for the chosen endpoint's readiness, calls
/// it, and records the outcome like [`ResponseFuture`].
///
/// # Cancel safety
///
/// Dropping it gives the endpoint's pending count back, whether or not the endpoint was
/// called yet.
#[pin_project]
pub struct HashFuture<S: Service<Req>, Req> {
    #[pin]
    state: HashState<S, Req>,
}

#[pin_project(project = HashProj)]
enum HashState<S: Service<Req>, Req> {
    NotReady {
        service: S,
        request: Option<Req>,
        guard: Option<InFlight>,
    },
    Called {
        #[pin]
        future: ResponseFuture<S::Future, ErrorIsFailure>,
    },
    Rejected,
}

impl<S: Service<Req>, Req> HashFuture<S, Req> {
    /// A future that waits for `service`'s readiness, then calls it with `request`.
    pub(crate) fn not_ready(service: S, request: Req, guard: InFlight) -> Self {
        HashFuture {
            state: HashState::NotReady {
                service,
                request: Some(request),
                guard: Some(guard),
            },
        }
    }

    /// A future that answers [`NoHealthyEndpoints`].
    pub(crate) fn rejected() -> Self {
        HashFuture {
            state: HashState::Rejected,
        }
    }

    /// Sends `request` to the `chosen` endpoint (counting it pending from `now`), or, with
    /// none, reports the rejection and answers [`NoHealthyEndpoints`].
    pub(crate) fn dispatch<K: Clone + Send + Sync + 'static>(
        core: &Core<K>,
        chosen: Option<&Entry<K, S>>,
        request: Req,
        now: Instant,
    ) -> Self
    where
        S: Clone,
    {
        let Some(entry) = chosen else {
            core.events.emit_call_with(|| BalancerEvent::CallRejected {
                kind: RejectionKind::NoHealthyEndpoints,
            });
            return HashFuture::rejected();
        };
        entry.node.stats.begin();
        let node: Arc<Node<K>> = Arc::clone(&entry.node);
        let record: Arc<dyn Record> = node;
        HashFuture::not_ready(entry.service.clone(), request, InFlight::new(record, now))
    }
}

impl<S: Service<Req>, Req> fmt::Debug for HashFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            HashState::NotReady { .. } => "not ready",
            HashState::Called { .. } => "called",
            HashState::Rejected => "rejected",
        };
        f.debug_struct("HashFuture").field("state", &state).finish()
    }
}

impl<S, Req> Future for HashFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError> + 'static,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                HashProj::NotReady {
                    service,
                    request,
                    guard,
                } => {
                    if let Err(err) = ready!(service.poll_ready(cx)) {
                        if let Some(mut guard) = guard.take() {
                            guard.finish(CallResult::Failure);
                        }
                        return Poll::Ready(Err(err.into()));
                    }
                    let (Some(request), Some(guard)) = (request.take(), guard.take()) else {
                        panic!("HashFuture polled after completion");
                    };
                    let future = service.call(request);
                    this.state.set(HashState::Called {
                        future: ResponseFuture::called(future, guard, ErrorIsFailure),
                    });
                }
                HashProj::Called { future } => return future.poll(cx),
                HashProj::Rejected => return Poll::Ready(Err(Box::new(NoHealthyEndpoints))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::rendezvous_score;

    #[test]
    fn a_removal_moves_only_the_removed_endpoints_keys() {
        let owner = |endpoints: &[u64], key: u64| {
            *endpoints
                .iter()
                .max_by_key(|e| rendezvous_score(key, palisade_core::rng::mix(**e) | 1))
                .unwrap()
        };
        let ten: Vec<u64> = (0..10).collect();
        let nine: Vec<u64> = (0..10).filter(|e| *e != 3).collect();
        let keys = 20_000u64;
        let mut moved = 0;
        let mut counts = [0u32; 10];
        for key in 0..keys {
            let key = palisade_core::rng::mix(key);
            let before = owner(&ten, key);
            counts[before as usize] += 1;
            let after = owner(&nine, key);
            if before != after {
                assert_eq!(before, 3, "only the removed endpoint's keys move");
                moved += 1;
            }
        }
        let share = f64::from(moved) / keys as f64;
        assert!(share <= 0.1 + 0.01, "{share}");
        for c in counts {
            assert!((1_700..=2_300).contains(&c), "spread: {counts:?}");
        }
    }
}
