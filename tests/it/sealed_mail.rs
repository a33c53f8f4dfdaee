//! Held mail is sealed to its recipient: while bob is away, what alice sends him (a DM, and a channel message the
//! tracker holds for him) sits in the tracker's mailbox as ciphertext. Neither the tracker's files nor its
//! `/mailbox` answers show a word of it; bob reads both when he is back. Sealed mail that was tampered with, sealed
//! to another key, or dressed in another sender's outside is refused (`bad_seal`), and the rest of bob's mail
//! still arrives.

use crate::common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::*;
use serde_json::json;

const DM: &str = "the vault code is 4711";
const CHANNEL: &str = "meet at the north gate";

/// Whether any file under `dir` (the tracker's database, its WAL and shared memory) holds `needle`.
fn files_hold(dir: &std::path::Path, needle: &str) -> bool {
    std::fs::read_dir(dir).unwrap().any(|f| {
        let path = f.unwrap().path();
        let bytes = std::fs::read(&path).unwrap_or_default();
        bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
    })
}

#[test]
fn mail_held_for_bob_is_ciphertext_at_the_tracker_and_bob_reads_it_and_refuses_tampered_mail() {
    let tracker_dir = data_dir();
    let tracker = Proc::tracker(&[
        "--peer-ttl",
        "60",
        "--data-dir",
        tracker_dir.path().to_str().unwrap(),
    ]);
    let bob_dir = data_dir();
    let bob_args = in_general_on(&bob_dir);
    let alice = Proc::peer("alice", tracker.addr, &["--join", "general"]);
    let mut bob = Proc::peer("bob", tracker.addr, &bob_args);
    joined(&alice, "general");
    joined(&bob, "general");
    let as_bob = Signer::from_data_dir("bob", bob_dir.path());

    // bob's machine dies: his lease stays (so alice's channel message is queued for him), nobody answers there,
    // and after a few tries alice's node leaves both messages with the tracker.
    bob.kill();
    for dest in [json!({"to": "bob"}), json!({"channel": "general"})] {
        let mut body = dest;
        body["text"] = json!(if body["to"].is_null() { CHANNEL } else { DM });
        let (status, report) = post_json(&alice.url("/api/send"), &body);
        assert_eq!(status, 200, "{report}");
    }
    let fetch = || as_bob.post(&tracker.url("/mailbox/fetch"), &json!({"name": "bob"}));
    wait_until("both messages to be held for bob", SOON, || {
        fetch().1["entries"]
            .as_array()
            .is_some_and(|e| e.len() == 2)
    });

    // mallory, a registered peer, leaves bob three pieces of sealed mail that must not open as mail.
    let mallory = Signer::new("mallory");
    mallory.register(&tracker, 7666);
    let bob_key = identity_key(&tracker, "bob");
    let mut flipped = sealed_entry(
        &mallory.message(json!({"to": "bob"}), "MALLORY: flipped"),
        "bob",
        &bob_key,
    );
    let mut boxed = B64
        .decode(flipped["envelope"]["sealed"].as_str().unwrap())
        .unwrap();
    boxed[40] ^= 0x01;
    flipped["envelope"]["sealed"] = json!(B64.encode(&boxed));
    let to_another_key = sealed_entry(
        &mallory.message(json!({"to": "bob"}), "MALLORY: sealed to carol"),
        "bob",
        &Signer::new("carol").key(),
    );
    // A message alice really signed (mallory could have it from a channel), sealed to bob under mallory's name.
    let alices = alice.signer().message(
        json!({"to": "bob"}),
        "MALLORY: alice's words in mallory's mail",
    );
    let mut swapped = sealed_entry(&alices, "bob", &bob_key);
    swapped["envelope"]["from"] = json!("mallory");
    let (status, answer) = mallory.post(
        &tracker.url("/mailbox/deposit"),
        &json!({"from": "mallory", "to": "bob", "entries": [flipped, to_another_key, swapped]}),
    );
    assert_eq!(
        (status, answer["stored"].as_u64()),
        (200, Some(3)),
        "{answer}"
    );

    // What the tracker holds and hands over: who wrote to whom, and ciphertext.
    let (status, page) = fetch();
    assert_eq!(status, 200);
    assert_eq!(page["entries"].as_array().unwrap().len(), 5, "{page}");
    let answer = page.to_string();
    for secret in [DM, CHANNEL, "general", "MALLORY"] {
        assert!(!answer.contains(secret), "{secret:?} in {answer}");
    }
    assert!(answer.contains("\"alice\"") && answer.contains("\"bob\""));
    let files: Vec<_> = std::fs::read_dir(tracker_dir.path())
        .unwrap()
        .map(|f| f.unwrap().file_name())
        .collect();
    for secret in [DM, CHANNEL, "MALLORY"] {
        assert!(
            !files_hold(tracker_dir.path(), secret),
            "{secret:?} in the tracker's files {files:?}"
        );
    }
    // The scan does read the tracker's data: the names it must see are there.
    assert!(files_hold(tracker_dir.path(), "mallory"), "{files:?}");

    // bob comes back: he reads alice's two messages, refuses mallory's three, and his mailbox is emptied.
    let bob = Proc::peer("bob", tracker.addr, &bob_args);
    bob.out.wait_line(&format!("[@alice] alice: {DM}"));
    bob.out.wait_line(&format!("[#general] alice: {CHANNEL}"));
    wait_until("bob's mailbox to be emptied", SOON, || {
        fetch().1["entries"]
            .as_array()
            .is_some_and(|e| e.is_empty())
    });
    wait_until("bob to refuse mallory's three", SOON, || {
        bob.err
            .count(|l| l.contains("refused held mail") && l.contains("(bad_seal)"))
            == 3
    });
    assert!(
        !bob.out.all().iter().any(|l| l.contains("MALLORY")),
        "{:?}",
        bob.out.all()
    );
    for reason in [
        "does not open",
        "outside says from mallory, its inside alice",
    ] {
        assert_eq!(
            bob.err.count(|l| l.contains(reason)),
            if reason == "does not open" { 2 } else { 1 },
            "{reason}: {:?}",
            bob.err.all()
        );
    }
}
