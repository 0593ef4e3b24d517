//! loom models of the state machine: run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p palisade-circuit-breaker --lib -- loom`.

use super::*;
use palisade_core::clock::ManualClock;
use palisade_core::sync::atomic::{AtomicUsize, Ordering};
use palisade_core::sync::loom;
use std::time::Duration;

fn breaker(probes: u32, window: u32) -> CircuitBreaker {
    CircuitBreaker::builder()
        .clock(ManualClock::new().clock())
        .count_window(window)
        .minimum_calls(1)
        .failure_rate_threshold(50.0)
        .permitted_calls_in_half_open(probes)
        .build()
        .unwrap()
}

fn count_transitions(breaker: &CircuitBreaker, to: State) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let sink = count.clone();
    breaker.subscribe(move |e: &CircuitBreakerEvent| {
        if matches!(e, CircuitBreakerEvent::StateTransition { to: t, .. } if *t == to) {
            // Relaxed: read after join.
            sink.fetch_add(1, Ordering::Relaxed);
        }
    });
    count
}

/// (a) A half-open breaker never has more probes out than permitted, whatever the
/// interleaving of acquisitions and a cancelled probe.
#[test]
fn loom_half_open_admits_at_most_the_permitted_probes() {
    loom::model(|| {
        let breaker = breaker(1, 4);
        breaker.transition_to_half_open();
        let out = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let breaker = breaker.clone();
                let (out, peak) = (out.clone(), peak.clone());
                loom::thread::spawn(move || {
                    if let Ok(permit) = breaker.try_acquire() {
                        // SeqCst: the test's own bookkeeping of probes out, checked across
                        // threads.
                        let now = out.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        out.fetch_sub(1, Ordering::SeqCst);
                        drop(permit); // cancelled: the slot is given back
                    }
                })
            })
            .collect();
        let mine = breaker.try_acquire();
        if mine.is_ok() {
            // SeqCst: as above.
            let now = out.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
        }
        for t in threads {
            t.join().unwrap();
        }
        assert!(
            peak.load(Ordering::SeqCst) <= 1,
            "more probes than permitted"
        );
        // Everything given back or still held by `mine`: exactly that many slots are taken.
        let held = u32::from(mine.is_ok());
        assert_eq!(breaker.shared().load().probes(), held);
        drop(mine);
        assert_eq!(breaker.shared().load().probes(), 0, "a probe permit leaked");
    });
}

/// (b) Two failures racing to trip the breaker produce exactly one Closed→Open transition.
#[test]
fn loom_concurrent_trips_emit_one_transition() {
    loom::model(|| {
        let breaker = breaker(1, 2);
        let opened = count_transitions(&breaker, State::Open);
        let permits: Vec<_> = (0..2)
            .map(|_| breaker.try_acquire_owned().unwrap())
            .collect();
        let threads: Vec<_> = permits
            .into_iter()
            .map(|permit| loom::thread::spawn(move || permit.failure()))
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(breaker.state(), State::Open);
        // Relaxed: after join.
        assert_eq!(opened.load(Ordering::Relaxed), 1);
    });
}

/// (c) A failure admitted in an earlier generation, racing with a transition and a call of
/// the new generation, never changes the new generation's state or counts.
#[test]
fn loom_a_stale_result_never_changes_the_current_state() {
    loom::model(|| {
        let breaker = breaker(1, 2);
        let stale = breaker.try_acquire_owned().unwrap();
        let late = loom::thread::spawn(move || stale.failure());
        let other = breaker.clone();
        let fresh = loom::thread::spawn(move || {
            other.transition_to_closed();
            other.try_acquire().unwrap().success();
        });
        late.join().unwrap();
        fresh.join().unwrap();
        // Whether the stale failure landed before the transition (tripping the old
        // generation, which the manual close then replaced) or after it (dropped as stale),
        // the current generation holds exactly the one success.
        assert_eq!(breaker.state(), State::Closed);
        let m = breaker.snapshot();
        assert_eq!((m.calls, m.failed_calls), (1, 0), "{m:?}");
    });
}

/// (b') Threads that all find the open wait over race to half-open it: one transition event,
/// and exactly the permitted number of probes admitted.
#[test]
fn loom_racing_callers_half_open_once() {
    loom::model(|| {
        let clock = ManualClock::new();
        let breaker = CircuitBreaker::builder()
            .clock(clock.clock())
            .permitted_calls_in_half_open(1)
            .build()
            .unwrap();
        breaker.transition_to_open();
        clock.advance(Duration::from_secs(60));
        let half_opened = count_transitions(&breaker, State::HalfOpen);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let breaker = breaker.clone();
                loom::thread::spawn(move || breaker.try_acquire_owned().ok())
            })
            .collect();
        let permits: Vec<_> = threads
            .into_iter()
            .filter_map(|t| t.join().unwrap())
            .collect();
        assert_eq!(permits.len(), 1, "one probe permitted");
        assert!(permits[0].is_probe());
        // Relaxed: after join.
        assert_eq!(half_opened.load(Ordering::Relaxed), 1);
        assert_eq!(breaker.state(), State::HalfOpen);
    });
}

/// (d) Two failures racing to trip a breaker with a jittered backoff: the CAS loop's closure
/// is pure, so the winner's wait is the one a single thread computes for that generation (the
/// old loop drew a random number on every attempt, lost ones included), and the wait is
/// published for the Open generation.
#[test]
fn loom_racing_trips_draw_one_wait_and_publish_it() {
    loom::model(|| {
        let clock = ManualClock::new();
        let breaker = CircuitBreaker::builder()
            .clock(clock.clock())
            .count_window(2)
            .minimum_calls(1)
            .wait_duration_in_open(Duration::from_secs(10))
            .open_backoff(2.0, Duration::from_secs(60))
            .open_backoff_jitter(0.5)
            .jitter_seed(99)
            .build()
            .unwrap();
        let permits: Vec<_> = (0..2)
            .map(|_| breaker.try_acquire_owned().unwrap())
            .collect();
        let threads: Vec<_> = permits
            .into_iter()
            .map(|permit| loom::thread::spawn(move || permit.failure()))
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let word = breaker.shared().load();
        assert_eq!(word.state(), State::Open);
        let settings = breaker.settings();
        let expected = crate::backoff::open_wait(
            settings.wait_in_open,
            settings.backoff.as_ref(),
            0,
            settings.seed,
            word.generation(),
        );
        // The open-until time is kept in whole milliseconds, rounded up (the clock is at 0).
        let expected = Duration::from_millis(expected.as_nanos().div_ceil(1_000_000) as u64);
        let open = breaker.try_acquire().unwrap_err();
        assert_eq!(open.retry_after(), Some(expected));
    });
}

/// (e) A trip racing a manual transition: whichever generation is current after both, its
/// time is the one published (a descheduled winner of an older generation never overwrites a
/// newer one's), so an open breaker always knows its wait and a half-open one its age.
#[test]
fn loom_the_current_generation_has_its_time_published() {
    loom::model(|| {
        let clock = ManualClock::new();
        let breaker = CircuitBreaker::builder()
            .clock(clock.clock())
            .count_window(2)
            .minimum_calls(1)
            .wait_duration_in_open(Duration::from_secs(10))
            .fixed_open_wait()
            .build()
            .unwrap();
        let permit = breaker.try_acquire_owned().unwrap();
        let tripper = loom::thread::spawn(move || permit.failure());
        let other = breaker.clone();
        let manual = loom::thread::spawn(move || other.transition_to_half_open());
        tripper.join().unwrap();
        manual.join().unwrap();
        let word = breaker.shared().load();
        match word.state() {
            State::Open => {
                let open = breaker.try_acquire().unwrap_err();
                assert_eq!(open.retry_after(), Some(Duration::from_secs(10)));
            }
            State::HalfOpen => assert!(breaker.try_acquire().unwrap().is_probe()),
            other => panic!("unexpected {other:?}"),
        }
    });
}

/// A waker that raises a flag.
struct Flag(std::sync::atomic::AtomicBool);

impl futures::task::ArcWake for Flag {
    fn wake_by_ref(arc_self: &std::sync::Arc<Self>) {
        // SeqCst: test bookkeeping, read after join.
        arc_self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// (f) Gate mode: a gated caller that finds every probe taken registers its waker and looks
/// again, while another thread gives the probe back. Whatever the interleaving, the caller
/// either got the probe, saw the change when it looked again, or was woken: no lost wake-up,
/// so a half-open gate cannot hang.
#[test]
fn loom_a_gated_waiter_is_never_forgotten() {
    loom::model(|| {
        let breaker = breaker(1, 4);
        breaker.transition_to_half_open();
        let probe = breaker.try_acquire_owned().unwrap();
        let returner = loom::thread::spawn(move || drop(probe));
        let flag = std::sync::Arc::new(Flag(std::sync::atomic::AtomicBool::new(false)));
        let waker = futures::task::waker(flag.clone());
        // The gated caller's steps, as `CircuitBreakerService::poll_gate` takes them.
        let shared = breaker.shared();
        let seen = shared.load();
        let progressed = match breaker.acquire_quietly() {
            Ok(_permit) => true,
            Err(_) => shared.register_waiter(&waker) != seen,
        };
        returner.join().unwrap();
        // SeqCst: as above.
        let woken = flag.0.load(std::sync::atomic::Ordering::SeqCst);
        assert!(progressed || woken, "lost wake-up");
    });
}
