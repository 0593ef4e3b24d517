//! Adversarial configuration (issue 9 §7): every builder of the crate, given extreme values
//! (0, MAX, NaN, ±inf, `Duration::MAX`, caps below bases), either refuses them with a
//! `ConfigError` naming one of its own fields, or builds something that serves 10⁴ calls
//! without a panic (in paused time, so the longest waits cost nothing).

#![cfg(not(loom))]

use palisade_core::ConfigError;
use palisade_core::test_util::{proptest_config, run_paused};
use palisade_retry::{
    AdaptiveThrottle, Backoff, HedgePolicy, RetryBudget, RetryPolicy, RetryThrottle,
};
use proptest::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tower::{BoxError, Layer, Service, ServiceExt, service_fn};

const CALLS: u64 = 10_000;

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_millis(1)),
        Just(Duration::from_secs(3600)),
        Just(Duration::from_nanos(u64::MAX)),
        Just(Duration::MAX),
        (0u64..5_000).prop_map(Duration::from_millis),
    ]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => 0.0f64..1.0,
        1 => prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        Just(-1.0),
        Just(f64::MIN_POSITIVE),
        Just(f64::MAX),
        Just(1.0),
        Just(1.000_001),
        Just(100.0),
        (1.0f64..1e6),
        ],
    ]
}

fn count() -> impl Strategy<Value = u32> {
    prop_oneof![1 => Just(0), 1 => Just(u32::MAX), 6 => 1u32..10, 2 => 0u32..2000]
}

fn backoff() -> impl Strategy<Value = Backoff> {
    // Mostly ordered (base ≤ cap, extremes included), sometimes a cap below the base.
    let pair = prop_oneof![
        3 => (duration(), duration()).prop_map(|(a, b)| (a.min(b), a.max(b))),
        1 => (duration(), duration()),
    ];
    (0u8..5, pair).prop_map(|(kind, (base, max))| match kind {
        0 => Backoff::none(),
        1 => Backoff::constant(base),
        2 => Backoff::exponential(base, max),
        3 => Backoff::full_jitter(base, max),
        _ => Backoff::decorrelated_jitter(base, max),
    })
}

fn refused(err: &ConfigError, fields: &[&str]) -> Result<(), TestCaseError> {
    prop_assert!(
        fields.contains(&err.field()),
        "refused naming `{}`, not one of {fields:?}: {err}",
        err.field()
    );
    Ok(())
}

/// Fails every `n`-th call (none when `n` is 0) and answers the others; fast in paused time.
fn backend(
    fail_every: u64,
) -> impl Service<u64, Response = u64, Error = BoxError, Future: Send> + Clone {
    let calls = Arc::new(AtomicU64::new(0));
    service_fn(move |req: u64| {
        // Relaxed: a test counter.
        let n = calls.fetch_add(1, Ordering::Relaxed);
        async move {
            if fail_every != 0 && n.is_multiple_of(fail_every) {
                Err::<u64, BoxError>("boom".into())
            } else {
                Ok(req)
            }
        }
    })
}

/// Drives `CALLS` calls through `svc`, each in a fresh clone (as tower does per request).
async fn drive<S>(svc: S)
where
    S: Service<u64, Error = BoxError> + Clone,
{
    for i in 0..CALLS {
        let _ = svc.clone().oneshot(i).await;
    }
}

proptest! {
    #![proptest_config(proptest_config(48))]

    #[test]
    fn retry_policy_builder(
        max_attempts in count(),
        backoff in backoff(),
        deadline in proptest::option::of(duration()),
        attempt_timeout in proptest::option::of(duration()),
        max_retry_after in proptest::option::of(duration()),
        local in proptest::option::of(duration()),
        fail_every in 0u64..4,
    ) {
        let built = run_paused(async move {
            let mut b = RetryPolicy::builder().max_attempts(max_attempts).backoff(backoff);
            if let Some(d) = deadline { b = b.deadline(d); }
            if let Some(t) = attempt_timeout { b = b.attempt_timeout(t); }
            if let Some(c) = max_retry_after { b = b.max_retry_after(c); }
            if let Some(l) = local { b = b.retry_local_rejections(l); }
            let policy = b.build()?;
            drive(policy.layer().layer(backend(fail_every))).await;
            Ok::<_, ConfigError>(())
        });
        if let Err(err) = built {
            refused(&err, &["max_attempts", "backoff", "deadline", "attempt_timeout"])?;
        }
    }

    #[test]
    fn retry_budget_builder(
        ttl in duration(),
        min in count(),
        ratio in float(),
        fail_every in 1u64..4,
    ) {
        let built = run_paused(async move {
            let budget = RetryBudget::builder()
                .ttl(ttl)
                .min_retries_per_sec(min)
                .percent_can_retry(ratio)
                .build()?;
            let policy = RetryPolicy::builder()
                .budget(budget.clone())
                .backoff(Backoff::none())
                .build()
                .expect("a valid policy");
            drive(policy.layer().layer(backend(fail_every))).await;
            let _ = budget.snapshot();
            Ok::<_, ConfigError>(())
        });
        if let Err(err) = built {
            refused(&err, &["ttl", "percent_can_retry"])?;
        }
    }

    #[test]
    fn hedge_policy_builder(
        fixed in proptest::option::of(duration()),
        percentile in prop_oneof![3 => 1.0f64..99.9, 1 => float()],
        initial in duration(),
        window in prop_oneof![Just(0u64), Just(1), Just(u64::MAX), 0u64..5000],
        min_samples in prop_oneof![Just(0u64), Just(u64::MAX), 0u64..500],
        max_hedges in count(),
    ) {
        let built = run_paused(async move {
            let mut b = HedgePolicy::builder()
                .percentile(percentile)
                .initial_delay(initial)
                .window(window)
                .min_samples(min_samples)
                .max_hedges(max_hedges);
            if let Some(d) = fixed { b = b.delay(d); }
            let policy = b.build()?;
            drive(policy.layer().layer(backend(3))).await;
            let _ = policy.snapshot();
            Ok::<_, ConfigError>(())
        });
        if let Err(err) = built {
            refused(&err, &["delay", "initial_delay", "percentile", "window", "max_hedges"])?;
        }
    }

    #[test]
    fn throttle_builders(
        k in prop_oneof![3 => 1.0f64..10.0, 1 => float()],
        window in duration(),
        max_tokens in count(),
        token_ratio in float(),
    ) {
        let built = run_paused(async move {
            let adaptive = AdaptiveThrottle::builder().k(k).window(window).build()?;
            drive(adaptive.layer().layer(backend(2))).await;
            let _ = adaptive.snapshot();
            Ok::<_, ConfigError>(())
        });
        if let Err(err) = built {
            refused(&err, &["k", "window"])?;
        }
        let built = run_paused(async move {
            let throttle = RetryThrottle::builder()
                .max_tokens(max_tokens)
                .token_ratio(token_ratio)
                .build()?;
            let policy = RetryPolicy::builder()
                .throttle(throttle.clone())
                .backoff(Backoff::none())
                .build()
                .expect("a valid policy");
            drive(policy.layer().layer(backend(2))).await;
            let _ = throttle.snapshot();
            Ok::<_, ConfigError>(())
        });
        if let Err(err) = built {
            refused(&err, &["max_tokens", "token_ratio"])?;
        }
    }
}
