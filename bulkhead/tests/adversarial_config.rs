//! Issue 9 §7: adversarial configuration. Every builder of the crate, fed extreme values
//! (0, 1, the largest limit, `usize::MAX`, NaN, ±∞, `Duration::ZERO`, `Duration::MAX`, caps
//! below floors), either refuses with a `ConfigError` naming a field the caller set, or
//! builds a bulkhead that serves 10⁴ calls (with held slots, rejections, waits, extreme clock
//! steps) without a panic, without exceeding its limit, and gives every slot back.

#![cfg(not(loom))]

use palisade_bulkhead::adaptive::{AdaptiveConfig, Aimd, Gradient2, LimitAlgorithm, Vegas};
use palisade_bulkhead::{Bulkhead, BulkheadBuilder, MAX_LIMIT};
use palisade_core::ConfigError;
use palisade_core::clock::ManualClock;
use palisade_core::test_util::{Echo, call_now};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tower::{Layer, Service};

const CALLS: usize = 10_000;

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0xAD7E_5A41),
        failure_persistence: None,
        ..Config::default()
    }
}

// Each field is extreme one time in four and ordinary otherwise, so that most drawn
// configurations combine a few extremes and still build (and run).

fn extreme_usize() -> impl Strategy<Value = usize> {
    prop_oneof![
        9 => 1usize..64,
        1 => Just(0usize),
        1 => Just(1),
        1 => Just(MAX_LIMIT),
        1 => Just(MAX_LIMIT + 1),
        1 => Just(usize::MAX),
    ]
}

fn extreme_u64() -> impl Strategy<Value = u64> {
    prop_oneof![6 => 1u64..32, 1 => Just(0u64), 1 => Just(u64::MAX)]
}

/// A float field: mostly inside its valid range `ordinary`, sometimes any extreme.
fn extreme_f64(ordinary: std::ops::Range<f64>) -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => ordinary,
        1 => prop_oneof![
            Just(0.0f64),
            Just(-0.0),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::MIN_POSITIVE),
            Just(f64::MAX),
            Just(-1.0),
            Just(1.0),
        ],
    ]
}

fn extreme_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        6 => (1u64..10_000).prop_map(Duration::from_micros),
        1 => Just(Duration::ZERO),
        1 => Just(Duration::from_nanos(1)),
        1 => Just(Duration::from_secs(u64::MAX)),
        1 => Just(Duration::MAX),
    ]
}

/// The fields a `ConfigError` may name: only ones the caller can set.
const FIELDS: &[&str] = &[
    "max_concurrent_calls",
    "max_wait",
    "min_samples",
    "max_window",
    "initial_limit",
    "min_limit",
    "max_limit",
    "backoff_ratio",
    "timeout",
    "smoothing",
    "rtt_tolerance",
    "long_window",
    "probe_multiplier",
];

fn named_a_set_field(error: &ConfigError) -> bool {
    FIELDS.contains(&error.field())
}

/// Drives `CALLS` calls through `bulkhead` over an instant inner service, keeping up to
/// `hold` completed-but-unpolled calls (each holding its slot) so the bulkhead is often full,
/// stepping the manual clock by `step` per call; a caller that has to wait gives up.
fn drive(bulkhead: &Bulkhead, clock: &ManualClock, hold: usize, step: Duration) {
    let mut svc = bulkhead.layer().layer(Echo);
    let mut held = VecDeque::new();
    let mut cx = Context::from_waker(Waker::noop());
    for i in 0..CALLS {
        clock.advance(step);
        match Service::<usize>::poll_ready(&mut svc, &mut cx) {
            Poll::Ready(Ok(())) => {
                let future = svc.call(i);
                if held.len() < hold {
                    held.push_back(future);
                } else {
                    drop(held.pop_front());
                    // Completed: the adaptive algorithm gets a sample.
                    let _ = std::pin::pin!(future).as_mut().poll(&mut cx);
                }
            }
            Poll::Ready(Err(e)) => panic!("poll_ready failed: {e}"),
            Poll::Pending => {
                // Queued: give up (the waiter leaves the queue), free a slot.
                svc = bulkhead.layer().layer(Echo);
                drop(held.pop_front());
            }
        }
        assert!(bulkhead.in_flight() <= bulkhead.limit().max(hold + 1));
        if i % 1000 == 999 {
            // An occasional completion through the normal path too.
            let _ = call_now(&mut svc, i);
        }
    }
    drop(held);
    drop(svc);
    assert_eq!(bulkhead.in_flight(), 0, "a slot was lost");
    assert_eq!(bulkhead.waiting(), 0, "a waiter was left behind");
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

#[derive(Debug, Clone)]
enum Algorithm {
    Fixed,
    Aimd {
        limits: (usize, usize, usize),
        backoff_ratio: f64,
        timeout: Duration,
    },
    Gradient2 {
        limits: (usize, usize, usize),
        smoothing: f64,
        rtt_tolerance: f64,
        long_window: usize,
        queue_size: usize,
        probe: bool,
        probe_multiplier: usize,
    },
    Vegas {
        limits: (usize, usize, usize),
        smoothing: f64,
        probe: bool,
        probe_multiplier: usize,
        gentle: bool,
        seed: u64,
    },
}

/// `(initial, min, max)`: as drawn (often out of order), or sorted into a valid triple so
/// that the extreme values also reach the running bulkhead.
fn limits() -> impl Strategy<Value = (usize, usize, usize)> {
    (
        extreme_usize(),
        extreme_usize(),
        extreme_usize(),
        any::<bool>(),
    )
        .prop_map(|(a, b, c, sort)| {
            if sort {
                let mut v = [a, b, c];
                v.sort_unstable();
                (v[1], v[0], v[2])
            } else {
                (a, b, c)
            }
        })
}

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop_oneof![
        Just(Algorithm::Fixed),
        (limits(), extreme_f64(0.5..1.0), extreme_duration()).prop_map(
            |(limits, backoff_ratio, timeout)| Algorithm::Aimd {
                limits,
                backoff_ratio,
                timeout
            }
        ),
        (
            limits(),
            extreme_f64(0.01..1.0),
            extreme_f64(1.0..3.0),
            extreme_usize(),
            extreme_usize(),
            any::<bool>(),
            extreme_usize()
        )
            .prop_map(
                |(
                    limits,
                    smoothing,
                    rtt_tolerance,
                    long_window,
                    queue_size,
                    probe,
                    probe_multiplier,
                )| Algorithm::Gradient2 {
                    limits,
                    smoothing,
                    rtt_tolerance,
                    long_window,
                    queue_size,
                    probe,
                    probe_multiplier,
                }
            ),
        (
            limits(),
            extreme_f64(0.01..1.0),
            any::<bool>(),
            extreme_usize(),
            any::<bool>(),
            any::<u64>()
        )
            .prop_map(
                |(limits, smoothing, probe, probe_multiplier, gentle, seed)| Algorithm::Vegas {
                    limits,
                    smoothing,
                    probe,
                    probe_multiplier,
                    gentle,
                    seed,
                }
            ),
    ]
}

/// Builds the algorithm (`Ok(None)` for a fixed limit).
fn build_algorithm(a: &Algorithm) -> Result<Option<Box<dyn LimitAlgorithm>>, ConfigError> {
    Ok(Some(match a.clone() {
        Algorithm::Fixed => return Ok(None),
        Algorithm::Aimd {
            limits: (initial, min, max),
            backoff_ratio,
            timeout,
        } => Box::new(
            Aimd::builder()
                .initial_limit(initial)
                .min_limit(min)
                .max_limit(max)
                .backoff_ratio(backoff_ratio)
                .timeout(timeout)
                .build()?,
        ),
        Algorithm::Gradient2 {
            limits: (initial, min, max),
            smoothing,
            rtt_tolerance,
            long_window,
            queue_size,
            probe,
            probe_multiplier,
        } => Box::new(
            Gradient2::builder()
                .initial_limit(initial)
                .min_limit(min)
                .max_limit(max)
                .smoothing(smoothing)
                .rtt_tolerance(rtt_tolerance)
                .long_window(long_window)
                .queue_size(queue_size)
                .probe(probe)
                .probe_multiplier(probe_multiplier)
                .build()?,
        ),
        Algorithm::Vegas {
            limits: (initial, min, max),
            smoothing,
            probe,
            probe_multiplier,
            gentle,
            seed,
        } => Box::new(
            Vegas::builder()
                .initial_limit(initial)
                .min_limit(min)
                .max_limit(max)
                .smoothing(smoothing)
                .probe(probe)
                .probe_multiplier(probe_multiplier)
                .gentle_decrease(gentle)
                .seed(seed)
                .build()?,
        ),
    }))
}

/// The extreme values that are valid, one by one: each builds, and works.
#[test]
fn valid_extremes_build_and_work() {
    let rt = paused_runtime();
    let clock = ManualClock::new();
    let adaptive = AdaptiveConfig::new()
        .min_samples(1)
        .min_window(Duration::MAX)
        .max_window(Duration::MAX);
    let builders: Vec<BulkheadBuilder> = vec![
        Bulkhead::builder().max_concurrent_calls(MAX_LIMIT),
        Bulkhead::builder()
            .max_wait(Duration::MAX)
            .max_waiting_calls(usize::MAX),
        Bulkhead::builder()
            .max_wait(Duration::from_secs(u64::MAX))
            .max_waiting_calls(0),
        Bulkhead::builder().max_wait(Duration::from_nanos(1)),
        Bulkhead::builder()
            .adaptive(
                Vegas::builder()
                    .max_limit(usize::MAX)
                    .probe_multiplier(usize::MAX)
                    .build()
                    .unwrap(),
            )
            .adaptive_config(adaptive),
        Bulkhead::builder().adaptive(
            Gradient2::builder()
                .min_limit(1)
                .max_limit(usize::MAX)
                .rtt_tolerance(f64::INFINITY)
                .queue_size(usize::MAX)
                .long_window(usize::MAX)
                .probe_multiplier(usize::MAX)
                .build()
                .unwrap(),
        ),
        Bulkhead::builder().adaptive(
            Aimd::builder()
                .min_limit(1)
                .max_limit(usize::MAX)
                .timeout(Duration::MAX)
                .backoff_ratio(0.5)
                .build()
                .unwrap(),
        ),
        Bulkhead::builder()
            .adaptive(
                Aimd::builder()
                    .initial_limit(MAX_LIMIT)
                    .max_limit(MAX_LIMIT)
                    .build()
                    .unwrap(),
            )
            .adaptive_config(AdaptiveConfig::new().min_samples(u64::MAX)),
    ];
    for (i, builder) in builders.into_iter().enumerate() {
        let bulkhead = builder
            .clock(clock.clock())
            .build()
            .unwrap_or_else(|e| panic!("{i}: {e}"));
        for step in [Duration::ZERO, Duration::from_millis(1), Duration::MAX] {
            rt.block_on(async { drive(&bulkhead, &clock, 4, step) });
        }
    }
    // And the ones that must be refused, by name.
    let refused = [
        (
            Bulkhead::builder().max_concurrent_calls(0).build(),
            "max_concurrent_calls",
        ),
        (
            Bulkhead::builder().max_concurrent_calls(usize::MAX).build(),
            "max_concurrent_calls",
        ),
        (
            Bulkhead::builder().max_wait(Duration::ZERO).build(),
            "max_wait",
        ),
        (
            Bulkhead::builder()
                .adaptive_config(
                    AdaptiveConfig::new()
                        .min_window(Duration::MAX)
                        .max_window(Duration::ZERO),
                )
                .build(),
            "max_window",
        ),
        (
            Bulkhead::builder()
                .adaptive(
                    Vegas::builder()
                        .initial_limit(usize::MAX)
                        .max_limit(usize::MAX)
                        .build()
                        .unwrap(),
                )
                .build(),
            "initial_limit",
        ),
    ];
    for (result, field) in refused {
        assert_eq!(result.unwrap_err().field(), field);
    }
    for (result, field) in [
        (
            Aimd::builder().backoff_ratio(f64::NAN).build().map(drop),
            "backoff_ratio",
        ),
        (
            Aimd::builder().timeout(Duration::ZERO).build().map(drop),
            "timeout",
        ),
        (
            Gradient2::builder()
                .smoothing(f64::INFINITY)
                .build()
                .map(drop),
            "smoothing",
        ),
        (
            Gradient2::builder()
                .rtt_tolerance(f64::NAN)
                .build()
                .map(drop),
            "rtt_tolerance",
        ),
        (
            Vegas::builder().smoothing(f64::NAN).build().map(drop),
            "smoothing",
        ),
        (Vegas::builder().min_limit(0).build().map(drop), "min_limit"),
        (Vegas::builder().max_limit(0).build().map(drop), "max_limit"),
    ] {
        assert_eq!(result.unwrap_err().field(), field);
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// The bulkhead builder and every adaptive builder: a named `ConfigError`, or 10⁴ calls
    /// without a panic and every slot back.
    #[test]
    fn extreme_configurations_are_refused_by_name_or_work(
        limit in extreme_usize(),
        wait in prop::option::of(extreme_duration()),
        waiters in extreme_usize(),
        algorithm in algorithm(),
        window in (extreme_u64(), extreme_duration(), extreme_duration(), prop::bool::weighted(0.75))
            .prop_map(|(n, a, b, sort)| if sort { (n, a.min(b), a.max(b)) } else { (n, a, b) }),
        hold in 0usize..8,
        step in extreme_duration(),
    ) {
        let clock = ManualClock::new();
        let built = build_algorithm(&algorithm).and_then(|algorithm| {
            let mut builder: BulkheadBuilder = Bulkhead::builder()
                .max_concurrent_calls(limit)
                .max_waiting_calls(waiters)
                .adaptive_config(
                    AdaptiveConfig::new()
                        .min_samples(window.0)
                        .min_window(window.1)
                        .max_window(window.2),
                )
                .clock(clock.clock());
            if let Some(wait) = wait {
                builder = builder.max_wait(wait);
            }
            if let Some(algorithm) = algorithm {
                builder = builder.adaptive(algorithm);
            }
            builder.build()
        });
        match built {
            Err(error) => prop_assert!(named_a_set_field(&error), "unnamed field: {error}"),
            Ok(bulkhead) => {
                let rt = paused_runtime();
                rt.block_on(async { drive(&bulkhead, &clock, hold, step) });
                // `set_limit` takes any value at run time.
                for l in [0, 1, MAX_LIMIT, usize::MAX, limit] {
                    bulkhead.set_limit(l);
                    prop_assert!(bulkhead.limit() <= MAX_LIMIT);
                }
            }
        }
    }

    /// The algorithms alone, driven directly with extreme samples (a custom driver may hand
    /// in anything a `Sample` can hold): never a panic, always a limit of at least 1 within
    /// the bounds they were built with.
    #[test]
    fn algorithms_take_extreme_samples(
        algorithm in algorithm(),
        samples in prop::collection::vec(
            (extreme_duration(), extreme_duration(), extreme_usize(), extreme_u64(), extreme_u64()),
            1..64,
        ),
    ) {
        let Ok(Some(mut algorithm)) = build_algorithm(&algorithm) else {
            return Ok(());
        };
        for (rtt, min_rtt, in_flight, count, drops) in samples {
            let sample = palisade_bulkhead::adaptive::Sample::new(rtt, in_flight, count, drops)
                .with_min_rtt(min_rtt);
            let limit = algorithm.update(&sample);
            prop_assert!(limit >= 1, "limit {limit}");
        }
    }
}
