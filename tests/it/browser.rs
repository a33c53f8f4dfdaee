//! The web chat in headless Chromium (Debian's `chromium`, driven by `playwright-core` from tests/browser/):
//! a real tracker and real peers; the script in tests/browser/chat.mjs acts as alice and bob in their pages and
//! asks this test to start and kill carol, kill and start the tracker, and restart bob on his data dir.
//! Screenshots land in target/browser-shots/.
//!
//! Needs Node.js, `npm ci` in tests/browser and /usr/bin/chromium (.ci/run installs all three). Without them it
//! fails saying how to install them; `HCHAT_SKIP_BROWSER=1` skips it instead (never under `CI=true`).

use crate::common;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// The whole scenario must finish within this.
const SCENARIO: Duration = Duration::from_secs(180);

#[test]
fn two_pages_chat_live_and_follow_who_is_online() {
    let dir = match browser_tools() {
        Ok(Some(dir)) => dir,
        Ok(None) => return,
        Err(why) => panic!("{why}"),
    };
    let mut tracker = Proc::tracker(&["--peer-ttl", "2"]);
    let alice = Proc::peer("alice", tracker.addr, &[]);
    // bob keeps his state in a folder of the test's, so he can be killed and started again on it.
    let bob_dir = tempfile::tempdir().unwrap();
    let bob_args = [
        "--data-dir",
        bob_dir.path().to_str().unwrap(),
        "--token",
        "bobs-token-for-the-browser-test",
    ];
    let mut bob = Proc::peer("bob", tracker.addr, &bob_args);
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-shots");
    let mut cmd = Command::new("node");
    cmd.current_dir(&dir)
        .arg("chat.mjs")
        .arg(chat_url(&alice))
        .arg(chat_url(&bob))
        .arg(&shots);
    let mut script = Driver::spawn("chat.mjs", cmd);
    // carol comes and goes on one data dir, so she keeps her identity (the tracker binds her name to it).
    let carol_dir = tempfile::tempdir().unwrap();
    let carol_args = in_general_on(&carol_dir);
    let mut carol: Option<Proc> = None;
    let mut handled = 0;
    let end = Instant::now() + SCENARIO;
    loop {
        let asks: Vec<String> = script
            .out
            .all()
            .into_iter()
            .filter_map(|l| l.strip_prefix("ASK ").map(str::to_string))
            .collect();
        for ask in &asks[handled..] {
            match ask.as_str() {
                "start carol" => {
                    carol = Some(Proc::peer("carol", tracker.addr, &carol_args));
                }
                "kill carol" => carol.as_mut().expect("carol runs").kill(),
                "kill tracker" => tracker.kill(),
                "restart bob" => {
                    let port = bob.addr.port();
                    bob.kill();
                    bob = Proc::peer("bob", tracker.addr, &bob_args);
                    assert_eq!(
                        bob.addr.port(),
                        port,
                        "bob takes his port back, so his page finds him"
                    );
                }
                // A fresh tracker on the same port: the peers register and re-join on their own.
                "start tracker" => {
                    tracker = Proc::tracker_on(tracker.addr.port(), &["--peer-ttl", "2"])
                }
                "carol got one DM" => {
                    let c = carol.as_ref().expect("carol runs");
                    c.out.wait_line("[@alice] alice: are you there, carol?");
                    assert_eq!(
                        c.out.count(|l| l.contains("are you there")),
                        1,
                        "the held DM reached carol once"
                    );
                }
                other => panic!("the script asked for something unknown: {other}"),
            }
            script.answer(&format!("DONE {ask}"));
        }
        handled = asks.len();
        if let Some(status) = script.exited() {
            script.out.wait_ended(SOON);
            script.err.wait_ended(SOON);
            assert!(
                status.success() && script.out.count(|l| l == "PASS") == 1,
                "the browser scenario failed ({status}):\n{}",
                script.transcript()
            );
            break;
        }
        assert!(
            Instant::now() < end,
            "the browser scenario did not finish within {SCENARIO:?}:\n{}",
            script.transcript()
        );
        // Wake on the script's next line, or look at its exit status again shortly.
        let seen = script.out.all().len();
        script.out.wait_more(seen, Duration::from_millis(200));
    }
    for shot in [
        "alice.png",
        "bob.png",
        "alice-retried.png",
        "bob-narrow.png",
    ] {
        let meta = std::fs::metadata(shots.join(shot)).expect("the screenshot was saved");
        assert!(meta.len() > 10_000, "{shot} holds a real picture");
    }
    eprintln!("screenshots in {}", shots.display());
}

/// Issue 15 in the page (tests/browser/away.mjs): a notification for a DM to a hidden tab, unread counts across
/// a reload, a held DM turning delivered when bob is back, all that bob missed while dead shown in his open page
/// without a reload under a divider, a search result that jumps to its message. Screenshots of the divider and
/// of the search land in target/browser-shots/ (docs/ has copies).
#[test]
fn the_page_shows_what_was_missed_in_place_receipts_unread_counts_and_notifications() {
    let dir = match browser_tools() {
        Ok(Some(dir)) => dir,
        Ok(None) => return,
        Err(why) => panic!("{why}"),
    };
    const SENT: usize = 200;
    let tracker = Proc::tracker(&["--peer-ttl", "2"]);
    let mut alice = Proc::peer("alice", tracker.addr, &["--join", "general"]);
    let bob_dir = tempfile::tempdir().unwrap();
    let bob_args = [
        "--data-dir",
        bob_dir.path().to_str().unwrap(),
        "--join",
        "general",
        "--token",
        "bobs-token-for-the-away-test",
    ];
    let mut bob = Proc::peer("bob", tracker.addr, &bob_args);
    joined(&alice, "general");
    joined(&bob, "general");
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-shots");
    let mut cmd = Command::new("node");
    cmd.current_dir(&dir)
        .arg("away.mjs")
        .arg(chat_url(&alice))
        .arg(chat_url(&bob))
        .arg(&shots);
    let mut script = Driver::spawn("away.mjs", cmd);
    let mut handled = 0;
    let end = Instant::now() + SCENARIO;
    loop {
        let asks: Vec<String> = script
            .out
            .all()
            .into_iter()
            .filter_map(|l| l.strip_prefix("ASK ").map(str::to_string))
            .collect();
        for ask in &asks[handled..] {
            match ask.as_str() {
                said if said.starts_with("alice says: ") => {
                    let line = &said["alice says: ".len()..];
                    alice.type_line(line);
                    let shown = match line.strip_prefix("@bob ") {
                        Some(dm) => format!("[@alice] alice: {dm}"),
                        None => format!("[#general] alice: {line}"),
                    };
                    bob.out.wait_line(&shown);
                }
                "kill bob" => bob.kill(),
                "flood" => {
                    let client = http();
                    for i in 0..SENT {
                        for (dest, text) in [
                            (serde_json::json!({"to": "bob"}), format!("dm {i}")),
                            (serde_json::json!({"channel": "general"}), format!("ch {i}")),
                        ] {
                            let mut body = dest;
                            body["text"] = serde_json::json!(text);
                            let r = client
                                .post(alice.url("/api/send"))
                                .json(&body)
                                .send()
                                .unwrap();
                            assert_eq!(r.status().as_u16(), 200, "{text}");
                        }
                    }
                    // Every DM is with the tracker, none left in alice's outbox to be pushed later.
                    wait_until("alice's DMs to be held", SCENARIO, || {
                        let h = get_json(&alice.url("/api/history?with=%40bob&limit=1000"), 200);
                        let dms =
                            h["messages"].as_array().unwrap().iter().filter(|m| {
                                m["text"].as_str().is_some_and(|t| t.starts_with("dm "))
                            });
                        dms.clone().count() == SENT && dms.into_iter().all(|m| m["state"] == "held")
                    });
                }
                "restart bob" => {
                    let port = bob.addr.port();
                    bob = Proc::peer("bob", tracker.addr, &bob_args);
                    assert_eq!(
                        bob.addr.port(),
                        port,
                        "bob takes his port back, so his page finds him"
                    );
                }
                other => panic!("the script asked for something unknown: {other}"),
            }
            script.answer(&format!("DONE {ask}"));
        }
        handled = asks.len();
        if let Some(status) = script.exited() {
            script.out.wait_ended(SOON);
            script.err.wait_ended(SOON);
            assert!(
                status.success() && script.out.count(|l| l == "PASS") == 1,
                "the browser scenario failed ({status}):\n{}",
                script.transcript()
            );
            break;
        }
        assert!(
            Instant::now() < end,
            "the browser scenario did not finish within {SCENARIO:?}:\n{}",
            script.transcript()
        );
        let seen = script.out.all().len();
        script.out.wait_more(seen, Duration::from_millis(200));
    }
    for shot in ["away-divider.png", "search.png"] {
        let meta = std::fs::metadata(shots.join(shot)).expect("the screenshot was saved");
        assert!(meta.len() > 10_000, "{shot} holds a real picture");
    }
}
