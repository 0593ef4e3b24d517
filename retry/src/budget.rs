//! [`RetryBudget`]: Finagle's retry budget, lock-free.
//!
//! Every original request *deposits* into the budget and every retry *withdraws* one retry
//! from it. Over any window of `ttl`, the retries it grants are bounded by
//!
//! ```text
//! retries ≤ max(min_retries_per_sec · ttl, percent_can_retry / 100 · requests)
//! ```
//!
//! so when a dependency is down the load a client sends it is at most
//! `(1 + percent_can_retry/100)` times what it would have sent without retries (plus the small
//! floor that lets clients with little traffic retry at all). (Finagle adds the floor to the
//! percentage; this budget takes the larger of the two, which is never more permissive.)
//!
//! # How it counts
//!
//! The `ttl` is cut into [`BUCKETS`] buckets of `ttl / BUCKETS` each. A bucket is one
//! `AtomicU64` packing an epoch tag (24 bits), a withdrawal count (20 bits) and a deposit count
//! (20 bits); one more `AtomicU64` holds what the live buckets' withdrawals cost in total
//! (`spent`). A deposit is one CAS on the current bucket (plus a clock read, coarse by default):
//! that is the hot path. A withdrawal sums the live buckets' deposits and takes `spent` from
//! below that allowance with a CAS, so concurrent withdrawals are serialised on one word and
//! can never overdraw; then it records itself in the current bucket. When a bucket falls out of
//! the window, whoever touches it first swaps it empty (one CAS, so its content expires
//! exactly once) and gives its withdrawals back to `spent`.
//!
//! Arithmetic is in integer units: one retry costs 1 000 000 units and each deposit credits
//! `percent_can_retry · 10 000` units, so a percentage with up to four decimals (12.5 %,
//! 33.3333 %) is exact and `n` deposits at 20 % allow exactly `n / 5` retries (rounded down),
//! unlike a float or integer-per-deposit budget (tower#857).
//!
//! **Rounding.** The window moves in steps of one bucket: at time `t` the live deposits are
//! those made in the last `ttl - width` to `ttl` (`width = ttl / BUCKETS`). So the bound holds
//! for retries in any interval of length `ttl - width` against deposits in the `ttl` before.
//! A bucket counts at most 2²⁰ − 1 deposits and withdrawals; more deposits are not credited and
//! a withdrawal that would not fit is refused (both on the safe side). A bucket left untouched
//! for exactly a multiple of 2²⁴ bucket widths (194 days at the default 1 s width) would
//! alias; any touch in between prevents it.
//!
//! # Memory ordering
//!
//! Bucket words and `spent` are each updated only by read-modify-writes, so every count is
//! exact. A withdrawal adds to `spent` before it records itself in a bucket (with `Release`),
//! and whoever empties that bucket reads the record with `Acquire` before it subtracts from
//! `spent`: so a subtraction is never ordered before the addition it undoes, and `spent` never
//! understates the live withdrawals. Deposits need no ordering with anything: reading a stale
//! (lower) deposit count only makes a withdrawal more conservative.

use palisade_core::clock::{Clock, Instant, duration_to_nanos};
use palisade_core::error::{ConfigError, check_nonzero_duration, check_percent};
use palisade_core::sync::Arc;
use palisade_core::sync::atomic::{AtomicU64, Ordering};
use std::fmt;
use std::time::Duration;

/// How many buckets the `ttl` window is cut into.
pub const BUCKETS: u64 = 10;

/// Units one retry costs (so percentages with four decimals are exact).
const UNIT: u64 = 1_000_000;

const COUNT_BITS: u32 = 20;
const TAG_BITS: u32 = 64 - 2 * COUNT_BITS;
const DEPOSIT_SHIFT: u32 = 0;
const WITHDRAW_SHIFT: u32 = DEPOSIT_SHIFT + COUNT_BITS;
const TAG_SHIFT: u32 = WITHDRAW_SHIFT + COUNT_BITS;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
/// Tags more than this far "ahead" of the expected one are older, not newer.
const TAG_HALF: u64 = 1 << (TAG_BITS - 1);

/// A bucket word, unpacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    tag: u64,
    withdrawals: u64,
    deposits: u64,
}

impl Slot {
    const fn unpack(word: u64) -> Slot {
        Slot {
            tag: word >> TAG_SHIFT,
            withdrawals: (word >> WITHDRAW_SHIFT) & COUNT_MAX,
            deposits: (word >> DEPOSIT_SHIFT) & COUNT_MAX,
        }
    }

    const fn pack(self) -> u64 {
        (self.tag << TAG_SHIFT)
            | (self.withdrawals << WITHDRAW_SHIFT)
            | (self.deposits << DEPOSIT_SHIFT)
    }

    const fn empty(epoch: u64) -> Slot {
        Slot {
            tag: epoch & TAG_MASK,
            withdrawals: 0,
            deposits: 0,
        }
    }
}

/// Where a bucket's content lies relative to the window of the caller's epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Age {
    /// In the caller's window.
    Live,
    /// Already rotated by a caller whose clock read later.
    Ahead,
    /// Fell out of the window: to be emptied.
    Expired,
}

/// The budget's numbers, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Params {
    /// Bucket width in nanoseconds.
    width: u64,
    /// Units every deposit credits.
    credit: u64,
    /// Units always available in a window (`min_retries_per_sec · ttl`).
    reserve: u64,
}

/// The lock-free algorithm, without a clock: every operation takes `now`.
pub(crate) struct BudgetState {
    params: Params,
    slots: [AtomicU64; BUCKETS as usize],
    spent: AtomicU64,
    /// The last epoch computed by division: a hint that spares the division (a `div`, the
    /// costliest instruction of a deposit) while time stays in the same bucket.
    epoch_hint: AtomicU64,
}

impl BudgetState {
    fn new(params: Params) -> BudgetState {
        BudgetState {
            params,
            // Slot i starts tagged with epoch i - BUCKETS: empty and already out of any window.
            slots: std::array::from_fn(|i| {
                AtomicU64::new(Slot::empty((i as u64).wrapping_sub(BUCKETS)).pack())
            }),
            spent: AtomicU64::new(0),
            epoch_hint: AtomicU64::new(0),
        }
    }

    #[inline]
    fn epoch(&self, now: Instant) -> u64 {
        let nanos = now.as_nanos();
        let width = self.params.width;
        // Relaxed: a hint, checked against `now` before use; any value is safe.
        let hint = self.epoch_hint.load(Ordering::Relaxed);
        if nanos.wrapping_sub(hint.wrapping_mul(width)) < width {
            return hint;
        }
        let epoch = nanos / width;
        // Relaxed: as above.
        self.epoch_hint.store(epoch, Ordering::Relaxed);
        epoch
    }

    /// The epoch within `(epoch - BUCKETS, epoch]` that bucket `index` holds.
    fn expected(epoch: u64, index: u64) -> u64 {
        let offset = (epoch % BUCKETS + BUCKETS - index) % BUCKETS;
        epoch.wrapping_sub(offset)
    }

    fn age(slot: Slot, expected: u64) -> Age {
        let ahead = slot.tag.wrapping_sub(expected) & TAG_MASK;
        if ahead == 0 {
            Age::Live
        } else if ahead < TAG_HALF {
            Age::Ahead
        } else {
            Age::Expired
        }
    }

    /// Empties bucket `index` if it still holds `seen`, returning its withdrawals to `spent`.
    fn expire(&self, index: usize, seen: u64, expected: u64) {
        let fresh = Slot::empty(expected).pack();
        // AcqRel: the Acquire reads the Release of every withdrawal recorded in `seen`, so our
        // subtraction below comes after their additions to `spent`; the Release publishes the
        // emptied bucket. Failure (Relaxed): someone else changed it, the caller re-reads it.
        if self.slots[index]
            .compare_exchange(seen, fresh, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            let refund = Slot::unpack(seen).withdrawals * UNIT;
            if refund > 0 {
                // Relaxed: a plain count; ordering with the records is given by the CAS above.
                self.spent.fetch_sub(refund, Ordering::Relaxed);
            }
        }
    }

    /// Records one original request.
    pub(crate) fn deposit(&self, now: Instant) {
        let epoch = self.epoch(now);
        let index = (epoch % BUCKETS) as usize;
        let slot = &self.slots[index];
        // Relaxed: deposits publish nothing; a stale read only makes the CAS fail and retry.
        let mut word = slot.load(Ordering::Relaxed);
        loop {
            let current = Slot::unpack(word);
            match Self::age(current, epoch) {
                Age::Live => {
                    if current.deposits == COUNT_MAX {
                        return; // saturated: not credited, which is the safe side
                    }
                    let next = Slot {
                        deposits: current.deposits + 1,
                        ..current
                    };
                    // Relaxed: the count is exact by the RMW; nothing else hangs on it (see
                    // "Memory ordering" in the module docs).
                    match slot.compare_exchange_weak(
                        word,
                        next.pack(),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return,
                        Err(actual) => word = actual,
                    }
                }
                // A later clock already moved this bucket on: our deposit would be expired.
                Age::Ahead => return,
                Age::Expired => {
                    self.expire(index, word, epoch);
                    // Relaxed: as above.
                    word = slot.load(Ordering::Relaxed);
                }
            }
        }
    }

    /// Empties expired buckets and returns the units the live window allows.
    fn allowance(&self, epoch: u64) -> u64 {
        let mut deposits = 0;
        for (index, slot) in self.slots.iter().enumerate() {
            let expected = Self::expected(epoch, index as u64);
            // Acquire: pairs with the Release of withdrawal records and of emptied buckets, so
            // an expire that follows sees the records it refunds.
            let mut word = slot.load(Ordering::Acquire);
            loop {
                let current = Slot::unpack(word);
                match Self::age(current, expected) {
                    Age::Live => {
                        deposits += current.deposits;
                        break;
                    }
                    Age::Ahead => break,
                    Age::Expired => {
                        self.expire(index, word, expected);
                        // Acquire: as above.
                        word = slot.load(Ordering::Acquire);
                    }
                }
            }
        }
        self.params.reserve.max(deposits * self.params.credit)
    }

    /// Takes one retry from the budget if the window allows it.
    pub(crate) fn try_withdraw(&self, now: Instant) -> bool {
        let epoch = self.epoch(now);
        let allowance = self.allowance(epoch);
        // Relaxed: `spent` is only ever changed by RMWs; the CAS below decides on its latest
        // value.
        let mut spent = self.spent.load(Ordering::Relaxed);
        loop {
            if spent.saturating_add(UNIT) > allowance {
                return false;
            }
            // Relaxed: the CAS alone serialises withdrawals (no overdraw); the record below is
            // what later refunds pair with.
            match self.spent.compare_exchange_weak(
                spent,
                spent + UNIT,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => spent = actual,
            }
        }
        self.record_withdrawal(epoch)
    }

    /// Records a withdrawal already taken from `spent` in the bucket of `epoch`.
    fn record_withdrawal(&self, epoch: u64) -> bool {
        let index = (epoch % BUCKETS) as usize;
        let slot = &self.slots[index];
        // Acquire: an expire that follows must see the records it refunds.
        let mut word = slot.load(Ordering::Acquire);
        loop {
            let current = Slot::unpack(word);
            match Self::age(current, epoch) {
                Age::Live => {
                    if current.withdrawals == COUNT_MAX {
                        // Cannot be recorded, so it could never be refunded: refuse it.
                        // Relaxed: undoes our own addition.
                        self.spent.fetch_sub(UNIT, Ordering::Relaxed);
                        return false;
                    }
                    let next = Slot {
                        withdrawals: current.withdrawals + 1,
                        ..current
                    };
                    // Release: whoever empties this bucket (Acquire) then sees our addition to
                    // `spent` before it subtracts; Acquire on failure for the re-read.
                    match slot.compare_exchange_weak(
                        word,
                        next.pack(),
                        Ordering::Release,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => return true,
                        Err(actual) => word = actual,
                    }
                }
                Age::Ahead => {
                    // Our epoch has already left the window: the withdrawal expires at once.
                    // Relaxed: undoes our own addition.
                    self.spent.fetch_sub(UNIT, Ordering::Relaxed);
                    return true;
                }
                Age::Expired => {
                    self.expire(index, word, epoch);
                    // Acquire: as above.
                    word = slot.load(Ordering::Acquire);
                }
            }
        }
    }

    /// Retries the window allows now, rounded down.
    pub(crate) fn available(&self, now: Instant) -> u64 {
        let allowance = self.allowance(self.epoch(now));
        // Relaxed: a snapshot for inspection.
        allowance.saturating_sub(self.spent.load(Ordering::Relaxed)) / UNIT
    }
}

/// A shared retry budget (Finagle's `RetryBudget`): retries may add at most a percentage of the
/// original requests, over a sliding `ttl` window, with a floor for quiet clients.
///
/// Cheap to clone: clones share one budget, and every [`Retry`](crate::Retry) or
/// [`Hedge`](crate::Hedge) built with it draws on it. The default (used by
/// [`RetryPolicy`](crate::RetryPolicy) unless told otherwise) is Finagle's: `ttl` 10 s,
/// `min_retries_per_sec` 10, `percent_can_retry` 20 %.
///
/// See the [module docs](self) for the algorithm, its rounding and its memory ordering.
///
/// # Example
///
/// ```
/// use palisade_core::clock::ManualClock;
/// use palisade_retry::RetryBudget;
/// use std::time::Duration;
///
/// let manual = ManualClock::new();
/// let budget = RetryBudget::builder()
///     .ttl(Duration::from_secs(10))
///     .min_retries_per_sec(0)
///     .percent_can_retry(12.5)
///     .clock(manual.clock())
///     .build()
///     .unwrap();
/// for _ in 0..16 {
///     budget.deposit();
/// }
/// assert_eq!(budget.available(), 2); // 12.5 % of 16, exactly
/// assert!(budget.try_withdraw());
/// assert!(budget.try_withdraw());
/// assert!(!budget.try_withdraw());
///
/// manual.advance(Duration::from_secs(10)); // every deposit and withdrawal expired
/// assert_eq!(budget.available(), 0);
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    state: BudgetState,
    clock: Clock,
    ttl: Duration,
    min_retries_per_sec: u32,
    percent_can_retry: f64,
}

impl RetryBudget {
    /// A builder with Finagle's defaults.
    #[must_use]
    pub fn builder() -> RetryBudgetBuilder {
        RetryBudgetBuilder::default()
    }

    /// Records one original request (not a retry), crediting the budget.
    #[inline]
    pub fn deposit(&self) {
        self.inner.state.deposit(self.inner.clock.now());
    }

    /// Takes one retry from the budget; `false` (and nothing taken) if the window has none.
    #[inline]
    #[must_use = "a refused withdrawal means: do not retry"]
    pub fn try_withdraw(&self) -> bool {
        self.inner.state.try_withdraw(self.inner.clock.now())
    }

    /// How many retries the budget would grant now.
    #[must_use]
    pub fn available(&self) -> u64 {
        self.inner.state.available(self.inner.clock.now())
    }

    /// The window over which deposits and withdrawals count.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// The floor of retries per second granted regardless of traffic.
    #[must_use]
    pub fn min_retries_per_sec(&self) -> u32 {
        self.inner.min_retries_per_sec
    }

    /// The share of original requests that may be retried, in percent.
    #[must_use]
    pub fn percent_can_retry(&self) -> f64 {
        self.inner.percent_can_retry
    }

    /// The clock the budget reads.
    #[must_use]
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }
}

impl Default for RetryBudget {
    /// Finagle's defaults on the coarse clock.
    fn default() -> Self {
        RetryBudgetBuilder::default()
            .build()
            .expect("the default budget configuration is valid")
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("ttl", &self.inner.ttl)
            .field("min_retries_per_sec", &self.inner.min_retries_per_sec)
            .field("percent_can_retry", &self.inner.percent_can_retry)
            .field("available", &self.available())
            .finish()
    }
}

/// Builds a [`RetryBudget`]; see its docs for the meaning of each setting.
#[derive(Clone, Debug)]
pub struct RetryBudgetBuilder {
    ttl: Duration,
    min_retries_per_sec: u32,
    percent_can_retry: f64,
    clock: Option<Clock>,
}

impl Default for RetryBudgetBuilder {
    fn default() -> Self {
        RetryBudgetBuilder {
            ttl: Duration::from_secs(10),
            min_retries_per_sec: 10,
            percent_can_retry: 20.0,
            clock: None,
        }
    }
}

impl RetryBudgetBuilder {
    /// How long a deposit or withdrawal counts: between 1 ms and 1 hour. Default 10 s.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Retries per second always allowed (over the `ttl`, `min_retries_per_sec · ttl`), so
    /// clients with little traffic can retry at all. Default 10.
    #[must_use]
    pub fn min_retries_per_sec(mut self, min: u32) -> Self {
        self.min_retries_per_sec = min;
        self
    }

    /// The percentage of original requests that may be retried, 0 to 100; exact to four
    /// decimals. Default 20.
    #[must_use]
    pub fn percent_can_retry(mut self, percent: f64) -> Self {
        self.percent_can_retry = percent;
        self
    }

    /// The clock to read. Default: [`Clock::coarse`] (about 2 ns a read, 1 ms stale, which
    /// is far below a bucket's width); use [`Clock::tokio`] in paused-time tests.
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `ttl` (zero, below 1 ms or above an hour) or
    /// `percent_can_retry` (outside 0..=100).
    pub fn build(self) -> Result<RetryBudget, ConfigError> {
        let ttl = check_nonzero_duration("ttl", self.ttl)?;
        if ttl < Duration::from_millis(1) || ttl > Duration::from_secs(3600) {
            return Err(ConfigError::new(
                "ttl",
                format!("must be between 1ms and 1h, got {ttl:?}"),
            ));
        }
        let percent = check_percent("percent_can_retry", self.percent_can_retry)?;
        let params = params(ttl, self.min_retries_per_sec, percent);
        Ok(RetryBudget {
            inner: Arc::new(Inner {
                state: BudgetState::new(params),
                clock: self.clock.unwrap_or_else(Clock::coarse),
                ttl,
                min_retries_per_sec: self.min_retries_per_sec,
                percent_can_retry: percent,
            }),
        })
    }
}

fn params(ttl: Duration, min_retries_per_sec: u32, percent: f64) -> Params {
    let ttl_nanos = duration_to_nanos(ttl);
    // u128: 2^32 retries/s · 3.6e12 ns · 1e6 units does not fit 64 bits.
    let reserve =
        u128::from(min_retries_per_sec) * u128::from(ttl_nanos) * u128::from(UNIT) / 1_000_000_000;
    Params {
        width: (ttl_nanos / BUCKETS).max(1),
        // Percent in units of 1/10 000 %: 100 % = UNIT.
        credit: (percent * 10_000.0).round() as u64,
        reserve: u64::try_from(reserve).unwrap_or(u64::MAX),
    }
}

#[cfg(all(test, loom))]
fn state_for_tests(ttl: Duration, min_retries_per_sec: u32, percent: f64) -> BudgetState {
    BudgetState::new(params(ttl, min_retries_per_sec, percent))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use palisade_core::clock::ManualClock;
    use proptest::prelude::*;

    fn budget(min: u32, percent: f64) -> (ManualClock, RetryBudget) {
        let manual = ManualClock::new();
        let budget = RetryBudget::builder()
            .ttl(Duration::from_secs(10))
            .min_retries_per_sec(min)
            .percent_can_retry(percent)
            .clock(manual.clock())
            .build()
            .unwrap();
        (manual, budget)
    }

    fn drain(budget: &RetryBudget) -> u64 {
        let mut n = 0;
        while budget.try_withdraw() {
            n += 1;
        }
        n
    }

    #[test]
    fn slot_packing_round_trips() {
        let slot = Slot {
            tag: TAG_MASK,
            withdrawals: COUNT_MAX,
            deposits: 12345,
        };
        assert_eq!(Slot::unpack(slot.pack()), slot);
        assert_eq!(TAG_SHIFT + TAG_BITS, 64);
    }

    #[test]
    fn fractional_percentages_are_exact() {
        // tower#857: 20 % of 5 requests must be 1 retry, not 0.
        let (_, b) = budget(0, 20.0);
        for _ in 0..5 {
            b.deposit();
        }
        assert_eq!(drain(&b), 1);

        let (_, b) = budget(0, 12.5);
        for _ in 0..8 {
            b.deposit();
        }
        assert_eq!(b.available(), 1);
        for _ in 0..7 {
            b.deposit();
        }
        assert_eq!(b.available(), 1, "15 · 12.5 % = 1.875, rounded down");
        b.deposit();
        assert_eq!(drain(&b), 2);

        let (_, b) = budget(0, 33.3333);
        for _ in 0..3 {
            b.deposit();
        }
        assert_eq!(drain(&b), 0, "3 · 33.3333 % = 0.999999");
        let (_, b) = budget(0, 100.0 / 3.0);
        for _ in 0..300 {
            b.deposit();
        }
        // 100/3 % is kept to four decimals, 33.3333 %: 300 deposits credit 99.9999 retries.
        assert_eq!(drain(&b), 99);
    }

    #[test]
    fn the_floor_is_min_retries_per_sec_times_ttl() {
        let (_, b) = budget(3, 20.0);
        assert_eq!(b.available(), 30);
        for _ in 0..100 {
            b.deposit();
        }
        // max(30, 20) = 30, not 30 + 20.
        assert_eq!(drain(&b), 30);
        for _ in 0..100 {
            b.deposit();
        }
        // max(30, 40) = 40; 30 already taken.
        assert_eq!(drain(&b), 10);
    }

    #[test]
    fn deposits_and_withdrawals_expire_after_the_ttl() {
        let (clock, b) = budget(0, 50.0);
        for _ in 0..10 {
            b.deposit();
        }
        assert_eq!(drain(&b), 5);
        clock.advance(Duration::from_secs(5));
        for _ in 0..10 {
            b.deposit();
        }
        assert_eq!(drain(&b), 5, "20 deposits allow 10, 5 spent");
        // The first deposits leave the window after ttl: 10 left, allowing 5, and the first 5
        // withdrawals left with them.
        clock.advance(Duration::from_secs(5));
        assert_eq!(b.available(), 0);
        clock.advance(Duration::from_secs(5));
        assert_eq!(b.available(), 0, "everything expired");
        for _ in 0..2 {
            b.deposit();
        }
        assert_eq!(drain(&b), 1);
    }

    #[test]
    fn the_window_moves_in_bucket_steps() {
        let (clock, b) = budget(0, 100.0);
        b.deposit();
        clock.advance(Duration::from_millis(9_999));
        assert_eq!(b.available(), 1, "still in the last bucket of the window");
        clock.advance(Duration::from_millis(1));
        assert_eq!(b.available(), 0, "left with its bucket at ttl");
    }

    #[test]
    fn long_idle_periods_expire_everything() {
        let (clock, b) = budget(0, 100.0);
        for _ in 0..4 {
            b.deposit();
        }
        assert!(b.try_withdraw());
        clock.advance(Duration::from_secs(3600 * 24 * 30));
        assert_eq!(b.available(), 0);
        b.deposit();
        assert_eq!(drain(&b), 1);
    }

    #[test]
    fn config_is_validated() {
        let err = RetryBudget::builder()
            .percent_can_retry(101.0)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "percent_can_retry");
        let err = RetryBudget::builder()
            .ttl(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "ttl");
        let err = RetryBudget::builder()
            .ttl(Duration::from_micros(10))
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "ttl");
        assert!(
            RetryBudget::builder()
                .percent_can_retry(f64::NAN)
                .build()
                .is_err()
        );
    }

    #[test]
    fn deposits_do_not_allocate() {
        let (_, b) = budget(10, 20.0);
        b.deposit();
        let info = allocation_counter::measure(|| {
            for _ in 0..1000 {
                b.deposit();
                let _ = b.try_withdraw();
            }
        });
        assert_eq!(info.count_total, 0);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Advance(u64),
        Deposit(u32),
        Withdraw(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u64..3_000).prop_map(Op::Advance),
            (1u32..20).prop_map(Op::Deposit),
            (1u32..20).prop_map(Op::Withdraw),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_0006),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Over any interval of `ttl - width` ending at a granted retry, retries are at most
        /// `max(min · ttl, percent · deposits in the ttl before)` (rounded down).
        #[test]
        fn retries_stay_within_the_window_bound(
            min in 0u32..3,
            percent_tenths in 0u32..=1000,
            ops in proptest::collection::vec(op(), 1..200),
        ) {
            let ttl = Duration::from_secs(1);
            let width = ttl.as_millis() as u64 / BUCKETS;
            let percent = f64::from(percent_tenths) / 10.0;
            let manual = ManualClock::new();
            let b = RetryBudget::builder()
                .ttl(ttl)
                .min_retries_per_sec(min)
                .percent_can_retry(percent)
                .clock(manual.clock())
                .build()
                .unwrap();
            let mut now_ms = 0u64;
            let mut deposits: Vec<u64> = Vec::new();
            let mut granted: Vec<u64> = Vec::new();
            for op in ops {
                match op {
                    Op::Advance(ms) => {
                        manual.advance(Duration::from_millis(ms));
                        now_ms += ms;
                    }
                    Op::Deposit(n) => {
                        for _ in 0..n {
                            b.deposit();
                            deposits.push(now_ms);
                        }
                    }
                    Op::Withdraw(n) => {
                        for _ in 0..n {
                            if b.try_withdraw() {
                                granted.push(now_ms);
                                let in_window = granted
                                    .iter()
                                    .filter(|&&t| t + (1000 - width) > now_ms)
                                    .count() as u64;
                                let credited = deposits
                                    .iter()
                                    .filter(|&&t| t + 1000 > now_ms)
                                    .count() as u64;
                                let bound = (u64::from(min) * 1_000_000)
                                    .max(credited * u64::from(percent_tenths) * 1000)
                                    / 1_000_000;
                                prop_assert!(
                                    in_window <= bound,
                                    "{in_window} retries > bound {bound} at {now_ms} ms"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use palisade_core::sync::loom;
    use palisade_core::sync::loom::sync::atomic::AtomicUsize;

    /// Two threads race for the one retry the budget holds: exactly one gets it.
    #[test]
    fn loom_concurrent_withdrawals_never_overdraw() {
        loom::model(|| {
            let state = Arc::new(state_for_tests(Duration::from_secs(10), 0, 50.0));
            let now = Instant::from_nanos(0);
            state.deposit(now);
            state.deposit(now);
            let granted = Arc::new(AtomicUsize::new(0));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let state = state.clone();
                    let granted = granted.clone();
                    loom::thread::spawn(move || {
                        if state.try_withdraw(now) {
                            // Relaxed: read after join.
                            granted.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(granted.load(Ordering::Relaxed), 1);
            assert_eq!(state.available(now), 0);
        });
    }

    /// A withdrawal in a fresh window races a deposit and a withdrawal in the old one, while
    /// the old bucket is being emptied: the fresh window never grants more than it holds, and
    /// `spent` ends equal to what the live buckets recorded.
    #[test]
    fn loom_expiry_racing_withdrawals_never_overdraws() {
        loom::model(|| {
            let state = Arc::new(state_for_tests(Duration::from_secs(10), 0, 100.0));
            let old = Instant::from_nanos(0);
            let fresh = Instant::from_nanos(10_000_000_000); // one ttl later: same bucket index
            state.deposit(old);
            let granted_fresh = Arc::new(AtomicUsize::new(0));
            let a = {
                let state = state.clone();
                loom::thread::spawn(move || {
                    let _ = state.try_withdraw(old);
                })
            };
            let b = {
                let state = state.clone();
                let granted_fresh = granted_fresh.clone();
                loom::thread::spawn(move || {
                    state.deposit(fresh);
                    if state.try_withdraw(fresh) {
                        // Relaxed: read after join.
                        granted_fresh.fetch_add(1, Ordering::Relaxed);
                    }
                })
            };
            a.join().unwrap();
            b.join().unwrap();
            assert!(granted_fresh.load(Ordering::Relaxed) <= 1);
            // Whatever interleaving: in the fresh window, one deposit at 100 % allows one
            // retry, and the ledger balances with the buckets.
            let live: u64 = state
                .slots
                .iter()
                .map(|s| Slot::unpack(s.load(Ordering::Relaxed)))
                .filter(|s| s.tag == (fresh.as_nanos() / state.params.width) & TAG_MASK)
                .map(|s| s.withdrawals)
                .sum();
            assert_eq!(state.spent.load(Ordering::Relaxed), live * UNIT);
            assert!(live <= 1);
        });
    }
}
