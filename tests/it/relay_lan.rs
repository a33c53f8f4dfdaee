//! Issue 14, "Done when" 2, on the namespaced LAN (tests/it/common/netlan.rs): alice and bob are cut from each
//! other both ways while both reach the tracker. Their DMs both ways and a channel message reach the other within
//! a second, through the tracker's relay, shown "via relay"; a recording of everything the tracker's host received
//! and sent holds no message text; when the cut is lifted the conversation moves to a direct session.
//!
//! The tracker listens on its host's loopback, behind a recording relay (tests/it/common/relay.rs) on the host's
//! LAN address, started inside the host: every byte from and to the tracker passes through the recording.

use crate::common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::netlan::{Host, Lan};
use common::relay::{Recording, Relay};
use common::*;

const TO_BOB: &str = "across the cut: the lantern is in the shed";
const TO_ALICE: &str = "back across the cut: take the north path";
const SAID: &str = "to the channel across the cut: supper at eight";
const DIRECT: &str = "after the cut: the road is open";
const RECUT: &str = "cut again: the road is closed";

/// `GET path` of a node running in `host` (its address is reached only from inside the LAN).
fn get_in(host: &Host, p: &Proc, path: &str) -> serde_json::Value {
    let url = p.url(path);
    host.within(move || {
        reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
            .get(url)
            .send()
            .unwrap()
            .json()
            .unwrap()
    })
}

/// A `pushes` count of a node running in `host`.
fn count(host: &Host, p: &Proc, k: &str) -> u64 {
    get_in(host, p, "/health")["pushes"][k].as_u64().unwrap()
}

/// Types `line` at `from` and waits for `shown` at `to`: how long it took.
fn time_to_arrive(from: &mut Proc, line: &str, to: &Proc, shown: &str) -> Duration {
    let t0 = Instant::now();
    from.type_line(line);
    to.out.wait_line(shown);
    t0.elapsed()
}

#[test]
fn cut_peers_talk_through_the_relay_unreadable_within_a_second_and_go_direct_when_the_cut_is_lifted()
 {
    let Some(lan) = Lan::new(3) else { return };
    let rec = Recording::default();
    let tracker = lan.host(0).tracker(&["--ip", "127.0.0.1"]);
    let tracker_at = SocketAddr::new(IpAddr::V4(lan.host(0).ip()), tracker.addr.port());
    let _recording = lan.host(0).within({
        let (rec, target) = (rec.clone(), tracker.addr);
        move || Relay::start(&rec, tracker_at, target).unwrap()
    });
    let mut alice = lan
        .host(1)
        .peer("alice", Some(tracker_at), &["--join", "general"]);
    let mut bob = lan
        .host(2)
        .peer("bob", Some(tracker_at), &["--join", "general"]);
    joined(&alice, "general");
    joined(&bob, "general");
    lan.cut(1, 2);
    for (host, p) in [(lan.host(1), &alice), (lan.host(2), &bob)] {
        wait_until(&format!("{}'s relay stream", p.name), SOON, || {
            get_in(host, p, "/health")["relay"]["up"] == true
        });
    }
    let took = [
        time_to_arrive(
            &mut alice,
            &format!("@bob {TO_BOB}"),
            &bob,
            &format!("[@alice] alice: {TO_BOB}"),
        ),
        time_to_arrive(
            &mut bob,
            &format!("@alice {TO_ALICE}"),
            &alice,
            &format!("[@bob] bob: {TO_ALICE}"),
        ),
        time_to_arrive(&mut alice, SAID, &bob, &format!("[#general] alice: {SAID}")),
    ];
    for t in took {
        assert!(
            t < Duration::from_secs(1),
            "a message across the cut took {t:?}: {took:?}"
        );
    }
    alice.out.wait_for("alice sees bob via relay", SOON, |l| {
        l.starts_with("* @bob: via relay")
    });
    bob.out.wait_for("bob sees alice via relay", SOON, |l| {
        l.starts_with("* @alice: via relay")
    });
    // Counted as relayed at both ends (a sender counts a push once its ack is back, after the line is shown).
    wait_until("the relayed pushes to be counted", SOON, || {
        count(lan.host(1), &alice, "relayed_out") >= 2
            && count(lan.host(2), &bob, "relayed_in") >= 2
            && count(lan.host(2), &bob, "relayed_out") >= 1
    });
    // The recording holds the relayed packets (and every request to the tracker), and none of the words.
    assert!(rec.packets() > 0);
    for text in [TO_BOB, TO_ALICE, SAID] {
        for part in [text, &text[..12], &text[text.len() - 12..]] {
            assert!(
                !rec.contains(part.as_bytes()),
                "{part:?} crossed the tracker's host in the clear"
            );
        }
    }

    // alice's first direct dial gives up; it is a later try that finds the path once the cut is lifted.
    wait_until("alice's first direct dial to fail", SOON, || {
        get_in(lan.host(1), &alice, "/health")["relay"]["direct_failed"]
            .as_u64()
            .unwrap()
            >= 1
    });
    lan.uncut(1, 2);
    let t0 = Instant::now();
    alice.out.wait_for(
        "alice's session with bob to go direct",
        Duration::from_secs(20),
        |l| l == "* @bob: direct",
    );
    let moved = t0.elapsed();
    bob.out
        .wait_for("bob's to go direct", SOON, |l| l == "* @alice: direct");
    let relayed = count(lan.host(1), &alice, "relayed_out");
    let pushed = count(lan.host(1), &alice, "session_out");
    alice.type_line(&format!("@bob {DIRECT}"));
    bob.out.wait_line(&format!("[@alice] alice: {DIRECT}"));
    wait_until("alice's push to be counted", SOON, || {
        count(lan.host(1), &alice, "session_out") > pushed
    });
    let a = get_in(lan.host(1), &alice, "/health");
    assert_eq!(
        a["pushes"]["relayed_out"].as_u64().unwrap(),
        relayed,
        "after the cut it went direct: {a}"
    );
    assert_eq!(a["via_relay"], serde_json::json!([]), "{a}");
    assert!(!rec.contains(DIRECT.as_bytes()));

    // Cut again mid-conversation: the direct session is lost (nothing comes back), and the next attempt goes
    // through the relay.
    lan.cut(1, 2);
    let before = alice.out.count(|l| l.starts_with("* @bob: via relay"));
    let recut = time_to_arrive(
        &mut alice,
        &format!("@bob {RECUT}"),
        &bob,
        &format!("[@alice] alice: {RECUT}"),
    );
    alice
        .out
        .wait_for("alice sees bob via relay again", SOON, |l| {
            l.starts_with("* @bob: via relay")
        });
    assert_eq!(
        alice.out.count(|l| l.starts_with("* @bob: via relay")),
        before + 1
    );
    wait_until(
        "the DM after the second cut counted as relayed",
        SOON,
        || count(lan.host(1), &alice, "relayed_out") > relayed,
    );
    assert!(!rec.contains(RECUT.as_bytes()));
    eprintln!(
        "across the cut: DM, DM back, channel message took {took:?}; direct again {moved:?} after the cut was lifted; \
         a DM right after a second cut (the direct session lost) took {recut:?}"
    );
}
