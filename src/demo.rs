//! `hchat demo`: a tracker and three peers (alice, bob, carol) in one process on loopback, all in `#general`.
//! The terminal is alice's CLI; bob and carol can be reached through their local API (and web pages).

use anyhow::Context;

use crate::peer::{Node, PeerConfig};
use crate::proto::{ChannelName, PeerName};
use crate::tracker::{Tracker, TrackerConfig};

/// Runs the demo until alice quits.
pub async fn run() -> anyhow::Result<()> {
    let tracker = Tracker::start(TrackerConfig::default())
        .await
        .context("starting the demo tracker")?;
    println!("* tracker listening on {}", tracker.local_addr());
    let general = ChannelName::new("general")?;
    let mut peers = Vec::new();
    for name in ["alice", "bob", "carol"] {
        // The demo leaves nothing behind (in-memory storage), so a second run starts as fresh as the first.
        let node = Node::start(PeerConfig::on_loopback(
            PeerName::new(name)?,
            tracker.local_addr(),
        ))
        .await
        .with_context(|| format!("starting {name}"))?;
        node.join(&general)
            .await
            .with_context(|| format!("{name} joining #general"))?;
        println!(
            "* {name} listening on {}  web chat: {}",
            node.local_addr(),
            node.chat_url()
        );
        peers.push(node);
    }
    let bob = &peers[1];
    println!(
        "* you are alice, in #general with bob and carol. Type a message, or /help. To answer as bob from another terminal:"
    );
    println!(
        "*   curl -s localhost:{}/send-peer -d '{{\"channel\":\"general\",\"text\":\"hi from bob\"}}'",
        bob.local_addr().port()
    );
    let result = crate::cli::run(peers[0].clone(), Some(general)).await;
    for p in &peers[1..] {
        p.shutdown().await;
    }
    tracker.shutdown().await;
    result
}
