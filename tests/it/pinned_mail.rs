//! Held mail is sealed to the recipient's pinned key (issue 13): a tracker that vouched for another key for bob a
//! moment ago (alice's node keeps its answer a few seconds) and for bob's pinned key when asked again gets nothing
//! sealed to the other key; bob opens what was held for him. Real trackers and nodes in this
//! process; the tracker keeps nothing on disk, so restarting it lets a name be bound afresh.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::in_process::keyed_node;
use hchat::identity::Identity;
use hchat::peer::Node;
use hchat::proto::{Destination, PeerName};
use hchat::tracker::{Tracker, TrackerConfig};

fn n(s: &str) -> PeerName {
    PeerName::new(s).unwrap()
}

async fn node(name: &str, tracker: &Tracker, id: &Arc<Identity>) -> Node {
    keyed_node(name, tracker, id, Default::default()).await
}

/// The tracker again at the same HTTP port with the same key, its bindings forgotten (its UDP port may differ:
/// peers read it from `/health`).
async fn restart(tracker: Tracker, id: &Arc<Identity>) -> Tracker {
    let port = tracker.local_addr().port();
    tracker.shutdown().await;
    Tracker::start(TrackerConfig {
        port,
        quic_port: Some(0),
        identity: Some(id.clone()),
        ..TrackerConfig::default()
    })
    .await
    .unwrap()
}

fn texts(node: &Node, with: &str) -> Vec<String> {
    node.history(&Destination::Direct(n(with)), 100)
        .into_iter()
        .map(|m| m.text)
        .collect()
}

/// How long a peer takes the tracker's word for a key without asking again (`KEY_RECHECK` in src/peer/mod.rs),
/// and where a peer is (`KNOWN_PEER_FRESH`).
const KEY_RECHECK: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_mail_is_sealed_to_the_pinned_key_not_to_one_the_tracker_vouched_for_a_moment_ago() {
    let tracker_id = Arc::new(Identity::ephemeral());
    let tracker = Tracker::start(TrackerConfig {
        identity: Some(tracker_id.clone()),
        ..TrackerConfig::default()
    })
    .await
    .unwrap();
    let a = node("alice", &tracker, &Arc::new(Identity::ephemeral())).await;
    let bob_id = Arc::new(Identity::ephemeral());
    let bob = node("bob", &tracker, &bob_id).await;
    let r = a
        .send(Destination::Direct(n("bob")), "first".into())
        .await
        .unwrap();
    assert_eq!(r.delivered, [n("bob")], "{r:?}: alice pins bob's key");
    bob.shutdown().await;

    // The tracker forgets, and another key holds "bob" for a while; it writes to alice, whose node asks the
    // tracker for bob's key once what it knew of bob has lapsed (and keeps the answer a few seconds), and refuses
    // it: not the pinned key. (A lapse of a cache lifetime, not a wait for something to happen.)
    let tracker = restart(tracker, &tracker_id).await;
    let impostor = node("bob", &tracker, &Arc::new(Identity::ephemeral())).await;
    tokio::time::sleep(KEY_RECHECK + Duration::from_millis(500)).await;
    let r = impostor
        .send(Destination::Direct(n("alice")), "it's me, bob".into())
        .await
        .unwrap();
    assert!(r.delivered.is_empty(), "{r:?}");
    assert_eq!(
        a.whois(&n("bob")).await.vouched,
        Some(impostor.public_key().fingerprint())
    );
    impostor.shutdown().await;

    // Then bob's own key holds the name again, and bob is away: a DM for him is held.
    let tracker = restart(tracker, &tracker_id).await;
    node("bob", &tracker, &bob_id).await.shutdown().await;
    let r = a
        .send(
            Destination::Direct(n("bob")),
            "held for the real bob".into(),
        )
        .await
        .unwrap();
    assert_eq!(r.held, [n("bob")], "{r:?}");

    // bob comes back and opens it: it was sealed to his pinned key, not to the one alice heard of a moment ago.
    let bob = node("bob", &tracker, &bob_id).await;
    let end = Instant::now() + Duration::from_secs(15);
    while !texts(&bob, "alice").contains(&"held for the real bob".to_string()) {
        assert!(
            Instant::now() < end,
            "bob never opened his held mail: {:?}",
            texts(&bob, "alice")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.shutdown().await;
    bob.shutdown().await;
    tracker.shutdown().await;
}
