//! A slow or idle client cannot hold a node: headers dribbled a byte at a time are cut off at the header
//! deadline, and idle connections do not keep a real client from being served.

use crate::common;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_client_dribbling_its_headers_is_cut_off_while_others_are_served() {
    let tracker = Proc::tracker(&[]);
    let addr = tracker.addr;
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(400)))
            .unwrap();
        let started = Instant::now();
        let request = format!(
            "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: {}\r\n\r\n",
            "a".repeat(200)
        );
        for b in request.bytes() {
            if s.write_all(&[b]).is_err() {
                return started.elapsed();
            }
            let mut buf = [0u8; 64];
            match s.read(&mut buf) {
                // Closed, reset, or answered before the headers were complete: the server ended it.
                Ok(_) => return started.elapsed(),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return started.elapsed(),
            }
            if started.elapsed() > Duration::from_secs(30) {
                break;
            }
        }
        panic!("the slow client was never cut off");
    });
    // Meanwhile a normal client is served at once, repeatedly.
    for _ in 0..20 {
        assert_eq!(get_json(&tracker.url("/health"), 200)["ok"], true);
    }
    let cut_after = slow.join().unwrap();
    eprintln!("slow-header client cut off after {cut_after:?}");
    assert!(
        cut_after < Duration::from_secs(15),
        "cut off at the 10 s header deadline, not {cut_after:?}"
    );
}

#[test]
fn idle_connections_do_not_starve_a_real_client() {
    let tracker = Proc::tracker(&[]);
    let idle: Vec<TcpStream> = (0..500)
        .map(|_| TcpStream::connect(tracker.addr).unwrap())
        .collect();
    let started = Instant::now();
    assert_eq!(get_json(&tracker.url("/health"), 200)["ok"], true);
    eprintln!(
        "served beside 500 idle connections in {:?}",
        started.elapsed()
    );
    drop(idle);
}
