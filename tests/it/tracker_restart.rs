//! The tracker dies (SIGKILL) and a fresh one starts on the same port: the peers register and re-join on their own
//! and chat resumes with no user action.

use crate::common;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn peers_recover_from_a_tracker_restart_on_their_own() {
    let mut tracker = Proc::tracker(&["--peer-ttl", "3"]);
    let port = tracker.addr.port();
    let mut alice = Proc::peer("alice", tracker.addr, &["--join", "general"]);
    let mut bob = Proc::peer("bob", tracker.addr, &["--join", "general"]);
    for p in [&alice, &bob] {
        p.out.wait_for("the peer to join", SOON, |l| {
            l.starts_with("* joined #general")
        });
    }
    alice.type_line("before");
    bob.out.wait_line("[#general] alice: before");

    tracker.kill();
    let killed = Instant::now();
    // Messages keep flowing peer to peer while the tracker is away: that is the hybrid design.
    alice.type_line("during");
    bob.out.wait_line("[#general] alice: during");

    let fresh = Proc::tracker_on(port, &["--peer-ttl", "3"]);
    wait_until(
        "both peers to be back in #general",
        Duration::from_secs(10),
        || members(&fresh, "general") == ["alice", "bob"],
    );
    eprintln!(
        "peers back in #general {:?} after the tracker was killed",
        killed.elapsed()
    );

    // Chat resumes with no user action: both directions, channel and DM.
    bob.type_line("after");
    alice.out.wait_line("[#general] bob: after");
    alice.type_line("@bob still here");
    bob.out.wait_line("[@alice] alice: still here");
    // (A renewal that falls in the outage says "lost the tracker … cannot be reached": that is not a failed send.)
    assert_eq!(
        alice.out.count(|l| !l.starts_with("* lost the tracker")
            && (l.contains("cannot") || l.contains("not sent"))),
        0,
        "{:?}",
        alice.out.all()
    );
}
