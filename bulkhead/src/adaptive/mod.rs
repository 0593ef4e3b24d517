//! Adaptive limits: algorithms that find the concurrency limit from latency and drops.
//!
//! A bulkhead built with [`BulkheadBuilder::adaptive`](crate::BulkheadBuilder::adaptive)
//! measures each admitted call's round-trip time (two clock reads: at admission and at
//! completion), classifies its result with the layer's [`Classify`](palisade_core::Classify)
//! (an `Outcome::Failure` is a *drop*; failures and timeouts by default), and folds it into a
//! sample window of a few atomic counters. A call classified `Outcome::Ignore` is left out
//! altogether: by default that is a *local rejection* from a layer below (an open breaker, a
//! rate limiter, another bulkhead: an error carrying a core
//! [`Rejection`](palisade_core::rejection::Rejection)), which came back at once without the
//! dependency seeing the call, so its RTT would drag the latency estimate down and, counted as
//! a drop, it would shrink the limit for nothing. When the window is over (at least
//! [`AdaptiveConfig::min_samples`] samples and one window length, which follows the measured
//! RTT between [`AdaptiveConfig::min_window`] and [`AdaptiveConfig::max_window`]), exactly one
//! completing call (the one that wins a CAS on the window's deadline) hands the aggregated
//! [`Sample`] to the [`LimitAlgorithm`] and applies the new limit. So the algorithm runs at
//! most once per RTT window, under a lock that only that one caller takes: completions never
//! queue behind each other.
//!
//! Three algorithms, after Netflix's concurrency-limits library (defaults from there):
//!
//! - [`Aimd`]: additive increase, multiplicative decrease on a drop.
//! - [`Gradient2`]: the ratio of a long-term to a short-term RTT average, plus a queue
//!   allowance, smoothed.
//! - [`Vegas`]: a queue estimate from the minimum RTT, with alpha/beta thresholds and periodic
//!   probing of the minimum so the baseline follows the backend.
//!
//! Any other algorithm can implement [`LimitAlgorithm`].

mod aimd;
mod gradient2;
mod probe;
mod vegas;
pub(crate) mod window;

pub use aimd::{Aimd, AimdBuilder};
pub use gradient2::{Gradient2, Gradient2Builder};
pub use vegas::{Vegas, VegasBuilder};
pub use window::AdaptiveConfig;

use std::fmt;
use std::time::Duration;

/// What the layer measured over one sample window, handed to a [`LimitAlgorithm`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Sample {
    /// Mean round-trip time of the calls that completed in the window.
    pub rtt: Duration,
    /// Shortest round-trip time seen in the window.
    pub min_rtt: Duration,
    /// Most calls in flight (at admission, the call itself included) seen in the window.
    pub in_flight: usize,
    /// Whether any call of the window was a drop (classified `Outcome::Failure`).
    pub dropped: bool,
    /// Calls in the window.
    pub samples: u64,
    /// Drops in the window.
    pub drops: u64,
}

impl Sample {
    /// A sample of `samples` calls with mean RTT `rtt` (also used as the minimum), `in_flight`
    /// calls in flight and `drops` drops. For tests and custom drivers of an algorithm.
    #[must_use]
    pub fn new(rtt: Duration, in_flight: usize, samples: u64, drops: u64) -> Sample {
        Sample {
            rtt,
            min_rtt: rtt,
            in_flight,
            dropped: drops > 0,
            samples,
            drops,
        }
    }

    /// The same sample with another minimum RTT.
    #[must_use]
    pub fn with_min_rtt(mut self, min_rtt: Duration) -> Sample {
        self.min_rtt = min_rtt;
        self
    }
}

/// A concurrency-limit algorithm, fed one [`Sample`] per window by the layer.
///
/// Implementations are plain state machines (no atomics, no clock: the layer owns both), called
/// under a lock that only the one caller closing a window takes.
pub trait LimitAlgorithm: Send + fmt::Debug + 'static {
    /// The limit to start with.
    fn initial_limit(&self) -> usize;

    /// Folds in one window's measurements and returns the new limit (at least 1).
    fn update(&mut self, sample: &Sample) -> usize;
}

impl<A: LimitAlgorithm + ?Sized> LimitAlgorithm for Box<A> {
    fn initial_limit(&self) -> usize {
        (**self).initial_limit()
    }

    fn update(&mut self, sample: &Sample) -> usize {
        (**self).update(sample)
    }
}

/// Shared validation of the `min_limit ≤ initial_limit ≤ max_limit` triple.
pub(crate) fn check_limits(
    min: usize,
    initial: usize,
    max: usize,
) -> Result<(), palisade_core::ConfigError> {
    use palisade_core::error::check_ordered;
    if min == 0 {
        return Err(palisade_core::ConfigError::new(
            "min_limit",
            "must be at least 1",
        ));
    }
    check_ordered("max_limit", min, max)?;
    check_ordered("initial_limit", min, initial)?;
    check_ordered("initial_limit", initial, max)
}

#[inline]
pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
