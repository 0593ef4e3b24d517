//! The recommended Palisade stack exporting through `metrics-exporter-prometheus`.
//!
//! Retry (with a budget), circuit breaker, rate limiter and bulkhead over a balancer of three
//! in-process endpoints (standing in for the network) take a scripted load of 300 requests in
//! tokio's paused time; the exporter serves its HTTP listener on a free port of 127.0.0.1, and
//! the program scrapes it with a plain `GET /metrics` and prints the `palisade_*` lines.
//!
//! Run it with `cargo run -p palisade-examples --example prometheus`. The integration test
//! `examples/tests/prometheus.rs` runs the same [`palisade_examples::prometheus::run`] and
//! asserts on the scrape.

use palisade::common::BoxError;
use palisade_examples::prometheus::{CALLS, run};

fn main() -> Result<(), BoxError> {
    let scrape = run()?;
    println!(
        "# scrape of http://{}/metrics after {CALLS} requests ({} failed), palisade_ series only",
        scrape.address, scrape.errors
    );
    for line in scrape.palisade_lines() {
        println!("{line}");
    }
    Ok(())
}
