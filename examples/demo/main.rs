//! The Palisade demo: a fleet meets an incident, and two clients meet the fleet.
//!
//! Three simulated servers take traffic through a scripted incident, in tokio's paused time
//! (a minute of it runs in about a second): normal traffic; one endpoint 10× slow; another
//! failing every call; a surge at 3× the fleet's capacity; recovery. The same incident runs
//! twice: a bare round-robin client, and a client behind the default recommended Palisade
//! stack (retry with its budget → bulkhead → balancer). It prints one comparison per phase
//! and the Palisade stack's events, and writes a timeline picture (SVG).
//!
//! Run it with `cargo run --example demo` (`-- --help` for the flags).

use palisade_examples::demo::{Config, Scenario, run};
use std::process::ExitCode;
use std::time::Duration;

const HELP: &str = "\
Usage: cargo run --example demo -- [FLAGS]

  --seed N            seed of arrivals, service times, balancer and retry jitter (default 2026)
  --phase-secs S      length of each phase in (virtual) seconds (default 8)
  --scenario NAME     full (normal, slow, failing, surge, recovery; default),
                      outage (one endpoint down), surge (3x the capacity) or
                      hang (one endpoint takes every call and answers none)
  --out PATH          where to write the timeline SVG (default target/palisade-demo.svg)
  --help              this text
";

fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Config>, String> {
    let mut config = Config::default();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--help" | "-h" => return Ok(None),
            "--seed" => {
                let v = value()?;
                config.seed = v
                    .parse()
                    .map_err(|_| format!("--seed: not a number: {v}"))?;
            }
            "--phase-secs" => {
                let v = value()?;
                let secs: f64 = v
                    .parse()
                    .map_err(|_| format!("--phase-secs: not a number: {v}"))?;
                if !(0.5..=3600.0).contains(&secs) {
                    return Err(format!("--phase-secs: {v} is not between 0.5 and 3600"));
                }
                config.phase = Duration::from_secs_f64(secs);
            }
            "--scenario" => {
                let v = value()?;
                config.scenario = Scenario::parse(&v)
                    .ok_or_else(|| format!("--scenario: {v} is not full, outage, surge or hang"))?;
            }
            "--out" => config.out = Some(value()?.into()),
            other => return Err(format!("unknown flag {other} (try --help)")),
        }
    }
    Ok(Some(config))
}

fn main() -> ExitCode {
    let config = match parse(std::env::args().skip(1)) {
        Ok(Some(config)) => config,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("demo: {message}");
            return ExitCode::from(2);
        }
    };
    match run(&config) {
        Ok((report, path)) => {
            print!("{report}");
            println!();
            println!("Timeline: {}", path.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("demo: {error}");
            ExitCode::FAILURE
        }
    }
}
