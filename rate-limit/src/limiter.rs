//! [`RateLimiter`]: the shared handle.

use crate::config::{Mode, Quota, RateLimiterBuilder};
use crate::error::{CostExceedsBurst, RateLimited};
use crate::events::RateLimiterEvent;
use crate::layer::RateLimiterLayer;
use crate::state::{Acquired, Fast, State, Taken};
use palisade_core::classify::Outcome;
use palisade_core::clock::Clock;
use palisade_core::events::{EventBus, Listener, ListenerId};
use palisade_core::rejection::RejectionKind;
use palisade_core::sync::Arc;
use parking_lot::Mutex;
use std::fmt;
use std::time::Duration;

/// A rate limiter: one token bucket (GCRA over one atomic word), shared by every clone of
/// this handle and every service built from it.
///
/// Build it once with [`RateLimiter::builder`], keep the handle to read or change the quota,
/// and stack it with [`RateLimiter::layer`] wherever it applies: however many times tower
/// clones the services, they all draw from this one bucket. It is also usable without tower:
/// [`check`](Self::check) and [`until_ready`](Self::until_ready).
///
/// ```
/// use palisade_rate_limit::RateLimiter;
/// use std::time::Duration;
///
/// let limiter = RateLimiter::builder().rate(10, Duration::from_secs(1)).burst(2).build()?;
/// assert!(limiter.check().is_ok());
/// assert!(limiter.clone().check().is_ok()); // clones share the bucket
/// let refused = limiter.check().unwrap_err();
/// assert!(refused.retry_after() <= Duration::from_millis(100));
/// # Ok::<(), palisade_core::ConfigError>(())
/// ```
///
/// # Memory ordering
///
/// Admission is one CAS loop on one `AtomicU64` (the theoretical arrival time, with a quota
/// generation in its top bits): two acquirers can never take the same tokens, whatever the
/// interleaving. A quota change (or the origin moving forward, once every 2^58 ns) installs
/// the new parameters and the converted TAT in one CAS, so no decision mixes the two. A token
/// given back is one more CAS on the same word, checked against the parameters it was taken
/// under. The details are in the `state` module's source.
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    state: State,
    clock: Clock,
    mode: Mode,
    max_wait: u64,
    quota: Mutex<Quota>,
    events: EventBus<RateLimiterEvent>,
    name: String,
}

/// A limiter's state at one moment: see [`RateLimiter::snapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The quota in force.
    pub quota: Quota,
    /// Whole tokens in the bucket: how many unit requests would pass right now.
    pub remaining_burst: u32,
}

impl RateLimiter {
    /// A builder: set [`rate`](RateLimiterBuilder::rate) (required), then `build()`.
    #[must_use]
    pub fn builder() -> RateLimiterBuilder {
        RateLimiterBuilder::default()
    }

    pub(crate) fn from_parts(quota: Quota, mode: Mode, clock: Clock, name: String) -> Self {
        let origin = clock.now().as_nanos();
        let limiter = RateLimiter {
            inner: Arc::new(Inner {
                state: State::new(quota.gcra(), origin),
                clock,
                mode,
                max_wait: mode.max_wait_nanos(),
                quota: Mutex::new(quota),
                events: EventBus::new(),
                name,
            }),
        };
        #[cfg(feature = "metrics")]
        let quota_changes_name = limiter.inner.name.clone();
        // Only a plain limiter's quota can change: only it gets `quota_changes_total`.
        palisade_core::subscribe_feature_listeners!(
            limiter.inner.events,
            "rate_limit",
            limiter.inner.name.as_str(),
            move |m: &crate::events::RateLimiterMetrics| m.register_unkeyed(&quota_changes_name)
        );
        #[cfg(feature = "metrics")]
        crate::events::record_quota(&limiter.inner.name, quota);
        limiter
    }

    /// Takes one token now, or says when to try again. Never waits, whatever the mode.
    ///
    /// # Errors
    ///
    /// [`RateLimited`] when the bucket is empty.
    // Always inlined, as governor's `check` is: out of line, the call, its saved registers
    // and the result returned through memory cost more than the admission's own arithmetic.
    // What is inlined is small: the clock read, the state's fast path, a test of the event
    // flags; what the fast path leaves open is decided out of line, in `check_slow`.
    #[inline(always)]
    pub fn check(&self) -> Result<(), RateLimited> {
        let now = self.clock_nanos();
        match self.inner.state.acquire_fast(now, 1) {
            Fast::Now(_) => {
                self.inner
                    .events
                    .emit_call_with(|| RateLimiterEvent::Permitted { cost: 1 });
                Ok(())
            }
            Fast::Denied(after) => {
                self.inner
                    .events
                    .emit_call_with(|| RateLimiterEvent::limited(1, after));
                Err(RateLimited::new(Duration::from_nanos(after)))
            }
            Fast::Slow => self.check_slow(now),
        }
    }

    /// [`check`](Self::check)'s cases that the state's fast path leaves open.
    #[inline(never)]
    fn check_slow(&self, now: u64) -> Result<(), RateLimited> {
        let acquired = self.inner.state.acquire_slow(now, 1);
        self.emitted(&acquired, 1);
        match acquired {
            Acquired::Now(_) => Ok(()),
            Acquired::Denied(after) => Err(RateLimited::new(Duration::from_nanos(after))),
            // A burst is at least one token, so this cannot happen; refusing is the safe answer.
            Acquired::TooCostly(_) => Err(RateLimited::new(Duration::MAX)),
        }
    }

    /// Takes `cost` tokens now, or says when to try again. Never waits.
    ///
    /// # Errors
    ///
    /// The outer error, [`CostExceedsBurst`], when `cost` can never pass; the inner
    /// [`RateLimited`] when the tokens are not there yet.
    pub fn check_n(&self, cost: u32) -> Result<Result<(), RateLimited>, CostExceedsBurst> {
        match self.acquire(cost).0 {
            Acquired::Now(_) => Ok(Ok(())),
            Acquired::Denied(after) => Ok(Err(RateLimited::new(Duration::from_nanos(after)))),
            Acquired::TooCostly(burst) => Err(CostExceedsBurst::new(cost, burst)),
        }
    }

    /// Waits (on the tokio timer) until one token is taken.
    ///
    /// While the bucket is empty it sleeps until the next token is due, then tries again;
    /// waiters woken at the same moment compete, so the order of service is not guaranteed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is taken until the token is there, so dropping the future while it
    /// sleeps costs the limiter nothing.
    pub async fn until_ready(&self) {
        // A burst is at least one token, so only the outer error is impossible.
        let _ = self.until_ready_n(1).await;
    }

    /// Waits (on the tokio timer) until `cost` tokens are taken.
    ///
    /// # Errors
    ///
    /// [`CostExceedsBurst`] at once when `cost` can never pass: it never waits forever.
    ///
    /// # Cancel safety
    ///
    /// As [`until_ready`](Self::until_ready).
    pub async fn until_ready_n(&self, cost: u32) -> Result<(), CostExceedsBurst> {
        loop {
            match self.acquire(cost).0 {
                Acquired::Now(_) => return Ok(()),
                Acquired::TooCostly(burst) => return Err(CostExceedsBurst::new(cost, burst)),
                Acquired::Denied(after) => {
                    tokio::time::sleep(Duration::from_nanos(after)).await;
                }
            }
        }
    }

    /// The quota in force now.
    #[must_use]
    pub fn quota(&self) -> Quota {
        *self.inner.quota.lock()
    }

    /// Replaces the quota at run time, for every service built from this limiter.
    ///
    /// The tokens available now stay available, capped at the new burst (raising the burst
    /// does not hand out a fresh one; lowering it trims the bucket), and waiters' reservations
    /// stay owed. The change is atomic: no request is decided by a mix of the two quotas.
    pub fn set_quota(&self, quota: Quota) {
        let mut current = self.inner.quota.lock();
        let from = *current;
        self.inner.state.set_quota(self.clock_nanos(), quota.gcra());
        *current = quota;
        drop(current);
        self.inner
            .events
            .emit_with(|| RateLimiterEvent::QuotaChanged { from, to: quota });
    }

    /// The quota in force and the tokens left, read together.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        let quota = self.quota();
        let (gcra, remaining_burst) = self.inner.state.snapshot(self.clock_nanos());
        // A change between the two reads: report the quota the tokens were counted with.
        let quota = if quota.gcra() == gcra {
            quota
        } else {
            self.quota()
        };
        Snapshot {
            quota,
            remaining_burst,
        }
    }

    /// Whole tokens in the bucket now.
    #[must_use]
    pub fn remaining_burst(&self) -> u32 {
        self.inner.state.snapshot(self.clock_nanos()).1
    }

    /// What the layer does over the limit.
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    /// The instance name given to the builder.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Adds a listener of this limiter's [`RateLimiterEvent`]s.
    pub fn subscribe<L: Listener<RateLimiterEvent>>(&self, listener: L) -> ListenerId {
        self.inner.events.subscribe(listener)
    }

    /// Removes a listener; `false` if it was not subscribed.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        self.inner.events.unsubscribe(id)
    }

    /// A layer whose services all draw from this limiter.
    #[must_use]
    pub fn layer(&self) -> RateLimiterLayer {
        RateLimiterLayer::new(self.clone())
    }

    /// The clock's reading in nanoseconds (the state converts it to its own origin).
    #[inline]
    fn clock_nanos(&self) -> u64 {
        self.inner.clock.now().as_nanos()
    }

    /// The longest a request may wait in [`Mode::Wait`], in nanoseconds (0 in reject mode).
    #[inline]
    pub(crate) fn max_wait_nanos(&self) -> u64 {
        self.inner.max_wait
    }

    /// Takes `cost` tokens now, emitting the event; also returns the clock reading it used.
    // Always inlined: left out of line, the call and the `Acquired` it returns through memory
    // cost a visible share of an admission (governor inlines its `check` whole).
    #[inline(always)]
    pub(crate) fn acquire(&self, cost: u32) -> (Acquired, u64) {
        let now = self.clock_nanos();
        let acquired = self.inner.state.acquire(now, cost);
        self.emitted(&acquired, cost);
        (acquired, now)
    }

    /// Reports an acquisition of `cost` tokens to whoever listens (a branch when nobody does).
    #[inline(always)]
    fn emitted(&self, acquired: &Acquired, cost: u32) {
        self.inner.events.emit_call_with(|| match *acquired {
            Acquired::Now(_) => RateLimiterEvent::Permitted { cost },
            Acquired::Denied(after) => RateLimiterEvent::limited(cost, after),
            Acquired::TooCostly(_) => RateLimiterEvent::Rejected {
                cost,
                reason: RejectionKind::CostExceedsBurst,
                retry_after: None,
            },
        });
    }

    /// Whether one token is there now, taking nothing and emitting nothing: `None` if so
    /// (or if only `acquire` can tell), else `Some((retry_after, now))`, the clock reading
    /// used.
    #[inline]
    pub(crate) fn peek(&self) -> Option<(u64, u64)> {
        let now = self.clock_nanos();
        self.inner.state.peek(now, 1).map(|after| (after, now))
    }

    /// The clock reading `acquire` and `peek` use, in nanoseconds.
    #[inline]
    pub(crate) fn now_nanos(&self) -> u64 {
        self.clock_nanos()
    }

    /// Reports a unit call refused without `acquire` (decided by [`peek`](Self::peek) at
    /// `poll_ready`), as `acquire` reports its refusals.
    #[cold]
    pub(crate) fn refused(&self, retry_after: u64) {
        self.inner
            .events
            .emit_call_with(|| RateLimiterEvent::limited(1, retry_after));
    }

    /// Gives back `cost` tokens taken for a call that never reached the dependency.
    #[cold]
    pub(crate) fn refund(&self, taken: Taken, cost: u32) {
        self.inner.state.refund(taken, cost, self.clock_nanos());
        self.inner
            .events
            .emit_call_with(|| RateLimiterEvent::Refunded { cost });
    }

    /// Reports how a permitted call ended.
    #[inline]
    pub(crate) fn completed(&self, outcome: Outcome) {
        self.inner
            .events
            .emit_call_with(|| RateLimiterEvent::Completed { outcome });
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("name", &self.inner.name)
            .field("quota", &self.quota())
            .field("mode", &self.inner.mode)
            .field("clock", &self.inner.clock)
            .finish_non_exhaustive()
    }
}
