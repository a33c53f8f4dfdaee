//! Issue 14: peers started with no tracker address find the tracker on the LAN by mDNS and chat (real processes on
//! the namespaced LAN); with several trackers a peer says which it took and how to choose; an announcement whose
//! fingerprint the tracker cannot prove is refused, never trusted.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::netlan::Lan;
use crate::common::*;
use hchat::identity::Identity;

/// The tracker's fingerprint as it prints it at start, without spaces (as the TXT record and the peer's line have
/// it).
fn fingerprint(tracker: &Proc) -> String {
    let line = tracker.out.wait_for("the tracker's key line", SOON, |l| {
        l.starts_with("tracker key ")
    });
    line.rsplit("fingerprint ").next().unwrap().replace(' ', "")
}

/// The line a peer printed about the tracker it found.
fn found_line(p: &Proc) -> String {
    p.out
        .wait_for("the peer's line about the tracker found", SOON, |l| {
            l.starts_with("* found ")
        })
}

/// Waits until `host` hears `n` announcements of the service (any, valid or not).
fn heard(host: &crate::common::netlan::Host, n: usize) {
    let names = host.within(move || {
        let daemon = mdns_sd::ServiceDaemon::new().expect("a browser");
        let events = daemon.browse(hchat::discovery::SERVICE_TYPE).unwrap();
        let mut names = std::collections::BTreeSet::new();
        let end = std::time::Instant::now() + Duration::from_secs(15);
        while names.len() < n {
            let left = end.saturating_duration_since(std::time::Instant::now());
            match events.recv_timeout(left) {
                Ok(mdns_sd::ServiceEvent::ServiceResolved(info)) => {
                    names.insert(info.get_fullname().to_string());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = daemon.shutdown();
        names
    });
    assert_eq!(names.len(), n, "heard {names:?}");
}

#[test]
fn peers_started_with_no_tracker_address_find_it_on_the_lan_and_chat() {
    let Some(lan) = Lan::new(3) else { return };
    let tracker = lan.host(0).tracker(&[]);
    let fp = fingerprint(&tracker);
    let mut alice = lan.host(1).peer("alice", None, &["--join", "general"]);
    let mut bob = lan.host(2).peer("bob", None, &["--join", "general"]);
    for p in [&alice, &bob] {
        let line = found_line(p);
        assert_eq!(
            line,
            format!(
                "* found tracker {} on the LAN (mDNS), fingerprint {fp}",
                tracker.addr
            )
        );
        joined(p, "general");
    }
    alice.type_line("@bob hi bob, found you without an address");
    bob.out.wait_for("alice's DM at bob", SOON, |l| {
        l == "[@alice] alice: hi bob, found you without an address"
    });
    bob.type_line("hello #general");
    alice
        .out
        .wait_for("bob's channel message at alice", SOON, |l| {
            l == "[#general] bob: hello #general"
        });
}

#[test]
fn with_two_trackers_a_peer_says_which_it_took_and_tracker_key_chooses_the_other() {
    let Some(lan) = Lan::new(3) else { return };
    let one = lan.host(0).tracker(&[]);
    let two = lan.host(1).tracker(&[]);
    let (fp1, fp2) = (fingerprint(&one), fingerprint(&two));
    // A LAN with two trackers: both announced (the peer's browsing rule is what is tested, not how fast they
    // start).
    heard(lan.host(2), 2);
    let carol = lan.host(2).peer("carol", None, &["--join", "general"]);
    let line = found_line(&carol);
    assert!(
        line.starts_with("* found 2 trackers on the LAN (mDNS); took "),
        "{line}"
    );
    assert!(
        line.contains("to choose another, pass --tracker-ip and --tracker-port, or --tracker-key"),
        "{line}"
    );
    // It names both: the one it took, and the other with what to pass.
    for (t, fp) in [(&one, &fp1), (&two, &fp2)] {
        assert!(
            line.contains(&format!("{} fingerprint {fp}", t.addr)),
            "{line}"
        );
    }
    joined(&carol, "general");

    // --tracker-key picks the other one, whichever was taken above.
    let taken_one = line.contains(&format!("took {} ", one.addr));
    let (other, other_fp) = if taken_one {
        (&two, &fp2)
    } else {
        (&one, &fp1)
    };
    let dave = lan.host(2).peer(
        "dave",
        None,
        &["--join", "general", "--tracker-key", other_fp],
    );
    let line = found_line(&dave);
    // With --tracker-key the peer stops browsing as soon as that tracker answers, so whether it heard the other
    // one too depends on timing: the line is either "found tracker X" or "found 2 trackers …; took X".
    assert!(
        line.contains(&format!("took {} ", other.addr))
            || line.starts_with(&format!("* found tracker {} ", other.addr)),
        "{line}"
    );
    joined(&dave, "general");

    // A --tracker-key no tracker on the LAN has: one line saying so, and exit 1 (no silent fallback).
    let nobody = Identity::ephemeral().public_key().to_string();
    let mut cmd = hchat();
    cmd.args([
        "peer",
        "--name",
        "erin",
        "--ip",
        &lan.host(2).ip().to_string(),
        "--in-memory",
        "--tracker-key",
        &nobody,
    ]);
    let out = output_within(lan.host(2).command(&cmd), Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("none of the 2 tracker(s) found on the LAN has fingerprint"),
        "{err}"
    );
}

#[test]
fn an_announcement_whose_fingerprint_the_tracker_cannot_prove_is_refused() {
    let Some(lan) = Lan::new(2) else { return };
    // A real tracker that does not announce itself, and a hostile host that announces it under a key it does
    // not hold (a "tracker" that would be trusted on the announcement's word).
    let tracker = lan.host(0).tracker(&["--no-mdns"]);
    let sessions: SocketAddr = tracker
        .out
        .wait_for("the tracker's sessions line", SOON, |l| {
            l.starts_with("sessions on ")
        })
        .trim_start_matches("sessions on ")
        .trim_end_matches("/udp")
        .parse()
        .unwrap();
    let claimed = Identity::ephemeral().public_key();
    let claimed_fp = hchat::discovery::fingerprint_hex(&claimed);
    let at = tracker.addr;
    let _spoof = lan.host(0).within(move || {
        hchat::discovery::announce(at, sessions.port(), &claimed).expect("the spoof announces")
    });
    let mut cmd = hchat();
    cmd.args([
        "peer",
        "--name",
        "alice",
        "--ip",
        &lan.host(1).ip().to_string(),
        "--in-memory",
    ]);
    let out = output_within(lan.host(1).command(&cmd), Duration::from_secs(30));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stdout.contains(&format!("fingerprint {claimed_fp}")),
        "it found the announcement: {stdout}"
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "tracker {at} announced fingerprint {claimed_fp} on the LAN (mDNS) but proved key"
        )) && stderr.contains("refused"),
        "{stderr}"
    );
    assert!(!stdout.contains("listening on"), "never started: {stdout}");
}

#[test]
fn no_mdns_and_a_given_address_never_browse() {
    let Some(lan) = Lan::new(2) else { return };
    let tracker = lan.host(0).tracker(&[]);
    // With the address given, the peer registers there at once and prints no discovery line.
    let alice = lan
        .host(1)
        .peer("alice", Some(tracker.addr), &["--join", "general"]);
    joined(&alice, "general");
    assert!(
        !alice.out.all().iter().any(|l| l.contains("(mDNS)")),
        "{:?}",
        alice.out.all()
    );
    // --no-mdns without an address: straight to 127.0.0.1:9001 (nothing there in this host), no browsing.
    let mut cmd = hchat();
    cmd.args([
        "peer",
        "--name",
        "bob",
        "--ip",
        &lan.host(1).ip().to_string(),
        "--in-memory",
        "--no-mdns",
    ]);
    let started = std::time::Instant::now();
    let out = output_within(lan.host(1).command(&cmd), Duration::from_secs(20));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("(mDNS)"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("127.0.0.1:9001"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < hchat::discovery::BROWSE_FOR,
        "gave up at once, without browsing: {:?}",
        started.elapsed()
    );
}

#[test]
fn announcements_that_break_the_rule_are_ignored() {
    let Some(lan) = Lan::new(2) else { return };
    let tracker = lan.host(0).tracker(&[]);
    let fp = fingerprint(&tracker);
    // A hostile host announces "trackers" that do not follow the TXT rule: another version, a fingerprint that is
    // not 32 hex digits, port 0, no HTTP port, a fingerprint in upper case.
    let ip = lan.host(0).ip();
    let _hostile = lan.host(0).within(move || {
        let daemon = mdns_sd::ServiceDaemon::new().expect("a second mDNS responder");
        let good_fp = "0123456789abcdef0123456789abcdef";
        let bad: [&[(&str, &str)]; 5] = [
            &[
                ("v", "2"),
                ("http", "9001"),
                ("quic", "9001"),
                ("fp", good_fp),
            ],
            &[
                ("v", "1"),
                ("http", "9001"),
                ("quic", "9001"),
                ("fp", "not-a-fingerprint"),
            ],
            &[("v", "1"), ("http", "0"), ("quic", "9001"), ("fp", good_fp)],
            &[("v", "1"), ("quic", "9001"), ("fp", good_fp)],
            &[
                ("v", "1"),
                ("http", "9001"),
                ("quic", "9001"),
                ("fp", "0123456789ABCDEF0123456789ABCDEF"),
            ],
        ];
        for (i, txt) in bad.iter().enumerate() {
            let info = mdns_sd::ServiceInfo::new(
                hchat::discovery::SERVICE_TYPE,
                &format!("not a tracker {i}"),
                "not-a-tracker.local.",
                ip.to_string().as_str(),
                9001,
                *txt,
            )
            .unwrap();
            daemon.register(info).unwrap();
        }
        daemon
    });
    // Wait until host 1 hears all five (and the tracker), so the peer below surely hears them too.
    heard(lan.host(1), 6);
    let alice = lan.host(1).peer("alice", None, &["--join", "general"]);
    assert_eq!(
        found_line(&alice),
        format!(
            "* found tracker {} on the LAN (mDNS), fingerprint {fp}",
            tracker.addr
        ),
        "only the real tracker counts"
    );
    joined(&alice, "general");
}

#[test]
fn with_no_tracker_on_the_lan_a_peer_says_so_and_tries_the_old_default() {
    let Some(lan) = Lan::new(1) else { return };
    let mut cmd = hchat();
    cmd.args([
        "peer",
        "--name",
        "alice",
        "--ip",
        &lan.host(0).ip().to_string(),
        "--in-memory",
    ]);
    let started = std::time::Instant::now();
    let out = output_within(lan.host(0).command(&cmd), Duration::from_secs(20));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stdout.contains(
            "* no tracker found on the LAN in 3 s (mDNS); trying 127.0.0.1:9001 (--tracker-ip gives one)"
        ),
        "{stdout}"
    );
    // Nothing listens there in this host: the contract's runtime failure, after the bounded browse.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("127.0.0.1:9001"), "{stderr}");
    assert!(
        started.elapsed() >= hchat::discovery::BROWSE_FOR,
        "{:?}",
        started.elapsed()
    );
}
