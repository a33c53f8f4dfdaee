//! Peers carry their messages to each other over sessions (issue 13): a real tracker and real nodes on port 0 in
//! this process, each taking sessions on UDP, and hostile endpoints made with `hchat::link` itself. What the
//! tests hold the nodes to: DMs and channel messages go over sessions (counted in `/health`, and the HTTP receive
//! routes are not hit); a node presenting another key at the recipient's address gets nothing and the message
//! still reaches the real recipient through the mailbox; a name advertising someone else's session port gets
//! nothing; a frame whose `from` is not the session's identity is refused with `wrong_sender`, even when it is a
//! message that sender really signed; a recipient without a `quic_port` is reached over HTTP as before; a tracker
//! that rebinds a pinned name is refused loudly; and `hchat peer` processes with `--quic-port 0` / `off`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::in_process::keyed_node;
use futures_util::future::BoxFuture;
use hchat::identity::{Identity, PublicKey};
use hchat::link::{Endpoint, ErrorBody, Inbox, SendError};
use hchat::peer::{Node, PushCounts, QuicPort};
use hchat::proto::{ChannelName, ChatMessage, Destination, PeerName};
use hchat::tracker::{Tracker, TrackerConfig};

fn n(s: &str) -> PeerName {
    PeerName::new(s).unwrap()
}

async fn node_with(name: &str, tracker: &Tracker, quic_port: QuicPort) -> (Node, Arc<Identity>) {
    let id = Arc::new(Identity::ephemeral());
    let node = keyed_node(name, tracker, &id, quic_port).await;
    (node, id)
}

async fn node(name: &str, tracker: &Tracker) -> (Node, Arc<Identity>) {
    node_with(name, tracker, QuicPort::default()).await
}

fn texts(node: &Node, conversation: &Destination) -> Vec<String> {
    node.history(conversation, 100)
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

async fn get_json(url: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A node's counts as its `GET /health` shows them.
async fn health_pushes(node: &Node) -> PushCounts {
    let h = get_json(&format!("http://{}/health", node.local_addr())).await;
    let p = &h["pushes"];
    let at = |k: &str| p[k].as_u64().unwrap_or_else(|| panic!("{k} in {h}"));
    PushCounts {
        session_out: at("session_out"),
        http_out: at("http_out"),
        session_in: at("session_in"),
        http_in: at("http_in"),
        relayed_out: at("relayed_out"),
        relayed_in: at("relayed_in"),
    }
}

/// Registers `name` with `id` at `http` (a renewal, when it is that name's live address already), advertising
/// `quic_port`: what a peer, or a puppet, may tell the tracker.
async fn register(tracker: &Tracker, id: &Identity, name: &str, http: SocketAddr, quic_port: u16) {
    let req = id.register_request_with(&n(name), http.ip(), http.port(), Some(quic_port));
    let resp = reqwest::Client::new()
        .post(format!("http://{}/submit-info", tracker.local_addr()))
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

/// A session endpoint that is not a peer: it records every lookup and every message that reaches it.
#[derive(Default)]
struct Recorder {
    lookups: AtomicUsize,
    stored: Mutex<Vec<ChatMessage>>,
}

impl Inbox for Recorder {
    fn key_of<'a>(&'a self, _name: &'a PeerName) -> BoxFuture<'a, Option<PublicKey>> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        Box::pin(async { None })
    }
    fn deliver(
        &self,
        _from: PublicKey,
        batch: Vec<ChatMessage>,
    ) -> BoxFuture<'_, Vec<Result<(), ErrorBody>>> {
        let n = batch.len();
        self.stored.lock().unwrap().extend(batch);
        Box::pin(async move { vec![Ok(()); n] })
    }
}

fn recorder(id: Arc<Identity>) -> (Arc<Endpoint>, Arc<Recorder>) {
    let inbox = Arc::new(Recorder::default());
    let ep = Endpoint::bind("127.0.0.1:0".parse().unwrap(), id, inbox.clone()).unwrap();
    (ep, inbox)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dms_and_channel_messages_between_three_peers_go_over_sessions() {
    let tracker = Tracker::start(TrackerConfig::default()).await.unwrap();
    let (alice, _) = node("alice", &tracker).await;
    let (bob, _) = node("bob", &tracker).await;
    let (carol, _) = node("carol", &tracker).await;
    let general = ChannelName::new("general").unwrap();
    for p in [&alice, &bob, &carol] {
        p.join(&general).await.unwrap();
    }
    // Each advertises where it takes sessions: UDP at its HTTP port's number.
    let list = get_json(&format!(
        "http://{}/get-list?channel=general",
        tracker.local_addr()
    ))
    .await;
    for (p, entry) in [&alice, &bob, &carol]
        .iter()
        .zip(list["peers"].as_array().unwrap())
    {
        assert_eq!(entry["name"], p.name().as_str());
        assert_eq!(
            entry["quic_port"].as_u64(),
            Some(p.local_addr().port() as u64),
            "{list}"
        );
    }

    let to_bob = Destination::Direct(n("bob"));
    let to_alice = Destination::Direct(n("alice"));
    let room = Destination::Channel(general.clone());
    let r = alice.send(to_bob.clone(), "hi bob".into()).await.unwrap();
    assert_eq!(r.delivered, [n("bob")], "{r:?}");
    let r = bob.send(to_alice.clone(), "hi alice".into()).await.unwrap();
    assert_eq!(r.delivered, [n("alice")], "{r:?}");
    let r = carol.send(room.clone(), "hello all".into()).await.unwrap();
    assert_eq!(r.delivered.len(), 2, "{r:?}");
    for i in 0..20 {
        let r = alice
            .send(room.clone(), format!("burst {i}"))
            .await
            .unwrap();
        assert_eq!(r.delivered.len(), 2, "{r:?}");
    }
    assert_eq!(texts(&bob, &to_alice), ["hi bob", "hi alice"]);
    let burst: Vec<String> = std::iter::once("hello all".to_string())
        .chain((0..20).map(|i| format!("burst {i}")))
        .collect();
    assert_eq!(texts(&bob, &room), burst, "order per sender kept");
    assert_eq!(texts(&carol, &room)[1..], burst[1..]);

    let (a, b, c) = (
        health_pushes(&alice).await,
        health_pushes(&bob).await,
        health_pushes(&carol).await,
    );
    assert_eq!((a.session_out, b.session_out, c.session_out), (41, 1, 2));
    assert_eq!((a.session_in, b.session_in, c.session_in), (2, 22, 20));
    for (name, p) in [("alice", a), ("bob", b), ("carol", c)] {
        assert_eq!((p.http_out, p.http_in), (0, 0), "{name} used HTTP: {p:?}");
    }
    // One connection per pair, used both ways: alice dialled bob, and bob's answer came back on it.
    assert!(bob.session_addr().is_some());
    for p in [alice, bob, carol] {
        p.shutdown().await;
    }
    tracker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_without_a_quic_port_is_reached_over_http() {
    let tracker = Tracker::start(TrackerConfig::default()).await.unwrap();
    let (alice, _) = node("alice", &tracker).await;
    let (old, _) = node_with("old", &tracker, QuicPort::Off).await;
    assert_eq!(old.session_addr(), None);
    let found = get_json(&format!("http://{}/peers", tracker.local_addr())).await;
    let entry = found["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "old")
        .unwrap()
        .clone();
    assert!(entry.get("quic_port").is_none(), "{entry}");

    let r = alice
        .send(Destination::Direct(n("old")), "over http".into())
        .await
        .unwrap();
    assert_eq!(r.delivered, [n("old")], "{r:?}");
    let r = old
        .send(Destination::Direct(n("alice")), "and back".into())
        .await
        .unwrap();
    assert_eq!(r.delivered, [n("alice")], "{r:?}");
    let (a, o) = (health_pushes(&alice).await, health_pushes(&old).await);
    assert_eq!(
        (a.http_out, a.session_out, o.http_in, o.session_in),
        (1, 0, 1, 0)
    );
    // alice takes sessions, but a peer without them pushes to her over HTTP, and she takes it.
    assert_eq!((o.http_out, a.http_in), (1, 1));
    alice.shutdown().await;
    old.shutdown().await;
    tracker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_presenting_another_key_at_bobs_address_gets_nothing_and_bob_gets_it_from_the_mailbox()
 {
    let tracker = Tracker::start(TrackerConfig::default()).await.unwrap();
    let (alice, _) = node("alice", &tracker).await;
    let (bob, bob_id) = node("bob", &tracker).await;
    // An impostor takes sessions somewhere, with a key of its own, and bob's registration is made to point there
    // (signed with bob's key: what a path between bob and the tracker, or bob's own bad config, could do).
    let (impostor, seen) = recorder(Arc::new(Identity::ephemeral()));
    register(
        &tracker,
        &bob_id,
        "bob",
        bob.advertised(),
        impostor.local_addr().port(),
    )
    .await;

    let to_bob = Destination::Direct(n("bob"));
    let r = alice
        .send(to_bob.clone(), "for bob only".into())
        .await
        .unwrap();
    assert!(r.delivered.is_empty(), "not counted delivered: {r:?}");
    assert_eq!(r.held, [n("bob")], "{r:?}");
    assert_eq!(
        (
            seen.lookups.load(Ordering::Relaxed),
            seen.stored.lock().unwrap().len()
        ),
        (0, 0),
        "the impostor got nothing"
    );
    assert_eq!(impostor.accepted(), 0, "alice aborted the handshake");
    // The real bob gets it from the mailbox at his next renewal (every ttl/3).
    wait_for(
        "bob to get it from the mailbox",
        Duration::from_secs(25),
        || texts(&bob, &Destination::Direct(n("alice"))) == ["for bob only"],
    )
    .await;
    assert_eq!(health_pushes(&alice).await.session_out, 0);
    alice.shutdown().await;
    bob.shutdown().await;
    tracker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_advertising_a_session_port_it_cannot_prove_receives_nothing() {
    let tracker = Tracker::start(TrackerConfig::default()).await.unwrap();
    let (alice, _) = node("alice", &tracker).await;
    let (bob, _) = node("bob", &tracker).await;
    let bob_sessions = bob.session_addr().unwrap();
    // A puppet: a real key of its own, registered at an HTTP address nothing listens on, advertising bob's
    // session port as its own.
    let puppet = Identity::ephemeral();
    let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    register(&tracker, &puppet, "puppet", nowhere, bob_sessions.port()).await;

    let r = alice
        .send(Destination::Direct(n("puppet")), "to the puppet".into())
        .await
        .unwrap();
    assert!(r.delivered.is_empty(), "{r:?}");
    assert_eq!(r.held, [n("puppet")], "{r:?}");
    let b = health_pushes(&bob).await;
    assert_eq!((b.session_in, b.http_in), (0, 0), "bob got nothing");
    assert!(bob.direct_conversations().is_empty());
    // bob's address is backed off only for what did not prove to be bob: alice still reaches bob himself.
    let r = alice
        .send(Destination::Direct(n("bob")), "to bob".into())
        .await
        .unwrap();
    assert_eq!(r.delivered, [n("bob")], "{r:?}");
    alice.shutdown().await;
    bob.shutdown().await;
    tracker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_whose_from_is_not_the_sessions_identity_is_refused_with_wrong_sender() {
    let tracker = Tracker::start(TrackerConfig::default()).await.unwrap();
    let (alice, alice_id) = node("alice", &tracker).await;
    let (bob, _) = node("bob", &tracker).await;
    let (mallory, mallory_id) = node("mallory", &tracker).await;
    // mallory dials bob with her own (registered, proven) key.
    let (ep, _) = recorder(mallory_id.clone());
    let link = ep
        .link(bob.session_addr().unwrap(), bob.public_key())
        .await
        .unwrap();
    let to_bob = Destination::Direct(n("bob"));

    // A message claiming alice, signed by mallory; and one alice really signed, replayed by mallory.
    let mut forged = ChatMessage::new(n("alice"), to_bob.clone(), "forged".into()).unwrap();
    mallory_id.sign_message(&mut forged);
    let mut replayed = ChatMessage::new(n("alice"), to_bob.clone(), "replayed".into()).unwrap();
    alice_id.sign_message(&mut replayed);
    for m in [&forged, &replayed] {
        match link.send(m).await {
            Err(SendError::Refused(e)) => {
                assert_eq!(e.code, "wrong_sender", "{e:?}");
                assert_eq!(e.id, Some(m.id));
            }
            other => panic!("{:?} was not refused: {other:?}", m.text),
        }
    }
    // A name nobody holds: unknown_identity.
    let mut nobody = ChatMessage::new(n("nobody"), to_bob.clone(), "who?".into()).unwrap();
    mallory_id.sign_message(&mut nobody);
    match link.send(&nobody).await {
        Err(SendError::Refused(e)) => assert_eq!(e.code, "unknown_identity", "{e:?}"),
        other => panic!("not refused: {other:?}"),
    }
    // Her own name is accepted on her session, and bob's other checks still hold (a DM for someone else).
    let mut own = ChatMessage::new(n("mallory"), to_bob.clone(), "mine".into()).unwrap();
    mallory_id.sign_message(&mut own);
    link.send(&own).await.unwrap();
    let mut misdirected =
        ChatMessage::new(n("mallory"), Destination::Direct(n("alice")), "x".into()).unwrap();
    mallory_id.sign_message(&mut misdirected);
    match link.send(&misdirected).await {
        Err(SendError::Refused(e)) => assert_eq!(e.code, "wrong_recipient", "{e:?}"),
        other => panic!("not refused: {other:?}"),
    }
    assert!(texts(&bob, &Destination::Direct(n("alice"))).is_empty());
    assert_eq!(texts(&bob, &Destination::Direct(n("mallory"))), ["mine"]);
    assert_eq!(health_pushes(&bob).await.session_in, 1);
    ep.close();
    for p in [alice, bob, mallory] {
        p.shutdown().await;
    }
    tracker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracker_that_rebinds_a_pinned_name_to_another_key_is_refused_loudly_until_the_user_forgets_it()
 {
    // The tracker keeps its own key across the restart (alice pinned it), but not its bindings.
    let tracker_id = Arc::new(Identity::ephemeral());
    let tracker = Tracker::start(TrackerConfig {
        identity: Some(tracker_id.clone()),
        ..TrackerConfig::default()
    })
    .await
    .unwrap();
    let port = tracker.local_addr().port();
    let (alice, _) = node("alice", &tracker).await;
    let (bob, _) = node("bob", &tracker).await;
    let old_key = bob.public_key();
    let to_bob = Destination::Direct(n("bob"));
    let r = alice.send(to_bob.clone(), "first".into()).await.unwrap();
    assert_eq!(r.delivered, [n("bob")], "{r:?}");
    let w = alice.whois(&n("bob")).await;
    assert_eq!(
        w.pinned.as_ref().map(|(fp, _)| fp.clone()),
        Some(old_key.fingerprint())
    );
    bob.shutdown().await;

    // The tracker loses its bindings (it kept nothing on disk) and someone registers "bob" with another key.
    tracker.shutdown().await;
    // On the same HTTP port but any UDP port: the old endpoint's socket may not be released yet (it failed with
    // AddrInUse under load); peers learn the session port from the tracker's /health.
    let tracker = Tracker::start(TrackerConfig {
        port,
        quic_port: Some(0),
        identity: Some(tracker_id),
        ..TrackerConfig::default()
    })
    .await
    .unwrap();
    let (bob2, bob2_id) = node("bob", &tracker).await;
    let new_key = bob2.public_key();
    let mut events = alice.subscribe();

    let sent = alice.send(to_bob.clone(), "second".into()).await;
    match &sent {
        Err(hchat::peer::NodeError::Refused { code, .. }) => {
            assert_eq!(*code, hchat::proto::ErrorCode::KeyChanged)
        }
        Ok(r) => assert!(r.delivered.is_empty() && r.held.is_empty(), "{r:?}"),
        Err(e) => panic!("{e}"),
    }
    // One loud line, naming bob, both fingerprints and what to do.
    let line = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let ev = events.recv().await.unwrap();
            if let hchat::peer::events::Event::Notice { text } = &ev.event
                && text.contains("another key for bob")
            {
                return text.clone();
            }
        }
    })
    .await
    .expect("alice is told bob's key changed");
    for part in [
        new_key.fingerprint(),
        old_key.fingerprint(),
        "/forget-key bob".to_string(),
    ] {
        assert!(line.contains(&part), "{part:?} not in {line:?}");
    }
    assert!(!line.contains('\n'), "one line: {line:?}");
    // Nothing from the new key is taken either: not over a session (bob2's worker then leaves it in the mailbox),
    // not over HTTP (the check mail from the mailbox also goes through).
    let back = bob2
        .send(Destination::Direct(n("alice")), "it's me".into())
        .await
        .unwrap();
    assert!(back.delivered.is_empty(), "{back:?}");
    assert_eq!(
        (
            bob2.push_counts().session_out,
            alice.push_counts().session_in
        ),
        (0, 0),
        "nothing from bob2 reached alice over a session"
    );
    let mut pushed = ChatMessage::new(
        n("bob"),
        Destination::Direct(n("alice")),
        "over http".into(),
    )
    .unwrap();
    bob2_id.sign_message(&mut pushed);
    let resp = reqwest::Client::new()
        .post(format!("http://{}/p2p/receive", alice.local_addr()))
        .json(&pushed)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "key_changed", "{body}");
    assert_eq!(
        texts(&alice, &Destination::Direct(n("bob"))),
        ["first", "second"]
    );
    let w = alice.whois(&n("bob")).await;
    assert_eq!(w.vouched, Some(new_key.fingerprint()));
    assert_eq!(
        w.pinned.map(|(fp, _)| fp),
        Some(old_key.fingerprint()),
        "still the old pin"
    );

    // alice checked with bob out of band: she forgets the pin, and the new key is pinned and used.
    assert!(alice.forget_key(&n("bob")).await.unwrap());
    let r = alice.send(to_bob.clone(), "third".into()).await.unwrap();
    assert_eq!(r.delivered, [n("bob")], "{r:?}");
    assert_eq!(
        texts(&bob2, &Destination::Direct(n("alice"))),
        ["it's me", "third"]
    );
    assert_eq!(
        alice.whois(&n("bob")).await.pinned.map(|(fp, _)| fp),
        Some(new_key.fingerprint())
    );
    alice.shutdown().await;
    bob2.shutdown().await;
    tracker.shutdown().await;
}

/// The binary as users run it: `--quic-port 0` takes sessions on a free UDP port (printed), `--quic-port off` none;
/// DMs between two session peers go over the session, to the one without over HTTP; `/whois` shows the pinned key.
#[test]
fn hchat_peer_processes_use_sessions_unless_told_off() {
    use crate::common::{Proc, get_json as get};
    let tracker = Proc::tracker(&[]);
    let mut alice = Proc::peer("alice", tracker.addr, &["--quic-port", "0"]);
    let mut bob = Proc::peer("bob", tracker.addr, &[]);
    let mut old = Proc::peer("old", tracker.addr, &["--quic-port", "off"]);
    alice
        .out
        .wait_for("alice's session port", Duration::from_secs(10), |l| {
            l.starts_with("* sessions on udp 127.0.0.1:")
        });
    alice.type_line("@bob over a session");
    bob.out.wait_line("[@alice] alice: over a session");
    alice.type_line("@old over http");
    old.out.wait_line("[@alice] alice: over http");
    let pushes = |p: &Proc| get(&p.url("/health"), 200)["pushes"].clone();
    assert_eq!(pushes(&bob)["session_in"], 1, "{}", pushes(&bob));
    assert_eq!(pushes(&bob)["http_in"], 0);
    assert_eq!(pushes(&old)["http_in"], 1, "{}", pushes(&old));
    assert!(get(&old.url("/health"), 200).get("quic_port").is_none());
    assert_eq!(pushes(&alice)["session_out"], 1);
    assert_eq!(pushes(&alice)["http_out"], 1);

    alice.type_line("/whois bob");
    alice
        .out
        .wait_for("alice's /whois", Duration::from_secs(10), |l| {
            l.starts_with("* bob: key ")
                && l.contains(", pinned since ")
                && l.ends_with("compare it with bob out of band")
        });
    alice.type_line("/whois carol");
    alice
        .out
        .wait_for("/whois of an unknown name", Duration::from_secs(10), |l| {
            l.starts_with("* carol: not pinned yet")
        });
    for p in [&mut alice, &mut bob, &mut old] {
        p.close_stdin();
        assert!(p.wait_exit(Duration::from_secs(10)).success());
    }
}

/// A refusal for now halts the stream at the receiver, within one batch too: bob cannot ask the (stopped) tracker
/// who may post in #general, so alice's channel message is refused `cannot_verify_sender`, and her DM written
/// right behind it, read in the same batch, is refused `stream_halted` and not stored. Stored, it would come
/// before the channel message, which her outbox sends again later (docs/SESSIONS.md, 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_for_now_keeps_the_messages_behind_it_out_of_the_store() {
    use hchat::link::frame::{self, Decoded, Frame};
    let tracker = Tracker::start(TrackerConfig::default()).await.unwrap();
    let (alice, alice_id) = node("alice", &tracker).await;
    let (bob, _) = node("bob", &tracker).await;
    let general = ChannelName::new("general").unwrap();
    alice.join(&general).await.unwrap();
    bob.join(&general).await.unwrap();
    // bob learns alice's key (it stands while the tracker is away); he has had no channel message yet.
    let r = alice
        .send(Destination::Direct(n("bob")), "hello".into())
        .await
        .unwrap();
    assert_eq!(r.delivered, [n("bob")], "{r:?}");
    tracker.shutdown().await;

    // As alice, by hand: the channel message and the DM in one write.
    let (ep, _) = recorder(alice_id.clone());
    let link = ep
        .link(bob.session_addr().unwrap(), bob.public_key())
        .await
        .unwrap();
    let mut first = ChatMessage::new(
        n("alice"),
        Destination::Channel(general.clone()),
        "first".into(),
    )
    .unwrap();
    alice_id.sign_message(&mut first);
    let mut second =
        ChatMessage::new(n("alice"), Destination::Direct(n("bob")), "second".into()).unwrap();
    alice_id.sign_message(&mut second);
    let mut out = Vec::new();
    frame::encode_message(&first, &mut out).unwrap();
    frame::encode_message(&second, &mut out).unwrap();
    let (mut send, mut recv) = link.open_stream().await.unwrap();
    send.write_all(&out).await.unwrap();
    send.finish().unwrap();
    let mut answers = Vec::new();
    let mut buf = Vec::new();
    while let Some(chunk) = recv.read_chunk(usize::MAX, true).await.unwrap() {
        buf.extend_from_slice(&chunk.bytes);
        while let Ok(Decoded::Frame(len, f)) = frame::decode(&buf) {
            match f.unwrap() {
                Frame::Error(e) => answers.push((e.id, e.code)),
                other => panic!("only refusals expected, got {other:?}"),
            }
            buf.drain(..len);
        }
    }
    answers.sort_by_key(|(id, _)| *id != Some(first.id));
    assert_eq!(
        answers,
        [
            (Some(first.id), "cannot_verify_sender".to_string()),
            (Some(second.id), "stream_halted".to_string())
        ]
    );
    assert_eq!(texts(&bob, &Destination::Direct(n("alice"))), ["hello"]);
    ep.close();
    alice.shutdown().await;
    bob.shutdown().await;
}
