//! Writes `benches/RESULTS.md` from criterion's output: a table per layer, each case's median
//! beside its group's Palisade case and bare inner service, the observability cost, the full
//! stack's headline, the machine, the date and the command that made the numbers.
//!
//! `benches/report.sh` runs the benches and then this; by hand:
//!
//! ```text
//! cargo run -p palisade-benches --release --bin report -- \
//!     [--criterion-dir target/criterion] [--out benches/RESULTS.md] \
//!     [--command "what ran the benches"] [--since UNIX_SECONDS] [--note "text for the top"]
//! ```
//!
//! It reads every `<case>/new/benchmark.json` + `new/estimates.json` under the criterion
//! directory (with `--since`, only those written since then, so the report holds one run and
//! no stale case of an earlier one).

#![forbid(unsafe_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// One benchmark case's result.
#[derive(Clone, Debug)]
struct Case {
    group: String,
    function: String,
    value: Option<String>,
    /// Median time per iteration, ns.
    median_ns: f64,
}

#[derive(Debug)]
struct Args {
    criterion_dir: PathBuf,
    out: PathBuf,
    command: String,
    since: Option<u64>,
    note: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let mut args = Args {
        criterion_dir: target.join("criterion"),
        out: PathBuf::from("benches/RESULTS.md"),
        command: "cargo bench -p palisade-benches".to_owned(),
        since: None,
        note: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--criterion-dir" => args.criterion_dir = PathBuf::from(value()?),
            "--out" => args.out = PathBuf::from(value()?),
            "--command" => args.command = value()?,
            "--since" => {
                let v = value()?;
                args.since = Some(v.parse().map_err(|_| format!("--since {v}: not seconds"))?);
            }
            "--note" => args.note = Some(value()?),
            "-h" | "--help" => {
                return Err(
                    "usage: report [--criterion-dir DIR] [--out FILE] [--command TEXT] \
                            [--since UNIX_SECONDS] [--note TEXT]"
                        .to_owned(),
                );
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// Every `new` directory under `dir` holding a benchmark.json and an estimates.json.
fn find_cases(dir: &Path, since: Option<u64>, out: &mut Vec<Case>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let name = entry.file_name();
        if name == "report" {
            continue;
        }
        if name == "new" {
            let estimates = path.join("estimates.json");
            let benchmark = path.join("benchmark.json");
            if estimates.is_file() && benchmark.is_file() {
                if let Some(since) = since
                    && modified_secs(&estimates) < since
                {
                    continue;
                }
                out.push(read_case(&benchmark, &estimates)?);
            }
            continue;
        }
        find_cases(&path, since, out)?;
    }
    Ok(())
}

fn modified_secs(path: &Path) -> u64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_case(benchmark: &Path, estimates: &Path) -> Result<Case, String> {
    let id = read_json(benchmark)?;
    let est = read_json(estimates)?;
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let group =
        text(&id["group_id"]).ok_or_else(|| format!("{}: no group_id", benchmark.display()))?;
    let function = text(&id["function_id"]).unwrap_or_default();
    let value = text(&id["value_str"]);
    let median_ns = est["median"]["point_estimate"]
        .as_f64()
        .ok_or_else(|| format!("{}: no median", estimates.display()))?;
    Ok(Case {
        group,
        function,
        value,
        median_ns,
    })
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 10_000.0 {
        format!("{:.1} µs", ns / 1_000.0)
    } else if ns >= 100.0 {
        format!("{ns:.0} ns")
    } else {
        format!("{ns:.1} ns")
    }
}

fn fmt_ratio(r: f64) -> String {
    format!("{r:.2}×")
}

/// The Palisade case a group's ratios are taken against: `palisade` itself, or else the
/// first case whose name starts with `palisade`.
fn reference<'a>(cases: &[&'a Case]) -> Option<&'a Case> {
    cases
        .iter()
        .find(|c| c.function == "palisade")
        .or_else(|| cases.iter().find(|c| c.function.starts_with("palisade")))
        .copied()
}

fn bare<'a>(cases: &[&'a Case]) -> Option<&'a Case> {
    cases
        .iter()
        .find(|c| c.function == "bare")
        .or_else(|| cases.iter().find(|c| c.function.starts_with("bare")))
        .copied()
}

/// Cases by group, then by parameter (`value_str`, e.g. an endpoint count), sorted.
type Groups<'a> = BTreeMap<&'a str, BTreeMap<Option<&'a str>, Vec<&'a Case>>>;

fn by_group(cases: &[Case]) -> Groups<'_> {
    let mut groups: Groups<'_> = BTreeMap::new();
    for case in cases {
        groups
            .entry(case.group.as_str())
            .or_default()
            .entry(case.value.as_deref())
            .or_default()
            .push(case);
    }
    for params in groups.values_mut() {
        for list in params.values_mut() {
            list.sort_by(|a, b| a.function.cmp(&b.function));
        }
    }
    groups
}

/// `bare` has no parameter in a parameterised group: it applies to every parameter.
fn group_bare<'a>(params: &BTreeMap<Option<&'a str>, Vec<&'a Case>>) -> Option<&'a Case> {
    params.get(&None).and_then(|list| bare(list))
}

/// The issue-12 goals for the full stack on one thread: at most this many ns over the bare
/// service, and the peer's overhead at least this many times Palisade's.
const GOAL_OVERHEAD_NS: f64 = 100.0;
const GOAL_PEER_RATIO: f64 = 5.0;

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "not met" }
}

/// The headline line of one stack group: what Palisade and the peer add over `bare`, and the
/// overheads' ratio (peer / Palisade) when the peer ran.
fn stack_line(
    groups: &Groups<'_>,
    group: &str,
    threads: &str,
) -> Option<(String, f64, Option<f64>)> {
    let list = groups.get(group).and_then(|p| p.get(&None))?;
    let find = |name: &str| list.iter().find(|c| c.function == name);
    let (bare, palisade) = (find("bare")?, find("palisade")?);
    let ours = palisade.median_ns - bare.median_ns;
    let mut line = format!(
        "- **Full stack, {threads}:** Palisade adds {} per call over the bare service",
        fmt_ns(ours)
    );
    let mut peer_ratio = None;
    if let Some(peer) = find("tower_resilience") {
        let theirs = peer.median_ns - bare.median_ns;
        peer_ratio = Some(theirs / ours);
        let _ = write!(
            line,
            "; tower + tower-resilience adds {}: peer overhead / Palisade overhead = {} \
             (whole call: Palisade / peer = {})",
            fmt_ns(theirs),
            fmt_ratio(theirs / ours),
            fmt_ratio(palisade.median_ns / peer.median_ns),
        );
    }
    line.push('.');
    Some((line, ours, peer_ratio))
}

fn headline(out: &mut String, groups: &Groups<'_>) {
    let mut lines = Vec::new();
    // The one-thread figures, to check the goals against.
    let mut one_thread: Option<(f64, Option<f64>)> = None;
    // `stack/success_1_thread`, then `stack/success_<n>_threads` for each thread count.
    let mut stacks: Vec<(usize, &str)> = groups
        .keys()
        .filter_map(|group| {
            let n = group.strip_prefix("stack/success_")?.split('_').next()?;
            Some((n.parse().ok()?, *group))
        })
        .collect();
    stacks.sort_unstable();
    for (n, group) in stacks {
        let threads = if n == 1 {
            "one thread".to_owned()
        } else {
            format!("{n} threads sharing one stack")
        };
        let Some((line, ours, peer_ratio)) = stack_line(groups, group, &threads) else {
            continue;
        };
        if n == 1 {
            one_thread = Some((ours, peer_ratio));
        }
        lines.push(line);
    }
    if let Some((line, _, _)) = stack_line(
        groups,
        "stack/success_deadline_1_thread",
        "one thread, with the retry's deadline and per-attempt timeout (tokio timers)",
    ) {
        lines.push(line);
    }
    if lines.is_empty() {
        return;
    }
    out.push_str("## Headline\n\n");
    for line in lines {
        out.push_str(&line);
        out.push('\n');
    }
    let _ = write!(
        out,
        "\nGoal (issue 12): the full stack adds ≤ {GOAL_OVERHEAD_NS:.0} ns per call on one \
         thread and is ≥ {GOAL_PEER_RATIO:.0}× cheaper than the tower + tower-resilience \
         equivalent."
    );
    if let Some((ours, peer_ratio)) = one_thread {
        let _ = write!(
            out,
            " This run, one thread: {} added ({}); ",
            fmt_ns(ours),
            verdict(ours <= GOAL_OVERHEAD_NS)
        );
        match peer_ratio {
            Some(ratio) => {
                let _ = write!(
                    out,
                    "peer overhead / Palisade overhead {} ({}).",
                    fmt_ratio(ratio),
                    verdict(ratio >= GOAL_PEER_RATIO)
                );
            }
            None => out.push_str("no tower + tower-resilience case to compare with."),
        }
    }
    out.push_str("\n\n");
}

fn observability(out: &mut String, groups: &Groups<'_>) {
    let rows: Vec<_> = groups
        .iter()
        .filter_map(|(group, params)| {
            let case = group.strip_prefix("observability/")?;
            let list = params.get(&None)?;
            let find = |name: &str| list.iter().find(|c| c.function == name).copied();
            Some((
                case,
                find("features_off"),
                find("features_on"),
                find("features_on_recorder"),
                find("features_on_prometheus"),
            ))
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    out.push_str("## Observability\n\n");
    out.push_str(
        "The success path, one thread, built without and with the `metrics` and `tracing` \
         features (`--features obs`); `on + recorder`: under a `metrics` recorder with real \
         atomic handles, no tracing subscriber; `on + Prometheus`: under \
         `metrics-exporter-prometheus`'s recorder, the one a service exporting to Prometheus \
         installs. Goal (issue 14): `on + recorder` ≤ 1.2× `off`.\n\n",
    );
    out.push_str(
        "| case | off | on | on / off | on + recorder | on + recorder / off | on + Prometheus | on + Prometheus / off |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    let cell = |c: Option<&Case>| c.map_or_else(|| "–".to_owned(), |c| fmt_ns(c.median_ns));
    let ratio = |c: Option<&Case>, off: Option<&Case>| match (c, off) {
        (Some(c), Some(off)) => fmt_ratio(c.median_ns / off.median_ns),
        _ => "–".to_owned(),
    };
    for (case, off, on, recorder, prometheus) in rows {
        let _ = writeln!(
            out,
            "| {case} | {} | {} | {} | {} | {} | {} | {} |",
            cell(off),
            cell(on),
            ratio(on, off),
            cell(recorder),
            ratio(recorder, off),
            cell(prometheus),
            ratio(prometheus, off)
        );
    }
    out.push('\n');
}

fn layer_tables(out: &mut String, groups: &Groups<'_>) {
    let mut current_layer = None;
    for (group, params) in groups {
        if group.starts_with("observability/") {
            continue;
        }
        let layer = group.split('/').next().unwrap_or(group);
        if current_layer != Some(layer) {
            let _ = writeln!(out, "## {layer}\n");
            current_layer = Some(layer);
        }
        let _ = writeln!(out, "### `{group}`\n");
        out.push_str("| case | median | over bare | Palisade / case |\n");
        out.push_str("|---|---:|---:|---:|\n");
        let bare_all = group_bare(params);
        for (value, list) in params {
            let bare_here = bare(list).or(bare_all);
            let palisade = reference(list);
            for case in list {
                let name = match value {
                    Some(v) => format!("{} ({v})", case.function),
                    None => case.function.clone(),
                };
                let over = match bare_here {
                    Some(b) if !std::ptr::eq(b, *case) => fmt_ns(case.median_ns - b.median_ns),
                    _ => "–".to_owned(),
                };
                // A ratio against the bare service says nothing: only layers are compared.
                let ratio = match palisade {
                    Some(p) if !case.function.starts_with("bare") => {
                        fmt_ratio(p.median_ns / case.median_ns)
                    }
                    _ => "–".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "| {name} | {} | {over} | {ratio} |",
                    fmt_ns(case.median_ns)
                );
            }
        }
        out.push('\n');
    }
}

/// `rustc --version` of the toolchain cargo uses (`$RUSTC`, else `rustc`).
fn toolchain() -> String {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown (`rustc --version` failed)".to_owned())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown (no /proc/cpuinfo model name)".to_owned())
}

/// `YYYY-MM-DD HH:MM UTC` of a Unix time (Hinnant's days-to-civil).
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3_600,
        rem % 3_600 / 60
    )
}

fn render(args: &Args, cases: &[Case]) -> String {
    let groups = by_group(cases);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mut out = String::from("# Benchmark results\n\n");
    if let Some(note) = &args.note {
        let _ = writeln!(out, "> **{note}**\n");
    }
    let _ = writeln!(
        out,
        "Written by `benches/report.sh` from criterion's medians (time per call). Read the \
         ratios: they come from one run on one machine.\n\n\
         - Machine: {} ({cores} cores available, `nproc`), {} {}\n\
         - Toolchain: {}, `--release` (the bench profile)\n\
         - Date: {}\n\
         - Command: `{}`\n\
         - Cases: {}\n",
        cpu_model(),
        std::env::consts::OS,
        std::env::consts::ARCH,
        toolchain(),
        utc(now),
        args.command,
        cases.len(),
    );
    out.push_str(
        "Columns: *over bare* is the case's median minus its group's bare inner service \
         (the layer's own cost per call); *Palisade / case* is the group's Palisade case \
         divided by this case (below 1: Palisade is faster).\n\n",
    );
    headline(&mut out, &groups);
    observability(&mut out, &groups);
    layer_tables(&mut out, &groups);
    out
}

fn main() -> std::process::ExitCode {
    let run = || -> Result<(), String> {
        let args = parse_args()?;
        let mut cases = Vec::new();
        find_cases(&args.criterion_dir, args.since, &mut cases)?;
        if cases.is_empty() {
            return Err(format!(
                "no criterion results under {}{}",
                args.criterion_dir.display(),
                if args.since.is_some() {
                    " written since --since"
                } else {
                    ""
                }
            ));
        }
        let text = render(&args, &cases);
        std::fs::write(&args.out, text).map_err(|e| format!("{}: {e}", args.out.display()))?;
        println!("wrote {} ({} cases)", args.out.display(), cases.len());
        Ok(())
    };
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("report: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(group: &str, function: &str, value: Option<&str>, median_ns: f64) -> Case {
        Case {
            group: group.to_owned(),
            function: function.to_owned(),
            value: value.map(str::to_owned),
            median_ns,
        }
    }

    fn args() -> Args {
        Args {
            criterion_dir: PathBuf::from("unused"),
            out: PathBuf::from("unused"),
            command: "benches/report.sh".to_owned(),
            since: None,
            note: Some("Smoke run".to_owned()),
        }
    }

    #[test]
    fn tables_headline_and_observability() {
        let cases = [
            case("stack/success_1_thread", "bare", None, 10.0),
            case("stack/success_1_thread", "palisade", None, 60.0),
            case("stack/success_1_thread", "tower_resilience", None, 510.0),
            case("stack/success_16_threads", "bare", None, 1.0),
            case("stack/success_16_threads", "palisade", None, 101.0),
            case("stack/success_deadline_1_thread", "bare", None, 10.0),
            case("stack/success_deadline_1_thread", "palisade", None, 210.0),
            case(
                "stack/success_deadline_1_thread",
                "tower_resilience",
                None,
                2010.0,
            ),
            case(
                "observability/retry_success_1_thread",
                "features_off",
                None,
                20.0,
            ),
            case(
                "observability/retry_success_1_thread",
                "features_on",
                None,
                21.0,
            ),
            case(
                "observability/retry_success_1_thread",
                "features_on_recorder",
                None,
                30.0,
            ),
            case("load_balancer/pick_call_1_thread", "bare", None, 2.0),
            case(
                "load_balancer/pick_call_1_thread",
                "palisade P2cPeakEwma",
                Some("10"),
                32.0,
            ),
            case(
                "load_balancer/pick_call_1_thread",
                "tower p2c PeakEwma",
                Some("10"),
                64.0,
            ),
        ];
        let text = render(&args(), &cases);
        assert!(
            text.starts_with("# Benchmark results\n\n> **Smoke run**"),
            "{text}"
        );
        assert!(text.contains("- Command: `benches/report.sh`"), "{text}");
        assert!(text.contains("- Toolchain: "), "{text}");
        assert!(
            text.contains(&format!(
                "cores available, `nproc`), {} {}",
                std::env::consts::OS,
                std::env::consts::ARCH
            )),
            "{text}"
        );
        // 50 ns added, the peer's overhead 10× it: both goals met.
        assert!(
            text.contains(
                "This run, one thread: 50.0 ns added (met); peer overhead / Palisade overhead \
                 10.00× (met)."
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "Palisade adds 50.0 ns per call over the bare service; tower + \
                 tower-resilience adds 500 ns: peer overhead / Palisade overhead = 10.00×"
            ),
            "{text}"
        );
        // The deadline group gets its own line and leaves the one-thread goal alone.
        assert!(
            text.contains(
                "- **Full stack, one thread, with the retry's deadline and per-attempt timeout \
                 (tokio timers):** Palisade adds 200 ns per call over the bare service; tower + \
                 tower-resilience adds 2000 ns: peer overhead / Palisade overhead = 10.00×"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "| retry_success_1_thread | 20.0 ns | 21.0 ns | 1.05× | 30.0 ns | 1.50× | – | – |"
            ),
            "{text}"
        );
        assert!(text.contains("| bare | 10.0 ns | – | – |"), "{text}");
        assert!(
            text.contains("| tower_resilience | 510 ns | 500 ns | 0.12× |"),
            "{text}"
        );
        // A parameterised group: the ratio within the parameter, over the group's bare.
        assert!(
            text.contains("| tower p2c PeakEwma (10) | 64.0 ns | 62.0 ns | 0.50× |"),
            "{text}"
        );
        assert!(text.contains("## load_balancer\n"), "{text}");
    }

    #[test]
    fn goals_not_met_are_said_so() {
        let cases = [
            case("stack/success_1_thread", "bare", None, 10.0),
            case("stack/success_1_thread", "palisade", None, 310.0),
            case("stack/success_1_thread", "tower_resilience", None, 1210.0),
        ];
        let text = render(&args(), &cases);
        assert!(
            text.contains(
                "This run, one thread: 300 ns added (not met); peer overhead / Palisade \
                 overhead 4.00× (not met)."
            ),
            "{text}"
        );
        // No peer case: the ratio goal is not judged.
        let text = render(&args(), &cases[..2]);
        assert!(
            text.contains(
                "300 ns added (not met); no tower + tower-resilience case to compare with."
            ),
            "{text}"
        );
        // No one-thread stack case: no verdict at all.
        let text = render(
            &args(),
            &[case("stack/success_2_threads", "bare", None, 1.0)],
        );
        assert!(!text.contains("This run"), "{text}");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13 UTC");
    }
}
