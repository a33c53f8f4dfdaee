//! What users expect of a chat client after a crash (issue 15): bob's node is SIGKILLed, alice goes on talking
//! to him and in #general, bob starts again on the same data dir, and his CLI shows every message he missed where
//! it belongs, under a marker, each exactly once and in alice's order: not a count and a pointer to `/history`.

use crate::common;
use std::time::Duration;

use common::*;
use serde_json::json;

/// Messages of each kind alice sends while bob is dead.
const SENT: usize = 200;
/// Long enough for 400 messages to be drained and caught up on 2 busy cores.
const SHOWN_WITHIN: Duration = Duration::from_secs(45);

fn send_numbered(url: String, dest: serde_json::Value, prefix: &'static str) {
    let client = http();
    for i in 0..SENT {
        let mut body = dest.clone();
        body["text"] = json!(format!("{prefix} {i}"));
        let r = client.post(&url).json(&body).send().unwrap();
        assert_eq!(r.status().as_u16(), 200, "send {prefix} {i}");
    }
}

/// The indexes of bob's output lines that are exactly `[{conv}] alice: {prefix} i`, and the `i`s in printed order.
fn printed(lines: &[String], conv: &str, prefix: &str) -> (Vec<usize>, Vec<usize>) {
    let head = format!("[{conv}] alice: {prefix} ");
    lines
        .iter()
        .enumerate()
        .filter_map(|(at, l)| Some((at, l.strip_prefix(&head)?.parse::<usize>().ok()?)))
        .unzip()
}

#[test]
fn after_a_crash_the_cli_shows_every_missed_message_once_in_order_under_a_marker() {
    let tracker = Proc::tracker(&["--peer-ttl", "2"]);
    let bob_dir = data_dir();
    let bob_args = in_general_on(&bob_dir);
    let mut alice = Proc::peer("alice", tracker.addr, &["--join", "general"]);
    let mut bob = Proc::peer("bob", tracker.addr, &bob_args);
    joined(&alice, "general");
    joined(&bob, "general");
    alice.type_line("before");
    bob.out.wait_line("[#general] alice: before");

    bob.kill();
    let senders: Vec<_> = [
        (json!({"to": "bob"}), "dm"),
        (json!({"channel": "general"}), "ch"),
    ]
    .into_iter()
    .map(|(dest, prefix)| {
        let url = alice.url("/api/send");
        std::thread::spawn(move || send_numbered(url, dest, prefix))
    })
    .collect();
    senders
        .into_iter()
        .for_each(|s| s.join().expect("every send is accepted"));
    // alice's node has handed every DM to the tracker: none waits in her outbox, to be pushed later.
    wait_until("every DM to be held by the tracker", SHOWN_WITHIN, || {
        let h = get_json(&alice.url("/api/history?with=%40bob&limit=300"), 200);
        let states: Vec<_> = h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["state"].clone())
            .collect();
        states.len() == SENT && states.iter().all(|s| s == "held")
    });
    let bob = Proc::peer("bob", tracker.addr, &bob_args);
    let all_printed = || {
        let lines = bob.out.all();
        printed(&lines, "@alice", "dm").1.len() >= SENT
            && printed(&lines, "#general", "ch").1.len() >= SENT
    };
    wait_until(
        "bob's CLI to print all 400 messages",
        SHOWN_WITHIN,
        all_printed,
    );
    // A message said now is shown live, after everything bob missed (and after anything printed twice).
    alice.type_line("@bob welcome back");
    bob.out.wait_line("[@alice] alice: welcome back");
    let lines = bob.out.all();
    for (conv, prefix) in [("@alice", "dm"), ("#general", "ch")] {
        let (at, order) = printed(&lines, conv, prefix);
        assert_eq!(
            order,
            (0..SENT).collect::<Vec<_>>(),
            "each of {conv}'s messages exactly once, in alice's order"
        );
        let marker = format!("* --- {SENT} messages in {conv} while you were away ---");
        let marked = lines.iter().position(|l| *l == marker);
        assert!(
            marked.is_some_and(|m| m < at[0]),
            "{marker:?} comes before them:\n{}",
            lines.join("\n")
        );
        assert!(
            at.windows(2).all(|w| w[1] == w[0] + 1),
            "{conv}'s messages are printed together, right under the marker"
        );
    }
    alice.type_line("/quit");
    assert!(alice.wait_exit(SOON).success());
}
