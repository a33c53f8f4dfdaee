//! Joining a channel: a member who sees bob listed and writes to him that very moment is not refused. bob counts
//! himself in before the tracker lists him (it used to be after a commit to his disk, and a message that came
//! in between was refused `not_joined`, for good: attack_puppets' first send failed so under load).

use crate::common;

use std::time::Instant;

use common::*;
use serde_json::json;

const ROUNDS: usize = 20;

#[test]
fn a_message_sent_the_moment_bob_is_listed_in_a_channel_is_taken() {
    let tracker = Proc::tracker(&[]);
    let bob = Proc::peer("bob", tracker.addr, &[]);
    let alice = Signer::new("alice");
    alice.register(&tracker, 7001);
    for round in 0..ROUNDS {
        let channel = format!("room{round}");
        let (status, answer) = alice.post(
            &tracker.url("/add-list"),
            &json!({"name": "alice", "channel": channel}),
        );
        assert_eq!(status, 200, "{answer}");
        let joining = {
            let url = bob.url("/api/join");
            let body = json!({"channel": channel});
            std::thread::spawn(move || post_json(&url, &body))
        };
        // As fast as a member can: the moment the tracker lists bob, alice writes to him.
        let end = Instant::now() + SOON;
        while !members(&tracker, &channel).iter().any(|m| m == "bob") {
            assert!(Instant::now() < end, "bob listed in #{channel}");
        }
        let m = alice.message(json!({"channel": channel}), &format!("hello {round}"));
        let (status, answer) = post_json(&bob.url("/p2p/receive"), &m);
        assert_eq!(
            (status, answer["duplicate"].as_bool()),
            (200, Some(false)),
            "round {round}: {answer}"
        );
        let (status, answer) = joining.join().unwrap();
        assert_eq!(status, 200, "{answer}");
        bob.out
            .wait_line(&format!("[#{channel}] alice: hello {round}"));
    }
}
