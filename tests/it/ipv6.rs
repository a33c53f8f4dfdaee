//! Issue 14, IPv6: a tracker and peers on IPv6 addresses only (ULA, `fd77::/64` on the namespaced LAN) bind,
//! advertise, talk over sessions, and find the tracker by mDNS.

use std::net::{IpAddr, SocketAddr};

use crate::common::netlan::{Host, Lan};
use crate::common::*;

/// `--ip` of this host's IPv6 address.
fn on_v6(h: &Host) -> [String; 2] {
    ["--ip".into(), h.ip6().to_string()]
}

/// Messages a peer stored that arrived over a session, from its `/health` at `addr`, asked from `from`.
fn session_in(from: &Host, addr: SocketAddr) -> u64 {
    let (status, body) = from.http_get(addr, "/health");
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
        session_in(lan.host(2), bob.addr) >= 1,
        "bob got it over a session"
    );
    assert!(
        session_in(lan.host(1), alice.addr) >= 1,
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

#[test]
fn peers_reach_a_link_local_tracker_and_each_other_over_link_local_addresses() {
    let Some(lan) = Lan::new(3) else { return };
    // The tracker binds every interface; the peers are given its link-local address with their interface.
    let tracker = lan.host(0).tracker(&["--ip", "::"]);
    let port = tracker.addr.port().to_string();
    let ll = format!("{}%eth0", lan.host(0).link_local());
    let args = [
        "--join",
        "general",
        "--ip",
        "::",
        "--tracker-ip",
        &ll,
        "--tracker-port",
        &port,
    ];
    let mut alice = lan.host(1).peer("alice", None, &args);
    let mut bob = lan.host(2).peer("bob", None, &args);
    joined(&alice, "general");
    joined(&bob, "general");
    // Bound to every interface, each advertises the address it reaches the tracker from: its link-local one
    // (without a scope: a scope means something on one host only).
    let at = lan
        .host(1)
        .scoped(lan.host(0).link_local(), tracker.addr.port());
    let (_, list) = lan.host(1).http_get(at, "/get-list?channel=general");
    for i in [1, 2] {
        assert!(
            list.contains(&format!("\"ip\":\"{}\"", lan.host(i).link_local())),
            "{list}"
        );
    }
    chat(&mut alice, &mut bob);
    // Over sessions, dialled at the link-local addresses with the dialler's own scope.
    for (i, p) in [(1, &alice), (2, &bob)] {
        let own = SocketAddr::new(IpAddr::V6(lan.host(i).ip6()), p.addr.port());
        assert!(
            session_in(lan.host(i), own) >= 1,
            "{} got it over a session",
            p.name
        );
    }
}

#[test]
fn peers_find_a_tracker_that_has_only_a_link_local_address_and_talk() {
    let Some(lan) = Lan::new(3) else { return };
    // The tracker's host keeps only its link-local address.
    let host = lan.host(0);
    for addr in [format!("{}/24", host.ip()), format!("{}/64", host.ip6())] {
        let out = host
            .output(std::process::Command::new("ip").args(["addr", "del", &addr, "dev", "eth0"]));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tracker = host.tracker(&["--ip", "::"]);
    let args = ["--join", "general", "--ip", "::"];
    let mut alice = lan.host(1).peer("alice", None, &args);
    let mut bob = lan.host(2).peer("bob", None, &args);
    for p in [&alice, &bob] {
        // Found at its link-local address, with the scope of the interface it was heard on.
        let line = p.out.wait_for("the tracker found", SOON, |l| {
            l.starts_with("* found tracker ")
        });
        assert!(
            line.starts_with(&format!("* found tracker [{}%", host.link_local()))
                && line.contains(&format!("]:{} on the LAN", tracker.addr.port())),
            "{line}"
        );
        joined(p, "general");
    }
    chat(&mut alice, &mut bob);
}
