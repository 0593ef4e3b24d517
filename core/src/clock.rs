//! Monotonic time for every layer.
//!
//! Breakers, limiters and budgets store times in atomics, so Palisade measures time as an
//! [`Instant`]: whole nanoseconds since the clock's origin, a plain `u64`. A [`Clock`] is the
//! one place a layer reads time from, and which clock it is decides how a layer behaves under
//! test:
//!
//! | constructor            | source                                   | read cost* | use it for |
//! |------------------------|------------------------------------------|-----------:|------------|
//! | [`Clock::tsc()`]       | TSC via `quanta` (monotonic fallback)    | 10.3 ns    | production: what [`Clock::default()`] gives unless told otherwise |
//! | [`Clock::coarse()`]    | `quanta`'s recent time, ~1 ms resolution | 2.1 ns     | very hot paths that tolerate 1 ms error (starts a thread: see its docs) |
//! | [`Clock::std()`]       | `std::time::Instant`                     | 27.4 ns    | portability |
//! | [`Clock::tokio()`]     | `tokio::time::Instant`                   | 27.3 ns    | simulations in paused time |
//! | [`ManualClock::clock`] | a counter you advance by hand            | 1.4 ns     | runtime-free unit and loom tests |
//!
//! \* one read, measured with `cargo bench -p palisade-benches --bench clock` on the 2-core
//! development machine (x86_64 VM); for reference, a bare `std::time::Instant::now()` was
//! 24.6 ns and a bare `quanta::Clock::now()` 10.3 ns in the same run.
//!
//! # The default clock
//!
//! Every layer builder that is not given a clock takes [`Clock::default()`] when it is created
//! or built. That is, in order:
//!
//! 1. the clock set for the current thread by [`set_default`], while its guard lives;
//! 2. else the clock set for the process by [`set_global_default`];
//! 3. else [`Clock::tsc()`], which reads in less than half the time of `std::time::Instant`
//!    and never starts a thread.
//!
//! The choice is made once, when a layer is built; a clock read on the hot path is the same
//! match on the clock's kind whatever the default was, so the switch costs nothing there.
//!
//! So a whole stack runs in tokio's paused time without a `.clock(..)` on any builder:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use palisade_core::clock::{self, Clock};
//! use std::time::Duration;
//!
//! let _paused = clock::set_default(Clock::tokio()); // this thread, until `_paused` drops
//! let clock = Clock::default(); // what every builder would take now
//! let start = clock.now();
//! tokio::time::sleep(Duration::from_secs(60)).await; // returns at once in paused time
//! assert_eq!(clock.elapsed_since(start), Duration::from_secs(60));
//! # }
//! ```
//!
//! Use the scoped [`set_default`] in tests: tests of one binary run on several threads at
//! once, each with its own runtime, and a thread's default is its own. A `current_thread`
//! runtime (what `#[tokio::test]` builds) runs every task on the test's thread, so layers built
//! inside spawned tasks see it too; on a multi-thread runtime, build the layers on the thread
//! that holds the guard. A simulator or a binary that runs wholly in paused time may set the
//! process default once instead, with [`set_global_default`].
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
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
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
    /// The default clock: the current thread's ([`set_default`]), else the process's
    /// ([`set_global_default`]), else [`Clock::tsc()`]. See [the module docs](self#the-default-clock).
    ///
    /// Read when a layer is built, never per call.
    fn default() -> Self {
        if let Some(scoped) = SCOPED_DEFAULT.with(|scoped| scoped.borrow().clone()) {
            return scoped;
        }
        if let Some(global) = GLOBAL_DEFAULT.get() {
            return global.clone();
        }
        Clock::tsc()
    }
}

impl Clock {
    /// The production clock: TSC-backed through `quanta`, falling back to the OS monotonic
    /// clock where no stable TSC exists. Precise to the nanosecond, about 10 ns a read, and
    /// never starts a thread (calibrating the TSC takes a few milliseconds, once per process,
    /// on the first call).
    #[must_use]
    pub fn tsc() -> Clock {
        let clock = tsc().clone();
        let origin_raw = origin(&clock).tsc_raw;
        Clock {
            source: Source::Tsc { clock, origin_raw },
        }
    }

    /// `quanta`'s "recent" time, refreshed every millisecond by one background thread that is
    /// started on first use: the cheapest read, about 1 ms stale.
    ///
    /// This is the one clock that starts a thread, so no layer takes it by default: choose it
    /// explicitly. The thread lives for the rest of the process.
    ///
    /// Good for windows and timeouts measured in seconds; not for slow-call thresholds or
    /// rates finer than a few milliseconds. If the upkeep thread cannot be spawned, reads fall
    /// back to the precise TSC time.
    #[must_use]
    pub fn coarse() -> Clock {
        let clock = tsc().clone();
        if !coarse_upkeep_running() {
            return Clock::tsc();
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
    /// The origin is the moment this clock is created. Paused time needs tokio's `test-util`
    /// feature somewhere in the build; in a runtime whose time is not paused it reads real time
    /// through tokio. Read it from the runtime's own threads: tokio answers a read from a
    /// thread outside the runtime with real time.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, where it would silently read real time. Use
    /// [`Clock::try_tokio`] to get an error instead.
    #[must_use]
    #[track_caller]
    pub fn tokio() -> Clock {
        match Clock::try_tokio() {
            Ok(clock) => clock,
            Err(error) => panic!("{error}"),
        }
    }

    /// [`Clock::tokio`], or an error outside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`NoTokioRuntime`] when the calling thread is not inside a tokio runtime (neither on
    /// one of its threads nor within `Runtime::enter`).
    pub fn try_tokio() -> Result<Clock, NoTokioRuntime> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(NoTokioRuntime(()));
        }
        Ok(Clock {
            source: Source::Tokio(tokio::time::Instant::now()),
        })
    }

    /// A clock driven by your own [`TimeSource`].
    #[must_use]
    pub fn from_source(source: Arc<dyn TimeSource>) -> Clock {
        Clock {
            source: Source::Custom(source),
        }
    }

    /// The current time.
    // Always inlined, with only the TSC and coarse reads in it: the default clock and the
    // cheapest one, read on most hot paths, where an out-of-line call (which the compiler
    // chose for the whole match) cost a visible share of a rate limiter's admission. The
    // other kinds are one call away.
    #[inline(always)]
    #[must_use]
    pub fn now(&self) -> Instant {
        match &self.source {
            Source::Tsc { clock, origin_raw } => {
                Instant(clock.delta_as_nanos(*origin_raw, clock.raw()))
            }
            Source::Coarse { clock, origin } => Instant(duration_to_nanos(
                clock.recent().saturating_duration_since(*origin),
            )),
            _ => self.now_other(),
        }
    }

    /// [`now`](Self::now) of the kinds that are not read inline.
    #[inline(never)]
    fn now_other(&self) -> Instant {
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

/// The error of [`Clock::try_tokio`] outside a tokio runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoTokioRuntime(());

impl fmt::Display for NoTokioRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "Clock::tokio() needs a tokio runtime (outside one it would read real time): \
             create it inside the runtime, e.g. in #[tokio::test(start_paused = true)]",
        )
    }
}

impl std::error::Error for NoTokioRuntime {}

static GLOBAL_DEFAULT: OnceLock<Clock> = OnceLock::new();

thread_local! {
    static SCOPED_DEFAULT: RefCell<Option<Clock>> = const { RefCell::new(None) };
}

/// Makes `clock` what [`Clock::default()`] returns on the current thread, until the returned
/// guard is dropped (then the previous thread default, if any, is back).
///
/// Guards nest; drop them in the reverse order of their creation (as `let` bindings in a
/// scope are). See [the module docs](self#the-default-clock) for when to use it.
///
/// ```
/// use palisade_core::clock::{self, Clock, ManualClock};
///
/// let manual = ManualClock::new();
/// {
///     let _guard = clock::set_default(manual.clock());
///     assert_eq!(Clock::default().kind(), "manual");
/// }
/// assert_eq!(Clock::default().kind(), "tsc");
/// ```
#[must_use = "the default is reset when the guard is dropped"]
pub fn set_default(clock: Clock) -> DefaultGuard {
    let previous = SCOPED_DEFAULT.with(|scoped| scoped.replace(Some(clock)));
    DefaultGuard {
        previous,
        _not_send: PhantomData,
    }
}

/// Runs `f` with `clock` as the current thread's default clock (see [`set_default`]).
pub fn with_default<T>(clock: Clock, f: impl FnOnce() -> T) -> T {
    let _guard = set_default(clock);
    f()
}

/// Makes `clock` what [`Clock::default()`] returns on every thread that has no
/// [`set_default`] of its own, for the rest of the process.
///
/// Set it once, early (a simulator's `main`), before any layer is built: layers built before
/// keep the clock they took.
///
/// # Errors
///
/// [`GlobalDefaultAlreadySet`] (carrying `clock` back) if a process default was set before.
pub fn set_global_default(clock: Clock) -> Result<(), GlobalDefaultAlreadySet> {
    let mut set_here = false;
    GLOBAL_DEFAULT.get_or_init(|| {
        set_here = true;
        clock.clone()
    });
    if set_here {
        Ok(())
    } else {
        Err(GlobalDefaultAlreadySet(clock))
    }
}

/// The error of [`set_global_default`] when a process default clock was already set. Holds
/// the clock that was refused.
#[derive(Debug)]
pub struct GlobalDefaultAlreadySet(pub Clock);

impl fmt::Display for GlobalDefaultAlreadySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a process-wide default clock was already set")
    }
}

impl std::error::Error for GlobalDefaultAlreadySet {}

/// Restores the previous thread default clock when dropped. Returned by [`set_default`];
/// bound to its thread (not `Send`).
pub struct DefaultGuard {
    previous: Option<Clock>,
    _not_send: PhantomData<*const ()>,
}

impl Drop for DefaultGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        // `try_with`: a guard dropped while the thread's locals are torn down has nothing to
        // restore.
        let _ = SCOPED_DEFAULT.try_with(|scoped| *scoped.borrow_mut() = previous);
    }
}

impl fmt::Debug for DefaultGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefaultGuard")
            .field("previous", &self.previous)
            .finish()
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
    fn the_default_is_the_tsc_clock_which_starts_no_thread() {
        // Issue 9 §5: the default never starts the coarse clock's upkeep thread.
        assert_eq!(Clock::default().kind(), "tsc");
        assert_eq!(Clock::tsc().kind(), "tsc");
    }

    #[test]
    fn a_thread_default_overrides_until_its_guard_drops_and_guards_nest() {
        let manual = ManualClock::new();
        manual.advance(Duration::from_secs(7));
        {
            let _outer = set_default(manual.clock());
            let clock = Clock::default();
            assert_eq!(clock.kind(), "manual");
            assert_eq!(clock.now(), Instant::from_nanos(7_000_000_000));
            {
                let _inner = set_default(Clock::std());
                assert_eq!(Clock::default().kind(), "std");
            }
            assert_eq!(
                Clock::default().kind(),
                "manual",
                "the outer default is back"
            );
            // Other threads keep their own default.
            let elsewhere = std::thread::spawn(|| Clock::default().kind())
                .join()
                .unwrap();
            assert_eq!(elsewhere, "tsc");
        }
        assert_eq!(Clock::default().kind(), "tsc");
        assert_eq!(
            with_default(Clock::std(), || Clock::default().kind()),
            "std"
        );
        assert_eq!(Clock::default().kind(), "tsc");
    }

    #[test]
    fn tokio_clock_outside_a_runtime_is_an_error_not_real_time() {
        let error = Clock::try_tokio().expect_err("no runtime here");
        assert!(
            error.to_string().contains("needs a tokio runtime"),
            "{error}"
        );
        let panicked = std::panic::catch_unwind(Clock::tokio).expect_err("panics");
        let message = panicked
            .downcast_ref::<String>()
            .expect("a formatted message");
        assert!(message.contains("Clock::tokio() needs a tokio runtime"));
        // Inside a runtime (entered, not even running a task) it works.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        assert_eq!(Clock::try_tokio().unwrap().kind(), "tokio");
    }

    #[tokio::test(start_paused = true)]
    async fn a_thread_default_of_tokio_runs_layers_built_later_in_paused_time() {
        let _paused = set_default(Clock::tokio());
        // What a builder takes, here inside a spawned task of the current-thread runtime.
        let clock = tokio::spawn(async { Clock::default() }).await.unwrap();
        assert_eq!(clock.kind(), "tokio");
        let start = clock.now();
        tokio::time::sleep(Duration::from_secs(5 * 60)).await;
        assert_eq!(clock.elapsed_since(start), Duration::from_secs(300));
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
