//! `hchat bench` never rots: a run with tiny counts (`--quick`) of the real binary, checked for every figure with
//! sane, non-zero values. With the anchors installed (always under CI=true, where a missing one must fail the
//! run) it runs with `--compare` and checks their figures and the judged targets too.

use crate::common;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Debug build, other tests running alongside: generous, but a hang still fails.
const DEADLINE: Duration = Duration::from_secs(240);

fn anchors_installed() -> bool {
    ["ngircd", "mosquitto", "nginx"].iter().all(|b| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .any(|d| d.join(b).is_file())
    })
}

fn num(v: &Value, path: &str) -> f64 {
    let mut x = v;
    for key in path.split('.') {
        x = &x[key];
    }
    x.as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number in the report: {x}"))
}

fn positive(v: &Value, path: &str) -> f64 {
    let n = num(v, path);
    assert!(n > 0.0 && n.is_finite(), "{path} = {n}");
    n
}

fn latency_is_sane(v: &Value, at: &str) {
    let p50 = positive(v, &format!("{at}.p50_us"));
    let p99 = positive(v, &format!("{at}.p99_us"));
    let max = positive(v, &format!("{at}.max_us"));
    assert!(
        p50 <= p99 && p99 <= max,
        "{at}: p50 {p50} p99 {p99} max {max}"
    );
    assert!(max < 30e6, "{at}: a delivery took {max} µs");
}

#[test]
fn a_quick_run_reports_every_figure_with_sane_values() {
    let compare = anchors_installed() || std::env::var("CI").is_ok_and(|v| v == "true");
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("bench.svg");
    let mut cmd = hchat();
    cmd.args(["bench", "--quick", "--json", "--plot"])
        .arg(&plot);
    if compare {
        cmd.arg("--compare");
    }
    let out = output_within(cmd, DEADLINE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "hchat bench failed:\n{stderr}");
    let r: Value = serde_json::from_slice(&out.stdout).expect("--json prints one JSON document");

    // 1: every direct message arrived, with a latency.
    assert_eq!(num(&r, "dm.hchat.received"), num(&r, "dm.hchat.sent"));
    latency_is_sane(&r, "dm.hchat.latency");
    // 2: every member got every message.
    assert_eq!(
        num(&r, "fanout.hchat.delivered"),
        num(&r, "fanout.hchat.expected")
    );
    positive(&r, "fanout.hchat.deliveries_per_s");
    positive(&r, "fanout.hchat.completion_s");
    latency_is_sane(&r, "fanout.hchat.latency");
    // 3: the tracker answered both loads, the member list being a real one.
    positive(&r, "get_list.hchat.requests_per_s");
    assert!(
        num(&r, "get_list.hchat.body_bytes") > 1000.0,
        "100 members take more than 1 KB"
    );
    positive(&r, "renew.hchat.requests_per_s");
    assert_eq!(
        num(&r, "get_list.hchat.errors") + num(&r, "renew.hchat.errors"),
        0.0
    );
    // 4: memory grew with the peers, and the sweep forgot them all after their lease.
    positive(&r, "scale.bytes_per_peer");
    assert!(num(&r, "scale.rss_full_kib") > num(&r, "scale.rss_empty_kib"));
    let ttl = num(&r, "scale.ttl_secs");
    let swept = num(&r, "scale.swept_s");
    assert!(
        swept >= ttl && swept < ttl + 30.0,
        "swept after {swept} s with a {ttl} s TTL"
    );
    assert!(r["event_source"].as_str().is_some_and(|s| !s.is_empty()));

    let svg = std::fs::read_to_string(&plot).expect("--plot wrote the SVG");
    assert!(svg.contains("<svg") && svg.contains("hchat"), "{svg:.200}");

    let targets = r["targets"].as_array().expect("the targets are judged");
    assert_eq!(targets.len(), 8, "{targets:?}");
    if compare {
        for who in ["ngircd", "mosquitto"] {
            assert_eq!(
                num(&r, &format!("dm.{who}.received")),
                num(&r, &format!("dm.{who}.sent"))
            );
            latency_is_sane(&r, &format!("dm.{who}.latency"));
            assert_eq!(
                num(&r, &format!("fanout.{who}.delivered")),
                num(&r, &format!("fanout.{who}.expected"))
            );
        }
        positive(&r, "get_list.nginx.requests_per_s");
        assert_eq!(
            num(&r, "get_list.nginx.body_bytes"),
            num(&r, "get_list.hchat.body_bytes"),
            "nginx serves the same bytes"
        );
        positive(&r, "renew.nginx.requests_per_s");
        for t in targets {
            assert!(
                t["verdict"] == "met" || t["verdict"] == "missed",
                "every target is judged with the anchors running: {t}"
            );
        }
        for a in ["ngircd", "mosquitto", "nginx"] {
            assert!(
                r["anchors"][a].as_str().unwrap().starts_with("installed"),
                "{a}"
            );
        }
    } else {
        eprintln!("anchors not installed and CI is not true: ran without --compare");
    }
}

#[test]
fn a_plot_that_is_not_svg_is_one_line_and_exit_2() {
    let out = output_within(
        {
            let mut c = hchat();
            c.args(["bench", "--plot", "x.png"]);
            c
        },
        Duration::from_secs(10),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--plot docs/bench.svg") && stderr.contains("hchat bench --help"),
        "{stderr}"
    );
}
