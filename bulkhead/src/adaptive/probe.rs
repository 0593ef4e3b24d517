//! The no-load RTT probe shared by [`Gradient2`](super::Gradient2) and [`Vegas`](super::Vegas).
//!
//! A latency-only algorithm that starts (or stays for long) at a limit far above the backend's
//! capacity never sees the backend's unloaded latency: every RTT it measures is inflated, so
//! it cannot tell "overloaded" from "normal". Envoy's adaptive concurrency filter solves this by
//! measuring the minimum RTT at a pinned low concurrency, at start and then periodically; this
//! probe does the same. At the first update, and then after `multiplier × limit` completed calls
//! (Netflix Vegas's probe schedule, with a jitter in `[0.5, 1)`), the limit is pinned to
//! `probe_limit` until one whole window was admitted at that concurrency; that window's minimum
//! RTT becomes the no-load baseline, and the previous limit is restored.

use super::Sample;
use std::time::Duration;

#[derive(Clone, Debug)]
pub(crate) struct MinRttProbe {
    probe_limit: usize,
    multiplier: f64,
    rng: u64,
    jitter: f64,
    count: u64,
    /// The limit to restore, while probing.
    saved: Option<f64>,
}

/// What the probe decided for one window.
pub(crate) enum ProbeStep {
    /// Not probing: the algorithm updates as usual.
    Normal,
    /// Probing: hold the limit at this value.
    Hold(usize),
    /// Probe over: this is the no-load RTT; go back to the saved limit.
    Done { baseline: Duration, restore: f64 },
}

impl MinRttProbe {
    pub(crate) fn new(probe_limit: usize, multiplier: usize, seed: u64, initial: f64) -> Self {
        let mut probe = MinRttProbe {
            probe_limit: probe_limit.max(1),
            multiplier: multiplier as f64,
            rng: seed | 1,
            jitter: 1.0,
            count: 0,
            saved: Some(initial),
        };
        probe.jitter = probe.next_jitter();
        probe
    }

    fn next_jitter(&mut self) -> f64 {
        // xorshift64: seeded and dependency-free; quality is irrelevant here.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        0.5 + (x >> 11) as f64 / (1u64 << 53) as f64 * 0.5
    }

    pub(crate) fn step(&mut self, sample: &Sample, limit: f64) -> ProbeStep {
        if let Some(restore) = self.saved {
            if sample.in_flight <= self.probe_limit {
                self.saved = None;
                self.count = 0;
                self.jitter = self.next_jitter();
                return ProbeStep::Done {
                    baseline: sample.min_rtt,
                    restore,
                };
            }
            return ProbeStep::Hold(self.probe_limit);
        }
        // Saturating: with a large multiplier the threshold may never be reached, and a
        // custom driver may hand in any `samples`; the count must stop at the top, not wrap
        // (or panic with overflow checks on).
        self.count = self.count.saturating_add(sample.samples);
        if self.count as f64 >= self.jitter * self.multiplier * limit {
            self.saved = Some(limit);
            return ProbeStep::Hold(self.probe_limit);
        }
        ProbeStep::Normal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 9 §3): with a large probe multiplier the probe is never due, and the
    /// call counter overflowed (a panic with overflow checks on, a wrap and a spurious probe
    /// without).
    #[test]
    fn the_call_counter_saturates_with_a_large_multiplier() {
        let mut probe = MinRttProbe::new(3, usize::MAX, 7, 10.0);
        let ms = Duration::from_millis;
        assert!(matches!(
            probe.step(&Sample::new(ms(5), 3, 10, 0), 10.0),
            ProbeStep::Done { .. }
        ));
        let huge = Sample::new(ms(5), 10, u64::MAX / 2 + 1, 0);
        for _ in 0..4 {
            assert!(matches!(probe.step(&huge, 10.0), ProbeStep::Normal));
        }
        assert_eq!(probe.count, u64::MAX);
    }
}
