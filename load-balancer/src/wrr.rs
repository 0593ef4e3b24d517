//! [`WeightedRoundRobin`]: nginx's smooth weighted round robin.

use crate::strategy::{Load, Strategy};
use palisade_core::sync::Mutex;

/// Smooth weighted round robin: over every `Σ weights` picks each candidate is chosen exactly
/// `weight` times, and the picks of a heavy endpoint are spread out instead of coming in a
/// burst (weights 5, 1, 1 give `a a b a c a a`, not `a a a a a b c`).
///
/// Source: nginx's smooth weighted round-robin balancing (`ngx_http_upstream_get_peer` in
/// `src/http/ngx_http_upstream_round_robin.c`, Maxim Dounin, nginx 1.3.1, 2012). Every
/// candidate keeps a current weight; a pick adds each candidate's weight to its current weight,
/// chooses the candidate with the highest current weight (the lowest index on a tie) and
/// subtracts the candidates' total weight from the chosen one's. The current weights always
/// sum to zero, so each candidate's stays within a bounded distance of its fair share and the
/// long-run shares equal the weights (tested within 1 %).
///
/// Endpoints that are not candidates (ejected, breaker open, not ready, the previous attempt's
/// endpoint) neither gain nor lose in that pick, as nginx skips peers that are down; weight 0
/// is never chosen unless every candidate has weight 0, then the candidates take turns by the
/// balancer's random draw. nginx's own lowering of a failing peer's effective weight is left
/// to the balancer's health checks (outlier ejection, endpoint breakers). The current weights
/// are kept by endpoint index in the set; when the set's size changes they start again from
/// zero (one period of imperfect interleaving).
///
/// # Critical section
///
/// A pick reads the candidates and updates the current weights of all of them together under
/// one short lock: O(n) additions, no allocation (except when the set grows), no call out
/// (the probe only reads atomics). The algorithm needs it: the choice depends on every
/// counter and changes every counter, so with one atomic per counter two concurrent picks could
/// both see the same maximum and both choose it, and the interleaving, the point of the
/// algorithm, would be lost. nginx itself makes this update under the upstream's lock
/// (`ngx_http_upstream_rr_peers_wlock`) for a shared upstream zone. Like [`LeastPending`](crate::LeastPending),
/// it looks at every endpoint: for thousands of endpoints prefer the P2C strategies.
#[derive(Debug, Default)]
pub struct WeightedRoundRobin {
    current: Mutex<Vec<i64>>,
}

impl WeightedRoundRobin {
    /// A smooth weighted round robin with every current weight at zero.
    #[must_use]
    pub fn new() -> WeightedRoundRobin {
        WeightedRoundRobin::default()
    }
}

impl Strategy for WeightedRoundRobin {
    fn pick(&self, n: usize, load: &dyn Fn(usize) -> Option<Load>, draw: u64) -> Option<usize> {
        if n == 0 {
            return None;
        }
        let mut current = self.current.lock();
        if current.len() != n {
            current.clear();
            current.resize(n, 0);
        }
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        let mut any_candidate = false;
        for i in 0..n {
            let Some(l) = load(i) else { continue };
            any_candidate = true;
            if l.weight == 0 {
                continue;
            }
            let w = i64::from(l.weight);
            current[i] += w;
            total += w;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        if let Some(b) = best {
            current[b] -= total;
            return Some(b);
        }
        drop(current);
        if !any_candidate {
            return None;
        }
        // Every candidate has weight 0: take turns by the draw.
        crate::strategy::Random.pick(n, load, draw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn weighted(w: u32) -> Option<Load> {
        Some(Load::new(0, Duration::from_millis(1)).with_weight(w))
    }

    #[test]
    fn weights_five_one_one_interleave_like_nginx() {
        let wrr = WeightedRoundRobin::new();
        let loads = [weighted(5), weighted(1), weighted(1)];
        let probe = |i: usize| loads[i];
        let order: String = (0..14)
            .map(|_| ["a", "b", "c"][wrr.pick(3, &probe, 0).unwrap()])
            .collect();
        assert_eq!(order, "aabacaa".repeat(2));
    }

    #[test]
    fn long_run_shares_are_within_one_percent_of_the_weights() {
        let wrr = WeightedRoundRobin::new();
        let loads = [weighted(1), weighted(3), None, weighted(6), weighted(0)];
        let probe = |i: usize| loads[i];
        let picks = 100_003;
        let mut counts = [0u32; 5];
        for draw in 0..picks {
            counts[wrr.pick(5, &probe, draw).unwrap()] += 1;
        }
        for (i, expected) in [(0, 0.1), (1, 0.3), (3, 0.6)] {
            let share = f64::from(counts[i]) / picks as f64;
            assert!(
                (share - expected).abs() < 0.01,
                "{i}: {share} vs {expected}"
            );
        }
        assert_eq!(
            counts[2] + counts[4],
            0,
            "non-candidates and weight 0 are never chosen"
        );
    }

    #[test]
    fn a_skipped_endpoint_gives_its_turns_to_the_others_in_proportion() {
        let wrr = WeightedRoundRobin::new();
        let loads = [weighted(2), weighted(1), weighted(1)];
        let probe = |i: usize| loads[i];
        // Endpoint 0 out: 1 and 2 alternate.
        let without = |i: usize| if i == 0 { None } else { loads[i] };
        let order: Vec<_> = (0..4).map(|_| wrr.pick(3, &without, 0).unwrap()).collect();
        assert_eq!(order, vec![1, 2, 1, 2]);
        // Back: over a period of 4 picks it takes its 2.
        let back: Vec<_> = (0..4).map(|_| wrr.pick(3, &probe, 0).unwrap()).collect();
        assert_eq!(back.iter().filter(|i| **i == 0).count(), 2, "{back:?}");
    }

    #[test]
    fn all_zero_weights_fall_back_to_a_uniform_pick_and_none_without_candidates() {
        let wrr = WeightedRoundRobin::new();
        let loads = [weighted(0), weighted(0)];
        let probe = |i: usize| loads[i];
        let mut seen = [false; 2];
        for draw in 0..64u64 {
            seen[wrr.pick(2, &probe, palisade_core::rng::mix(draw)).unwrap()] = true;
        }
        assert_eq!(seen, [true, true]);
        assert_eq!(wrr.pick(2, &|_| None, 1), None);
        assert_eq!(wrr.pick(0, &probe, 1), None);
    }

    #[test]
    fn concurrent_picks_keep_the_shares() {
        let wrr = std::sync::Arc::new(WeightedRoundRobin::new());
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let wrr = std::sync::Arc::clone(&wrr);
                std::thread::spawn(move || {
                    let loads = [weighted(3), weighted(1)];
                    let probe = |i: usize| loads[i];
                    let mut counts = [0u32; 2];
                    for _ in 0..10_000 {
                        counts[wrr.pick(2, &probe, 0).unwrap()] += 1;
                    }
                    counts
                })
            })
            .collect();
        let mut total = [0u32; 2];
        for t in threads {
            let c = t.join().unwrap();
            total[0] += c[0];
            total[1] += c[1];
        }
        // 20 000 picks in periods of 4: exactly 15 000 and 5 000, however they interleaved.
        assert_eq!(total, [15_000, 5_000]);
    }
}
