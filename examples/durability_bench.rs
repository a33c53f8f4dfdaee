//! What durability costs: messages per second alice sends to bob and bob stores (each send waits until bob has
//! answered that the message is stored), with every node keeping its state in SQLite on disk (WAL,
//! `synchronous=FULL`) and, side by side, with every node in memory.
//!
//! ```text
//! cargo run --release --example durability_bench [-- MESSAGES [CONCURRENCY]]
//! ```
//! Two figures per mode: one message at a time (a user typing: each waits for the previous one), and
//! CONCURRENCY sends in flight at once (a busy node: commits are grouped).

use std::time::Instant;

use hchat::peer::{Node, PeerConfig};
use hchat::proto::{Destination, PeerName};
use hchat::storage::Storage;
use hchat::tracker::{Tracker, TrackerConfig};

struct Run {
    one_at_a_time: f64,
    concurrent: f64,
}

async fn node(name: &str, tracker: &Tracker, storage: Storage) -> anyhow::Result<Node> {
    Ok(Node::start(PeerConfig {
        storage,
        ..PeerConfig::on_loopback(PeerName::new(name)?, tracker.local_addr())
    })
    .await?)
}

/// Sends `n` DMs from alice to bob, `in_flight` at a time; messages per second, all delivered.
async fn send(alice: &Node, n: usize, in_flight: usize, tag: &str) -> anyhow::Result<f64> {
    let bob = Destination::Direct(PeerName::new("bob")?);
    let started = Instant::now();
    let mut next = 0;
    while next < n {
        let batch = in_flight.min(n - next);
        let sends = (next..next + batch).map(|i| alice.send(bob.clone(), format!("{tag} {i}")));
        for report in futures_util::future::join_all(sends).await {
            let report = report?;
            anyhow::ensure!(
                report.delivered.len() == 1,
                "not delivered at once: {report:?}"
            );
        }
        next += batch;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

async fn run(durable: bool, n: usize, in_flight: usize) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let storage = |leaf: &str| {
        if durable {
            Storage::Dir(dir.path().join(leaf))
        } else {
            Storage::Memory
        }
    };
    let tracker = Tracker::start(TrackerConfig {
        storage: storage("tracker"),
        ..TrackerConfig::default()
    })
    .await?;
    let alice = node("alice", &tracker, storage("alice")).await?;
    let bob = node("bob", &tracker, storage("bob")).await?;
    // Warm up: connections, caches, prepared statements.
    send(&alice, 50, 1, "warm-up").await?;
    let one_at_a_time = send(&alice, n, 1, "one").await?;
    let concurrent = send(&alice, n, in_flight, "many").await?;
    let held = bob
        .history_async(&Destination::Direct(PeerName::new("alice")?), 3 * n + 50)
        .await?;
    anyhow::ensure!(held.len() == 2 * n + 50, "bob holds {}", held.len());
    alice.shutdown().await;
    bob.shutdown().await;
    tracker.shutdown().await;
    Ok(Run {
        one_at_a_time,
        concurrent,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2000);
    let in_flight: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(64);
    println!("alice -> bob, {n} direct messages per figure, each counted once bob has stored it");
    let memory = run(false, n, in_flight).await?;
    let durable = run(true, n, in_flight).await?;
    println!(
        "{:<28} {:>14} {:>14} {:>10}",
        "", "in memory", "durable", "durable/memory"
    );
    for (what, m, d) in [
        (
            "one at a time (msg/s)",
            memory.one_at_a_time,
            durable.one_at_a_time,
        ),
        (
            &*format!("{in_flight} in flight (msg/s)"),
            memory.concurrent,
            durable.concurrent,
        ),
    ] {
        println!("{what:<28} {m:>14.0} {d:>14.0} {:>9.0}%", 100.0 * d / m);
    }
    Ok(())
}
