//! The breaker's builder: every knob, its default, and its validation.

use crate::backoff::OpenBackoff;
use crate::circuit_breaker::CircuitBreaker;
use crate::state::{MAX_PROBES, Rules};
use crate::window::{CountWindow, MAX_COUNT_WINDOW, TimeWindow, Window};
use palisade_core::clock::{Clock, duration_to_nanos};
use palisade_core::error::{ConfigError, check_nonzero_duration, check_percent};
use std::sync::Arc as StdArc;
use std::time::Duration;

/// Which calls the breaker's rates are computed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlidingWindow {
    /// The last `n` recorded calls (resilience4j `COUNT_BASED`). At most 10 000.
    Count(u32),
    /// The calls of the last `size`, in `buckets` buckets that roll with the clock
    /// (resilience4j `TIME_BASED`, Hystrix's rolling statistics). A bucket is
    /// `size / buckets` long; up to about two million calls per bucket are counted.
    Time {
        /// The length of the window.
        size: Duration,
        /// How many buckets it is split into.
        buckets: u32,
    },
}

/// The default instance name: the layer's name.
pub(crate) const DEFAULT_NAME: &str = "circuit_breaker";
/// Hystrix `metrics.rollingStats.timeInMilliseconds` (10 s) in `numBuckets` (10).
const DEFAULT_WINDOW: SlidingWindow = SlidingWindow::Time {
    size: Duration::from_secs(10),
    buckets: 10,
};
/// Hystrix `circuitBreaker.requestVolumeThreshold`.
const DEFAULT_MINIMUM_CALLS: u32 = 20;
/// Hystrix `circuitBreaker.sleepWindowInMilliseconds`.
const DEFAULT_WAIT_IN_OPEN: Duration = Duration::from_secs(5);
/// The open wait doubles on every re-open in a row from half-open…
const DEFAULT_BACKOFF_MULTIPLIER: f64 = 2.0;
/// …up to 6 × the base wait: 30 s for the default 5 s (5 s, 10 s, 20 s, 30 s). A dependency
/// that stays down is then probed about twice a minute by each client, and one that recovers
/// is found at most 30 s (36 s with jitter) after it did. A multiple of the base, not a fixed
/// cap, so that a user's shorter wait keeps its scale (1 s grows to 6 s, not 30 s).
const DEFAULT_BACKOFF_CAP_FACTOR: u32 = 6;
/// ±20 %: clients that tripped together spread their probes over a fifth of the wait.
const DEFAULT_JITTER: f64 = 0.2;

/// How the open wait grows, as the user set it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum BackoffSetting {
    /// The protective default: ×2 per re-open, capped at 6 × the base wait.
    Default,
    /// `fixed_open_wait()`: the same wait every time, no jitter.
    Fixed,
    /// `open_backoff(multiplier, max)`.
    Custom { multiplier: f64, max: Duration },
}

/// Validated settings, shared by every clone of a breaker.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) name: StdArc<str>,
    pub(crate) rules: Rules,
    pub(crate) slow_call_nanos: Option<u64>,
    pub(crate) wait_in_open: Duration,
    pub(crate) backoff: Option<OpenBackoff>,
    pub(crate) permitted_in_half_open: u32,
    pub(crate) max_wait_in_half_open: Option<Duration>,
    pub(crate) clock: Clock,
    pub(crate) seed: u64,
}

/// Builds a [`CircuitBreaker`]. Get one from [`CircuitBreaker::builder`].
///
/// The defaults follow Hystrix, a seed of this project, where it has the setting (a time
/// window of 10 s, 20 calls minimum, 50 %, 5 s open), because they protect a service in an
/// incident: a failing dependency is cut off within seconds of the failures starting and probed
/// again after 5 s, instead of resilience4j's 100 calls and 60 s, which in a multi-endpoint
/// simulation kept a recovered endpoint cut off through the next phase. Unlike Hystrix the
/// open wait grows on repeated trips (resilience4j's `waitIntervalFunctionInOpenState`), so a
/// dependency that stays down is probed less and less often, up to a cap, with jitter.
///
/// | setter | default | source | resilience4j | Hystrix |
/// |---|---|---|---|---|
/// | [`name`](Self::name) | `"circuit_breaker"` | the layer's name | the instance name | `commandKey` |
/// | [`failure_rate_threshold`](Self::failure_rate_threshold) | 50 % | Hystrix, resilience4j | `failureRateThreshold` (50) | `errorThresholdPercentage` (50) |
/// | [`slow_call_duration`](Self::slow_call_duration) | off | (two clock reads per call) | `slowCallDurationThreshold` (60 s) | — |
/// | [`slow_call_rate_threshold`](Self::slow_call_rate_threshold) | 100 % | resilience4j | `slowCallRateThreshold` (100) | — |
/// | [`time_window`](Self::time_window) | 10 s in 10 buckets | Hystrix | `slidingWindowType=TIME_BASED` | `metrics.rollingStats.timeInMilliseconds` (10 s), `numBuckets` (10) |
/// | [`count_window`](Self::count_window) | — | | `slidingWindowType=COUNT_BASED`, `slidingWindowSize` (100, the default) | — |
/// | [`minimum_calls`](Self::minimum_calls) | 20 | Hystrix | `minimumNumberOfCalls` (100) | `requestVolumeThreshold` (20) |
/// | [`wait_duration_in_open`](Self::wait_duration_in_open) | 5 s | Hystrix | `waitDurationInOpenState` (60 s) | `sleepWindowInMilliseconds` (5 s) |
/// | [`open_backoff`](Self::open_backoff) | ×2 per re-open, capped at 6 × the wait (30 s) | resilience4j's interval function; Finagle's failure accrual also backs off (5 s to 300 s) | `waitIntervalFunctionInOpenState` (exponential random backoff) | — (fixed) |
/// | [`open_backoff_jitter`](Self::open_backoff_jitter) | ±20 % | spreads clients' probes | the random factor of the interval function (0.5) | — |
/// | [`fixed_open_wait`](Self::fixed_open_wait) | — | | the default (fixed 60 s) | the default (fixed 5 s) |
/// | [`permitted_calls_in_half_open`](Self::permitted_calls_in_half_open) | 10 | resilience4j (one probe decides on noise) | `permittedNumberOfCallsInHalfOpenState` (10) | 1 (one trial request) |
/// | [`max_wait_in_half_open`](Self::max_wait_in_half_open) | off (wait forever) | resilience4j | `maxWaitDurationInHalfOpenState` (0 = forever) | — |
/// | [`consecutive_failures`](Self::consecutive_failures) | off | | — (Linkerd failure accrual, Envoy `consecutive_5xx`) | — |
/// | [`trip_on_rates`](Self::trip_on_rates) | on | | — | — |
/// | [`clock`](Self::clock) | [`Clock::default()`] | | a `Clock` | — |
///
/// Resilience4j's slow-call detection is always on (60 s, 100 %); here it is off until
/// `slow_call_duration` is set, because it costs two clock reads per call.
#[derive(Clone, Debug)]
#[must_use]
pub struct CircuitBreakerBuilder {
    name: StdArc<str>,
    failure_rate_threshold: f64,
    trip_on_rates: bool,
    slow_call_rate_threshold: f64,
    slow_call_duration: Option<Duration>,
    window: SlidingWindow,
    minimum_calls: u32,
    wait_duration_in_open: Duration,
    backoff: BackoffSetting,
    jitter: Option<f64>,
    seed: Option<u64>,
    permitted_calls_in_half_open: u32,
    max_wait_in_half_open: Option<Duration>,
    consecutive_failures: Option<u32>,
    clock: Option<Clock>,
}

impl Default for CircuitBreakerBuilder {
    fn default() -> Self {
        CircuitBreakerBuilder {
            name: StdArc::from(DEFAULT_NAME),
            failure_rate_threshold: 50.0,
            trip_on_rates: true,
            slow_call_rate_threshold: 100.0,
            slow_call_duration: None,
            window: DEFAULT_WINDOW,
            minimum_calls: DEFAULT_MINIMUM_CALLS,
            wait_duration_in_open: DEFAULT_WAIT_IN_OPEN,
            backoff: BackoffSetting::Default,
            jitter: None,
            seed: None,
            permitted_calls_in_half_open: 10,
            max_wait_in_half_open: None,
            consecutive_failures: None,
            clock: None,
        }
    }
}

impl CircuitBreakerBuilder {
    /// The instance name: the `name` label of metrics and the field of tracing events.
    pub fn name(mut self, name: impl Into<StdArc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Trip when at least this percentage of the window's calls failed. In `(0, 100]`.
    pub fn failure_rate_threshold(mut self, percent: f64) -> Self {
        self.failure_rate_threshold = percent;
        self
    }

    /// Turns on slow-call detection: a call that takes longer than `duration` is slow,
    /// whether it succeeded or failed.
    pub fn slow_call_duration(mut self, duration: Duration) -> Self {
        self.slow_call_duration = Some(duration);
        self
    }

    /// Trip when at least this percentage of the window's calls were slow. In `(0, 100]`.
    /// Used only with [`slow_call_duration`](Self::slow_call_duration).
    pub fn slow_call_rate_threshold(mut self, percent: f64) -> Self {
        self.slow_call_rate_threshold = percent;
        self
    }

    /// Compute the rates over the last `calls` calls (1 to 10 000), instead of the default
    /// 10 s time window. Needs no clock read on the closed path.
    pub fn count_window(mut self, calls: u32) -> Self {
        self.window = SlidingWindow::Count(calls);
        self
    }

    /// Compute the rates over the calls of the last `size`, in 10 buckets (default: 10 s,
    /// Hystrix's rolling window).
    pub fn time_window(mut self, size: Duration) -> Self {
        self.window = SlidingWindow::Time { size, buckets: 10 };
        self
    }

    /// Any [`SlidingWindow`].
    pub fn sliding_window(mut self, window: SlidingWindow) -> Self {
        self.window = window;
        self
    }

    /// The rates are evaluated only once the window holds this many calls (at least 1). With a
    /// count window it is capped at the window's size.
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.minimum_calls = calls;
        self
    }

    /// How long an open breaker rejects before it lets probes through (longer than zero).
    pub fn wait_duration_in_open(mut self, wait: Duration) -> Self {
        self.wait_duration_in_open = wait;
        self
    }

    /// Each time the breaker re-opens from half-open without having closed, multiply the open
    /// wait by `multiplier` (at least 1), up to `max` (at least the base wait). A close starts
    /// over from the base wait. Default: ×2 up to 6 × the base wait (30 s for the default 5 s).
    pub fn open_backoff(mut self, multiplier: f64, max: Duration) -> Self {
        self.backoff = BackoffSetting::Custom { multiplier, max };
        self
    }

    /// The same open wait after every trip, without growth or jitter (resilience4j's and
    /// Hystrix's own default).
    pub fn fixed_open_wait(mut self) -> Self {
        self.backoff = BackoffSetting::Fixed;
        self.jitter = None;
        self
    }

    /// Spread each open wait uniformly over `wait × [1 − jitter, 1 + jitter]` (capped at the
    /// backoff's maximum), so that many clients do not probe at the same instant. In `[0, 1]`;
    /// default 0.2. Not with [`fixed_open_wait`](Self::fixed_open_wait).
    pub fn open_backoff_jitter(mut self, jitter: f64) -> Self {
        self.jitter = Some(jitter);
        self
    }

    /// Seeds the jitter's random numbers (for reproducible tests).
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// How many probe calls a half-open breaker admits (1 to 4095).
    pub fn permitted_calls_in_half_open(mut self, calls: u32) -> Self {
        self.permitted_calls_in_half_open = calls;
        self
    }

    /// Re-open a half-open breaker whose probes have not all come back after `wait`
    /// (longer than zero).
    pub fn max_wait_in_half_open(mut self, wait: Duration) -> Self {
        self.max_wait_in_half_open = Some(wait);
        self
    }

    /// Also trip after `n` failures in a row (at least 1), whatever the window says.
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive_failures = Some(n);
        self
    }

    /// Whether the failure and slow-call rates trip the breaker (default `true`). Set `false`
    /// with [`consecutive_failures`](Self::consecutive_failures) for a pure
    /// consecutive-failures breaker; a half-open breaker then re-opens on any failed probe.
    pub fn trip_on_rates(mut self, enabled: bool) -> Self {
        self.trip_on_rates = enabled;
        self
    }

    /// The clock to read time from. Use `Clock::tokio()` in `start_paused` tests.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Checks the settings and builds the breaker.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first setting out of range: a threshold outside
    /// `(0, 100]`, a zero or oversized window, zero minimum calls, a zero wait, probes outside
    /// `1..=4095`, a backoff multiplier below 1 or a cap below the wait, a jitter outside
    /// `[0, 1]`, or `trip_on_rates(false)` without `consecutive_failures`.
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        let positive_percent = |field, value| {
            let value = check_percent(field, value)?;
            if value > 0.0 {
                Ok(value)
            } else {
                Err(ConfigError::new(field, "must be above 0"))
            }
        };
        let failure_rate = positive_percent("failure_rate_threshold", self.failure_rate_threshold)?;
        let slow_rate =
            positive_percent("slow_call_rate_threshold", self.slow_call_rate_threshold)?;
        let slow_call_nanos = match self.slow_call_duration {
            Some(d) => Some(duration_to_nanos(check_nonzero_duration(
                "slow_call_duration",
                d,
            )?)),
            None => None,
        };
        let window = match self.window {
            SlidingWindow::Count(n) if n == 0 || n > MAX_COUNT_WINDOW => {
                return Err(ConfigError::new(
                    "count_window",
                    format!("must hold 1 to {MAX_COUNT_WINDOW} calls, got {n}"),
                ));
            }
            SlidingWindow::Count(n) => Window::Count(CountWindow::new(n)),
            SlidingWindow::Time { size, buckets } => {
                check_nonzero_duration("time_window", size)?;
                if buckets == 0 || buckets > 1_000 {
                    return Err(ConfigError::new(
                        "time_window",
                        format!("must have 1 to 1000 buckets, got {buckets}"),
                    ));
                }
                let bucket_nanos = duration_to_nanos(size) / u64::from(buckets);
                if bucket_nanos < 1_000_000 {
                    return Err(ConfigError::new(
                        "time_window",
                        "buckets must be at least 1 ms long",
                    ));
                }
                Window::Time(TimeWindow::new(buckets, bucket_nanos))
            }
        };
        if self.minimum_calls == 0 {
            return Err(ConfigError::new("minimum_calls", "must be at least 1"));
        }
        let minimum_calls = match self.window {
            SlidingWindow::Count(n) => self.minimum_calls.min(n),
            SlidingWindow::Time { .. } => self.minimum_calls,
        };
        let wait_in_open =
            check_nonzero_duration("wait_duration_in_open", self.wait_duration_in_open)?;
        let backoff = match self.backoff {
            BackoffSetting::Fixed => {
                if let Some(jitter) = self.jitter
                    && jitter != 0.0
                {
                    return Err(ConfigError::new(
                        "open_backoff_jitter",
                        "a fixed open wait has no jitter",
                    ));
                }
                None
            }
            BackoffSetting::Default => Some((
                DEFAULT_BACKOFF_MULTIPLIER,
                wait_in_open.saturating_mul(DEFAULT_BACKOFF_CAP_FACTOR),
            )),
            BackoffSetting::Custom { multiplier, max } => {
                if !(multiplier.is_finite() && multiplier >= 1.0) {
                    return Err(ConfigError::new(
                        "open_backoff",
                        format!("multiplier must be a number of at least 1, got {multiplier}"),
                    ));
                }
                if max < wait_in_open {
                    return Err(ConfigError::new(
                        "open_backoff",
                        format!("maximum {max:?} is below wait_duration_in_open {wait_in_open:?}"),
                    ));
                }
                Some((multiplier, max))
            }
        };
        let backoff = match backoff {
            Some((multiplier, max)) => {
                let jitter = self.jitter.unwrap_or(DEFAULT_JITTER);
                if !(0.0..=1.0).contains(&jitter) {
                    return Err(ConfigError::new(
                        "open_backoff_jitter",
                        format!("must lie between 0 and 1, got {jitter}"),
                    ));
                }
                Some(OpenBackoff {
                    multiplier,
                    max,
                    jitter,
                })
            }
            None => None,
        };
        if self.permitted_calls_in_half_open == 0 || self.permitted_calls_in_half_open > MAX_PROBES
        {
            return Err(ConfigError::new(
                "permitted_calls_in_half_open",
                format!(
                    "must be 1 to {MAX_PROBES}, got {}",
                    self.permitted_calls_in_half_open
                ),
            ));
        }
        if let Some(wait) = self.max_wait_in_half_open {
            check_nonzero_duration("max_wait_in_half_open", wait)?;
        }
        if self.consecutive_failures == Some(0) {
            return Err(ConfigError::new(
                "consecutive_failures",
                "must be at least 1",
            ));
        }
        if !self.trip_on_rates && self.consecutive_failures.is_none() {
            return Err(ConfigError::new(
                "trip_on_rates",
                "with the rates off, set consecutive_failures or nothing ever trips",
            ));
        }
        let rules = Rules {
            failure_rate: self.trip_on_rates.then_some(failure_rate),
            slow_rate: (self.trip_on_rates && slow_call_nanos.is_some()).then_some(slow_rate),
            minimum_calls,
            consecutive_failures: self.consecutive_failures,
        };
        let clock = self.clock.unwrap_or_default();
        let seed = self.seed.unwrap_or_else(palisade_core::rng::random_seed);
        Ok(CircuitBreaker::from_parts(
            Settings {
                name: self.name,
                rules,
                slow_call_nanos,
                wait_in_open,
                backoff,
                permitted_in_half_open: self.permitted_calls_in_half_open,
                max_wait_in_half_open: self.max_wait_in_half_open,
                clock,
                seed,
            },
            window,
        ))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn field(builder: CircuitBreakerBuilder) -> &'static str {
        builder.build().unwrap_err().field()
    }

    #[test]
    fn bad_settings_name_their_field() {
        let b = CircuitBreaker::builder;
        assert_eq!(
            field(b().failure_rate_threshold(0.0)),
            "failure_rate_threshold"
        );
        assert_eq!(
            field(b().failure_rate_threshold(100.5)),
            "failure_rate_threshold"
        );
        assert_eq!(
            field(b().failure_rate_threshold(f64::NAN)),
            "failure_rate_threshold"
        );
        assert_eq!(
            field(b().slow_call_rate_threshold(-1.0)),
            "slow_call_rate_threshold"
        );
        assert_eq!(
            field(b().slow_call_duration(Duration::ZERO)),
            "slow_call_duration"
        );
        assert_eq!(field(b().count_window(0)), "count_window");
        assert_eq!(field(b().count_window(10_001)), "count_window");
        assert_eq!(field(b().time_window(Duration::ZERO)), "time_window");
        assert_eq!(
            field(b().time_window(Duration::from_millis(5))),
            "time_window"
        );
        assert_eq!(
            field(b().sliding_window(SlidingWindow::Time {
                size: Duration::from_secs(1),
                buckets: 0
            })),
            "time_window"
        );
        assert_eq!(field(b().minimum_calls(0)), "minimum_calls");
        assert_eq!(
            field(b().wait_duration_in_open(Duration::ZERO)),
            "wait_duration_in_open"
        );
        assert_eq!(
            field(b().open_backoff(0.5, Duration::from_secs(600))),
            "open_backoff"
        );
        assert_eq!(
            field(b().open_backoff(2.0, Duration::from_secs(1))),
            "open_backoff"
        );
        assert_eq!(
            field(
                b().open_backoff(2.0, Duration::from_secs(600))
                    .open_backoff_jitter(1.5)
            ),
            "open_backoff_jitter"
        );
        assert_eq!(
            field(b().fixed_open_wait().open_backoff_jitter(0.5)),
            "open_backoff_jitter"
        );
        assert_eq!(field(b().open_backoff_jitter(-0.1)), "open_backoff_jitter");
        assert_eq!(
            field(b().open_backoff_jitter(f64::NAN)),
            "open_backoff_jitter"
        );
        assert_eq!(
            field(b().permitted_calls_in_half_open(0)),
            "permitted_calls_in_half_open"
        );
        assert_eq!(
            field(b().permitted_calls_in_half_open(5000)),
            "permitted_calls_in_half_open"
        );
        assert_eq!(
            field(b().max_wait_in_half_open(Duration::ZERO)),
            "max_wait_in_half_open"
        );
        assert!(
            b().max_wait_in_half_open(Duration::MAX).build().is_ok(),
            "any wait: the time arithmetic saturates"
        );
        assert_eq!(field(b().consecutive_failures(0)), "consecutive_failures");
        assert_eq!(field(b().trip_on_rates(false)), "trip_on_rates");
        assert!(
            b().trip_on_rates(false)
                .consecutive_failures(5)
                .build()
                .is_ok()
        );
        assert!(b().build().is_ok());
    }

    #[test]
    fn minimum_calls_is_capped_by_a_count_window() {
        let breaker = CircuitBreaker::builder()
            .count_window(10)
            .minimum_calls(500)
            .build()
            .unwrap();
        assert_eq!(breaker.settings().rules.minimum_calls, 10);
    }
}
