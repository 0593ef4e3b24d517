//! Built-in per-endpoint circuit breakers: availability filtering.
//!
//! With [`BalancerBuilder::endpoint_breaker`](crate::BalancerBuilder::endpoint_breaker), every
//! endpoint gets its own [`CircuitBreaker`] from palisade-circuit-breaker, built from one
//! template ([`fleet_breaker`] gives the fleet defaults). The balancer uses it the way Ribbon's
//! `AvailabilityFilteringRule` uses Hystrix's breaker state: an endpoint whose breaker is open
//! is **not a candidate**, so the strategy never sees it, a pick never lands on it and nobody
//! waits on its open breaker while another endpoint can take the call. When the open wait is
//! over the endpoint is a candidate again; the pick that lands on it takes a half-open probe
//! permit, and the probes' outcomes close or re-open the breaker. Nothing is waited on: a pick
//! that finds a breaker refusing (open, or half-open with its probes out) passes the endpoint
//! over for another, like a busy one.
//!
//! The breaker sees what the balancer sees: each call's outcome as the service's classifier
//! judges it (a local rejection from below is ignored), a cancelled call is not counted, and a
//! failed `poll_ready` of the endpoint counts as a failure. Outlier ejection still applies on
//! top: the breaker gives the quick, probing exclusion of one endpoint, ejection the
//! fleet-relative judgement with its `max_ejection_percent` and panic threshold. The panic
//! threshold does not override an open breaker: with every breaker open, the call is answered
//! [`NoHealthyEndpoints`](crate::NoHealthyEndpoints) at once (a local rejection; with a retry
//! budget above, it fails fast).
//!
//! The hashing services ([`Balancer::hashed`], [`Balancer::maglev`]) pass over an endpoint
//! whose breaker is open too, but take no permits: their calls do not feed the breakers.
//!
//! Events and metrics: [`Balancer::endpoint_breaker`] returns an endpoint's breaker handle, to
//! [`subscribe`](CircuitBreaker::subscribe) to its state transitions or read its
//! [`snapshot`](CircuitBreaker::snapshot); each breaker is named `"<balancer>/<key:?>"`, and
//! with the `metrics` feature it records the `palisade_circuit_breaker_*` series under that
//! name. [`EndpointSnapshot::breaker`](crate::EndpointSnapshot::breaker) holds its state, and
//! `Balancer::export_endpoint_metrics` sets `palisade_load_balancer_endpoint_breaker_open`.
//!
//! ```
//! use palisade_load_balancer::{Balancer, EndpointMeta, RoundRobin, fleet_breaker};
//! use palisade_circuit_breaker::State;
//! use tower::{ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let failing = service_fn(|_: u32| async { Err::<u32, _>(std::io::Error::other("down")) });
//! let healthy = service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) });
//! // A load-blind strategy keeps sending to a failing endpoint until something stops it
//! // (the default P2cPeakEwma already avoids it after one failure, by its penalty).
//! let balancer = Balancer::builder()
//!     .strategy(RoundRobin::new())
//!     .endpoint_breaker(fleet_breaker())
//!     .build()?;
//! balancer.insert("bad", tower::util::Either::Left(failing), EndpointMeta::new());
//! balancer.insert("good", tower::util::Either::Right(healthy), EndpointMeta::new());
//! for x in 0..40 {
//!     let _ = balancer.service().oneshot(x).await;
//! }
//! // Five failures in a row opened "bad"'s breaker; later calls go to "good".
//! assert_eq!(balancer.endpoint_breaker(&"bad").unwrap().state(), State::Open);
//! assert_eq!(balancer.service().oneshot(7).await?, 7);
//! # Ok(())
//! # }
//! ```

use crate::Balancer;
use crate::endpoint::Core;
use palisade_circuit_breaker::{CircuitBreaker, CircuitBreakerBuilder, OwnedPermit, State};
use palisade_core::clock::{Instant, duration_to_nanos};
use palisade_core::sync::atomic::{AtomicU64, Ordering};
use std::fmt;
use std::time::Duration;

/// How long a pick leaves a half-open breaker alone after it refused (its probes are out):
/// the probes' answers decide soon, and asking on every pick would only count rejections.
const HALF_OPEN_RECHECK: Duration = Duration::from_millis(10);

/// The per-endpoint breaker settings suited to a fleet, as a [`CircuitBreakerBuilder`] to
/// adjust or pass to [`BalancerBuilder::endpoint_breaker`](crate::BalancerBuilder::endpoint_breaker):
///
/// | setting | value | why |
/// |---|---|---|
/// | `consecutive_failures` | 5 | Envoy's `consecutive_5xx` (5), Linkerd's failure accrual (5): an endpoint failing every call trips in five calls whatever the traffic |
/// | `trip_on_rates` | off | one endpoint's share of a client's traffic is too small for a rate window to fill quickly; a half-open breaker re-opens on any failed probe |
/// | `wait_duration_in_open` | 1 s | short: other endpoints carry the load meanwhile, and a recovered endpoint is back within about a second (Finagle's failure accrual starts at 5 s; a fleet can afford to probe sooner) |
/// | `open_backoff` | ×2 per re-open, capped at 30 s | an endpoint that stays down is probed less and less often (Finagle's failure accrual backs off, resilience4j's exponential interval function) |
/// | `open_backoff_jitter` | ±20 % | clients do not probe a recovering endpoint in lockstep |
/// | `count_window` | 10 calls | with the rates off the window only feeds the breaker's snapshot; a count window, unlike the default time window, reads no clock on a closed breaker's path |
/// | `permitted_calls_in_half_open` | 1 | Hystrix's single trial request: an endpoint still down costs one failed call per open period, not several (the breaker waits for all its probes before it decides) |
///
/// The balancer sets the breaker's clock to its own and seeds each breaker's jitter from its
/// seed and the endpoint's identity.
pub fn fleet_breaker() -> CircuitBreakerBuilder {
    CircuitBreaker::builder()
        .consecutive_failures(5)
        .trip_on_rates(false)
        .count_window(10)
        .wait_duration_in_open(Duration::from_secs(1))
        .open_backoff(2.0, Duration::from_secs(30))
        .open_backoff_jitter(0.2)
        .permitted_calls_in_half_open(1)
}

/// One endpoint's breaker and the picks' hint of when to ask it again.
pub(crate) struct EndpointBreaker {
    pub(crate) breaker: CircuitBreaker,
    /// Clock nanoseconds before which a pick does not ask a breaker that is not closed (it
    /// refused with a wait running out then); 0: ask.
    refused_until: AtomicU64,
}

impl fmt::Debug for EndpointBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointBreaker")
            .field("state", &self.breaker.state())
            .finish_non_exhaustive()
    }
}

impl EndpointBreaker {
    fn new(breaker: CircuitBreaker) -> Self {
        EndpointBreaker {
            breaker,
            refused_until: AtomicU64::new(0),
        }
    }

    /// Whether a pick may consider the endpoint: a hint, one or two atomic loads, no side
    /// effect. `false` while the breaker's last refusal's wait runs and it is not closed, and
    /// while it is forced open.
    #[inline]
    pub(crate) fn is_candidate(&self, now: Instant) -> bool {
        // Relaxed: a hint only; a stale value makes a pick ask the breaker once more (which
        // decides by its own atomics) or skip the endpoint for the rest of a wait that a
        // manual reset cut short, which the state check below corrects.
        let until = self.refused_until.load(Ordering::Relaxed);
        if now.as_nanos() >= until {
            // No refusal remembered: the breaker decides when asked, except one forced open
            // by hand, which is known to refuse.
            return self.breaker.state() != State::ForcedOpen;
        }
        matches!(
            self.breaker.state(),
            State::Closed | State::Disabled | State::MetricsOnly
        )
    }

    /// Asks the breaker for a permit for one call; on a refusal, remembers until when a pick
    /// need not ask again.
    #[inline]
    pub(crate) fn admit(&self, now: Instant) -> Option<OwnedPermit> {
        match self.breaker.try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(open) => {
                let wait = open.retry_after().unwrap_or(HALF_OPEN_RECHECK);
                let until = now.as_nanos().saturating_add(duration_to_nanos(wait));
                // Relaxed: a hint (see `is_candidate`); racing refusals store similar times.
                self.refused_until.store(until, Ordering::Relaxed);
                None
            }
        }
    }
}

impl<K> Core<K> {
    /// A breaker for a new endpoint, from the template (none without one).
    pub(crate) fn new_endpoint_breaker(&self, key: &K, id: u64) -> Option<EndpointBreaker>
    where
        K: fmt::Debug,
    {
        let template = self.breaker_template.as_ref()?;
        let seed =
            palisade_core::rng::mix(self.breaker_seed ^ id.wrapping_mul(palisade_core::rng::GAMMA));
        template
            .clone()
            .name(format!("{}/{key:?}", self.name))
            .clock(self.clock.clone())
            .jitter_seed(seed)
            .build()
            // Validated by `BalancerBuilder::build`; only the name, clock and seed differ.
            .ok()
            .map(EndpointBreaker::new)
    }
}

impl<K, S> Balancer<K, S>
where
    K: PartialEq + Clone + Send + Sync + 'static,
{
    /// The circuit breaker of the endpoint with this key (a handle sharing its state), when
    /// the balancer was built with [`endpoint_breaker`](crate::BalancerBuilder::endpoint_breaker)
    /// and the key is in the set: subscribe to it for its state transitions, read its
    /// snapshot, or force it open or closed by hand.
    #[must_use]
    pub fn endpoint_breaker(&self, key: &K) -> Option<CircuitBreaker> {
        let set = self.shared.set.load();
        let entry = set.iter().find(|e| &e.node.key == key)?;
        entry.node.breaker.as_ref().map(|b| b.breaker.clone())
    }
}
