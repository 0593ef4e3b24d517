//! The concurrency limiter itself: one atomic word, and a FIFO queue for the waiting path.
//!
//! No tower types here, so it is tested and model-checked on its own.
//!
//! # State word
//!
//! ```text
//!  63        62 ............ 32   31 ............. 0
//! [WAITERS] [ limit (31 bits)  ] [ in flight (32)   ]
//! ```
//!
//! - Acquiring (not full, nobody waiting) is one CAS that adds one to the in-flight count if it
//!   is below the limit and the `WAITERS` bit is clear.
//! - Releasing is one `fetch_sub`; only when the bit was set does it take the queue lock and
//!   hand slots to waiters.
//! - Changing the limit rewrites the limit bits with a CAS, leaving the in-flight count alone,
//!   so calls in flight are neither lost nor counted twice; a lower limit simply refuses new
//!   calls until enough in-flight calls have finished.
//!
//! # Waiting path
//!
//! When full, a caller in wait mode takes the queue lock, sets `WAITERS` (only while the word
//! still says full, so the CAS fails if a slot was freed meanwhile) and enqueues itself. While
//! the bit is set, new callers do not barge past the queue: they queue too (FIFO). Whoever frees
//! a slot or raises the limit while the bit is set *drains*: under the lock, it moves slots to
//! the queue's head (the in-flight count is incremented for the waiter, as if it had acquired)
//! and wakes it. The bit is cleared, under the lock, when the queue empties.
//!
//! Invariant, whenever the queue lock is free: the queue is non-empty if and only if `WAITERS`
//! is set, and if it is set then `in_flight >= limit`. So no waiter sleeps next to a free slot.

use crossbeam_utils::CachePadded;
use palisade_core::sync::Arc;
use palisade_core::sync::Mutex;
use palisade_core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::collections::VecDeque;
use std::fmt;
use std::task::{Context, Poll, Waker};

const IN_FLIGHT_BITS: u32 = 32;
const IN_FLIGHT_MASK: u64 = (1 << IN_FLIGHT_BITS) - 1;
const LIMIT_SHIFT: u32 = IN_FLIGHT_BITS;
const LIMIT_BITS: u32 = 31;
const LIMIT_MASK: u64 = ((1 << LIMIT_BITS) - 1) << LIMIT_SHIFT;
const WAITERS: u64 = 1 << (LIMIT_SHIFT + LIMIT_BITS);

/// The largest limit a bulkhead can hold (2³¹ − 1); larger values are clamped to it.
pub const MAX_LIMIT: usize = (1 << LIMIT_BITS) - 1;

/// A decoded state word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Snapshot(u64);

impl Snapshot {
    #[inline]
    fn in_flight(self) -> u64 {
        self.0 & IN_FLIGHT_MASK
    }

    #[inline]
    fn limit(self) -> u64 {
        (self.0 & LIMIT_MASK) >> LIMIT_SHIFT
    }

    #[inline]
    fn has_waiters(self) -> bool {
        self.0 & WAITERS != 0
    }

    /// A slot is free and nobody queues before us.
    #[inline]
    fn admits(self) -> bool {
        !self.has_waiters() && self.in_flight() < self.limit()
    }

    #[inline]
    fn with_limit(self, limit: u64) -> Snapshot {
        Snapshot((self.0 & !LIMIT_MASK) | (limit << LIMIT_SHIFT))
    }
}

fn encode_limit(limit: usize) -> u64 {
    limit.min(MAX_LIMIT) as u64
}

/// One queued caller.
struct Waiter {
    /// Set (under the queue lock) when a slot has been handed to this waiter.
    granted: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// The result of [`Limiter::acquire_or_wait`].
pub(crate) enum Acquire {
    /// A slot was free: the caller holds it now. Carries the in-flight count including it.
    Acquired(u32),
    /// The caller is queued; poll the handle until it is granted, or cancel it.
    Queued(WaitHandle),
    /// Full, and the queue already holds `max_waiters` callers.
    QueueFull,
}

/// A queued caller's ticket. Must be given back through [`Limiter::cancel`] unless
/// [`WaitHandle::poll_granted`] returned ready (then the caller holds a slot).
pub(crate) struct WaitHandle {
    waiter: Arc<Waiter>,
}

impl fmt::Debug for WaitHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitHandle")
            // Acquire: as in `poll_granted`.
            .field("granted", &self.waiter.granted.load(Ordering::Acquire))
            .finish()
    }
}

impl WaitHandle {
    /// Ready once a slot has been handed to this caller; otherwise registers `cx`'s waker,
    /// which the releasing thread wakes.
    pub(crate) fn poll_granted(&self, cx: &mut Context<'_>) -> Poll<()> {
        // Acquire: pairs with the Release store in `drain`, so the slot handed over (and what
        // its previous holder did) is visible.
        if self.waiter.granted.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        {
            let mut waker = self.waiter.waker.lock();
            match &mut *waker {
                Some(old) if old.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
        }
        // Acquire: as above. Checked again after registering: `drain` sets the flag before it
        // takes the waker under the waker lock, so either it sees our waker or we see the flag.
        if self.waiter.granted.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// A counting semaphore with a changeable limit. See the [module docs](self).
pub(crate) struct Limiter {
    state: CachePadded<AtomicU64>,
    queue: Mutex<VecDeque<Arc<Waiter>>>,
    /// Length of the queue, kept beside it for lock-free reads (statistics).
    waiting: AtomicUsize,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("in_flight", &self.in_flight())
            .field("limit", &self.limit())
            .field("waiting", &self.waiting())
            .finish()
    }
}

impl Limiter {
    pub(crate) fn new(limit: usize) -> Limiter {
        Limiter {
            state: CachePadded::new(AtomicU64::new(encode_limit(limit) << LIMIT_SHIFT)),
            queue: Mutex::new(VecDeque::new()),
            waiting: AtomicUsize::new(0),
        }
    }

    #[inline]
    fn load(&self) -> Snapshot {
        // Relaxed: a snapshot to start a CAS from, or a statistic; the CAS that acts on it
        // carries the ordering.
        Snapshot(self.state.load(Ordering::Relaxed))
    }

    /// Calls holding a slot now.
    pub(crate) fn in_flight(&self) -> usize {
        self.load().in_flight() as usize
    }

    /// The current limit.
    pub(crate) fn limit(&self) -> usize {
        self.load().limit() as usize
    }

    /// Callers queued now.
    pub(crate) fn waiting(&self) -> usize {
        // Relaxed: a statistic.
        self.waiting.load(Ordering::Relaxed)
    }

    /// Takes a slot if one is free and nobody is queued. Returns the in-flight count including
    /// the new call, or `None` when full.
    #[inline]
    pub(crate) fn try_acquire(&self) -> Option<u32> {
        let mut current = self.load();
        loop {
            if !current.admits() {
                return None;
            }
            // Acquire on success: pairs with the Release of `release`, so the new holder sees
            // what the previous holder of a slot did (semaphore semantics). Relaxed on failure:
            // we only retry from the fresh value.
            match self.state.compare_exchange_weak(
                current.0,
                current.0 + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some((current.in_flight() + 1) as u32),
                Err(actual) => current = Snapshot(actual),
            }
        }
    }

    /// Takes a slot, or queues the caller (at most `max_waiters` queued callers).
    pub(crate) fn acquire_or_wait(&self, max_waiters: usize) -> Acquire {
        if let Some(in_flight) = self.try_acquire() {
            return Acquire::Acquired(in_flight);
        }
        let mut queue = self.queue.lock();
        // Acquire: we may take a slot below; pairs with the Release of `release`.
        let mut current = Snapshot(self.state.load(Ordering::Acquire));
        loop {
            if current.admits() {
                // Acquire/Relaxed: as in `try_acquire`.
                match self.state.compare_exchange(
                    current.0,
                    current.0 + 1,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Acquire::Acquired((current.in_flight() + 1) as u32),
                    Err(actual) => {
                        current = Snapshot(actual);
                        continue;
                    }
                }
            }
            if queue.len() >= max_waiters {
                return Acquire::QueueFull;
            }
            if current.has_waiters() {
                break;
            }
            // Relaxed: the bit is published to releasers by the RMW itself (they read it from
            // their own RMW on the same word); the queue it announces is guarded by the lock we
            // hold, which the releaser takes before looking at it. The CAS fails if a slot was
            // freed since we looked, and we retry (and take it).
            match self.state.compare_exchange(
                current.0,
                current.0 | WAITERS,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = Snapshot(actual),
            }
        }
        let waiter = Arc::new(Waiter {
            granted: AtomicBool::new(false),
            waker: Mutex::new(None),
        });
        queue.push_back(Arc::clone(&waiter));
        // Relaxed: a statistic, written under the lock.
        self.waiting.store(queue.len(), Ordering::Relaxed);
        Acquire::Queued(WaitHandle { waiter })
    }

    /// Gives a slot back. Hands it to the first waiter if anyone is queued.
    #[inline]
    pub(crate) fn release(&self) {
        // Release: pairs with the Acquire of the next acquirer (semaphore semantics). Acquire:
        // if we drain, we act on the queue the WAITERS bit announced.
        let previous = Snapshot(self.state.fetch_sub(1, Ordering::AcqRel));
        debug_assert!(
            previous.in_flight() > 0,
            "released more slots than acquired"
        );
        if previous.has_waiters() {
            self.drain_locked();
        }
    }

    /// Sets the limit for new calls; calls in flight are unaffected. Returns the old limit.
    pub(crate) fn set_limit(&self, limit: usize) -> usize {
        let limit = encode_limit(limit);
        // AcqRel: ordered with the acquires and releases on the same word; if waiters are
        // announced, we drain the queue they are in.
        let previous = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |s| {
                Some(Snapshot(s).with_limit(limit).0)
            })
            .map_or_else(Snapshot, Snapshot);
        if previous.has_waiters() && limit > previous.limit() {
            self.drain_locked();
        }
        previous.limit() as usize
    }

    /// Gives up a queued ticket. If the slot was handed over meanwhile, it is released (and
    /// passed on). Returns whether it had been granted.
    pub(crate) fn cancel(&self, handle: WaitHandle) -> bool {
        let mut queue = self.queue.lock();
        // Acquire: pairs with the Release in `drain`; the flag only changes under the lock.
        if handle.waiter.granted.load(Ordering::Acquire) {
            drop(queue);
            self.release();
            return true;
        }
        if let Some(at) = queue.iter().position(|w| Arc::ptr_eq(w, &handle.waiter)) {
            let _ = queue.remove(at);
        }
        // Relaxed: statistic, under the lock.
        self.waiting.store(queue.len(), Ordering::Relaxed);
        if queue.is_empty() {
            // Relaxed: the bit is only set and cleared under the lock we hold.
            self.state.fetch_and(!WAITERS, Ordering::Relaxed);
        }
        false
    }

    #[cold]
    fn drain_locked(&self) {
        let mut queue = self.queue.lock();
        self.drain(&mut queue);
    }

    /// Moves free slots to the head of the queue, in order. Called with the lock held.
    fn drain(&self, queue: &mut VecDeque<Arc<Waiter>>) {
        loop {
            if queue.is_empty() {
                // Relaxed: the bit is only set and cleared under the queue lock, which we hold.
                self.state.fetch_and(!WAITERS, Ordering::Relaxed);
                break;
            }
            // Acquire: we take a slot for the waiter; pairs with the Release of `release`.
            let current = Snapshot(self.state.load(Ordering::Acquire));
            if current.in_flight() >= current.limit() {
                break;
            }
            // AcqRel: takes the slot on the waiter's behalf (Acquire as in `try_acquire`),
            // and publishes it before the `granted` flag below.
            if self
                .state
                .compare_exchange(
                    current.0,
                    current.0 + 1,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                continue;
            }
            let waiter = queue.pop_front().expect("queue checked non-empty");
            // Release: pairs with the Acquire loads in `poll_granted` and `cancel`.
            waiter.granted.store(true, Ordering::Release);
            let waker = waiter.waker.lock().take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
        // Relaxed: statistic, under the lock.
        self.waiting.store(queue.len(), Ordering::Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::task::Waker;

    fn granted(handle: &WaitHandle) -> bool {
        handle
            .poll_granted(&mut Context::from_waker(Waker::noop()))
            .is_ready()
    }

    #[test]
    fn bit_layout_is_disjoint() {
        assert_eq!(IN_FLIGHT_MASK & LIMIT_MASK, 0);
        assert_eq!(LIMIT_MASK & WAITERS, 0);
        assert_eq!(IN_FLIGHT_MASK | LIMIT_MASK | WAITERS, u64::MAX);
        assert_eq!(
            Snapshot(0).with_limit(MAX_LIMIT as u64).limit() as usize,
            MAX_LIMIT
        );
    }

    #[test]
    fn acquires_up_to_the_limit_and_releases() {
        let limiter = Limiter::new(2);
        assert_eq!(limiter.try_acquire(), Some(1));
        assert_eq!(limiter.try_acquire(), Some(2));
        assert_eq!(limiter.try_acquire(), None);
        limiter.release();
        assert_eq!(limiter.in_flight(), 1);
        assert_eq!(limiter.try_acquire(), Some(2));
    }

    #[test]
    fn lowering_the_limit_keeps_in_flight_calls_and_refuses_new_ones() {
        let limiter = Limiter::new(4);
        for _ in 0..4 {
            limiter.try_acquire().unwrap();
        }
        assert_eq!(limiter.set_limit(2), 4);
        assert_eq!(limiter.in_flight(), 4);
        assert_eq!(limiter.try_acquire(), None);
        limiter.release();
        limiter.release();
        assert_eq!(limiter.try_acquire(), None, "2 in flight, limit 2");
        limiter.release();
        assert_eq!(limiter.try_acquire(), Some(2));
        assert_eq!(limiter.set_limit(usize::MAX), 2);
        assert_eq!(limiter.limit(), MAX_LIMIT);
    }

    #[test]
    fn waiters_are_served_in_fifo_order_and_newcomers_do_not_barge() {
        let limiter = Limiter::new(1);
        limiter.try_acquire().unwrap();
        let Acquire::Queued(first) = limiter.acquire_or_wait(8) else {
            panic!("full: must queue")
        };
        let Acquire::Queued(second) = limiter.acquire_or_wait(8) else {
            panic!("full: must queue")
        };
        assert_eq!(limiter.waiting(), 2);
        limiter.release();
        assert!(granted(&first));
        assert!(!granted(&second));
        assert_eq!(limiter.in_flight(), 1, "the slot moved to the first waiter");
        assert!(limiter.try_acquire().is_none(), "no barging past the queue");
        limiter.release();
        assert!(granted(&second));
        limiter.release();
        assert_eq!(limiter.in_flight(), 0);
        assert_eq!(limiter.waiting(), 0);
        assert_eq!(limiter.try_acquire(), Some(1), "bit cleared with the queue");
    }

    #[test]
    fn waiter_bound_and_cancellation() {
        let limiter = Limiter::new(1);
        limiter.try_acquire().unwrap();
        let Acquire::Queued(first) = limiter.acquire_or_wait(1) else {
            panic!()
        };
        assert!(matches!(limiter.acquire_or_wait(1), Acquire::QueueFull));
        assert!(!limiter.cancel(first));
        assert_eq!(limiter.waiting(), 0);
        limiter.release();
        assert_eq!(limiter.try_acquire(), Some(1));
        // A ticket granted and then cancelled passes its slot on.
        let Acquire::Queued(a) = limiter.acquire_or_wait(4) else {
            panic!()
        };
        let Acquire::Queued(b) = limiter.acquire_or_wait(4) else {
            panic!()
        };
        limiter.release();
        assert!(limiter.cancel(a), "a had been granted");
        assert!(granted(&b));
        limiter.release();
        assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));
    }

    #[test]
    fn raising_the_limit_wakes_waiters() {
        let limiter = Limiter::new(1);
        limiter.try_acquire().unwrap();
        let handles: Vec<_> = (0..3)
            .map(|_| match limiter.acquire_or_wait(8) {
                Acquire::Queued(h) => h,
                _ => panic!("must queue"),
            })
            .collect();
        limiter.set_limit(3);
        let states: Vec<bool> = handles.iter().map(granted).collect();
        assert_eq!(states, [true, true, false]);
        assert_eq!(limiter.in_flight(), 3);
        for h in handles {
            limiter.cancel(h);
        }
        assert_eq!(limiter.in_flight(), 1);
        limiter.release();
        assert_eq!(limiter.in_flight(), 0);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::future::block_on;
    use loom::thread;
    use std::future::poll_fn;

    /// Never more holders than the limit they acquired under; every slot comes back.
    #[test]
    fn loom_in_flight_never_exceeds_limit_with_set_limit() {
        loom::model(|| {
            let limiter = Arc::new(Limiter::new(2));
            let holders = Arc::new(AtomicUsize::new(0));
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let limiter = limiter.clone();
                    let holders = holders.clone();
                    thread::spawn(move || {
                        if let Some(n) = limiter.try_acquire() {
                            // SeqCst: test bookkeeping only.
                            let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                            assert!(now <= 2 && n <= 2);
                            holders.fetch_sub(1, Ordering::SeqCst);
                            limiter.release();
                        }
                    })
                })
                .collect();
            limiter.set_limit(1);
            if limiter.try_acquire().is_some() {
                // Acquired under limit 1: nobody else may have acquired after set_limit, and
                // the count we saw admitted us, so at most the others from before remain.
                limiter.release();
            }
            for w in workers {
                w.join().unwrap();
            }
            assert_eq!(limiter.in_flight(), 0);
            assert_eq!(limiter.limit(), 1);
        });
    }

    /// Limit 1: the two threads never hold a slot at the same time.
    #[test]
    fn loom_mutual_exclusion_at_limit_one() {
        loom::model(|| {
            let limiter = Arc::new(Limiter::new(1));
            let holders = Arc::new(AtomicUsize::new(0));
            let worker = {
                let limiter = limiter.clone();
                let holders = holders.clone();
                thread::spawn(move || {
                    if limiter.try_acquire().is_some() {
                        // SeqCst: test bookkeeping only.
                        assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0);
                        holders.fetch_sub(1, Ordering::SeqCst);
                        limiter.release();
                    }
                })
            };
            if limiter.try_acquire().is_some() {
                // SeqCst: test bookkeeping only.
                assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0);
                holders.fetch_sub(1, Ordering::SeqCst);
                limiter.release();
            }
            worker.join().unwrap();
            assert_eq!(limiter.in_flight(), 0);
        });
    }

    /// A queued caller is woken by a release on another thread (no lost wake-up), and the
    /// slot moves to it.
    #[test]
    fn loom_release_wakes_the_waiter() {
        loom::model(|| {
            let limiter = Arc::new(Limiter::new(1));
            assert!(limiter.try_acquire().is_some());
            let releaser = {
                let limiter = limiter.clone();
                thread::spawn(move || limiter.release())
            };
            match limiter.acquire_or_wait(4) {
                Acquire::Acquired(_) => {}
                Acquire::Queued(handle) => block_on(poll_fn(|cx| handle.poll_granted(cx))),
                Acquire::QueueFull => panic!("unbounded enough"),
            }
            releaser.join().unwrap();
            assert_eq!(limiter.in_flight(), 1);
            limiter.release();
            assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));
        });
    }

    /// Raising the limit wakes a queued caller.
    #[test]
    fn loom_set_limit_wakes_the_waiter() {
        loom::model(|| {
            let limiter = Arc::new(Limiter::new(1));
            assert!(limiter.try_acquire().is_some());
            let raiser = {
                let limiter = limiter.clone();
                thread::spawn(move || {
                    limiter.set_limit(2);
                })
            };
            match limiter.acquire_or_wait(4) {
                Acquire::Acquired(_) => {}
                Acquire::Queued(handle) => block_on(poll_fn(|cx| handle.poll_granted(cx))),
                Acquire::QueueFull => panic!("unbounded enough"),
            }
            raiser.join().unwrap();
            assert_eq!(limiter.in_flight(), 2);
            limiter.release();
            limiter.release();
            assert_eq!(limiter.in_flight(), 0);
        });
    }

    /// A waiter cancelled while the slot is being handed to it loses nothing: the slot is
    /// either never handed over or passed back, and the queue ends empty.
    #[test]
    fn loom_cancel_races_release_without_losing_the_slot() {
        loom::model(|| {
            let limiter = Arc::new(Limiter::new(1));
            assert!(limiter.try_acquire().is_some());
            let Acquire::Queued(handle) = limiter.acquire_or_wait(4) else {
                panic!("full: must queue")
            };
            let releaser = {
                let limiter = limiter.clone();
                thread::spawn(move || limiter.release())
            };
            limiter.cancel(handle);
            releaser.join().unwrap();
            assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));
            assert_eq!(limiter.try_acquire(), Some(1), "WAITERS bit cleared");
        });
    }
    /// A releaser, a newcomer and a queued waiter race at limit 1: never two holders, the
    /// waiter is always served (no lost wake-up), and everything comes back.
    #[test]
    fn loom_newcomer_and_waiter_never_hold_together() {
        loom::model(|| {
            let limiter = Arc::new(Limiter::new(1));
            let holders = Arc::new(AtomicUsize::new(1));
            assert!(limiter.try_acquire().is_some());
            let Acquire::Queued(handle) = limiter.acquire_or_wait(4) else {
                panic!("full: must queue")
            };
            let releaser = {
                let (limiter, holders) = (limiter.clone(), holders.clone());
                thread::spawn(move || {
                    // SeqCst: test bookkeeping only.
                    holders.fetch_sub(1, Ordering::SeqCst);
                    limiter.release();
                })
            };
            let newcomer = {
                let (limiter, holders) = (limiter.clone(), holders.clone());
                thread::spawn(move || {
                    if limiter.try_acquire().is_some() {
                        // SeqCst: test bookkeeping only.
                        assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0);
                        holders.fetch_sub(1, Ordering::SeqCst);
                        limiter.release();
                    }
                })
            };
            block_on(poll_fn(|cx| handle.poll_granted(cx)));
            // SeqCst: test bookkeeping only.
            assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0);
            holders.fetch_sub(1, Ordering::SeqCst);
            limiter.release();
            releaser.join().unwrap();
            newcomer.join().unwrap();
            assert_eq!((limiter.in_flight(), limiter.waiting()), (0, 0));
        });
    }
}
