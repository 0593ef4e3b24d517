//! Seedable randomness for jitter and sampling: SplitMix64.
//!
//! Layers draw jitter (backoffs, open-state waits) and sample decisions from generators that
//! tests seed, so a simulation replays exactly (CONVENTIONS.md 15). SplitMix64 is tiny (one
//! `u64` of state), fast (an add and a mix), and statistically plenty for jitter; it is not
//! for cryptography. [`mix`] is its output function alone, for layers that keep the state in
//! an atomic and advance it with `fetch_add(GAMMA)`.
//!
//! ```
//! use palisade_core::rng::SplitMix64;
//! use std::time::Duration;
//!
//! let mut a = SplitMix64::new(7);
//! let mut b = SplitMix64::new(7);
//! assert_eq!(a.next_u64(), b.next_u64()); // same seed, same stream
//! let x = a.next_f64();
//! assert!((0.0..1.0).contains(&x));
//! let d = a.duration_between(Duration::from_millis(10), Duration::from_millis(20));
//! assert!(d >= Duration::from_millis(10) && d <= Duration::from_millis(20));
//! ```
//!
//! Internal to Palisade's layer crates (hidden from the docs): not part of the stable API.

#![doc(hidden)]

use std::time::Duration;

/// The increment of the SplitMix64 state per draw (the golden ratio in 64-bit fixed point).
pub const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output function: turns a state into a well-mixed 64-bit draw.
#[inline]
#[must_use]
pub const fn mix(state: u64) -> u64 {
    let mut z = state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniform `f64` in `0.0..1.0` from a 64-bit draw (its top 53 bits).
#[inline]
#[must_use]
pub fn unit_f64(draw: u64) -> f64 {
    (draw >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A seedable SplitMix64 generator. See the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose stream is fixed by `seed`.
    #[must_use]
    pub const fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64-bit draw.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        mix(self.0)
    }

    /// A uniform draw in `0.0..1.0`.
    pub fn next_f64(&mut self) -> f64 {
        unit_f64(self.next_u64())
    }

    /// A uniform duration in `low..=high` (nanosecond resolution; `low` if `high <= low`).
    pub fn duration_between(&mut self, low: Duration, high: Duration) -> Duration {
        let (lo, hi) = (low.as_nanos(), high.as_nanos());
        if hi <= lo {
            return low;
        }
        let span = (hi - lo).min(u128::from(u64::MAX - 1)) as u64 + 1;
        // Multiply-shift: uniform enough for jitter, and no division.
        let offset = ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as u64;
        low + Duration::from_nanos(offset)
    }
}

/// A seed that differs between processes and between calls, for layers whose user set none
/// (jitter, probe draws). Every layer takes an explicit seed too, for reproducible tests.
///
/// Drawn from the standard library's per-process random hasher keys mixed with a process-wide
/// counter, so it costs no system call after the first and needs no `rand`.
#[must_use]
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering as StdOrdering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    // Relaxed: the counter only has to make two draws of one process differ.
    let call = CALLS.fetch_add(1, StdOrdering::Relaxed);
    mix(RandomState::new().hash_one(call) ^ call.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_seeds_differ() {
        assert_ne!(random_seed(), random_seed());
    }

    #[test]
    fn known_answer_for_seed_zero() {
        // The published first outputs of SplitMix64 seeded with 0.
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn unit_draws_stay_in_range_and_spread() {
        let mut rng = SplitMix64::new(42);
        let draws: Vec<f64> = (0..10_000).map(|_| rng.next_f64()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        let below_half = draws.iter().filter(|x| **x < 0.5).count();
        assert!((4_700..=5_300).contains(&below_half), "{below_half}");
    }

    #[test]
    fn durations_stay_within_bounds() {
        let mut rng = SplitMix64::new(1);
        let (lo, hi) = (Duration::from_micros(5), Duration::from_micros(9));
        for _ in 0..1_000 {
            let d = rng.duration_between(lo, hi);
            assert!(d >= lo && d <= hi);
        }
        assert_eq!(rng.duration_between(hi, lo), hi);
    }
}
