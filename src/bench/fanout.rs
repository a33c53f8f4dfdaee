//! Figure 2, channel fan-out: one sender, `members` others in a channel, `count` messages sent as fast as the
//! sending client can hand them over. Completion is from the first message of the burst until every member's
//! client has read every message; each delivery's latency is from its message's send to that member's read.
//!
//! hchat's members are `members` nodes in this process, each read through its own event stream; the sending
//! client posts to the sender's node over [`API_CONNECTIONS`] kept-alive connections. ngircd's and mosquitto's
//! members are as many IRC or MQTT connections; their sender writes the burst and flushes every [`FLUSH_EVERY`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::anchors::{mosquitto, ngircd};
use super::clock::now_ns;
use super::dm::{all_relayed, inbox_of, start_node_with, start_tracker};
use super::stats::{FanoutFigure, Latency};
use super::wire::{Inbox, Outbox, Sample, collect, wait_seen};
use super::{BenchError, Result, progress};
use crate::proto::ChannelName;

/// Messages sent (and awaited by every member) before the burst, so every connection is open.
const WARMUP: usize = 3;
/// Messages the sending client has in flight to its node at once (one per kept-alive connection).
pub(crate) const API_CONNECTIONS: usize = 8;
/// An IRC or MQTT sender flushes its buffer after this many messages (as the anchor scripts do).
pub(crate) const FLUSH_EVERY: usize = 50;
/// Longest a burst may take to arrive everywhere.
const DEADLINE: Duration = Duration::from_secs(120);

pub(crate) async fn hchat(members: usize, count: usize) -> Result<FanoutFigure> {
    hchat_on(members, count, false).await
}

/// The relay row: [`hchat`] with every node reaching the others only through the tracker's relay.
pub(crate) async fn hchat_relayed(members: usize, count: usize) -> Result<FanoutFigure> {
    hchat_on(members, count, true).await
}

async fn hchat_on(members: usize, count: usize, relayed: bool) -> Result<FanoutFigure> {
    let tracker = start_tracker().await?;
    let channel = ChannelName::new("bench").expect("a valid name");
    let sender = start_node_with("bench-sender", tracker.local_addr(), relayed).await?;
    sender
        .join(&channel)
        .await
        .map_err(|e| BenchError::Setup(format!("joining #bench: {e}")))?;
    let mut nodes = Vec::with_capacity(members);
    let mut inboxes = Vec::with_capacity(members);
    for i in 0..members {
        let node =
            start_node_with(&format!("bench-m{i:03}"), tracker.local_addr(), relayed).await?;
        node.join(&channel)
            .await
            .map_err(|e| BenchError::Setup(format!("joining #bench: {e}")))?;
        inboxes.push(inbox_of(&node).await?);
        nodes.push(node);
    }
    let outbox = Outbox::api(
        sender.local_addr(),
        serde_json::json!({ "channel": "bench" }),
        API_CONNECTIONS,
    )
    .await?;
    let result = measure("hchat", outbox, inboxes, count)
        .await
        .and_then(|r| all_relayed(relayed, &sender).map(|()| r));
    if let (true, Some(h)) = (relayed, tracker.relay_health()) {
        progress(format!(
            "the relay carried {} packets ({} bytes), dropped {} over a rate limit or a full queue",
            h.packets, h.bytes, h.dropped
        ));
    }
    // All at once: one after another, 101 nodes took ~20 s to stop (each waits for its own tasks to end).
    futures_util::future::join_all(nodes.iter().chain([&sender]).map(|n| n.shutdown())).await;
    tracker.shutdown().await;
    result
}

pub(crate) async fn ngircd(bin: &Path, members: usize, count: usize) -> Result<FanoutFigure> {
    let server = ngircd::start(bin).await?;
    let mut inboxes = Vec::with_capacity(members);
    for i in 0..members {
        let mut c = ngircd::IrcClient::connect(server.addr, &format!("m{i}")).await?;
        c.join("#bench").await?;
        inboxes.push(Inbox::Irc(c));
    }
    let mut s = ngircd::IrcClient::connect(server.addr, "sender").await?;
    s.join("#bench").await?;
    let outbox = Outbox::Irc {
        client: s,
        target: "#bench".into(),
    };
    let result = measure("ngircd", outbox, inboxes, count).await;
    server.stop().await;
    result
}

pub(crate) async fn mosquitto(bin: &Path, members: usize, count: usize) -> Result<FanoutFigure> {
    let server = mosquitto::start(bin).await?;
    let mut inboxes = Vec::with_capacity(members);
    for i in 0..members {
        let mut c = mosquitto::MqttClient::connect(server.addr, &format!("m{i}")).await?;
        c.subscribe("chan/bench").await?;
        inboxes.push(Inbox::Mqtt(c));
    }
    let s = mosquitto::MqttClient::connect(server.addr, "sender").await?;
    let outbox = Outbox::Mqtt {
        client: s,
        topic: "chan/bench".into(),
    };
    let result = measure("mosquitto", outbox, inboxes, count).await;
    server.stop().await;
    result
}

async fn measure(
    system: &str,
    mut outbox: Outbox,
    inboxes: Vec<Inbox>,
    count: usize,
) -> Result<FanoutFigure> {
    let members = inboxes.len();
    let total = WARMUP + count;
    let seen = Arc::new(AtomicUsize::new(0));
    let mut readers = JoinSet::new();
    for inbox in inboxes {
        readers.spawn(collect(inbox, total, DEADLINE, seen.clone()));
    }
    for seq in 0..WARMUP as u64 {
        outbox.send(seq, true).await?;
    }
    wait_seen(
        &seen,
        WARMUP * members,
        Duration::from_secs(30),
        &format!("{system}'s warm-up messages"),
    )
    .await?;

    let t0 = now_ns();
    for (i, seq) in (WARMUP as u64..total as u64).enumerate() {
        outbox.send(seq, (i + 1) % FLUSH_EVERY == 0).await?;
    }
    outbox.finish().await?;
    let expected = count * members;
    let mut finished = Vec::with_capacity(members);
    let mut last_report = Instant::now();
    while !readers.is_empty() {
        tokio::select! {
            joined = readers.join_next() => {
                let Some(r) = joined else { break };
                let got = r.map_err(|e| BenchError::Setup(format!("a member failed: {e}")))??;
                finished.push(got);
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if last_report.elapsed() >= Duration::from_secs(2) {
            last_report = Instant::now();
            progress(format!(
                "  fan-out {system}: {} of {expected} deliveries",
                seen.load(Ordering::Relaxed)
                    .saturating_sub(WARMUP * members)
            ));
        }
    }
    let samples: Vec<Sample> = finished
        .into_iter()
        .flatten()
        .filter(|s| s.seq >= WARMUP as u64)
        .collect();
    let last = samples.iter().map(|s| s.recv_ns).max().unwrap_or(t0);
    let completion_s = (last - t0) as f64 / 1e9;
    let delivered = samples.len();
    let latency = Latency::from_ns(samples.iter().map(|s| s.recv_ns.saturating_sub(s.sent_ns)));
    let figure = FanoutFigure {
        members,
        sent: count,
        expected,
        delivered,
        completion_s,
        deliveries_per_s: if completion_s > 0.0 {
            delivered as f64 / completion_s
        } else {
            0.0
        },
        latency,
    };
    progress(format!(
        "  fan-out {system}: {delivered}/{expected} in {:.2} s, {:.0} deliveries/s, p50 {:.0} µs, p99 {:.0} µs",
        figure.completion_s, figure.deliveries_per_s, figure.latency.p50_us, figure.latency.p99_us
    ));
    Ok(figure)
}
