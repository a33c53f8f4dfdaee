//! Figure 4, the tracker at scale: its resident memory with `peers` registered peers spread over `channels`
//! channels, and how long after their last renewal the tracker has forgotten them all. The tracker is a child
//! process of this binary so its RSS (`/proc/<pid>/status`) is its own; its `GET /health` says how many leases are
//! live (`peers`) and how many have lapsed but are still held (`stale`) until the sweep removes them.

use std::time::{Duration, Instant};

use hyper::Method;
use serde::{Deserialize, Serialize};

use super::http::HttpConn;
use super::tracker_load::{TrackerProc, populate};
use super::{BenchError, Result, progress};

/// How often `/health` is asked while the leases lapse.
const POLL: Duration = Duration::from_millis(50);
/// A `/health` answer this slow is reported as it happens (the sweep holding the registry shows up so).
const SLOW_HEALTH: Duration = Duration::from_millis(50);
/// How long past the TTL the sweep may take before the run gives up.
const SWEEP_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize)]
pub struct ScaleFigure {
    pub peers: usize,
    pub channels: usize,
    pub ttl_secs: u64,
    /// Registering every peer and joining each to its channel, over the load generator's connections.
    pub populate_s: f64,
    pub rss_empty_kib: u64,
    pub rss_full_kib: u64,
    /// (full − empty) / peers.
    pub bytes_per_peer: f64,
    /// From the last renewal until `/health` counts no live peer (the TTL, give or take a poll).
    pub gone_s: f64,
    /// From the last renewal until the sweep has removed every lapsed lease.
    pub swept_s: f64,
    /// The slowest `/health` answer while the leases lapsed and were swept (the sweep holds the registry).
    pub slowest_health_ms: f64,
    pub rss_after_sweep_kib: u64,
}

#[derive(Deserialize)]
struct Health {
    peers: usize,
    #[serde(default)]
    stale: Option<usize>,
}

pub(crate) async fn hchat(
    peers: usize,
    channels: usize,
    connections: usize,
    ttl: Duration,
) -> Result<ScaleFigure> {
    let channels = channels.max(1);
    let tracker = TrackerProc::start(ttl.as_secs().max(1)).await?;
    health(&mut HttpConn::connect(tracker.addr).await?).await?;
    let rss_empty_kib = tracker.rss_kib()?;
    let start = Instant::now();
    let last_renewal = populate(tracker.addr, peers, connections, |i| {
        Some(format!("c{:05}", i % channels))
    })
    .await?;
    let populate_s = start.elapsed().as_secs_f64();
    if populate_s >= ttl.as_secs_f64() {
        return Err(BenchError::Setup(format!(
            "registering {peers} peers took {populate_s:.1} s, longer than their {} s lease; give a longer TTL",
            ttl.as_secs()
        )));
    }
    let rss_full_kib = tracker.rss_kib()?;
    let bytes_per_peer = (rss_full_kib.saturating_sub(rss_empty_kib) * 1024) as f64 / peers as f64;
    progress(format!(
        "  tracker scale: {peers} peers in {populate_s:.1} s, RSS {} → {} KiB ({bytes_per_peer:.0} bytes per peer)",
        rss_empty_kib, rss_full_kib
    ));

    // A fresh connection: the tracker closes one left idle longer than its header timeout (10 s), and
    // registering can take longer than that.
    let mut probe = HttpConn::connect(tracker.addr).await?;
    let (mut gone_s, mut slowest) = (None, Duration::ZERO);
    let end = last_renewal + ttl + SWEEP_DEADLINE;
    let swept_s = loop {
        let asked = Instant::now();
        let h = health(&mut probe).await?;
        let took = asked.elapsed();
        slowest = slowest.max(took);
        if took >= SLOW_HEALTH {
            progress(format!(
                "  tracker scale: /health took {:.0} ms, {:.1} s after the last registration",
                took.as_secs_f64() * 1e3,
                last_renewal.elapsed().as_secs_f64()
            ));
        }
        if h.peers == 0 && gone_s.is_none() {
            gone_s = Some(last_renewal.elapsed().as_secs_f64());
        }
        let stale = h.stale.ok_or_else(|| {
            BenchError::Protocol("the tracker's /health does not report stale leases".into())
        })?;
        if h.peers == 0 && stale == 0 {
            break last_renewal.elapsed().as_secs_f64();
        }
        if Instant::now() > end {
            return Err(BenchError::Timeout {
                what: format!("the sweep of {peers} lapsed leases ({stale} left)"),
                secs: (ttl + SWEEP_DEADLINE).as_secs(),
            });
        }
        tokio::time::sleep(POLL).await;
    };
    let rss_after_sweep_kib = tracker.rss_kib()?;
    progress(format!(
        "  tracker scale: all gone from answers after {:.2} s, swept after {swept_s:.2} s (TTL {} s); RSS after {} KiB",
        gone_s.unwrap_or(swept_s),
        ttl.as_secs(),
        rss_after_sweep_kib
    ));
    drop(probe);
    tracker.stop().await;
    Ok(ScaleFigure {
        peers,
        channels,
        ttl_secs: ttl.as_secs(),
        populate_s,
        rss_empty_kib,
        rss_full_kib,
        bytes_per_peer,
        gone_s: gone_s.unwrap_or(swept_s),
        swept_s,
        slowest_health_ms: slowest.as_secs_f64() * 1e3,
        rss_after_sweep_kib,
    })
}

async fn health(conn: &mut HttpConn) -> Result<Health> {
    let body = conn
        .call_ok(conn.build(Method::GET, "/health", None))
        .await?;
    serde_json::from_slice(&body)
        .map_err(|e| BenchError::Protocol(format!("the tracker's /health: {e}")))
}
