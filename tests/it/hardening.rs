//! One hostile client cannot take a node from everyone else. Real `hchat` processes; the hostile client comes
//! from 127.0.0.2 and the well-behaved ones from elsewhere (the whole 127.0.0.0/8 is this host on Linux, and the
//! nodes under attack listen on an address of their own, so that no client counts as "this host", which is never
//! limited). Each attack runs against the tracker and against a peer's `POST /p2p/receive`:
//! - 1,000 requests within one second are throttled with 429 `rate_limited` while another client's messages go
//!   through, promptly;
//! - 1,000 idle connections do not starve a real client, and are closed by the node;
//! - a client sending its request headers one byte a second is cut off long before it finishes.
//!
//! And the web page's files cannot be used to read anything else: every traversal gets 404.

use crate::common;
use std::io::{BufRead, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const BYSTANDER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
/// Where the tracker under attack listens (its clients on 127.0.0.1 are then not "this host").
const TRACKER_IP: &str = "127.0.0.4";
/// Where the peer under attack listens.
const VICTIM_IP: &str = "127.0.0.5";
/// The node's defaults these tests rely on (docs/PROTOCOL.md, Limits).
const RATE_LIMIT: usize = 200;
const CONNECTIONS_PER_CLIENT: usize = 256;
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

const FLOOD: usize = 1000;
const FLOOD_CONNECTIONS: usize = 10;

/// Raises this process's soft limit on open files to at least `want` (with `prlimit`, since the crate forbids
/// `unsafe` and has no libc binding); the hard limit must allow it.
fn raise_fd_limit(want: u64) {
    let soft_hard = || open_files_limit(std::process::id());
    let (soft, hard) = soft_hard();
    if soft >= want {
        return;
    }
    assert!(
        hard >= want,
        "this test opens {want} sockets; the hard limit on open files is {hard} (raise it: ulimit -Hn {want})"
    );
    let out = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--nofile={want}:{hard}"),
        ])
        .output()
        .expect("prlimit (util-linux) runs");
    assert!(
        out.status.success(),
        "prlimit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(soft_hard().0 >= want, "the soft limit is now {want}");
}

/// What the flood got back.
struct FloodResult {
    /// From the first request sent to the last.
    elapsed: Duration,
    throttled: usize,
    served: usize,
}

/// One answer read off a kept-alive connection: status, the `Retry-After` header if any, and the body.
fn read_answer(r: &mut impl BufRead) -> (u16, Option<String>, String) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {line:?}"));
    let (mut length, mut retry_after) = (0, None);
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap(),
            "retry-after" => retry_after = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).unwrap();
    (status, retry_after, String::from_utf8(body).unwrap())
}

/// Sends `FLOOD` requests from `ATTACKER` to `addr`, paced evenly over one second on `FLOOD_CONNECTIONS`
/// kept-alive connections. They are pipelined (written on time, answers read by another thread), so the pace is
/// the attacker's and not the answers'. Every 429 is checked to be the documented JSON error with `Retry-After`.
fn flood(addr: SocketAddr, request: impl Fn() -> String + Sync) -> FloodResult {
    let per_connection = FLOOD / FLOOD_CONNECTIONS;
    let gap = Duration::from_secs(1) / per_connection as u32;
    let start = Barrier::new(FLOOD_CONNECTIONS);
    let started = Instant::now();
    let counts: Vec<(usize, usize, Duration)> = std::thread::scope(|s| {
        let connections: Vec<_> = (0..FLOOD_CONNECTIONS)
            .map(|_| {
                let (request, start) = (&request, &start);
                let mut socket = connect_from(ATTACKER, addr, 1).unwrap().pop().unwrap();
                socket.set_read_timeout(Some(SOON)).unwrap();
                let reader = std::io::BufReader::new(socket.try_clone().unwrap());
                let answers = s.spawn(move || {
                    let mut reader = reader;
                    let (mut throttled, mut served) = (0, 0);
                    for _ in 0..per_connection {
                        let (status, retry_after, body) = read_answer(&mut reader);
                        if status == 429 {
                            let retry: u64 =
                                retry_after.expect("Retry-After on a 429").parse().unwrap();
                            assert!((1..=2).contains(&retry), "Retry-After {retry}");
                            let body: serde_json::Value = serde_json::from_str(&body).unwrap();
                            assert_eq!(body["error"]["code"], "rate_limited", "{body}");
                            throttled += 1;
                        } else {
                            served += 1;
                        }
                    }
                    (throttled, served)
                });
                let sending = s.spawn(move || {
                    start.wait();
                    let t0 = Instant::now();
                    let mut last_sent = Duration::ZERO;
                    for i in 0..per_connection {
                        let due = t0 + gap * i as u32;
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait); // pacing the attack, not waiting for a condition
                        }
                        last_sent = started.elapsed();
                        socket.write_all(request().as_bytes()).unwrap();
                    }
                    last_sent
                });
                (answers, sending)
            })
            .collect();
        connections
            .into_iter()
            .map(|(answers, sending)| {
                let last_sent = sending.join().unwrap();
                let (throttled, served) = answers.join().unwrap();
                (throttled, served, last_sent)
            })
            .collect()
    });
    let elapsed = counts.iter().map(|c| c.2).max().unwrap();
    let (throttled, served) = counts
        .iter()
        .fold((0, 0), |(t, s), (a, b, _)| (t + a, s + b));
    FloodResult {
        elapsed,
        throttled,
        served,
    }
}

/// A raw HTTP/1.1 request with a JSON body (or none).
fn raw_request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> String {
    let body = body.unwrap_or("");
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn assert_throttled(what: &str, r: &FloodResult) {
    eprintln!(
        "{what}: {FLOOD} requests sent within {:?}: {} throttled with 429, {} served",
        r.elapsed, r.throttled, r.served
    );
    assert_eq!(r.throttled + r.served, FLOOD);
    // A bucket of RATE_LIMIT tokens, refilled at RATE_LIMIT a second: at most that much gets through.
    let allowed = RATE_LIMIT as f64 * (1.0 + r.elapsed.as_secs_f64());
    assert!(
        (r.served as f64) <= allowed + 10.0,
        "{what}: {} served, more than the {allowed:.0} the limit allows",
        r.served
    );
    assert!(
        r.throttled > FLOOD / 2,
        "{what}: most of the flood is throttled ({} of {FLOOD}, sent in {:?})",
        r.throttled,
        r.elapsed
    );
}

/// The node said once in its log that it throttles the attacker: the first refusal of a flood, not each one.
fn assert_logged_once(node: &Proc) {
    let attacker = ATTACKER.to_string();
    let throttling = |l: &str| l.contains("refusing with 429") && l.contains(&attacker);
    node.err
        .wait_for("a warning about the flood", SOON, throttling);
    assert_eq!(node.err.count(throttling), 1, "{:?}", node.err.all());
}

/// The slowest of `latencies`, and their median.
fn worst_and_median(mut latencies: Vec<Duration>) -> (Duration, Duration) {
    latencies.sort();
    (*latencies.last().unwrap(), latencies[latencies.len() / 2])
}

/// Sends through `peer`'s local API and returns how long it took; the message must reach `to` at once.
fn send_delivered(peer: &Proc, body: serde_json::Value, to: &str) -> Duration {
    let t = Instant::now();
    let (status, report) = post_json(&peer.url("/api/send"), &body);
    let took = t.elapsed();
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["delivered"], json!([to]), "{report}");
    took
}

#[test]
fn a_flood_at_the_tracker_is_throttled_while_peers_chat_through_it() {
    let tracker = Proc::tracker(&["--ip", TRACKER_IP]);
    let mut alice = Proc::peer("alice", tracker.addr, &["--join", "general"]);
    let bob = Proc::peer("bob", tracker.addr, &["--join", "general"]);
    joined(&alice, "general");
    joined(&bob, "general");
    let get_list = tracker.url("/get-list?channel=general");

    // During the flood: alice talks in #general (each message asks the tracker who is in it), and a third host
    // checks the tracker's health.
    let (result, sends, bystander) = std::thread::scope(|s| {
        let flooding = s.spawn(|| {
            flood(tracker.addr, || {
                raw_request(tracker.addr, "GET", "/get-list?channel=general", None)
            })
        });
        let talking = s.spawn(|| {
            (0..20)
                .map(|i| {
                    let body =
                        json!({"channel": "general", "text": format!("during the flood {i}")});
                    send_delivered(&alice, body, "bob")
                })
                .collect::<Vec<_>>()
        });
        let checking = s.spawn(|| {
            let client = http_from(BYSTANDER);
            (0..20)
                .map(|_| {
                    let t = Instant::now();
                    let r = client.get(tracker.url("/health")).send().unwrap();
                    assert_eq!(r.status().as_u16(), 200);
                    t.elapsed()
                })
                .collect::<Vec<_>>()
        });
        (
            flooding.join().unwrap(),
            talking.join().unwrap(),
            checking.join().unwrap(),
        )
    });
    assert_throttled("tracker", &result);
    assert_logged_once(&tracker);
    let (worst, median) = worst_and_median(sends);
    eprintln!("alice's 20 channel messages meanwhile: median {median:?}, worst {worst:?}");
    assert!(
        worst < Duration::from_secs(2),
        "alice was held up: {worst:?}"
    );
    let (worst, median) = worst_and_median(bystander);
    eprintln!("a third host's 20 health checks meanwhile: median {median:?}, worst {worst:?}");
    assert!(
        worst < Duration::from_secs(1),
        "the bystander was held up: {worst:?}"
    );
    for i in 0..20 {
        bob.out
            .wait_line(&format!("[#general] alice: during the flood {i}"));
    }
    // The attacker is served again once it calms down: the limit is a rate, not a ban.
    wait_until("the attacker's bucket to refill", SOON, || {
        http_from(ATTACKER)
            .get(&get_list)
            .send()
            .is_ok_and(|r| r.status().as_u16() == 200)
    });
    alice.type_line("/quit");
    assert!(alice.wait_exit(SOON).success());
}

#[test]
fn a_flood_at_a_peer_is_throttled_while_another_peer_still_reaches_it() {
    let tracker = Proc::tracker(&[]);
    let alice = Proc::peer("alice", tracker.addr, &[]);
    let bob = Proc::peer("bob", tracker.addr, &["--ip", VICTIM_IP]);

    let (result, sends) = std::thread::scope(|s| {
        let flooding = s.spawn(|| {
            flood(bob.addr, || {
                // Junk bob refuses at once (it is not for him): a flood is cheap to send, and what the limit lets
                // through should be cheap to refuse too, so the pace is the attacker's.
                let msg = json!({"id": uuid::Uuid::now_v7(), "from": "mallory", "to": "carol",
                                 "text": "flood", "ts": 1});
                raw_request(bob.addr, "POST", "/p2p/receive", Some(&msg.to_string()))
            })
        });
        let talking = s.spawn(|| {
            (0..20)
                .map(|i| {
                    let body = json!({"to": "bob", "text": format!("through the flood {i}")});
                    send_delivered(&alice, body, "bob")
                })
                .collect::<Vec<_>>()
        });
        (flooding.join().unwrap(), talking.join().unwrap())
    });
    assert_throttled("peer /p2p/receive", &result);
    assert_logged_once(&bob);
    let (worst, median) = worst_and_median(sends);
    eprintln!("alice's 20 DMs to bob meanwhile: median {median:?}, worst {worst:?}");
    assert!(
        worst < Duration::from_secs(2),
        "alice was held up: {worst:?}"
    );
    for i in 0..20 {
        bob.out
            .wait_line(&format!("[@alice] alice: through the flood {i}"));
    }
}

/// Opens 1,000 idle connections from the attacker to `addr`: the node keeps its per-client share open and
/// answers the rest 429 `too_many_connections` at once; `real` (a real client's request) is still served within
/// a second; the share is closed by the node after its idle timeout. Returns the time `real` took.
fn idle_connections_do_not_starve(addr: SocketAddr, real: impl FnOnce() -> Duration) -> Duration {
    raise_fd_limit(4096);
    let opened = Instant::now();
    let mut held = connect_from(ATTACKER, addr, FLOOD).expect("1,000 connections open");
    let took = real();
    // Those over the cap are sent the refusal and closed as soon as they are accepted.
    let mut refused = Vec::new();
    wait_until("the connections over the cap to be refused", SOON, || {
        held.retain_mut(|s| {
            s.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 512];
            match s.read(&mut buf) {
                Ok(n) => {
                    refused.push(String::from_utf8_lossy(&buf[..n]).to_string());
                    false
                }
                Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
            }
        });
        refused.len() >= FLOOD - CONNECTIONS_PER_CLIENT
    });
    let still_held = held;
    eprintln!(
        "{} of {FLOOD} idle connections kept, {} refused; the real client took {took:?}",
        still_held.len(),
        refused.len()
    );
    assert_eq!(
        still_held.len(),
        CONNECTIONS_PER_CLIENT,
        "the per-client share is kept"
    );
    assert_eq!(refused.len(), FLOOD - CONNECTIONS_PER_CLIENT);
    for r in &refused {
        assert!(
            r.starts_with("HTTP/1.1 429") && r.contains(r#""code":"too_many_connections""#),
            "{r}"
        );
    }
    // The kept ones are closed by the node once idle for its timeout.
    for mut s in still_held {
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(IDLE_TIMEOUT + Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("an idle connection was not closed: {other:?}"),
        }
    }
    let closed_after = opened.elapsed();
    eprintln!(
        "every kept idle connection closed by the node {closed_after:?} after the first was opened"
    );
    assert!(closed_after >= IDLE_TIMEOUT - Duration::from_secs(1));
    took
}

#[test]
fn a_thousand_idle_connections_do_not_starve_a_tracker() {
    let tracker = Proc::tracker(&["--ip", TRACKER_IP]);
    let took = idle_connections_do_not_starve(tracker.addr, || {
        let t = Instant::now();
        let r = http_from(BYSTANDER)
            .get(tracker.url("/channels"))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        t.elapsed()
    });
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn a_thousand_idle_connections_do_not_starve_a_peer() {
    let tracker = Proc::tracker(&[]);
    let alice = Proc::peer("alice", tracker.addr, &[]);
    let bob = Proc::peer("bob", tracker.addr, &["--ip", VICTIM_IP]);
    let took = idle_connections_do_not_starve(bob.addr, || {
        send_delivered(
            &alice,
            json!({"to": "bob", "text": "beside the idle ones"}),
            "bob",
        )
    });
    assert!(took < Duration::from_secs(1), "{took:?}");
    bob.out.wait_line("[@alice] alice: beside the idle ones");
}

/// Dribbles `request` to `addr` one byte a second from the attacker; returns how long until the node cut it off
/// and how many bytes it had sent by then.
fn dribble(addr: SocketAddr, request: &str) -> (Duration, usize) {
    let mut s = connect_from(ATTACKER, addr, 1).unwrap().pop().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let started = Instant::now();
    for (sent, b) in request.bytes().enumerate() {
        if s.write_all(&[b]).is_err() {
            return (started.elapsed(), sent);
        }
        // Waiting a second for an answer is the dribbling pace; anything read (or a close) ends it.
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(_) => return (started.elapsed(), sent + 1),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (started.elapsed(), sent + 1),
        }
    }
    panic!(
        "the node let a client take {:?} to send {} bytes of headers",
        started.elapsed(),
        request.len()
    );
}

fn assert_cut_off(what: &str, request: &str, (after, sent): (Duration, usize)) {
    eprintln!(
        "{what}: cut off after {after:?}, {sent} of {} bytes sent",
        request.len()
    );
    assert!(
        after < IDLE_TIMEOUT + Duration::from_secs(3),
        "{what}: cut at the 10 s deadline, not after {after:?}"
    );
    assert!(sent < request.len() / 3, "{what}: long before it finished");
}

/// Runs the dribblers against `addr` while `serve_check` shows others are still served.
fn dribblers_are_cut_off(node: &str, addr: SocketAddr, path: &str, serve_check: impl Fn()) {
    let body = r#"{"id":"0193a0b0-0000-7000-8000-000000000000","from":"mallory","to":"bob","text":"hi","ts":1}"#;
    let http1 = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // The HTTP/2 preface, which the server reads before its HTTP/1 header deadline applies.
    let http2 = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".repeat(4);
    std::thread::scope(|s| {
        let one = s.spawn(|| dribble(addr, &http1));
        let two = s.spawn(|| dribble(addr, &http2));
        while !(one.is_finished() && two.is_finished()) {
            serve_check();
            std::thread::sleep(Duration::from_millis(500)); // the pace of the checks, not a synchronisation
        }
        assert_cut_off(
            &format!("{node}: HTTP/1.1 headers"),
            &http1,
            one.join().unwrap(),
        );
        assert_cut_off(
            &format!("{node}: HTTP/2 preface"),
            &http2,
            two.join().unwrap(),
        );
    });
}

#[test]
fn a_client_sending_its_headers_a_byte_a_second_is_cut_off_by_the_tracker() {
    let tracker = Proc::tracker(&["--ip", TRACKER_IP]);
    let client = http_from(BYSTANDER);
    dribblers_are_cut_off("tracker", tracker.addr, "/submit-info", || {
        let t = Instant::now();
        let r = client.get(tracker.url("/health")).send().unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    });
}

#[test]
fn a_client_sending_its_headers_a_byte_a_second_is_cut_off_by_a_peer() {
    let tracker = Proc::tracker(&[]);
    let alice = Proc::peer("alice", tracker.addr, &[]);
    let bob = Proc::peer("bob", tracker.addr, &["--ip", VICTIM_IP]);
    let sent = std::cell::Cell::new(0);
    dribblers_are_cut_off("peer", bob.addr, "/p2p/receive", || {
        let i = sent.get();
        let took = send_delivered(
            &alice,
            json!({"to": "bob", "text": format!("meanwhile {i}")}),
            "bob",
        );
        assert!(took < Duration::from_secs(1), "{took:?}");
        sent.set(i + 1);
    });
    for i in 0..sent.get() {
        bob.out.wait_line(&format!("[@alice] alice: meanwhile {i}"));
    }
}

/// A raw request (no client library would send these paths as written) and the status and body of the answer.
fn raw_get(addr: SocketAddr, target: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(SOON)).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

#[test]
fn the_page_files_cannot_be_used_to_read_anything_else() {
    let tracker = Proc::tracker(&[]);
    let peer = Proc::peer("alice", tracker.addr, &[]);
    let (status, page) = raw_get(peer.addr, "/chat/app.js");
    assert_eq!(status, 200, "{page}");
    let traversals = [
        "/chat/../Cargo.toml",
        "/chat/../../../../etc/passwd",
        "/chat/app.js/../../src/main.rs",
        "/chat/..%2f..%2fCargo.toml",
        "/chat/%2e%2e/%2e%2e/Cargo.toml",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/chat/%252e%252e/Cargo.toml",
        "/chat/..\\..\\Cargo.toml",
        "/chat/app.js%00.html",
        "/chat//etc/passwd",
        "//etc/passwd",
        "/chat/assets/chat.js",
        "/src/web/assets/chat.js",
        "/chat/app.css/..",
        "/chat/./app.js/.",
    ];
    for t in traversals {
        let (status, answer) = raw_get(peer.addr, t);
        assert_eq!(status, 404, "GET {t}: {answer}");
        assert!(
            answer.contains(r#""code":"no_such_endpoint""#),
            "GET {t}: {answer}"
        );
        for secret in ["[package]", "root:", "fn main", "addEventListener"] {
            assert!(!answer.contains(secret), "GET {t} leaked a file: {answer}");
        }
    }
}

#[test]
fn a_peer_bursting_past_the_trackers_limit_is_slowed_down_not_failed() {
    // A tracker allowing 10 requests a second; alice (on 127.0.0.1, another host to it) joins 30 channels at once.
    let tracker = Proc::tracker(&["--ip", TRACKER_IP, "--rate-limit", "10"]);
    let alice = Proc::peer("alice", tracker.addr, &[]);
    let started = Instant::now();
    for i in 0..30 {
        let (status, answer) = post_json(
            &alice.url("/api/join"),
            &json!({"channel": format!("room{i}")}),
        );
        assert_eq!(status, 200, "join {i}: {answer}");
    }
    let took = started.elapsed();
    eprintln!("30 joins against a limit of 10/s took {took:?}");
    assert!(
        took >= Duration::from_secs(1),
        "the tracker's 429s were waited out ({took:?})"
    );
    // Asked from another address: alice's bucket at the tracker (127.0.0.1's) may be empty right after her burst, and
    // her node's background requests draw on it too.
    let url = tracker.url("/channels");
    let r = http_from(BYSTANDER).get(&url).send().unwrap();
    let (status, channels) = status_and_json("GET", &url, r);
    assert_eq!(status, 200, "GET /channels: {channels}");
    assert_eq!(channels["channels"].as_array().unwrap().len(), 30);
}

#[test]
fn rate_limit_zero_turns_the_limit_off() {
    let tracker = Proc::tracker(&["--ip", TRACKER_IP, "--rate-limit", "0"]);
    let result = flood(tracker.addr, || {
        raw_request(tracker.addr, "GET", "/health", None)
    });
    eprintln!(
        "--rate-limit 0: {FLOOD} requests within {:?}, {} throttled",
        result.elapsed, result.throttled
    );
    assert_eq!((result.throttled, result.served), (0, FLOOD));
}
