//! One endpoint's shared statistics and health, in atomics: what a pick reads and what a
//! finished call records. No tower types.
//!
//! # Memory ordering
//!
//! The statistics (latency estimate and its time stamp, call counters) are
//! `Relaxed`: each is a number that a pick reads to compare endpoints, nothing else is published
//! through it, and a stale value only skews one pick. The latency estimate is updated by a CAS
//! loop so concurrent samples are never lost; its time stamp is a separate word, so a sample
//! racing another may be decayed with a slightly wrong elapsed time (the estimate stays between
//! the old value and the samples). The pending count is the difference of two counters,
//! calls sent and calls ended; `ended` is written with `Release` and read first with
//! `Acquire`, so a reader never counts the end of a call whose start it does not count.
//!
//! Health changes (eject, restore, removal from the set) happen under the balancer's health
//! lock, a cold path. The `ejected` flag is stored with `Release` after the ejection deadline,
//! and picks load it with `Acquire`, so a pick that sees the flag also sees the deadline it was
//! ejected with.

use crate::events::BalancerEvent;
use crate::ewma::Tau;
use crate::health::OutlierDetection;
use palisade_core::clock::{Clock, Instant, duration_to_nanos};
use palisade_core::events::EventBus;
use palisade_core::rng::{GAMMA, mix};
use palisade_core::sync::Mutex;
use palisade_core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How a call ended, as the balancer counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallResult {
    /// `Ok`: the latency sample is the call's duration.
    Success,
    /// An error of the endpoint: charged the penalty, counts towards ejection.
    Failure,
    /// A local rejection from a layer below (a per-endpoint breaker, limiter…): charged the
    /// penalty so the endpoint does not look fast, but not a failure of the endpoint.
    Rejected,
    /// The classifier said `Ignore` (not a local rejection): the latency counts, health does
    /// not change.
    Ignored,
}

/// Envoy's slow start: a new or restored endpoint's share ramps up over a window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct SlowStart {
    pub(crate) window_ns: f64,
    pub(crate) aggression: f64,
    pub(crate) min_factor: f64,
}

impl SlowStart {
    /// The ramp factor `elapsed_ns` after activation: `max(min, (t / window)^(1 / aggression))`,
    /// 1 once the window has passed.
    #[inline]
    pub(crate) fn ramp(&self, elapsed_ns: u64) -> f64 {
        let t = elapsed_ns as f64 / self.window_ns;
        if t >= 1.0 {
            return 1.0;
        }
        t.powf(1.0 / self.aggression).max(self.min_factor)
    }
}

/// The part of the failure penalty a success leaves standing: each success halves it.
///
/// A penalty that only decays with time (`e^(-t/τ)`) keeps a recovered endpoint at a fraction
/// of its share for `τ × ln(penalty / healthy cost)`, about 4 s at the defaults, however many
/// calls it has answered meanwhile, which is capacity wasted exactly when a fleet needs it
/// (a surge after a partial outage). Finagle's failure accrual revives an endpoint on its first
/// successful probe; Envoy un-ejects a host fully when its ejection time ends. Halving per
/// success sits between: one lucky success of a flapping endpoint does not erase the penalty
/// (its next failure charges it in full again), but a run of successes does, 1 s down to
/// 10 ms in 7 calls, so a recovered endpoint earns its share back in a few calls.
pub(crate) const PENALTY_KEPT_PER_SUCCESS: f64 = 0.5;

/// Idle probing: how an endpoint priced out by its failure penalty is found again by traffic.
///
/// The penalty is paid off by successes (see [`PENALTY_KEPT_PER_SUCCESS`]), but an endpoint
/// that a penalty prices above its peers gets no calls, so it earns no successes: it waits
/// for the penalty's decay (`τ × ln(penalty / peers' cost)`, 0.4–2 s at the defaults) however
/// early it recovered. Under load that is exactly the wrong time to idle: the peers' cost is
/// `latency × (pending + 1)` with their queues full, a recovered endpoint's workers stand
/// still, and the callers' bulkhead sheds the difference (the demo's surge: e1 recovered as a
/// 3x surge began and was left idle for ~400 ms while ~1 100 calls were refused above).
///
/// So an endpoint **with nothing in flight** whose pick cost is driven by its penalty rather
/// than by its measured latency is re-priced once the
/// [`idle_probe_interval`](crate::BalancerBuilder::idle_probe_interval) (default 100 ms) has
/// passed since its last charged failure: never above the cost of a queue eight calls deep at
/// its last measured latency (`8 × latency`, the latency being the peak-EWMA estimate as its
/// last sample left it, not decayed; [`PROBE_QUEUE_DEPTH`]). A peer showing a loaded
/// cost above that loses the pick to it, so the fleet sends it one call when that call would
/// otherwise wait behind a deep queue (a surge); a fleet at its usual load, whose peers answer
/// after a few calls at most, does not need it and lets the penalty decay as before (so a
/// dead endpoint of a quiet client costs no probes: `fast_failures_never_look_fast`). Eight,
/// not fewer: in the demo's failing phase (peers at ~3 in flight) a depth of 4 let probes
/// through often enough to eject e1 repeatedly, and the last ejection covered the surge's
/// start as the penalty had; at 8 the failing phase sends e1 few probes and the surge finds
/// it at once. As
/// soon as that call is in flight, the endpoint is priced by its penalty again (`pending` is
/// no longer 0), so the probing is bounded: **one call in flight per endpoint and balancer**
/// (clones included; picks racing on several threads may each send one), and after a failed
/// probe **none for an interval**. A successful probe halves the penalty and the endpoint is idle again, so it takes the next probe at
/// once: a recovered endpoint earns its share back in a few calls (1 s down to the peers'
/// loaded cost in 3–7) instead of waiting the decay out. A failing one costs at most one
/// failed call per interval and balancer, and only while its peers are loaded, each one
/// counting towards its ejection as before (an ejected endpoint is not a candidate, probe or
/// not).
///
/// No backoff of the interval per failed probe (Finagle backs its probes off): the load gate
/// already bounds their cost to a small share of a busy fleet's traffic, and a doubled wait
/// is recovery found late exactly when it matters — in a short run of the demo's script a
/// probe that failed 50 ms before the surge pushed the next one 400 ms into it (first success
/// 315 ms after the surge began, against 18 ms with a fixed interval).
///
/// Anchors: Envoy's active health checking and outlier ejection send traffic to an ejected
/// host again when its ejection time ends, so recovery is found by calls, not by a score
/// drifting back; Finagle's failure accrual marks an endpoint dead for a backoff and then
/// lets **one** probe request through (`ProbeOpen`), reviving it on success. Here the dead
/// time is the probe interval and the revival is the penalty halving per success.
///
/// This constant is the interval's default.
pub(crate) const DEFAULT_IDLE_PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// The price of an idle endpoint offered a probe, in multiples of its last measured latency:
/// a pick prefers it to a peer whose cost (`latency × (pending + 1)`) is higher, a peer with
/// a queue about this deep (see [`DEFAULT_IDLE_PROBE_INTERVAL`]).
const PROBE_QUEUE_DEPTH: f64 = 8.0;

/// The atomics of one endpoint.
#[derive(Debug, Default)]
pub(crate) struct EndpointStats {
    /// Calls that ended (answered, cancelled, unwound). The pending count is
    /// `calls - ended`: one RMW per call edge, where a separate pending counter beside
    /// `calls` would take two at the start.
    ended: AtomicU64,
    /// Peak-EWMA latency estimate: `f64` nanoseconds as bits.
    estimate: AtomicU64,
    /// When `estimate` was last updated, in the balancer clock's nanoseconds.
    stamp: AtomicU64,
    /// The failure penalty still charged: `f64` nanoseconds as bits. Kept apart from
    /// `estimate` so that successes pay it off by count (see [`PENALTY_KEPT_PER_SUCCESS`]),
    /// not only by time, and a recovered endpoint's real latency is not lost under it.
    penalty: AtomicU64,
    /// When `penalty` was last set or halved, in the balancer clock's nanoseconds.
    penalty_stamp: AtomicU64,
    /// When a penalty was last charged (a failure or a local rejection), in the balancer
    /// clock's nanoseconds: an idle endpoint is offered a probe a probe interval after it
    /// (see [`DEFAULT_IDLE_PROBE_INTERVAL`]).
    charged: AtomicU64,
    calls: AtomicU64,
    failures: AtomicU64,
    consecutive_failures: AtomicU32,
    /// `calls` and `failures` at the start of the outlier-detection interval.
    base_calls: AtomicU64,
    base_failures: AtomicU64,
    times_ejected: AtomicU32,
    ejected: AtomicBool,
    ejected_until: AtomicU64,
}

impl EndpointStats {
    pub(crate) fn with_estimate(estimate_ns: f64, now: Instant) -> EndpointStats {
        let stats = EndpointStats::default();
        stats.reset_estimate(estimate_ns, now);
        stats
    }

    /// A call starts: one more sent, so one more pending.
    #[inline]
    pub(crate) fn begin(&self) {
        // Relaxed: a statistic (see the module's memory ordering notes); the `end` of this
        // call is ordered after it by its own Release (see `pending`).
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// A call ends, however it ends (completed, cancelled, panicked).
    #[inline]
    pub(crate) fn end(&self) {
        // Release: pairs with the Acquire load in `pending`, so a reader that counts this
        // end also counts the `begin` before it (which happened before it: the same guard's
        // call). Every `end` pairs with one `begin`, so the count returns to zero whatever
        // the interleaving (checked by the loom model).
        self.ended.fetch_add(1, Ordering::Release);
    }

    /// Calls in flight: `calls - ended`.
    #[inline]
    pub(crate) fn pending(&self) -> u64 {
        // Acquire: pairs with the Release in `end`: every begin of a counted end is seen by
        // the load of `calls` below, so the difference is never negative (saturating anyway).
        let ended = self.ended.load(Ordering::Acquire);
        // Relaxed: a statistic; ordered after the load above.
        let calls = self.calls.load(Ordering::Relaxed);
        calls.saturating_sub(ended)
    }

    /// The latency estimate decayed to `now`, in nanoseconds: the larger of the peak-EWMA of
    /// the latencies and the failure penalty still charged.
    #[inline]
    pub(crate) fn latency_ns(&self, now: Instant, tau: Tau) -> f64 {
        self.measured_ns(now, tau).max(self.penalty_ns(now, tau))
    }

    /// The latency a pick compares: [`latency_ns`](Self::latency_ns), except that an idle
    /// endpoint priced by its failure penalty is priced at most `PROBE_QUEUE_DEPTH` times its
    /// last measured latency once
    /// `probe_after_ns` have passed since its last charge (see
    /// [`DEFAULT_IDLE_PROBE_INTERVAL`]); `None`: never.
    #[inline]
    pub(crate) fn pick_latency_ns(
        &self,
        now: Instant,
        tau: Tau,
        probe_after_ns: Option<u64>,
    ) -> f64 {
        let measured = self.measured_ns(now, tau);
        let penalty = self.penalty_ns(now, tau);
        if penalty <= measured {
            return measured;
        }
        match probe_after_ns {
            Some(after) if self.pending() == 0 && self.idle_since_charge(now) >= after => {
                // Relaxed: statistics; the last measured latency, not decayed, so that the
                // price means "a queue PROBE_QUEUE_DEPTH calls deep" however long it idled.
                let last = f64::from_bits(self.estimate.load(Ordering::Relaxed));
                penalty.min(last * PROBE_QUEUE_DEPTH).max(measured)
            }
            _ => penalty,
        }
    }

    /// Nanoseconds from the last penalty charge to `now`.
    #[inline]
    fn idle_since_charge(&self, now: Instant) -> u64 {
        // Relaxed: statistics; a charge racing this read at worst lets one more pick see the
        // endpoint as a probe candidate (the charge's own call was in flight until just now).
        now.as_nanos()
            .saturating_sub(self.charged.load(Ordering::Relaxed))
    }

    /// The peak-EWMA of the measured latencies, decayed to `now`, without the penalty.
    #[inline]
    fn measured_ns(&self, now: Instant, tau: Tau) -> f64 {
        // Relaxed: statistics; a racing update at worst shows the previous estimate.
        let estimate = f64::from_bits(self.estimate.load(Ordering::Relaxed));
        // Relaxed: as above.
        let stamp = self.stamp.load(Ordering::Relaxed);
        tau.decayed(estimate, now.as_nanos().saturating_sub(stamp))
    }

    /// The failure penalty still charged at `now` (decayed with time like the estimate).
    #[inline]
    fn penalty_ns(&self, now: Instant, tau: Tau) -> f64 {
        // Relaxed: statistics; a racing update at worst shows the previous penalty.
        let penalty = f64::from_bits(self.penalty.load(Ordering::Relaxed));
        if penalty == 0.0 {
            return 0.0;
        }
        // Relaxed: as above.
        let stamp = self.penalty_stamp.load(Ordering::Relaxed);
        tau.decayed(penalty, now.as_nanos().saturating_sub(stamp))
    }

    /// A failure or a local rejection: charges `penalty_ns` in full (the peak: the larger of
    /// it and what is left of an earlier one).
    pub(crate) fn charge_penalty(&self, penalty_ns: f64, now: Instant, tau: Tau) {
        self.update_penalty(now, tau, |left| left.max(penalty_ns));
        // Relaxed: a statistic; fetch_max keeps the latest charge when charges race.
        self.charged.fetch_max(now.as_nanos(), Ordering::Relaxed);
    }

    /// A success: pays off part of the penalty (see [`PENALTY_KEPT_PER_SUCCESS`]).
    #[inline]
    pub(crate) fn pay_penalty(&self, now: Instant, tau: Tau) {
        // Relaxed: a fast path for the common case of no penalty; a penalty charged by a
        // racing failure after this load is simply not paid by this success.
        if self.penalty.load(Ordering::Relaxed) == 0.0f64.to_bits() {
            return;
        }
        self.update_penalty(now, tau, |left| {
            let kept = left * PENALTY_KEPT_PER_SUCCESS;
            // Below a nanosecond it is gone: the fast path above applies again.
            if kept < 1.0 { 0.0 } else { kept }
        });
    }

    fn update_penalty(&self, now: Instant, tau: Tau, f: impl Fn(f64) -> f64) {
        let now_ns = now.as_nanos();
        // Relaxed throughout: the CAS makes a racing charge and payment apply one after the
        // other (a payment never overwrites a fresh charge with an older, halved value); no
        // other memory depends on the penalty.
        let mut current = self.penalty.load(Ordering::Relaxed);
        loop {
            // Relaxed: as above; a stamp racing with another update at worst decays the
            // penalty by a slightly wrong elapsed time.
            let stamp = self.penalty_stamp.load(Ordering::Relaxed);
            let left = tau.decayed(f64::from_bits(current), now_ns.saturating_sub(stamp));
            let next = f(left);
            match self.penalty.compare_exchange_weak(
                current,
                next.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        // Relaxed: fetch_max keeps the stamp monotonic when updates race.
        self.penalty_stamp.fetch_max(now_ns, Ordering::Relaxed);
    }

    /// Folds one latency sample into the estimate.
    #[inline]
    pub(crate) fn observe(&self, sample_ns: f64, now: Instant, tau: Tau) {
        let now_ns = now.as_nanos();
        // Relaxed throughout: the CAS makes concurrent samples fold in one after the other;
        // no other memory depends on the estimate.
        let mut current = self.estimate.load(Ordering::Relaxed);
        loop {
            let stamp = self.stamp.load(Ordering::Relaxed);
            let next = tau.observe(
                f64::from_bits(current),
                now_ns.saturating_sub(stamp),
                sample_ns,
            );
            match self.estimate.compare_exchange_weak(
                current,
                next.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        // Relaxed: fetch_max keeps the stamp monotonic when samples race.
        self.stamp.fetch_max(now_ns, Ordering::Relaxed);
    }

    /// Folds in a latency known only from below (a call dropped after `bound_ns`): when it
    /// exceeds the estimate decayed to `now`, as a sample (peak-EWMA takes it, or blends it
    /// with a higher stored estimate: either way at least `bound_ns` and above the decayed
    /// estimate); otherwise it says nothing and is dropped. A sample racing in between the
    /// check and the fold is blended with the bound instead, as two racing samples are.
    #[inline]
    pub(crate) fn observe_lower_bound(&self, bound_ns: f64, now: Instant, tau: Tau) {
        if bound_ns > self.measured_ns(now, tau) {
            self.observe(bound_ns, now, tau);
        }
    }

    pub(crate) fn reset_estimate(&self, estimate_ns: f64, now: Instant) {
        // Relaxed: statistics; a new or restored endpoint starts from this estimate.
        self.estimate
            .store(estimate_ns.max(0.0).to_bits(), Ordering::Relaxed);
        // Relaxed: as above.
        self.stamp.store(now.as_nanos(), Ordering::Relaxed);
        // Relaxed: as above; a restored endpoint starts without a penalty.
        self.penalty.store(0.0f64.to_bits(), Ordering::Relaxed);
        // Relaxed: as above.
        self.penalty_stamp.store(now.as_nanos(), Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn is_flagged_ejected(&self) -> bool {
        // Acquire: pairs with the Release store in `eject`, so the deadline read next is the
        // one this ejection set.
        self.ejected.load(Ordering::Acquire)
    }

    #[inline]
    pub(crate) fn ejected_until(&self) -> u64 {
        // Relaxed: ordered by the Acquire load of the flag before it.
        self.ejected_until.load(Ordering::Relaxed)
    }
}

/// What the balancer shares between its handle, its endpoints and their in-flight calls.
pub(crate) struct Core<K> {
    pub(crate) name: Arc<str>,
    pub(crate) clock: Clock,
    pub(crate) tau: Tau,
    pub(crate) penalty_ns: f64,
    /// The zone this client runs in, if the user set one.
    pub(crate) local_zone: Option<Arc<str>>,
    /// The cost multiplier of an endpoint outside `local_zone`.
    pub(crate) remote_factor: f64,
    /// Slow start, if configured.
    pub(crate) slow_start: Option<SlowStart>,
    pub(crate) default_rtt_ns: f64,
    pub(crate) outlier: OutlierDetection,
    pub(crate) events: EventBus<BalancerEvent<K>>,
    /// Endpoints flagged ejected, among those in the set.
    pub(crate) ejected: AtomicUsize,
    /// Endpoints in the set.
    pub(crate) total: AtomicUsize,
    /// Serialises ejections, restorations and removals (cold path).
    pub(crate) health_lock: Mutex<()>,
    /// When the success-rate and failure-percentage detectors next run (clock nanoseconds).
    pub(crate) next_evaluation: AtomicU64,
    jitter: AtomicU64,
    /// How long after its last charged failure an idle endpoint priced by its penalty is
    /// offered a probe (`BalancerBuilder::idle_probe_interval`); `None`: never.
    pub(crate) idle_probe_ns: Option<u64>,
    /// The template of the per-endpoint breakers (`BalancerBuilder::endpoint_breaker`).
    pub(crate) breaker_template: Option<palisade_circuit_breaker::CircuitBreakerBuilder>,
    /// Seeds the per-endpoint breakers' jitter.
    pub(crate) breaker_seed: u64,
}

impl<K> Core<K> {
    #[allow(clippy::too_many_arguments)] // reason: a crate-internal constructor fed by the builder
    pub(crate) fn new(
        name: Arc<str>,
        clock: Clock,
        decay: Duration,
        penalty: Duration,
        default_rtt: Duration,
        outlier: OutlierDetection,
        events: EventBus<BalancerEvent<K>>,
        seed: u64,
        zone: (Option<Arc<str>>, f64),
        slow_start: Option<SlowStart>,
    ) -> Core<K> {
        Core {
            name,
            slow_start,
            local_zone: zone.0,
            remote_factor: zone.1,
            clock,
            tau: Tau::from_ns(duration_to_nanos(decay) as f64),
            penalty_ns: duration_to_nanos(penalty) as f64,
            default_rtt_ns: duration_to_nanos(default_rtt) as f64,
            outlier,
            events,
            ejected: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
            health_lock: Mutex::new(()),
            next_evaluation: AtomicU64::new(0),
            jitter: AtomicU64::new(seed),
            idle_probe_ns: Some(duration_to_nanos(DEFAULT_IDLE_PROBE_INTERVAL)),
            breaker_template: None,
            breaker_seed: seed,
        }
    }

    #[inline]
    pub(crate) fn ejected_count(&self) -> usize {
        // Relaxed: a count that a pick compares with the panic threshold; stale by one
        // ejection at worst.
        self.ejected.load(Ordering::Relaxed)
    }
}

/// One endpoint: its key, identity, statistics and the balancer's core.
pub(crate) struct Node<K> {
    pub(crate) key: K,
    /// Unique per insertion, so a retry avoids "that endpoint" even across set changes.
    pub(crate) id: u64,
    pub(crate) meta: crate::EndpointMeta,
    /// The cost multiplier of this endpoint: 1, or the remote-zone factor when a local zone is
    /// set and this endpoint is not in it.
    pub(crate) zone_factor: f64,
    pub(crate) stats: EndpointStats,
    /// Set (under the health lock) when the endpoint leaves the set.
    removed: AtomicBool,
    /// When the endpoint joined the set or was last restored (clock nanoseconds), for slow
    /// start.
    active_since: AtomicU64,
    /// The hash of the key for rendezvous hashing, computed on first use (0: not yet).
    key_hash: AtomicU64,
    /// The endpoint's own circuit breaker, when the balancer has a template for them.
    pub(crate) breaker: Option<crate::breaker::EndpointBreaker>,
    /// Until when (clock nanoseconds) the endpoint's service said it is shut (a breaker of the
    /// user's in gate mode that is open, seen through core's readiness note): no pick
    /// considers it before then. 0: not known to be shut.
    shut_until: AtomicU64,
    pub(crate) core: Arc<Core<K>>,
}

/// What a response future needs of its endpoint, with the key type erased so that
/// `ResponseFuture<F>` has one type parameter.
pub(crate) trait Record: Send + Sync {
    fn finish(&self, result: CallResult, started: Instant);
    /// A call picked at `started` was dropped before it answered.
    fn cancel(&self, started: Instant);
}

impl<K: std::hash::Hash> Node<K> {
    /// The key's hash (std's `DefaultHasher`, the same in every process of one build), never 0.
    #[inline]
    pub(crate) fn key_hash(&self) -> u64 {
        // Relaxed: a cache of a pure function of the key; racing writers store the same value.
        let cached = self.key_hash.load(Ordering::Relaxed);
        if cached != 0 {
            return cached;
        }
        use std::hash::{BuildHasher, BuildHasherDefault};
        let hash = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .hash_one(&self.key)
            | 1;
        // Relaxed: as above.
        self.key_hash.store(hash, Ordering::Relaxed);
        hash
    }
}

impl<K: Clone + Send + Sync + 'static> Node<K> {
    pub(crate) fn new(
        key: K,
        id: u64,
        meta: crate::EndpointMeta,
        estimate_ns: f64,
        core: Arc<Core<K>>,
    ) -> Node<K> {
        let now = core.clock.now();
        let zone_factor = match &core.local_zone {
            Some(local) if meta.zone.as_deref() != Some(&**local) => core.remote_factor,
            _ => 1.0,
        };
        Node {
            key,
            id,
            zone_factor,
            meta,
            stats: EndpointStats::with_estimate(estimate_ns, now),
            removed: AtomicBool::new(false),
            active_since: AtomicU64::new(now.as_nanos()),
            key_hash: AtomicU64::new(0),
            breaker: None,
            shut_until: AtomicU64::new(0),
            core,
        }
    }

    /// The latency estimate a pick compares: decayed to `now`, times the zone factor, divided
    /// by the slow-start ramp while the endpoint is new or just restored.
    ///
    /// An idle endpoint priced out by its failure penalty is offered a probe call here (see
    /// [`DEFAULT_IDLE_PROBE_INTERVAL`]).
    #[inline]
    pub(crate) fn pick_latency_ns(&self, now: Instant) -> f64 {
        let core = &*self.core;
        let latency = self
            .stats
            .pick_latency_ns(now, core.tau, core.idle_probe_ns)
            * self.zone_factor;
        match &core.slow_start {
            None => latency,
            Some(slow) => {
                // Relaxed: a statistic (see `restore`).
                let since = self.active_since.load(Ordering::Relaxed);
                latency / slow.ramp(now.as_nanos().saturating_sub(since))
            }
        }
    }

    /// A failure outside a call (the endpoint's `poll_ready` failed).
    pub(crate) fn readiness_failed(&self, now: Instant) {
        if let Some(permit) = self.breaker.as_ref().and_then(|b| b.admit(now)) {
            permit.failure();
        }
        self.record(CallResult::Failure, self.core.penalty_ns, now);
    }

    fn record(&self, result: CallResult, rtt_ns: f64, now: Instant) {
        let core = &*self.core;
        let stats = &self.stats;
        match result {
            CallResult::Success => {
                stats.observe(rtt_ns, now, core.tau);
                stats.pay_penalty(now, core.tau);
                // Relaxed: health counters change under the health lock when it matters
                // (ejection re-reads them there); a racing reset only delays an ejection.
                stats.consecutive_failures.store(0, Ordering::Relaxed);
                // Relaxed: as above; a success ends the growth of ejection times.
                if stats.times_ejected.load(Ordering::Relaxed) != 0 && !stats.is_flagged_ejected() {
                    // Relaxed: as above.
                    stats.times_ejected.store(0, Ordering::Relaxed);
                }
            }
            CallResult::Rejected => {
                stats.charge_penalty(rtt_ns.max(core.penalty_ns), now, core.tau);
            }
            CallResult::Ignored => stats.observe(rtt_ns, now, core.tau),
            CallResult::Failure => {
                stats.charge_penalty(rtt_ns.max(core.penalty_ns), now, core.tau);
                // Relaxed: a counter read by snapshot() only.
                stats.failures.fetch_add(1, Ordering::Relaxed);
                // Relaxed: the RMW counts every failure once; the ejection decision re-reads it
                // under the health lock.
                let run = stats.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
                if core.outlier.consecutive_failures > 0 && run >= core.outlier.consecutive_failures
                {
                    self.eject(now);
                }
            }
        }
    }

    /// Ejects the endpoint if the rules allow (cold path, under the health lock).
    fn eject(&self, now: Instant) {
        let core = &*self.core;
        let event = {
            let _health = core.health_lock.lock();
            // Relaxed: written only under the health lock, which we hold.
            if self.stats.consecutive_failures.load(Ordering::Relaxed)
                < core.outlier.consecutive_failures
            {
                return;
            }
            self.eject_locked(now)
        };
        if let Some(event) = event {
            core.events.emit(event);
        }
    }

    /// Ejects the endpoint if it is in the set, not ejected, and `max_ejection_percent`
    /// allows; the caller holds the health lock. Returns the event to emit after unlocking.
    pub(crate) fn eject_locked(&self, now: Instant) -> Option<BalancerEvent<K>> {
        let core = &*self.core;
        let stats = &self.stats;
        {
            // Relaxed: these are written only under the health lock, which the caller holds.
            if self.removed.load(Ordering::Relaxed) || stats.ejected.load(Ordering::Relaxed) {
                return None;
            }
            // Relaxed: written under the health lock, which the caller holds.
            let total = core.total.load(Ordering::Relaxed);
            let ejected = core.ejected.load(Ordering::Relaxed);
            if !core.outlier.may_eject(ejected, total) {
                return None;
            }
            // Relaxed: written under the lock.
            let times = stats.times_ejected.load(Ordering::Relaxed);
            // Relaxed: the jitter stream only needs distinct draws.
            let draw = mix(core.jitter.fetch_add(GAMMA, Ordering::Relaxed));
            let duration = core.outlier.ejection_time(times, draw);
            // Relaxed: published by the Release store of the flag just below.
            stats
                .ejected_until
                .store(now.saturating_add(duration).as_nanos(), Ordering::Relaxed);
            // Release: pairs with the Acquire in `is_flagged_ejected`.
            stats.ejected.store(true, Ordering::Release);
            // Relaxed: under the lock.
            stats.times_ejected.store(times + 1, Ordering::Relaxed);
            // Relaxed: under the lock.
            stats.consecutive_failures.store(0, Ordering::Relaxed);
            // Relaxed: under the lock; readers outside it use it as an estimate.
            core.ejected.store(ejected + 1, Ordering::Relaxed);
            Some(BalancerEvent::EndpointEjected {
                key: self.key.clone(),
                duration,
                times: times + 1,
                ejected: ejected + 1,
                endpoints: total,
            })
        }
    }

    /// Calls and failures since the last interval evaluation, resetting the interval (caller
    /// holds the health lock).
    pub(crate) fn take_interval(&self) -> (u64, u64) {
        let stats = &self.stats;
        // Relaxed: counters; the bases are written only under the health lock.
        let calls = stats.calls.load(Ordering::Relaxed);
        let failures = stats.failures.load(Ordering::Relaxed);
        let base_calls = stats.base_calls.swap(calls, Ordering::Relaxed);
        let base_failures = stats.base_failures.swap(failures, Ordering::Relaxed);
        (
            calls.saturating_sub(base_calls),
            failures.saturating_sub(base_failures),
        )
    }

    /// Whether the endpoint is ejected at `now`; restores it (with `estimate_ns` as its fresh
    /// latency estimate) when its ejection has run out.
    #[inline]
    pub(crate) fn is_ejected(&self, now: Instant, estimate_ns: impl FnOnce() -> f64) -> bool {
        if !self.stats.is_flagged_ejected() {
            return false;
        }
        if now.as_nanos() < self.stats.ejected_until() {
            return true;
        }
        self.restore(now, estimate_ns());
        false
    }

    #[cold]
    fn restore(&self, now: Instant, estimate_ns: f64) {
        let core = &*self.core;
        let event = {
            let _health = core.health_lock.lock();
            // Relaxed: written only under the health lock, which we hold.
            if !self.stats.ejected.load(Ordering::Relaxed) {
                return;
            }
            // Relaxed: pick threads that still see `true` treat the endpoint as ejected one pick
            // longer; the deadline they read with it has passed, so they try to restore it and
            // find it restored under the lock.
            self.stats.ejected.store(false, Ordering::Relaxed);
            // Relaxed: under the lock.
            let ejected = core.ejected.load(Ordering::Relaxed).saturating_sub(1);
            core.ejected.store(ejected, Ordering::Relaxed);
            self.stats.reset_estimate(estimate_ns, now);
            // Relaxed: read by picks as a statistic; a stale value only shifts one pick.
            self.active_since.store(now.as_nanos(), Ordering::Relaxed);
            BalancerEvent::EndpointRestored {
                key: self.key.clone(),
                ejected,
                // Relaxed: under the lock.
                endpoints: core.total.load(Ordering::Relaxed),
            }
        };
        core.events.emit(event);
    }

    /// Whether the endpoint has left the set.
    #[inline]
    pub(crate) fn is_removed(&self) -> bool {
        // Relaxed: a hint for a waiting service; a stale `false` only lets it wait once more.
        self.removed.load(Ordering::Relaxed)
    }

    /// Marks the endpoint as out of the set (caller holds the health lock): it no longer
    /// counts as ejected, and a late failure of one of its calls ejects nothing.
    pub(crate) fn mark_removed(&self) {
        // Relaxed: under the health lock, held by the caller.
        self.removed.store(true, Ordering::Relaxed);
        // Relaxed: the flag and the count change only under the health lock; the endpoint is
        // leaving the set, so no later pick of this set reads its flag.
        if self.stats.ejected.swap(false, Ordering::Relaxed) {
            // Relaxed: under the health lock, as above.
            let ejected = self.core.ejected.load(Ordering::Relaxed).saturating_sub(1);
            self.core.ejected.store(ejected, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self, now: Instant) -> crate::EndpointSnapshot<K> {
        let stats = &self.stats;
        let latency = stats.latency_ns(now, self.core.tau);
        // Relaxed: statistics for display.
        let ejected_until = stats
            .is_flagged_ejected()
            .then(|| Instant::from_nanos(stats.ejected_until()))
            .filter(|until| *until > now);
        crate::EndpointSnapshot {
            key: self.key.clone(),
            pending: stats.pending(),
            latency: Duration::from_nanos(latency.min(u64::MAX as f64) as u64),
            // Relaxed, these four: statistics for display; a snapshot is not atomic as a whole.
            calls: stats.calls.load(Ordering::Relaxed),
            failures: stats.failures.load(Ordering::Relaxed),
            consecutive_failures: stats.consecutive_failures.load(Ordering::Relaxed),
            times_ejected: stats.times_ejected.load(Ordering::Relaxed),
            ejected_for: ejected_until.map(|until| until.saturating_duration_since(now)),
            weight: self.meta.weight,
            breaker: self.breaker.as_ref().map(|b| b.breaker.state()),
        }
    }

    /// Whether this endpoint's breakers let a pick consider it now: its own (if any), and a
    /// gate-mode breaker of the user's that said it is shut ([`shut_for`](Self::shut_for)).
    #[inline]
    pub(crate) fn breaker_allows(&self, now: Instant) -> bool {
        // Relaxed: a hint about when to poll the endpoint again; nothing is published with it.
        self.shut_until.load(Ordering::Relaxed) <= now.as_nanos()
            && self.breaker.as_ref().is_none_or(|b| b.is_candidate(now))
    }

    /// The endpoint's service answered `Pending` and said it stays shut for `wait` (an open
    /// gate-mode breaker): picks pass it over until then, without polling it. At least until
    /// just after `now`, so that the rest of this pick passes it over even for a zero wait
    /// (a forced-open breaker, asked again at the next pick).
    pub(crate) fn shut_for(&self, now: Instant, wait: Duration) {
        let until = now
            .as_nanos()
            .saturating_add(duration_to_nanos(wait).max(1));
        // Relaxed: see `breaker_allows`; racing pollers store nearly the same time.
        self.shut_until.store(until, Ordering::Relaxed);
    }
}

impl<K: Clone + Send + Sync + 'static> Record for Node<K> {
    fn finish(&self, result: CallResult, started: Instant) {
        self.stats.end();
        let now = self.core.clock.now();
        // In nanoseconds, not a `Duration` (seconds and nanoseconds, split by a division and
        // joined again for the sample); the event, when anyone takes it, gets its `Duration`.
        let elapsed_ns = now.as_nanos().saturating_sub(started.as_nanos());
        self.record(result, elapsed_ns as f64, now);
        self.core
            .events
            .emit_call_with(|| BalancerEvent::CallFinished {
                outcome: match result {
                    CallResult::Success => palisade_core::Outcome::Success,
                    CallResult::Failure => palisade_core::Outcome::Failure,
                    CallResult::Rejected | CallResult::Ignored => palisade_core::Outcome::Ignore,
                },
                duration: std::time::Duration::from_nanos(elapsed_ns),
            });
    }

    fn cancel(&self, started: Instant) {
        self.stats.end();
        // A dropped call took at least this long: a caller above gave up on it (a retry's
        // attempt timeout, a hedge answered elsewhere, a client gone). As a latency it is a
        // lower bound, so it only ever raises the estimate; a hung endpoint, whose calls
        // all end this way, is priced by its callers' patience instead of its last answer.
        let now = self.core.clock.now();
        let waited_ns = now.as_nanos().saturating_sub(started.as_nanos());
        self.stats
            .observe_lower_bound(waited_ns as f64, now, self.core.tau);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::EndpointStats;
    use crate::ewma::Tau;
    use palisade_core::clock::Instant;

    const TAU: Tau = Tau::from_ns(1.0e9);
    const MS: u64 = 1_000_000;

    #[test]
    fn a_dropped_calls_wait_only_ever_raises_the_estimate() {
        let stats = EndpointStats::with_estimate(10.0e6, Instant::ZERO);
        // Dropped after 1 ms: less than the estimate (decayed to then) says nothing.
        let decayed = stats.latency_ns(Instant::from_nanos(MS), TAU);
        stats.observe_lower_bound(1.0e6, Instant::from_nanos(MS), TAU);
        assert_eq!(stats.latency_ns(Instant::from_nanos(MS), TAU), decayed);
        // Dropped after 500 ms: the endpoint is at least that slow, at once.
        stats.observe_lower_bound(500.0e6, Instant::from_nanos(500 * MS), TAU);
        assert_eq!(
            stats.latency_ns(Instant::from_nanos(500 * MS), TAU),
            500.0e6
        );
        // It decays like any sample, and a bound under the decayed estimate still says nothing.
        let later = Instant::from_nanos(1_500 * MS);
        let decayed = stats.latency_ns(later, TAU);
        assert!((180.0e6..190.0e6).contains(&decayed), "{decayed}");
        stats.observe_lower_bound(100.0e6, later, TAU);
        assert_eq!(stats.latency_ns(later, TAU), decayed);
    }

    #[test]
    fn successes_pay_the_penalty_off_and_a_failure_charges_it_in_full() {
        let stats = EndpointStats::with_estimate(10.0e6, Instant::ZERO);
        stats.charge_penalty(1.0e9, Instant::ZERO, TAU);
        assert_eq!(stats.latency_ns(Instant::ZERO, TAU), 1.0e9);
        for i in 1..=7 {
            let now = Instant::from_nanos(i * MS);
            stats.observe(10.0e6, now, TAU);
            stats.pay_penalty(now, TAU);
        }
        // 1 s halved seven times, less 7 ms of decay: under the 10 ms estimate.
        let latency = stats.latency_ns(Instant::from_nanos(7 * MS), TAU);
        assert!((9.0e6..=10.0e6).contains(&latency), "{latency}");
        // The estimate itself was never raised by the penalty.
        stats.charge_penalty(1.0e9, Instant::from_nanos(8 * MS), TAU);
        assert_eq!(stats.latency_ns(Instant::from_nanos(8 * MS), TAU), 1.0e9);
        stats.pay_penalty(Instant::from_nanos(8 * MS), TAU);
        assert_eq!(stats.latency_ns(Instant::from_nanos(8 * MS), TAU), 0.5e9);
    }

    #[test]
    fn an_idle_endpoint_priced_by_its_penalty_is_priced_by_its_latency_after_the_interval() {
        let stats = EndpointStats::with_estimate(10.0e6, Instant::ZERO);
        stats.charge_penalty(1.0e9, Instant::ZERO, TAU);
        let probe = Some(100 * MS);
        let at = |ms: u64| Instant::from_nanos(ms * MS);
        // Within the interval: the penalty.
        assert_eq!(stats.pick_latency_ns(at(0), TAU, probe), 1.0e9);
        let early = stats.pick_latency_ns(at(99), TAU, probe);
        assert!(early > 0.9e9, "{early}");
        // After it, idle: eight times its last measured latency (a queue eight calls deep),
        // not the penalty.
        assert_eq!(stats.pick_latency_ns(at(100), TAU, probe), 80.0e6);
        // With the probe in flight: the penalty again.
        stats.begin();
        assert!(stats.pick_latency_ns(at(100), TAU, probe) > 0.9e9);
        // The probe failed: a fresh charge restarts the interval.
        stats.end();
        stats.charge_penalty(1.0e9, at(101), TAU);
        assert_eq!(stats.pick_latency_ns(at(101), TAU, probe), 1.0e9);
        assert!(stats.pick_latency_ns(at(200), TAU, probe) > 0.9e9);
        assert_eq!(stats.pick_latency_ns(at(201), TAU, probe), 80.0e6);
        // The price stays that of an eight-deep queue, where the decayed estimate alone would
        // make it look nearly free; a penalty decayed below it is the price.
        let late = stats.pick_latency_ns(at(4_000), TAU, probe);
        assert!(late < 80.0e6 && late > 10.0e6, "{late}");
        // Probing off: the penalty until it decays; the snapshot's latency is always the
        // larger of the two.
        assert!(stats.pick_latency_ns(at(201), TAU, None) > 0.9e9);
        assert!(stats.latency_ns(at(201), TAU) > 0.9e9);
    }

    #[test]
    fn a_latency_above_the_penalty_is_priced_as_it_is() {
        let stats = EndpointStats::with_estimate(10.0e6, Instant::ZERO);
        stats.charge_penalty(1.0e6, Instant::ZERO, TAU);
        let later = Instant::from_nanos(500 * MS);
        // The measured latency drives the cost: probing changes nothing.
        assert_eq!(
            stats.pick_latency_ns(later, TAU, Some(MS)),
            stats.latency_ns(later, TAU)
        );
    }

    #[test]
    fn the_penalty_also_decays_with_time_and_a_reset_clears_it() {
        let stats = EndpointStats::with_estimate(10.0e6, Instant::ZERO);
        stats.charge_penalty(1.0e9, Instant::ZERO, TAU);
        let later = stats.latency_ns(Instant::from_nanos(1_000 * MS), TAU);
        assert!((later - 1.0e9 / std::f64::consts::E).abs() < 1.0, "{later}");
        stats.reset_estimate(20.0e6, Instant::from_nanos(1_000 * MS));
        assert_eq!(
            stats.latency_ns(Instant::from_nanos(1_000 * MS), TAU),
            20.0e6
        );
        // Paying with nothing charged changes nothing.
        stats.pay_penalty(Instant::from_nanos(1_000 * MS), TAU);
        assert_eq!(
            stats.latency_ns(Instant::from_nanos(1_000 * MS), TAU),
            20.0e6
        );
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::{Core, EndpointStats, Node};
    use crate::ewma::Tau;
    use crate::health::OutlierDetection;
    use palisade_core::clock::{Instant, ManualClock};
    use palisade_core::events::EventBus;
    use palisade_core::sync::atomic::Ordering;
    use palisade_core::sync::{Arc, loom};
    use std::time::Duration;

    /// Pending counts return to zero after any interleaving of picks (begin), completions,
    /// cancellations and the endpoint's removal from the set (the set letting go of its
    /// reference on another thread while calls are in flight).
    #[test]
    fn loom_pending_returns_to_zero() {
        loom::model(|| {
            let endpoint = Arc::new(EndpointStats::with_estimate(1.0e6, Instant::ZERO));
            let in_set = Arc::clone(&endpoint);
            let completed = {
                let e = Arc::clone(&endpoint);
                loom::thread::spawn(move || {
                    e.begin();
                    e.observe(2.0e6, Instant::from_nanos(10), Tau::from_ns(1.0e9));
                    e.end();
                })
            };
            let cancelled = {
                let e = Arc::clone(&endpoint);
                loom::thread::spawn(move || {
                    e.begin();
                    // Cancelled after 3 ms: a lower bound, above every sample.
                    e.end();
                    e.observe_lower_bound(3.0e6, Instant::from_nanos(10), Tau::from_ns(1.0e9));
                })
            };
            let removal = loom::thread::spawn(move || drop(in_set));
            // A pick on this thread reads a consistent, non-negative count meanwhile.
            assert!(endpoint.pending() <= 2);
            completed.join().unwrap();
            cancelled.join().unwrap();
            removal.join().unwrap();
            assert_eq!(endpoint.pending(), 0);
            // The bound is never lost to the racing (lower) sample, in either order: 3 ms, or
            // a hair under it where the sample read the stamp from before the bound's fold
            // (decayed over 10 ns; the stamp is written after the estimate's CAS).
            let latency = endpoint.latency_ns(Instant::from_nanos(10), Tau::from_ns(1.0e9));
            assert!((2.9999e6..=3.0e6).contains(&latency), "{latency}");
        });
    }

    /// A success paying the penalty off while a failure charges it never loses the charge: the
    /// result is the fresh penalty, or half of it (paid after), never half of the old one.
    #[test]
    fn loom_a_racing_payment_never_loses_a_fresh_charge() {
        loom::model(|| {
            let now = Instant::from_nanos(1);
            let endpoint = Arc::new(EndpointStats::with_estimate(1.0e6, Instant::ZERO));
            endpoint.charge_penalty(2.0e8, now, Tau::from_ns(1.0e9));
            let paying = {
                let e = Arc::clone(&endpoint);
                loom::thread::spawn(move || e.pay_penalty(now, Tau::from_ns(1.0e9)))
            };
            endpoint.charge_penalty(1.0e9, now, Tau::from_ns(1.0e9));
            paying.join().unwrap();
            let latency = endpoint.latency_ns(now, Tau::from_ns(1.0e9));
            assert!(latency == 1.0e9 || latency == 0.5e9, "{latency}");
        });
    }

    /// Concurrent failures on different endpoints never eject more than
    /// `max_ejection_percent` allows (one of three at 10 %), and the ejected count matches
    /// the endpoints flagged ejected.
    #[test]
    fn loom_ejection_never_exceeds_max_percent() {
        // std's Arc: the balancer shares its core and nodes through it; loom checks the atomics.
        use std::sync::Arc;
        loom::model(|| {
            let manual = ManualClock::new();
            let core = Arc::new(Core::<u8>::new(
                Arc::from("lb"),
                manual.clock(),
                Duration::from_secs(1),
                Duration::from_secs(1),
                Duration::from_millis(30),
                OutlierDetection::new().consecutive_failures(1),
                EventBus::new(),
                1,
                (None, 2.0),
                None,
            ));
            core.total.store(3, Ordering::Relaxed);
            let nodes: Vec<_> = (0..3u8)
                .map(|k| {
                    Arc::new(Node::new(
                        k,
                        u64::from(k),
                        crate::EndpointMeta::default(),
                        1.0e6,
                        Arc::clone(&core),
                    ))
                })
                .collect();
            let threads: Vec<_> = nodes[..2]
                .iter()
                .map(|node| {
                    let node = Arc::clone(node);
                    loom::thread::spawn(move || node.readiness_failed(Instant::from_nanos(5)))
                })
                .collect();
            nodes[2].readiness_failed(Instant::from_nanos(5));
            for thread in threads {
                thread.join().unwrap();
            }
            let flagged = nodes
                .iter()
                .filter(|n| n.stats.is_flagged_ejected())
                .count();
            assert_eq!(flagged, 1);
            assert_eq!(core.ejected_count(), 1);
        });
    }
}
