//! Adaptive limits against a backend with a knee: latency is flat up to `capacity` calls in
//! flight and grows linearly past it (a processor-sharing server: base × in_flight / capacity).
//! Each algorithm must find a limit near the knee from a start of 10 and of 500, and back off
//! when the capacity halves. Virtual time, 600 closed-loop callers, deterministic.
//!
//! Each must settle (stay in the band, probe windows aside) within 200 base RTTs of 10 ms.
//!
//! Run with `--nocapture` to print the limit trajectories (one column per 10 ms RTT).

#![cfg(not(loom))]

use palisade_bulkhead::Bulkhead;
use palisade_bulkhead::adaptive::{AdaptiveConfig, Aimd, Gradient2, LimitAlgorithm, Vegas};
use palisade_core::clock::Clock;
use palisade_core::test_util::{MockBackend, Script, Step};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tower::{Layer, ServiceExt};

const BASE: Duration = Duration::from_millis(10);
const CALLERS: usize = 600;

/// Limits sampled once per base RTT: `rtts` before the capacity halves, `rtts` after.
fn simulate(algorithm: impl LimitAlgorithm, capacity: u64, rtts: usize) -> Vec<usize> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let cap = Arc::new(AtomicU64::new(capacity));
        let script_cap = cap.clone();
        let backend = MockBackend::new(Script::from_fn(move |ctx| {
            // Relaxed: a test knob read by the same task that sets it.
            let cap = script_cap.load(Ordering::Relaxed) as f64;
            let factor = (ctx.in_flight as f64 / cap).max(1.0);
            Step::ok().after(BASE.mul_f64(factor))
        }));
        let bulkhead = Bulkhead::builder()
            .adaptive(algorithm)
            .adaptive_config(AdaptiveConfig::new().min_samples(10))
            .max_wait(Duration::MAX)
            .clock(Clock::tokio())
            .build()
            .unwrap();
        let svc = bulkhead.layer().layer(backend);
        let stop = Arc::new(AtomicBool::new(false));
        let callers: Vec<_> = (0..CALLERS)
            .map(|i| {
                let svc = svc.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    // Relaxed: a stop flag; joins order the rest.
                    while !stop.load(Ordering::Relaxed) {
                        svc.clone().oneshot(i).await.unwrap();
                    }
                })
            })
            .collect();
        let mut limits = Vec::with_capacity(2 * rtts + 1);
        limits.push(bulkhead.limit());
        for r in 0..2 * rtts {
            if r == rtts {
                // Relaxed: see above.
                cap.store(capacity / 2, Ordering::Relaxed);
            }
            tokio::time::sleep(BASE).await;
            limits.push(bulkhead.limit());
        }
        stop.store(true, Ordering::Relaxed);
        for c in callers {
            c.abort();
        }
        limits
    })
}

fn aimd(start: usize) -> Aimd {
    Aimd::builder()
        .initial_limit(start)
        .min_limit(1)
        .max_limit(1000)
        .timeout(BASE.mul_f64(1.5))
        .build()
        .unwrap()
}

fn gradient2(start: usize) -> Gradient2 {
    Gradient2::builder()
        .initial_limit(start)
        .min_limit(1)
        .max_limit(1000)
        .build()
        .unwrap()
}

fn vegas(start: usize) -> Vegas {
    Vegas::builder().initial_limit(start).build().unwrap()
}

/// Probe windows pin the limit to a handful of calls; they are not the limit's level.
fn is_probe(limit: usize) -> bool {
    limit <= 3
}

/// The first sample index from which every non-probe limit in `limits[from..to]` lies in
/// `band`, counted in RTTs from `from`; `None` if it never settles.
fn settles(limits: &[usize], from: usize, to: usize, band: (usize, usize)) -> Option<usize> {
    let inside = |l: usize| is_probe(l) || (band.0..=band.1).contains(&l);
    let mut settled = None;
    for (i, &limit) in limits.iter().enumerate().take(to).skip(from) {
        if inside(limit) {
            settled.get_or_insert(i - from);
        } else {
            settled = None;
        }
    }
    settled
}

const COLUMNS: [usize; 14] = [
    0, 5, 10, 20, 50, 100, 200, 300, 305, 310, 320, 350, 450, 600,
];

fn header() {
    let cols: Vec<String> = COLUMNS.iter().map(|c| format!("{c:>4}")).collect();
    println!("{:<20} {}  settle@40 settle@20", "RTT →", cols.join(" "));
}

const RTTS: usize = 300;
const KNEE: usize = 40;

/// Band around the knee a converged limit stays in: Gradient2's `rtt_tolerance` of 1.5 puts
/// its fixed point at 1.5 × knee + queue_size (64 for 40, 34 for 20), AIMD's `timeout` of
/// 1.5 × base near 1.5 × knee; Vegas settles closest.
fn band(knee: usize) -> (usize, usize) {
    (knee * 3 / 4, knee * 2)
}

/// Mean of the non-probe limits in `limits[range]`.
fn level(limits: &[usize]) -> f64 {
    let kept: Vec<f64> = limits
        .iter()
        .filter(|&&l| !is_probe(l))
        .map(|&l| l as f64)
        .collect();
    kept.iter().sum::<f64>() / kept.len().max(1) as f64
}

fn check(name: &str, limits: &[usize], within: usize) {
    let cols: Vec<String> = COLUMNS
        .iter()
        .map(|&i| format!("{:>4}", limits[i]))
        .collect();
    let first = settles(limits, 0, RTTS + 1, band(KNEE));
    let second = settles(limits, RTTS + 1, 2 * RTTS + 1, band(KNEE / 2));
    let (l1, l2) = (
        level(&limits[RTTS - 100..=RTTS]),
        level(&limits[2 * RTTS - 100..]),
    );
    println!(
        "{name:<20} {}  {:>9} {:>9} {l1:>8.1} {l2:>8.1}",
        cols.join(" "),
        first.map_or("never".into(), |f| f.to_string()),
        second.map_or("never".into(), |f| f.to_string()),
    );
    let first = first.unwrap_or_else(|| panic!("{name}: never settled near the knee {KNEE}"));
    let second =
        second.unwrap_or_else(|| panic!("{name}: never settled near the halved knee {}", KNEE / 2));
    assert!(first <= within, "{name}: settled after {first} RTTs");
    assert!(second <= within, "{name}: backed off after {second} RTTs");
}

#[test]
fn aimd_converges_to_the_knee_and_backs_off() {
    header();
    check("aimd from 10", &simulate(aimd(10), KNEE as u64, RTTS), 200);
    check(
        "aimd from 500",
        &simulate(aimd(500), KNEE as u64, RTTS),
        200,
    );
}

#[test]
fn gradient2_converges_to_the_knee_and_backs_off() {
    header();
    check(
        "gradient2 from 10",
        &simulate(gradient2(10), KNEE as u64, RTTS),
        200,
    );
    check(
        "gradient2 from 500",
        &simulate(gradient2(500), KNEE as u64, RTTS),
        200,
    );
}

#[test]
fn vegas_converges_to_the_knee_and_backs_off() {
    header();
    check(
        "vegas from 10",
        &simulate(vegas(10), KNEE as u64, RTTS),
        200,
    );
    check(
        "vegas from 500",
        &simulate(vegas(500), KNEE as u64, RTTS),
        200,
    );
}
