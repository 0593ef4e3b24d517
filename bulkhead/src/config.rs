//! The builder of a [`Bulkhead`].

use crate::adaptive::{AdaptiveConfig, LimitAlgorithm};
use crate::bulkhead::{Bulkhead, FullMode};
use crate::limiter::MAX_LIMIT;
use palisade_core::clock::Clock;
use palisade_core::error::{ConfigError, check_nonzero_duration};
use std::fmt;
use std::time::Duration;

/// Configures a [`Bulkhead`]: see [`Bulkhead::builder`].
///
/// | setting                | default | meaning | why this default |
/// |------------------------|---------|---------|------------------|
/// | `max_concurrent_calls` | 25      | the fixed limit | resilience4j's `maxConcurrentCalls` (25); Hystrix's semaphore default is 10. Size it as peak healthy calls per second × p99 latency, plus headroom (Hystrix's rule): 25 covers 250 calls/s at 100 ms |
/// | `max_wait`             | none    | when full: none rejects at once; a duration waits up to that long, FIFO | resilience4j's `maxWaitDuration` is 0 and Hystrix's semaphore isolation never queues: in an incident, waiting adds latency to every caller and holds their resources, where a fast `BulkheadFull` lets them shed load or fall back. If you wait, keep `max_wait` below the caller's own timeout and backoff cap |
/// | `max_waiting_calls`    | 1024    | with `max_wait`: more waiters are rejected at once | Envoy's `max_pending_requests` (1024). Without a bound, a stalled dependency queues every arrival for `max_wait` (with `Duration::MAX`, forever), one queue entry and one timer each |
/// | `adaptive`             | none    | a [`LimitAlgorithm`] that moves the limit | a fixed limit is predictable; adaptive algorithms start from Netflix concurrency-limits' initial limit of 20 (see each) |
/// | `adaptive_config`      | [`AdaptiveConfig::default`] | how samples are batched for it | Netflix `WindowedLimit`'s 10 samples per window, windows following the RTT (see there) |
/// | `clock`                | [`Clock::default`] | read only by adaptive limits and for wait times | a fixed limit without waiting reads no clock at all |
/// | `name`                 | `"bulkhead"` | the `name` label of events and metrics | the layer's name, as every Palisade layer |
pub struct BulkheadBuilder {
    max_concurrent_calls: usize,
    max_wait: Option<Duration>,
    max_waiting_calls: usize,
    algorithm: Option<Box<dyn LimitAlgorithm>>,
    adaptive_config: AdaptiveConfig,
    clock: Option<Clock>,
    name: String,
}

impl fmt::Debug for BulkheadBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadBuilder")
            .field("max_concurrent_calls", &self.max_concurrent_calls)
            .field("max_wait", &self.max_wait)
            .field("max_waiting_calls", &self.max_waiting_calls)
            .field("algorithm", &self.algorithm)
            .field("adaptive_config", &self.adaptive_config)
            .field("clock", &self.clock)
            .field("name", &self.name)
            .finish()
    }
}

impl Default for BulkheadBuilder {
    fn default() -> Self {
        BulkheadBuilder {
            max_concurrent_calls: 25,
            max_wait: None,
            // Envoy's `max_pending_requests`; see the table above.
            max_waiting_calls: 1024,
            algorithm: None,
            adaptive_config: AdaptiveConfig::default(),
            clock: None,
            name: "bulkhead".to_owned(),
        }
    }
}

impl BulkheadBuilder {
    /// The fixed limit: at most this many calls in flight (at least 1, at most 2³¹ − 1;
    /// default 25, resilience4j's). Ignored when an [`adaptive`](Self::adaptive) algorithm is
    /// set (it has its own bounds).
    ///
    /// Size it from the dependency's healthy behaviour (Hystrix's rule, by Little's law):
    /// peak calls per second × p99 latency in seconds, plus some headroom. A limit far above
    /// that protects nothing during a stall; one below it rejects healthy traffic.
    #[must_use]
    pub fn max_concurrent_calls(mut self, limit: usize) -> Self {
        self.max_concurrent_calls = limit;
        self
    }

    /// When full, wait up to `max_wait` for a slot, in FIFO order, instead of rejecting
    /// (default: reject at once, as resilience4j's `maxWaitDuration` of 0 and Hystrix's
    /// semaphore isolation do). `Duration::MAX` waits without a deadline. Keep it below the
    /// caller's timeout and its retry backoff cap: a wait longer than those only delays the
    /// failure.
    ///
    /// A finite `max_wait` is a tokio timer: the service must be polled inside a tokio runtime
    /// with time enabled.
    #[must_use]
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = Some(max_wait);
        self
    }

    /// With [`max_wait`](Self::max_wait): at most this many callers wait (default 1024,
    /// Envoy's `max_pending_requests`); the next is rejected with
    /// [`BulkheadFull`](crate::BulkheadFull). Zero rejects every caller that would wait;
    /// `usize::MAX` leaves the queue unbounded.
    #[must_use]
    pub fn max_waiting_calls(mut self, waiters: usize) -> Self {
        self.max_waiting_calls = waiters;
        self
    }

    /// Moves the limit with `algorithm` (see [`adaptive`](crate::adaptive)).
    #[must_use]
    pub fn adaptive(mut self, algorithm: impl LimitAlgorithm) -> Self {
        self.algorithm = Some(Box::new(algorithm));
        self
    }

    /// How completions are batched into samples for the adaptive algorithm.
    #[must_use]
    pub fn adaptive_config(mut self, config: AdaptiveConfig) -> Self {
        self.adaptive_config = config;
        self
    }

    /// The clock (use `Clock::tokio()` in paused-time tests).
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The instance name, the `name` label of events and metrics.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Builds the bulkhead.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `max_concurrent_calls` (zero or above 2³¹ − 1), `max_wait`
    /// (zero), `min_samples` or `max_window` (bad [`AdaptiveConfig`]), or `initial_limit`
    /// (an algorithm starting above 2³¹ − 1).
    pub fn build(self) -> Result<Bulkhead, ConfigError> {
        self.build_inner(false)
    }

    /// Builds a bulkhead whose state lives for the rest of the process (it is leaked: a few
    /// hundred bytes, never freed). Services and permits then reach it by a plain reference
    /// instead of an `Arc`, which saves two atomic reference-count operations per call, about
    /// half the cost of an admitted call. For bulkheads built once, at startup, per
    /// dependency; do not call it in a loop.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    pub fn build_static(self) -> Result<Bulkhead, ConfigError> {
        self.build_inner(true)
    }

    fn build_inner(self, leak: bool) -> Result<Bulkhead, ConfigError> {
        if self.max_concurrent_calls == 0 || self.max_concurrent_calls > MAX_LIMIT {
            return Err(ConfigError::new(
                "max_concurrent_calls",
                format!("must lie in 1..={MAX_LIMIT}"),
            ));
        }
        let mode = match self.max_wait {
            None => FullMode::Reject,
            Some(max_wait) => FullMode::Wait {
                max_wait: (max_wait != Duration::MAX)
                    .then(|| check_nonzero_duration("max_wait", max_wait))
                    .transpose()?,
                max_waiters: self.max_waiting_calls,
            },
        };
        let adaptive_config = self.adaptive_config.validate()?;
        let limit = match &self.algorithm {
            Some(algorithm) => {
                let initial = algorithm.initial_limit();
                if initial == 0 || initial > MAX_LIMIT {
                    return Err(ConfigError::new(
                        "initial_limit",
                        format!("must lie in 1..={MAX_LIMIT}"),
                    ));
                }
                initial
            }
            None => self.max_concurrent_calls,
        };
        Ok(Bulkhead::from_parts(
            limit,
            mode,
            self.algorithm.map(|a| (a, adaptive_config)),
            self.clock.unwrap_or_default(),
            self.name,
            leak,
        ))
    }
}
