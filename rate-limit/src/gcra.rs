//! The generic cell rate algorithm (GCRA) as pure functions: no atomics, no clock, no tower.
//!
//! GCRA is a token bucket that stores one number instead of two: the *theoretical arrival
//! time* (TAT), the instant at which the bucket will be full again. With an emission interval
//! `T` (the time one token takes to come back, `period / rate`) and a burst `b` (the bucket's
//! capacity), a request of cost `n` arriving at `now` conforms when
//!
//! ```text
//! max(tat, now) + n·T - now <= b·T
//! ```
//!
//! which is exactly "the bucket holds at least `n` tokens". If it conforms, the new TAT is
//! `max(tat, now) + n·T`; if it does not, nothing changes and the request may try again after
//! `max(tat, now) + n·T - b·T - now`.
//!
//! Times are whole nanoseconds relative to the limiter's own origin (see
//! [`crate::RateLimiter`]); a TAT at or before `now` means a full bucket, so a key that was
//! never seen and a key whose bucket refilled are the same thing (which is what lets the keyed
//! limiter evict idle keys without changing any decision).
//!
//! # Example
//!
//! ```
//! use palisade_rate_limit::gcra::{decide, Decision, Gcra};
//!
//! // 1 token per 100 ns, burst 2.
//! let gcra = Gcra::new(100, 2)?;
//! let Decision::Admit { tat, wait: 0 } = decide(0, 1_000, 1, gcra, 0) else { panic!() };
//! let Decision::Admit { tat, wait: 0 } = decide(tat, 1_000, 1, gcra, 0) else { panic!() };
//! // The bucket is empty: the third call must wait 100 ns for a token.
//! assert_eq!(decide(tat, 1_000, 1, gcra, 0), Decision::Deny { retry_after: 100 });
//! assert!(matches!(decide(tat, 1_100, 1, gcra, 0), Decision::Admit { wait: 0, .. }));
//! # Ok::<(), palisade_core::ConfigError>(())
//! ```

use palisade_core::error::ConfigError;

/// The largest TAT (and relative time) a limiter keeps: 2^60 - 1 ns, about 36 years. The top
/// four bits of the state word hold the quota generation.
pub(crate) const TAT_MAX: u64 = (1 << 60) - 1;

/// The largest bucket, `burst · interval`, a quota may describe: 2^57 ns, about 4.5 years.
pub(crate) const CAPACITY_MAX: u64 = 1 << 57;

/// The longest wait a limiter's wait mode allows: 2^57 ns, about 4.5 years.
pub(crate) const WAIT_MAX: u64 = 1 << 57;

/// A limiter moves its time origin forward (a "rebase") once the time since its origin
/// reaches 2^58 ns (about 9 years), so relative times stay below [`TAT_MAX`] for the life of
/// any process and any clock, real or virtual. With the bucket capped at [`CAPACITY_MAX`],
/// `now + capacity` then never exceeds 2^58 + 2^57 < [`TAT_MAX`].
pub(crate) const REBASE_AT: u64 = 1 << 58;

/// The parameters of one quota: emission interval and burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Gcra {
    interval: u64,
    burst: u32,
}

impl Gcra {
    /// A quota of one token every `interval_nanos`, at most `burst` tokens at once.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `interval` if it is zero, `burst` if it is zero or the bucket
    /// `interval_nanos · burst` exceeds 2^57 ns (about 4.5 years).
    pub fn new(interval_nanos: u64, burst: u32) -> Result<Gcra, ConfigError> {
        if interval_nanos == 0 {
            return Err(ConfigError::new(
                "interval",
                "must be at least one nanosecond",
            ));
        }
        if burst == 0 {
            return Err(ConfigError::new("burst", "must be at least one token"));
        }
        if interval_nanos > CAPACITY_MAX / u64::from(burst) {
            return Err(ConfigError::new(
                "burst",
                "overflows: the bucket (interval · burst) is longer than 2^57 ns",
            ));
        }
        Ok(Gcra {
            interval: interval_nanos,
            burst,
        })
    }

    /// For parameters already validated by the caller.
    #[inline]
    pub(crate) const fn new_unchecked(interval_nanos: u64, burst: u32) -> Gcra {
        Gcra {
            interval: interval_nanos,
            burst,
        }
    }

    /// Nanoseconds for one token to come back.
    #[must_use]
    pub const fn interval_nanos(self) -> u64 {
        self.interval
    }

    /// The bucket's capacity in tokens.
    #[must_use]
    pub const fn burst(self) -> u32 {
        self.burst
    }

    /// The bucket's capacity in nanoseconds: `burst · interval` (at most 2^57).
    #[must_use]
    pub const fn capacity_nanos(self) -> u64 {
        self.interval * self.burst as u64
    }

    /// Whole tokens in the bucket at `now` for the given TAT.
    #[must_use]
    pub const fn remaining(self, tat: u64, now: u64) -> u32 {
        let debt = tat.saturating_sub(now);
        let free = self.capacity_nanos().saturating_sub(debt);
        // free <= capacity = burst · interval, so the quotient fits in u32.
        (free / self.interval) as u32
    }
}

/// What [`decide`] concluded for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Decision {
    /// Admitted: store `tat` as the new TAT; the request may go after `wait` nanoseconds
    /// (zero unless it was admitted by reserving a future slot within `max_wait`).
    Admit {
        /// The new theoretical arrival time.
        tat: u64,
        /// Nanoseconds to wait before going (zero: go now).
        wait: u64,
    },
    /// Not admitted; nothing changes. It would conform after `retry_after` nanoseconds if
    /// nothing else took tokens meanwhile.
    Deny {
        /// Nanoseconds until the request would conform.
        retry_after: u64,
    },
    /// The cost is above the burst: no amount of waiting admits it.
    TooCostly,
}

/// Decides one request of `cost` tokens at `now` against the stored `tat`.
///
/// `max_wait` (nanoseconds) lets a request that does not conform yet reserve the tokens it
/// will have within that time: it is admitted with a `wait`, and the tokens are taken now.
/// Every input is accepted. The limiters keep `now` below 2^58 (see [`crate::RateLimiter`]),
/// where the arithmetic is exact; a TAT that would pass `u64::MAX` saturates there, which
/// only ever refuses more.
pub fn decide(tat: u64, now: u64, cost: u32, gcra: Gcra, max_wait: u64) -> Decision {
    if cost > gcra.burst {
        return Decision::TooCostly;
    }
    let start = if tat > now { tat } else { now };
    // cost <= burst, so cost · interval <= capacity <= 2^57.
    let new_tat = start.saturating_add(cost as u64 * gcra.interval);
    let conforms_at = new_tat.saturating_sub(gcra.capacity_nanos());
    if conforms_at <= now {
        return Decision::Admit {
            tat: new_tat,
            wait: 0,
        };
    }
    let wait = conforms_at - now;
    if wait <= max_wait {
        Decision::Admit { tat: new_tat, wait }
    } else {
        Decision::Deny { retry_after: wait }
    }
}

/// The TAT that carries a bucket from quota `old` to quota `new` at `now` without letting a
/// burst through: the tokens available under `old` stay available (capped at the new burst),
/// and a debt beyond the old bucket (waiters' reservations) stays owed, both converted at the
/// new interval and rounded against the caller.
#[must_use]
pub fn rescale(tat: u64, now: u64, old: Gcra, new: Gcra) -> u64 {
    let debt = tat.saturating_sub(now);
    let old_cap = old.capacity_nanos();
    let new_cap = new.capacity_nanos();
    let new_debt = if debt <= old_cap {
        // Available time under the old quota, in the new quota's units, rounded down.
        let free = (old_cap - debt) as u128 * new.interval as u128 / old.interval as u128;
        let free = if free > new_cap as u128 {
            new_cap
        } else {
            free as u64
        };
        new_cap - free
    } else {
        // Reserved beyond the bucket: still owed, rounded up, and capped like any wait.
        let over = ((debt - old_cap) as u128 * new.interval as u128).div_ceil(old.interval as u128);
        let over = if over > WAIT_MAX as u128 {
            WAIT_MAX
        } else {
            over as u64
        };
        new_cap + over
    };
    if new_debt == 0 {
        tat.min(now)
    } else {
        now.saturating_add(new_debt)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn g(interval: u64, burst: u32) -> Gcra {
        Gcra::new(interval, burst).unwrap()
    }

    #[test]
    fn a_fresh_bucket_admits_exactly_the_burst_then_one_per_interval() {
        let g = super::Gcra::new(10, 3).unwrap();
        let mut tat = 0;
        let mut admitted = 0;
        for _ in 0..5 {
            if let Decision::Admit { tat: t, wait: 0 } = decide(tat, 100, 1, g, 0) {
                tat = t;
                admitted += 1;
            }
        }
        assert_eq!(admitted, 3);
        assert_eq!(tat, 130);
        assert_eq!(
            decide(tat, 100, 1, g, 0),
            Decision::Deny { retry_after: 10 }
        );
        assert_eq!(decide(tat, 109, 1, g, 0), Decision::Deny { retry_after: 1 });
        assert_eq!(
            decide(tat, 110, 1, g, 0),
            Decision::Admit { tat: 140, wait: 0 }
        );
        assert_eq!(g.remaining(140, 110), 0);
        assert_eq!(g.remaining(140, 140), 3);
        assert_eq!(g.remaining(140, 125), 1);
    }

    #[test]
    fn weighted_costs_and_costs_above_the_burst() {
        let g = super::Gcra::new(10, 4).unwrap();
        assert_eq!(decide(0, 50, 5, g, u64::MAX >> 7), Decision::TooCostly);
        assert_eq!(decide(0, 50, 4, g, 0), Decision::Admit { tat: 90, wait: 0 });
        // Two tokens come back after 20 ns.
        assert_eq!(decide(90, 50, 2, g, 0), Decision::Deny { retry_after: 20 });
        assert_eq!(
            decide(90, 70, 2, g, 0),
            Decision::Admit { tat: 110, wait: 0 }
        );
    }

    #[test]
    fn waiting_reserves_a_future_slot_within_max_wait() {
        let g = super::Gcra::new(10, 1).unwrap();
        assert_eq!(decide(0, 0, 1, g, 0), Decision::Admit { tat: 10, wait: 0 });
        assert_eq!(decide(10, 0, 1, g, 9), Decision::Deny { retry_after: 10 });
        assert_eq!(
            decide(10, 0, 1, g, 10),
            Decision::Admit { tat: 20, wait: 10 }
        );
        assert_eq!(
            decide(20, 0, 1, g, 25),
            Decision::Admit { tat: 30, wait: 20 }
        );
    }

    #[test]
    fn rescaling_keeps_available_tokens_and_owed_reservations() {
        let old = g(100, 10);
        // Full bucket, burst raised: still only the 10 tokens that were there.
        let bigger = g(10, 100);
        let tat = rescale(0, 1_000, old, bigger);
        assert_eq!(bigger.remaining(tat, 1_000), 10);
        // Empty bucket: stays empty.
        let tat = rescale(2_000, 1_000, old, bigger);
        assert_eq!(bigger.remaining(tat, 1_000), 0);
        // Full bucket, burst lowered: full at the new size.
        let smaller = g(100, 4);
        assert_eq!(rescale(0, 1_000, old, smaller), 0);
        // Half full (5 tokens), new interval halves: 5 tokens.
        let tat = rescale(1_500, 1_000, old, g(50, 10));
        assert_eq!(g(50, 10).remaining(tat, 1_000), 5);
        // Reserved 300 ns beyond the bucket under old = 3 tokens owed: 3 new intervals.
        assert_eq!(
            rescale(1_000 + 1_300, 1_000, old, bigger),
            1_000 + 1_000 + 30
        );
    }

    /// Regression (issue 9 §3): `Gcra::new` was public and panicked on zero or an oversized
    /// bucket; `decide` had a `debug_assert` on `now`. Both now accept every input.
    #[test]
    fn public_constructors_and_decisions_never_panic() {
        assert_eq!(Gcra::new(0, 1).unwrap_err().field(), "interval");
        assert_eq!(Gcra::new(1, 0).unwrap_err().field(), "burst");
        assert_eq!(Gcra::new(u64::MAX, 2).unwrap_err().field(), "burst");
        assert_eq!(Gcra::new(1 << 57, 1).unwrap().capacity_nanos(), 1 << 57);
        assert!(Gcra::new((1 << 57) + 1, 1).is_err());
        let big = g(1 << 56, 2);
        for (tat, now) in [(u64::MAX, u64::MAX), (0, u64::MAX), (u64::MAX, 0)] {
            let _ = decide(tat, now, 2, big, u64::MAX);
            let _ = rescale(tat, now, big, g(1, 1));
            let _ = big.remaining(tat, now);
        }
    }
}
