//! Message states and delivered notices (issue 15): a DM held by the tracker for an offline bob says `held` in
//! alice's history and turns `delivered` within 2 s of bob's return, when bob's node tells hers (a notice signed
//! with bob's key); her CLI says so. A notice anyone else makes (another key, another recipient, nothing in it, a
//! name nobody holds) is refused with a stable code and changes nothing.

use crate::common;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// How soon after bob's return alice must see her held message delivered.
const RECEIPT_WITHIN: Duration = Duration::from_secs(2);

/// The state alice's `/api/history` gives her message `id` to bob.
fn state_of(alice: &Proc, id: &str) -> String {
    let h = get_json(&alice.url("/api/history?with=%40bob&limit=50"), 200);
    h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .map(|m| m["state"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

#[test]
fn a_held_dm_turns_delivered_when_bob_is_back_and_forged_notices_change_nothing() {
    let tracker = Proc::tracker(&["--peer-ttl", "2"]);
    let bob_dir = data_dir();
    let bob_args = ["--data-dir", bob_dir.path().to_str().unwrap()];
    let mut alice = Proc::peer("alice", tracker.addr, &[]);
    let mut bob = Proc::peer("bob", tracker.addr, &bob_args);
    // A message pushed straight to bob is delivered at once.
    let (status, report) = post_json(
        &alice.url("/api/send"),
        &json!({"to": "bob", "text": "hello bob"}),
    );
    assert_eq!((status, report["delivered"].clone()), (200, json!(["bob"])));
    bob.out.wait_line("[@alice] alice: hello bob");
    let first = report["id"].as_str().unwrap().to_string();
    wait_until("the pushed DM to be delivered", SOON, || {
        state_of(&alice, &first) == "delivered"
    });

    bob.kill();
    let (status, report) = post_json(
        &alice.url("/api/send"),
        &json!({"to": "bob", "text": "are you there?"}),
    );
    assert_eq!(status, 200, "{report}");
    let id = report["id"].as_str().unwrap().to_string();
    wait_until("the DM to be held by the tracker", SOON * 2, || {
        state_of(&alice, &id) == "held"
    });

    // Notices nobody but bob's node may make.
    let mallory = Signer::new("mallory");
    mallory.register(&tracker, 1);
    let notice = alice.url("/p2p/delivered");
    for (what, body, want) in [
        (
            "signed with another key than bob's",
            mallory.delivered_notice("bob", "alice", &[&id]),
            (401, "bad_signature"),
        ),
        (
            "for another recipient",
            mallory.delivered_notice("bob", "carol", &[&id]),
            (404, "wrong_recipient"),
        ),
        (
            "naming no message",
            mallory.delivered_notice("mallory", "alice", &[]),
            (422, "invalid_field"),
        ),
        (
            "from a name no key is bound to",
            mallory.delivered_notice("nobody", "alice", &[&id]),
            (401, "unknown_identity"),
        ),
    ] {
        let (status, answer) = post_json(&notice, &body);
        assert_eq!((status, code(&answer)), want, "a notice {what}: {answer}");
    }
    // mallory's own valid notice about a message alice never sent her changes nothing either.
    let (status, answer) = post_json(
        &notice,
        &mallory.delivered_notice("mallory", "alice", &[&id]),
    );
    assert_eq!(
        (status, answer["marked"].clone()),
        (200, json!(0)),
        "{answer}"
    );
    let mut tampered = mallory.delivered_notice("bob", "alice", &[&id]);
    tampered["extra"] = json!(1);
    let (status, _) = post_json(&notice, &tampered);
    assert!(
        (400..500).contains(&status),
        "unknown fields are refused: {status}"
    );
    assert_eq!(state_of(&alice, &id), "held", "no forged notice moved it");

    let _bob = Proc::peer("bob", tracker.addr, &bob_args);
    let back = Instant::now();
    wait_until("alice's message to be delivered", RECEIPT_WITHIN, || {
        state_of(&alice, &id) == "delivered"
    });
    alice
        .out
        .wait_line("* bob got your message \"are you there?\"");
    eprintln!("delivered {:?} after bob's return", back.elapsed());
    alice.type_line("/quit");
    assert!(alice.wait_exit(SOON).success());
}
