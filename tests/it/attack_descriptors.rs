//! Few file descriptors do not take a node down (issue 11, item 6). Under `ulimit -n 1024` a flood of
//! connections used to take the last descriptors: the node logged `accept failed` every 50 ms and lost its
//! tracker connection. Now a node raises its soft limit to the hard one at start, and when accepts fail all the
//! same it backs off and says so in one line, not one per failure, and serves again once descriptors are free.

use crate::common;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Duration;

use common::*;

/// A tracker started by `prlimit` with the given limits on open files.
fn tracker_limited(soft: u64, hard: u64) -> Proc {
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={soft}:{hard}"))
        .arg(env!("CARGO_BIN_EXE_hchat"))
        .args(["tracker", "--ip", "127.0.0.1", "--port", "0", "--in-memory"]);
    spawn_node("tracker", cmd)
}

fn hard_limit() -> u64 {
    open_files_limit(std::process::id()).1
}

#[test]
fn a_node_raises_its_soft_limit_on_open_files_to_the_hard_one() {
    let hard = hard_limit();
    if hard <= 1024 {
        eprintln!("the hard limit on open files is {hard}: nothing to raise");
        return;
    }
    let tracker = tracker_limited(1024, hard);
    assert_eq!(open_files_limit(tracker.pid()), (hard, hard));
}

#[test]
fn out_of_descriptors_the_node_backs_off_says_so_once_and_serves_again() {
    // Soft and hard alike: nothing to raise, so a flood does exhaust it.
    let tracker = tracker_limited(64, 64);
    let flood = connect_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), tracker.addr, 120).unwrap();
    tracker
        .err
        .wait_for("the accept failure", SOON, |l| l.contains("accept failed"));
    // Half a second of failing accepts: before, ten lines of `accept failed`.
    let still = tracker.err.find_within(Duration::from_millis(500), |l| {
        l.contains("accepting again")
    });
    assert!(still.is_none(), "{still:?}");
    let lines = tracker.err.count(|l| l.contains("accept failed"));
    assert_eq!(lines, 1, "{:#?}", tracker.err.all());
    drop(flood);
    tracker.err.wait_for("accepts working again", SOON, |l| {
        l.contains("accepting again")
    });
    let (status, body) = try_get_json(&tracker.url("/health")).expect("the tracker answers");
    assert_eq!(status, 200, "{body}");
    eprintln!("{:#?}", tracker.err.all());
}
