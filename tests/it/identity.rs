//! Identities nobody can forge, with real processes: a message with a bad signature or a spoofed sender is refused
//! with a 4xx and never shown; a replayed registration fails; a name bound to one key cannot be taken by another,
//! before or after a tracker restart; a forged mailbox deposit is refused, and a broken envelope that somehow sits
//! in a mailbox is dropped by its recipient. The replayed registration only asks the tracker, which runs
//! in-process.

use crate::common;

use common::in_process::InTracker;
use common::*;
use serde_json::json;

/// The texts of a conversation in a peer's history, as its page API gives them.
fn history(peer: &Proc, with: &str) -> Vec<String> {
    let with = with.replace('#', "%23").replace('@', "%40");
    get_json(&peer.url(&format!("/api/history?with={with}")), 200)["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_message_with_a_bad_signature_or_a_spoofed_sender_is_refused_and_never_shown() {
    let tracker = Proc::tracker(&[]);
    let mut bob = Proc::peer("bob", tracker.addr, &["--join", "general"]);
    let mut alice = Proc::peer("alice", tracker.addr, &["--join", "general"]);
    joined(&bob, "general");
    joined(&alice, "general");
    let mallory = Signer::new("mallory");
    mallory.register(&tracker, 7666);
    // A member of #general in her own name: only her signatures, not the channel's rules, are in question here.
    let (status, body) = mallory.post(
        &tracker.url("/add-list"),
        &json!({"name": "mallory", "channel": "general"}),
    );
    assert_eq!(status, 200, "mallory joins #general: {body}");
    let receive = bob.url("/p2p/receive");
    let general = json!({"channel": "general"});

    // mallory signs her own message, then changes its text: the signature no longer covers it.
    let mut tampered = mallory.message(general.clone(), "signed text");
    tampered["text"] = "FORGED: tampered text".into();
    // mallory claims to be alice, in the channel and in a DM, signing with her own key.
    let mut spoofed = json!({"id": uuid::Uuid::now_v7(), "from": "alice", "channel": "general",
                             "text": "FORGED: alice never said this", "ts": hchat::proto::now_ms()});
    spoofed = mallory.sign(spoofed);
    let mut spoofed_dm = json!({"id": uuid::Uuid::now_v7(), "from": "alice", "to": "bob",
                                "text": "FORGED: a DM alice never sent", "ts": hchat::proto::now_ms()});
    spoofed_dm = mallory.sign(spoofed_dm);
    // And a message claiming alice with no signature at all.
    let unsigned = json!({"id": uuid::Uuid::now_v7(), "from": "alice", "channel": "general",
                          "text": "FORGED: unsigned", "ts": hchat::proto::now_ms()});
    for (what, msg) in [
        ("a tampered text", &tampered),
        ("a spoofed sender", &spoofed),
        ("a spoofed sender of a DM", &spoofed_dm),
        ("an unsigned message", &unsigned),
    ] {
        let (status, answer) = post_json(&receive, msg);
        assert_eq!(
            (status, code(&answer)),
            (401, "bad_signature"),
            "{what}: {answer}"
        );
    }
    // The batch route refuses them one by one, and takes the good one beside them.
    let good = mallory.message(general.clone(), "mallory signs her own words");
    let (status, answer) = post_json(
        &bob.url("/p2p/receive-batch"),
        &json!({"messages": [spoofed, tampered, good]}),
    );
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(
        results
            .iter()
            .map(|r| (r["ok"].as_bool().unwrap(), r["error"]["code"].as_str()))
            .collect::<Vec<_>>(),
        [
            (false, Some("bad_signature")),
            (false, Some("bad_signature")),
            (true, None)
        ],
        "{answer}"
    );

    // The real alice still gets through, and is the last thing bob sees.
    alice.type_line("the real alice");
    bob.out.wait_line("[#general] alice: the real alice");
    assert_eq!(
        history(&bob, "#general"),
        ["mallory signs her own words", "the real alice"],
        "bob's page shows no forgery"
    );
    assert!(history(&bob, "@alice").is_empty());
    bob.type_line("/history #general");
    bob.out.wait_for("bob's /history", SOON, |l| {
        l.ends_with("[#general] alice: the real alice")
    });
    bob.type_line("/history @alice");
    bob.type_line("/quit");
    bob.wait_exit(SOON);
    let forged: Vec<String> = bob
        .out
        .all()
        .into_iter()
        .filter(|l| l.contains("FORGED") || l.contains("tampered"))
        .collect();
    assert!(forged.is_empty(), "bob's CLI showed forgeries: {forged:?}");
    let warnings = bob.err.count(|l| l.contains("refused a message"));
    assert_eq!(
        warnings,
        6,
        "one warning per refused message: {:?}",
        bob.err.all()
    );
    alice.type_line("/quit");
}

#[test]
fn a_replayed_registration_fails_and_a_fresh_one_renews() {
    // Only the tracker's answers matter here: it runs in this process.
    let tracker = InTracker::start();
    let t = &tracker.endpoint;
    let alice = Signer::new("alice");
    let body = alice.registration("127.0.0.1", 7001);
    let url = "/submit-info";
    assert_eq!(t.post_json(url, &body).0, 200);
    let (status, answer) = t.post_json(url, &body);
    assert_eq!((status, code(&answer)), (401, "replayed"), "{answer}");
    // A renewal is a registration with a fresh nonce.
    let (status, answer) = t.post_json(url, &alice.registration("127.0.0.1", 7001));
    assert_eq!((status, answer["created"].as_bool()), (200, Some(false)));
    // A signed request replayed byte for byte (same header) is refused the same way.
    let join = "/add-list";
    let body = json!({"name": "alice", "channel": "general"}).to_string();
    let auth = alice.auth("POST", &format!("http://in-process{join}"), body.as_bytes());
    let send = || t.post_with_auth(join, &auth, body.clone());
    assert_eq!(send().0, 200);
    let (status, answer) = send();
    assert_eq!((status, code(&answer)), (401, "replayed"), "{answer}");
    // A registration whose signature does not match its fields is refused.
    let mut moved = alice.registration("127.0.0.1", 7001);
    moved["port"] = 7002.into();
    let (status, answer) = t.post_json(url, &moved);
    assert_eq!((status, code(&answer)), (401, "bad_signature"), "{answer}");
}

#[test]
fn a_name_bound_to_one_key_cannot_be_taken_by_another_even_after_a_tracker_restart() {
    let dir = data_dir();
    let args = ["--data-dir", dir.path().to_str().unwrap()];
    let mut tracker = Proc::tracker(&args);
    let port = tracker.addr.port();
    let alice = Signer::new("alice");
    alice.register(&tracker, 7001);
    let impostor = Signer::new("alice");
    let take = |t: &Proc| {
        post_json(
            &t.url("/submit-info"),
            &impostor.registration("127.0.0.1", 7009),
        )
    };
    let (status, answer) = take(&tracker);
    assert_eq!((status, code(&answer)), (409, "name_taken"), "{answer}");
    assert_eq!(
        get_json(&tracker.url("/identity?name=alice"), 200)["public_key"],
        alice.key()
    );
    let (status, answer) = try_get_json(&tracker.url("/identity?name=nobody")).unwrap();
    assert_eq!((status, code(&answer)), (404, "unknown_identity"));

    // The binding is kept: a restarted tracker still refuses the other key, and still takes alice's.
    tracker.kill();
    let tracker = Proc::tracker_on(port, &args);
    let (status, answer) = take(&tracker);
    assert_eq!(
        (status, code(&answer)),
        (409, "name_taken"),
        "after a restart: {answer}"
    );
    alice.register(&tracker, 7001);
    assert_eq!(
        get_json(&tracker.url("/peers"), 200)["peers"][0]["public_key"],
        alice.key(),
        "the tracker vouches for alice's key in its answers"
    );

    // A user who starts a peer under that name with another data dir is told what is wrong and what to do.
    let mut cmd = hchat();
    cmd.args([
        "peer",
        "--name",
        "alice",
        "--port",
        "0",
        "--ip",
        "127.0.0.1",
    ])
    .args(["--tracker-port", &port.to_string()])
    .stdin(std::process::Stdio::null());
    let out = output_within(cmd, SOON);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("name alice belongs to another identity")
            && stderr.contains("start with its data dir"),
        "{stderr}"
    );
}

#[test]
fn a_forged_mailbox_deposit_is_refused_and_a_broken_envelope_in_a_mailbox_is_dropped() {
    let tracker_dir = data_dir();
    let args = ["--data-dir", tracker_dir.path().to_str().unwrap()];
    let mut tracker = Proc::tracker(&args);
    let port = tracker.addr.port();
    let bob_dir = data_dir();
    let bob_args = ["--data-dir", bob_dir.path().to_str().unwrap()];
    let mut bob = Proc::peer("bob", tracker.addr, &bob_args);
    bob.type_line("/quit");
    assert!(bob.wait_exit(SOON).success());
    let alice = Signer::new("alice");
    alice.register(&tracker, 7001);
    let mallory = Signer::new("mallory");
    mallory.register(&tracker, 7666);
    let deposit = tracker.url("/mailbox/deposit");
    let bob_key = identity_key(&tracker, "bob");
    let entry = |m: &serde_json::Value| sealed_entry(m, "bob", &bob_key);
    let to_bob = json!({"to": "bob"});

    // mallory deposits, as herself, a letter that claims to be alice's (signed with mallory's key).
    let mut claim = alice.message(to_bob.clone(), "FORGED: claims alice");
    claim = mallory.sign(claim);
    let (status, answer) = mallory.post(
        &deposit,
        &json!({"from": "mallory", "to": "bob", "entries": [entry(&claim)]}),
    );
    assert_eq!((status, code(&answer)), (403, "not_you"), "{answer}");
    // She deposits under alice's name, signing the request herself.
    let (status, answer) = mallory.post(
        &deposit,
        &json!({"from": "alice", "to": "bob", "entries": [entry(&claim)]}),
    );
    assert_eq!((status, code(&answer)), (403, "not_you"), "{answer}");
    // Her own letter with a text changed after signing: sealed to bob, the tracker cannot see that (it holds
    // it); bob refuses it when he opens it, below.
    let mut broken = mallory.message(to_bob.clone(), "signed");
    broken["text"] = "FORGED: changed after signing".into();
    let (status, answer) = mallory.post(
        &deposit,
        &json!({"from": "mallory", "to": "bob", "entries": [entry(&broken)]}),
    );
    assert_eq!(
        (status, answer["stored"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
    // Without a header at all.
    let real = alice.message(to_bob.clone(), "a real letter from alice");
    let letter = json!({"from": "alice", "to": "bob", "entries": [entry(&real)]});
    let (status, answer) = post_json(&deposit, &letter);
    assert_eq!(
        (status, code(&answer)),
        (401, "unauthenticated"),
        "{answer}"
    );
    // alice's own letter is taken.
    let (status, answer) = alice.post(&deposit, &letter);
    assert_eq!(
        (status, answer["stored"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );

    // A tracker that is not honest (here: its database edited while it is stopped) slips a letter into bob's
    // mailbox under alice's name with a text she never signed.
    tracker.kill();
    let mut slipped = alice.message(to_bob.clone(), "what alice signed");
    slipped["text"] = "FORGED: slipped into the mailbox".into();
    {
        let db = rusqlite::Connection::open(tracker_dir.path().join("tracker.sqlite3")).unwrap();
        db.execute(
            "INSERT INTO mail (recipient, id, sender, envelope, deposited_ms) VALUES ('bob', ?1, 'alice', ?2, 1)",
            [slipped["id"].as_str().unwrap(), slipped.to_string().as_str()],
        )
        .unwrap();
    }
    let tracker = Proc::tracker_on(port, &args);

    // bob comes back: he gets alice's real letter, drops the slipped one with a warning, and his mailbox is empty.
    let mut bob = Proc::peer("bob", tracker.addr, &bob_args);
    bob.out
        .wait_line("[@alice] alice: a real letter from alice");
    let as_bob = Signer::from_data_dir("bob", bob_dir.path());
    wait_until("bob's mailbox to be emptied", SOON, || {
        let (status, page) = as_bob.post(&tracker.url("/mailbox/fetch"), &json!({"name": "bob"}));
        status == 200 && page["entries"].as_array().unwrap().is_empty()
    });
    assert_eq!(history(&bob, "@alice"), ["a real letter from alice"]);
    bob.type_line("/quit");
    bob.wait_exit(SOON);
    assert!(
        !bob.out.all().iter().any(|l| l.contains("FORGED")),
        "{:?}",
        bob.out.all()
    );
    assert_eq!(
        bob.err
            .count(|l| l.contains("refused a message") && l.contains("bad_signature")),
        2,
        "the letter slipped in and mallory's changed one: {:?}",
        bob.err.all()
    );
}

#[test]
fn a_catch_up_answer_cannot_slip_in_a_forged_message() {
    let tracker = Proc::tracker(&[]);
    let bob_dir = data_dir();
    let bob_args = in_general_on(&bob_dir);
    let mut bob = Proc::peer("bob", tracker.addr, &bob_args);
    joined(&bob, "general");
    bob.type_line("/quit");
    assert!(bob.wait_exit(SOON).success());

    let alice = Signer::new("alice");
    alice.register(&tracker, 7001);
    let mallory = Signer::new("mallory");
    let own = mallory.message(json!({"channel": "general"}), "mallory's own words");
    let forged = mallory.sign(json!({"id": uuid::Uuid::now_v7(), "from": "alice", "channel": "general",
                                     "text": "FORGED: alice never said this", "ts": hchat::proto::now_ms()}));
    let port =
        canned_json_server(json!({"channel": "general", "messages": [own, forged], "more": false}));
    mallory.register(&tracker, port);
    let (status, _) = mallory.post(
        &tracker.url("/add-list"),
        &json!({"name": "mallory", "channel": "general"}),
    );
    assert_eq!(status, 200);

    // bob comes back and catches up on #general from its members: mallory is the only one.
    let mut bob = Proc::peer("bob", tracker.addr, &bob_args);
    bob.out.wait_for("bob's catch-up", SOON, |l| {
        l.starts_with("* caught up on #general: 1 message(s)")
    });
    assert_eq!(history(&bob, "#general"), ["mallory's own words"]);
    bob.type_line("/quit");
    bob.wait_exit(SOON);
    assert!(!bob.out.all().iter().any(|l| l.contains("FORGED")));
    // Once per catch-up that fetched it (start-up and the re-registration may each run one).
    let warned = bob
        .err
        .count(|l| l.contains("refused a message") && l.contains("CatchUp"));
    assert!(
        (1..=2).contains(&warned),
        "{warned} warnings: {:?}",
        bob.err.all()
    );
}
