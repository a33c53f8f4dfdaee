//! Issue 14, the relay: when a peer cannot open a direct session with another, the tracker relays that session,
//! live, without being able to read it, and the peers move back to the direct path once it works. Then what a
//! hostile member sends on a relay stream: no relay for a key without a live registration, none to itself or to
//! nobody, the source is always the session's key, and a flood is dropped at the tracker's rate limit.
//!
//! On loopback the direct path really fails: bob binds 127.0.0.1 and advertises 127.0.0.71, where nothing listens
//! (the cut), so alice's dials to him go unanswered. Lifting the cut is starting a forwarder there.

use crate::common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::relay::{Recording, Relay, free_port, loopback};
use common::*;
use hchat::identity::{Identity, PublicKey};
use hchat::link::relay::{RelayLimits, TYPE_RELAY, TYPE_RELAY_OPEN};
use hchat::link::{Endpoint, NoInbox};
use hchat::tracker::{Tracker, TrackerConfig};
use serde_json::json;

const DM_TO_BOB: &str = "relayed: the blue door opens at noon";
const DM_TO_ALICE: &str = "relayed back: bring the brass key";
const SAID: &str = "relayed to the channel: meet by the old mill";
const DIRECT: &str = "direct again: the mill is closed";

fn peer(name: &str, port: u16, advertise: IpAddr, tracker: SocketAddr) -> Proc {
    let mut cmd = hchat();
    cmd.args(["peer", "--name", name, "--ip", "127.0.0.1"])
        .args(["--port", &port.to_string()])
        .args(["--advertise-ip", &advertise.to_string()])
        .args(["--tracker-ip", &tracker.ip().to_string()])
        .args(["--tracker-port", &tracker.port().to_string()])
        .args(["--join", "general"]);
    spawn_node(name, cmd)
}

fn health(p: &Proc) -> serde_json::Value {
    get_json(&p.url("/health"), 200)
}

/// Waits until each peer holds its relay stream with the tracker (opened once it has registered).
fn relay_up(peers: &[&Proc]) {
    for p in peers {
        wait_until(&format!("{}'s relay stream", p.name), SOON, || {
            health(p)["relay"]["up"] == true
        });
    }
}

fn send(p: &Proc, body: serde_json::Value) {
    let (status, answer) = post_json(&p.url("/api/send"), &body);
    assert_eq!(status, 200, "{} sends {body}: {answer}", p.name);
}

/// Sends with `body` from `from` and waits for `line` at `to`: how long it took.
fn time_to_arrive(from: &Proc, body: serde_json::Value, to: &Proc, line: &str) -> Duration {
    let t0 = Instant::now();
    send(from, body);
    to.out.wait_line(line);
    t0.elapsed()
}

#[test]
fn peers_that_cannot_reach_each_other_talk_through_the_relay_unreadable_and_go_direct_when_they_can()
 {
    let rec = Recording::default();
    let tracker = Proc::tracker(&[]);
    let tracker_via = SocketAddr::new(loopback(70), tracker.addr.port());
    let _tracker_relay = Relay::start(&rec, tracker_via, tracker.addr).unwrap();

    let alice_port = free_port(loopback(1));
    let bob_ip = loopback(71);
    let bob_port = free_port(bob_ip);
    let alice = peer("alice", alice_port, loopback(1), tracker_via);
    let bob = peer("bob", bob_port, bob_ip, tracker_via);
    joined(&alice, "general");
    joined(&bob, "general");
    wait_until("both in #general", SOON, || {
        let m = get_json(&alice.url("/api/members?channel=general"), 200).to_string();
        m.contains("\"bob\"") && m.contains("\"alice\"")
    });
    relay_up(&[&alice, &bob]);

    // alice cannot reach bob's advertised address: the session goes through the tracker, and each message
    // arrives within a second.
    let took = [
        time_to_arrive(
            &alice,
            json!({"to": "bob", "text": DM_TO_BOB}),
            &bob,
            &format!("[@alice] alice: {DM_TO_BOB}"),
        ),
        time_to_arrive(
            &bob,
            json!({"to": "alice", "text": DM_TO_ALICE}),
            &alice,
            &format!("[@bob] bob: {DM_TO_ALICE}"),
        ),
        time_to_arrive(
            &alice,
            json!({"channel": "general", "text": SAID}),
            &bob,
            &format!("[#general] alice: {SAID}"),
        ),
    ];
    for t in took {
        assert!(
            t < Duration::from_secs(1),
            "a relayed message took {t:?}: {took:?}"
        );
    }
    // Shown "via relay" at both ends, counted as relayed, and by the tracker.
    alice.out.wait_for("alice's via-relay line", SOON, |l| {
        l.starts_with("* @bob: via relay")
    });
    bob.out.wait_for("bob's via-relay line", SOON, |l| {
        l.starts_with("* @alice: via relay")
    });
    let (a, b) = (health(&alice), health(&bob));
    assert!(a["pushes"]["relayed_out"].as_u64().unwrap() >= 2, "{a}");
    assert!(b["pushes"]["relayed_in"].as_u64().unwrap() >= 2, "{b}");
    assert!(b["pushes"]["relayed_out"].as_u64().unwrap() >= 1, "{b}");
    assert_eq!(a["via_relay"], json!(["bob"]), "{a}");
    assert_eq!(b["via_relay"], json!(["alice"]), "{b}");
    assert_eq!(
        get_json(&alice.url("/api/me"), 200)["via_relay"],
        json!(["bob"])
    );
    let t = health(&tracker);
    assert!(t["relay"]["packets"].as_u64().unwrap() > 0, "{t}");
    assert_eq!(t["relay"]["streams"], 2, "{t}");
    // Everything the tracker saw passed through the recording: the relayed packets, and no word of the text.
    assert!(rec.len() > 0);
    for text in [DM_TO_BOB, DM_TO_ALICE, SAID] {
        assert!(
            !rec.contains(text.as_bytes()),
            "{text:?} crossed the tracker in the clear"
        );
        assert!(!rec.contains(&text.as_bytes()[..12]));
    }

    // Once alice's first direct dial has given up (so it is her later tries that find the path)...
    wait_until("alice's first direct dial to fail", SOON, || {
        health(&alice)["relay"]["direct_failed"].as_u64().unwrap() >= 1
    });
    // ... the cut is lifted: bob's advertised address now reaches him. alice's next try of the direct path
    // works, and the conversation moves to it.
    let _uncut = Relay::start(
        &Recording::default(),
        SocketAddr::new(bob_ip, bob_port),
        SocketAddr::new(loopback(1), bob_port),
    )
    .unwrap();
    let t0 = Instant::now();
    alice
        .out
        .wait_for("alice's direct line", Duration::from_secs(20), |l| {
            l == "* @bob: direct"
        });
    let moved = t0.elapsed();
    let relayed_before = health(&alice)["pushes"]["relayed_out"].as_u64().unwrap();
    send(&alice, json!({"to": "bob", "text": DIRECT}));
    bob.out.wait_line(&format!("[@alice] alice: {DIRECT}"));
    let a = health(&alice);
    assert_eq!(
        a["pushes"]["relayed_out"].as_u64().unwrap(),
        relayed_before,
        "the DM after the cut was lifted went through the relay: {a}"
    );
    assert_eq!(a["via_relay"], json!([]), "{a}");
    wait_until("bob to see the direct path", SOON, || {
        health(&bob)["via_relay"] == json!([])
    });
    eprintln!(
        "relayed DMs and channel message took {took:?}; moved to direct {moved:?} after the cut was lifted"
    );
}

#[test]
fn the_page_tags_a_relayed_conversation_and_drops_the_tag_when_it_goes_direct() {
    let dir = match browser_tools() {
        Ok(Some(dir)) => dir,
        Ok(None) => return,
        Err(why) => panic!("{why}"),
    };
    let tracker = Proc::tracker(&[]);
    let alice = peer("alice", free_port(loopback(1)), loopback(1), tracker.addr);
    let bob_ip = loopback(72);
    let bob_port = free_port(bob_ip);
    let bob = peer("bob", bob_port, bob_ip, tracker.addr);
    joined(&alice, "general");
    joined(&bob, "general");
    relay_up(&[&alice, &bob]);
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-shots");
    let mut cmd = std::process::Command::new("node");
    cmd.current_dir(&dir)
        .arg("relay.mjs")
        .arg(chat_url(&alice))
        .arg(&shots);
    let mut script = Driver::spawn("relay.mjs", cmd);
    script
        .out
        .wait_for("the page to ask", SOON * 3, |l| l == "ASK dm bob");
    send(&alice, json!({"to": "bob", "text": "through the relay"}));
    bob.out.wait_line("[@alice] alice: through the relay");
    script.answer("DONE dm bob");
    script
        .out
        .wait_for("the page to ask", SOON * 3, |l| l == "ASK lift the cut");
    let _uncut = Relay::start(
        &Recording::default(),
        SocketAddr::new(bob_ip, bob_port),
        SocketAddr::new(loopback(1), bob_port),
    )
    .unwrap();
    script.answer("DONE lift the cut");
    let end = Instant::now() + SOON * 6;
    let status = loop {
        if let Some(status) = script.exited() {
            break status;
        }
        assert!(
            Instant::now() < end,
            "the page script did not finish:\n{}",
            script.transcript()
        );
        let seen = script.out.all().len();
        script.out.wait_more(seen, Duration::from_millis(200));
    };
    script.out.wait_ended(SOON);
    assert!(
        status.success() && script.out.count(|l| l == "PASS") == 1,
        "the page script failed ({status}):\n{}",
        script.transcript()
    );
}

// ---- hostile members on a relay stream ------------------------------------------------------------------------

/// A tracker with `limits`, on a runtime of its own.
fn tracker_with(rt: &tokio::runtime::Runtime, limits: RelayLimits) -> Tracker {
    rt.block_on(Tracker::start(TrackerConfig {
        relay_limits: limits,
        ..TrackerConfig::default()
    }))
    .unwrap()
}

/// A member speaking the relay protocol by hand: registered (if `name`), with a session to the tracker.
struct Member {
    key: PublicKey,
    id: Arc<Identity>,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    buf: Vec<u8>,
    _endpoint: Arc<Endpoint>,
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.push(kind);
    f.extend_from_slice(payload);
    f
}

fn relay_frame(to: &PublicKey, packet: &[u8]) -> Vec<u8> {
    let mut p = to.to_bytes().to_vec();
    p.extend_from_slice(packet);
    frame(TYPE_RELAY, &p)
}

impl Member {
    async fn join(tracker: &Tracker, name: Option<&str>) -> Member {
        let id = Arc::new(Identity::ephemeral());
        if let Some(name) = name {
            let req = id.register_request(
                &hchat::proto::PeerName::new(name).unwrap(),
                Ipv4Addr::LOCALHOST.into(),
                40_000,
            );
            let r = reqwest::Client::new()
                .post(format!("http://{}/submit-info", tracker.local_addr()))
                .json(&req)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{name} registers");
        }
        let endpoint = Endpoint::bind(
            "127.0.0.1:0".parse().unwrap(),
            id.clone(),
            Arc::new(NoInbox),
        )
        .unwrap();
        let link = endpoint
            .dial(tracker.session_addr(), tracker.public_key())
            .await
            .unwrap();
        let (mut send, recv) = link.open_stream().await.unwrap();
        send.write_all(&frame(TYPE_RELAY_OPEN, &[])).await.unwrap();
        Member {
            key: id.public_key(),
            id,
            send,
            recv,
            buf: Vec::new(),
            _endpoint: endpoint,
        }
    }

    /// The next frame the tracker sends on the relay stream (type, payload), or `None` if none comes in `wait`.
    async fn next(&mut self, wait: Duration) -> Option<(u8, Vec<u8>)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
                if self.buf.len() >= 5 + len {
                    let kind = self.buf[4];
                    let payload = self.buf[5..5 + len].to_vec();
                    self.buf.drain(..5 + len);
                    return Some((kind, payload));
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.recv.read_chunk(usize::MAX, true))
                .await
                .ok()?;
            match chunk {
                Ok(Some(c)) => self.buf.extend_from_slice(&c.bytes),
                _ => return None,
            }
        }
    }

    /// The code of the next frame, which must be an ERROR.
    async fn error_code(&mut self) -> String {
        let (kind, payload) = self.next(SOON).await.expect("an answer");
        assert_eq!(kind, 0x03, "an ERROR frame, got {kind:#x}");
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        v["code"].as_str().unwrap().to_string()
    }

    async fn accepted(&mut self) {
        let (kind, payload) = self.next(SOON).await.expect("an answer to RELAY_OPEN");
        assert_eq!(
            (kind, payload.len()),
            (TYPE_RELAY_OPEN, 0),
            "{}",
            String::from_utf8_lossy(&payload)
        );
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_key_without_a_live_registration_gets_no_relay_stream() {
    let rt = runtime();
    let tracker = tracker_with(&rt, RelayLimits::default());
    rt.block_on(async {
        let mut stranger = Member::join(&tracker, None).await;
        assert_eq!(stranger.error_code().await, "unknown_identity");
        assert!(
            stranger.next(Duration::from_secs(1)).await.is_none(),
            "the stream ends"
        );
        let mut member = Member::join(&tracker, Some("member")).await;
        member.accepted().await;
        // A stranger's key named as a destination is refused, as is any key with no relay stream.
        member
            .send
            .write_all(&relay_frame(&stranger.key, b"hello?"))
            .await
            .unwrap();
        assert_eq!(member.error_code().await, "relay_unreachable");
    });
    rt.block_on(tracker.shutdown());
}

#[test]
fn the_relayed_source_is_the_sessions_key_and_nobody_relays_to_itself_or_with_bad_frames() {
    let rt = runtime();
    let tracker = tracker_with(&rt, RelayLimits::default());
    rt.block_on(async {
        let mut mallory = Member::join(&tracker, Some("mallory")).await;
        let mut bob = Member::join(&tracker, Some("bob")).await;
        mallory.accepted().await;
        bob.accepted().await;
        // To bob: it arrives from mallory's key (the session's), whatever mallory would like it to seem.
        mallory
            .send
            .write_all(&relay_frame(&bob.key, b"a packet"))
            .await
            .unwrap();
        let (kind, payload) = bob.next(SOON).await.expect("the relayed packet");
        assert_eq!(kind, TYPE_RELAY);
        assert_eq!(&payload[..32], &mallory.key.to_bytes());
        assert_eq!(&payload[32..], b"a packet");
        // To itself: refused.
        mallory
            .send
            .write_all(&relay_frame(&mallory.key, b"loop"))
            .await
            .unwrap();
        assert_eq!(mallory.error_code().await, "invalid_field");
        // Errors are rate limited (one a second per stream): wait for the next allowance before each.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        mallory
            .send
            .write_all(&frame(TYPE_RELAY, &[1; 10]))
            .await
            .unwrap();
        assert_eq!(
            mallory.error_code().await,
            "bad_frame",
            "a payload shorter than a key"
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let mut huge = bob.key.to_bytes().to_vec();
        huge.extend_from_slice(&[0; 4096]);
        mallory
            .send
            .write_all(&frame(TYPE_RELAY, &huge))
            .await
            .unwrap();
        assert_eq!(
            mallory.error_code().await,
            "bad_frame",
            "a packet over the limit"
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
        mallory.send.write_all(&frame(0x01, b"{}")).await.unwrap();
        assert_eq!(mallory.error_code().await, "unknown_frame_type");
        // None of that reached bob, and the stream still works.
        mallory
            .send
            .write_all(&relay_frame(&bob.key, b"still here"))
            .await
            .unwrap();
        let (_, payload) = bob.next(SOON).await.expect("the next relayed packet");
        assert_eq!(&payload[32..], b"still here");
    });
    rt.block_on(tracker.shutdown());
}

#[test]
fn a_member_that_leaves_loses_the_relay_both_ways() {
    let rt = runtime();
    let tracker = tracker_with(&rt, RelayLimits::default());
    rt.block_on(async {
        let mut gone = Member::join(&tracker, Some("gone")).await;
        let mut bob = Member::join(&tracker, Some("bob")).await;
        gone.accepted().await;
        bob.accepted().await;
        let body = serde_json::to_vec(&json!({"name": "gone"})).unwrap();
        let name = hchat::proto::PeerName::new("gone").unwrap();
        let r = reqwest::Client::new()
            .post(format!("http://{}/unregister", tracker.local_addr()))
            .header(
                hchat::identity::AUTH_HEADER,
                gone.id.auth_header(&name, "POST", "/unregister", &body),
            )
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // Within the re-check period, what bob sends to it is refused (relay_unreachable)...
        let deadline = Instant::now() + hchat::link::relay::RELAY_RECHECK + SOON;
        let mut refused = false;
        while !refused && Instant::now() < deadline {
            bob.send
                .write_all(&relay_frame(&gone.key, b"still there?"))
                .await
                .unwrap();
            while let Some((kind, payload)) = bob.next(Duration::from_millis(200)).await {
                if kind == 0x03 {
                    assert!(String::from_utf8_lossy(&payload).contains("relay_unreachable"));
                    refused = true;
                }
            }
        }
        assert!(
            refused,
            "bob's packets to a member that left were still relayed"
        );
        // ... and its own relay stream has ended (the tracker stopped reading it: a write may fail).
        let _ = gone
            .send
            .write_all(&relay_frame(&bob.key, b"me again"))
            .await;
        // What bob sent before the re-check may still be queued for it; then the stream ends.
        let ends = tokio::time::timeout(SOON, async {
            while let Some((kind, _)) = gone.next(SOON).await {
                assert_eq!(kind, TYPE_RELAY, "only bob's earlier packets");
            }
        })
        .await;
        assert!(ends.is_ok(), "the relay stream of a member that left ends");
    });
    rt.block_on(tracker.shutdown());
}

#[test]
fn a_flood_past_the_rate_limit_is_dropped_at_the_tracker() {
    let rt = runtime();
    let tracker = tracker_with(
        &rt,
        RelayLimits {
            bytes_per_sec: 1_000_000,
            burst_bytes: 1_000_000,
            packets_per_sec: 1,
            burst_packets: 20,
            queue: 1024,
        },
    );
    let health = |t: &Tracker| {
        reqwest::blocking::get(format!("http://{}/health", t.local_addr()))
            .unwrap()
            .json::<serde_json::Value>()
            .unwrap()
    };
    let received = rt.block_on(async {
        let mut mallory = Member::join(&tracker, Some("mallory")).await;
        let mut bob = Member::join(&tracker, Some("bob")).await;
        mallory.accepted().await;
        bob.accepted().await;
        let mut flood = Vec::new();
        for i in 0..200u32 {
            flood.extend_from_slice(&relay_frame(&bob.key, &i.to_be_bytes()));
        }
        mallory.send.write_all(&flood).await.unwrap();
        let mut received = 0;
        while bob.next(Duration::from_secs(1)).await.is_some() {
            received += 1;
        }
        received
    });
    // The burst of 20, plus one a second for the time the tracker took to read the flood (well under 4 s).
    assert!((20..=24).contains(&received), "bob got {received} of 200");
    let h = std::thread::scope(|s| s.spawn(|| health(&tracker)).join().unwrap());
    assert!(h["relay"]["dropped"].as_u64().unwrap() >= 178, "{h}");
    rt.block_on(tracker.shutdown());
}
