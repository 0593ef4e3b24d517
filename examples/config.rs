//! Configuration from a file: named instances in a TOML file, built into a `Registry`, two of
//! them stacked around a client.
//!
//! `config.toml` (beside this file) sets shared defaults per layer and overrides them per
//! instance. The program reads it (or the file given as the first argument), builds every
//! instance, stacks the `inventory` retry policy over the `inventory` breaker around a backend
//! that always fails, and prints what each layer did: the breaker opens after its minimum
//! calls, and from then on the retry layer returns its `CircuitOpen` at once.
//!
//! Run it with `cargo run -p palisade-examples --example config [path/to/file.toml]`. It runs
//! in tokio's paused time, so it finishes at once; `palisade/tests/registry.rs` checks the
//! same file and stack.

use palisade::common::{BoxError, Clock, is_local_rejection};
use palisade::prelude::*;
use palisade::registry::{Registry, RegistryConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), BoxError> {
    let text = match std::env::args().nth(1) {
        Some(path) => std::fs::read_to_string(path)?,
        None => include_str!("config.toml").to_owned(),
    };
    let config: RegistryConfig = toml::from_str(&text)?;
    let registry = Registry::from_config_with_clock(config, Clock::tokio())?;
    println!(
        "circuit breakers: {:?}",
        registry.circuit_breaker_names().collect::<Vec<_>>()
    );
    println!(
        "retry policies:   {:?}",
        registry.retry_policy_names().collect::<Vec<_>>()
    );

    let breaker = registry.circuit_breaker("inventory")?;
    let policy = registry.retry_policy("inventory")?;
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&attempts);
    let client = ServiceBuilder::new()
        .retry_policy(&policy)
        .circuit_breaker(&breaker)
        .service_fn(move |_item: &'static str| {
            // Relaxed: a statistic, read once the calls are done.
            seen.fetch_add(1, Ordering::Relaxed);
            async { Err::<(), BoxError>("inventory service unavailable".into()) }
        });

    let (mut failed, mut rejected) = (0, 0);
    for _ in 0..10 {
        match client.clone().oneshot("sku-42").await {
            Err(e) if is_local_rejection(&*e) => rejected += 1,
            Err(_) => failed += 1,
            Ok(()) => {}
        }
    }
    println!(
        "10 requests: {failed} failed after retries, {rejected} rejected by the open breaker; \
         {} attempts reached the backend; breaker `{}` is {:?}",
        attempts.load(Ordering::Relaxed),
        breaker.name(),
        breaker.state(),
    );
    Ok(())
}
