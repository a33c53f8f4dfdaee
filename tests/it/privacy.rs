//! What passes between the nodes is private (issue 13, "Done when" 1). Every byte the tracker and three peers
//! send each other goes through a recording relay (tests/it/common/relay.rs) while users register, join a key
//! channel with its key, say things in it, send DMs, have a DM held and drained, and catch up on the channel after
//! a crash: no message text and no channel key is in the recording, and no held text is in the tracker's files.
//!
//! Each node binds 127.0.0.1 and advertises (or is dialled at) another loopback address where a relay listens
//! on the same port, TCP and UDP, and forwards to it. The test itself speaks to the nodes' local APIs on
//! 127.0.0.1 directly, so only node-to-node traffic is recorded.

use crate::common;

use std::net::{IpAddr, SocketAddr};

use common::relay::{Recording, Relay, free_port, loopback};
use common::*;
use serde_json::json;

const KEY: &str = "k3y-0f-the-vault-7c1e";
const SAID: &str = "said in the vault: the tide turns at nine";
const DM: &str = "between us: the spare key is under the third stone";
const HELD: &str = "held for bob: the ferry leaves from pier eleven";
const MISSED: &str = "while bob was away: the password is wolfram";

/// A peer at 127.0.0.1:`port`, advertised at `relay_ip`:`port`, reaching the tracker through `tracker`.
fn peer(
    name: &str,
    port: u16,
    relay_ip: IpAddr,
    tracker: SocketAddr,
    dir: &tempfile::TempDir,
) -> Proc {
    let mut cmd = hchat();
    cmd.args(["peer", "--name", name, "--ip", "127.0.0.1"])
        .args(["--port", &port.to_string()])
        .args(["--advertise-ip", &relay_ip.to_string()])
        .args(["--tracker-ip", &tracker.ip().to_string()])
        .args(["--tracker-port", &tracker.port().to_string()])
        .args(["--data-dir", dir.path().to_str().unwrap()]);
    spawn_node(name, cmd)
}

fn files_hold(dir: &std::path::Path, needle: &str) -> bool {
    std::fs::read_dir(dir).unwrap().any(|f| {
        let bytes = std::fs::read(f.unwrap().path()).unwrap_or_default();
        bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
    })
}

fn api(p: &Proc, path: &str, body: serde_json::Value) -> serde_json::Value {
    let (status, answer) = post_json(&p.url(path), &body);
    assert_eq!(status, 200, "{} {path} {body}: {answer}", p.name);
    answer
}

#[test]
fn nothing_said_nor_any_channel_key_crosses_the_network_in_the_clear() {
    let rec = Recording::default();
    let tracker_dir = data_dir();
    let tracker = Proc::tracker(&[
        "--peer-ttl",
        "3",
        "--data-dir",
        tracker_dir.path().to_str().unwrap(),
    ]);
    let tracker_via = SocketAddr::new(loopback(60), tracker.addr.port());
    let _tracker_relay = Relay::start(&rec, tracker_via, tracker.addr).unwrap();

    let mut relays = Vec::new();
    let mut ports = Vec::new();
    for last in [51, 52, 53] {
        let ip = loopback(last);
        let port = free_port(ip);
        relays.push(
            Relay::start(
                &rec,
                SocketAddr::new(ip, port),
                SocketAddr::new(loopback(1), port),
            )
            .unwrap(),
        );
        ports.push(port);
    }
    let dirs = [data_dir(), data_dir(), data_dir()];
    let alice = peer("alice", ports[0], loopback(51), tracker_via, &dirs[0]);
    let mut bob = peer("bob", ports[1], loopback(52), tracker_via, &dirs[1]);
    let carol = peer("carol", ports[2], loopback(53), tracker_via, &dirs[2]);

    // A key channel: alice makes it, bob and carol join with its key.
    api(&alice, "/api/join", json!({"channel": "vault"}));
    api(
        &alice,
        "/api/channel/mode",
        json!({"channel": "vault", "mode": "key", "key": KEY}),
    );
    for p in [&bob, &carol] {
        api(p, "/api/join", json!({"channel": "vault", "key": KEY}));
    }
    wait_until("bob and carol in #vault", SOON, || {
        let members = get_json(&alice.url("/api/members?channel=vault"), 200).to_string();
        members.contains("\"bob\"") && members.contains("\"carol\"")
    });

    api(
        &alice,
        "/api/send",
        json!({"channel": "vault", "text": SAID}),
    );
    api(&alice, "/api/send", json!({"to": "bob", "text": DM}));
    bob.out.wait_line(&format!("[#vault] alice: {SAID}"));
    carol.out.wait_line(&format!("[#vault] alice: {SAID}"));
    bob.out.wait_line(&format!("[@alice] alice: {DM}"));

    // bob's machine dies and his lease runs out: a DM for him is held by the tracker, and what is said in the
    // channel meanwhile he catches up from a member when he is back.
    bob.kill();
    wait_until("bob to be gone from the tracker's list", SOON, || {
        !get_json(&tracker.url("/peers"), 200)
            .to_string()
            .contains("\"bob\"")
    });
    let report = api(&alice, "/api/send", json!({"to": "bob", "text": HELD}));
    assert_eq!(report["held"], json!(["bob"]), "{report}");
    let held_id = report["id"]
        .as_str()
        .expect("the report names its message")
        .to_string();
    api(
        &alice,
        "/api/send",
        json!({"channel": "vault", "text": MISSED}),
    );
    carol.out.wait_line(&format!("[#vault] alice: {MISSED}"));
    let bob = peer("bob", ports[1], loopback(52), tracker_via, &dirs[1]);
    bob.out.wait_line(&format!("[@alice] alice: {HELD}"));
    // bob tells alice he has it (a delivered notice): who received which message is the conversation's business.
    wait_until("alice to hear her held DM was delivered", SOON, || {
        get_json(&alice.url("/api/history?with=%40bob&limit=50"), 200)["messages"]
            .as_array()
            .is_some_and(|ms| {
                ms.iter()
                    .any(|m| m["id"] == held_id.as_str() && m["state"] == "delivered")
            })
    });
    wait_until("bob to catch up on #vault", SOON, || {
        get_json(&bob.url("/api/history?with=%23vault"), 200)
            .to_string()
            .contains(MISSED)
    });

    // The relays carried the conversation (control), and none of it in the clear.
    assert!(
        rec.packets() > 50 && rec.len() > 20_000,
        "the relays saw {} payloads, {} bytes",
        rec.packets(),
        rec.len()
    );
    assert!(
        !rec.contains(b"/p2p/delivered") && !rec.contains(held_id.as_bytes()),
        "bob's delivered notice to alice crossed the network in the clear"
    );
    for secret in [KEY, SAID, DM, HELD, MISSED] {
        assert!(
            !rec.contains(secret.as_bytes()),
            "{secret:?} crossed the network in the clear"
        );
    }
    for secret in [HELD, MISSED, DM, SAID] {
        assert!(
            !files_hold(tracker_dir.path(), secret),
            "{secret:?} is in the tracker's files"
        );
    }
}
