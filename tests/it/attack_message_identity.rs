//! Issue 11, attacks 1 and 2, against real processes: no member can erase or bury another's words.
//! - **Id reuse**: mallory, a member who saw (or guessed) the id alice is about to use, stores a message of her own
//!   under it first, straight at bob or in bob's mailbox while he is away. A message is (sender, id), so alice's
//!   real message still reaches bob's CLI and page; the same sender and id again is still a duplicate.
//! - **Ids from the future**: a signed message whose id (or `ts`) is years ahead used to become everyone's newest
//!   message, so every later catch-up asked for messages from the future and silently got none. It is refused
//!   everywhere now (`future_message`), and catch-up starts from this node's own clock, even when such a message
//!   was stored before the fix.

use crate::common;

use common::*;
use serde_json::json;

const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;

/// The smallest UUIDv7 of millisecond `ms` (as `hchat::proto::first_id_at`; spelled out so that this file also
/// builds against an hchat from before the fix, to see each attack succeed there).
fn first_id_at(ms: u64) -> uuid::Uuid {
    uuid::Uuid::from_u128(((ms as u128) << 80) | (0x7u128 << 76) | (0b10u128 << 62))
}

/// A conversation in a peer's history, as its page API gives it: (from, text), oldest first.
fn history(peer: &Proc, with: &str) -> Vec<(String, String)> {
    let with = with.replace('#', "%23").replace('@', "%40");
    get_json(&peer.url(&format!("/api/history?with={with}")), 200)["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["from"].as_str().unwrap().to_string(),
                m["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn texts(peer: &Proc, with: &str) -> Vec<String> {
    history(peer, with).into_iter().map(|(_, t)| t).collect()
}

/// The user of `peer` sends through its local API (as the page does); returns the send report.
fn send(peer: &Proc, body: serde_json::Value) -> serde_json::Value {
    let (status, report) = post_json(&peer.url("/api/send"), &body);
    assert_eq!(status, 200, "{} sends {body}: {report}", peer.name);
    report
}

/// Registers `mallory` as a member of #general, her node a canned `answer` on loopback.
fn mallory_in_general(tracker: &Proc, mallory: &Signer, answer: serde_json::Value) {
    mallory.register(tracker, canned_json_server(answer));
    let (status, body) = mallory.post(
        &tracker.url("/add-list"),
        &json!({"name": "mallory", "channel": "general"}),
    );
    assert_eq!(status, 200, "mallory joins #general: {body}");
}

/// A message signed by `who` with a chosen id and `ts`.
fn signed(
    who: &Signer,
    id: uuid::Uuid,
    ts: u64,
    dest: serde_json::Value,
    text: &str,
) -> serde_json::Value {
    let mut m = json!({"id": id, "from": who.name, "text": text, "ts": ts});
    m.as_object_mut()
        .unwrap()
        .extend(dest.as_object().unwrap().clone());
    who.sign(m)
}

#[test]
fn an_id_reused_straight_at_bob_does_not_hide_alices_message() {
    let tracker = Proc::tracker(&[]);
    let mut bob = Proc::peer("bob", tracker.addr, &["--join", "general"]);
    let alice = Proc::peer("alice", tracker.addr, &["--join", "general"]);
    joined(&bob, "general");
    joined(&alice, "general");
    let mallory = Signer::new("mallory");
    mallory_in_general(&tracker, &mallory, json!({"ok": true, "duplicate": false}));
    let now = hchat::proto::now_ms;

    // mallory learns the id alice's page will use, and gets her own message to bob under it first.
    let channel_id = uuid::Uuid::now_v7();
    let squat = signed(
        &mallory,
        channel_id,
        now(),
        json!({"channel": "general"}),
        "mallory got here first",
    );
    let (status, ack) = post_json(&bob.url("/p2p/receive"), &squat);
    assert_eq!((status, &ack["duplicate"]), (200, &json!(false)), "{ack}");
    // The same sender and id again is a duplicate, as it always was.
    let (status, ack) = post_json(&bob.url("/p2p/receive"), &squat);
    assert_eq!((status, &ack["duplicate"]), (200, &json!(true)), "{ack}");

    let report = send(
        &alice,
        json!({"channel": "general", "text": "alice's real words", "id": channel_id}),
    );
    assert!(
        report["delivered"]
            .as_array()
            .unwrap()
            .contains(&json!("bob")),
        "{report}"
    );
    bob.out.wait_line("[#general] alice: alice's real words");

    // The same for a DM, through the batch route.
    let dm_id = uuid::Uuid::now_v7();
    let squat_dm = signed(
        &mallory,
        dm_id,
        now(),
        json!({"to": "bob"}),
        "mallory's DM under alice's id",
    );
    let (status, answer) = post_json(
        &bob.url("/p2p/receive-batch"),
        &json!({"messages": [squat_dm]}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["ok"], true, "{answer}");
    let report = send(
        &alice,
        json!({"to": "bob", "text": "alice's real DM", "id": dm_id}),
    );
    assert_eq!(report["delivered"], json!(["bob"]), "{report}");
    bob.out.wait_line("[@alice] alice: alice's real DM");

    // alice's page retries both (same sender, same id): accepted, shown once.
    send(
        &alice,
        json!({"channel": "general", "text": "alice's real words", "id": channel_id}),
    );
    send(
        &alice,
        json!({"to": "bob", "text": "alice's real DM", "id": dm_id}),
    );
    send(
        &alice,
        json!({"channel": "general", "text": "after the retries"}),
    );
    bob.out.wait_line("[#general] alice: after the retries");
    assert_eq!(
        history(&bob, "#general"),
        [
            ("alice".to_string(), "alice's real words".to_string()),
            ("mallory".to_string(), "mallory got here first".to_string()),
            ("alice".to_string(), "after the retries".to_string()),
        ],
        "both messages under the reused id, each once, ordered by id then sender"
    );
    assert_eq!(texts(&bob, "@alice"), ["alice's real DM"]);
    assert_eq!(texts(&bob, "@mallory"), ["mallory's DM under alice's id"]);
    bob.type_line("/quit");
    bob.wait_exit(SOON);
    for line in [
        "[#general] alice: alice's real words",
        "[@alice] alice: alice's real DM",
    ] {
        assert_eq!(bob.out.count(|l| l == line), 1, "{line} shown once");
    }
}

#[test]
fn an_id_reused_in_bobs_mailbox_while_he_is_away_does_not_hide_alices_message() {
    let tracker = Proc::tracker(&[]);
    let bob_dir = data_dir();
    let bob_args = ["--data-dir", bob_dir.path().to_str().unwrap()];
    let mut bob = Proc::peer("bob", tracker.addr, &bob_args);
    let alice = Proc::peer("alice", tracker.addr, &[]);
    bob.type_line("/quit");
    assert!(bob.wait_exit(SOON).success());

    // mallory leaves her own message in bob's mailbox under the id alice is about to use.
    let mallory = Signer::new("mallory");
    mallory.register(&tracker, 7666);
    let id = uuid::Uuid::now_v7();
    let squat = signed(
        &mallory,
        id,
        hchat::proto::now_ms(),
        json!({"to": "bob"}),
        "mallory's mail under alice's id",
    );
    let (status, answer) = mallory.post(
        &tracker.url("/mailbox/deposit"),
        &json!({"from": "mallory", "to": "bob",
                "entries": [sealed_entry(&squat, "bob", &identity_key(&tracker, "bob"))]}),
    );
    assert_eq!((status, &answer["stored"]), (200, &json!(1)), "{answer}");

    let report = send(
        &alice,
        json!({"to": "bob", "text": "alice's real mail", "id": id}),
    );
    assert_eq!(report["held"], json!(["bob"]), "{report}");

    // bob comes back: both are his, each under its own sender.
    let bob = Proc::peer("bob", tracker.addr, &bob_args);
    bob.out.wait_line("[@alice] alice: alice's real mail");
    bob.out
        .wait_line("[@mallory] mallory: mallory's mail under alice's id");
    assert_eq!(texts(&bob, "@alice"), ["alice's real mail"]);
    assert_eq!(texts(&bob, "@mallory"), ["mallory's mail under alice's id"]);
    // And bob's acknowledgements took both out of his mailbox, one by one.
    let as_bob = Signer::from_data_dir("bob", bob_dir.path());
    wait_until("bob's mailbox to be empty", SOON, || {
        let (status, page) = as_bob.post(&tracker.url("/mailbox/fetch"), &json!({"name": "bob"}));
        status == 200 && page["entries"].as_array().unwrap().is_empty()
    });
}

#[test]
fn an_id_from_the_future_is_refused_everywhere_and_catch_up_still_brings_everything() {
    let tracker = Proc::tracker(&[]);
    let bob_dir = data_dir();
    let bob_args = in_general_on(&bob_dir);
    let mut bob = Proc::peer("bob", tracker.addr, &bob_args);
    let alice = Proc::peer("alice", tracker.addr, &["--join", "general"]);
    joined(&bob, "general");
    joined(&alice, "general");
    let now = hchat::proto::now_ms();
    let general = json!({"channel": "general"});

    // mallory's node answers every catch-up with her message from five years ahead.
    let pinned = |m: &Signer| {
        signed(
            m,
            first_id_at(now + 5 * YEAR_MS),
            now,
            general.clone(),
            "PINNED for five years",
        )
    };
    let mallory = Signer::new("mallory");
    let canned_page = json!({"channel": "general", "messages": [pinned(&mallory)], "more": false});
    mallory_in_general(&tracker, &mallory, canned_page);

    // Straight at bob, by id or by ts, one by one or in a batch: refused with a clear code.
    let future_ts = signed(
        &mallory,
        uuid::Uuid::now_v7(),
        now + 5 * YEAR_MS,
        general.clone(),
        "PINNED by ts",
    );
    for (what, msg) in [("id", pinned(&mallory)), ("ts", future_ts.clone())] {
        let (status, answer) = post_json(&bob.url("/p2p/receive"), &msg);
        assert_eq!(
            (status, code(&answer)),
            (422, "future_message"),
            "a future {what}: {answer}"
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("clock"),
            "{answer}"
        );
    }
    // Within the allowed skew (a clock a minute fast) is accepted, and does not move catch-up either.
    let a_minute_ahead = signed(
        &mallory,
        first_id_at(now + 60_000),
        now + 60_000,
        general.clone(),
        "mallory's clock is a minute fast",
    );
    let (status, answer) = post_json(
        &bob.url("/p2p/receive-batch"),
        &json!({"messages": [pinned(&mallory), future_ts, a_minute_ahead]}),
    );
    assert_eq!(status, 200, "{answer}");
    let verdicts: Vec<_> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["ok"].as_bool().unwrap(), r["error"]["code"].as_str()))
        .collect();
    assert_eq!(
        verdicts,
        [
            (false, Some("future_message")),
            (false, Some("future_message")),
            (true, None)
        ],
        "{answer}"
    );
    // The tracker will not hold it for bob either.
    let pinned_mail = pinned(&mallory);
    let (status, answer) = mallory.post(
        &tracker.url("/mailbox/deposit"),
        &json!({"from": "mallory", "to": "bob",
                "entries": [sealed_entry(&pinned_mail, "bob", &identity_key(&tracker, "bob"))]}),
    );
    assert_eq!((status, code(&answer)), (422, "future_message"), "{answer}");

    // bob goes away; alice talks on; bob comes back and catches up on all of it (mallory's answer is refused).
    bob.type_line("/quit");
    assert!(bob.wait_exit(SOON).success());
    for i in 1..=3 {
        send(
            &alice,
            json!({"channel": "general", "text": format!("missed {i}")}),
        );
    }
    let mut bob = Proc::peer("bob", tracker.addr, &bob_args);
    bob.out.wait_for("bob's catch-up", SOON, |l| {
        l.starts_with("* caught up on #general: 3 message(s)")
    });
    // (History is ordered by id: the message a minute ahead sorts after what was said in that minute.)
    assert_eq!(
        texts(&bob, "#general"),
        [
            "missed 1",
            "missed 2",
            "missed 3",
            "mallory's clock is a minute fast"
        ]
    );
    wait_until("bob to log the refused catch-up answer", SOON, || {
        bob.err
            .count(|l| l.contains("future_message") && l.contains("CatchUp"))
            >= 1
    });
    bob.type_line("/quit");
    bob.wait_exit(SOON);
    assert!(!bob.out.all().iter().any(|l| l.contains("PINNED")));
}

#[test]
fn a_future_message_stored_before_the_fix_does_not_steer_catch_up() {
    let tracker = Proc::tracker(&[]);
    let bob_dir = data_dir();
    let bob_args = in_general_on(&bob_dir);
    let mut bob = Proc::peer("bob", tracker.addr, &bob_args);
    let alice = Proc::peer("alice", tracker.addr, &["--join", "general"]);
    joined(&bob, "general");
    joined(&alice, "general");
    send(&alice, json!({"channel": "general", "text": "before"}));
    bob.out.wait_line("[#general] alice: before");
    bob.type_line("/quit");
    assert!(bob.wait_exit(SOON).success());

    // A row from the future, as an hchat from before the fix stored it: the columns it wrote, nothing else.
    let mallory = Signer::new("mallory");
    let pinned = signed(
        &mallory,
        first_id_at(hchat::proto::now_ms() + 5 * YEAR_MS),
        hchat::proto::now_ms(),
        json!({"channel": "general"}),
        "PINNED for five years",
    );
    {
        let db = rusqlite::Connection::open(bob_dir.path().join("peer.sqlite3")).unwrap();
        db.execute(
            "INSERT INTO messages (id, conversation, sender, ts, envelope) VALUES (?1, '#general', 'mallory', ?2, ?3)",
            rusqlite::params![
                pinned["id"].as_str().unwrap(),
                pinned["ts"].as_i64().unwrap(),
                pinned.to_string()
            ],
        )
        .unwrap();
    }

    for i in 1..=3 {
        send(
            &alice,
            json!({"channel": "general", "text": format!("missed {i}")}),
        );
    }
    let mut bob = Proc::peer("bob", tracker.addr, &bob_args);
    bob.out.wait_for("bob's catch-up", SOON, |l| {
        l.starts_with("* caught up on #general: 3 message(s)")
    });
    let got = texts(&bob, "#general");
    assert_eq!(
        got.iter()
            .filter(|t| t.starts_with("missed") || *t == "before")
            .collect::<Vec<_>>(),
        ["before", "missed 1", "missed 2", "missed 3"],
        "{got:?}"
    );
    bob.type_line("/quit");
    bob.wait_exit(SOON);
}

#[test]
fn bobs_page_shows_alices_message_beside_the_one_that_reused_its_id() {
    let dir = match browser_tools() {
        Ok(Some(dir)) => dir,
        Ok(None) => return,
        Err(why) => panic!("{why}"),
    };
    let tracker = Proc::tracker(&[]);
    let bob = Proc::peer("bob", tracker.addr, &["--join", "general"]);
    let alice = Proc::peer("alice", tracker.addr, &["--join", "general"]);
    joined(&bob, "general");
    joined(&alice, "general");
    let mallory = Signer::new("mallory");
    mallory_in_general(&tracker, &mallory, json!({"ok": true, "duplicate": false}));
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-shots");
    let mut cmd = std::process::Command::new("node");
    cmd.current_dir(&dir)
        .arg("same_id.mjs")
        .arg(chat_url(&bob))
        .arg(&shots);
    let mut script = Driver::spawn("same_id.mjs", cmd);
    script
        .out
        .wait_for("the page to ask", SOON * 3, |l| l == "ASK reuse an id");
    let id = uuid::Uuid::now_v7();
    let squat = signed(
        &mallory,
        id,
        hchat::proto::now_ms(),
        json!({"channel": "general"}),
        "mallory got here first",
    );
    let (status, ack) = post_json(&bob.url("/p2p/receive"), &squat);
    assert_eq!(status, 200, "{ack}");
    send(
        &alice,
        json!({"channel": "general", "text": "alice's real words", "id": id}),
    );
    send(
        &alice,
        json!({"channel": "general", "text": "after the reuse"}),
    );
    script.answer("DONE reuse an id");
    let end = std::time::Instant::now() + SOON * 6;
    let status = loop {
        if let Some(status) = script.exited() {
            break status;
        }
        assert!(
            std::time::Instant::now() < end,
            "the page script did not finish:\n{}",
            script.transcript()
        );
        let seen = script.out.all().len();
        script
            .out
            .wait_more(seen, std::time::Duration::from_millis(200));
    };
    script.out.wait_ended(SOON);
    assert!(
        status.success() && script.out.count(|l| l == "PASS") == 1,
        "the page script failed ({status}):\n{}",
        script.transcript()
    );
}

#[test]
fn a_page_of_signatures_is_checked_together_and_a_forgery_in_it_is_refused_alone() {
    // Several messages at once (a batch push here; a mailbox page or a catch-up page arrive the same way) have
    // their signatures checked together; a page with one bad signature, or a sender without a key, must still
    // get each message its own verdict.
    let tracker = Proc::tracker(&[]);
    let bob = Proc::peer("bob", tracker.addr, &["--join", "general"]);
    joined(&bob, "general");
    let mallory = Signer::new("mallory");
    mallory_in_general(&tracker, &mallory, json!({"ok": true, "duplicate": false}));
    let now = hchat::proto::now_ms;
    let general = json!({"channel": "general"});
    let page = |tag: &str| -> Vec<serde_json::Value> {
        (0..6)
            .map(|i| {
                signed(
                    &mallory,
                    uuid::Uuid::now_v7(),
                    now(),
                    general.clone(),
                    &format!("{tag} line {i}"),
                )
            })
            .collect()
    };
    let verdicts = |answer: &serde_json::Value| -> Vec<(bool, Option<String>)> {
        answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["ok"].as_bool().unwrap(),
                    r["error"]["code"].as_str().map(String::from),
                )
            })
            .collect()
    };

    let good = page("good");
    let (status, answer) = post_json(&bob.url("/p2p/receive-batch"), &json!({ "messages": good }));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(verdicts(&answer), vec![(true, None); 6], "{answer}");

    let mut mixed = page("mixed");
    mixed[2]["text"] = json!("mixed line 2, changed after signing");
    let stranger = Signer::new("stranger"); // never registered: no key bound to the name
    mixed.push(signed(
        &stranger,
        uuid::Uuid::now_v7(),
        now(),
        general.clone(),
        "from a name with no key",
    ));
    let (status, answer) = post_json(
        &bob.url("/p2p/receive-batch"),
        &json!({ "messages": mixed }),
    );
    assert_eq!(status, 200, "{answer}");
    let got = verdicts(&answer);
    let mut want = vec![(true, None); 7];
    want[2] = (false, Some("bad_signature".into()));
    want[6] = (false, Some("unknown_identity".into()));
    assert_eq!(got, want, "{answer}");

    let shown = texts(&bob, "#general");
    for i in 0..6 {
        assert!(shown.contains(&format!("good line {i}")), "{shown:?}");
        if i != 2 {
            assert!(shown.contains(&format!("mixed line {i}")), "{shown:?}");
        }
    }
    assert!(
        !shown
            .iter()
            .any(|t| t.contains("changed after signing") || t.contains("no key")),
        "{shown:?}"
    );
}
