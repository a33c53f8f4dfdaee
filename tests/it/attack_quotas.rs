//! Issue 11, attacks 4 and 5a against a real tracker: one host making throwaway identities to fill the tracker's
//! channels and mailboxes for everyone, and names that look like another's. The attacker comes from 127.0.0.2 and
//! the other user from 127.0.0.3 (the whole 127.0.0.0/8 is this host on Linux; the tracker listens on 127.0.0.1,
//! so neither is "this host" to it and both are held to the per-address quotas, at their defaults).

use crate::common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn attacker() -> IpAddr {
    "127.0.0.2".parse().unwrap()
}
fn bystander() -> IpAddr {
    "127.0.0.3".parse().unwrap()
}

fn code(v: &serde_json::Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// Sends `req` until the tracker's rate limit lets it through (as a client that honours 429 rate_limited would).
fn unthrottled(mut req: impl FnMut() -> (u16, serde_json::Value)) -> (u16, serde_json::Value) {
    let end = Instant::now() + SOON;
    loop {
        let (status, body) = req();
        if code(&body) != "rate_limited" || Instant::now() > end {
            return (status, body);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The tracker's resident memory in KiB (what a flood cost it), from /proc.
fn rss_kib(p: &Proc) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn register(s: &Signer, from: IpAddr, tracker: &Proc, port: u16) -> (u16, serde_json::Value) {
    unthrottled(|| s.register_from(from, tracker, port))
}

fn join(s: &Signer, from: IpAddr, tracker: &Proc, channel: &str) -> (u16, serde_json::Value) {
    unthrottled(|| {
        s.post_from(
            from,
            &tracker.url("/add-list"),
            &json!({"name": s.name, "channel": channel}),
        )
    })
}

#[test]
fn one_host_making_identities_meets_the_channel_and_name_quotas_while_another_user_still_creates_a_channel()
 {
    let dir = data_dir();
    let data = dir.path().to_str().unwrap().to_string();
    let mut tracker = Proc::tracker(&["--data-dir", &data]);
    let rss_before = rss_kib(&tracker);
    let started = Instant::now();
    // The old flood: fake peers, each creating channels as fast as the tracker lets it.
    let mut created = 0;
    let mut eves = Vec::new();
    let refusal = 'flood: loop {
        let eve = Signer::new(&format!("eve{}", eves.len()));
        let (status, body) = register(&eve, attacker(), &tracker, 7000);
        assert_eq!(status, 200, "{body}");
        for i in 0.. {
            let (status, body) = join(&eve, attacker(), &tracker, &format!("{}-{i}", eve.name));
            if status != 200 {
                let own = format!("{} has created 64 channels", eve.name);
                if body.to_string().contains(&own) {
                    assert_eq!(
                        (status, code(&body), i),
                        (429, "channel_quota", 64),
                        "{body}"
                    );
                    break;
                }
                break 'flood (status, body);
            }
            created += 1;
        }
        eves.push(eve);
    };
    let took = started.elapsed();
    eprintln!(
        "channel flood from one address: {created} channels by {} identities, refused after {took:?}, tracker RSS {} -> {} KiB: {}",
        eves.len() + 1,
        rss_before,
        rss_kib(&tracker),
        refusal.1
    );
    assert_eq!(created, 256, "the address's quota");
    assert_eq!((refusal.0, code(&refusal.1)), (429, "channel_quota"));
    assert!(
        refusal.1.to_string().contains("the address 127.0.0.2"),
        "{}",
        refusal.1
    );

    // More identities from the same address: at most 20 new names an hour.
    let mut names = eves.len() + 1;
    let refused = loop {
        let eve = Signer::new(&format!("eve{names}"));
        let (status, body) = register(&eve, attacker(), &tracker, 7000);
        if status != 200 {
            break (status, body);
        }
        names += 1;
    };
    eprintln!("names bound from one address before name_quota: {names}");
    assert_eq!(names, 20);
    assert_eq!(
        (refused.0, code(&refused.1)),
        (429, "name_quota"),
        "{}",
        refused.1
    );

    // Another user, at another address, is not held back by any of it.
    let carol = Signer::new("carol");
    assert_eq!(register(&carol, bystander(), &tracker, 7001).0, 200);
    let (status, body) = join(&carol, bystander(), &tracker, "book-club");
    assert_eq!(status, 200, "{body}");
    let channels = get_json(&tracker.url("/channels"), 200);
    assert_eq!(channels["channels"].as_array().unwrap().len(), 257);

    // A restart forgets none of it (killed, as a crash would).
    tracker.kill();
    let tracker = Proc::tracker(&["--data-dir", &data]);
    let eve = &eves[1];
    assert_eq!(register(eve, attacker(), &tracker, 7000).0, 200);
    let (status, body) = join(eve, attacker(), &tracker, "after-restart");
    assert_eq!((status, code(&body)), (429, "channel_quota"), "{body}");
    let (status, body) = register(&Signer::new("late"), attacker(), &tracker, 7000);
    assert_eq!((status, code(&body)), (429, "name_quota"), "{body}");
    assert_eq!(register(&carol, bystander(), &tracker, 7001).0, 200);
    assert_eq!(join(&carol, bystander(), &tracker, "second").0, 200);
}

#[test]
fn one_host_filling_mailboxes_meets_the_mail_quotas_while_another_user_still_gets_held_mail() {
    let tracker = Proc::tracker(&[]);
    // bob is away: he registered once (so he has a mailbox) and quit.
    let bob_dir = data_dir();
    let bob_data = bob_dir.path().to_str().unwrap().to_string();
    let mut bob = Proc::peer(
        "bob",
        tracker.addr,
        &["--data-dir", &bob_data, "--join", "general"],
    );
    bob.out
        .wait_for("bob to join", SOON, |l| l.starts_with("* joined #general"));
    bob.type_line("/quit");
    bob.wait_exit(SOON);

    // The old attack: recipients that never fetch, filled by the attacker's identities with the largest envelopes.
    let sinks: Vec<Signer> = (0..5).map(|i| Signer::new(&format!("sink{i}"))).collect();
    for s in &sinks {
        assert_eq!(register(s, attacker(), &tracker, 7100).0, 200);
    }
    let text = "x".repeat(15 * 1024);
    let rss_before = rss_kib(&tracker);
    let started = Instant::now();
    let (mut held, mut deposits) = (0usize, 0);
    let mut refusals = Vec::new();
    'flood: for e in 0..10 {
        let eve = Signer::new(&format!("mailer{e}"));
        assert_eq!(register(&eve, attacker(), &tracker, 7200).0, 200);
        for i in 0.. {
            let sink = &sinks[i % sinks.len()];
            let to = &sink.name;
            let entries: Vec<_> = (0..3)
                .map(|_| {
                    let m = eve.message(json!({"to": to}), &text);
                    sealed_entry(&m, to, &sink.key())
                })
                .collect();
            let body = json!({"from": eve.name, "to": to, "entries": entries});
            let (status, answer) =
                unthrottled(|| eve.post_from(attacker(), &tracker.url("/mailbox/deposit"), &body));
            if status != 200 {
                assert_eq!((status, code(&answer)), (429, "mail_quota"), "{answer}");
                let whole_address = answer.to_string().contains("the address 127.0.0.2");
                refusals.push(answer);
                if whole_address {
                    break 'flood;
                }
                break;
            }
            deposits += 1;
            held += entries_bytes(&body);
        }
    }
    let took = started.elapsed();
    eprintln!(
        "mail flood from one address: {deposits} deposits, {} MiB held, refused after {took:?}, tracker RSS {} -> {} KiB; first refusal: {}",
        held / (1024 * 1024),
        rss_before,
        rss_kib(&tracker),
        refusals[0]
    );
    assert!(
        refusals[0].to_string().contains("mailer0 already has"),
        "one sender meets its own quota first: {}",
        refusals[0]
    );
    let last = refusals.last().unwrap().to_string();
    assert!(
        last.contains("the address 127.0.0.2"),
        "the address's quota ends it: {last}"
    );
    assert!(
        held <= 32 * 1024 * 1024 && held > 31 * 1024 * 1024,
        "the address holds about its 32 MiB, no more ({held} bytes)"
    );

    // alice, another user at another address, still leaves bob a message, and bob gets it when he is back.
    let alice = Signer::new("alice");
    assert_eq!(register(&alice, bystander(), &tracker, 7300).0, 200);
    let m = alice.message(json!({"to": "bob"}), "still delivered");
    let bob_key = identity_key(&tracker, "bob");
    let body =
        json!({"from": "alice", "to": "bob", "entries": [sealed_entry(&m, "bob", &bob_key)]});
    let (status, answer) =
        unthrottled(|| alice.post_from(bystander(), &tracker.url("/mailbox/deposit"), &body));
    assert_eq!((status, &answer["stored"]), (200, &json!(1)), "{answer}");
    let bob = Proc::peer("bob", tracker.addr, &["--data-dir", &bob_data]);
    bob.out.wait_line("[@alice] alice: still delivered");
}

/// Bytes of the envelopes in a deposit body, as the tracker counts them.
fn entries_bytes(body: &serde_json::Value) -> usize {
    body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["envelope"].to_string().len())
        .sum()
}

#[test]
fn a_lookalike_of_a_bound_name_is_refused_naming_it() {
    let tracker = Proc::tracker(&[]);
    let alice = Proc::peer("alice", tracker.addr, &["--join", "general"]);
    alice.out.wait_for("alice to join", SOON, |l| {
        l.starts_with("* joined #general")
    });
    for like in ["aIice", "Alice", "ALICE", "a1ice"] {
        let (status, body) = register(&Signer::new(like), bystander(), &tracker, 7400);
        assert_eq!(
            (status, code(&body)),
            (409, "name_confusable"),
            "{like}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("looks like alice"),
            "{body}"
        );
    }
    // Channels too: #General beside #general.
    let mallory = Signer::new("mallory");
    assert_eq!(register(&mallory, bystander(), &tracker, 7401).0, 200);
    let (status, body) = join(&mallory, bystander(), &tracker, "GeneraI");
    assert_eq!((status, code(&body)), (409, "name_confusable"), "{body}");
    assert!(body.to_string().contains("#general"), "{body}");
    // The lookalike did not become a peer, and alice is still alice.
    let peers = get_json(&tracker.url("/peers"), 200);
    assert_eq!(names(&peers), vec!["alice", "mallory"]);
}
