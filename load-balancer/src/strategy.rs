//! How an endpoint is chosen among the candidates: pure decision functions behind one trait.
//!
//! The balancer applies health first (ejected endpoints, an endpoint that failed readiness in
//! this pick, the endpoint of the previous attempt of a retry are not candidates), then asks
//! its [`Strategy`] to choose among what is left. A strategy sees the endpoint set only through
//! a probe `load(i)`: `Some(Load)` for a candidate, `None` for an endpoint it must not choose,
//! so a pick touches only the endpoints it looks at (two for the P2C strategies) and allocates
//! nothing. Strategies are plain values, tested below on hand-built loads without a runtime.
//!
//! | strategy        | looks at          | source |
//! |-----------------|-------------------|--------|
//! | [`P2cPeakEwma`] (default) | 2 endpoints: peak-EWMA latency × (pending + 1) | Finagle `P2CPeakEwma`, Linkerd; failures charged a penalty latency |
//! | [`P2cPending`]  | 2 endpoints: pending requests | Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing" (2001); Finagle `P2C` least-loaded |
//! | [`LeastPending`]| every endpoint: pending requests | Ribbon `BestAvailableRule` |
//! | [`RoundRobin`]  | the next candidate in order | Ribbon `RoundRobinRule` |
//! | [`Random`]      | one random candidate (seeded) | Ribbon `RandomRule` |
//! | [`WeightedP2cPeakEwma`] | 2 endpoints: peak-EWMA cost ÷ weight | tower#696's weighted P2C; Finagle's weighted aperture idea |
//! | [`WeightedRandom`] | every endpoint: random in proportion to weight | Envoy's weighted random / Ribbon weights |
//! | [`WeightedRoundRobin`] | every endpoint: smooth weighted round robin (one short lock) | nginx's smooth weighted round robin (2012) |
//! | [`WeightedResponseTime`] | every endpoint: random, weight = total latency − own latency | Ribbon `WeightedResponseTimeRule` |
//! | [`HotCold`] | 3 endpoints: cold ones by latency, else fewest pending | Prequal (Wydrowski, Kleinberg, Rumble, 2024), client-observed |
//!
//! Where a sampled endpoint is not a candidate, the strategies move on to the next candidate in
//! index order; with two candidates left, the P2C strategies always compare both (sampling
//! without replacement).

use palisade_core::rng::mix;
use palisade_core::sync::atomic::{AtomicUsize, Ordering};
use std::fmt;
use std::time::Duration;

pub use crate::wrr::WeightedRoundRobin;

/// What a strategy knows of one candidate endpoint.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Load {
    /// Requests sent to the endpoint and not finished yet (by this balancer and its clones).
    pub pending: u64,
    /// The endpoint's peak-EWMA latency estimate in nanoseconds, decayed to now; failures and
    /// local rejections count as the balancer's failure penalty.
    pub latency_ns: f64,
    /// The endpoint's weight from its `EndpointMeta` (default 1); only the weighted strategies
    /// read it.
    pub weight: u32,
}

impl Load {
    /// A load of `pending` requests and a latency estimate of `latency`.
    #[must_use]
    pub fn new(pending: u64, latency: Duration) -> Load {
        Load {
            pending,
            latency_ns: latency.as_nanos() as f64,
            weight: 1,
        }
    }

    /// The same load with weight `weight`.
    #[must_use]
    pub fn with_weight(mut self, weight: u32) -> Load {
        self.weight = weight;
        self
    }

    /// The peak-EWMA cost per unit of weight: `latency × (pending + 1) / weight` (infinite
    /// for weight 0).
    #[inline]
    #[must_use]
    pub fn weighted_cost(&self) -> f64 {
        if self.weight == 0 {
            f64::INFINITY
        } else {
            self.cost() / f64::from(self.weight)
        }
    }

    /// Finagle's peak-EWMA cost: `latency × (pending + 1)`.
    #[inline]
    #[must_use]
    pub fn cost(&self) -> f64 {
        self.latency_ns * (self.pending as f64 + 1.0)
    }
}

/// Chooses one of `n` endpoints. See the [module docs](self).
///
/// `load(i)` is `None` for an endpoint that is not a candidate; `draw` is a fresh 64-bit random
/// number from the balancer's seeded generator. Returns the index of the chosen candidate, or
/// `None` when there is no candidate.
pub trait Strategy: fmt::Debug + Send + Sync + 'static {
    /// Picks a candidate.
    fn pick(&self, n: usize, load: &dyn Fn(usize) -> Option<Load>, draw: u64) -> Option<usize>;
}

/// A uniform index in `0..n` from a 64-bit draw (multiply-shift, no division).
#[inline]
fn uniform(draw: u64, n: usize) -> usize {
    ((u128::from(draw) * n as u128) >> 64) as usize
}

/// The first candidate at or after `start` (wrapping), other than `skip`.
#[inline]
fn next_candidate(
    n: usize,
    start: usize,
    load: &dyn Fn(usize) -> Option<Load>,
    skip: Option<usize>,
) -> Option<(usize, Load)> {
    (0..n).find_map(|offset| {
        let i = (start + offset) % n;
        if Some(i) == skip {
            return None;
        }
        load(i).map(|l| (i, l))
    })
}

/// A candidate's index and load.
type Candidate = (usize, Load);

/// Two distinct candidates drawn uniformly (the second `None` when only one exists).
#[inline]
fn two_candidates(
    n: usize,
    load: &dyn Fn(usize) -> Option<Load>,
    draw: u64,
) -> Option<(Candidate, Option<Candidate>)> {
    if n == 0 {
        return None;
    }
    let a0 = uniform(draw, n);
    let b0 = if n > 1 {
        let b = uniform(mix(draw), n - 1);
        if b >= a0 { b + 1 } else { b }
    } else {
        a0
    };
    let a = next_candidate(n, a0, load, None)?;
    Some((a, next_candidate(n, b0, load, Some(a.0))))
}

/// Power of two choices over the peak-EWMA cost (the default).
///
/// Source: Finagle's `Balancers.p2cPeakEwma` (Twitter, 2016) and Linkerd, after Mitzenmacher's
/// two random choices: draw two candidates, send to the one with the lower
/// `latency × (pending + 1)`. The latency estimate reacts to a slowdown at once and decays
/// otherwise (see the balancer's `decay`); unlike Finagle's and tower's, a **failure or a local
/// rejection is charged the failure penalty** (default 1 s) as its latency, so an endpoint
/// that fails fast never looks fast; each later success halves what is left of it, so a
/// recovered endpoint earns its share back in a few calls (see the balancer's
/// `failure_penalty`). An idle endpoint priced by its penalty is offered probe calls while its
/// peers are loaded, so a recovery is found by traffic (the balancer's `idle_probe_interval`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct P2cPeakEwma;

impl Strategy for P2cPeakEwma {
    fn pick(&self, n: usize, load: &dyn Fn(usize) -> Option<Load>, draw: u64) -> Option<usize> {
        let ((a, la), b) = two_candidates(n, load, draw)?;
        Some(match b {
            Some((b, lb)) if lb.cost() < la.cost() => b,
            _ => a,
        })
    }
}

/// Power of two choices over pending requests.
///
/// Source: Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing" (IEEE TPDS,
/// 2001); Finagle's least-loaded P2C; tower's `p2c::Balance` over `PendingRequests`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct P2cPending;

impl Strategy for P2cPending {
    fn pick(&self, n: usize, load: &dyn Fn(usize) -> Option<Load>, draw: u64) -> Option<usize> {
        let ((a, la), b) = two_candidates(n, load, draw)?;
        Some(match b {
            Some((b, lb)) if lb.pending < la.pending => b,
            _ => a,
        })
    }
}

/// The candidate with the fewest pending requests, ties broken from a random start.
///
/// Source: Ribbon's `BestAvailableRule` (skip tripped servers, choose the least concurrent).
/// Looks at every endpoint: O(n) per pick, fine for tens of endpoints; prefer [`P2cPending`]
/// for large sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeastPending;

impl Strategy for LeastPending {
    fn pick(&self, n: usize, load: &dyn Fn(usize) -> Option<Load>, draw: u64) -> Option<usize> {
        if n == 0 {
            return None;
        }
        let start = uniform(draw, n);
        let mut best: Option<(usize, u64)> = None;
        for offset in 0..n {
            let i = (start + offset) % n;
            if let Some(l) = load(i)
                && best.is_none_or(|(_, p)| l.pending < p)
            {
                best = Some((i, l.pending));
            }
        }
        best.map(|(i, _)| i)
    }
}

/// The next candidate in order, one counter shared by every clone of the balancer.
///
/// Source: Ribbon's `RoundRobinRule`. Skipped endpoints (ejected, not ready) hand their turn to
/// the next candidate.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// A round robin starting at the first endpoint.
    #[must_use]
    pub fn new() -> RoundRobin {
        RoundRobin::default()
    }
}

impl Strategy for RoundRobin {
    fn pick(&self, n: usize, load: &dyn Fn(usize) -> Option<Load>, _draw: u64) -> Option<usize> {
        if n == 0 {
            return None;
        }
        // Relaxed: the counter only spreads picks; no other memory is published through it,
        // and the RMW gives concurrent picks distinct turns.
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        next_candidate(n, start, load, None).map(|(i, _)| i)
    }
}

/// A uniformly random candidate from the balancer's seeded generator.
///
/// Source: Ribbon's `RandomRule`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Random;

impl Strategy for Random {
    fn pick(&self, n: usize, load: &dyn Fn(usize) -> Option<Load>, draw: u64) -> Option<usize> {
        if n == 0 {
            return None;
        }
        next_candidate(n, uniform(draw, n), load, None).map(|(i, _)| i)
    }
}

/// Power of two choices over the peak-EWMA cost divided by the endpoint's weight: an endpoint
/// of weight 2 is preferred until it carries twice the load of one of weight 1.
///
/// Source: the weighted P2C asked for in tower#696, over Finagle's peak-EWMA cost; failures
/// are charged the failure penalty as in [`P2cPeakEwma`]. Weight 0 is chosen only when it is
/// the sole candidate of a pair's draw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WeightedP2cPeakEwma;

impl Strategy for WeightedP2cPeakEwma {
    fn pick(&self, n: usize, load: &dyn Fn(usize) -> Option<Load>, draw: u64) -> Option<usize> {
        let ((a, la), b) = two_candidates(n, load, draw)?;
        Some(match b {
            Some((b, lb)) if lb.weighted_cost() < la.weighted_cost() => b,
            _ => a,
        })
    }
}

/// Draws index `i` with probability `weights(i) / Σ weights` (two passes over the candidates,
/// no allocation); `None` when no candidate has a positive weight.
fn weighted_draw(
    n: usize,
    load: &dyn Fn(usize) -> Option<Load>,
    draw: u64,
    weight: impl Fn(&Load) -> f64,
) -> Option<usize> {
    let total: f64 = (0..n).filter_map(load).map(|l| weight(&l)).sum();
    if !total.is_finite() || total <= 0.0 || total.is_nan() {
        return None;
    }
    let mut target = palisade_core::rng::unit_f64(draw) * total;
    let mut last = None;
    for i in 0..n {
        if let Some(l) = load(i) {
            let w = weight(&l);
            if w <= 0.0 {
                continue;
            }
            last = Some(i);
            if target < w {
                return Some(i);
            }
            target -= w;
        }
    }
    // Rounding left the target past the end: the last candidate with weight takes it.
    last
}

/// A random candidate, with probability proportional to its weight; O(n) per pick.
///
/// Source: weighted random selection as in Envoy's `RANDOM` policy with host weights. Long-run
/// shares match the weights (tested within 1 %). Falls back to a uniform pick when every
/// candidate has weight 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WeightedRandom;

impl Strategy for WeightedRandom {
    fn pick(&self, n: usize, load: &dyn Fn(usize) -> Option<Load>, draw: u64) -> Option<usize> {
        weighted_draw(n, load, draw, |l| f64::from(l.weight)).or_else(|| Random.pick(n, load, draw))
    }
}

/// A random candidate weighted by how much faster than the others it is: weight = (sum of
/// every candidate's latency estimate) − its own; O(n) per pick.
///
/// Source: Ribbon's `WeightedResponseTimeRule`. With the balancer's failure penalty in the
/// latency estimate, a failing endpoint's weight falls towards zero. Falls back to a uniform
/// pick when the weights are all zero (a single candidate, or no estimates yet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WeightedResponseTime;

impl Strategy for WeightedResponseTime {
    fn pick(&self, n: usize, load: &dyn Fn(usize) -> Option<Load>, draw: u64) -> Option<usize> {
        let total: f64 = (0..n).filter_map(load).map(|l| l.latency_ns).sum();
        weighted_draw(n, load, draw, |l| (total - l.latency_ns).max(0.0))
            .or_else(|| Random.pick(n, load, draw))
    }
}

/// A Prequal-style hot–cold lexicographic pick over client-observed requests in flight and
/// latency.
///
/// Source: Wydrowski, Kleinberg, Rumble, "Load is not what you should balance: Introducing
/// Prequal" (NSDI 2024). Prequal probes servers for their requests in flight (RIF) and
/// latency, calls a probed server *hot* when its RIF is at or above a quantile of the probe
/// pool's RIFs, and picks lexicographically: the cold server with the lowest latency, or, when
/// all are hot, the one with the fewest RIF. This is a client-side adaptation, documented as
/// such: the "probes" are this balancer's own statistics (pending count as RIF, the peak-EWMA
/// estimate with the failure penalty as latency) of `samples` candidates drawn without
/// replacement (default 3), and a candidate is hot when its pending count is the highest of
/// the sample and above the lowest (the top quantile of a small pool). No server-side probing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HotCold {
    samples: usize,
}

impl Default for HotCold {
    fn default() -> Self {
        HotCold { samples: 3 }
    }
}

impl HotCold {
    /// Three samples per pick.
    #[must_use]
    pub fn new() -> Self {
        HotCold::default()
    }

    /// Candidates sampled per pick (2 to 8; values outside are clamped).
    #[must_use]
    pub fn samples(mut self, samples: usize) -> Self {
        self.samples = samples.clamp(2, 8);
        self
    }
}

impl Strategy for HotCold {
    fn pick(&self, n: usize, load: &dyn Fn(usize) -> Option<Load>, draw: u64) -> Option<usize> {
        if n == 0 {
            return None;
        }
        let mut sample = [(usize::MAX, Load::new(0, Duration::ZERO)); 8];
        let mut len = 0;
        let mut state = draw;
        // Distinct candidates: each draw moves on to the next candidate not yet in the sample.
        for _ in 0..self.samples.min(n) {
            state = mix(state.wrapping_add(palisade_core::rng::GAMMA));
            let start = uniform(state, n);
            let found = (0..n).find_map(|offset| {
                let i = (start + offset) % n;
                if sample[..len].iter().any(|(j, _)| *j == i) {
                    return None;
                }
                load(i).map(|l| (i, l))
            });
            match found {
                Some(candidate) => {
                    sample[len] = candidate;
                    len += 1;
                }
                None => break,
            }
        }
        let sample = &sample[..len];
        let max = sample.iter().map(|(_, l)| l.pending).max()?;
        let min = sample.iter().map(|(_, l)| l.pending).min()?;
        let hot = |l: &Load| max > min && l.pending == max;
        let cold_fastest = sample
            .iter()
            .filter(|(_, l)| !hot(l))
            .min_by(|(_, a), (_, b)| a.latency_ns.total_cmp(&b.latency_ns));
        cold_fastest
            .or_else(|| sample.iter().min_by_key(|(_, l)| l.pending))
            .map(|(i, _)| *i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::rng::SplitMix64;

    fn ms(pending: u64, millis: u64) -> Option<Load> {
        Some(Load::new(pending, Duration::from_millis(millis)))
    }

    fn shares(
        strategy: &dyn Strategy,
        loads: &[Option<Load>],
        picks: usize,
        seed: u64,
    ) -> Vec<usize> {
        let mut rng = SplitMix64::new(seed);
        let mut counts = vec![0; loads.len()];
        let probe = |i: usize| loads[i];
        for _ in 0..picks {
            let i = strategy.pick(loads.len(), &probe, rng.next_u64()).unwrap();
            assert!(loads[i].is_some(), "picked a non-candidate");
            counts[i] += 1;
        }
        counts
    }

    #[test]
    fn no_candidates_no_pick() {
        let none = |_: usize| None;
        let strategies: [&dyn Strategy; 9] = [
            &P2cPeakEwma,
            &P2cPending,
            &LeastPending,
            &RoundRobin::new(),
            &Random,
            &WeightedP2cPeakEwma,
            &WeightedRandom,
            &WeightedResponseTime,
            &HotCold::new(),
        ];
        for s in strategies {
            assert_eq!(s.pick(0, &none, 1), None, "{s:?}");
            assert_eq!(s.pick(3, &none, 1), None, "{s:?}");
        }
    }

    #[test]
    fn p2c_with_two_candidates_always_compares_both() {
        // Regression guard for sampling with replacement: drawing the same endpoint twice
        // would send to the worse one a quarter of the time.
        let loads = [ms(0, 100), ms(0, 10)];
        assert_eq!(shares(&P2cPeakEwma, &loads, 1_000, 1), vec![0, 1_000]);
        let loads = [ms(5, 10), None, ms(1, 10)];
        assert_eq!(shares(&P2cPending, &loads, 1_000, 2), vec![0, 0, 1_000]);
    }

    #[test]
    fn p2c_peak_ewma_never_prefers_the_worst_of_three() {
        let loads = [ms(0, 10), ms(0, 1_000), ms(0, 12)];
        let counts = shares(&P2cPeakEwma, &loads, 3_000, 3);
        assert_eq!(counts[1], 0, "{counts:?}");
        // The best endpoint wins every pair it is in: two pairs of three.
        assert!(counts[0] > 1_800 && counts[0] < 2_200, "{counts:?}");
    }

    #[test]
    fn p2c_peak_ewma_weighs_latency_by_pending() {
        // 10 ms with 9 pending costs 100, 40 ms idle costs 40: the idle slower one wins.
        let probe = |i: usize| [ms(9, 10), ms(0, 40)][i];
        for draw in 0..100u64 {
            assert_eq!(P2cPeakEwma.pick(2, &probe, mix(draw)), Some(1));
        }
    }

    #[test]
    fn p2c_spreads_evenly_over_equal_endpoints() {
        let loads = vec![ms(0, 10); 4];
        for count in shares(&P2cPeakEwma, &loads, 40_000, 4) {
            assert!((9_500..=10_500).contains(&count), "{count}");
        }
    }

    #[test]
    fn least_pending_takes_the_minimum_and_breaks_ties_randomly() {
        let loads = [ms(3, 1), ms(1, 1), None, ms(1, 1), ms(2, 1)];
        let counts = shares(&LeastPending, &loads, 2_000, 5);
        assert_eq!(counts[0] + counts[4], 0);
        assert!(counts[1] > 800 && counts[3] > 800, "{counts:?}");
    }

    #[test]
    fn round_robin_visits_candidates_in_turn_and_skips_the_rest() {
        let rr = RoundRobin::new();
        let loads = [ms(0, 1), None, ms(0, 1)];
        let probe = |i: usize| loads[i];
        let order: Vec<_> = (0..6).map(|_| rr.pick(3, &probe, 0).unwrap()).collect();
        // Index 1's turn goes to index 2.
        assert_eq!(order, vec![0, 2, 2, 0, 2, 2]);
        let all = [ms(0, 1); 3];
        let probe = |i: usize| all[i];
        let rr = RoundRobin::new();
        let order: Vec<_> = (0..6).map(|_| rr.pick(3, &probe, 0).unwrap()).collect();
        assert_eq!(order, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weighted_random_shares_are_within_one_percent_of_the_weights() {
        let loads = [
            ms(0, 1).map(|l| l.with_weight(1)),
            ms(0, 1).map(|l| l.with_weight(3)),
            None,
            ms(0, 1).map(|l| l.with_weight(6)),
            ms(0, 1).map(|l| l.with_weight(0)),
        ];
        let picks = 200_000;
        let counts = shares(&WeightedRandom, &loads, picks, 8);
        for (i, expected) in [(0, 0.1), (1, 0.3), (3, 0.6)] {
            let share = counts[i] as f64 / picks as f64;
            assert!(
                (share - expected).abs() < 0.01,
                "{i}: {share} vs {expected}"
            );
        }
        assert_eq!(counts[4], 0, "weight 0 is never drawn");
    }

    #[test]
    fn weighted_p2c_prefers_capacity() {
        // Same latency and pending: weight 4 wins every pair it is in.
        let loads = [
            ms(1, 10).map(|l| l.with_weight(4)),
            ms(1, 10).map(|l| l.with_weight(1)),
        ];
        assert_eq!(shares(&WeightedP2cPeakEwma, &loads, 500, 9), vec![500, 0]);
        // Until it carries more than four times the load.
        let loads = [
            ms(9, 10).map(|l| l.with_weight(4)),
            ms(1, 10).map(|l| l.with_weight(1)),
        ];
        assert_eq!(shares(&WeightedP2cPeakEwma, &loads, 500, 9), vec![0, 500]);
    }

    #[test]
    fn weighted_response_time_favours_the_fast() {
        // Latencies 10, 30, 60 (sum 100): weights 90, 70, 40 of 200.
        let loads = [ms(0, 10), ms(0, 30), ms(0, 60)];
        let picks = 100_000;
        let counts = shares(&WeightedResponseTime, &loads, picks, 10);
        for (i, expected) in [(0, 0.45), (1, 0.35), (2, 0.2)] {
            let share = counts[i] as f64 / picks as f64;
            assert!(
                (share - expected).abs() < 0.01,
                "{i}: {share} vs {expected}"
            );
        }
        // One candidate: it is chosen.
        let one = [ms(0, 10)];
        assert_eq!(shares(&WeightedResponseTime, &one, 10, 11), vec![10]);
    }

    #[test]
    fn hot_cold_prefers_the_fastest_cold_endpoint() {
        // Endpoint 0 is the fastest but the most loaded (hot); 1 and 2 are cold, 2 faster.
        let loads = [ms(8, 1), ms(1, 30), ms(1, 20)];
        assert_eq!(shares(&HotCold::new(), &loads, 300, 12), vec![0, 0, 300]);
        // All equally loaded: nobody is hot, the fastest wins.
        let loads = [ms(2, 1), ms(2, 30), ms(2, 20)];
        assert_eq!(shares(&HotCold::new(), &loads, 300, 13), vec![300, 0, 0]);
        // A failing endpoint, charged the failure penalty, is never the fastest cold one.
        let loads = [ms(0, 1_000), ms(0, 10), ms(0, 12)];
        assert_eq!(shares(&HotCold::new(), &loads, 300, 14)[0], 0);
        // With more endpoints than samples, every candidate is still reachable.
        let loads = vec![ms(0, 10); 6];
        assert!(
            shares(&HotCold::new(), &loads, 6_000, 15)
                .iter()
                .all(|c| *c > 0)
        );
    }

    #[test]
    fn random_is_seeded_and_uniform() {
        let loads = vec![ms(0, 1); 5];
        let a = shares(&Random, &loads, 10_000, 6);
        assert_eq!(
            a,
            shares(&Random, &loads, 10_000, 6),
            "same seed, same picks"
        );
        for count in a {
            assert!((1_800..=2_200).contains(&count), "{count}");
        }
    }
}
