//! The open wait: how long an open breaker rejects before it lets probes through, growing on
//! repeated trips. Pure functions of the settings, the re-open count and the generation: no
//! atomics, no clock, so a transition that computes a wait and then loses its CAS race has
//! changed nothing.

use palisade_core::rng::{GAMMA, mix, unit_f64};
use std::time::Duration;

/// Growth of the open wait when a breaker re-opens from half-open again and again.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct OpenBackoff {
    /// At least 1, finite.
    pub(crate) multiplier: f64,
    /// At least the base wait.
    pub(crate) max: Duration,
    /// In `[0, 1]`.
    pub(crate) jitter: f64,
}

/// The open wait after `reopens` re-opens in a row from half-open (0 for a trip from
/// `Closed`): `base × multiplier^reopens`, capped at `max`, spread by jitter over
/// `[1 − jitter, 1 + jitter]` and capped again. Without a backoff, `base`.
///
/// The random draw is a pure function of `seed` and `generation` (the generation of the
/// `Open` word being built), so every attempt of a transition computes the same wait and a
/// lost CAS draws nothing.
///
/// Never panics, whatever the durations: the arithmetic is in `f64` seconds, clamped into
/// `[0, max]` before it turns back into a `Duration` (which saturates at `max`).
pub(crate) fn open_wait(
    base: Duration,
    backoff: Option<&OpenBackoff>,
    reopens: u32,
    seed: u64,
    generation: u64,
) -> Duration {
    let Some(backoff) = backoff else {
        return base;
    };
    let max = backoff.max.as_secs_f64();
    // `powi` of a large exponent is `inf`, and `min` brings it back to the cap. The exponent is
    // bounded so that the conversion to `i32` is exact.
    let exponent = reopens.min(4_096) as i32;
    let grown = (base.as_secs_f64() * backoff.multiplier.powi(exponent)).min(max);
    let factor = if backoff.jitter > 0.0 {
        1.0 - backoff.jitter + 2.0 * backoff.jitter * draw(seed, generation)
    } else {
        1.0
    };
    let secs = (grown * factor).clamp(0.0, max);
    // `try_from_secs_f64` fails only above `Duration::MAX` (a cap near it, rounded up in f64).
    Duration::try_from_secs_f64(secs)
        .unwrap_or(backoff.max)
        .min(backoff.max)
}

/// A uniform number in `[0, 1)`, a pure function of the seed and the generation.
fn draw(seed: u64, generation: u64) -> f64 {
    unit_f64(mix(seed ^ generation.wrapping_mul(GAMMA)))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn backoff(multiplier: f64, max: Duration, jitter: f64) -> OpenBackoff {
        OpenBackoff {
            multiplier,
            max,
            jitter,
        }
    }

    #[test]
    fn grows_then_caps() {
        let b = backoff(2.0, Duration::from_secs(30), 0.0);
        let waits: Vec<_> = (0..6)
            .map(|n| open_wait(Duration::from_secs(5), Some(&b), n, 0, 0).as_secs())
            .collect();
        assert_eq!(waits, vec![5, 10, 20, 30, 30, 30]);
        assert_eq!(
            open_wait(Duration::from_secs(5), None, 9, 0, 0),
            Duration::from_secs(5)
        );
    }

    /// Regression (issue 9 §3): a cap below 1 ms panicked in `clamp(0.001, max)`.
    #[test]
    fn a_cap_below_a_millisecond_does_not_panic() {
        let b = backoff(2.0, Duration::from_micros(500), 0.5);
        for n in 0..10 {
            let wait = open_wait(Duration::from_micros(100), Some(&b), n, 7, u64::from(n));
            assert!(wait <= Duration::from_micros(500), "{wait:?}");
        }
    }

    /// Regression (issue 9 §3): a wait or cap near `Duration::MAX` panicked in
    /// `Duration::from_secs_f64`.
    #[test]
    fn waits_near_duration_max_do_not_panic() {
        for jitter in [0.0, 0.5, 1.0] {
            let b = backoff(1e300, Duration::MAX, jitter);
            for n in [0, 1, 2, 1_000, u32::MAX] {
                let wait = open_wait(Duration::MAX, Some(&b), n, 3, u64::from(n));
                assert!(wait <= Duration::MAX);
                let wait = open_wait(Duration::from_secs(1), Some(&b), n, 3, u64::from(n));
                assert!(wait <= Duration::MAX);
            }
        }
    }

    #[test]
    fn jitter_stays_in_bounds_and_depends_only_on_seed_and_generation() {
        let b = backoff(1.0, Duration::from_secs(12), 0.5);
        let base = Duration::from_secs(10);
        let waits: Vec<_> = (0..50)
            .map(|g| open_wait(base, Some(&b), 0, 42, g))
            .collect();
        let again: Vec<_> = (0..50)
            .map(|g| open_wait(base, Some(&b), 0, 42, g))
            .collect();
        assert_eq!(waits, again);
        assert!(waits.iter().any(|w| *w != waits[0]));
        for w in waits {
            assert!(
                w >= Duration::from_secs(5) && w <= Duration::from_secs(12),
                "{w:?}"
            );
        }
    }
}
