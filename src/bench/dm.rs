//! Figure 1, direct messages: one user sends another `count` messages at a steady rate; the latency of each is
//! from the sending client handing it over to the receiving client reading it. For hchat that is `POST /api/send`
//! on alice's node to bob's event stream, through the tracker look-up (cached) and the direct delivery; for ngircd
//! a PRIVMSG between two clients; for mosquitto a QoS 0 publish to a topic only the receiver subscribes to.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::anchors::{mosquitto, ngircd};
use super::stats::{DmFigure, Latency};
use super::wire::{FROM_EVENTS, Inbox, Outbox, collect, wait_seen};
use super::{BenchError, Result, progress};
use crate::http::RateLimit;
use crate::peer::{Node, PeerConfig};
use crate::proto::PeerName;
use crate::storage::Storage;
use crate::tracker::{Tracker, TrackerConfig};

/// Messages sent (at the same rate) before the measured ones, so connections and caches are warm on every system.
pub(crate) const WARMUP: usize = 20;
/// Kept-alive connections of the sending client to its node's API (each carries one message at a time).
const API_CONNECTIONS: usize = 4;
/// How long the receiver waits beyond the time the sending takes.
const GRACE: Duration = Duration::from_secs(30);

/// A node on loopback, port 0, for the benchmark, with no rate limit; when `relayed`, reaching other peers only
/// through the tracker's relay (`--force-relay`: the relay rows), and returned once its relay stream is open.
pub(crate) async fn start_node_with(
    name: &str,
    tracker: std::net::SocketAddr,
    relayed: bool,
) -> Result<Node> {
    start_node_in(name, tracker, relayed, Storage::Memory).await
}

/// [`start_node_with`] keeping its store in `storage`.
async fn start_node_in(
    name: &str,
    tracker: std::net::SocketAddr,
    relayed: bool,
    storage: Storage,
) -> Result<Node> {
    let node = start_node_configured(name, tracker, relayed, storage).await?;
    if relayed {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !node.relay_counts().is_some_and(|c| c.up) {
            if Instant::now() > deadline {
                return Err(BenchError::Setup(format!(
                    "{name}: no relay stream with the tracker within 10 s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(node)
}

async fn start_node_configured(
    name: &str,
    tracker: std::net::SocketAddr,
    relayed: bool,
    storage: Storage,
) -> Result<Node> {
    let name = PeerName::new(name).map_err(|e| BenchError::Setup(format!("{name}: {e}")))?;
    // In memory by default, like the anchors (ngircd, mosquitto at QoS 0 keep nothing either); what durability
    // costs is the figure's durable row ([`hchat_durable`]).
    let mut config = PeerConfig::on_loopback(name.clone(), tracker);
    config.storage = storage;
    config.limits.rate_limit = RateLimit::OFF;
    config.force_relay = relayed;
    // `HCHAT_BENCH_QUIC_PORT=off`: peers push over HTTP as before sessions (to compare both paths in one binary).
    if let Ok(v) = std::env::var("HCHAT_BENCH_QUIC_PORT") {
        config.quic_port = v
            .parse()
            .map_err(|e| BenchError::Setup(format!("HCHAT_BENCH_QUIC_PORT: {e}")))?;
    }
    // With its local API: what is measured is `POST /api/send` and `GET /api/events`.
    crate::web::start(config, crate::web::login::DEFAULT_LINK_TTL)
        .await
        .map(|web| web.node().clone())
        .map_err(|e| BenchError::Setup(format!("starting peer {name}: {e}")))
}

/// A tracker on loopback, port 0, in this process, with no rate limit (a load run is a flood by design).
pub(crate) async fn start_tracker() -> Result<Tracker> {
    let mut config = TrackerConfig::default();
    config.limits.rate_limit = RateLimit::OFF;
    Tracker::start(config)
        .await
        .map_err(|e| BenchError::Setup(format!("starting a tracker on 127.0.0.1: {e}")))
}

/// The receiving client of `node`: its event stream, as the web page reads it.
pub(crate) async fn inbox_of(node: &Node) -> Result<Inbox> {
    Inbox::events(node.local_addr()).await
}

pub(crate) async fn hchat(count: usize, rate: u32) -> Result<(DmFigure, &'static str)> {
    hchat_on(count, rate, false, None).await
}

/// The durable row: [`hchat`] with both nodes keeping their store on disk (SQLite in WAL mode, each commit fsynced
/// before a message counts as sent or received, as `hchat peer` runs), in a temporary directory removed afterwards.
pub(crate) async fn hchat_durable(count: usize, rate: u32) -> Result<DmFigure> {
    let dir = tempfile::tempdir()
        .map_err(|e| BenchError::Setup(format!("a temporary directory: {e}")))?;
    Ok(hchat_on(count, rate, false, Some(dir.path())).await?.0)
}

/// The relay row: [`hchat`] with both nodes reaching each other only through the tracker's relay.
pub(crate) async fn hchat_relayed(count: usize, rate: u32) -> Result<DmFigure> {
    Ok(hchat_on(count, rate, true, None).await?.0)
}

async fn hchat_on(
    count: usize,
    rate: u32,
    relayed: bool,
    dir: Option<&Path>,
) -> Result<(DmFigure, &'static str)> {
    let storage = |leaf: &str| match dir {
        Some(d) => Storage::Dir(d.join(leaf)),
        None => Storage::Memory,
    };
    let tracker = start_tracker().await?;
    let alice = start_node_in(
        "bench-alice",
        tracker.local_addr(),
        relayed,
        storage("alice"),
    )
    .await?;
    let bob = start_node_in("bench-bob", tracker.local_addr(), relayed, storage("bob")).await?;
    let inbox = inbox_of(&bob).await?;
    let outbox = Outbox::api(
        alice.local_addr(),
        serde_json::json!({ "to": "bench-bob" }),
        API_CONNECTIONS,
    )
    .await?;
    let system = match (relayed, dir) {
        (true, _) => "hchat (relayed)",
        (false, Some(_)) => "hchat (durable nodes)",
        (false, None) => "hchat",
    };
    let result = measure(system, outbox, inbox, count, rate)
        .await
        .and_then(|r| all_relayed(relayed, &alice).map(|()| r));
    alice.shutdown().await;
    bob.shutdown().await;
    tracker.shutdown().await;
    Ok((result?, FROM_EVENTS))
}

/// For a relay row: every message `sender` pushed went through the relay (else the row would measure the direct
/// path under another name).
pub(crate) fn all_relayed(relayed: bool, sender: &Node) -> Result<()> {
    let c = sender.push_counts();
    if relayed && (c.relayed_out == 0 || c.relayed_out != c.session_out) {
        return Err(BenchError::Protocol(format!(
            "{}: {} of {} messages went through the relay",
            sender.name(),
            c.relayed_out,
            c.session_out
        )));
    }
    Ok(())
}

pub(crate) async fn ngircd(bin: &Path, count: usize, rate: u32) -> Result<DmFigure> {
    let server = ngircd::start(bin).await?;
    let a = ngircd::IrcClient::connect(server.addr, "benchA").await?;
    let b = ngircd::IrcClient::connect(server.addr, "benchB").await?;
    let outbox = Outbox::Irc {
        client: a,
        target: "benchB".into(),
    };
    let result = measure("ngircd", outbox, Inbox::Irc(b), count, rate).await;
    server.stop().await;
    result
}

pub(crate) async fn mosquitto(bin: &Path, count: usize, rate: u32) -> Result<DmFigure> {
    let server = mosquitto::start(bin).await?;
    let a = mosquitto::MqttClient::connect(server.addr, "benchA").await?;
    let mut b = mosquitto::MqttClient::connect(server.addr, "benchB").await?;
    b.subscribe("dm/benchB").await?;
    let outbox = Outbox::Mqtt {
        client: a,
        topic: "dm/benchB".into(),
    };
    let result = measure("mosquitto", outbox, Inbox::Mqtt(b), count, rate).await;
    server.stop().await;
    result
}

/// Sends [`WARMUP`] messages and waits for them, then `count` more at `rate` per second; the latency of those.
async fn measure(
    system: &str,
    mut outbox: Outbox,
    inbox: Inbox,
    count: usize,
    rate: u32,
) -> Result<DmFigure> {
    let total = WARMUP + count;
    let sending = Duration::from_secs_f64(total as f64 / rate.max(1) as f64);
    let seen = Arc::new(AtomicUsize::new(0));
    // Aborted if this returns early, so no reader outlives its figure.
    let reader = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(collect(
        inbox,
        total,
        sending + GRACE,
        seen.clone(),
    )));
    for range in [0..WARMUP as u64, WARMUP as u64..total as u64] {
        let (mut ticks, pacer) = ticks(range.clone(), rate);
        while let Some(seq) = ticks.recv().await {
            outbox.send(seq, true).await?;
        }
        let _ = pacer.join();
        if range.start == 0 {
            wait_seen(
                &seen,
                WARMUP,
                GRACE,
                &format!("{system}'s warm-up messages"),
            )
            .await?;
        }
    }
    outbox.finish().await?;
    let got = reader
        .await
        .map_err(|e| BenchError::Setup(format!("the receiver failed: {e}")))??;
    let measured: Vec<_> = got.iter().filter(|s| s.seq >= WARMUP as u64).collect();
    let latency = Latency::from_ns(measured.iter().map(|s| s.recv_ns.saturating_sub(s.sent_ns)));
    progress(format!(
        "  dm {system}: {}/{count} received, p50 {:.0} µs, p99 {:.0} µs",
        measured.len(),
        latency.p50_us,
        latency.p99_us
    ));
    Ok(DmFigure {
        sent: count,
        received: measured.len(),
        rate_per_s: rate,
        latency,
    })
}

/// The sequence numbers of `range`, one every `1/rate` s, from a thread that sleeps with the OS's fine timer
/// (tokio's timer has millisecond steps, which would send 2,000/s as bursts of two).
fn ticks(
    range: std::ops::Range<u64>,
    rate: u32,
) -> (mpsc::Receiver<u64>, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel((range.end - range.start).max(1) as usize);
    let gap = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let pacer = std::thread::spawn(move || {
        let start = Instant::now();
        for (i, seq) in range.enumerate() {
            if tx.blocking_send(seq).is_err() {
                return;
            }
            let due = start + gap * (i as u32 + 1);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    });
    (rx, pacer)
}
