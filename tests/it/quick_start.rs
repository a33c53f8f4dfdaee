//! The quick start, as a user does it: a tracker, alice and bob; both type `#general`; alice types
//! `Hello!`; bob sees `[#general] alice: Hello!`.

use crate::common;
use common::*;

#[test]
fn alice_says_hello_in_general_and_bob_sees_it() {
    let tracker = Proc::tracker(&[]);
    let mut alice = Proc::peer("alice", tracker.addr, &[]);
    let mut bob = Proc::peer("bob", tracker.addr, &[]);
    alice.type_line("#general");
    bob.type_line("#general");
    alice.out.wait_for("alice to join", SOON, |l| {
        l.starts_with("* joined #general")
    });
    bob.out
        .wait_for("bob to join", SOON, |l| l.starts_with("* joined #general"));

    let sent = std::time::Instant::now();
    alice.type_line("Hello!");
    bob.out.wait_line("[#general] alice: Hello!");
    eprintln!("alice's Enter to bob's line: {:?}", sent.elapsed());

    assert_eq!(
        alice.out.count(|l| l.contains("Hello!")),
        0,
        "the sender's own line is not echoed back"
    );
    alice.type_line("/quit");
    bob.type_line("/quit");
    assert!(alice.wait_exit(SOON).success());
    assert!(bob.wait_exit(SOON).success());
}
