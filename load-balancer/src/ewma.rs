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

/// `e^(-elapsed/tau)`: how much of the old estimate survives `elapsed_ns`.
#[inline]
#[must_use]
pub fn survival(elapsed_ns: u64, tau_ns: f64) -> f64 {
    if elapsed_ns == 0 {
        return 1.0;
    }
    (-(elapsed_ns as f64) / tau_ns).exp()
}

/// The estimate after a new sample (all in nanoseconds).
#[inline]
#[must_use]
pub fn observe(estimate: f64, elapsed_ns: u64, sample: f64, tau_ns: f64) -> f64 {
    if sample >= estimate {
        sample
    } else {
        let w = survival(elapsed_ns, tau_ns);
        estimate * w + sample * (1.0 - w)
    }
}

/// The estimate as read `elapsed_ns` after its last update.
#[inline]
#[must_use]
pub fn decayed(estimate: f64, elapsed_ns: u64, tau_ns: f64) -> f64 {
    estimate * survival(elapsed_ns, tau_ns)
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

    #[test]
    fn reads_decay_towards_zero() {
        assert_eq!(decayed(500.0, 0, TAU), 500.0);
        let d = decayed(500.0, 3_000_000_000, TAU);
        assert!((d - 500.0 * (-3.0f64).exp()).abs() < 1e-9);
        assert!(decayed(500.0, u64::MAX, TAU) >= 0.0);
    }
}
