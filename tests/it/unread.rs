//! Unread counts kept by the node (issue 15): the local API and the CLI give the same counts, reading one
//! conversation (`POST /api/read`, or `/history` in the CLI) clears it for both, and a refused request says why.

use crate::common;

use common::*;
use serde_json::json;

fn unread(p: &Proc) -> serde_json::Value {
    get_json(&p.url("/api/unread"), 200)["unread"].clone()
}

#[test]
fn unread_counts_are_the_nodes_so_the_cli_and_the_api_agree_and_reading_clears_them() {
    let tracker = Proc::tracker(&[]);
    let alice = Proc::peer("alice", tracker.addr, &["--join", "general"]);
    let mut bob = Proc::peer("bob", tracker.addr, &["--join", "general"]);
    joined(&alice, "general");
    joined(&bob, "general");
    for (body, line) in [
        (json!({"to": "bob", "text": "one"}), "[@alice] alice: one"),
        (json!({"to": "bob", "text": "two"}), "[@alice] alice: two"),
        (
            json!({"channel": "general", "text": "all"}),
            "[#general] alice: all",
        ),
    ] {
        assert_eq!(post_json(&alice.url("/api/send"), &body).0, 200);
        bob.out.wait_line(line);
    }
    // bob's own message does not count.
    assert_eq!(
        post_json(&bob.url("/api/send"), &json!({"to": "alice", "text": "hi"})).0,
        200
    );
    assert_eq!(unread(&bob), json!({"#general": 1, "@alice": 2}));
    bob.type_line("/unread");
    bob.out.wait_line("* unread: #general 1, @alice 2");
    // The page reads a conversation: the node keeps it, for the next reload and for the CLI.
    let (status, answer) = post_json(&bob.url("/api/read"), &json!({"with": "@alice"}));
    assert_eq!((status, answer["with"].clone()), (200, json!("@alice")));
    assert_eq!(unread(&bob), json!({"#general": 1}));
    assert_eq!(unread(&bob), json!({"#general": 1}), "the same on a reload");
    // The CLI reads the other one.
    bob.type_line("/history #general");
    bob.out.wait_for("the history", SOON, |l| {
        l.ends_with("[#general] alice: all")
    });
    bob.type_line("/unread");
    bob.out.wait_line("* nothing unread");
    assert_eq!(unread(&bob), json!({}));
    // history entries say which messages are unread.
    assert_eq!(
        post_json(
            &alice.url("/api/send"),
            &json!({"to": "bob", "text": "three"})
        )
        .0,
        200
    );
    bob.out.wait_line("[@alice] alice: three");
    let h = get_json(&bob.url("/api/history?with=%40alice"), 200);
    let flags: Vec<_> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["text"].clone(), m["unread"].clone()))
        .collect();
    assert_eq!(
        flags,
        [
            (json!("one"), json!(null)),
            (json!("two"), json!(null)),
            (json!("hi"), json!(null)),
            (json!("three"), json!(true))
        ]
    );
    for bad in [
        json!({"with": "no spaces allowed"}),
        json!({"with": ""}),
        json!({}),
    ] {
        let (status, answer) = post_json(&bob.url("/api/read"), &bad);
        assert!(
            (400..500).contains(&status) && !code(&answer).is_empty(),
            "{bad} gave {status} {answer}"
        );
    }
}
