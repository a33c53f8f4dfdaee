//! Issue 14, Done when 4: a peer whose address changes mid-conversation (DHCP, a laptop moving) is reachable again
//! within 5 s, both ways, live (not through the tracker's mailbox), with nobody doing anything. Real processes on
//! the namespaced LAN; the times are printed (`--nocapture`).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::common::netlan::Lan;
use crate::common::*;

const REACHABLE_AGAIN_WITHIN: Duration = Duration::from_secs(5);

#[test]
fn a_peer_whose_address_changes_mid_conversation_is_reachable_again_within_5_s() {
    let Some(lan) = Lan::new(3) else { return };
    let tracker = lan.host(0).tracker(&[]);
    let mut alice = lan
        .host(1)
        .peer("alice", Some(tracker.addr), &["--join", "general"]);
    // bob binds every interface, as a laptop on DHCP would: he advertises the address he reaches the tracker from.
    let mut bob = lan.host(2).peer(
        "bob",
        Some(tracker.addr),
        &["--join", "general", "--ip", "0.0.0.0"],
    );
    joined(&alice, "general");
    joined(&bob, "general");

    // Chatting: sessions both ways.
    alice.type_line("@bob lunch?");
    bob.out
        .wait_for("alice's first DM", SOON, |l| l == "[@alice] alice: lunch?");
    bob.type_line("@alice yes, at noon");
    alice
        .out
        .wait_for("bob's answer", SOON, |l| l == "[@bob] bob: yes, at noon");

    // bob's host gets a new address; the old one is gone.
    let new_ip = Ipv4Addr::new(10, 77, 0, 200);
    lan.host(2).change_ip(new_ip);
    let changed = Instant::now();
    alice.type_line("@bob still there?");
    bob.out
        .wait_for("alice's DM after bob moved", REACHABLE_AGAIN_WITHIN, |l| {
            l == "[@alice] alice: still there?"
        });
    let alice_to_bob = changed.elapsed();
    bob.type_line("@alice yes, moved");
    alice.out.wait_for(
        "bob's DM from his new address",
        REACHABLE_AGAIN_WITHIN,
        |l| l == "[@bob] bob: yes, moved",
    );
    let bob_to_alice = changed.elapsed() - alice_to_bob;
    eprintln!(
        "bob's address changed: alice -> bob live after {alice_to_bob:?}, then bob -> alice after {bob_to_alice:?}"
    );
    assert!(alice_to_bob < REACHABLE_AGAIN_WITHIN, "{alice_to_bob:?}");
    assert!(bob_to_alice < REACHABLE_AGAIN_WITHIN, "{bob_to_alice:?}");
    // Live, not held for later: neither side was told the other is offline.
    for p in [&alice, &bob] {
        assert!(
            !p.out.all().iter().any(|l| l.contains("the tracker holds")),
            "{}: {:?}",
            p.name,
            p.out.all()
        );
    }
    // bob noticed, and the tracker answers his new address to whoever asks.
    bob.out.wait_for("bob's notice", SOON, |l| {
        l.starts_with("* your address changed from 10.77.0.12 to 10.77.0.200")
    });
    // A channel message reaches him too.
    alice.type_line("see you all at noon");
    bob.out.wait_for("alice's channel message", SOON, |l| {
        l == "[#general] alice: see you all at noon"
    });

    // He moves again, and this time speaks first.
    lan.host(2).change_ip(Ipv4Addr::new(10, 77, 0, 201));
    let changed = Instant::now();
    bob.type_line("@alice moved again");
    alice.out.wait_for(
        "bob's DM right after his second move",
        REACHABLE_AGAIN_WITHIN,
        |l| l == "[@bob] bob: moved again",
    );
    let first = changed.elapsed();
    alice.type_line("@bob got it");
    bob.out
        .wait_for("alice's answer", REACHABLE_AGAIN_WITHIN, |l| {
            l == "[@alice] alice: got it"
        });
    eprintln!(
        "bob moved again: bob -> alice after {first:?}, alice -> bob {:?} after the move",
        changed.elapsed()
    );
    assert!(changed.elapsed() < REACHABLE_AGAIN_WITHIN);
    assert!(
        !alice
            .out
            .all()
            .iter()
            .any(|l| l.contains("the tracker holds")),
        "{:?}",
        alice.out.all()
    );
}

/// `POST /submit-info` with `body`, sent from `host` (so the tracker sees the host's address): status and answer.
fn register_from(
    host: &crate::common::netlan::Host,
    tracker: std::net::SocketAddr,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let body = body.to_string();
    let answer = host.within(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(tracker).unwrap();
        write!(
            s,
            "POST /submit-info HTTP/1.0\r\nHost: {tracker}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    });
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let json = answer
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or_default();
    (status, json)
}

#[test]
fn a_lease_moves_only_to_the_address_its_holder_registers_from() {
    let Some(lan) = Lan::new(2) else { return };
    let tracker = lan.host(0).tracker(&[]);
    let alice = Signer::new("alice");
    let host = lan.host(1);
    let (status, answer) =
        register_from(host, tracker.addr, &alice.registration("10.77.0.11", 8000));
    assert_eq!(status, 200, "{answer}");
    // Her own key, from her own address, claiming an address she is not at: refused.
    let (status, answer) =
        register_from(host, tracker.addr, &alice.registration("10.77.0.99", 8000));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("name_taken")),
        "{answer}"
    );
    // A second port at the same address (a second process): refused, as before.
    let (status, answer) =
        register_from(host, tracker.addr, &alice.registration("10.77.0.11", 8001));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("name_taken")),
        "{answer}"
    );
    // Her host moved: registering the new address from it moves the lease, channels and all (not a new one).
    host.change_ip(Ipv4Addr::new(10, 77, 0, 50));
    let (status, answer) =
        register_from(host, tracker.addr, &alice.registration("10.77.0.50", 8000));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["created"], false, "{answer}");
    let (_, peers) = lan.host(1).http_get(tracker.addr, "/peers");
    assert!(peers.contains("\"ip\":\"10.77.0.50\""), "{peers}");
    // Another key cannot follow her anywhere.
    let (status, answer) = register_from(
        host,
        tracker.addr,
        &Signer::new("alice").registration("10.77.0.50", 8000),
    );
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("name_taken")),
        "{answer}"
    );
}
