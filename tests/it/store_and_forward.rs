//! Store-and-forward through the library, with a real tracker and real nodes on port 0 in one process: a full
//! mailbox is a clear answer to the sender and loses nothing; a retried send with the same id is stored once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hchat::identity::Identity;
use hchat::peer::{Node, PeerConfig};
use hchat::proto::{Destination, MessageId, PeerName};
use hchat::tracker::{Tracker, TrackerConfig};

/// A node in memory whose identity is `name`'s own for the whole test, so it can stop and start again under its
/// name (the tracker binds a name to its first key for good).
async fn node(name: &str, tracker: &Tracker) -> Node {
    static KEYS: std::sync::Mutex<Vec<(String, Arc<Identity>)>> = std::sync::Mutex::new(Vec::new());
    let identity = {
        let mut keys = KEYS.lock().unwrap();
        let key = format!("{}/{name}", tracker.local_addr());
        match keys.iter().find(|(k, _)| *k == key) {
            Some((_, id)) => id.clone(),
            None => {
                let id = Arc::new(Identity::ephemeral());
                keys.push((key, id.clone()));
                id
            }
        }
    };
    Node::start(PeerConfig {
        identity: Some(identity),
        ..PeerConfig::on_loopback(PeerName::new(name).unwrap(), tracker.local_addr())
    })
    .await
    .unwrap()
}

fn texts(node: &Node, with: &str) -> Vec<String> {
    node.history(&Destination::Direct(PeerName::new(with).unwrap()), 100)
        .into_iter()
        .map(|m| m.text)
        .collect()
}

async fn wait_for(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mailbox_tells_the_sender_and_loses_nothing() {
    let tracker = Tracker::start(TrackerConfig {
        mailbox_limit: 2,
        ..TrackerConfig::default()
    })
    .await
    .unwrap();
    let alice = node("alice", &tracker).await;
    let bob = node("bob", &tracker).await;
    bob.shutdown().await;
    let to_bob = Destination::Direct(PeerName::new("bob").unwrap());

    for text in ["one", "two"] {
        let report = alice.send(to_bob.clone(), text.into()).await.unwrap();
        assert_eq!(report.held, [PeerName::new("bob").unwrap()], "{report:?}");
    }
    let report = alice.send(to_bob.clone(), "three".into()).await.unwrap();
    assert!(report.held.is_empty(), "{report:?}");
    assert_eq!(report.queued.len(), 1, "{report:?}");
    assert!(
        report.queued[0]
            .error
            .contains("bob's mailbox is full (2 of 2"),
        "{report:?}"
    );

    // bob comes back: he gets the two held messages, and the third follows once his mailbox has room.
    let bob = node("bob", &tracker).await;
    wait_for("bob to get all three", Duration::from_secs(20), || {
        texts(&bob, "alice") == ["one", "two", "three"]
    })
    .await;
    assert_eq!(
        bob.direct_conversations(),
        [PeerName::new("alice").unwrap()]
    );
    alice.shutdown().await;
    bob.shutdown().await;
    tracker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_retried_with_the_same_id_is_stored_once_everywhere() {
    let tracker = Tracker::start(TrackerConfig::default()).await.unwrap();
    let alice = node("alice", &tracker).await;
    let bob = node("bob", &tracker).await;
    let to_bob = Destination::Direct(PeerName::new("bob").unwrap());
    let id = MessageId::now_v7();
    for _ in 0..2 {
        let report = alice
            .send_with_id(to_bob.clone(), "once".into(), Some(id))
            .await
            .unwrap();
        assert_eq!((report.id, report.delivered.len()), (id, 1), "{report:?}");
    }
    assert_eq!(texts(&bob, "alice"), ["once"]);
    assert_eq!(texts(&alice, "bob"), ["once"]);
    alice.shutdown().await;
    bob.shutdown().await;
    tracker.shutdown().await;
}
