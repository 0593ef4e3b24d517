//! [`BalancerService`]: the tower `Service` that picks an endpoint per call.

use crate::balancer::{Entry, Shared, fleet_estimate};
use crate::config::MAX_READY_TRIES;
use crate::endpoint::{Node, Record};
use crate::events::BalancerEvent;
use crate::future::{InFlight, ResponseFuture};
use palisade_core::BoxError;
use palisade_core::classify::{Classify, ErrorIsFailure};
use palisade_core::clock::Instant;
use palisade_core::readiness::poll_observing;
use palisade_core::rejection::RejectionKind;
use palisade_core::rng::{GAMMA, SplitMix64};
use palisade_core::sync::atomic::Ordering;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// What `poll_ready` left for `call` when it reserved no endpoint (a reserved one is kept
/// in [`Reserved`]).
enum Slot<K, S> {
    Empty,
    /// Every endpoint tried was busy: the first of them, polled again next time (its wake-up
    /// is registered).
    Waiting {
        node: Arc<Node<K>>,
        service: S,
    },
    /// No endpoint could take the call: `call` answers [`NoHealthyEndpoints`](crate::NoHealthyEndpoints).
    Reject,
}

/// The endpoint a ready service reserved for its next `call`: a ready clone of the chosen
/// endpoint's service, when it was picked, and the endpoint breaker's permit.
///
/// Each part is its own field, taken by `call` one at a time, rather than one `Option` of the
/// four moved out whole: `poll_ready` writes the parts as it gets them (word by word), and a
/// move of the whole reads them back as 16-byte words, which the CPU cannot forward from
/// those stores (perf, `load_balancer/pick_call_1_thread`: a tenth of the call, in the load of
/// the moved slot).
struct Reserved<K, S> {
    /// `Some` exactly while an endpoint is reserved (then `service` is `Some` too).
    node: Option<Arc<Node<K>>>,
    service: Option<S>,
    picked: Instant,
    /// The endpoint breaker's permit, taken once the endpoint was ready.
    permit: Option<palisade_circuit_breaker::OwnedPermit>,
}

impl<K, S> Reserved<K, S> {
    const NONE: Reserved<K, S> = Reserved {
        node: None,
        service: None,
        picked: Instant::ZERO,
        permit: None,
    };

    fn is_some(&self) -> bool {
        self.node.is_some()
    }

    /// Reserves `service` of `node`, picked at `picked`.
    fn set(
        &mut self,
        node: Arc<Node<K>>,
        service: S,
        picked: Instant,
        permit: Option<palisade_circuit_breaker::OwnedPermit>,
    ) {
        self.node = Some(node);
        self.service = Some(service);
        self.picked = picked;
        self.permit = permit;
    }
}

/// The endpoint set a service picks from, kept between its calls.
///
/// Reading the set through the `ArcSwap` costs two atomic read-modify-writes per pick (a debt
/// slot taken and paid back); a kept `Arc` of the set costs one atomic load per pick (the
/// set's generation, compared with the kept one). A fresh service or clone starts `Cold` and
/// reads its first set through a guard, so a clone that is polled once (a retry's) costs no
/// reference count; from its second poll on it keeps the set.
enum SetCache<K, S> {
    /// Never polled.
    Cold,
    /// Polled once, through a guard.
    Warm,
    /// The set published with `generation`.
    Kept {
        generation: u64,
        set: Arc<Vec<Entry<K, S>>>,
    },
}

/// The endpoint breaker's permit for a call to `node`: `Ok(None)` without a breaker,
/// `Err(())` when the breaker refuses.
#[inline]
fn admit<K: Clone + Send + Sync + 'static>(
    node: &Node<K>,
    now: Instant,
) -> Result<Option<palisade_circuit_breaker::OwnedPermit>, ()> {
    match &node.breaker {
        None => Ok(None),
        Some(breaker) => breaker.admit(now).map(Some).ok_or(()),
    }
}

/// The balancing `Service` of a [`Balancer`](crate::Balancer), from
/// [`Balancer::service`](crate::Balancer::service).
///
/// # Readiness
///
/// `poll_ready` picks an endpoint among the healthy ones (outlier ejection first, then the
/// strategy) and polls a fresh clone of its service:
/// - ready: reserved for the next `call`;
/// - not ready: passed over for another pick, up to `max_ready_tries` endpoints; if all were
///   busy, `Pending`, woken by the first of them (which is polled first next time);
/// - `poll_ready` failed: that clone is discarded (tower's contract) and the endpoint charged a
///   failure, which counts towards its ejection — it is never dropped from the set for it;
/// - with [`endpoint_breaker`](crate::BalancerBuilder::endpoint_breaker): an endpoint whose
///   breaker is open is not a candidate at all; a ready endpoint takes a breaker permit (a
///   half-open probe when its wait is over), and one whose breaker refuses is passed over like
///   a busy one, never waited on;
/// - no candidate at all (empty set, or every endpoint tried failed): `Ready`, and `call`
///   answers [`NoHealthyEndpoints`](crate::NoHealthyEndpoints) from its future. `poll_ready`
///   itself never fails, so the service works under `Buffer`, tower's `Balance` and
///   hyper/tonic clients.
///
/// A service keeps the endpoint set it last picked from until its next `poll_ready` (which
/// takes up a set changed meanwhile, `insert` and `remove` never wait for it), so the
/// services of a removed endpoint are dropped once every `BalancerService` that picked from
/// a set with it has polled again, or has been dropped.
///
/// # Retries go to another endpoint
///
/// A retry layer above (palisade-retry, tower's `Retry`) clones the service it retries
/// through. A **clone remembers the endpoint its parent had reserved or last called**, and
/// every pick it makes avoids the endpoint of its previous attempt when another candidate
/// exists (Ribbon's `MaxAutoRetriesNextServer`). palisade-retry clones the inner service
/// between `poll_ready` and `call` of the first attempt, tower's `Retry` after the call; both
/// lineages lead the retry elsewhere. A service that is not a clone (the root) never avoids
/// anything, so the strategy's choice is untouched for first attempts. No request type,
/// extension or change to the retry layer is needed.
///
/// # Classification
///
/// `C` decides what counts as an endpoint's failure (default [`ErrorIsFailure`]: every error,
/// except a local rejection from a layer below, which is charged the failure penalty but never
/// ejects). An `Ignore` outcome (say, an HTTP 404 from a classifier of yours) records the
/// latency and leaves health alone. Set one with
/// [`Balancer::service_with`](crate::Balancer::service_with).
///
/// # Errors
///
/// The endpoint's error, boxed; [`NoHealthyEndpoints`](crate::NoHealthyEndpoints) when no
/// endpoint could take the call.
///
/// # Panics
///
/// `call` panics when `poll_ready` did not return `Ready` first (tower's contract).
pub struct BalancerService<K, S, C = ErrorIsFailure> {
    shared: Arc<Shared<K, S>>,
    classify: C,
    /// The sampler of the strategy's draws; a clone seeds its own at its first pick (see
    /// `Clone`).
    rng: Option<SplitMix64>,
    reserved: Reserved<K, S>,
    slot: Slot<K, S>,
    set: SetCache<K, S>,
    /// The endpoint this service last reserved or called (identity, not index).
    last: Option<u64>,
    /// The endpoint a retry through this clone avoids; `None` for a root service.
    avoid: Option<u64>,
}

impl<K, S, C> BalancerService<K, S, C> {
    pub(crate) fn new(shared: Arc<Shared<K, S>>, classify: C) -> Self {
        let rng = Some(draw_seed(&shared));
        BalancerService {
            shared,
            classify,
            rng,
            reserved: Reserved::NONE,
            slot: Slot::Empty,
            set: SetCache::Cold,
            last: None,
            avoid: None,
        }
    }

    /// The balancer this service draws from.
    #[must_use]
    pub fn balancer(&self) -> crate::Balancer<K, S> {
        crate::Balancer {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The endpoint service reserved by the last successful `poll_ready`, if any.
    #[must_use]
    pub fn get_ref(&self) -> Option<&S> {
        self.reserved.service.as_ref()
    }

    /// The reserved endpoint service, mutably.
    pub fn get_mut(&mut self) -> Option<&mut S> {
        self.reserved.service.as_mut()
    }

    /// The reserved endpoint service, giving up the reservation.
    #[must_use]
    pub fn into_inner(mut self) -> Option<S> {
        self.reserved.service.take()
    }
}

impl<K, S, C: Clone> Clone for BalancerService<K, S, C> {
    /// A clone shares the balancer; it does not share a reservation (tower's contract). It
    /// remembers the endpoint its parent had reserved or last called, and avoids it: see
    /// "Retries go to another endpoint".
    ///
    /// A clone is cheap, as a retry layer makes one per call: one reference count, no
    /// allocation; its sampler is seeded from the balancer's seed stream at its first pick,
    /// so a clone that never picks (a retry that was not needed) takes nothing from it.
    fn clone(&self) -> Self {
        let lineage = match (&self.reserved.node, &self.slot) {
            (Some(node), _) | (None, Slot::Waiting { node, .. }) => Some(node.id),
            _ => self.last,
        };
        BalancerService {
            shared: Arc::clone(&self.shared),
            classify: self.classify.clone(),
            rng: None,
            reserved: Reserved::NONE,
            slot: Slot::Empty,
            set: SetCache::Cold,
            last: lineage,
            avoid: lineage,
        }
    }
}

impl<K: fmt::Debug, S, C> fmt::Debug for BalancerService<K, S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slot = match &self.slot {
            _ if self.reserved.is_some() => "ready",
            Slot::Empty => "empty",
            Slot::Waiting { .. } => "waiting",
            Slot::Reject => "reject",
        };
        f.debug_struct("BalancerService")
            .field("balancer", &self.shared.core.name)
            .field("slot", &slot)
            .field("avoid", &self.avoid)
            .finish()
    }
}

/// A seed of the balancer's seed stream, for one service's sampler.
fn draw_seed<K, S>(shared: &Shared<K, S>) -> SplitMix64 {
    // Relaxed: the seed stream only needs distinct values; the RMW gives each its own.
    SplitMix64::new(shared.seeds.fetch_add(GAMMA, Ordering::Relaxed))
}

impl<K, S, C> BalancerService<K, S, C>
where
    K: Clone + Send + Sync + 'static,
{
    /// Chooses a candidate of `set`: not excluded, not ejected (unless in panic), not the
    /// endpoint to avoid (unless it is the only candidate). An associated function, not a
    /// method, so that `set` may borrow the service's kept set meanwhile.
    fn pick(
        shared: &Shared<K, S>,
        rng: &mut Option<SplitMix64>,
        avoid: Option<u64>,
        set: &[Entry<K, S>],
        now: Instant,
        excluded: &[u64],
    ) -> Option<usize> {
        let core = &*shared.core;
        let n = set.len();
        if n == 0 {
            return None;
        }
        if core.outlier.has_interval_detectors() {
            crate::balancer::maybe_evaluate(set, now, core);
        }
        let panic = core.outlier.in_panic(core.ejected_count(), n);
        let passes: &[Option<u64>] = match avoid {
            Some(id) => &[Some(id), None],
            None => &[None],
        };
        for &avoid in passes {
            let probe = |i: usize| {
                let node = &set[i].node;
                if Some(node.id) == avoid || excluded.contains(&node.id) {
                    return None;
                }
                if !panic && node.is_ejected(now, || fleet_estimate(set, now, core, Some(node.id)))
                {
                    return None;
                }
                // Availability filtering: an open breaker is not a candidate, even in panic.
                if !node.breaker_allows(now) {
                    return None;
                }
                Some(crate::strategy::Load {
                    pending: node.stats.pending(),
                    latency_ns: node.pick_latency_ns(now),
                    weight: node.meta.weight,
                })
            };
            let draw = rng.get_or_insert_with(|| draw_seed(shared)).next_u64();
            if let Some(i) = shared.strategy.pick(n, &probe, draw) {
                return Some(i);
            }
        }
        None
    }
}

impl<K, S, C, Req> Service<Req> for BalancerService<K, S, C>
where
    K: Clone + Send + Sync + 'static,
    S: Service<Req> + Clone,
    S::Error: Into<BoxError> + 'static,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let clock = &self.shared.core.clock;
        if self.reserved.is_some() {
            return Poll::Ready(Ok(()));
        }
        let mut waiting = None;
        // The tag first: an empty slot (after every call) is not moved out and written back.
        let slot = match self.slot {
            Slot::Empty => Slot::Empty,
            _ => std::mem::replace(&mut self.slot, Slot::Empty),
        };
        match slot {
            // A rejection decided earlier and not spent: decide again, endpoints may be back.
            Slot::Reject | Slot::Empty => {}
            // The endpoint waited on left the set meanwhile: pick again among the current ones.
            Slot::Waiting { node, .. } if node.is_removed() => {}
            Slot::Waiting { node, mut service } => {
                match poll_observing(|| service.poll_ready(cx)) {
                    (Poll::Ready(Ok(())), _) => {
                        let now = clock.now();
                        // A breaker that opened meanwhile refuses: pick another below.
                        if let Ok(permit) = admit(&node, now) {
                            self.reserved.set(node, service, now, permit);
                            return Poll::Ready(Ok(()));
                        }
                    }
                    (Poll::Ready(Err(_)), _) => node.readiness_failed(clock.now()),
                    // Its gate shut meanwhile: not worth waiting on; pick among the others below.
                    (Poll::Pending, Some(wait)) => node.shut_for(clock.now(), wait),
                    (Poll::Pending, None) => waiting = Some((node, service)),
                }
            }
        }

        // The set: the kept one while its generation is current, else read afresh.
        // Acquire: pairs with the Release increment after each store of the set (`insert`,
        // `remove`): a set read after seeing a generation is at least as new as that
        // generation's; an increment not seen yet leaves the predecessor, as a plain load of
        // the `ArcSwap` racing the store could.
        let generation = self.shared.generation.load(Ordering::Acquire);
        let mut guard = None;
        match &mut self.set {
            SetCache::Kept {
                generation: kept, ..
            } if *kept == generation => {}
            cold @ SetCache::Cold => {
                *cold = SetCache::Warm;
                guard = Some(self.shared.set.load());
            }
            cache => {
                *cache = SetCache::Kept {
                    generation,
                    set: self.shared.set.load_full(),
                };
            }
        }
        let recheck;
        let mut set: &[Entry<K, S>] = match (&guard, &self.set) {
            (Some(guard), _) => guard,
            (None, SetCache::Kept { set, .. }) => set,
            // Not reached: without a guard the match above kept a set.
            (None, _) => &[],
        };
        if set.is_empty() && self.shared.when_empty == crate::WhenEmpty::Wait {
            {
                let mut waiters = self.shared.empty_waiters.lock();
                if waiters.len() >= 1_024 {
                    // Bound the list (tasks that gave up leave their wakers behind): wake every
                    // one; a task still waiting registers again when it polls.
                    for waker in waiters.drain(..) {
                        waker.wake();
                    }
                }
                if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    waiters.push(cx.waker().clone());
                }
            }
            // Re-check after registering, reading the set itself (not a kept one): an
            // insertion in between has either published its set (seen here) or will find
            // this waker in the list.
            recheck = self.shared.set.load();
            if recheck.is_empty() {
                return Poll::Pending;
            }
            set = &recheck;
        }
        let now = clock.now();
        let mut excluded = [u64::MAX; MAX_READY_TRIES + 1];
        let mut excluded_len = 0;
        if let Some((node, _)) = &waiting {
            excluded[0] = node.id;
            excluded_len = 1;
        }
        // Tries spent on endpoints that were not ready. An endpoint found shut costs none: it
        // is filtered out of every later pick at this `now` (`shut_for`), so the loop still
        // ends, after at most one poll per endpoint, and one shut endpoint more or less never
        // decides whether a healthy one gets its turn.
        let mut tries = 0;
        while tries < self.shared.max_ready_tries {
            let Some(i) = Self::pick(
                &self.shared,
                &mut self.rng,
                self.avoid,
                set,
                now,
                &excluded[..excluded_len],
            ) else {
                break;
            };
            let entry = &set[i];
            let mut service = entry.service.clone();
            match poll_observing(|| service.poll_ready(cx)) {
                (Poll::Ready(Ok(())), _) => {
                    // A breaker that refuses (half-open with its probes out, or opened since
                    // the filter looked) passes the endpoint over, like a busy one.
                    if let Ok(permit) = admit(&entry.node, now) {
                        self.last = Some(entry.node.id);
                        self.reserved
                            .set(Arc::clone(&entry.node), service, now, permit);
                        return Poll::Ready(Ok(()));
                    }
                }
                // The failed clone is dropped (tower: a service whose readiness failed is
                // discarded); the endpoint stays in the set, charged a failure.
                (Poll::Ready(Err(_)), _) => entry.node.readiness_failed(now),
                // Shut (an open gate-mode breaker), not busy: passed over like an open breaker
                // of the balancer's own, and not polled again until its wait is over. With
                // every endpoint shut the call is rejected at once rather than waiting.
                (Poll::Pending, Some(wait)) => {
                    entry.node.shut_for(now, wait);
                    continue;
                }
                (Poll::Pending, None) => {
                    if waiting.is_none() {
                        waiting = Some((Arc::clone(&entry.node), service));
                    }
                }
            }
            excluded[excluded_len] = entry.node.id;
            excluded_len += 1;
            tries += 1;
        }
        if let Some((node, service)) = waiting {
            self.slot = Slot::Waiting { node, service };
            return Poll::Pending;
        }
        self.slot = Slot::Reject;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> ResponseFuture<S::Future, C> {
        let reserved = &mut self.reserved;
        if let (Some(node), Some(service)) = (reserved.node.take(), reserved.service.as_mut()) {
            self.last = Some(node.id);
            if self.avoid.is_some() {
                // A retry clone: its next attempt avoids this endpoint.
                self.avoid = Some(node.id);
            }
            node.stats.begin();
            // The guard exists before the endpoint's `call` runs, so a panic in it gives the
            // pending count back.
            let record: Arc<dyn Record> = node;
            let guard = InFlight::with_permit(record, reserved.picked, reserved.permit.take());
            // Called where it lies, then dropped: not moved out first (see `Reserved`).
            let future = service.call(request);
            reserved.service = None;
            return ResponseFuture::called(future, guard, self.classify.clone());
        }
        match std::mem::replace(&mut self.slot, Slot::Empty) {
            Slot::Reject => {
                self.shared
                    .core
                    .events
                    .emit_call_with(|| BalancerEvent::CallRejected {
                        kind: RejectionKind::NoHealthyEndpoints,
                    });
                ResponseFuture::rejected()
            }
            Slot::Empty | Slot::Waiting { .. } => {
                panic!("BalancerService::call without a Ready poll_ready first")
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::{Balancer, EndpointMeta};
    use palisade_core::sync::atomic::Ordering;
    use palisade_core::test_util::{Echo, call_now};

    /// A clone (a retry layer makes one per call) takes a seed from the balancer's stream only
    /// when it first picks; a root service takes one when it is made.
    #[test]
    fn a_clone_seeds_its_sampler_at_its_first_pick() {
        let balancer: Balancer<u32, Echo> = Balancer::builder().seed(5).build().unwrap();
        balancer.insert(0, Echo, EndpointMeta::new());
        balancer.insert(1, Echo, EndpointMeta::new());
        let seeds = || balancer.shared.seeds.load(Ordering::Relaxed);
        let start = seeds();
        let mut root = balancer.service();
        let after_root = seeds();
        assert_ne!(after_root, start, "a root service draws its seed when made");
        assert!(matches!(call_now(&mut root, 1u64), Some(Ok(1))));
        let clones: Vec<_> = (0..3).map(|_| root.clone()).collect();
        assert_eq!(seeds(), after_root, "clones that never pick draw nothing");
        drop(clones);
        let mut clone = root.clone();
        assert!(matches!(call_now(&mut clone, 2u64), Some(Ok(2))));
        let after_pick = seeds();
        assert_ne!(
            after_pick, after_root,
            "the clone's first pick draws its seed"
        );
        assert!(matches!(call_now(&mut clone, 3u64), Some(Ok(3))));
        assert_eq!(seeds(), after_pick, "once");
    }
}
