//! No line typed ahead is lost in the terminal CLI (issue 15, rustyline #758): bob's CLI runs in a real
//! pseudo-terminal (util-linux `script`), and 20 lines arrive in one write right behind a command, as a fast typist
//! or a paste without bracketed-paste marks delivers them. Every one of the 20 is sent, in order.

use crate::common;
use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

const LINES: usize = 20;

#[test]
fn twenty_lines_typed_ahead_in_a_terminal_are_all_sent_in_order() {
    if Command::new("script").arg("--version").output().is_err() {
        panic!("this test needs util-linux's `script` (apt-get install util-linux)");
    }
    let tracker = Proc::tracker(&[]);
    let alice = Proc::peer("alice", tracker.addr, &["--join", "general"]);
    joined(&alice, "general");
    let dir = data_dir();
    let bob = format!(
        "{} peer --name bob --ip 127.0.0.1 --port 0 --tracker-ip 127.0.0.1 --tracker-port {} --join general --data-dir {}",
        env!("CARGO_BIN_EXE_hchat"),
        tracker.addr.port(),
        dir.path().display()
    );
    let mut cmd = Command::new("script");
    cmd.args(["-qfec", &bob, "/dev/null"])
        .env("TERM", "xterm")
        .env("XDG_DATA_HOME", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("script starts");
    let mut stdin = child.stdin.take().unwrap();
    let out = Lines::collect(child.stdout.take().unwrap(), "bob-tty:out");
    out.wait_for("bob to join #general", SOON, |l| {
        l.contains("joined #general")
    });
    wait_until("bob in #general at the tracker", SOON, || {
        members(&tracker, "general").contains(&"bob".to_string())
    });
    // A command, and right behind it, in the same write, 20 lines typed ahead.
    let mut typed = String::from("/peers\r");
    for i in 0..LINES {
        typed.push_str(&format!("typed ahead {i}\r"));
    }
    stdin.write_all(typed.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let want: Vec<String> = (0..LINES)
        .map(|i| format!("[#general] bob: typed ahead {i}"))
        .collect();
    let got = || {
        alice
            .out
            .all()
            .into_iter()
            .filter(|l| l.starts_with("[#general] bob: typed ahead"))
            .collect::<Vec<_>>()
    };
    wait_until("all 20 typed-ahead lines to reach alice", SOON, || {
        got().len() >= LINES
    });
    assert_eq!(got(), want, "every line, once, in the order typed");
    let _ = child.kill();
    let _ = child.wait();
}
