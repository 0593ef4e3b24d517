//! Monotonic time for every layer.
//!
//! Breakers, limiters and budgets store times in atomics, so Palisade measures time as an
//! [`Instant`]: whole nanoseconds since the clock's origin, a plain `u64`. A [`Clock`] is the
//! one place a layer reads time from, and which clock it is decides how a layer behaves under
//! test:
//!
//! | constructor            | source                                   | read cost* | use it for |
//! |------------------------|------------------------------------------|-----------:|------------|
//! | [`Clock::default()`]   | TSC via `quanta` (monotonic fallback)    | 10.3 ns    | production |
//! | [`Clock::coarse()`]    | `quanta`'s recent time, ~1 ms resolution | 2.1 ns     | very hot paths that tolerate 1 ms error |
//! | [`Clock::std()`]       | `std::time::Instant`                     | 27.4 ns    | portability |
//! | [`Clock::tokio()`]     | `tokio::time::Instant`                   | 27.3 ns    | simulations in paused time |
//! | [`ManualClock::clock`] | a counter you advance by hand            | 1.4 ns     | runtime-free unit and loom tests |
//!
//! \* one read, measured with `cargo bench -p palisade-benches --bench clock` on the 2-core
//! development machine (x86_64 VM); for reference, a bare `std::time::Instant::now()` was
//! 24.6 ns and a bare `quanta::Clock::now()` 10.3 ns in the same run.
//!
//! The default is the TSC clock because it reads in less than half the time of
//! `std::time::Instant`, the largest cost on most hot paths. Tests that run layers in tokio's
//! paused time switch with one builder call: `.clock(Clock::tokio())`.
//!
//! # Example
//!
//! ```
//! use palisade_core::clock::{Clock, ManualClock};
//! use std::time::Duration;
//!
//! let manual = ManualClock::new();
//! let clock = manual.clock();
//! let start = clock.now();
//! manual.advance(Duration::from_millis(250));
//! assert_eq!(clock.now().saturating_duration_since(start), Duration::from_millis(250));
//! ```
//!
//! In paused tokio time:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use palisade_core::clock::Clock;
//! use std::time::Duration;
//!
//! let clock = Clock::tokio();
//! let start = clock.now();
//! tokio::time::sleep(Duration::from_secs(30)).await; // returns at once in paused time
//! assert_eq!(clock.now().saturating_duration_since(start), Duration::from_secs(30));
//! # }
//! ```

#![allow(
    clippy::disallowed_types,
    reason = "the clock module is the one place that reads std::time::Instant"
)]

use crate::sync::Arc;
use crate::sync::atomic::{AtomicU64, Ordering};
use std::fmt;
use std::ops::{Add, Sub};
use std::sync::OnceLock;
use std::time::Duration;

/// A point in time: whole nanoseconds since the origin of the [`Clock`] that produced it.
///
/// Instants from one clock (and its clones) are comparable with each other; instants of two
/// different kinds of clock are not. An `Instant` fits in a `u64`, so layers can keep one in an
/// atomic ([`Instant::as_nanos`] / [`Instant::from_nanos`]). The range is about 584 years.
///
/// Arithmetic saturates instead of panicking: time never goes below [`Instant::ZERO`] or past
/// [`Instant::MAX`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The clock's origin.
    pub const ZERO: Instant = Instant(0);
    /// The latest representable instant, useful as "never".
    pub const MAX: Instant = Instant(u64::MAX);

    /// The instant `nanos` nanoseconds after the origin.
    #[inline]
    #[must_use]
    pub const fn from_nanos(nanos: u64) -> Instant {
        Instant(nanos)
    }

    /// Nanoseconds since the origin.
    #[inline]
    #[must_use]
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// How long after `earlier` this instant is, or zero if `earlier` is later.
    #[inline]
    #[must_use]
    pub const fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// How long after `earlier` this instant is, or `None` if `earlier` is later.
    #[inline]
    #[must_use]
    pub const fn checked_duration_since(self, earlier: Instant) -> Option<Duration> {
        match self.0.checked_sub(earlier.0) {
            Some(nanos) => Some(Duration::from_nanos(nanos)),
            None => None,
        }
    }

    /// `self + duration`, saturating at [`Instant::MAX`].
    #[inline]
    #[must_use]
    pub const fn saturating_add(self, duration: Duration) -> Instant {
        Instant(self.0.saturating_add(duration_to_nanos(duration)))
    }

    /// `self - duration`, saturating at [`Instant::ZERO`].
    #[inline]
    #[must_use]
    pub const fn saturating_sub(self, duration: Duration) -> Instant {
        Instant(self.0.saturating_sub(duration_to_nanos(duration)))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// Saturating: see [`Instant::saturating_add`].
    #[inline]
    fn add(self, rhs: Duration) -> Instant {
        self.saturating_add(rhs)
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;

    /// Saturating: see [`Instant::saturating_sub`].
    #[inline]
    fn sub(self, rhs: Duration) -> Instant {
        self.saturating_sub(rhs)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    /// Saturating: see [`Instant::saturating_duration_since`].
    #[inline]
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instant({:?})", Duration::from_nanos(self.0))
    }
}

/// A duration as whole nanoseconds, saturating at `u64::MAX` (about 584 years).
#[inline]
#[must_use]
pub const fn duration_to_nanos(duration: Duration) -> u64 {
    let nanos = duration.as_nanos();
    if nanos > u64::MAX as u128 {
        u64::MAX
    } else {
        nanos as u64
    }
}

/// A source of monotonic time that is not one of the built-in clocks.
///
/// Implement it to drive layers from your own time source, then wrap it with
/// [`Clock::from_source`]. `now_nanos` must never go backwards.
pub trait TimeSource: Send + Sync + fmt::Debug + 'static {
    /// Nanoseconds since this source's origin.
    fn now_nanos(&self) -> u64;
}

/// The time source of a layer. Cheap to clone; clones share their origin.
///
/// See the [module docs](self) for the kinds of clock and what each read costs.
#[derive(Clone)]
pub struct Clock {
    source: Source,
}

#[derive(Clone)]
enum Source {
    /// The TSC clock and the raw counter value of the process-wide origin, kept here so a read
    /// does not go through the `OnceLock`.
    Tsc {
        clock: quanta::Clock,
        origin_raw: u64,
    },
    Coarse {
        clock: quanta::Clock,
        origin: quanta::Instant,
    },
    Std,
    Tokio(tokio::time::Instant),
    Manual(ManualClock),
    Custom(Arc<dyn TimeSource>),
}

/// The process-wide origin of the TSC and std clocks, so every default clock in the process
/// agrees on what an `Instant` means.
struct Origin {
    tsc_raw: u64,
    std: std::time::Instant,
}

fn origin(clock: &quanta::Clock) -> &'static Origin {
    static ORIGIN: OnceLock<Origin> = OnceLock::new();
    ORIGIN.get_or_init(|| Origin {
        tsc_raw: clock.raw(),
        std: std::time::Instant::now(),
    })
}

/// The one TSC clock of the process: calibrating one takes milliseconds, so it is done once.
fn tsc() -> &'static quanta::Clock {
    static TSC: OnceLock<quanta::Clock> = OnceLock::new();
    TSC.get_or_init(quanta::Clock::new)
}

/// Starts quanta's upkeep thread once; it refreshes the coarse time every millisecond.
/// Returns whether a coarse time is being kept (by our thread or one the application started).
fn coarse_upkeep_running() -> bool {
    static UPKEEP: OnceLock<bool> = OnceLock::new();
    *UPKEEP.get_or_init(|| {
        match quanta::Upkeep::new_with_clock(Duration::from_millis(1), tsc().clone()).start() {
            Ok(handle) => {
                // The thread runs for the life of the process: forget the guard that would
                // stop it.
                std::mem::forget(handle);
                true
            }
            Err(quanta::Error::UpkeepRunning) => true,
            Err(_) => false,
        }
    })
}

impl Default for Clock {
    /// The production clock: TSC-backed through `quanta`, falling back to the OS monotonic
    /// clock where no stable TSC exists.
    fn default() -> Self {
        let clock = tsc().clone();
        let origin_raw = origin(&clock).tsc_raw;
        Clock {
            source: Source::Tsc { clock, origin_raw },
        }
    }
}

impl Clock {
    /// `quanta`'s "recent" time, refreshed every millisecond by one background thread that is
    /// started on first use: the cheapest read, about 1 ms stale.
    ///
    /// Good for windows and timeouts measured in seconds; not for slow-call thresholds or
    /// rates finer than a few milliseconds. If the upkeep thread cannot be spawned, reads fall
    /// back to the precise TSC time.
    #[must_use]
    pub fn coarse() -> Clock {
        let clock = tsc().clone();
        if !coarse_upkeep_running() {
            return Clock::default();
        }
        let origin = clock.scaled(origin(&clock).tsc_raw);
        Clock {
            source: Source::Coarse { clock, origin },
        }
    }

    /// `std::time::Instant`: the operating system's monotonic clock.
    #[must_use]
    pub fn std() -> Clock {
        origin(tsc());
        Clock {
            source: Source::Std,
        }
    }

    /// `tokio::time::Instant`, which stops and jumps with tokio's paused time
    /// (`#[tokio::test(start_paused = true)]`, `tokio::time::advance`).
    ///
    /// The origin is the moment this clock is created. Outside a tokio runtime with paused time
    /// it reads real time.
    #[must_use]
    pub fn tokio() -> Clock {
        Clock {
            source: Source::Tokio(tokio::time::Instant::now()),
        }
    }

    /// A clock driven by your own [`TimeSource`].
    #[must_use]
    pub fn from_source(source: Arc<dyn TimeSource>) -> Clock {
        Clock {
            source: Source::Custom(source),
        }
    }

    /// The current time.
    #[inline]
    #[must_use]
    pub fn now(&self) -> Instant {
        Instant(match &self.source {
            Source::Tsc { clock, origin_raw } => clock.delta_as_nanos(*origin_raw, clock.raw()),
            Source::Coarse { clock, origin } => {
                duration_to_nanos(clock.recent().saturating_duration_since(*origin))
            }
            Source::Std => duration_to_nanos(origin(tsc()).std.elapsed()),
            Source::Tokio(origin) => duration_to_nanos(origin.elapsed()),
            Source::Manual(manual) => manual.now_nanos(),
            Source::Custom(source) => source.now_nanos(),
        })
    }

    /// Time elapsed since `earlier`, saturating at zero.
    #[inline]
    #[must_use]
    pub fn elapsed_since(&self, earlier: Instant) -> Duration {
        self.now().saturating_duration_since(earlier)
    }

    /// The name of this kind of clock, for `Debug` output and diagnostics.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self.source {
            Source::Tsc { .. } => "tsc",
            Source::Coarse { .. } => "coarse",
            Source::Std => "std",
            Source::Tokio(_) => "tokio",
            Source::Manual(_) => "manual",
            Source::Custom(_) => "custom",
        }
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clock").field("kind", &self.kind()).finish()
    }
}

impl From<ManualClock> for Clock {
    fn from(manual: ManualClock) -> Clock {
        manual.clock()
    }
}

/// A clock that moves only when told to: for runtime-free tests of the algorithms and for
/// loom models.
///
/// Clones share one time. It starts at [`Instant::ZERO`].
///
/// # Memory ordering
///
/// Reads and advances are `SeqCst`-free: an advance is a `Release` RMW and a read an `Acquire`
/// load, so a thread that sees the new time also sees everything the advancing thread did
/// before it.
#[derive(Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A manual clock at [`Instant::ZERO`].
    #[must_use]
    pub fn new() -> ManualClock {
        ManualClock {
            nanos: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A [`Clock`] that reads this manual clock.
    #[must_use]
    pub fn clock(&self) -> Clock {
        Clock {
            source: Source::Manual(self.clone()),
        }
    }

    /// Moves time forward by `by` (saturating).
    pub fn advance(&self, by: Duration) {
        let by = duration_to_nanos(by);
        // Release: pairs with the Acquire in `now_nanos`, publishing what happened before the
        // advance to whoever reads the new time.
        let _ = self
            .nanos
            .fetch_update(Ordering::Release, Ordering::Relaxed, |now| {
                Some(now.saturating_add(by))
            });
    }

    /// Sets the time to `to`. Going backwards is allowed, so that tests can build any
    /// scenario; production clocks never do.
    pub fn set(&self, to: Instant) {
        // Release: as in `advance`.
        self.nanos.store(to.0, Ordering::Release);
    }

    /// The current time of this manual clock.
    #[must_use]
    pub fn now(&self) -> Instant {
        Instant(self.now_nanos())
    }

    #[inline]
    fn now_nanos(&self) -> u64 {
        // Acquire: pairs with the Release in `advance` / `set`.
        self.nanos.load(Ordering::Acquire)
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ManualClock").field(&self.now()).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn instant_arithmetic_saturates() {
        let t = Instant::from_nanos(1_000);
        assert_eq!((t + Duration::from_nanos(500)).as_nanos(), 1_500);
        assert_eq!(t - Duration::from_secs(1), Instant::ZERO);
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
        assert_eq!(t - Instant::from_nanos(400), Duration::from_nanos(600));
        assert_eq!(Instant::from_nanos(400) - t, Duration::ZERO);
        assert_eq!(t.checked_duration_since(Instant::from_nanos(2_000)), None);
        assert_eq!(
            t.checked_duration_since(Instant::ZERO),
            Some(Duration::from_micros(1))
        );
        assert_eq!(duration_to_nanos(Duration::MAX), u64::MAX);
        assert_eq!(format!("{t:?}"), "Instant(1µs)");
    }

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_it() {
        let manual = ManualClock::new();
        let clock = manual.clock();
        let other = Clock::from(manual.clone());
        assert_eq!(clock.now(), Instant::ZERO);
        assert_eq!(clock.now(), Instant::ZERO, "no time passes by itself");
        manual.advance(Duration::from_secs(2));
        assert_eq!(clock.now(), Instant::from_nanos(2_000_000_000));
        assert_eq!(other.now(), clock.now());
        manual.set(Instant::from_nanos(5));
        assert_eq!(clock.now().as_nanos(), 5);
        assert_eq!(clock.elapsed_since(Instant::ZERO), Duration::from_nanos(5));
        assert_eq!(clock.kind(), "manual");
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = Clock::tokio();
        let start = clock.now();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(clock.elapsed_since(start), Duration::from_secs(3600));
        tokio::time::advance(Duration::from_millis(5)).await;
        assert_eq!(
            clock.elapsed_since(start),
            Duration::from_secs(3600) + Duration::from_millis(5)
        );
        assert_eq!(clock.kind(), "tokio");
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_clones_share_the_origin() {
        let clock = Clock::tokio();
        tokio::time::advance(Duration::from_secs(1)).await;
        let clone = clock.clone();
        assert_eq!(clone.now(), clock.now());
        assert!(clone.now() >= Instant::from_nanos(1_000_000_000));
    }

    #[test]
    fn real_clocks_are_monotonic() {
        for clock in [Clock::default(), Clock::std(), Clock::coarse()] {
            let mut last = clock.now();
            for _ in 0..10_000 {
                let now = clock.now();
                assert!(now >= last, "{} clock went backwards", clock.kind());
                last = now;
            }
        }
    }

    #[test]
    fn default_clocks_share_one_origin() {
        // Two default clocks made at different times read the same timeline.
        let a = Clock::default();
        let b = Clock::default();
        let (t1, t2, t3) = (a.now(), b.now(), a.now());
        assert!(t1 <= t2 && t2 <= t3);
        assert_eq!(a.kind(), "tsc");
    }

    #[test]
    fn custom_sources_drive_a_clock() {
        #[derive(Debug)]
        struct Fixed;
        impl TimeSource for Fixed {
            fn now_nanos(&self) -> u64 {
                42
            }
        }
        let clock = Clock::from_source(Arc::new(Fixed));
        assert_eq!(clock.now(), Instant::from_nanos(42));
        assert_eq!(clock.kind(), "custom");
        assert_eq!(format!("{clock:?}"), "Clock { kind: \"custom\" }");
    }
}
