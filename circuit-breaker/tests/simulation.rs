//! proptest fault simulations in tokio's paused time, against the core mock backend.
//!
//! 1. Sequential calls with random outcomes, latencies, hangs (cancelled by a timeout) and
//!    panics: the breaker agrees, call by call, with a simple reference model of
//!    resilience4j's rules (a ring of the last N outcomes). In particular it never opens while
//!    the window's failure and slow rates are below their thresholds, and always opens when one
//!    is at or above it with the minimum calls in the window.
//! 2. Concurrent callers hammering a half-open breaker: never more probes out than permitted,
//!    and once everything settled no permit is leaked (cancellations and panics included).
#![cfg(not(loom))]

use palisade_circuit_breaker::{CircuitBreaker, CircuitOpen, State};
use palisade_core::clock::Clock;
use palisade_core::test_util::{MockBackend, Script, Step};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tower::{Layer, ServiceExt};

const WINDOW: usize = 8;
const MINIMUM: usize = 4;
const FAILURE_RATE: f64 = 50.0;
const SLOW_RATE: f64 = 75.0;
const SLOW: Duration = Duration::from_millis(300);
const WAIT: Duration = Duration::from_secs(2);
const PROBES: usize = 3;
const CANCEL_AFTER: Duration = Duration::from_secs(1);

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x5eed_c1c0),
        failure_persistence: None,
        ..Config::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Ok,
    Fail,
    Hang,
    Panic,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![4 => Just(Kind::Ok), 4 => Just(Kind::Fail), 1 => Just(Kind::Hang), 1 => Just(Kind::Panic)]
}

/// One call: how long the caller waits before it, what the backend does, and its latency.
fn call() -> impl Strategy<Value = (u64, Kind, u64)> {
    (
        prop_oneof![3 => Just(0u64), 1 => 0u64..3_000],
        kind(),
        prop_oneof![Just(0u64), Just(100), Just(500)],
    )
}

fn step(kind: Kind, latency: Duration) -> Step {
    match kind {
        Kind::Ok => Step::ok(),
        Kind::Fail => Step::fail(),
        Kind::Hang => Step::hang(),
        Kind::Panic => Step::panic(),
    }
    .after(latency)
}

/// resilience4j's rules, sequentially, in the plainest code.
struct Reference {
    state: State,
    ring: VecDeque<(bool, bool)>,
    probes: Vec<(bool, bool)>,
    open_until: Duration,
}

impl Reference {
    fn rates_exceeded(calls: &[(bool, bool)]) -> bool {
        let n = calls.len() as f64;
        let failures = calls.iter().filter(|c| c.0).count() as f64;
        let slow = calls.iter().filter(|c| c.1).count() as f64;
        failures * 100.0 >= FAILURE_RATE * n || slow * 100.0 >= SLOW_RATE * n
    }

    /// Whether a call starting at `now` is admitted.
    fn admit(&mut self, now: Duration) -> bool {
        match self.state {
            State::Closed | State::HalfOpen => true,
            State::Open if now >= self.open_until => {
                self.state = State::HalfOpen;
                self.probes.clear();
                true
            }
            _ => false,
        }
    }

    /// Records an admitted call's end at `now`; `None` = ignored (cancelled).
    fn record(&mut self, now: Duration, outcome: Option<(bool, bool)>) {
        let Some(outcome) = outcome else { return };
        match self.state {
            State::Closed => {
                if self.ring.len() == WINDOW {
                    self.ring.pop_front();
                }
                self.ring.push_back(outcome);
                let calls: Vec<_> = self.ring.iter().copied().collect();
                if calls.len() >= MINIMUM && Self::rates_exceeded(&calls) {
                    self.state = State::Open;
                    self.open_until = now + WAIT;
                }
            }
            State::HalfOpen => {
                self.probes.push(outcome);
                if self.probes.len() == PROBES {
                    if Self::rates_exceeded(&self.probes) {
                        self.state = State::Open;
                        self.open_until = now + WAIT;
                    } else {
                        self.state = State::Closed;
                        self.ring.clear();
                    }
                }
            }
            _ => unreachable!("a rejected call is not recorded"),
        }
    }
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn the_breaker_follows_the_reference_model(calls in prop::collection::vec(call(), 1..80)) {
        runtime().block_on(async move {
            let start = tokio::time::Instant::now();
            let steps: Vec<Step> = calls
                .iter()
                .map(|&(_, kind, latency)| step(kind, Duration::from_millis(latency)))
                .collect();
            let backend = MockBackend::new(Script::sequence(steps));
            let breaker = CircuitBreaker::builder()
                .clock(Clock::tokio())
                .count_window(WINDOW as u32)
                .minimum_calls(MINIMUM as u32)
                .failure_rate_threshold(FAILURE_RATE)
                .slow_call_duration(SLOW)
                .slow_call_rate_threshold(SLOW_RATE)
                .wait_duration_in_open(WAIT)
                .fixed_open_wait()
                .permitted_calls_in_half_open(PROBES as u32)
                .build()
                .unwrap();
            let svc = breaker.layer().layer(backend.clone());
            let mut reference = Reference {
                state: State::Closed,
                ring: VecDeque::new(),
                probes: Vec::new(),
                open_until: Duration::ZERO,
            };
            let mut admitted = 0;
            for (i, &(gap, kind, _)) in calls.iter().enumerate() {
                tokio::time::sleep(Duration::from_millis(gap)).await;
                let began = start.elapsed();
                let expect_admitted = reference.admit(began);
                let call = tokio::time::timeout(CANCEL_AFTER, svc.clone().oneshot(i));
                let joined = tokio::spawn(call).await;
                let ended = start.elapsed();
                let outcome = match joined {
                    Err(panic) => {
                        assert!(panic.is_panic());
                        Some((true, ended - began > SLOW))
                    }
                    Ok(Err(_elapsed)) => None, // cancelled
                    Ok(Ok(Err(e))) if e.downcast_ref::<CircuitOpen>().is_some() => {
                        assert!(!expect_admitted, "call {i}: rejected, the model admits ({kind:?})");
                        assert_eq!(backend.stats().calls, admitted);
                        continue;
                    }
                    Ok(Ok(result)) => Some((result.is_err(), ended - began > SLOW)),
                };
                assert!(expect_admitted, "call {i}: admitted, the model rejects");
                admitted += 1;
                reference.record(ended, outcome);
                assert_eq!(breaker.state(), reference.state, "after call {i} ({kind:?})");
                if reference.state == State::Closed {
                    let m = breaker.snapshot();
                    assert_eq!(m.calls as usize, reference.ring.len());
                    assert_eq!(m.failed_calls as usize, reference.ring.iter().filter(|c| c.0).count());
                    assert_eq!(m.slow_calls as usize, reference.ring.iter().filter(|c| c.1).count());
                }
            }
            assert_eq!(backend.stats().calls, admitted);
        });
    }
}

/// Decrements the probe count when a probe's call ends, even by panic or cancellation.
struct Out(Arc<AtomicUsize>);

impl Drop for Out {
    fn drop(&mut self) {
        // SeqCst: test bookkeeping shared by the simulated callers.
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn half_open_never_exceeds_its_probes_and_never_leaks_one(
        callers in prop::collection::vec((0u64..2_000, kind(), 0u64..1_500), 1..40),
    ) {
        runtime().block_on(async move {
            let backend = MockBackend::new(Script::sequence(
                callers.iter().map(|&(_, kind, latency)| step(kind, Duration::from_millis(latency))),
            ));
            let breaker = CircuitBreaker::builder()
                .clock(Clock::tokio())
                .count_window(4)
                .minimum_calls(2)
                .wait_duration_in_open(Duration::from_millis(500))
                .permitted_calls_in_half_open(PROBES as u32)
                .build()
                .unwrap();
            breaker.transition_to_half_open();
            let out = Arc::new(AtomicUsize::new(0));
            let peak = Arc::new(AtomicUsize::new(0));
            let tasks: Vec<_> = callers
                .iter()
                .enumerate()
                .map(|(i, &(delay, _, _))| {
                    let (breaker, backend, out, peak) =
                        (breaker.clone(), backend.clone(), out.clone(), peak.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                        let Ok(permit) = breaker.try_acquire() else { return };
                        let _out = permit.is_probe().then(|| {
                            // SeqCst: test bookkeeping.
                            let now = out.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            Out(out.clone())
                        });
                        // A hang is cancelled by the timeout: the permit is dropped unrecorded.
                        if let Ok(result) =
                            tokio::time::timeout(CANCEL_AFTER, backend.oneshot(i)).await
                        {
                            permit.record_result(&result);
                        }
                    })
                })
                .collect();
            for task in tasks {
                let _ = task.await; // panicking callers end here
            }
            // SeqCst: read after every task ended.
            assert!(peak.load(Ordering::SeqCst) <= PROBES, "more probes than permitted");
            assert_eq!(out.load(Ordering::SeqCst), 0);
            // No leak: a settled half-open breaker still has every unrecorded probe slot.
            if breaker.state() == State::HalfOpen {
                let recorded = breaker.snapshot().calls as usize;
                let mut held = Vec::new();
                while let Ok(permit) = breaker.try_acquire() {
                    held.push(permit);
                    assert!(held.len() <= PROBES);
                }
                assert_eq!(held.len() + recorded, PROBES, "a probe permit leaked");
            }
        });
    }
}
