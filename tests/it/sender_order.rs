//! A sender's order survives a refusal for now: when the receiver cannot take a message yet (here it cannot ask
//! the tracker who may post in a channel), the messages sent after it wait behind it instead of being stored, and
//! shown, first (docs/SESSIONS.md, 4: a refusal for now halts the stream; the outbox's pipeline is bound to it).

use crate::common;
use std::time::Duration;

use common::*;

#[test]
fn a_message_refused_for_now_is_not_overtaken_by_the_ones_sent_after_it() {
    let tracker_dir = data_dir();
    let tracker_args = [
        "--peer-ttl",
        "3",
        "--data-dir",
        tracker_dir.path().to_str().unwrap(),
    ];
    let mut tracker = Proc::tracker(&tracker_args);
    let port = tracker.addr.port();
    let mut alice = Proc::peer("alice", tracker.addr, &["--join", "general"]);
    let mut bob = Proc::peer("bob", tracker.addr, &["--join", "general"]);
    joined(&alice, "general");
    joined(&bob, "general");
    // alice learns whom #general's messages go to (kept for while the tracker is away), and proves her session
    // to bob.
    alice.type_line("before");
    bob.out.wait_line("[#general] alice: before");
    // bob joins again: he forgets who may post in #general, and must ask the tracker at the next message there.
    bob.type_line("#general");
    bob.out.wait_for("bob's second join", SOON, |l| {
        l.starts_with("* joined #general (2 online); you are now talking")
    });

    tracker.kill();
    alice.type_line("first");
    alice.type_line("@bob second");
    // bob cannot check alice's right to post without the tracker: "first" is refused for now and waits in her
    // outbox. "second" came after it on the same stream, so it must not be stored (and shown) before it.
    alice
        .out
        .wait_for("alice to hear that first waits", SOON, |l| {
            l.contains("bob cannot be reached now")
        });

    let _tracker = Proc::tracker_on(port, &tracker_args);
    let shown = |text: &str| bob.out.all().iter().position(|l| l.ends_with(text));
    wait_until("bob to have both messages", Duration::from_secs(30), || {
        shown("alice: first").is_some() && shown("alice: second").is_some()
    });
    assert!(
        shown("alice: first") < shown("alice: second"),
        "bob was shown alice's second message before her first: {:?}",
        bob.out.all()
    );
}
