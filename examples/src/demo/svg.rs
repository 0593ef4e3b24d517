//! The timeline picture, hand-written SVG (no dependency): success rate, p99 latency,
//! per-endpoint traffic share and each endpoint's health over time, for both clients, with the
//! phases shaded.

use super::{BUCKET, Config, ENDPOINTS, Fate, Report, Run};
use std::fmt::Write as _;
use std::time::Duration;

const WIDTH: f64 = 1100.0;
const LEFT: f64 = 150.0;
const RIGHT: f64 = 20.0;
const PANEL: f64 = 110.0;
const GAP: f64 = 46.0;
const TOP: f64 = 70.0;
const BARE: &str = "#d62728";
const PALISADE: &str = "#1f77b4";
const ENDPOINT_COLOURS: [&str; ENDPOINTS] = ["#4c78a8", "#f58518", "#54a24b"];
/// Samples per plotted point (2 × 100 ms).
const STEP: usize = 2;

struct Plot {
    out: String,
    total: f64,
}

impl Plot {
    fn x(&self, t: f64) -> f64 {
        LEFT + (WIDTH - LEFT - RIGHT) * (t / self.total).clamp(0.0, 1.0)
    }

    fn text(&mut self, x: f64, y: f64, anchor: &str, size: u32, text: &str) {
        let _ = writeln!(
            self.out,
            r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}" font-size="{size}">{text}</text>"#
        );
    }

    /// A panel frame with a title, y ticks and the x axis.
    fn frame(&mut self, top: f64, title: &str, ticks: &[(f64, String)]) {
        let right = WIDTH - RIGHT;
        let _ = writeln!(
            self.out,
            r##"<rect x="{LEFT}" y="{top}" width="{w:.1}" height="{PANEL}" fill="none" stroke="#444"/>"##,
            w = right - LEFT
        );
        self.text(LEFT, top - 6.0, "start", 13, title);
        for (frac, label) in ticks {
            let y = top + PANEL * (1.0 - frac);
            let _ = writeln!(
                self.out,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="#ccc" stroke-dasharray="2,3"/>"##
            );
            self.text(LEFT - 5.0, y + 4.0, "end", 11, label);
        }
        let mut t = 0.0;
        let every = if self.total > 60.0 {
            10.0
        } else if self.total > 20.0 {
            5.0
        } else {
            1.0
        };
        while t <= self.total + 1e-9 {
            let x = self.x(t);
            let bottom = top + PANEL;
            let _ = writeln!(
                self.out,
                r##"<line x1="{x:.1}" y1="{bottom}" x2="{x:.1}" y2="{:.1}" stroke="#444"/>"##,
                bottom + 4.0
            );
            self.text(x, bottom + 15.0, "middle", 10, &format!("{t:.0}"));
            t += every;
        }
        self.text(
            right,
            top + PANEL + 27.0,
            "end",
            10,
            "time (virtual seconds)",
        );
    }

    fn polyline(&mut self, points: &[(f64, f64)], colour: &str) {
        // Break the line where a value is missing (NaN).
        for run in points.split(|(_, y)| y.is_nan()) {
            if run.len() < 2 {
                continue;
            }
            let path: Vec<String> = run.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = writeln!(
                self.out,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="1.6"/>"#,
                path.join(" ")
            );
        }
    }

    fn legend(&mut self, x: f64, y: f64, items: &[(&str, &str)]) {
        let mut x = x;
        for (colour, label) in items {
            let _ = writeln!(
                self.out,
                r##"<rect x="{x:.1}" y="{:.1}" width="12" height="10" fill="{colour}" stroke="#999" stroke-width="0.5"/>"##,
                y - 9.0
            );
            self.text(x + 16.0, y, "start", 11, label);
            x += 24.0 + 7.0 * label.len() as f64;
        }
    }
}

/// Per plotted point of one run: start time, success %, p99 of successes.
fn series(run: &Run, config: &Config) -> Vec<(f64, Option<f64>, Option<Duration>)> {
    let width = BUCKET * STEP as u32;
    let total = config.phase * config.scenario.phases().len() as u32;
    let n = (total.as_nanos() / width.as_nanos()) as usize;
    let mut buckets: Vec<(usize, Vec<Duration>)> = vec![(0, Vec::new()); n];
    for r in &run.records {
        let b = ((r.issued.as_nanos() / width.as_nanos()) as usize).min(n - 1);
        buckets[b].0 += 1;
        if r.fate == Fate::Ok {
            buckets[b].1.push(r.latency);
        }
    }
    buckets
        .into_iter()
        .enumerate()
        .map(|(i, (count, mut ok))| {
            ok.sort();
            let t = (width * i as u32).as_secs_f64();
            let pct = (count > 0).then(|| 100.0 * ok.len() as f64 / count as f64);
            let p99 = (!ok.is_empty()).then(|| ok[(ok.len() * 99 / 100).min(ok.len() - 1)]);
            (t, pct, p99)
        })
        .collect()
}

/// One plotted span of the fleet: start, end, each endpoint's calls, failures and ejection.
type Span = (
    f64,
    f64,
    [u64; ENDPOINTS],
    [u64; ENDPOINTS],
    [bool; ENDPOINTS],
);

/// Per plotted point: start, end, each endpoint's calls, failures and ejection.
fn fleet(run: &Run) -> Vec<Span> {
    run.samples
        .windows(STEP + 1)
        .step_by(STEP)
        .map(|w| {
            let (a, b) = (&w[0], &w[STEP]);
            let calls = std::array::from_fn(|i| b.stats[i].calls - a.stats[i].calls);
            let bad = |s: &palisade::common::test_util::FleetStats| {
                s.failed + s.down + s.queue_full + s.hung
            };
            let failed = std::array::from_fn(|i| bad(&b.stats[i]) - bad(&a.stats[i]));
            let ejected = std::array::from_fn(|i| w.iter().any(|s| s.ejected[i]));
            (
                a.at.as_secs_f64(),
                b.at.as_secs_f64(),
                calls,
                failed,
                ejected,
            )
        })
        .collect()
}

/// The SVG document.
pub(super) fn timeline(config: &Config, bare: &Run, palisade: &Run, report: &Report) -> String {
    let phases = config.scenario.phases();
    let total = (config.phase * phases.len() as u32).as_secs_f64();
    let height = TOP + 5.0 * (PANEL + GAP) + 34.0;
    let mut p = Plot {
        out: String::new(),
        total,
    };
    let _ = writeln!(
        p.out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">"#
    );
    let _ = writeln!(p.out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    p.text(
        LEFT,
        22.0,
        "start",
        16,
        &format!(
            "Palisade demo: one incident, two clients ({:?}, seed {}, {} s phases)",
            config.scenario,
            config.seed,
            config.phase.as_secs_f64()
        ),
    );
    p.legend(
        LEFT,
        42.0,
        &[
            (BARE, "bare round-robin client"),
            (
                PALISADE,
                "default Palisade stack (retry > bulkhead > balancer)",
            ),
        ],
    );

    // Phases: shaded bands behind every panel, labelled at the top.
    for (n, kind) in phases.iter().enumerate() {
        let (x0, x1) = (
            p.x(config.phase.as_secs_f64() * n as f64),
            p.x(config.phase.as_secs_f64() * (n + 1) as f64),
        );
        let fill = if n % 2 == 0 { "#f2f2f2" } else { "#e3e8f0" };
        let _ = writeln!(
            p.out,
            r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{fill}"/>"#,
            TOP - 8.0,
            x1 - x0,
            5.0 * (PANEL + GAP) - GAP + 8.0
        );
        p.text((x0 + x1) / 2.0, TOP + 8.0, "middle", 12, kind.label());
    }

    // 1. Success rate.
    let mut top = TOP + 36.0;
    let ticks: Vec<(f64, String)> = [0.0, 50.0, 90.0, 100.0]
        .iter()
        .map(|v| (v / 100.0, format!("{v:.0} %")))
        .collect();
    p.frame(
        top,
        "success rate (requests answered within the deadline, per 200 ms)",
        &ticks,
    );
    for (run, colour) in [(bare, BARE), (palisade, PALISADE)] {
        let points: Vec<(f64, f64)> = series(run, config)
            .iter()
            .map(|(t, pct, _)| {
                (
                    p.x(*t + 0.1),
                    pct.map_or(f64::NAN, |v| top + PANEL * (1.0 - v / 100.0)),
                )
            })
            .collect();
        p.polyline(&points, colour);
    }

    // 2. p99 latency, log scale 1 ms .. 2 s.
    top += PANEL + GAP;
    let (lo, hi) = (1.0f64.ln(), 2000.0f64.ln());
    let frac = |ms: f64| ((ms.max(1.0).ln() - lo) / (hi - lo)).clamp(0.0, 1.0);
    let ticks: Vec<(f64, String)> = [
        (1.0, "1 ms"),
        (10.0, "10 ms"),
        (100.0, "100 ms"),
        (1000.0, "1 s"),
    ]
    .iter()
    .map(|(v, l)| (frac(*v), (*l).to_owned()))
    .collect();
    p.frame(top, "p99 latency of the successes (log scale)", &ticks);
    for (run, colour) in [(bare, BARE), (palisade, PALISADE)] {
        let points: Vec<(f64, f64)> = series(run, config)
            .iter()
            .map(|(t, _, p99)| {
                (
                    p.x(*t + 0.1),
                    p99.map_or(f64::NAN, |d| {
                        top + PANEL * (1.0 - frac(d.as_secs_f64() * 1e3))
                    }),
                )
            })
            .collect();
        p.polyline(&points, colour);
    }

    // 3, 4. Traffic share per endpoint, stacked.
    for run in [bare, palisade] {
        top += PANEL + GAP;
        let ticks = vec![
            (0.0, "0 %".to_owned()),
            (0.5, "50 %".to_owned()),
            (1.0, "100 %".to_owned()),
        ];
        p.frame(
            top,
            &format!(
                "{}: share of the fleet's calls per endpoint",
                run.client.label()
            ),
            &ticks,
        );
        for (t0, t1, calls, _, _) in fleet(run) {
            let sum: u64 = calls.iter().sum();
            if sum == 0 {
                continue;
            }
            let mut y = top + PANEL;
            for (i, c) in calls.iter().enumerate() {
                let h = PANEL * *c as f64 / sum as f64;
                y -= h;
                let _ = writeln!(
                    p.out,
                    r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" fill="{}"/>"#,
                    p.x(t0),
                    p.x(t1) - p.x(t0) + 0.3,
                    ENDPOINT_COLOURS[i]
                );
            }
        }
        let names: Vec<String> = (0..ENDPOINTS).map(|i| format!("e{i}")).collect();
        let items: Vec<(&str, &str)> = (0..ENDPOINTS)
            .map(|i| (ENDPOINT_COLOURS[i], names[i].as_str()))
            .collect();
        p.legend(WIDTH - RIGHT - 170.0, top - 6.0, &items);
    }

    // 5. Health strips.
    top += PANEL + GAP;
    p.frame(
        top,
        "endpoint health per client: what the endpoint answered that client",
        &[],
    );
    let strip = PANEL / (2 * ENDPOINTS) as f64;
    for (r, run) in [bare, palisade].iter().enumerate() {
        for i in 0..ENDPOINTS {
            let y = top + strip * (r * ENDPOINTS + i) as f64;
            p.text(
                LEFT - 5.0,
                y + strip * 0.7,
                "end",
                10,
                &format!("{} e{i}", run.client.label()),
            );
            for (t0, t1, calls, failed, ejected) in fleet(run) {
                let slow = phases[super::phase_index(config, Duration::from_secs_f64(t0))]
                    .slow_endpoint()
                    == Some(i);
                let colour = if ejected[i] {
                    "#7f7f7f"
                } else if calls[i] == 0 {
                    "#ffffff"
                } else if failed[i] * 2 > calls[i] {
                    "#d62728"
                } else if failed[i] > 0 {
                    "#ff9896"
                } else if slow {
                    "#f2b701"
                } else {
                    "#98df8a"
                };
                let _ = writeln!(
                    p.out,
                    r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}"/>"#,
                    p.x(t0),
                    y + 1.0,
                    p.x(t1) - p.x(t0) + 0.3,
                    strip - 2.0
                );
            }
        }
    }
    p.legend(
        LEFT,
        top + PANEL + 40.0,
        &[
            ("#98df8a", "served"),
            ("#f2b701", "served, 10x slow"),
            ("#ff9896", "some calls failed or refused"),
            ("#d62728", "most failed or refused"),
            ("#ffffff", "no calls (routed around)"),
            ("#7f7f7f", "ejected by the balancer"),
        ],
    );
    // The headline numbers, for the picture alone.
    if let Some(worst) = report
        .phases
        .chunks(2)
        .filter_map(|pair| pair.get(1).map(|pal| (pair[0].ok_pct, pal)))
        .find(|(_, pal)| pal.phase.failing_endpoint().is_some())
    {
        p.text(
            WIDTH - RIGHT,
            22.0,
            "end",
            11,
            &format!(
                "while {}: bare {:.1} % ok, palisade {:.2} % ok",
                worst.1.phase.label(),
                worst.0,
                worst.1.ok_pct
            ),
        );
    }
    p.out.push_str("</svg>\n");
    p.out
}
