//! Sessions (issue 13's groundwork, `hchat::link`): two nodes on loopback prove their keys to each other, carry
//! messages both ways over one connection, and refuse whoever is not who they should be.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use hchat::identity::{Identity, PublicKey};
use hchat::link::{Config, Endpoint, ErrorBody, Inbox, LinkError, SendError};
use hchat::proto::{ChatMessage, Destination, PeerName};

/// A node's view for the test: who each name is, and what it stored (with the key it came from).
#[derive(Default)]
struct Node {
    keys: Mutex<HashMap<PeerName, PublicKey>>,
    stored: Mutex<Vec<(PublicKey, ChatMessage)>>,
}

impl Inbox for Node {
    fn key_of<'a>(&'a self, name: &'a PeerName) -> BoxFuture<'a, Option<PublicKey>> {
        Box::pin(async move { self.keys.lock().unwrap().get(name).copied() })
    }
    fn deliver(
        &self,
        from: PublicKey,
        batch: Vec<ChatMessage>,
    ) -> BoxFuture<'_, Vec<Result<(), ErrorBody>>> {
        Box::pin(async move {
            let n = batch.len();
            let mut stored = self.stored.lock().unwrap();
            stored.extend(batch.into_iter().map(|m| (from, m)));
            vec![Ok(()); n]
        })
    }
}

struct Peer {
    name: PeerName,
    id: Arc<Identity>,
    node: Arc<Node>,
    ep: Arc<Endpoint>,
}

fn peer(name: &str, config: Config) -> Peer {
    let id = Arc::new(Identity::ephemeral());
    let node = Arc::new(Node::default());
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let ep = Endpoint::bind_with(lo, id.clone(), node.clone(), config).unwrap();
    Peer {
        name: PeerName::new(name).unwrap(),
        id,
        node,
        ep,
    }
}

/// Each of `peers` knows every other's key under its name (what the tracker will tell them).
fn introduce(peers: &[&Peer]) {
    for p in peers {
        for q in peers {
            p.node
                .keys
                .lock()
                .unwrap()
                .insert(q.name.clone(), q.id.public_key());
        }
    }
}

fn dm(from: &Peer, to: &Peer, text: &str) -> ChatMessage {
    let mut m = ChatMessage::new(
        from.name.clone(),
        Destination::Direct(to.name.clone()),
        text.into(),
    )
    .unwrap();
    from.id.sign_message(&mut m);
    m
}

fn texts(p: &Peer) -> Vec<String> {
    p.node
        .stored
        .lock()
        .unwrap()
        .iter()
        .map(|(_, m)| m.text.clone())
        .collect()
}

#[tokio::test]
async fn two_nodes_prove_their_keys_and_talk_both_ways_over_one_connection() {
    let (alice, bob) = (
        peer("alice", Config::default()),
        peer("bob", Config::default()),
    );
    introduce(&[&alice, &bob]);

    let link = alice
        .ep
        .link(bob.ep.local_addr(), bob.id.public_key())
        .await
        .unwrap();
    assert_eq!(link.remote_key(), bob.id.public_key());
    link.send(&dm(&alice, &bob, "hi bob")).await.unwrap();
    let got = bob.node.stored.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].0,
        alice.id.public_key(),
        "bob learnt alice's key from the handshake"
    );

    // Bob answers on the connection alice opened: no second dial, no second connection.
    let back = bob
        .ep
        .link(alice.ep.local_addr(), alice.id.public_key())
        .await
        .unwrap();
    assert_eq!(back.remote_key(), alice.id.public_key());
    back.send(&dm(&bob, &alice, "hi alice")).await.unwrap();
    assert_eq!(texts(&alice), ["hi alice"]);
    assert_eq!(
        (alice.ep.open_connections(), bob.ep.open_connections()),
        (1, 1)
    );
    assert!(Arc::ptr_eq(
        &alice
            .ep
            .link(bob.ep.local_addr(), bob.id.public_key())
            .await
            .unwrap(),
        &link
    ));

    // Many at once, from many tasks: every one acked, and one task's messages arrive in its order.
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (link, msgs): (_, Vec<_>) = (
            link.clone(),
            (0..50)
                .map(|i| dm(&alice, &bob, &format!("{t}:{i}")))
                .collect(),
        );
        tasks.push(tokio::spawn(async move {
            let sends = msgs.iter().map(|m| link.send(m));
            futures_util::future::join_all(sends).await
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().iter().all(|r| r.is_ok()));
    }
    let stored = texts(&bob);
    assert_eq!(stored.len(), 201);
    for t in 0..4 {
        let mine: Vec<_> = stored
            .iter()
            .filter(|s| s.starts_with(&format!("{t}:")))
            .cloned()
            .collect();
        let sent: Vec<_> = (0..50).map(|i| format!("{t}:{i}")).collect();
        assert_eq!(mine, sent);
    }
}

#[tokio::test]
async fn a_dialler_that_reaches_another_key_gets_an_error_and_sends_nothing() {
    let (alice, bob, mallory) = (
        peer("alice", Config::default()),
        peer("bob", Config::default()),
        peer("mallory", Config::default()),
    );
    introduce(&[&alice, &bob, &mallory]);
    // Mallory's address, advertised as bob's: alice expects bob's key.
    let err = alice
        .ep
        .link(mallory.ep.local_addr(), bob.id.public_key())
        .await
        .unwrap_err();
    match err {
        LinkError::WrongKey {
            expected, found, ..
        } => assert_eq!(
            (expected, found),
            (bob.id.public_key(), Some(mallory.id.public_key()))
        ),
        other => panic!("{other}"),
    }
    let sent = alice
        .ep
        .send(
            mallory.ep.local_addr(),
            bob.id.public_key(),
            &dm(&alice, &bob, "for bob only"),
        )
        .await;
    assert!(
        matches!(sent, Err(SendError::NoLink(LinkError::WrongKey { .. }))),
        "{sent:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(texts(&mallory).is_empty());
    assert_eq!(
        (mallory.ep.pooled(), mallory.ep.accepted()),
        (0, 0),
        "mallory never got a session, so never saw alice's key"
    );
    assert_eq!(alice.ep.pooled(), 0);
}

#[tokio::test]
async fn a_message_whose_from_is_not_the_sessions_identity_is_refused() {
    let (alice, bob, carol) = (
        peer("alice", Config::default()),
        peer("bob", Config::default()),
        peer("carol", Config::default()),
    );
    introduce(&[&alice, &bob, &carol]);
    let link = alice
        .ep
        .link(bob.ep.local_addr(), bob.id.public_key())
        .await
        .unwrap();
    // Signed by carol and claiming to be hers, but on alice's session.
    let carols = dm(&carol, &bob, "carol says");
    match link.send(&carols).await {
        Err(SendError::Refused(e)) => {
            assert_eq!(e.code, "wrong_sender");
            assert_eq!(e.id, Some(carols.id));
        }
        other => panic!("{other:?}"),
    }
    // A name nobody vouched for.
    let mut stranger = dm(&alice, &bob, "who am I");
    stranger.from = PeerName::new("stranger").unwrap();
    match link.send(&stranger).await {
        Err(SendError::Refused(e)) => assert_eq!(e.code, "unknown_identity"),
        other => panic!("{other:?}"),
    }
    // The session goes on: alice's own message is stored, and only it.
    link.send(&dm(&alice, &bob, "really alice")).await.unwrap();
    assert_eq!(texts(&bob), ["really alice"]);
}

#[tokio::test]
async fn the_pool_is_bounded_and_idle_connections_close() {
    let small = Config {
        idle_timeout: Duration::from_millis(300),
        max_connections: 1,
        keep_alive: None,
        max_streams: 8,
        relay: false,
    };
    let (alice, bob, carol) = (
        peer("alice", small.clone()),
        peer("bob", small.clone()),
        peer("carol", small),
    );
    introduce(&[&alice, &bob, &carol]);
    let to_bob = alice
        .ep
        .link(bob.ep.local_addr(), bob.id.public_key())
        .await
        .unwrap();
    to_bob.send(&dm(&alice, &bob, "1")).await.unwrap();
    let to_carol = alice
        .ep
        .link(carol.ep.local_addr(), carol.id.public_key())
        .await
        .unwrap();
    to_carol.send(&dm(&alice, &carol, "2")).await.unwrap();
    assert_eq!(alice.ep.pooled(), 1, "bob's was evicted");
    assert!(alice.ep.pooled_link(&bob.id.public_key()).is_none());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(to_bob.is_closed());

    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(to_carol.is_closed(), "idle past the timeout");
    assert_eq!(
        (alice.ep.pooled(), carol.ep.pooled(), bob.ep.pooled()),
        (0, 0, 0)
    );
    // And a new need dials again.
    alice
        .ep
        .send(
            carol.ep.local_addr(),
            carol.id.public_key(),
            &dm(&alice, &carol, "3"),
        )
        .await
        .unwrap();
    assert_eq!(texts(&carol), ["2", "3"]);
}

#[tokio::test]
async fn when_both_dial_at_once_both_keep_the_same_connection() {
    let (alice, bob) = (
        peer("alice", Config::default()),
        peer("bob", Config::default()),
    );
    introduce(&[&alice, &bob]);
    let (a, b) = tokio::join!(
        alice.ep.link(bob.ep.local_addr(), bob.id.public_key()),
        bob.ep.link(alice.ep.local_addr(), alice.id.public_key()),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    // Each side's pool settles once both handshakes are done.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        (alice.ep.accepted(), bob.ep.accepted()),
        (1, 1),
        "two connections were made"
    );
    let a = alice.ep.pooled_link(&bob.id.public_key()).unwrap_or(a);
    let b = bob.ep.pooled_link(&alice.id.public_key()).unwrap_or(b);
    let smaller = std::cmp::min(
        alice.id.public_key().to_bytes(),
        bob.id.public_key().to_bytes(),
    );
    assert_eq!(a.dialler().to_bytes(), smaller);
    assert_eq!(b.dialler().to_bytes(), smaller);
    a.send(&dm(&alice, &bob, "a")).await.unwrap();
    b.send(&dm(&bob, &alice, "b")).await.unwrap();
}
