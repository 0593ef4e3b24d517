//! The printed comparison: one row per phase and client, a legend, a de-duplicated event log.

use super::{
    BUCKET, CAPACITY, Client, Config, ENDPOINTS, Fate, MEAN_SERVICE, Notable, PhaseKind, Run,
    WORKERS, phase_index,
};
use std::fmt;
use std::time::Duration;

/// What one client got in one phase.
#[derive(Clone, Debug)]
pub struct PhaseReport {
    /// The phase.
    pub phase: PhaseKind,
    /// The client.
    pub client: Client,
    /// Requests issued (sent) in the phase.
    pub requests: usize,
    /// How many of them were answered within the deadline, whether they finished inside the
    /// phase or after it: a request counts in the phase that sent it, the same for both
    /// clients.
    pub ok: usize,
    /// `ok` as a percentage of `requests`.
    pub ok_pct: f64,
    /// Median latency of the successes.
    pub p50: Option<Duration>,
    /// 99th percentile latency of the successes.
    pub p99: Option<Duration>,
    /// Percentage of the fleet's calls (attempts) that went to the phase's slow endpoint.
    pub to_slow_pct: Option<f64>,
    /// Percentage of the fleet's calls that went to the phase's failing endpoint.
    pub to_failing_pct: Option<f64>,
    /// Calls the fleet received per request (retries make it more than 1).
    pub load: f64,
    /// Percentage of the requests refused locally, at once (a Palisade layer said no).
    pub rejected_pct: f64,
    /// Each endpoint's share of the fleet's calls in the phase, in percent.
    pub shares: [f64; ENDPOINTS],
    /// Successes of requests issued in the phase that finished after it ended (`ok` less
    /// these finished within the phase).
    pub finished_after: usize,
    /// The longest stretch from the phase's start in which an endpoint received no call while
    /// the client refused requests locally (capacity left idle); `None`: no such stretch of at
    /// least one 100 ms bucket. Always `None` for the bare client, which refuses nothing.
    pub idle_at_start: Option<IdleStart>,
    /// From the phase's start until every later 100 ms of it had ≥ 99 % success; `None`:
    /// not within the phase.
    pub recover: Option<Duration>,
}

/// An endpoint that got no call at the start of a phase while the client refused requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdleStart {
    /// The endpoint.
    pub endpoint: usize,
    /// From the phase's start, in whole 100 ms buckets.
    pub duration: Duration,
    /// Requests the client refused locally meanwhile.
    pub refused: usize,
}

/// The whole comparison.
#[derive(Clone, Debug)]
pub struct Report {
    /// One per phase and client, phase by phase, bare first.
    pub phases: Vec<PhaseReport>,
    /// The de-duplicated event log of the Palisade stack.
    pub log: Vec<String>,
    /// The length of a phase.
    pub phase: Duration,
    header: String,
}

impl Report {
    pub(super) fn new(config: &Config, bare: &Run, palisade: &Run) -> Report {
        let mut phases = Vec::new();
        for (n, kind) in config.scenario.phases().iter().enumerate() {
            for run in [bare, palisade] {
                phases.push(phase_report(config, run, n, *kind));
            }
        }
        Report {
            phases,
            log: event_log(config, palisade),
            phase: config.phase,
            header: format!(
                "Palisade demo: {} phases of {} s (scenario {:?}, seed {}), 3 endpoints x {} \
                 workers (~{:.0} req/s capacity), {:.0} req/s offered ({:.0} in the surge), \
                 caller deadline {} s. Virtual time.",
                config.scenario.phases().len(),
                config.phase.as_secs_f64(),
                config.scenario,
                config.seed,
                super::WORKERS,
                super::CAPACITY,
                super::NORMAL_RATE,
                PhaseKind::Surge.rate(),
                super::CALLER_DEADLINE.as_secs(),
            ),
        }
    }

    /// The report of `client` in phase number `n`.
    pub fn get(&self, n: usize, client: Client) -> &PhaseReport {
        &self.phases[2 * n + usize::from(client == Client::Palisade)]
    }
}

fn phase_report(config: &Config, run: &Run, n: usize, phase: PhaseKind) -> PhaseReport {
    let from = config.phase * n as u32;
    let until = from + config.phase;
    let records: Vec<_> = run
        .records
        .iter()
        .filter(|r| r.issued >= from && r.issued < until)
        .collect();
    let requests = records.len();
    let pct = |count: usize| 100.0 * count as f64 / requests.max(1) as f64;
    let mut ok: Vec<Duration> = records
        .iter()
        .filter(|r| r.fate == Fate::Ok)
        .map(|r| r.latency)
        .collect();
    ok.sort();
    let quantile =
        |q: f64| (!ok.is_empty()).then(|| ok[((ok.len() as f64 * q) as usize).min(ok.len() - 1)]);
    let rejected = records.iter().filter(|r| r.fate == Fate::Rejected).count();

    // The fleet's calls in the phase, from the samples at its edges.
    let at = |t: Duration| {
        run.samples
            .iter()
            .find(|s| s.at >= t)
            .or(run.samples.last())
            .map(|s| s.stats.map(|st| st.calls))
            .unwrap_or([0; ENDPOINTS])
    };
    let (c0, c1) = (at(from), at(until));
    let calls: [u64; ENDPOINTS] = std::array::from_fn(|i| c1[i] - c0[i]);
    let fleet_calls: u64 = calls.iter().sum();
    let share = |i: usize| 100.0 * calls[i] as f64 / fleet_calls.max(1) as f64;

    // Recovery: success per 100 ms bucket of issue time.
    let buckets = (config.phase.as_nanos() / BUCKET.as_nanos()).max(1) as usize;
    let mut per = vec![(0usize, 0usize); buckets];
    let mut refused = vec![0usize; buckets];
    for r in &records {
        let b = (((r.issued - from).as_nanos() / BUCKET.as_nanos()) as usize).min(buckets - 1);
        per[b].0 += 1;
        per[b].1 += usize::from(r.fate == Fate::Ok);
        refused[b] += usize::from(r.fate == Fate::Rejected);
    }
    let idle_at_start = (0..ENDPOINTS)
        .filter_map(|endpoint| {
            // Leading buckets in which the endpoint got no call and the client refused some.
            let calls = |b: usize| {
                let t = from + BUCKET * b as u32;
                at(t + BUCKET)[endpoint] - at(t)[endpoint]
            };
            let idle = (0..buckets)
                .take_while(|&b| calls(b) == 0 && refused[b] > 0)
                .count();
            (idle > 0).then(|| IdleStart {
                endpoint,
                duration: BUCKET * idle as u32,
                refused: refused[..idle].iter().sum(),
            })
        })
        .max_by_key(|idle| (idle.duration, std::cmp::Reverse(idle.endpoint)));
    let good = |(n, ok): (usize, usize)| n == 0 || ok as f64 >= 0.99 * n as f64;
    let recover = match per.iter().rposition(|b| !good(*b)) {
        None => Some(Duration::ZERO),
        Some(last_bad) if last_bad + 1 < buckets => Some(BUCKET * (last_bad as u32 + 1)),
        Some(_) => None,
    };

    PhaseReport {
        phase,
        client: run.client,
        requests,
        ok: ok.len(),
        ok_pct: pct(ok.len()),
        p50: quantile(0.5),
        p99: quantile(0.99),
        to_slow_pct: phase.slow_endpoint().map(share),
        to_failing_pct: phase.failing_endpoint().map(share),
        load: fleet_calls as f64 / requests.max(1) as f64,
        rejected_pct: pct(rejected),
        recover,
        shares: std::array::from_fn(share),
        finished_after: records
            .iter()
            .filter(|r| r.fate == Fate::Ok && r.issued + r.latency > until)
            .count(),
        idle_at_start,
    }
}

/// Explains each phase where Palisade's success rate is below bare's, from what was measured.
fn notes(report: &Report) -> Vec<String> {
    let mut notes = Vec::new();
    for pair in report.phases.chunks(2) {
        let [bare, palisade] = pair else { continue };
        if palisade.ok_pct >= bare.ok_pct {
            continue;
        }
        let mut why = vec![format!(
            "{}: palisade {:.2} % < bare {:.2} %.",
            bare.phase.label(),
            palisade.ok_pct,
            bare.ok_pct
        )];
        let within = |p: &PhaseReport| p.ok - p.finished_after;
        if bare.finished_after > palisade.finished_after {
            why.push(format!(
                "Of the {} successes between them, {} are accounting: a request counts in the \
                 phase that sent it, and bare's full server queues kept working after the phase \
                 ended ({} of its successes finished after it, palisade {}), at p99 {} against \
                 palisade's {}. Within the phase bare finished {} successes and palisade {}; the \
                 fleet can finish about {:.0} in a phase of {}.",
                bare.ok - palisade.ok,
                bare.finished_after - palisade.finished_after,
                bare.finished_after,
                palisade.finished_after,
                ms(bare.p99),
                ms(palisade.p99),
                within(bare),
                within(palisade),
                CAPACITY * report.phase.as_secs_f64(),
                secs(report.phase),
            ));
        }
        if let Some(idle) = palisade.idle_at_start
            && within(palisade) < within(bare)
        {
            let endpoint = idle.endpoint;
            let failed_before = report
                .phases
                .iter()
                .take_while(|p| p.phase != palisade.phase)
                .any(|p| p.phase.failing_endpoint() == Some(endpoint));
            why.push(format!(
                "Palisade's balancer sent e{endpoint} no call for the first {} of the phase \
                 while Palisade refused {} requests at once{}: its {WORKERS} workers sat idle, \
                 room for about {:.0} requests ({WORKERS} x {} / {}); bare, blind to {}, sent \
                 it a third of its calls.",
                secs(idle.duration),
                idle.refused,
                if failed_before {
                    format!(
                        " (e{endpoint} failed in an earlier phase: the failure penalty of its \
                         last failure still priced it above the queued endpoints, and no call \
                         came to pay it off)"
                    )
                } else {
                    String::new()
                },
                WORKERS as f64 * idle.duration.as_secs_f64() / MEAN_SERVICE.as_secs_f64(),
                secs(idle.duration),
                ms(Some(MEAN_SERVICE)),
                if failed_before {
                    "the failure"
                } else {
                    "the fleet's state"
                },
            ));
        }
        if palisade.rejected_pct > 0.0 {
            why.push(format!(
                "Palisade refused {:.1} % of the requests at once{} where bare made them wait \
                 (bare's p99 {}, palisade's {}).",
                palisade.rejected_pct,
                if palisade.recover.is_some_and(|d| d < Duration::from_secs(1)) {
                    ", at the phase's start, while its bulkhead was still full of the previous \
                     phase's calls,"
                } else {
                    ""
                },
                ms(bare.p99),
                ms(palisade.p99)
            ));
        }
        let (lo, hi) = palisade
            .shares
            .iter()
            .enumerate()
            .fold((0, 0), |(lo, hi), (i, s)| {
                (
                    if *s < palisade.shares[lo] { i } else { lo },
                    if *s > palisade.shares[hi] { i } else { hi },
                )
            });
        if palisade.shares[hi] - palisade.shares[lo] > 3.0 {
            let failed_before = report
                .phases
                .iter()
                .take_while(|p| p.phase != palisade.phase)
                .any(|p| p.phase.failing_endpoint() == Some(lo));
            why.push(format!(
                "Palisade's balancer sent e{lo} {:.1} % of the calls and e{hi} {:.1} %, so e{lo} \
                 had idle workers while the others queued{}.",
                palisade.shares[lo],
                palisade.shares[hi],
                if failed_before {
                    format!(
                        " (e{lo} failed in an earlier phase: its failure penalty was still in \
                         its latency estimate)"
                    )
                } else {
                    String::new()
                }
            ));
        }
        notes.push(why.join(" "));
    }
    notes
}

fn ms(d: Option<Duration>) -> String {
    match d {
        None => "-".to_owned(),
        Some(d) if d < Duration::from_millis(10) => format!("{:.1} ms", d.as_secs_f64() * 1e3),
        Some(d) if d < Duration::from_secs(1) => format!("{:.0} ms", d.as_secs_f64() * 1e3),
        Some(d) => format!("{:.2} s", d.as_secs_f64()),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Ejections of one endpoint in a row (re-ejected within 2 s of being restored).
struct Episode {
    first: Duration,
    times: u32,
    shortest: Duration,
    longest: Duration,
    restored: Option<Duration>,
}

impl Episode {
    fn line(&self, endpoint: usize) -> (Duration, String) {
        let span = if self.shortest == self.longest {
            ms(Some(self.shortest))
        } else {
            format!("{} .. {}", ms(Some(self.shortest)), ms(Some(self.longest)))
        };
        let back = match self.restored {
            Some(t) => format!("back in rotation at {}", secs(t)),
            None => "still ejected at the end".to_owned(),
        };
        let what = if self.times == 1 {
            format!("ejected for {span}")
        } else {
            format!(
                "ejected -> restored -> ejected x{} (each {span})",
                self.times
            )
        };
        (self.first, format!("e{endpoint}: {what}; {back}"))
    }
}

/// The Palisade stack's events, collapsed: one line per ejection episode of an endpoint, one
/// per phase for refused retries, one per run of limit changes.
fn event_log(config: &Config, run: &Run) -> Vec<String> {
    let mut lines: Vec<(Duration, String)> = Vec::new();

    // Ejection episodes: an endpoint ejected again within 2 s of its restoration continues the
    // episode.
    for endpoint in 0..ENDPOINTS {
        let mut episode: Option<Episode> = None;
        for (t, event) in &run.events {
            match *event {
                Notable::Ejected {
                    endpoint: e,
                    duration,
                } if e == endpoint => match &mut episode {
                    Some(ep) if ep.restored.is_none_or(|r| *t - r <= Duration::from_secs(2)) => {
                        ep.times += 1;
                        ep.shortest = ep.shortest.min(duration);
                        ep.longest = ep.longest.max(duration);
                        ep.restored = None;
                    }
                    _ => {
                        if let Some(done) = episode.take() {
                            lines.push(done.line(endpoint));
                        }
                        episode = Some(Episode {
                            first: *t,
                            times: 1,
                            shortest: duration,
                            longest: duration,
                            restored: None,
                        });
                    }
                },
                Notable::Restored { endpoint: e } if e == endpoint => {
                    if let Some(ep) = episode.as_mut() {
                        ep.restored = Some(*t);
                    }
                }
                _ => {}
            }
        }
        if let Some(done) = episode {
            lines.push(done.line(endpoint));
        }
    }

    // Refusals (by the retry budget, the bulkhead, the balancer), one line per phase and kind.
    let phases = config.scenario.phases();
    let mut refused: Vec<(usize, &str, usize, Duration, Duration)> = Vec::new();
    for (t, event) in &run.events {
        let what = match event {
            Notable::BudgetExhausted => "retry budget",
            Notable::Refused(by) => by,
            _ => continue,
        };
        let phase = phase_index(config, *t);
        match refused.iter_mut().find(|r| r.0 == phase && r.1 == what) {
            Some(r) => {
                r.2 += 1;
                r.4 = *t;
            }
            None => refused.push((phase, what, 1, *t, *t)),
        }
    }
    for (phase, what, count, first, last) in refused {
        let text = if what == "retry budget" {
            format!(
                "the retry budget refused {count} retries (the last error was returned instead)"
            )
        } else {
            format!("{what}: {count} calls refused at once")
        };
        lines.push((
            first,
            format!(
                "{text} during \"{}\", until {}",
                phases[phase].label(),
                secs(last)
            ),
        ));
    }

    // Limit changes, collapsed into one line per run of changes.
    let changes: Vec<_> = run
        .events
        .iter()
        .filter_map(|(t, e)| match e {
            Notable::LimitChanged { from, to } => Some((*t, *from, *to)),
            _ => None,
        })
        .collect();
    if let (Some(first), Some(last)) = (changes.first(), changes.last()) {
        let lo = changes.iter().map(|c| c.2).min().unwrap_or(first.2);
        let hi = changes.iter().map(|c| c.2).max().unwrap_or(first.2);
        lines.push((
            first.0,
            format!(
                "bulkhead limit changed x{} ({} -> {}, between {lo} and {hi}) until {}",
                changes.len(),
                first.1,
                last.2,
                secs(last.0)
            ),
        ));
    }
    // Say why there is no ejection when an endpoint failed.
    let ejected = run
        .events
        .iter()
        .any(|(_, e)| matches!(e, Notable::Ejected { .. }));
    if !ejected {
        for (n, kind) in phases.iter().enumerate() {
            if let Some(endpoint) = kind.failing_endpoint() {
                let from = config.phase * n as u32;
                let calls = |t: Duration| {
                    run.samples
                        .iter()
                        .find(|s| s.at >= t)
                        .or(run.samples.last())
                        .map_or(0, |s| s.stats[endpoint].calls)
                };
                let why = if *kind == PhaseKind::Hung {
                    "no call to it failed (the retry's 500 ms attempt timeout dropped each \
                     one, and a dropped call is not a failure), but the balancer took each \
                     drop as a latency of at least 500 ms and steered traffic away"
                } else {
                    "the failure penalty steered traffic away before 5 failures in a row \
                     could eject it"
                };
                lines.push((
                    from,
                    format!(
                        "e{endpoint} never ejected: {} calls reached it while {}; {why}",
                        calls(from + config.phase) - calls(from),
                        kind.label(),
                    ),
                ));
            }
        }
    }
    lines.sort_by_key(|l| l.0);
    lines
        .into_iter()
        .map(|(t, text)| format!("{:>7}  {text}", secs(t)))
        .collect()
}

/// Writes `text` wrapped at 100 columns.
fn wrapped(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > 100 {
            writeln!(f, "{line}")?;
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        writeln!(f, "{line}")?;
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        wrapped(f, &self.header)?;
        writeln!(f)?;
        let header = [
            "phase",
            "client",
            "ok %",
            "in phase",
            "after",
            "p50",
            "p99",
            "to slow",
            "to failing",
            "load",
            "rejected",
            "recover",
        ];
        let mut rows: Vec<[String; 12]> = vec![header.map(str::to_owned)];
        for p in &self.phases {
            let opt_pct = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1} %"));
            rows.push([
                p.phase.label().to_owned(),
                p.client.label().to_owned(),
                format!("{:.2}", p.ok_pct),
                (p.ok - p.finished_after).to_string(),
                p.finished_after.to_string(),
                ms(p.p50),
                ms(p.p99),
                opt_pct(p.to_slow_pct),
                opt_pct(p.to_failing_pct),
                format!("{:.2}", p.load),
                format!("{:.1} %", p.rejected_pct),
                p.recover.map_or("never".to_owned(), secs),
            ]);
        }
        let widths: Vec<usize> = (0..header.len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        for (i, row) in rows.iter().enumerate() {
            if i > 1 && i % 2 == 1 {
                writeln!(f)?; // a blank line between phases
            }
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                // Text columns to the left, numbers to the right.
                if c < 2 {
                    line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
                } else {
                    line.push_str(&format!("{cell:>w$}  ", w = widths[c]));
                }
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        writeln!(f)?;
        wrapped(
            f,
            &format!(
                "ok %: requests sent in the phase answered within the deadline, counted in the \
                 phase that sent them whether they finished inside it or after (the same for both \
                 clients). in phase / after: those successes that finished before the phase ended \
                 / after it (a full queue keeps working after its phase; the fleet finishes about \
                 {CAPACITY:.0} a second). p50/p99: caller latency of those successes, retries \
                 included. to slow / to failing: share of the calls the fleet received that went \
                 to the endpoint slow / failing in this phase. load: calls the fleet received per \
                 request (retries count). rejected: refused at once by a Palisade layer, without \
                 waiting (bare: none, its refusals come from the servers' full queues and count as \
                 failures). recover: from the phase's start until every later 100 ms of it had >= \
                 99 % success (never: not within the phase; in a surge neither client can serve 3x \
                 the capacity)."
            ),
        )?;
        for note in notes(self) {
            writeln!(f)?;
            wrapped(f, &format!("Note, {note}"))?;
        }
        writeln!(f)?;
        if self.log.is_empty() {
            writeln!(
                f,
                "Palisade events: none (no endpoint ejected, no call refused, no retry refused by \
                 the budget, no limit change)."
            )?;
        } else {
            writeln!(f, "Palisade events (collapsed):")?;
            for line in &self.log {
                writeln!(f, "{line}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::{Client, Record, Sample, Scenario};
    use palisade::common::test_util::FleetStats;

    fn run_with(events: Vec<(Duration, Notable)>) -> Run {
        Run {
            client: Client::Palisade,
            records: Vec::new(),
            samples: Vec::new(),
            events,
        }
    }

    fn config() -> Config {
        Config {
            phase: Duration::from_secs(10),
            scenario: Scenario::Full,
            progress: false,
            ..Config::default()
        }
    }

    /// A run of `config()`: a request every 10 ms; every endpoint gets 10 calls per 100 ms,
    /// except `idle` for `idle_for` from the surge's start; with `refuse`, every 4th request of
    /// the surge is refused locally; `late` of the last 500 ms of the surge finish after it.
    fn synthetic(client: Client, idle: usize, idle_for: Duration, refuse: bool, late: u32) -> Run {
        let config = config();
        let total = config.phase * 5;
        let surge = config.phase * 3;
        let tick = Duration::from_millis(10);
        let mut records = Vec::new();
        let mut issued = Duration::ZERO;
        let mut late_left = late;
        while issued < total {
            let in_surge = issued >= surge && issued < surge + config.phase;
            let n = (issued.as_millis() / 10) as u32;
            let (fate, latency) = if in_surge && refuse && n.is_multiple_of(4) {
                (Fate::Rejected, Duration::ZERO)
            } else if in_surge && issued + tick * 50 >= surge + config.phase && late_left > 0 {
                late_left -= 1;
                (Fate::Ok, tick * 60)
            } else {
                (Fate::Ok, tick)
            };
            records.push(Record {
                issued,
                latency,
                fate,
            });
            issued += tick;
        }
        let mut samples = Vec::new();
        let mut stats = [FleetStats::default(); ENDPOINTS];
        let mut at = Duration::ZERO;
        while at <= total {
            samples.push(Sample {
                at,
                stats,
                ejected: [false; ENDPOINTS],
            });
            for (i, s) in stats.iter_mut().enumerate() {
                if !(i == idle && at >= surge && at < surge + idle_for) {
                    s.calls += 10;
                    s.served += 10;
                }
            }
            at += BUCKET;
        }
        Run {
            client,
            records,
            samples,
            events: Vec::new(),
        }
    }

    #[test]
    fn an_endpoint_left_idle_at_a_phase_start_is_measured_and_explained() {
        let ms = Duration::from_millis;
        let bare = synthetic(Client::Bare, 0, Duration::ZERO, false, 40);
        let palisade = synthetic(Client::Palisade, 1, ms(300), true, 5);
        let report = Report::new(&config(), &bare, &palisade);
        let surge = report.get(3, Client::Palisade);
        assert_eq!(surge.phase, PhaseKind::Surge);
        // 300 ms, and the refusals among its 30 requests (every 4th).
        assert_eq!(
            surge.idle_at_start,
            Some(IdleStart {
                endpoint: 1,
                duration: ms(300),
                refused: 8,
            })
        );
        assert_eq!(surge.finished_after, 5);
        // Bare refuses nothing: no idle stretch is its doing.
        assert_eq!(report.get(3, Client::Bare).idle_at_start, None);
        assert_eq!(report.get(3, Client::Bare).finished_after, 40);
        // Idle but nothing refused (the normal phase of neither run): not counted.
        assert_eq!(report.get(0, Client::Palisade).idle_at_start, None);
        let text = report
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            text.contains(
                "Palisade's balancer sent e1 no call for the first 0.3 s of the phase while \
                 Palisade refused 8 requests at once (e1 failed in an earlier phase"
            ),
            "{text}"
        );
        assert!(
            text.contains("room for about 120 requests (4 x 0.3 s / 10 ms)"),
            "{text}"
        );
        assert!(text.contains("35 are accounting"), "{text}");
    }

    #[test]
    fn repeated_ejections_of_one_endpoint_collapse_into_one_line() {
        let ms = Duration::from_millis;
        let mut events = Vec::new();
        // Seven ejections of e1, each restored and ejected again 100 ms later, then a second
        // episode long after; an ejection of e0 in between.
        for i in 0..7u64 {
            events.push((
                ms(20_000 + 400 * i),
                Notable::Ejected {
                    endpoint: 1,
                    duration: ms(30 * (i + 1)),
                },
            ));
            events.push((ms(20_300 + 400 * i), Notable::Restored { endpoint: 1 }));
        }
        events.push((
            ms(21_000),
            Notable::Ejected {
                endpoint: 0,
                duration: ms(30),
            },
        ));
        events.push((
            ms(28_000),
            Notable::Ejected {
                endpoint: 1,
                duration: ms(30),
            },
        ));
        let log = event_log(&config(), &run_with(events));
        assert_eq!(log.len(), 3, "{log:#?}");
        assert!(
            log[0].contains("e1: ejected -> restored -> ejected x7 (each 30 ms .. 210 ms)")
                && log[0].contains("back in rotation at 22.7 s"),
            "{log:#?}"
        );
        assert!(
            log[1].contains("e0: ejected for 30 ms; still ejected"),
            "{log:#?}"
        );
        assert!(log[2].contains("e1: ejected for 30 ms"), "{log:#?}");
    }

    #[test]
    fn refusals_collapse_per_phase_and_kind() {
        let ms = Duration::from_millis;
        let mut events = Vec::new();
        for i in 0..500u64 {
            events.push((ms(30_000 + i), Notable::Refused("bulkhead full")));
            events.push((ms(30_000 + i), Notable::BudgetExhausted));
        }
        events.push((ms(40_001), Notable::Refused("bulkhead full")));
        events.push((
            ms(30_000),
            Notable::Ejected {
                endpoint: 2,
                duration: ms(30),
            },
        ));
        let log = event_log(&config(), &run_with(events));
        let refusals: Vec<_> = log.iter().filter(|l| l.contains("refused")).collect();
        assert_eq!(refusals.len(), 3, "{log:#?}");
        assert!(
            refusals[0].contains("bulkhead full: 500 calls refused at once during \"surge 3x\""),
            "{log:#?}"
        );
        assert!(refusals[1].contains("refused 500 retries"), "{log:#?}");
        assert!(
            refusals[2].contains("1 calls refused at once during \"recovery\""),
            "{log:#?}"
        );
    }
}
