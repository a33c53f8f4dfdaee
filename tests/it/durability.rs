//! Nothing lost: real `hchat` processes are SIGKILLed (a peer, the tracker) while messages are sent, and come back
//! with the same data dir. What was sent arrives, each message once, in each sender's order; a restarted peer shows
//! the earlier conversation; a restarted tracker has every membership and every mailbox entry, none twice.

use crate::common;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const MESSAGES: usize = 1000;
/// Long enough for 2,000 messages to be stored, drained and caught up on 2 busy cores.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(45);

/// The last 1,000 texts of a conversation as `peer`'s local API returns them, oldest first. Were a message stored
/// twice, or one missing, the window would not match the sequence sent.
fn history(peer: &Proc, with: &str) -> Vec<String> {
    let with = with.replace('#', "%23");
    let v = get_json(
        &peer.url(&format!("/api/history?with={with}&limit=1000")),
        200,
    );
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect()
}

/// Sends `MESSAGES` messages through `peer`'s local API, one after another, numbered `{prefix} {i}`; returns how
/// many the sender was told the tracker holds.
fn send_numbered(
    peer_url: String,
    dest: serde_json::Value,
    prefix: &str,
    sent: &AtomicUsize,
) -> usize {
    let client = http();
    let mut held = 0;
    for i in 0..MESSAGES {
        let mut body = dest.clone();
        body["text"] = json!(format!("{prefix} {i}"));
        let r = client.post(&peer_url).json(&body).send().unwrap();
        let status = r.status().as_u16();
        let report: serde_json::Value = r.json().unwrap();
        assert_eq!(status, 200, "send {i}: {report}");
        held += report["held"].as_array().unwrap().len();
        sent.fetch_add(1, Ordering::SeqCst);
    }
    held
}

fn numbered(prefix: &str) -> Vec<String> {
    (0..MESSAGES).map(|i| format!("{prefix} {i}")).collect()
}

/// bob dies; alice sends 1,000 DMs and 1,000 channel messages; bob comes back and has them all. With
/// `kill_tracker`, the tracker is SIGKILLed half-way and restarted on the same port and data dir.
fn bob_gets_everything_sent_while_he_was_dead(kill_tracker: bool) {
    let tracker_dir = data_dir();
    let tracker_args = [
        "--peer-ttl",
        "2",
        "--data-dir",
        tracker_dir.path().to_str().unwrap(),
    ];
    let mut tracker = Proc::tracker(&tracker_args);
    let port = tracker.addr.port();
    let bob_dir = data_dir();
    let bob_args = in_general_on(&bob_dir);
    let mut alice = Proc::peer("alice", tracker.addr, &["--join", "general"]);
    let mut bob = Proc::peer("bob", tracker.addr, &bob_args);
    joined(&alice, "general");
    joined(&bob, "general");
    alice.type_line("before");
    bob.out.wait_line("[#general] alice: before");

    bob.kill();
    let started = Instant::now();
    let sent = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = [
        (json!({"to": "bob"}), "dm"),
        (json!({"channel": "general"}), "ch"),
    ]
    .into_iter()
    .map(|(dest, prefix)| {
        let url = alice.url("/api/send");
        let sent = sent.clone();
        std::thread::spawn(move || send_numbered(url, dest, prefix, &sent))
    })
    .collect();
    if kill_tracker {
        wait_until("half of the messages to be sent", DELIVERY_DEADLINE, || {
            sent.load(Ordering::SeqCst) >= MESSAGES
        });
        tracker.kill();
        tracker = Proc::tracker_on(port, &tracker_args);
    }
    let held: Vec<usize> = senders
        .into_iter()
        .map(|s| s.join().expect("every send is accepted"))
        .collect();
    // Once bob's worker has turned to the mailbox, sends are reported held. (It used to stay backing off through
    // every remaining send when its first deposits met the tracker's restart: the direct pushes to dead bob had
    // grown its back-off to 4 s. The mailbox path now starts its own back-off, and the tracker's return ends it.)
    eprintln!(
        "send reports: {} of {MESSAGES} DMs held by the tracker at once",
        held[0]
    );
    assert!(held[0] > 0, "some DMs went to the tracker's mailbox");
    eprintln!(
        "alice sent {} messages in {:?}",
        2 * MESSAGES,
        started.elapsed()
    );

    let restarted = Instant::now();
    let bob = Proc::peer("bob", tracker.addr, &bob_args);
    let (want_dms, want_channel) = (numbered("dm"), numbered("ch"));
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    loop {
        let (dms, channel) = (history(&bob, "@alice"), history(&bob, "#general"));
        if dms == want_dms && channel == want_channel {
            break;
        }
        if Instant::now() > deadline {
            // Fails, showing what differs.
            assert_eq!(dms, want_dms, "each DM once, in alice's order");
            assert_eq!(
                channel, want_channel,
                "each channel message once, in alice's order"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "bob held all {} messages {:?} after his restart",
        2 * MESSAGES,
        restarted.elapsed()
    );
    // Nothing is left for bob at the tracker once he has them: his mailbox is acknowledged away.
    let as_bob = Signer::from_data_dir("bob", bob_dir.path());
    wait_until("bob's mailbox to be empty", SOON, || {
        let (status, page) = as_bob.post(&tracker.url("/mailbox/fetch"), &json!({"name": "bob"}));
        status == 200 && page["entries"].as_array().unwrap().is_empty()
    });
    alice.type_line("/quit");
    assert!(alice.wait_exit(SOON).success());
}

#[test]
fn a_killed_peer_gets_every_message_sent_while_it_was_dead_once_and_in_order() {
    bob_gets_everything_sent_while_he_was_dead(false);
}

#[test]
fn the_same_with_the_tracker_killed_and_restarted_half_way() {
    bob_gets_everything_sent_while_he_was_dead(true);
}

#[test]
fn a_restarted_peer_shows_the_earlier_conversation_in_its_cli() {
    let tracker = Proc::tracker(&[]);
    let bob_dir = data_dir();
    let bob_args = ["--data-dir", bob_dir.path().to_str().unwrap()];
    let mut alice = Proc::peer("alice", tracker.addr, &["--join", "general"]);
    let mut bob = Proc::peer("bob", tracker.addr, &bob_args);
    joined(&alice, "general");
    bob.type_line("#general");
    joined(&bob, "general");
    alice.type_line("good morning");
    bob.out.wait_line("[#general] alice: good morning");
    alice.type_line("@bob psst");
    bob.out.wait_line("[@alice] alice: psst");
    bob.type_line("@alice yes?");
    alice.out.wait_line("[@bob] bob: yes?");
    bob.type_line("/quit");
    assert!(bob.wait_exit(SOON).success());

    // bob comes back: no --join, yet he is in #general again, and his history is there.
    let mut bob = Proc::peer("bob", tracker.addr, &bob_args);
    wait_until("bob to be back in #general", SOON, || {
        members(&tracker, "general") == ["alice", "bob"]
    });
    bob.type_line("/history @alice");
    let psst = bob.out.wait_for("the DM in /history", SOON, |l| {
        l.starts_with("* ") && l.ends_with(" [@alice] alice: psst")
    });
    let yes = bob.out.wait_for("bob's answer in /history", SOON, |l| {
        l.starts_with("* ") && l.ends_with(" [@alice] bob: yes?")
    });
    let lines = bob.out.all();
    let at = |l: &str| lines.iter().position(|x| x == l).unwrap();
    assert!(at(&psst) < at(&yes), "oldest first: {lines:?}");
    bob.type_line("/history #general");
    bob.out
        .wait_for("the channel message in /history", SOON, |l| {
            l.starts_with("* ") && l.ends_with(" [#general] alice: good morning")
        });
    // And chat goes on where it was.
    bob.type_line("back again");
    alice.out.wait_line("[#general] bob: back again");
}

/// Registers `who` at 127.0.0.1:`port` directly with the tracker; `None` while it is unreachable.
fn register(tracker: &str, who: &Signer, port: u16) -> Option<u16> {
    let r = http()
        .post(format!("{tracker}/submit-info"))
        .json(&who.registration("127.0.0.1", port))
        .send()
        .ok()?;
    Some(r.status().as_u16())
}

#[test]
fn a_tracker_killed_amid_registrations_joins_and_deposits_comes_back_consistent() {
    let dir = data_dir();
    let args = [
        "--peer-ttl",
        "5",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ];
    let mut tracker = Proc::tracker(&args);
    let port = tracker.addr.port();
    let base = format!("http://127.0.0.1:{port}");
    // carol has registered once (so she has a mailbox) and is away; "post" deposits for her.
    let carol = Signer::new("carol");
    assert_eq!(register(&base, &carol, 1), Some(200));
    let alice = Proc::peer("alice", tracker.addr, &["--join", "general"]);
    let bob = Proc::peer("bob", tracker.addr, &["--join", "general"]);
    joined(&alice, "general");
    joined(&bob, "general");

    const BATCHES: usize = 60;
    const PER_BATCH: usize = 5;
    const CHANNELS: usize = 8;
    let done = Arc::new(AtomicUsize::new(0));
    let carol_key = carol.key();
    let depositor = {
        let base = base.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let client = http();
            let post = Signer::new("post");
            let mut ids = Vec::new();
            let carol_key = carol_key.clone();
            for b in 0..BATCHES {
                let entries: Vec<_> = (0..PER_BATCH)
                    .map(|i| {
                        let letter =
                            post.message(json!({"to": "carol"}), &format!("letter {b}.{i}"));
                        let id: uuid::Uuid = serde_json::from_value(letter["id"].clone()).unwrap();
                        ids.push(id);
                        sealed_entry(&letter, "carol", &carol_key)
                    })
                    .collect();
                let body = json!({"from": "post", "to": "carol", "entries": entries}).to_string();
                let url = format!("{base}/mailbox/deposit");
                // Like a peer: retry until the tracker says it holds them; register again if it forgot us (or
                // never heard of us: the first registration may have been lost with the tracker).
                loop {
                    match client
                        .post(&url)
                        .header("hchat-auth", post.auth("POST", &url, body.as_bytes()))
                        .body(body.clone())
                        .send()
                    {
                        Ok(r) if r.status().as_u16() == 200 => break,
                        Ok(r) if matches!(r.status().as_u16(), 401 | 404) => {
                            let _ = register(&base, &post, 2);
                        }
                        _ => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
            ids
        })
    };
    let joiner = {
        let (a, b) = (alice.url("/api/join"), bob.url("/api/join"));
        let done = done.clone();
        std::thread::spawn(move || {
            let client = http();
            for c in 0..CHANNELS {
                for url in [&a, &b] {
                    let body = json!({"channel": format!("room{c}")});
                    while !client
                        .post(url)
                        .json(&body)
                        .send()
                        .is_ok_and(|r| r.status().is_success())
                    {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    wait_until("the first deposits and joins", SOON, || {
        done.load(Ordering::SeqCst) >= 10
    });
    tracker.kill();
    let tracker = Proc::tracker_on(port, &args);
    let ids = depositor.join().unwrap();
    joiner.join().unwrap();

    // Every live peer is where it joined, and nowhere else.
    for c in 0..CHANNELS {
        let room = format!("room{c}");
        wait_until(&format!("alice and bob in #{room}"), SOON, || {
            members(&tracker, &room) == ["alice", "bob"]
        });
    }
    assert_eq!(members(&tracker, "general"), ["alice", "bob"]);
    // carol's mailbox holds every letter exactly once.
    assert_eq!(register(&base, &carol, 1), Some(200));
    let mut held = Vec::new();
    let (status, page) = carol.post(
        &format!("{base}/mailbox/fetch"),
        &json!({"name": "carol", "limit": 500}),
    );
    assert_eq!(status, 200, "{page}");
    for e in page["entries"].as_array().unwrap() {
        assert_eq!(e["from"], "post");
        held.push(e["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap());
    }
    assert_eq!(page["more"], false);
    assert_eq!(held.len(), BATCHES * PER_BATCH, "no entry lost or doubled");
    assert_eq!(
        held.iter().collect::<BTreeSet<_>>(),
        ids.iter().collect::<BTreeSet<_>>()
    );
    assert_eq!(held, ids, "held oldest first");
}

#[test]
fn a_peer_killed_and_started_again_at_once_gets_its_name_and_address_back() {
    let tracker = Proc::tracker(&[]);
    let dir = data_dir();
    let args = in_general_on(&dir);
    let mut bob = Proc::peer("bob", tracker.addr, &args);
    joined(&bob, "general");
    let addr = bob.addr;
    bob.kill();
    // Well within the 30 s lease the tracker still holds for the dead bob.
    let bob = Proc::peer("bob", tracker.addr, &args);
    joined(&bob, "general");
    assert_eq!(
        bob.addr, addr,
        "the port of the last run, so the lease is bob's own"
    );
}
