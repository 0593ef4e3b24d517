//! Regression (issue 9): a plain `RetryPolicy::builder().build()` started the coarse clock's
//! upkeep thread behind the user's back (its default budget read `Clock::coarse`). Every
//! default of this crate now reads `Clock::default`, which starts no thread.
//!
//! Its own test binary, so no other test can have started the thread first.

#![cfg(all(not(loom), target_os = "linux"))]

use palisade_retry::{AdaptiveThrottle, HedgePolicy, RetryBudget, RetryPolicy};
use tower::{Layer, ServiceExt, service_fn};

fn upkeep_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("procfs")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "quanta-upkeep")
        .count()
}

#[tokio::test(flavor = "current_thread")]
async fn defaults_start_no_clock_thread() {
    assert_eq!(upkeep_threads(), 0);
    let policy = RetryPolicy::builder().build().unwrap();
    let hedge = HedgePolicy::builder().build().unwrap();
    let throttle = AdaptiveThrottle::builder().build().unwrap();
    let budget = RetryBudget::default();
    budget.deposit();
    let _ = budget.try_withdraw();
    let echo = service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) });
    let svc = policy
        .layer()
        .layer(hedge.layer().layer(throttle.layer().layer(echo)));
    assert_eq!(svc.oneshot(7).await.unwrap(), 7);
    // A thread names itself once it runs: give one that was started the time to show up.
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(
        upkeep_threads(),
        0,
        "a default started the coarse clock's thread"
    );

    // The check can fail: the coarse clock does start it (the thread names itself once it
    // runs, so give it a moment).
    let _ = palisade_core::Clock::coarse().now();
    for _ in 0..200 {
        if upkeep_threads() == 1 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("Clock::coarse started no upkeep thread: the check above proves nothing");
}
