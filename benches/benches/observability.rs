//! observability benchmarks: the success path of every layer, and of the full stack, with
//! the `metrics` and `tracing` features off and on, so the cost of observability is visible.
//!
//! Features are chosen at compile time, so one group gets its cases from two builds of this
//! bench, into the same criterion directories:
//!
//! - `cargo bench -p palisade-benches --bench observability` times `features_off`;
//! - `cargo bench -p palisade-benches --bench observability --features obs` (every layer's
//!   `metrics` and `tracing` features, as `palisade/full` turns them on) times
//!   `features_on`, with no recorder installed and no tracing subscriber (what a service
//!   that enabled the features but exports nothing pays), and `features_on_recorder`, the
//!   same layer built and called under a `metrics` recorder whose handles are real atomic
//!   cells (`palisade_benches::CountingRecorder`: how production runs, minus the exporter),
//!   and `features_on_prometheus`, under `metrics-exporter-prometheus`'s own recorder (what a
//!   service that exports to Prometheus installs; its histograms cost more than the counting
//!   recorder's, so this is the production figure).
//!
//! `benches/report.sh` runs both and puts the three side by side in benches/RESULTS.md
//! (goal, issue 14: `features_on_recorder` ≤ 1.2× `features_off` on every success path).
//! Each case is one thread, `poll_ready` + `call` + completion of a request that succeeds;
//! every layer is built outside the timed loop.

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

#[path = "support/stack.rs"]
mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_benches::{Bare, call_now};
use palisade_bulkhead::Bulkhead;
use palisade_circuit_breaker::CircuitBreaker;
use palisade_load_balancer::Balancer;
use palisade_retry::RetryPolicy;
use std::hint::black_box;
use tower::Layer;
use tower_service::Service;

/// Benches the services `make` builds in the group `observability/<layer>_success_1_thread`,
/// under the case names of this build's features.
fn cases<S, F>(c: &mut Criterion, layer: &str, make: F)
where
    S: Service<u64>,
    F: Fn() -> S,
{
    let mut group = c.benchmark_group(format!("observability/{layer}_success_1_thread"));
    let bench = |group: &mut criterion::BenchmarkGroup<'_, _>, case: &str| {
        let mut svc = make();
        assert!(
            matches!(call_now(&mut svc, 0), Some(Ok(_))),
            "{layer}: not a synchronous success path"
        );
        group.bench_function(case, |b| {
            b.iter(|| black_box(call_now(&mut svc, black_box(1u64)).is_some()));
        });
    };
    #[cfg(not(feature = "obs"))]
    bench(&mut group, "features_off");
    #[cfg(feature = "obs")]
    {
        bench(&mut group, "features_on");
        let recorder = palisade_benches::CountingRecorder::default();
        metrics::with_local_recorder(&recorder, || bench(&mut group, "features_on_recorder"));
        assert!(
            recorder.registrations() > 0,
            "{layer}: registered no metric with the recorder"
        );
        let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = prometheus.handle();
        metrics::with_local_recorder(&prometheus, || {
            bench(&mut group, "features_on_prometheus");
        });
        let prefix = match layer {
            "stack" => "palisade_".to_owned(),
            _ => format!("palisade_{layer}_"),
        };
        assert!(
            handle.render().contains(&prefix),
            "{layer}: nothing of the layer in the Prometheus scrape"
        );
    }
    group.finish();
}

fn success_paths(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    cases(c, "circuit_breaker", || {
        CircuitBreaker::new().layer().layer(Bare)
    });
    cases(c, "bulkhead", || {
        Bulkhead::builder()
            .max_concurrent_calls(support::LIMIT)
            .build()
            .unwrap()
            .layer()
            .layer(Bare)
    });
    cases(c, "rate_limit", || {
        support::unmetered_limiter().layer().layer(Bare)
    });
    cases(c, "retry", || {
        RetryPolicy::builder().build().unwrap().layer().layer(Bare)
    });
    cases(c, "load_balancer", || {
        Balancer::new((0..support::ENDPOINTS).map(|k| (k, Bare))).service()
    });
    cases(c, "stack", support::palisade_stack);
}

criterion_group!(benches, success_paths);
criterion_main!(benches);
