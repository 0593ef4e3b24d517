//! The peak-EWMA latency estimate of Finagle's `PeakEwma` balancer (also Linkerd's and
//! tower's), as pure functions over nanoseconds in `f64`: no atomics, no clock, no tower types.
//!
//! - A sample above the estimate replaces it at once (the *peak*: a slowdown is believed
//!   immediately).
//! - A sample below it is blended in with weight `1 - e^(-Δt/τ)`, `Δt` the time since the last
//!   update: the estimate comes down smoothly, faster the longer it has been since the last
//!   sample.
//! - Read without a sample, the estimate decays towards zero as `e^(-Δt/τ)` (Finagle decays on
//!   every read), so an endpoint that a high estimate starved of traffic is tried again after
//!   a while, and a recovered endpoint is found.
//!
//! The cost a P2C pick compares is `estimate × (pending + 1)` (Finagle, tower). The failure
//! penalty is not folded into this estimate: the endpoint keeps it beside the estimate, decays
//! it with the same `e^(-Δt/τ)` and halves it on every success (see `endpoint.rs`), and a pick
//! reads the larger of the two.

/// Below this `x = elapsed / tau`, [`survival`] evaluates `e^(-x)` by its Taylor polynomial
/// instead of calling `exp`.
///
/// The common case of a busy balancer: calls microseconds apart against a decay of a second
/// (`x ≈ 1e-6`). The polynomial has five terms after the 1 (degree 5), so the truncation error
/// is below the first term left out, `x^6 / 720` (the series alternates with falling terms):
/// at `x = 1/256` that is `4.9e-18`, a twentieth of the spacing of `f64` values near 1
/// (`1.1e-16`). With the rounding of its steps (Estrin's scheme) the result
/// is within 2 ulp of `exp`'s (checked over a sweep in the tests), against ~20 cycles saved
/// per read.
pub const POLYNOMIAL_BELOW: f64 = 1.0 / 256.0;

/// `e^(-elapsed/tau)`: how much of the old estimate survives `elapsed_ns`.
///
/// For `elapsed / tau` below [`POLYNOMIAL_BELOW`] a degree-5 polynomial (within 2 ulp of
/// `exp`), otherwise `exp`.
#[inline]
#[must_use]
pub fn survival(elapsed_ns: u64, tau_ns: f64) -> f64 {
    if elapsed_ns == 0 {
        return 1.0;
    }
    e_minus(elapsed_ns as f64 / tau_ns)
}

/// The estimate after a new sample (all in nanoseconds).
#[inline]
#[must_use]
pub fn observe(estimate: f64, elapsed_ns: u64, sample: f64, tau_ns: f64) -> f64 {
    blend(estimate, sample, || survival(elapsed_ns, tau_ns))
}

/// The estimate as read `elapsed_ns` after its last update.
#[inline]
#[must_use]
pub fn decayed(estimate: f64, elapsed_ns: u64, tau_ns: f64) -> f64 {
    estimate * survival(elapsed_ns, tau_ns)
}

/// `e^(-x)` for `x >= 0`: the polynomial below [`POLYNOMIAL_BELOW`], `exp` above.
#[inline]
fn e_minus(x: f64) -> f64 {
    if x < POLYNOMIAL_BELOW {
        // 1 - x + x²/2 - x³/6 + x⁴/24 - x⁵/120 by Estrin's scheme, in pairs of terms:
        // (1 - x) + x²·((1/2 - x/6) + x²·(1/24 - x/120)). The pairs do not wait on each
        // other, so the chain is 3 multiplications and 3 additions deep, where Horner's
        // rule is 5 and 5 deep (perf: Horner's chain was half of a pick's latency read).
        let x2 = x * x;
        let low = 1.0 - x;
        let mid = 1.0 / 2.0 - x * (1.0 / 6.0);
        let high = 1.0 / 24.0 - x * (1.0 / 120.0);
        low + x2 * (mid + x2 * high)
    } else {
        (-x).exp()
    }
}

/// The peak rule: a sample above the estimate replaces it, one below is blended in with the
/// old estimate's weight `w`.
#[inline]
fn blend(estimate: f64, sample: f64, w: impl FnOnce() -> f64) -> f64 {
    if sample >= estimate {
        sample
    } else {
        let w = w();
        estimate * w + sample * (1.0 - w)
    }
}

/// A decay constant τ as the balancer keeps it: its inverse, so that a read of an estimate
/// multiplies by it instead of dividing (the same `x = elapsed / τ` to within an ulp).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Tau {
    per_ns: f64,
}

impl Tau {
    /// τ of `ns` nanoseconds.
    pub(crate) const fn from_ns(ns: f64) -> Tau {
        Tau { per_ns: 1.0 / ns }
    }

    /// [`survival`] with this τ.
    #[inline]
    pub(crate) fn survival(self, elapsed_ns: u64) -> f64 {
        if elapsed_ns == 0 {
            return 1.0;
        }
        e_minus(elapsed_ns as f64 * self.per_ns)
    }

    /// [`observe`] with this τ.
    #[inline]
    pub(crate) fn observe(self, estimate: f64, elapsed_ns: u64, sample: f64) -> f64 {
        blend(estimate, sample, || self.survival(elapsed_ns))
    }

    /// [`decayed`] with this τ.
    #[inline]
    pub(crate) fn decayed(self, estimate: f64, elapsed_ns: u64) -> f64 {
        estimate * self.survival(elapsed_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAU: f64 = 1.0e9;

    #[test]
    fn a_higher_sample_is_taken_at_once() {
        assert_eq!(observe(10.0, 5, 1_000.0, TAU), 1_000.0);
    }

    #[test]
    fn a_lower_sample_is_blended_by_elapsed_time() {
        // Right after the last update almost nothing of the new sample counts…
        let soon = observe(1_000.0, 1_000, 0.0, TAU);
        assert!(soon > 999.0 && soon < 1_000.0, "{soon}");
        // …after one tau, 1/e of the old estimate remains.
        let later = observe(1_000.0, 1_000_000_000, 0.0, TAU);
        assert!(
            (later - 1_000.0 / std::f64::consts::E).abs() < 1e-6,
            "{later}"
        );
    }

    /// The polynomial branch of `survival` against `exp`, over a sweep of the range it
    /// covers (evenly spaced, plus the small values a busy balancer sees): within 2 ulp.
    #[test]
    fn the_polynomial_is_within_two_ulp_of_exp() {
        let tau = 1.0e9;
        let limit = (POLYNOMIAL_BELOW * tau) as u64;
        let even = (0..=100_000u64).map(|i| i * limit / 100_000);
        let small = (0..60).map(|shift| 1u64 << shift).filter(|&e| e < limit);
        let mut worst = 0.0f64;
        for elapsed in even.chain(small).filter(|&e| e > 0 && e < limit) {
            let x = elapsed as f64 / tau;
            assert!(x < POLYNOMIAL_BELOW);
            let exact = (-x).exp();
            let got = survival(elapsed, tau);
            // One ulp of values in (0.99, 1]: 2^-53 below 1.
            let ulps = (got - exact).abs() / f64::EPSILON * 2.0;
            worst = worst.max(ulps);
            assert!(ulps <= 2.0, "x = {x}: {got} vs exp {exact} ({ulps} ulp)");
        }
        // The sweep reached the polynomial's end, where its error is largest.
        assert!(worst > 0.0, "every value exact: the sweep tested nothing");
        // Past the threshold `exp` itself answers.
        assert_eq!(
            survival(limit + 1, tau),
            (-((limit + 1) as f64) / tau).exp()
        );
        assert_eq!(
            survival(3 * limit, tau),
            (-((3 * limit) as f64) / tau).exp()
        );
    }

    /// The truncation bound stated on [`POLYNOMIAL_BELOW`]: the first omitted term at the
    /// threshold is below half an ulp of 1.
    #[test]
    fn the_truncation_bound_holds() {
        let x = POLYNOMIAL_BELOW;
        let first_omitted = x.powi(6) / 720.0;
        assert!(first_omitted < 4.9e-18 * 1.01, "{first_omitted}");
        assert!(first_omitted < f64::EPSILON / 4.0);
    }

    /// The balancer's own τ (kept as its inverse) agrees with the public functions.
    #[test]
    fn tau_by_its_inverse_agrees_with_dividing() {
        let tau = Tau::from_ns(TAU);
        for elapsed in [
            0,
            1,
            999,
            1_000_000,
            3_900_000,
            3_906_250,
            50_000_000,
            4_000_000_000,
        ] {
            let (a, b) = (tau.survival(elapsed), survival(elapsed, TAU));
            assert!(
                (a - b).abs() <= 2.0 * f64::EPSILON * b.max(f64::MIN_POSITIVE),
                "{elapsed}"
            );
            let (a, b) = (
                tau.observe(900.0, elapsed, 10.0),
                observe(900.0, elapsed, 10.0, TAU),
            );
            assert!((a - b).abs() <= 1e-9, "{elapsed}: {a} vs {b}");
            assert_eq!(tau.observe(9.0, elapsed, 10.0), 10.0);
            let (a, b) = (tau.decayed(900.0, elapsed), decayed(900.0, elapsed, TAU));
            assert!((a - b).abs() <= 1e-9, "{elapsed}: {a} vs {b}");
        }
    }

    #[test]
    fn reads_decay_towards_zero() {
        assert_eq!(decayed(500.0, 0, TAU), 500.0);
        let d = decayed(500.0, 3_000_000_000, TAU);
        assert!((d - 500.0 * (-3.0f64).exp()).abs() < 1e-9);
        assert!(decayed(500.0, u64::MAX, TAU) >= 0.0);
    }
}
