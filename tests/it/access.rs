//! Channel access control and presence, with real `hchat` processes: for each mode (open, invite-only, key,
//! read-only visitor, ban) what the tracker answers over HTTP, what the users see in their CLIs, and that a peer
//! the tracker refuses cannot get a message shown by posting straight to a member's `/p2p/receive` (or its
//! `/p2p/receive-batch`, or by leaving it in the tracker's mailbox, or through a member's history at catch-up).
//! Presence: away with a message and invisible, as other peers see them, and the invisible peer still receives.

use crate::common;
use std::time::Instant;

use common::*;
use serde_json::json;

/// Short leases, so a removed peer's node learns it at its next renewal (every TTL/3) within the test.
const TTL: &str = "3";

fn peer(name: &str, tracker: &Proc) -> Proc {
    Proc::peer(name, tracker.addr, &[])
}

fn tracker() -> Proc {
    Proc::tracker(&["--peer-ttl", TTL])
}

/// Types `line` and waits for the next line that starts with `answer`.
fn says(p: &mut Proc, line: &str, answer: &str) -> String {
    let seen = p.out.all().len();
    p.type_line(line);
    next_line(p, seen, answer)
}

/// Waits for a line after the first `seen` that starts with `start`.
fn next_line(p: &Proc, seen: usize, start: &str) -> String {
    let end = Instant::now() + SOON;
    loop {
        let lines = p.out.all();
        if let Some(l) = lines[seen..].iter().find(|l| l.starts_with(start)) {
            return l.clone();
        }
        let left = end.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{} did not print a line starting {start:?}; lines so far:\n{}",
            p.name,
            lines.join("\n")
        );
        p.out.wait_more(lines.len(), left);
    }
}

fn joined(p: &mut Proc, line: &str) {
    let channel = line.split_whitespace().next().unwrap();
    says(p, line, &format!("* joined {channel} "));
}

/// A message from `from` to `channel`, signed with `from`'s own key, posted straight to `to`'s `/p2p/receive` as
/// a peer would: only the channel's rules can refuse it.
fn push_straight(to: &Proc, from: &Proc, channel: &str, text: &str) -> (u16, serde_json::Value) {
    let msg = from.signer().message(json!({ "channel": channel }), text);
    post_json(&to.url("/p2p/receive"), &msg)
}

fn code(v: &serde_json::Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// Sends a marker from `sender` and waits until `receiver` shows it: whatever was sent before has arrived by then.
fn marker(sender: &mut Proc, receiver: &Proc, channel: &str) {
    let text = format!("marker {}", uuid::Uuid::now_v7());
    sender.type_line(&text);
    receiver
        .out
        .wait_line(&format!("[#{channel}] {}: {text}", sender.name));
}

#[test]
fn an_open_channel_admits_anyone_until_the_owner_bans_them() {
    let tracker = tracker();
    let mut alice = peer("alice", &tracker);
    let mut bob = peer("bob", &tracker);
    let mut carol = peer("carol", &tracker);
    joined(&mut alice, "#general");
    joined(&mut bob, "#general");
    joined(&mut carol, "#general");

    let info = get_json(&tracker.url("/channel/info?channel=general"), 200);
    assert_eq!(info["owner"], "alice", "the creator owns the channel");
    assert_eq!(info["mode"], "open");
    let channels = get_json(&tracker.url("/channels"), 200);
    assert_eq!(channels["channels"][0]["mode"], "open");

    // Only the owner changes the channel.
    let (status, body) = bob.signer().post(
        &tracker.url("/channel/ban"),
        &json!({"name": "bob", "channel": "general", "peer": "carol"}),
    );
    assert_eq!((status, code(&body)), (403, "not_owner"));
    says(
        &mut bob,
        "/ban #general carol",
        "* cannot ban carol in #general",
    );

    let banned_at = Instant::now();
    says(
        &mut alice,
        "/ban #general carol",
        "* banned carol from #general",
    );
    // carol's node learns at its next renewal and stops showing the channel.
    carol
        .out
        .wait_for("carol to be told she is out", SOON, |l| {
            l.starts_with("* you are no longer in #general")
        });
    eprintln!(
        "carol's node learnt of the ban {:?} after it (lease renewal every TTL/3 = 1 s)",
        banned_at.elapsed()
    );
    assert!(!members(&tracker, "general").contains(&"carol".to_string()));
    let (status, body) = carol.signer().post(
        &tracker.url("/add-list"),
        &json!({"name": "carol", "channel": "general"}),
    );
    assert_eq!((status, code(&body)), (403, "banned"));
    let (status, body) = carol.signer().post(
        &tracker.url("/broadcast-peer"),
        &json!({"name": "carol", "channel": "general"}),
    );
    assert_eq!((status, code(&body)), (403, "banned"));
    says(&mut carol, "#general", "* cannot join #general");

    // Posting straight to a member does not get around the tracker.
    let (status, body) = push_straight(&bob, &carol, "general", "banned words");
    assert_eq!((status, code(&body)), (403, "not_allowed"), "{body}");
    // Nor does leaving it in the tracker's mailbox: bob drains it at his next renewal and drops it.
    let as_carol = carol.signer();
    let envelope = as_carol.message(json!({"channel": "general"}), "mailed words");
    let deposit = json!({"from": "carol", "to": "bob",
        "entries": [sealed_entry(&envelope, "bob", &identity_key(&tracker, "bob"))]});
    let (status, body) = as_carol.post(&tracker.url("/mailbox/deposit"), &deposit);
    assert_eq!((status, &body["stored"]), (200, &json!(1)), "{body}");
    // While it is held, the same id is not stored again; once bob has taken it (and dropped it), it is.
    wait_until("bob to take carol's mail", SOON, || {
        as_carol.post(&tracker.url("/mailbox/deposit"), &deposit).1["stored"] == 1
    });
    marker(&mut alice, &bob, "general");
    assert_eq!(bob.out.count(|l| l.contains("banned words")), 0);
    assert_eq!(bob.out.count(|l| l.contains("mailed words")), 0);
    let history = get_json(&bob.url("/api/history?with=%23general"), 200);
    assert!(!history.to_string().contains("banned words"));
    assert!(!history.to_string().contains("mailed words"));

    says(
        &mut alice,
        "/unban #general carol",
        "* carol may join #general again",
    );
    joined(&mut carol, "#general");
    marker(&mut carol, &bob, "general");
}

#[test]
fn an_invite_only_channel_takes_only_whom_its_owner_invited() {
    let tracker = tracker();
    let mut alice = peer("alice", &tracker);
    let mut bob = peer("bob", &tracker);
    let carol = peer("carol", &tracker);
    joined(&mut alice, "#club");
    says(
        &mut alice,
        "/mode #club invite",
        "* #club is now invite-only",
    );

    let line = says(&mut bob, "#club", "* cannot join #club");
    assert!(line.contains("invite"), "{line}");
    let (status, body) = carol.signer().post(
        &tracker.url("/add-list"),
        &json!({"name": "carol", "channel": "club"}),
    );
    assert_eq!((status, code(&body)), (403, "invite_only"));
    // A non-open channel shows its members to its members only.
    let (status, body) = try_get_json(&tracker.url("/get-list?channel=club")).unwrap();
    assert_eq!((status, code(&body)), (403, "members_only"));
    let (status, body) = carol.signer().get(&tracker.url("/get-list?channel=club"));
    assert_eq!(
        (status, code(&body)),
        (403, "members_only"),
        "a signed non-member"
    );
    let (status, _) = alice.signer().get(&tracker.url("/get-list?channel=club"));
    assert_eq!(status, 200);
    let (status, body) = carol
        .signer()
        .get(&tracker.url("/channel/info?channel=club"));
    assert_eq!((status, code(&body)), (403, "members_only"));
    let channels = get_json(&tracker.url("/channels"), 200);
    assert_eq!(channels["channels"][0]["mode"], "invite");

    says(&mut alice, "/invite #club bob", "* invited bob to #club");
    joined(&mut bob, "#club");
    let (status, info) = bob.signer().get(&tracker.url("/channel/info?channel=club"));
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["invited"], json!(["bob"]));
    let line = says(
        &mut bob,
        "/info",
        "* #club: owner alice, mode invite; members: ",
    );
    assert!(
        line.contains("alice (owner, online)") && line.contains("bob (member, online)"),
        "{line}"
    );
    marker(&mut alice, &bob, "club");

    // carol, not invited, cannot get a message shown by posting straight to bob.
    let (status, body) = push_straight(&bob, &carol, "club", "let me in");
    assert_eq!((status, code(&body)), (403, "not_allowed"), "{body}");
    marker(&mut alice, &bob, "club");
    assert_eq!(bob.out.count(|l| l.contains("let me in")), 0);
    drop(carol);

    // Removing withdraws the invitation as well.
    says(&mut alice, "/remove #club bob", "* removed bob from #club");
    bob.out.wait_for("bob to be told he is out", SOON, |l| {
        l.starts_with("* you are no longer in #club")
    });
    says(&mut bob, "#club", "* cannot join #club");
}

#[test]
fn a_key_channel_takes_who_brings_the_key_and_keeps_it_secret_across_a_tracker_restart() {
    let data = data_dir();
    let dir = data.path().to_str().unwrap().to_string();
    let tracker = Proc::tracker(&["--peer-ttl", TTL, "--data-dir", &dir]);
    let port = tracker.addr.port();
    let mut alice = peer("alice", &tracker);
    let mut bob = peer("bob", &tracker);
    let mut carol = peer("carol", &tracker);
    joined(&mut alice, "#vault");
    says(
        &mut alice,
        "/mode #vault key s3cret",
        "* #vault is now protected",
    );

    let line = says(&mut bob, "#vault", "* cannot join #vault");
    assert!(line.contains("key"), "{line}");
    says(&mut bob, "#vault wrong", "* cannot join #vault");
    let (status, body) = carol.signer().post(
        &tracker.url("/add-list"),
        &json!({"name": "carol", "channel": "vault", "key": "guess"}),
    );
    assert_eq!((status, code(&body)), (403, "bad_key"));
    joined(&mut bob, "#vault s3cret");
    marker(&mut alice, &bob, "vault");

    let (status, info) = alice
        .signer()
        .get(&tracker.url("/channel/info?channel=vault"));
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["mode"], "key");
    assert!(
        !info.to_string().contains("s3cret"),
        "the key is never echoed"
    );

    // carol, not admitted, cannot post to bob directly.
    let (status, body) = push_straight(&bob, &carol, "vault", "sneaking in");
    assert_eq!((status, code(&body)), (403, "not_allowed"), "{body}");

    // The rules survive a tracker restart.
    drop(tracker);
    let tracker = Proc::tracker_on(port, &["--peer-ttl", TTL, "--data-dir", &dir]);
    let (status, info) = alice
        .signer()
        .get(&tracker.url("/channel/info?channel=vault"));
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["owner"], "alice");
    assert_eq!(info["mode"], "key");
    let names: Vec<&str> = info["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"bob"), "{info}");
    says(&mut carol, "#vault wrong", "* cannot join #vault");
    joined(&mut carol, "#vault s3cret");
    assert_eq!(
        tracker.err.count(|l| l.contains("s3cret")),
        0,
        "the key is never logged"
    );
}

#[test]
fn a_visitor_reads_but_cannot_post_even_straight_to_a_member() {
    let tracker = tracker();
    let mut alice = peer("alice", &tracker);
    let mut bob = peer("bob", &tracker);
    let mut carol = peer("carol", &tracker);
    joined(&mut alice, "#talk");
    joined(&mut bob, "#talk");
    joined(&mut carol, "#talk");
    says(
        &mut alice,
        "/visitor #talk bob",
        "* bob is now a visitor in #talk",
    );
    let info = get_json(&tracker.url("/channel/info?channel=talk"), 200);
    let bob_role = info["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "bob")
        .unwrap()["role"]
        .clone();
    assert_eq!(bob_role, "visitor");

    // The tracker gives a visitor no one to send to.
    let (status, body) = bob.signer().post(
        &tracker.url("/broadcast-peer"),
        &json!({"name": "bob", "channel": "talk"}),
    );
    assert_eq!((status, code(&body)), (403, "read_only"));
    let fan_out = alice
        .signer()
        .post(
            &tracker.url("/broadcast-peer"),
            &json!({"name": "alice", "channel": "talk"}),
        )
        .1;
    assert!(
        fan_out["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "bob" && p["role"] == "visitor"),
        "a visitor still receives, and the list says its role: {fan_out}"
    );
    let line = says(&mut bob, "I want to talk", "* not sent to #talk");
    assert!(line.contains("visitor"), "{line}");

    // Straight to carol: refused, never shown.
    let (status, body) = push_straight(&carol, &bob, "talk", "sneaky post");
    assert_eq!((status, code(&body)), (403, "not_allowed"), "{body}");
    // A batch is judged message by message, the same way.
    let as_bob = bob.signer();
    let batch: Vec<serde_json::Value> = (0..2)
        .map(|i| as_bob.message(json!({"channel": "talk"}), &format!("sneaky batch {i}")))
        .collect();
    let (status, body) = post_json(
        &carol.url("/p2p/receive-batch"),
        &json!({"messages": batch}),
    );
    assert_eq!(status, 200, "{body}");
    let codes: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"]["code"].as_str().unwrap_or("accepted"))
        .collect();
    assert_eq!(codes, ["not_allowed", "not_allowed"], "{body}");
    marker(&mut alice, &carol, "talk");
    marker(&mut alice, &bob, "talk");
    assert_eq!(carol.out.count(|l| l.contains("sneaky")), 0);

    says(
        &mut alice,
        "/member #talk bob",
        "* bob is now a member of #talk",
    );
    marker(&mut bob, &carol, "talk");
}

#[test]
fn away_and_invisible_are_seen_by_others_and_the_invisible_still_receive() {
    let tracker = tracker();
    let mut alice = peer("alice", &tracker);
    let mut bob = peer("bob", &tracker);
    joined(&mut alice, "#general");
    joined(&mut bob, "#general");

    says(
        &mut bob,
        "/away out for lunch",
        "* you are away: out for lunch",
    );
    let peers = get_json(&tracker.url("/peers"), 200);
    let b = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "bob")
        .unwrap()
        .clone();
    assert_eq!(
        (b["status"].as_str(), b["away"].as_str()),
        (Some("away"), Some("out for lunch"))
    );
    let list = get_json(&tracker.url("/get-list?channel=general"), 200);
    assert!(list.to_string().contains("out for lunch"), "{list}");
    says(
        &mut alice,
        "/peers",
        "* online (2): alice, bob (away: out for lunch)",
    );

    says(&mut bob, "/invisible", "* you are invisible");
    assert_eq!(names(&get_json(&tracker.url("/peers"), 200)), vec!["alice"]);
    assert_eq!(members(&tracker, "general"), vec!["alice"]);
    says(&mut alice, "/peers #general", "* in #general (1): alice");
    // Invisible, not gone: bob still gets the channel's messages.
    marker(&mut alice, &bob, "general");

    // A bad presence is a 4xx with the usual body.
    let (status, body) = bob.signer().post(
        &tracker.url("/presence"),
        &json!({"name": "bob", "status": "away", "message": "x".repeat(201)}),
    );
    assert_eq!((status, code(&body)), (422, "invalid_field"));
    let (status, body) = bob.signer().post(
        &tracker.url("/presence"),
        &json!({"name": "bob", "status": "sleeping"}),
    );
    assert_eq!(status, 422, "{body}");

    says(&mut bob, "/back", "* you are online");
    assert_eq!(
        names(&get_json(&tracker.url("/peers"), 200)),
        vec!["alice", "bob"]
    );
}

#[test]
fn catch_up_brings_what_was_missed_but_not_what_a_banned_peer_said() {
    let tracker = tracker();
    let mut alice = peer("alice", &tracker);
    let mut dave = peer("dave", &tracker);
    let carol_dir = data_dir();
    let carol_args = ["--data-dir", carol_dir.path().to_str().unwrap()];
    let mut carol = Proc::peer("carol", tracker.addr, &carol_args);
    joined(&mut alice, "#c");
    joined(&mut dave, "#c");
    joined(&mut carol, "#c");
    marker(&mut alice, &carol, "c");

    // carol goes away; meanwhile dave and alice talk, then alice bans dave.
    carol.type_line("/quit");
    carol.wait_exit(SOON);
    dave.type_line("dave said this before his ban");
    alice
        .out
        .wait_line("[#c] dave: dave said this before his ban");
    says(&mut alice, "/ban #c dave", "* banned dave from #c");
    says(
        &mut alice,
        "alice said this while carol was away",
        "* nobody else is in #c",
    );

    // carol is back: she catches up from alice, and dave's message, now from a banned peer, is refused.
    let carol = Proc::peer("carol", tracker.addr, &carol_args);
    carol.out.wait_for("carol to catch up", SOON, |l| {
        l.starts_with("* caught up on #c")
    });
    let history = get_json(&carol.url("/api/history?with=%23c"), 200).to_string();
    assert!(
        history.contains("alice said this while carol was away"),
        "{history}"
    );
    assert!(!history.contains("before his ban"), "{history}");
}
