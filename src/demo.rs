//! `hchat demo`: a tracker and three peers (alice, bob, carol) in one process on loopback, all in `#general`.
//! The terminal is alice's CLI; bob and carol can be reached through their local API (and web pages). Everything
//! is on loopback, where a browser on this machine needs no login: the printed page addresses carry no secret.

use anyhow::Context;

use crate::cli::print_line;

use crate::peer::PeerConfig;
use crate::proto::{ChannelName, PeerName};
use crate::tracker::{Tracker, TrackerConfig};
use crate::web::login::DEFAULT_LINK_TTL;

/// Runs the demo until alice quits.
pub async fn run() -> anyhow::Result<()> {
    let tracker = Tracker::start(TrackerConfig::default())
        .await
        .context("starting the demo tracker")?;
    let say = |line: String| print_line(&line).context("cannot write to stdout");
    say(format!("* tracker listening on {}", tracker.local_addr()))?;
    let general = ChannelName::new("general")?;
    let mut peers = Vec::new();
    for name in ["alice", "bob", "carol"] {
        // The demo leaves nothing behind (in-memory storage), so a second run starts as fresh as the first.
        let web = crate::web::start(
            PeerConfig::on_loopback(PeerName::new(name)?, tracker.local_addr()),
            DEFAULT_LINK_TTL,
        )
        .await
        .with_context(|| format!("starting {name}"))?;
        let node = web.node();
        node.join(&general)
            .await
            .with_context(|| format!("{name} joining #general"))?;
        say(format!(
            "* {name} listening on {}  web chat: {}",
            node.local_addr(),
            web.chat_page()
        ))?;
        peers.push(web);
    }
    let bob = &peers[1];
    say(
        "* you are alice, in #general with bob and carol. Type a message, or /help. To answer as bob from another terminal:".into(),
    )?;
    say(format!(
        "*   curl -s localhost:{}/send-peer -d '{{\"channel\":\"general\",\"text\":\"hi from bob\"}}'",
        bob.node().local_addr().port()
    ))?;
    say(
        "* open a web chat above in a browser on this machine: on loopback a page needs no login"
            .into(),
    )?;
    let result = crate::cli::run(peers[0].clone(), Some(general)).await;
    for p in &peers[1..] {
        p.node().shutdown().await;
    }
    tracker.shutdown().await;
    result
}
