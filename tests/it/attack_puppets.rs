//! Puppets get nothing (issue 11, attack 5b). Any name can advertise any ip:port: 50 names, each registered with a
//! real key of its own from a few source addresses, advertise an unrelated HTTP service (which answers every
//! request with an empty 200) and join #general. Before receipts, 3 channel messages from alice became 154 POSTs
//! to that service, all counted `delivered`, and each send took 3 s.
//!
//! Now a delivery counts only on a receipt signed with the recipient's key, and an address that answers without
//! one is backed off for every name that advertises it: none of the puppets is counted delivered, the service gets
//! at most [`MAX_POSTS`] POSTs (one probe per address per back-off), bob still gets every message at once, and
//! alice's sends take about as long as before the puppets came.

use crate::common;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const PUPPETS: usize = 50;
/// Names registered from one source address (the tracker's quota is at least 10 an hour).
const PUPPETS_PER_ADDRESS: usize = 10;
/// What the service may get: the first push to its address is the only one until the address's back-off
/// (30 s, longer than this test) ends, whichever of the 50 names it was for.
const MAX_POSTS: usize = 1;

/// Requests an HTTP service got, by method.
#[derive(Default)]
struct Counts {
    posts: AtomicUsize,
    others: AtomicUsize,
}

/// A plain HTTP/1.1 service that is not hchat: every request gets an empty 200, on kept-alive connections.
fn unrelated_service() -> (std::net::SocketAddr, Arc<Counts>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let c = c.clone();
            std::thread::spawn(move || serve_connection(stream, &c));
        }
    });
    (addr, counts)
}

fn serve_connection(stream: std::net::TcpStream, counts: &Counts) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        match line.starts_with("POST ") {
            true => counts.posts.fetch_add(1, Ordering::SeqCst),
            false => counts.others.fetch_add(1, Ordering::SeqCst),
        };
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

/// A puppet: a real identity of its own, registered from `source` as living at `at`, a member of #general.
fn puppet(tracker: &Proc, name: &str, source: IpAddr, at: std::net::SocketAddr) -> Signer {
    let signer = Signer::new(name);
    let client = http_from(source);
    let r = client
        .post(tracker.url("/submit-info"))
        .json(&signer.registration(&at.ip().to_string(), at.port()))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    assert_eq!(status, 200, "{name} registers: {}", r.text().unwrap());
    let url = tracker.url("/add-list");
    let body = json!({"name": name, "channel": "general"}).to_string();
    let r = client
        .post(&url)
        .header("content-type", "application/json")
        .header("hchat-auth", signer.auth("POST", &url, body.as_bytes()))
        .body(body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    assert_eq!(status, 200, "{name} joins #general: {}", r.text().unwrap());
    signer
}

/// Alice sends `text` to #general; returns her report and how long the send took.
fn send(alice: &Proc, text: &str) -> (serde_json::Value, Duration) {
    let t0 = Instant::now();
    let (status, report) = post_json(
        &alice.url("/send-peer"),
        &json!({"channel": "general", "text": text}),
    );
    let took = t0.elapsed();
    assert_eq!(status, 200, "{report}");
    (report, took)
}

fn listed(report: &serde_json::Value, list: &str) -> Vec<String> {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| match p.as_str() {
            Some(name) => name.to_string(),
            None => p["peer"].as_str().unwrap().to_string(),
        })
        .collect()
}

#[test]
fn puppets_at_an_unrelated_address_get_nothing_and_slow_nobody() {
    let (service, counts) = unrelated_service();
    let tracker = Proc::tracker(&[]);
    let alice = Proc::peer("alice", tracker.addr, &["--join", "general"]);
    let bob = Proc::peer("bob", tracker.addr, &["--join", "general"]);
    wait_until("alice and bob in #general", SOON, || {
        members(&tracker, "general").len() == 2
    });

    let (report, before) = send(&alice, "before the puppets");
    assert_eq!(listed(&report, "delivered"), ["bob"], "{report}");
    bob.out.wait_line("[#general] alice: before the puppets");

    for i in 0..PUPPETS {
        let source = IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            0,
            11 + (i / PUPPETS_PER_ADDRESS) as u8,
        ));
        puppet(&tracker, &format!("puppet{i}"), source, service);
    }
    assert_eq!(members(&tracker, "general").len(), 2 + PUPPETS);

    let mut sends = Vec::new();
    for n in 1..=3 {
        let text = format!("message {n}");
        let t0 = Instant::now();
        let (report, took) = send(&alice, &text);
        let delivered = listed(&report, "delivered");
        assert_eq!(
            delivered,
            ["bob"],
            "only bob is counted delivered: {report}"
        );
        let accounted = ["delivered", "held", "queued", "failed"]
            .iter()
            .map(|l| listed(&report, l).len())
            .sum::<usize>();
        assert_eq!(
            accounted,
            1 + PUPPETS,
            "every recipient is in one list: {report}"
        );
        bob.out.wait_line(&format!("[#general] alice: {text}"));
        let bob_got = t0.elapsed();
        eprintln!(
            "send {n}: took {took:?} (before the puppets: {before:?}); bob had it after {bob_got:?}; held for {} \
             puppets, queued for {}",
            listed(&report, "held").len(),
            listed(&report, "queued").len()
        );
        sends.push((took, bob_got));
    }
    let posts = counts.posts.load(Ordering::SeqCst);
    eprintln!(
        "the unrelated service got {posts} POSTs and {} other requests",
        counts.others.load(Ordering::SeqCst)
    );
    assert!(
        posts <= MAX_POSTS,
        "{posts} POSTs reached the service (at most {MAX_POSTS})"
    );
    for (n, (took, bob_got)) in sends.iter().enumerate() {
        // Before receipts each send took 3 s (the report's wait); an honest member's delivery does not wait on
        // puppets.
        assert!(
            *took < before + Duration::from_secs(1),
            "send {} took {took:?}, {before:?} before the puppets",
            n + 1
        );
        assert!(
            *bob_got < Duration::from_secs(1),
            "bob got message {} after {bob_got:?}",
            n + 1
        );
    }
}
