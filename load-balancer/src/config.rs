//! The balancer's builder, validated by `build()`, and per-endpoint metadata.

use crate::balancer::Balancer;
use crate::health::OutlierDetection;
use crate::strategy::{P2cPeakEwma, Strategy};
use palisade_core::ConfigError;
use palisade_core::clock::Clock;
use palisade_core::error::check_nonzero_duration;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The most endpoints one `poll_ready` tries before it waits or rejects.
pub(crate) const MAX_READY_TRIES: usize = 8;

/// What a balancer's `poll_ready` does when its endpoint set is empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhenEmpty {
    /// Ready, and the call answers [`NoHealthyEndpoints`](crate::NoHealthyEndpoints) at once
    /// (the default: fail fast, a local rejection the layers above handle).
    #[default]
    Reject,
    /// `Pending` until an endpoint is inserted (woken by the insertion), for clients that
    /// start before discovery delivers the first endpoints. Bound the wait with a timeout or
    /// the retry layer's deadline above.
    Wait,
}

/// What the balancer knows of an endpoint besides its service.
///
/// `weight` is read by the weighted strategies ([`WeightedP2cPeakEwma`](crate::WeightedP2cPeakEwma),
/// [`WeightedRandom`](crate::WeightedRandom)); `zone` against the balancer's
/// [`local_zone`](BalancerBuilder::local_zone).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointMeta {
    /// Relative capacity (default 1).
    pub weight: u32,
    /// Locality zone, if known.
    pub zone: Option<Arc<str>>,
}

impl Default for EndpointMeta {
    fn default() -> Self {
        EndpointMeta {
            weight: 1,
            zone: None,
        }
    }
}

impl EndpointMeta {
    /// Weight 1, no zone.
    #[must_use]
    pub fn new() -> Self {
        EndpointMeta::default()
    }

    /// Sets the weight.
    #[must_use]
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Sets the zone.
    #[must_use]
    pub fn zone(mut self, zone: impl Into<Arc<str>>) -> Self {
        self.zone = Some(zone.into());
        self
    }
}

/// Builds a [`Balancer`]. Every default protects a fleet; see each setter for its source.
#[derive(Clone)]
pub struct BalancerBuilder {
    pub(crate) name: Option<Arc<str>>,
    pub(crate) strategy: Arc<dyn Strategy>,
    pub(crate) decay: Duration,
    pub(crate) failure_penalty: Duration,
    pub(crate) default_rtt: Duration,
    pub(crate) outlier: OutlierDetection,
    pub(crate) max_ready_tries: usize,
    pub(crate) clock: Option<Clock>,
    pub(crate) seed: Option<u64>,
    pub(crate) local_zone: Option<Arc<str>>,
    pub(crate) remote_zone_factor: f64,
    pub(crate) slow_start: Option<Duration>,
    pub(crate) when_empty: WhenEmpty,
    pub(crate) endpoint_breaker: Option<palisade_circuit_breaker::CircuitBreakerBuilder>,
    pub(crate) idle_probe_interval: Option<Duration>,
}

impl Default for BalancerBuilder {
    fn default() -> Self {
        BalancerBuilder {
            name: None,
            strategy: Arc::new(P2cPeakEwma),
            decay: Duration::from_secs(1),
            failure_penalty: Duration::from_secs(1),
            default_rtt: Duration::from_millis(30),
            outlier: OutlierDetection::default(),
            max_ready_tries: 3,
            clock: None,
            seed: None,
            local_zone: None,
            remote_zone_factor: 2.0,
            slow_start: None,
            when_empty: WhenEmpty::Reject,
            endpoint_breaker: None,
            idle_probe_interval: Some(crate::endpoint::DEFAULT_IDLE_PROBE_INTERVAL),
        }
    }
}

impl fmt::Debug for BalancerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalancerBuilder")
            .field("name", &self.name)
            .field("strategy", &self.strategy)
            .field("decay", &self.decay)
            .field("failure_penalty", &self.failure_penalty)
            .field("default_rtt", &self.default_rtt)
            .field("outlier", &self.outlier)
            .field("max_ready_tries", &self.max_ready_tries)
            .field("local_zone", &self.local_zone)
            .field("remote_zone_factor", &self.remote_zone_factor)
            .field("slow_start", &self.slow_start)
            .field("when_empty", &self.when_empty)
            .field("endpoint_breaker", &self.endpoint_breaker)
            .field("idle_probe_interval", &self.idle_probe_interval)
            .finish_non_exhaustive()
    }
}

impl BalancerBuilder {
    /// The name in events and metrics (default `"load_balancer"`).
    #[must_use]
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// How endpoints are chosen among the healthy ones (default [`P2cPeakEwma`]).
    #[must_use]
    pub fn strategy(mut self, strategy: impl Strategy) -> Self {
        self.strategy = Arc::new(strategy);
        self
    }

    /// The time constant τ of the peak-EWMA latency estimate (default 1 s).
    ///
    /// Finagle and tower use 10 s. Palisade decays faster because decay is also what brings
    /// back an endpoint that a penalty or a slowdown starved of traffic: an endpoint charged the
    /// 1 s failure penalty is tried again after about `τ × ln(penalty / healthy cost)`, some
    /// 4 s at τ = 1 s against 10 ms endpoints (40 s at τ = 10 s), unless ejection takes it out
    /// first, or, under load, as soon as the others' cost (latency × pending) passes it. Once
    /// it answers, its successes pay the penalty off (see
    /// [`failure_penalty`](Self::failure_penalty)), not this decay.
    #[must_use]
    pub fn decay(mut self, tau: Duration) -> Self {
        self.decay = tau;
        self
    }

    /// The latency a failure or a local rejection is charged in the latency estimate (default
    /// 1 s), so that an endpoint failing fast never looks fast. Set it well above the
    /// endpoints' normal latency.
    ///
    /// The penalty is kept beside the latency EWMA (a pick compares the larger of the two): a
    /// failure charges it in full, it decays with [`decay`](Self::decay) like the estimate, and
    /// **each success halves it**, so a recovered endpoint earns its share back in a few calls
    /// (1 s down to 10 ms in 7 successes) instead of waiting out `τ × ln(penalty / latency)`
    /// (some 4 s) at a fraction of its share, which is capacity lost exactly when a fleet needs
    /// it (a surge after a partial outage). Finagle's failure accrual revives an endpoint on
    /// its first successful probe; halving is more cautious: a flapping endpoint's next
    /// failure charges the penalty in full again, so an endpoint failing one call in two still
    /// costs at least half the penalty.
    #[must_use]
    pub fn failure_penalty(mut self, penalty: Duration) -> Self {
        self.failure_penalty = penalty;
        self
    }

    /// Idle probing (default `Some(100 ms)`; `None` turns it off): an endpoint with no call
    /// in flight whose cost is driven by its [`failure_penalty`](Self::failure_penalty), not by
    /// its measured latency, is priced once `interval` has passed since its last charged
    /// failure at no more than a queue eight calls deep at its last measured latency. A pick
    /// whose other candidate shows a higher loaded cost sends it one probe call; a fleet whose
    /// endpoints answer at once does not need it, sends none, and lets the penalty decay. At
    /// most one probe is in flight per endpoint (it is priced by its penalty again while one
    /// runs); after a failed probe there is none for `interval`; a successful one halves the
    /// penalty and the endpoint may take the next call at once.
    ///
    /// Without it, an endpoint that recovered while its penalty prices it above its peers
    /// gets no calls, earns no successes, and waits for the penalty's decay: under a surge its
    /// workers idle while the peers queue and a bulkhead above sheds calls. Envoy sends calls
    /// to an ejected host again when its ejection time ends, and Finagle's failure accrual lets
    /// one probe request through after its dead time: recovery is found by traffic, not by a
    /// score drifting back. A failing endpoint costs at most one failed call per `interval`
    /// and balancer, and only while its peers are loaded (a retry above sends it elsewhere),
    /// each counting towards its ejection.
    #[must_use]
    pub fn idle_probe_interval(mut self, interval: Option<Duration>) -> Self {
        self.idle_probe_interval = interval;
        self
    }

    /// The latency estimate of the first endpoint of a set, before any sample (default 30 ms,
    /// Linkerd's). Later endpoints start from the lowest estimate of the others, so that a new
    /// endpoint is neither flooded (an estimate of zero) nor starved.
    #[must_use]
    pub fn default_rtt(mut self, rtt: Duration) -> Self {
        self.default_rtt = rtt;
        self
    }

    /// Outlier ejection (default [`OutlierDetection::default`]: 5 consecutive failures,
    /// 250 ms growing to 1 s, at most 10 % ejected, panic below 50 % healthy).
    #[must_use]
    pub fn outlier_detection(mut self, outlier: OutlierDetection) -> Self {
        self.outlier = outlier;
        self
    }

    /// Endpoints one `poll_ready` tries before it waits for a busy one (default 3, at most 8).
    #[must_use]
    pub fn max_ready_tries(mut self, tries: usize) -> Self {
        self.max_ready_tries = tries;
        self
    }

    /// The clock for latency samples and ejection times (default: [`Clock::default`] when
    /// built).
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The zone this client runs in (default none: zones are ignored). Endpoints whose
    /// [`EndpointMeta::zone`] differs are charged [`remote_zone_factor`](Self::remote_zone_factor)
    /// times their latency estimate in every comparison.
    ///
    /// The spill-over rule that follows: the local zone takes the traffic while its endpoints
    /// cost less than `factor ×` the remote ones. A zone that slows down, fails (its failures
    /// are charged the failure penalty) or is ejected loses its preference at once, and
    /// traffic spills to the other zones; it comes back as the local estimates recover.
    #[must_use]
    pub fn local_zone(mut self, zone: impl Into<Arc<str>>) -> Self {
        self.local_zone = Some(zone.into());
        self
    }

    /// The latency multiplier of an endpoint outside the local zone (default 2, at least 1).
    #[must_use]
    pub fn remote_zone_factor(mut self, factor: f64) -> Self {
        self.remote_zone_factor = factor;
        self
    }

    /// Slow start (Envoy's `slow_start_config`; default off, as in Envoy): for `window` after
    /// an endpoint joins the set or is restored from ejection, the latency the strategies
    /// compare is divided by a ramp that grows linearly from 10 % to 100 % (Envoy's defaults:
    /// aggression 1, minimum weight 10 %), so a cold endpoint takes a growing share instead of
    /// a flood. Applies to the latency-aware strategies ([`P2cPeakEwma`] and the weighted
    /// ones); pending-count, round-robin and random strategies ignore it.
    #[must_use]
    pub fn slow_start(mut self, window: Duration) -> Self {
        self.slow_start = Some(window);
        self
    }

    /// What `poll_ready` does with an empty set (default [`WhenEmpty::Reject`]). Only an
    /// empty set waits: a set whose endpoints all failed their readiness check still rejects,
    /// so a broken fleet fails fast.
    #[must_use]
    pub fn when_empty(mut self, when_empty: WhenEmpty) -> Self {
        self.when_empty = when_empty;
        self
    }

    /// Gives every endpoint its own circuit breaker built from `template` (start from
    /// [`fleet_breaker`](crate::fleet_breaker): 5 failures in a row, a 1 s open wait doubling
    /// to 30 s, ±20 % jitter); default: none. An endpoint whose breaker is open is not a
    /// candidate, a half-open one takes probe calls, and no pick ever waits on a breaker:
    /// see [`breaker`](crate::breaker). The balancer overrides the template's clock (its own),
    /// name (`"<balancer>/<key:?>"`) and jitter seed (from its seed and the endpoint).
    #[must_use]
    pub fn endpoint_breaker(
        mut self,
        template: palisade_circuit_breaker::CircuitBreakerBuilder,
    ) -> Self {
        self.endpoint_breaker = Some(template);
        self
    }

    /// Seeds the endpoint sampling and the ejection jitter, for reproducible simulations
    /// (default: a random seed).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// An empty balancer; add endpoints with [`Balancer::insert`].
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the refused setting: `decay`, `failure_penalty`, `default_rtt`
    /// or `idle_probe_interval` zero, `max_ready_tries` outside `1..=8`, an invalid outlier setting, or an invalid
    /// [`endpoint_breaker`](Self::endpoint_breaker) template (the breaker's own error).
    pub fn build<K, S>(self) -> Result<Balancer<K, S>, ConfigError>
    where
        K: Clone + PartialEq + fmt::Debug + Send + Sync + 'static,
        S: Clone + Send + Sync + 'static,
    {
        check_nonzero_duration("decay", self.decay)?;
        check_nonzero_duration("failure_penalty", self.failure_penalty)?;
        check_nonzero_duration("default_rtt", self.default_rtt)?;
        if !(1..=MAX_READY_TRIES).contains(&self.max_ready_tries) {
            return Err(ConfigError::new(
                "max_ready_tries",
                format!(
                    "must be between 1 and {MAX_READY_TRIES}, got {}",
                    self.max_ready_tries
                ),
            ));
        }
        let factor = self.remote_zone_factor;
        if factor.is_nan() || factor.is_infinite() || factor < 1.0 {
            return Err(ConfigError::new(
                "remote_zone_factor",
                format!(
                    "must be a finite factor of at least 1, got {}",
                    self.remote_zone_factor
                ),
            ));
        }
        if let Some(window) = self.slow_start {
            check_nonzero_duration("slow_start", window)?;
        }
        if let Some(interval) = self.idle_probe_interval {
            check_nonzero_duration("idle_probe_interval", interval)?;
        }
        self.outlier.validate()?;
        if let Some(template) = &self.endpoint_breaker {
            // The per-endpoint breakers differ from this one only in name, clock and seed.
            template.clone().build()?;
        }
        Ok(Balancer::from_builder(self))
    }
}
