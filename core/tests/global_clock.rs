//! The process-wide default clock, in its own test binary (its own process): setting it here
//! cannot leak into the unit tests, which run in parallel threads of another process.
#![cfg(not(loom))]

use palisade_core::clock::{self, Clock, ManualClock};
use std::time::Duration;

#[test]
fn a_global_default_is_set_once_and_a_thread_default_still_wins() {
    let manual = ManualClock::new();
    manual.advance(Duration::from_secs(3));
    clock::set_global_default(manual.clock()).expect("first set");
    // Every thread without a default of its own now builds on the manual clock.
    let elsewhere = std::thread::spawn(|| Clock::default().now())
        .join()
        .unwrap();
    assert_eq!(elsewhere.as_nanos(), 3_000_000_000);
    assert_eq!(Clock::default().kind(), "manual");

    let refused = clock::set_global_default(Clock::std()).expect_err("set once");
    assert_eq!(refused.0.kind(), "std", "the refused clock comes back");
    assert_eq!(Clock::default().kind(), "manual");

    let scoped = clock::set_default(Clock::tsc());
    assert_eq!(Clock::default().kind(), "tsc", "the thread default wins");
    drop(scoped);
    assert_eq!(Clock::default().kind(), "manual");
}
