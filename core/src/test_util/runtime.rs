//! Paused-time runtimes and proptest settings, one copy for every layer crate's tests.

use crate::clock::{self, Clock};
use std::future::Future;

/// A current-thread tokio runtime with its time enabled and paused: sleeps return as soon as
/// nothing else can run, so a test of minutes of virtual time takes milliseconds.
///
/// # Panics
///
/// If tokio cannot build a runtime (the operating system refused its I/O driver's resources),
/// which no test can recover from.
#[must_use]
pub fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread tokio runtime")
}

/// Runs `future` to completion on a fresh [`paused_runtime`], with [`Clock::tokio()`] as the
/// thread's default clock ([`clock::set_default`]): every layer built inside, by the future
/// or by the closure that made it, runs in paused time without a `.clock(..)` on its builder.
///
/// For `#[tokio::test(start_paused = true)]` tests, the same default is one line at the top
/// of the test: `let _clock = palisade_core::clock::set_default(Clock::tokio());`.
///
/// # Panics
///
/// As [`paused_runtime`]; and whatever `future` panics with.
///
/// ```
/// use palisade_core::clock::Clock;
/// use palisade_core::test_util::run_paused;
/// use std::time::Duration;
///
/// let waited = run_paused(async {
///     let clock = Clock::default(); // what a builder takes: the paused tokio clock
///     let start = clock.now();
///     tokio::time::sleep(Duration::from_secs(3600)).await; // returns at once
///     clock.elapsed_since(start)
/// });
/// assert_eq!(waited, Duration::from_secs(3600));
/// ```
pub fn run_paused<F: Future>(future: F) -> F::Output {
    let runtime = paused_runtime();
    let _entered = runtime.enter();
    let _clock = clock::set_default(Clock::tokio());
    runtime.block_on(future)
}

/// The environment variable that sets how many cases each property test runs
/// (default: the `default_cases` given to [`proptest_config`]).
pub const PROPTEST_CASES_VAR: &str = "PALISADE_PROPTEST_CASES";

/// The environment variable that sets the proptest seed, to explore other inputs than the
/// fixed default ([`PROPTEST_DEFAULT_SEED`]).
pub const PROPTEST_SEED_VAR: &str = "PALISADE_PROPTEST_SEED";

/// The seed every property test uses unless [`PROPTEST_SEED_VAR`] says otherwise.
pub const PROPTEST_DEFAULT_SEED: u64 = 0x7061_6c69_7361_6465; // "palisade"

/// The proptest configuration of Palisade's property tests: a fixed seed (so a run is
/// reproducible, in CI and on every machine), ChaCha as the generator (stable across proptest
/// versions), no failure files written into the source tree, and `default_cases` cases unless
/// [`PROPTEST_CASES_VAR`] sets another count (CI may run more, a quick local run fewer).
///
/// ```
/// use palisade_core::test_util::proptest_config;
/// use proptest::prelude::*;
///
/// proptest! {
///     #![proptest_config(proptest_config(64))]
///     // In a test file: `#[test]` here.
///     fn addition_commutes(a in 0u32..1000, b in 0u32..1000) {
///         prop_assert_eq!(a + b, b + a);
///     }
/// }
/// addition_commutes();
/// ```
///
/// # Panics
///
/// If [`PROPTEST_CASES_VAR`] or [`PROPTEST_SEED_VAR`] is set but is not a whole number: a
/// typo should fail the run, not quietly test something else.
#[must_use]
pub fn proptest_config(default_cases: u32) -> proptest::test_runner::Config {
    let cases = env_number(PROPTEST_CASES_VAR).map_or(default_cases, |cases| {
        u32::try_from(cases).unwrap_or_else(|_| panic!("{PROPTEST_CASES_VAR}={cases} is too large"))
    });
    let seed = env_number(PROPTEST_SEED_VAR).unwrap_or(PROPTEST_DEFAULT_SEED);
    proptest::test_runner::Config {
        cases,
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        rng_seed: proptest::test_runner::RngSeed::Fixed(seed),
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

fn env_number(var: &str) -> Option<u64> {
    let value = std::env::var(var).ok()?;
    match value.trim().parse() {
        Ok(number) => Some(number),
        Err(_) => panic!("{var}={value:?} is not a whole number"),
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn run_paused_runs_layers_built_inside_on_the_paused_clock() {
        let (kind, waited) = run_paused(async {
            let clock = Clock::default();
            let start = clock.now();
            tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
            (clock.kind(), clock.elapsed_since(start))
        });
        assert_eq!(kind, "tokio");
        assert_eq!(waited, Duration::from_secs(24 * 3600));
        assert_eq!(
            Clock::default().kind(),
            "tsc",
            "the default is reset afterwards"
        );
    }

    #[test]
    fn paused_runtime_starts_paused() {
        let runtime = paused_runtime();
        let real = Clock::std();
        let start = real.now();
        runtime.block_on(async { tokio::time::sleep(Duration::from_secs(600)).await });
        assert!(
            real.elapsed_since(start) < Duration::from_secs(60),
            "slept in real time"
        );
    }

    #[test]
    fn proptest_config_is_seeded_and_reproducible() {
        // Environment variables are process-wide: this test only reads them, and checks the
        // defaults only when they are unset.
        let config = proptest_config(48);
        if std::env::var_os(PROPTEST_CASES_VAR).is_none() {
            assert_eq!(config.cases, 48);
        }
        if std::env::var_os(PROPTEST_SEED_VAR).is_none() {
            assert_eq!(
                config.rng_seed,
                proptest::test_runner::RngSeed::Fixed(PROPTEST_DEFAULT_SEED)
            );
        }
        assert!(config.failure_persistence.is_none());
        // Two runners with the config draw the same values.
        use proptest::strategy::{Strategy, ValueTree};
        let draw = || {
            let mut runner = proptest::test_runner::TestRunner::new(proptest_config(1));
            (0u64..u64::MAX)
                .new_tree(&mut runner)
                .expect("a value")
                .current()
        };
        assert_eq!(draw(), draw());
    }
}
