//! Issue 14, IPv6: a tracker and peers on IPv6 addresses only (ULA, `fd77::/64` on the namespaced LAN) bind,
//! advertise, talk over sessions, and find the tracker by mDNS.

use std::net::{IpAddr, SocketAddr};

use crate::common::netlan::{Host, Lan};
use crate::common::*;

/// `--ip` of this host's IPv6 address.
fn on_v6(h: &Host) -> [String; 2] {
    ["--ip".into(), h.ip6().to_string()]
}

/// Messages a peer stored that arrived over a session, from its `/health`, asked from `from`.
fn session_in(from: &Host, p: &Proc) -> u64 {
    let (status, body) = from.http_get(p.addr, "/health");
    assert!(status.contains(" 200 "), "{status} {body}");
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    h["pushes"]["session_in"].as_u64().unwrap()
}

fn chat(alice: &mut Proc, bob: &mut Proc) {
    alice.type_line("@bob over IPv6?");
    bob.out
        .wait_for("alice's DM", SOON, |l| l == "[@alice] alice: over IPv6?");
    bob.type_line("@alice yes, IPv6 only");
    alice
        .out
        .wait_for("bob's DM", SOON, |l| l == "[@bob] bob: yes, IPv6 only");
}

#[test]
fn a_tracker_and_peers_on_ipv6_only_register_and_talk_over_sessions() {
    let Some(lan) = Lan::new(3) else { return };
    let tracker = lan
        .host(0)
        .tracker(&["--ip", &lan.host(0).ip6().to_string()]);
    assert_eq!(tracker.addr.ip(), IpAddr::V6(lan.host(0).ip6()));
    let v6 = |i: usize| on_v6(lan.host(i));
    let (a, b) = (v6(1), v6(2));
    let mut alice = lan.host(1).peer(
        "alice",
        Some(tracker.addr),
        &["--join", "general", &a[0], &a[1]],
    );
    let mut bob = lan.host(2).peer(
        "bob",
        Some(tracker.addr),
        &["--join", "general", &b[0], &b[1]],
    );
    assert_eq!(bob.addr.ip(), IpAddr::V6(lan.host(2).ip6()));
    joined(&alice, "general");
    joined(&bob, "general");
    // The tracker lists them at their IPv6 addresses, as they advertised.
    let (_, list) = lan
        .host(1)
        .http_get(tracker.addr, "/get-list?channel=general");
    for i in [1, 2] {
        assert!(
            list.contains(&format!("\"ip\":\"{}\"", lan.host(i).ip6())),
            "{list}"
        );
    }
    chat(&mut alice, &mut bob);
    assert!(
        session_in(lan.host(2), &bob) >= 1,
        "bob got it over a session"
    );
    assert!(
        session_in(lan.host(1), &alice) >= 1,
        "alice got hers over a session"
    );
}

#[test]
fn peers_find_a_tracker_announced_on_ipv6_only_and_talk() {
    let Some(lan) = Lan::new(3) else { return };
    let tracker = lan
        .host(0)
        .tracker(&["--ip", &lan.host(0).ip6().to_string()]);
    let v6 = |i: usize| on_v6(lan.host(i));
    let (a, b) = (v6(1), v6(2));
    let mut alice = lan
        .host(1)
        .peer("alice", None, &["--join", "general", &a[0], &a[1]]);
    let mut bob = lan
        .host(2)
        .peer("bob", None, &["--join", "general", &b[0], &b[1]]);
    let at: SocketAddr = tracker.addr;
    for p in [&alice, &bob] {
        p.out.wait_for("the tracker found over IPv6", SOON, |l| {
            l.starts_with(&format!("* found tracker {at} on the LAN (mDNS)"))
        });
        joined(p, "general");
    }
    chat(&mut alice, &mut bob);
}
