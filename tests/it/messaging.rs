//! Three users on one tracker, each a real `hchat peer` process driven through its stdin/stdout: who sees which
//! message, what `/peers` and `/channels` say, and how a peer leaves (by `/quit`, or by dying).

use crate::common;
use std::time::{Duration, Instant};

use common::*;

const TTL_SECS: u64 = 2;

fn joined(p: &mut Proc, channel: &str) {
    p.type_line(&format!("#{channel}"));
    p.out
        .wait_for(&format!("{} to join #{channel}", p.name), SOON, |l| {
            l.starts_with(&format!("* joined #{channel} "))
        });
}

#[test]
fn messages_reach_exactly_their_audience_and_lists_follow_who_is_online() {
    let tracker = Proc::tracker(&["--peer-ttl", &TTL_SECS.to_string()]);
    let mut alice = Proc::peer("alice", tracker.addr, &[]);
    let mut bob = Proc::peer("bob", tracker.addr, &[]);
    let mut carol = Proc::peer("carol", tracker.addr, &[]);
    joined(&mut alice, "general");
    joined(&mut bob, "general");
    joined(&mut carol, "random");

    // A channel message reaches the channel's members and nobody else.
    alice.type_line("Hello!");
    bob.out.wait_line("[#general] alice: Hello!");
    carol.type_line("just carol here");
    // carol's own channel has no one else; she is told so.
    carol.out.wait_for("carol to hear she is alone", SOON, |l| {
        l.starts_with("* nobody else is in #random")
    });

    // A DM reaches only its addressee, shown under the sender's name.
    bob.type_line("@carol psst");
    carol.out.wait_line("[@bob] bob: psst");
    // A marker sent after everything else: once it has arrived, anything misdirected would have arrived too.
    alice.type_line("@carol marker");
    carol.out.wait_line("[@alice] alice: marker");
    alice.type_line("@bob marker");
    bob.out.wait_line("[@alice] alice: marker");
    assert_eq!(
        carol.out.count(|l| l.contains("Hello!")),
        0,
        "carol is not in #general"
    );
    assert_eq!(
        alice.out.count(|l| l.contains("psst")),
        0,
        "a DM to carol is not shown to alice"
    );
    assert_eq!(
        bob.out.count(|l| l.contains("psst")),
        0,
        "the sender does not see its own DM echoed"
    );
    assert_eq!(bob.out.count(|l| l.contains("just carol")), 0);

    // /peers and /channels.
    alice.type_line("/peers");
    alice.out.wait_line("* online (3): alice, bob, carol");
    alice.type_line("/peers #general");
    alice.out.wait_line("* in #general (2): alice, bob");
    alice.type_line("/channels");
    alice.out.wait_line("* channels: #general (2), #random (1)");

    // /quit removes the peer at once and exits 0.
    carol.type_line("/quit");
    assert!(carol.wait_exit(SOON).success(), "/quit exits 0");
    let online = get_json(&tracker.url("/peers"), 200);
    assert_eq!(
        names(&online),
        ["alice", "bob"],
        "a quitting peer leaves the list at once"
    );
    assert_eq!(
        get_json(&tracker.url("/channels"), 200)["channels"][1]["members"],
        0
    );

    // A SIGKILLed peer says no goodbye; it leaves every list within its TTL.
    bob.kill();
    let killed = Instant::now();
    wait_until("bob to expire", Duration::from_secs(TTL_SECS + 2), || {
        names(&get_json(&tracker.url("/peers"), 200)) == ["alice"]
    });
    let listed_for = killed.elapsed();
    eprintln!("a SIGKILLed peer stayed listed for {listed_for:?} (ttl {TTL_SECS} s)");
    assert!(names(&get_json(&tracker.url("/get-list?channel=general"), 200)) == ["alice"]);
    assert_eq!(
        get_json(&tracker.url("/channels"), 200)["channels"][0]["members"],
        1
    );
    let online = names(&get_json(&tracker.url("/peers"), 200));
    assert!(!online.contains(&"bob".to_string()), "{online:?}");

    // alice, still there, is told bob is away and the tracker holds her message for him.
    alice.type_line("@bob are you there?");
    alice.out.wait_for("alice to learn bob is gone", SOON, |l| {
        l == "* bob is offline; the tracker holds the message until bob is back"
    });

    // End of input quits like /quit.
    alice.close_stdin();
    assert!(alice.wait_exit(SOON).success(), "EOF exits 0");
    assert!(names(&get_json(&tracker.url("/peers"), 200)).is_empty());
}

#[test]
fn a_name_held_by_a_live_peer_cannot_be_taken() {
    let tracker = Proc::tracker(&[]);
    let _alice = Proc::peer("alice", tracker.addr, &[]);
    let mut cmd = hchat();
    cmd.args([
        "peer",
        "--name",
        "alice",
        "--port",
        "0",
        "--tracker-port",
        &tracker.addr.port().to_string(),
    ]);
    let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a runtime failure exits 1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("name alice belongs to another identity"),
        "{stderr}"
    );
}

/// Lines typed to a peer that cannot be reached are each stored at once, in order: a line does not wait for the
/// report on the one before it (which takes the second or so a dead address takes to show it is dead).
#[test]
fn lines_typed_to_a_peer_that_died_are_all_stored_before_the_first_report() {
    let tracker = Proc::tracker(&[]);
    let mut alice = Proc::peer("alice", tracker.addr, &[]);
    let mut bob = Proc::peer("bob", tracker.addr, &[]);
    alice.type_line("@bob are you there?");
    bob.out
        .wait_for("bob to get alice's first line", SOON, |l| {
            l.contains("alice: are you there?")
        });
    bob.kill();
    for i in 1..=3 {
        alice.type_line(&format!("@bob line {i}"));
    }
    let first_report = alice
        .out
        .wait_for("a report on the lines to bob", SOON, |l| {
            l.contains("bob is offline") || l.contains("bob cannot be reached")
        });
    let v = get_json(&alice.url("/api/history?with=@bob&limit=10"), 200);
    let texts: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["are you there?", "line 1", "line 2", "line 3"],
        "alice's history when the first report ({first_report}) was printed"
    );
}
