//! What a run found, three ways: a Markdown table for people (it pastes into `docs/BENCHMARKS.md` as is), JSON for
//! machines (`--json`), and an SVG of the latency CDFs, ours against the anchors (`--plot`). Each of our figures
//! is set beside each anchor's with the ratio hchat ÷ anchor, and the targets are judged met or missed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::Settings;
use super::anchors::{Anchor, Availability};
use super::scale::ScaleFigure;
use super::stats::{DmFigure, FanoutFigure, Latency, Throughput};
use super::{BenchError, Result};

/// One figure for hchat and for each anchor that measures the same thing.
#[derive(Debug, Clone, Serialize)]
pub struct Compared<T> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hchat: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ngircd: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mosquitto: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nginx: Option<T>,
}

impl<T> Default for Compared<T> {
    fn default() -> Self {
        Self {
            hchat: None,
            ngircd: None,
            mosquitto: None,
            nginx: None,
        }
    }
}

/// The machine the run was on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu: String,
    /// 1, 5 and 15 minute load averages when the run started (other work on the machine skews every figure).
    pub loadavg_at_start: String,
}

impl Machine {
    fn here() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let loadavg = std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".into());
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            loadavg_at_start: loadavg,
        }
    }
}

/// Whether a target of the issue is met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Met,
    Missed,
    /// The anchor it is judged against did not run.
    NotMeasured,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub target: &'static str,
    pub verdict: Verdict,
    pub detail: String,
}

/// hchat's figures 1 and 2 with every node on `--force-relay`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RelayRows {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dm: Option<DmFigure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fanout: Option<FanoutFigure>,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub hchat_version: &'static str,
    pub date_utc: String,
    pub machine: Machine,
    pub settings: Settings,
    /// How hchat's receiving clients read messages (figures 1 and 2; empty when neither ran).
    pub event_source: &'static str,
    /// Each anchor: `installed`, `missing: …` or `not asked (no --compare)`.
    pub anchors: BTreeMap<&'static str, String>,
    pub dm: Compared<DmFigure>,
    /// Figure 1 again with both hchat nodes keeping their store on disk (fsynced), as `hchat peer` runs.
    pub dm_durable: Option<DmFigure>,
    pub fanout: Compared<FanoutFigure>,
    /// Figures 1 and 2 again with every session through the tracker's relay (docs/SESSIONS.md, 12).
    pub relay: RelayRows,
    /// `GET /get-list` of a 100-member channel; nginx serves the same bytes as a static file.
    pub get_list: Compared<Throughput>,
    /// Lease renewals (`POST /submit-info`); nginx answers the same bytes to a POST.
    pub renew: Compared<Throughput>,
    pub scale: Option<ScaleFigure>,
    pub targets: Vec<Target>,
}

impl Report {
    pub fn new(settings: Settings) -> Report {
        Report {
            hchat_version: env!("CARGO_PKG_VERSION"),
            date_utc: utc_now(),
            machine: Machine::here(),
            settings,
            event_source: "",
            anchors: BTreeMap::new(),
            dm: Compared::default(),
            dm_durable: None,
            fanout: Compared::default(),
            relay: RelayRows::default(),
            get_list: Compared::default(),
            renew: Compared::default(),
            scale: None,
            targets: Vec::new(),
        }
    }

    pub fn set_anchors(&mut self, compare: bool, found: &[(Anchor, Availability)]) {
        for a in Anchor::ALL {
            let status = match found.iter().find(|(x, _)| *x == a) {
                _ if !compare => "not asked (no --compare)".to_string(),
                Some((_, Availability::Found(p))) => format!("installed ({})", p.display()),
                Some((_, Availability::Missing(why))) => format!("missing: {why}"),
                None => "missing".to_string(),
            };
            self.anchors.insert(a.name(), status);
        }
    }

    /// Judges the targets against what was measured.
    pub fn judge(&mut self) {
        let mut targets = Vec::new();
        let dm = self.dm.hchat.as_ref().map(|d| &d.latency);
        let irc = self.dm.ngircd.as_ref().map(|d| &d.latency);
        // Ours within `factor` × ngircd's, at the percentile `pick` takes.
        let latency = |what: &'static str, factor: f64, pick: fn(&Latency) -> f64| match (dm, irc) {
            (Some(o), Some(a)) => verdict(
                what,
                pick(o) <= factor * pick(a),
                format!(
                    "{:.0} µs vs {:.0} µs (×{:.2})",
                    pick(o),
                    pick(a),
                    pick(o) / pick(a)
                ),
            ),
            _ => not_measured(what),
        };
        targets.push(latency("DM latency: p99 ≤ ngircd's p99", 1.0, |l| {
            l.p99_us
        }));
        targets.push(latency(
            "DM latency: p50 ≤ 1.2 × ngircd's p50",
            1.2,
            |l| l.p50_us,
        ));
        // Issue 13's own bar for the p50, beside the earlier, stricter one.
        targets.push(latency(
            "DM latency: p50 ≤ 2 × ngircd's p50 (issue 13)",
            2.0,
            |l| l.p50_us,
        ));
        let f = &self.fanout;
        let anchors: Vec<(&str, &FanoutFigure)> =
            [("ngircd", &f.ngircd), ("mosquitto", &f.mosquitto)]
                .into_iter()
                .filter_map(|(n, x)| x.as_ref().map(|x| (n, x)))
                .collect();
        match (&f.hchat, anchors.len()) {
            (Some(o), 2) => {
                let detail = |get: fn(&FanoutFigure) -> f64, unit: Unit| {
                    anchors
                        .iter()
                        .map(|(n, a)| {
                            format!("{n} {} (×{:.2})", show(get(a), unit), get(o) / get(a))
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                targets.push(verdict(
                    "fan-out: deliveries/s ≥ ngircd's and ≥ mosquitto's",
                    anchors
                        .iter()
                        .all(|(_, a)| o.deliveries_per_s >= a.deliveries_per_s),
                    format!(
                        "{:.0}/s vs {}",
                        o.deliveries_per_s,
                        detail(|x| x.deliveries_per_s, Unit::Rate)
                    ),
                ));
                // Issue 13's bar: mosquitto's rate, with the ratio to ngircd's printed beside it.
                let (mq, irc) = (f.mosquitto.as_ref(), f.ngircd.as_ref());
                if let (Some(mq), Some(irc)) = (mq, irc) {
                    targets.push(verdict(
                        "fan-out: deliveries/s ≥ mosquitto's (issue 13)",
                        o.deliveries_per_s >= mq.deliveries_per_s,
                        format!(
                            "{:.0}/s vs mosquitto {} (×{:.2}); ngircd {} (×{:.2})",
                            o.deliveries_per_s,
                            show(mq.deliveries_per_s, Unit::Rate),
                            o.deliveries_per_s / mq.deliveries_per_s,
                            show(irc.deliveries_per_s, Unit::Rate),
                            o.deliveries_per_s / irc.deliveries_per_s
                        ),
                    ));
                }
                targets.push(verdict(
                    "fan-out: completion ≤ ngircd's and mosquitto's",
                    anchors
                        .iter()
                        .all(|(_, a)| o.completion_s <= a.completion_s),
                    format!(
                        "{:.2} s vs {}",
                        o.completion_s,
                        detail(|x| x.completion_s, Unit::Secs)
                    ),
                ));
            }
            _ => {
                targets.push(not_measured(
                    "fan-out: deliveries/s ≥ ngircd's and ≥ mosquitto's",
                ));
                targets.push(not_measured(
                    "fan-out: deliveries/s ≥ mosquitto's (issue 13)",
                ));
                targets.push(not_measured(
                    "fan-out: completion ≤ ngircd's and mosquitto's",
                ));
            }
        }
        targets.push(match (&self.get_list.hchat, &self.get_list.nginx) {
            (Some(o), Some(a)) => verdict(
                "tracker get-list: ≥ 50% of nginx's requests/s for the same bytes",
                o.requests_per_s >= 0.5 * a.requests_per_s,
                format!(
                    "{:.0}/s vs {:.0}/s ({:.0}%)",
                    o.requests_per_s,
                    a.requests_per_s,
                    100.0 * o.requests_per_s / a.requests_per_s
                ),
            ),
            _ => not_measured("tracker get-list: ≥ 50% of nginx's requests/s for the same bytes"),
        });
        targets.push(match &self.scale {
            Some(s) => verdict(
                "tracker memory: ≤ 1 KiB per registered peer at 100,000 peers",
                s.bytes_per_peer <= 1024.0,
                format!(
                    "{:.0} bytes per peer at {} peers{}",
                    s.bytes_per_peer,
                    s.peers,
                    if s.peers < 100_000 {
                        " (a smaller run than the target's)"
                    } else {
                        ""
                    }
                ),
            ),
            None => not_measured("tracker memory: ≤ 1 KiB per registered peer at 100,000 peers"),
        });
        self.targets = targets;
    }

    /// The report as a Markdown table, with the run's context above and the targets below.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let _ = writeln!(
            out,
            "hchat bench {} · {} · {} × {} · load average at start {}",
            self.hchat_version,
            self.date_utc,
            self.machine.nproc,
            self.machine.cpu,
            self.machine.loadavg_at_start
        );
        if !self.event_source.is_empty() {
            let _ = writeln!(
                out,
                "hchat's receiving clients read the {}",
                self.event_source
            );
        }
        let _ = writeln!(
            out,
            "hchat's nodes run with --rate-limit 0 here (a load run is a flood by design)"
        );
        for (name, status) in &self.anchors {
            let _ = writeln!(out, "{name}: {status}");
        }
        let _ = writeln!(out);
        let mut rows: Vec<[String; 5]> = vec![[
            "figure".into(),
            "hchat".into(),
            "ngircd".into(),
            "mosquitto".into(),
            "nginx".into(),
        ]];
        let lat = |c: &Compared<DmFigure>, f: fn(&Latency) -> f64| {
            [&c.hchat, &c.ngircd, &c.mosquitto, &c.nginx].map(|x| x.as_ref().map(|d| f(&d.latency)))
        };
        let dm = &self.dm;
        let title = format!("1 DM latency, {} at {}/s:", s.dm_count, s.dm_rate);
        rows.push(cells(
            &format!("{title} p50"),
            lat(dm, |l| l.p50_us),
            Unit::Us,
        ));
        rows.push(cells("  p90", lat(dm, |l| l.p90_us), Unit::Us));
        rows.push(cells("  p99", lat(dm, |l| l.p99_us), Unit::Us));
        rows.push(cells("  max", lat(dm, |l| l.max_us), Unit::Us));
        let durable = |f: fn(&Latency) -> f64| {
            [
                self.dm_durable.as_ref().map(|d| f(&d.latency)),
                None,
                None,
                None,
            ]
        };
        rows.push(cells(
            "  durable nodes (on disk, fsynced): p50",
            durable(|l| l.p50_us),
            Unit::Us,
        ));
        rows.push(cells(
            "  durable nodes: p99",
            durable(|l| l.p99_us),
            Unit::Us,
        ));
        let fo = |f: fn(&FanoutFigure) -> f64| {
            let c = &self.fanout;
            [&c.hchat, &c.ngircd, &c.mosquitto, &c.nginx].map(|x| x.as_ref().map(f))
        };
        rows.push(cells(
            &format!(
                "2 fan-out, {} members × {}: completion",
                s.fanout_members, s.fanout_count
            ),
            fo(|f| f.completion_s),
            Unit::Secs,
        ));
        rows.push(cells(
            "  deliveries/s",
            fo(|f| f.deliveries_per_s),
            Unit::Rate,
        ));
        rows.push(cells(
            "  per-delivery p50",
            fo(|f| f.latency.p50_us),
            Unit::Us,
        ));
        rows.push(cells(
            "  per-delivery p99",
            fo(|f| f.latency.p99_us),
            Unit::Us,
        ));
        rows.push(cells(
            "  delivered / expected",
            fo(|f| f.delivered as f64 / f.expected.max(1) as f64),
            Unit::Share,
        ));
        let hchat_only = |v: Option<f64>| [v, None, None, None];
        if let Some(d) = &self.relay.dm {
            rows.push(cells(
                "1r DM latency via relay: p50",
                hchat_only(Some(d.latency.p50_us)),
                Unit::Us,
            ));
            rows.push(cells("  p99", hchat_only(Some(d.latency.p99_us)), Unit::Us));
        }
        if let Some(f) = &self.relay.fanout {
            rows.push(cells(
                "2r fan-out via relay: completion",
                hchat_only(Some(f.completion_s)),
                Unit::Secs,
            ));
            rows.push(cells(
                "  deliveries/s",
                hchat_only(Some(f.deliveries_per_s)),
                Unit::Rate,
            ));
            rows.push(cells(
                "  per-delivery p99",
                hchat_only(Some(f.latency.p99_us)),
                Unit::Us,
            ));
            rows.push(cells(
                "  delivered / expected",
                hchat_only(Some(f.delivered as f64 / f.expected.max(1) as f64)),
                Unit::Share,
            ));
        }
        let tp = |c: &Compared<Throughput>| {
            [&c.hchat, &c.ngircd, &c.mosquitto, &c.nginx]
                .map(|x| x.as_ref().map(|t| t.requests_per_s))
        };
        let bytes = self.get_list.hchat.as_ref().map_or(0, |t| t.body_bytes);
        rows.push(cells(
            &format!(
                "3 tracker, {} registered, {} connections: get-list ({} B) req/s",
                s.registered_peers, s.load_connections, bytes
            ),
            tp(&self.get_list),
            Unit::Rate,
        ));
        rows.push(cells("  lease renewals req/s", tp(&self.renew), Unit::Rate));
        if let Some(sc) = &self.scale {
            let one = |v: f64| [Some(v), None, None, None];
            rows.push(cells(
                &format!(
                    "4 tracker, {} peers in {} channels: RSS",
                    sc.peers, sc.channels
                ),
                one(sc.rss_full_kib as f64),
                Unit::Kib,
            ));
            rows.push(cells(
                "  bytes per peer",
                one(sc.bytes_per_peer),
                Unit::Bytes,
            ));
            rows.push(cells(
                &format!("  gone from answers after (TTL {} s)", sc.ttl_secs),
                one(sc.gone_s),
                Unit::Secs,
            ));
            rows.push(cells("  all swept after", one(sc.swept_s), Unit::Secs));
            rows.push(cells(
                "  slowest /health meanwhile",
                one(sc.slowest_health_ms * 1e3),
                Unit::Us,
            ));
            rows.push(cells(
                "  RSS after the sweep",
                one(sc.rss_after_sweep_kib as f64),
                Unit::Kib,
            ));
        }
        let widths: Vec<usize> = (0..5)
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        for (n, r) in rows.iter().enumerate() {
            let line: Vec<String> = r
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, w))| {
                    if i == 0 {
                        format!("{c:<w$}")
                    } else {
                        format!("{c:>w$}")
                    }
                })
                .collect();
            let _ = writeln!(out, "| {} |", line.join(" | "));
            if n == 0 {
                let rule: Vec<String> = widths
                    .iter()
                    .enumerate()
                    .map(|(i, w)| {
                        if i == 0 {
                            "-".repeat(*w)
                        } else {
                            format!("{}:", "-".repeat(w - 1))
                        }
                    })
                    .collect();
                let _ = writeln!(out, "| {} |", rule.join(" | "));
            }
        }
        let _ = writeln!(
            out,
            "\n×N after an anchor's figure is hchat ÷ that anchor: below 1 is better for times, above 1 for rates.\n\
             nginx's renewal figure is a fixed answer of the same bytes to the same POST."
        );
        if !self.targets.is_empty() {
            let _ = writeln!(out, "\nTargets:");
            for t in &self.targets {
                let v = match t.verdict {
                    Verdict::Met => "met",
                    Verdict::Missed => "MISSED",
                    Verdict::NotMeasured => "not measured (anchor missing or not asked)",
                };
                let _ = writeln!(out, "- {}: {v}. {}", t.target, t.detail);
            }
        }
        out
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    /// Draws the latency CDFs (direct messages; fan-out deliveries), ours against the anchors, as SVG.
    pub fn plot(&self, path: &Path) -> Result<()> {
        use plotters::prelude::*;
        let fail = |e: String| BenchError::Setup(format!("drawing {}: {e}", path.display()));
        let root = SVGBackend::new(path, (1100, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
        let panels = root.split_evenly((1, 2));
        let colours = [
            RGBColor(200, 30, 30),
            RGBColor(30, 90, 200),
            RGBColor(20, 150, 60),
        ];
        let dm = &self.dm;
        let fo = &self.fanout;
        let sets: [(String, Curves); 2] = [
            (
                format!(
                    "1 · DM latency, {} at {}/s",
                    self.settings.dm_count, self.settings.dm_rate
                ),
                [
                    ("hchat", dm.hchat.as_ref().map(|d| &d.latency)),
                    ("ngircd", dm.ngircd.as_ref().map(|d| &d.latency)),
                    ("mosquitto", dm.mosquitto.as_ref().map(|d| &d.latency)),
                ],
            ),
            (
                format!(
                    "2 · fan-out per-delivery latency, {} × {}",
                    self.settings.fanout_members, self.settings.fanout_count
                ),
                [
                    ("hchat", fo.hchat.as_ref().map(|d| &d.latency)),
                    ("ngircd", fo.ngircd.as_ref().map(|d| &d.latency)),
                    ("mosquitto", fo.mosquitto.as_ref().map(|d| &d.latency)),
                ],
            ),
        ];
        for (area, (title, series)) in panels.iter().zip(sets) {
            let all = series
                .iter()
                .filter_map(|(_, l)| *l)
                .flat_map(|l| l.sorted_us.iter().copied());
            let (lo, hi) = all.fold((f64::MAX, 1.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
            let lo = (lo.min(hi) * 0.8).max(1.0);
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(50)
                .build_cartesian_2d((lo..hi * 1.2).log_scale(), 0f64..1f64)
                .map_err(|e| fail(e.to_string()))?;
            chart
                .configure_mesh()
                .x_desc("latency, µs (log scale)")
                .y_desc("fraction at or below")
                .draw()
                .map_err(|e| fail(e.to_string()))?;
            for ((name, latency), colour) in series.into_iter().zip(colours) {
                let Some(l) = latency else { continue };
                chart
                    .draw_series(LineSeries::new(
                        cdf_points(&l.sorted_us),
                        colour.stroke_width(2),
                    ))
                    .map_err(|e| fail(e.to_string()))?
                    .label(format!(
                        "{name} (p50 {}, p99 {})",
                        show(l.p50_us, Unit::Us),
                        show(l.p99_us, Unit::Us)
                    ))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .draw()
                .map_err(|e| fail(e.to_string()))?;
        }
        root.present().map_err(|e| fail(e.to_string()))
    }
}

/// The latency distributions of one panel: hchat's and each anchor's, by name.
type Curves<'a> = [(&'static str, Option<&'a Latency>); 3];

/// At most [`CDF_POINTS`] points of a sorted sample's cumulative distribution.
const CDF_POINTS: usize = 400;

fn cdf_points(sorted: &[f64]) -> Vec<(f64, f64)> {
    let n = sorted.len();
    if n == 0 {
        return Vec::new();
    }
    (0..=CDF_POINTS)
        .map(|k| k * (n - 1) / CDF_POINTS)
        .map(|i| (sorted[i], (i + 1) as f64 / n as f64))
        .collect()
}

fn verdict(target: &'static str, met: bool, detail: String) -> Target {
    Target {
        target,
        verdict: if met { Verdict::Met } else { Verdict::Missed },
        detail,
    }
}

fn not_measured(target: &'static str) -> Target {
    Target {
        target,
        verdict: Verdict::NotMeasured,
        detail: "its anchor did not run".into(),
    }
}

#[derive(Clone, Copy)]
enum Unit {
    Us,
    Secs,
    Rate,
    Kib,
    Bytes,
    Share,
}

fn show(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Us if v >= 10_000.0 => format!("{:.1} ms", v / 1e3),
        Unit::Us => format!("{v:.0} µs"),
        Unit::Secs if v < 0.1 => format!("{:.1} ms", v * 1e3),
        Unit::Secs => format!("{v:.2} s"),
        Unit::Rate => format!("{v:.0}/s"),
        Unit::Kib => format!("{:.1} MiB", v / 1024.0),
        Unit::Bytes => format!("{v:.0} B"),
        Unit::Share => format!("{:.1}%", v * 100.0),
    }
}

/// A row: our figure, then each anchor's with its ratio to ours.
fn cells(label: &str, values: [Option<f64>; 4], unit: Unit) -> [String; 5] {
    let ours = values[0];
    let mut row: [String; 5] = Default::default();
    row[0] = label.to_string();
    row[1] = ours.map(|v| show(v, unit)).unwrap_or_else(|| "—".into());
    for i in 1..4 {
        row[i + 1] = match (ours, values[i]) {
            (Some(o), Some(a)) if a > 0.0 && !matches!(unit, Unit::Share) => {
                format!("{} ×{:.2}", show(a, unit), o / a)
            }
            (_, Some(a)) => show(a, unit),
            _ => String::new(),
        };
    }
    row
}

/// The current time as `YYYY-MM-DD HH:MM UTC`.
fn utc_now() -> String {
    crate::proto::utc_minute(crate::proto::now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_shows_each_anchor_with_its_ratio_to_ours() {
        let r = cells("x", [Some(300.0), Some(200.0), None, Some(600.0)], Unit::Us);
        assert_eq!(r[1], "300 µs");
        assert_eq!(r[2], "200 µs ×1.50");
        assert_eq!(r[3], "");
        assert_eq!(r[4], "600 µs ×0.50");
    }

    #[test]
    fn the_cdf_runs_from_the_smallest_sample_to_one() {
        let pts = cdf_points(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(pts.first(), Some(&(1.0, 0.25)));
        assert_eq!(pts.last(), Some(&(4.0, 1.0)));
        assert!(pts.len() <= CDF_POINTS + 1);
    }
}
