//! [`Balancer`]: the handle that owns the endpoint set.

use crate::config::{BalancerBuilder, EndpointMeta};
use crate::endpoint::{Core, Node};
use crate::events::BalancerEvent;
use crate::service::BalancerService;
use crate::strategy::Strategy;
use arc_swap::ArcSwap;
use palisade_core::classify::ErrorIsFailure;
use palisade_core::clock::{Clock, Instant};
use palisade_core::events::{EventBus, Listener, ListenerId};
use palisade_core::rng::random_seed;
use palisade_core::sync::Mutex;
use palisade_core::sync::atomic::{AtomicU64, Ordering};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// One endpoint of the set: its shared node and the service clones are made from.
pub(crate) struct Entry<K, S> {
    pub(crate) node: Arc<Node<K>>,
    pub(crate) service: S,
}

impl<K, S: Clone> Clone for Entry<K, S> {
    fn clone(&self) -> Self {
        Entry {
            node: Arc::clone(&self.node),
            service: self.service.clone(),
        }
    }
}

pub(crate) struct Shared<K, S> {
    pub(crate) core: Arc<Core<K>>,
    /// The endpoint set: copied on write, so a pick loads it without a lock.
    pub(crate) set: ArcSwap<Vec<Entry<K, S>>>,
    pub(crate) strategy: Arc<dyn Strategy>,
    pub(crate) max_ready_tries: usize,
    /// What `poll_ready` does with an empty set.
    pub(crate) when_empty: crate::WhenEmpty,
    /// Tasks waiting for a first endpoint ([`WhenEmpty::Wait`](crate::WhenEmpty::Wait)); cold
    /// path only: an empty set.
    pub(crate) empty_waiters: Mutex<Vec<std::task::Waker>>,
    /// Serialises writers of `set` (insert, remove), never taken by a pick.
    set_lock: Mutex<()>,
    next_id: AtomicU64,
    /// Seeds of the services' samplers: each service and clone draws its own.
    pub(crate) seeds: AtomicU64,
    /// Incremented after every store of `set`, so a service that keeps a set knows with one
    /// load whether it is still current.
    pub(crate) generation: AtomicU64,
}

/// A client-side load balancer over endpoints of type `S` keyed by `K`: the handle.
///
/// `Clone` (an `Arc` inside): clones share the endpoint set, the statistics and the health of
/// every endpoint. [`service`](Balancer::service) gives a tower `Service` that balances over
/// the current set; make as many as you like (one per task, per connection): they are all one
/// balancer, and none needs a `Buffer`.
///
/// Endpoints are added and removed at run time with [`insert`](Balancer::insert) and
/// [`remove`](Balancer::remove). A change copies the set (copy-on-write) and swaps it in
/// atomically: it never blocks a pick, a pick never blocks it, and a removed endpoint's calls in
/// flight finish normally (their statistics live as long as they do).
///
/// Endpoint services must be `Clone`: every call is made on a fresh clone of the endpoint's
/// service, so many callers use one endpoint at once without a lock. A hyper client, a tonic
/// `Channel` or a service behind tower's `Buffer` clones cheaply.
///
/// # Memory ordering
///
/// The set is an [`ArcSwap`]: a pick's load is a wait-free read that sees a complete set
/// (the one published by the last store, or its predecessor). Writers hold a lock among
/// themselves. Endpoint statistics are relaxed atomics, health changes are made under a health
/// lock; see the notes in the `endpoint` module.
pub struct Balancer<K, S> {
    pub(crate) shared: Arc<Shared<K, S>>,
}

impl<K, S> Clone for Balancer<K, S> {
    fn clone(&self) -> Self {
        Balancer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K: fmt::Debug, S> fmt::Debug for Balancer<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self.shared.set.load();
        f.debug_struct("Balancer")
            .field("name", &self.shared.core.name)
            .field("strategy", &self.shared.strategy)
            .field(
                "endpoints",
                &set.iter().map(|e| &e.node.key).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A point-in-time view of a balancer, from [`Balancer::snapshot`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BalancerSnapshot<K> {
    /// The balancer's name.
    pub name: Arc<str>,
    /// Every endpoint of the set, in set order.
    pub endpoints: Vec<EndpointSnapshot<K>>,
    /// Endpoints ejected now.
    pub ejected: usize,
    /// Whether so few endpoints are healthy that ejection is ignored (panic mode).
    pub panic: bool,
}

/// One endpoint in a [`BalancerSnapshot`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EndpointSnapshot<K> {
    /// Its key.
    pub key: K,
    /// Calls in flight.
    pub pending: u64,
    /// The peak-EWMA latency estimate now (failures count as the failure penalty).
    pub latency: Duration,
    /// Calls sent to it.
    pub calls: u64,
    /// Failures (errors of calls, and failed readiness checks).
    pub failures: u64,
    /// Failures since its last success.
    pub consecutive_failures: u32,
    /// Ejections in a row (resets on a success after a restoration).
    pub times_ejected: u32,
    /// `Some(remaining)` while ejected.
    pub ejected_for: Option<Duration>,
    /// Its weight, from its [`EndpointMeta`].
    pub weight: u32,
    /// The state of its circuit breaker, with
    /// [`endpoint_breaker`](BalancerBuilder::endpoint_breaker) set.
    pub breaker: Option<palisade_circuit_breaker::State>,
}

impl Balancer<(), ()> {
    /// A builder with the defaults; its [`build`](BalancerBuilder::build) chooses the key and
    /// service types (`Balancer::builder().build::<K, S>()`, or inferred from the binding).
    #[must_use]
    pub fn builder() -> BalancerBuilder {
        BalancerBuilder::default()
    }
}

impl<K, S> Balancer<K, S>
where
    K: Clone + PartialEq + fmt::Debug + Send + Sync + 'static,
    S: Clone + Send + Sync + 'static,
{
    /// A balancer with every default over `endpoints` (weight 1, no zone).
    #[must_use]
    pub fn new(endpoints: impl IntoIterator<Item = (K, S)>) -> Self {
        // The defaults need no validation.
        let balancer = Balancer::from_builder(BalancerBuilder::default());
        for (key, service) in endpoints {
            balancer.insert(key, service, EndpointMeta::default());
        }
        balancer
    }

    pub(crate) fn from_builder(builder: BalancerBuilder) -> Self {
        let name: Arc<str> = builder.name.unwrap_or_else(|| Arc::from("load_balancer"));
        let seed = builder.seed.unwrap_or_else(random_seed);
        let events = EventBus::new();
        palisade_core::subscribe_feature_listeners!(events, "load_balancer", name);
        let mut core = Core::new(
            Arc::clone(&name),
            builder.clock.unwrap_or_default(),
            builder.decay,
            builder.failure_penalty,
            builder.default_rtt,
            builder.outlier,
            events,
            seed ^ 0x6a09_e667_f3bc_c908,
            (builder.local_zone, builder.remote_zone_factor),
            builder.slow_start.map(|window| crate::endpoint::SlowStart {
                window_ns: palisade_core::clock::duration_to_nanos(window) as f64,
                aggression: 1.0,
                min_factor: 0.1,
            }),
        );
        core.breaker_template = builder.endpoint_breaker;
        core.idle_probe_ns = builder
            .idle_probe_interval
            .map(palisade_core::clock::duration_to_nanos);
        Balancer {
            shared: Arc::new(Shared {
                core: Arc::new(core),
                set: ArcSwap::from_pointee(Vec::new()),
                strategy: builder.strategy,
                max_ready_tries: builder.max_ready_tries,
                set_lock: Mutex::new(()),
                when_empty: builder.when_empty,
                empty_waiters: Mutex::new(Vec::new()),
                next_id: AtomicU64::new(0),
                seeds: AtomicU64::new(seed),
                generation: AtomicU64::new(0),
            }),
        }
    }

    /// A tower `Service` over this balancer's endpoints, with the default classification
    /// ([`ErrorIsFailure`]: every error is an endpoint's failure, except a local rejection
    /// from below).
    #[must_use]
    pub fn service(&self) -> BalancerService<K, S> {
        BalancerService::new(Arc::clone(&self.shared), ErrorIsFailure)
    }

    /// A tower `Service` over this balancer's endpoints whose results `classify` judges for
    /// the endpoints' health (e.g. an HTTP 5xx answer as a failure, a 4xx as `Ignore`). Any
    /// `Fn(Result<&Res, &Err>) -> Outcome + Clone` closure is a classifier.
    #[must_use]
    pub fn service_with<C: Clone>(&self, classify: C) -> BalancerService<K, S, C> {
        BalancerService::new(Arc::clone(&self.shared), classify)
    }

    /// Adds an endpoint, or replaces the one with the same key (whose calls in flight finish
    /// normally). Never blocks a pick.
    pub fn insert(&self, key: K, service: S, meta: EndpointMeta) {
        let shared = &*self.shared;
        let core = &shared.core;
        let event = {
            let _writer = shared.set_lock.lock();
            let current = shared.set.load_full();
            let now = core.clock.now();
            let estimate = fleet_estimate(&current, now, core, None);
            // Relaxed: ids need only be unique; the RMW guarantees it.
            let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
            let mut node = Node::new(key.clone(), id, meta, estimate, Arc::clone(core));
            node.breaker = core.new_endpoint_breaker(&key, id);
            let node = Arc::new(node);
            let mut next: Vec<Entry<K, S>> = Vec::with_capacity(current.len() + 1);
            let mut replaced = None;
            for entry in current.iter() {
                if entry.node.key == key {
                    replaced = Some(Arc::clone(&entry.node));
                } else {
                    next.push(entry.clone());
                }
            }
            next.push(Entry { node, service });
            let endpoints = next.len();
            let ejected = {
                let _health = core.health_lock.lock();
                if let Some(old) = &replaced {
                    old.mark_removed();
                }
                // Relaxed: written under the health lock, which ejection decisions hold.
                core.total.store(endpoints, Ordering::Relaxed);
                core.ejected_count()
            };
            shared.set.store(Arc::new(next));
            // Release: pairs with the Acquire load in `BalancerService::poll_ready`: a service
            // that sees this generation reads this set (or a newer one). Under the writers'
            // lock, so generations and sets advance together.
            shared.generation.fetch_add(1, Ordering::Release);
            // After the store: a waiter registers before it re-checks the set, so it either
            // sees this set or is in the list drained here.
            for waker in shared.empty_waiters.lock().drain(..) {
                waker.wake();
            }
            BalancerEvent::EndpointAdded {
                key,
                endpoints,
                ejected,
            }
        };
        core.events.emit(event);
    }

    /// A `Service` that sends each request to the endpoint its key hashes to (rendezvous
    /// hashing over the healthy endpoints; see [`HashService`](crate::HashService)), for
    /// affinity: `balancer.hashed(|req: &Request| hash_of(req.user_id))`.
    #[must_use]
    pub fn hashed<H: Clone>(&self, hash: H) -> crate::HashService<K, S, H> {
        crate::HashService::new(Arc::clone(&self.shared), hash)
    }

    /// Applies the changes of a [`Discover`](tower::discover::Discover) stream (tower's
    /// service discovery: `Change::Insert` and `Change::Remove`) to this balancer until the
    /// stream ends, with default [`EndpointMeta`]. Spawn it beside the traffic:
    /// `tokio::spawn(balancer.clone().follow(discover))`; picks never wait for it.
    ///
    /// # Errors
    ///
    /// The stream's error, which ends the following (the set keeps its endpoints).
    pub async fn follow<D>(self, discover: D) -> Result<(), D::Error>
    where
        D: tower::discover::Discover<Key = K, Service = S>,
    {
        let mut discover = std::pin::pin!(discover);
        while let Some(change) =
            std::future::poll_fn(|cx| discover.as_mut().poll_discover(cx)).await
        {
            match change? {
                tower::discover::Change::Insert(key, service) => {
                    self.insert(key, service, EndpointMeta::default());
                }
                tower::discover::Change::Remove(key) => {
                    self.remove(&key);
                }
            }
        }
        Ok(())
    }

    /// Removes the endpoint with this key; its calls in flight finish normally. Returns
    /// whether it was in the set. Never blocks a pick.
    pub fn remove(&self, key: &K) -> bool {
        let shared = &*self.shared;
        let core = &shared.core;
        let event = {
            let _writer = shared.set_lock.lock();
            let current = shared.set.load_full();
            let Some(position) = current.iter().position(|e| &e.node.key == key) else {
                return false;
            };
            let mut next: Vec<Entry<K, S>> = Vec::with_capacity(current.len());
            next.extend(
                current
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != position)
                    .map(|(_, e)| e.clone()),
            );
            let endpoints = next.len();
            let ejected = {
                let _health = core.health_lock.lock();
                current[position].node.mark_removed();
                // Relaxed: written under the health lock.
                core.total.store(endpoints, Ordering::Relaxed);
                core.ejected_count()
            };
            shared.set.store(Arc::new(next));
            // Release: as in `insert`, pairs with the Acquire in `BalancerService::poll_ready`.
            shared.generation.fetch_add(1, Ordering::Release);
            BalancerEvent::EndpointRemoved {
                key: current[position].node.key.clone(),
                endpoints,
                ejected,
            }
        };
        core.events.emit(event);
        true
    }
}

impl<K, S> Balancer<K, S>
where
    K: Clone + Send + Sync + 'static,
{
    /// Endpoints in the set.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shared.set.load().len()
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys of the set, in set order.
    #[must_use]
    pub fn keys(&self) -> Vec<K> {
        self.shared
            .set
            .load()
            .iter()
            .map(|e| e.node.key.clone())
            .collect()
    }

    /// The balancer's name (events, metrics).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.core.name
    }

    /// The clock the balancer reads.
    #[must_use]
    pub fn clock(&self) -> &Clock {
        &self.shared.core.clock
    }

    /// Every endpoint's statistics and health now.
    #[must_use]
    pub fn snapshot(&self) -> BalancerSnapshot<K> {
        let core = &self.shared.core;
        let set = self.shared.set.load();
        let now = core.clock.now();
        let ejected = core.ejected_count();
        BalancerSnapshot {
            name: Arc::clone(&core.name),
            endpoints: set.iter().map(|e| e.node.snapshot(now)).collect(),
            ejected,
            panic: core.outlier.in_panic(ejected, set.len()),
        }
    }

    /// Sets per-endpoint gauges from a [`snapshot`](Self::snapshot) (feature `metrics`):
    /// `palisade_load_balancer_endpoint_pending`, `..._endpoint_latency_seconds` (the latency
    /// estimate), `..._endpoint_calls` and `..._endpoint_failures` (totals),
    /// `..._endpoint_ejections` (ejections in a row), `..._endpoint_ejected` (1 or 0) and,
    /// with per-endpoint breakers, `..._endpoint_breaker_open` (1 while open or half-open),
    /// each labelled `name` and `endpoint` (the key's `Display`).
    ///
    /// Not recorded per call: call it periodically (say, from your metrics scrape), so that the
    /// cost and the label cardinality follow the endpoint set, not the traffic. An endpoint
    /// that left the set keeps its last values until the exporter forgets them.
    #[cfg(feature = "metrics")]
    pub fn export_endpoint_metrics(&self)
    where
        K: fmt::Display,
    {
        let snapshot = self.snapshot();
        for e in &snapshot.endpoints {
            let labels = [
                ("name", snapshot.name.to_string()),
                ("endpoint", e.key.to_string()),
            ];
            metrics::gauge!("palisade_load_balancer_endpoint_pending", &labels)
                .set(e.pending as f64);
            metrics::gauge!("palisade_load_balancer_endpoint_latency_seconds", &labels)
                .set(e.latency.as_secs_f64());
            metrics::gauge!("palisade_load_balancer_endpoint_calls", &labels).set(e.calls as f64);
            metrics::gauge!("palisade_load_balancer_endpoint_failures", &labels)
                .set(e.failures as f64);
            metrics::gauge!("palisade_load_balancer_endpoint_ejections", &labels)
                .set(f64::from(e.times_ejected));
            metrics::gauge!("palisade_load_balancer_endpoint_ejected", &labels)
                .set(if e.ejected_for.is_some() { 1.0 } else { 0.0 });
            if let Some(state) = e.breaker {
                let open = !matches!(
                    state,
                    palisade_circuit_breaker::State::Closed
                        | palisade_circuit_breaker::State::Disabled
                        | palisade_circuit_breaker::State::MetricsOnly
                );
                metrics::gauge!("palisade_load_balancer_endpoint_breaker_open", &labels)
                    .set(if open { 1.0 } else { 0.0 });
            }
        }
    }

    /// Delivers every later [`BalancerEvent`] to `listener`.
    pub fn subscribe<L: Listener<BalancerEvent<K>>>(&self, listener: L) -> ListenerId {
        self.shared.core.events.subscribe(listener)
    }

    /// Removes a listener; `false` if it was not subscribed.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        self.shared.core.events.unsubscribe(id)
    }
}

/// Runs the interval detectors when their interval has passed: one picking thread wins the
/// CAS and judges the set under the health lock (cold path, O(n) once per interval).
#[inline]
pub(crate) fn maybe_evaluate<K: Clone + Send + Sync + 'static, S>(
    set: &[Entry<K, S>],
    now: Instant,
    core: &Core<K>,
) {
    // Relaxed: the CAS below decides who evaluates; nothing else is published through it.
    let due = core.next_evaluation.load(Ordering::Relaxed);
    if now.as_nanos() < due {
        return;
    }
    let next = now.saturating_add(core.outlier.interval).as_nanos();
    // Relaxed: only one thread per interval may win; the evaluation itself runs under the
    // health lock.
    if core
        .next_evaluation
        .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    if due == 0 {
        // The first interval starts now: reset the bases, judge nothing yet.
        let _health = core.health_lock.lock();
        for e in set {
            let _ = e.node.take_interval();
        }
        return;
    }
    evaluate(set, now, core);
}

#[cold]
fn evaluate<K: Clone + Send + Sync + 'static, S>(
    set: &[Entry<K, S>],
    now: Instant,
    core: &Core<K>,
) {
    let events: Vec<BalancerEvent<K>> = {
        let _health = core.health_lock.lock();
        let counts: Vec<(u64, u64)> = set.iter().map(|e| e.node.take_interval()).collect();
        core.outlier
            .interval_outliers(&counts)
            .into_iter()
            .filter_map(|i| set[i].node.eject_locked(now))
            .collect()
    };
    for event in events {
        core.events.emit(event);
    }
}

/// The latency estimate a new or restored endpoint starts from: the lowest current estimate
/// among the other endpoints that are not ejected (so it is neither flooded nor starved), or
/// the configured default with no such endpoint.
pub(crate) fn fleet_estimate<K, S>(
    set: &[Entry<K, S>],
    now: Instant,
    core: &Core<K>,
    except: Option<u64>,
) -> f64 {
    set.iter()
        .filter(|e| Some(e.node.id) != except && !e.node.stats.is_flagged_ejected())
        .map(|e| e.node.stats.latency_ns(now, core.tau))
        .filter(|l| *l > 0.0)
        .fold(None, |min: Option<f64>, l| {
            Some(min.map_or(l, |m| m.min(l)))
        })
        .unwrap_or(core.default_rtt_ns)
}
