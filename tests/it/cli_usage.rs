//! The command line as docs/PROTOCOL.md ("Command line") fixes it: usage mistakes are one line and exit 2, runtime
//! failures one line and exit 1, every flag also read from `HCHAT_…`, and `--ip` falling back to 0.0.0.0 when it is
//! not on this host.

use crate::common;
use std::process::Stdio;

use common::*;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = hchat().args(args).stdin(Stdio::null()).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn usage_mistakes_are_one_line_saying_what_and_where_help_is_and_exit_2() {
    for (args, says) in [
        (
            &["peer", "--port", "x"][..],
            "invalid value 'x' for '--port",
        ),
        (&["peer"][..], "--name"),
        (&["peer", "--name", "a b"][..], "a name may use only"),
        (&["tracker", "--peer-ttl", "0"][..], "--peer-ttl"),
        (&["tracker", "--ip", "not-an-ip"][..], "--ip"),
        (&["chat"][..], "unrecognized subcommand 'chat'"),
    ] {
        let (code, stderr) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{args:?}: one line, got {stderr:?}"
        );
        assert!(
            stderr.contains(says) && stderr.contains("--help"),
            "{args:?}: {stderr}"
        );
    }
    let (code, stderr) = run(&["peer", "--help"]);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_runtime_failure_is_one_line_and_exit_1() {
    // A port nobody listens on: grab a free one and let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, stderr) = run(&["peer", "--name", "zed", "--tracker-port", &port.to_string()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.contains("cannot be reached"), "{stderr}");
    // A tracker key is base64url and may begin with '-': it is the flag's value, not another flag (one key in 64
    // did, and was refused as a usage mistake).
    let key = format!("-{}", "A".repeat(42));
    let (code, stderr) = run(&[
        "peer",
        "--name",
        "zed",
        "--in-memory",
        "--tracker-port",
        &port.to_string(),
        "--tracker-key",
        &key,
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot be reached"), "{stderr}");
}

#[test]
fn flags_are_read_from_the_environment_too() {
    let tracker = Proc::tracker(&[]);
    let mut cmd = hchat();
    cmd.arg("peer")
        .env("HCHAT_NAME", "envy")
        .env("HCHAT_PORT", "0")
        .env("HCHAT_TRACKER_PORT", tracker.addr.port().to_string())
        .env("HCHAT_JOIN", "general");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("envy to join #general", SOON, || {
        members(&tracker, "general") == ["envy"]
    });
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}

#[test]
fn an_ip_not_on_this_host_binds_every_interface_and_is_still_advertised() {
    // 192.0.2.1 is TEST-NET-1: never an address of this host. No traffic is sent to it.
    let tracker = Proc::tracker(&[]);
    let peer = Proc::peer("far", tracker.addr, &["--ip", "192.0.2.1"]);
    assert_eq!(
        peer.addr.ip().to_string(),
        "0.0.0.0",
        "bound to the wildcard address"
    );
    let warning = peer.err.wait_for("the fallback warning", SOON, |l| {
        l.contains("not an address of this host")
    });
    assert!(warning.contains("192.0.2.1"), "{warning}");
    let online = get_json(&tracker.url("/peers"), 200);
    assert_eq!(
        online["peers"][0]["ip"], "192.0.2.1",
        "the given address is still advertised: {online}"
    );
    // Reachable on loopback through the wildcard bind.
    let local = format!("http://127.0.0.1:{}/health", peer.addr.port());
    assert_eq!(get_json(&local, 200)["name"], "far");
    assert_eq!(
        peer.err
            .count(|l| l.contains("not an address of this host")),
        1,
        "one warning, not more"
    );

    let t2 = Proc::tracker(&["--ip", "192.0.2.1"]);
    assert_eq!(t2.addr.ip().to_string(), "0.0.0.0");
}

#[test]
fn a_data_dir_in_use_or_owned_by_another_name_is_one_line_and_exit_1() {
    let tracker = Proc::tracker(&[]);
    let dir = data_dir();
    let d = dir.path().to_str().unwrap();
    let mut alice = Proc::peer("alice", tracker.addr, &["--data-dir", d]);
    let port = tracker.addr.port().to_string();
    for (name, says) in [
        ("alice", "in use by another hchat process"),
        ("alice2", "holds alice's data"),
    ] {
        if name == "alice2" {
            alice.kill();
        }
        let out = hchat()
            .args([
                "peer",
                "--name",
                name,
                "--port",
                "0",
                "--tracker-port",
                &port,
            ])
            .args(["--data-dir", d])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
        assert!(stderr.contains(says), "{name}: {stderr}");
    }
}
