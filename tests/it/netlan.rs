//! The namespaced test LAN itself (`common::netlan`): each verb does what the tests that build on it rely on —
//! hosts reach each other over IPv4, IPv6 and link-local, a node started in a host listens there, a cut cuts both
//! ways and nothing else, loss drops about what was asked, and a changed address moves the host.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use crate::common::joined;
use crate::common::netlan::{Host, Lan};

/// Whether a datagram sent from `src` (a socket in one host) to `to` arrives at `dst` (a socket in another).
fn arrives(src: &UdpSocket, dst: &UdpSocket, to: SocketAddr) -> bool {
    dst.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    if src.send_to(b"ping", to).is_err() {
        // A cut (an nftables drop on output) refuses at once.
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(dst.recv_from(&mut buf), Ok((4, _)))
}

/// Whether host `a` reaches host `b` over IPv4 (a UDP datagram, with fresh sockets).
fn reaches_v4(a: &Host, b: &Host) -> bool {
    let src = a.udp(IpAddr::V4(a.ip()));
    let dst = b.udp(IpAddr::V4(b.ip()));
    let to = dst.local_addr().unwrap();
    arrives(&src, &dst, to)
}

fn reaches_v6(a: &Host, b: &Host) -> bool {
    let src = a.udp(IpAddr::V6(a.ip6()));
    let dst = b.udp(IpAddr::V6(b.ip6()));
    let to = dst.local_addr().unwrap();
    arrives(&src, &dst, to)
}

fn reaches_link_local(a: &Host, b: &Host) -> bool {
    let src = a.within({
        let at = a.scoped(a.link_local(), 0);
        move || UdpSocket::bind(at).expect("bind a link-local address with its scope")
    });
    let dst = b.within({
        let at = b.scoped(b.link_local(), 0);
        move || UdpSocket::bind(at).expect("bind a link-local address with its scope")
    });
    let to = a.scoped(b.link_local(), dst.local_addr().unwrap().port());
    arrives(&src, &dst, to)
}

#[test]
fn every_host_reaches_every_other_over_ipv4_ipv6_and_link_local() {
    let Some(lan) = Lan::new(3) else { return };
    for (a, b) in [(0, 1), (1, 2), (2, 0)] {
        let (a, b) = (lan.host(a), lan.host(b));
        assert!(reaches_v4(a, b), "{} -> {} over IPv4", a.ip(), b.ip());
        assert!(reaches_v6(a, b), "{} -> {} over IPv6", a.ip6(), b.ip6());
        assert!(
            reaches_link_local(a, b),
            "{} -> {} over link-local",
            a.link_local(),
            b.link_local()
        );
    }
}

#[test]
fn two_lans_at_once_do_not_meet() {
    let (Some(one), Some(two)) = (Lan::new(2), Lan::new(2)) else {
        return;
    };
    assert_ne!(one.host(0).ns, two.host(0).ns);
    // Same addresses, different wires: a datagram from LAN one reaches LAN one's host, never LAN two's.
    let src = one.host(0).udp(IpAddr::V4(one.host(0).ip()));
    let theirs = two.host(1).udp(IpAddr::V4(two.host(1).ip()));
    let to = theirs.local_addr().unwrap();
    assert!(!arrives(&src, &theirs, to));
}

#[test]
fn nodes_started_in_hosts_listen_there_and_reach_each_other() {
    let Some(lan) = Lan::new(2) else { return };
    let tracker = lan.host(0).tracker(&[]);
    assert_eq!(tracker.addr.ip(), IpAddr::V4(lan.host(0).ip()));
    let alice = lan
        .host(1)
        .peer("alice", Some(tracker.addr), &["--join", "general"]);
    assert_eq!(alice.addr.ip(), IpAddr::V4(lan.host(1).ip()));
    joined(&alice, "general");
    let at = tracker.addr;
    let answer = lan.host(1).within(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect_timeout(&at, Duration::from_secs(3))
            .expect("host 1 reaches the tracker on host 0");
        s.write_all(b"GET /get-list?channel=general HTTP/1.0\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    });
    // The tracker's answer, from the other host: alice registered from her host's address.
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    assert!(
        answer.contains(&format!("\"ip\":\"{}\"", lan.host(1).ip())),
        "{answer}"
    );
    // A command run in a host sees that host's network only.
    let out = lan
        .host(1)
        .spawn(Command::new("ip").args(["-o", "addr", "show", "dev", "eth0"]))
        .wait_with_output()
        .unwrap();
    let addrs = String::from_utf8_lossy(&out.stdout);
    assert!(addrs.contains(&lan.host(1).ip().to_string()), "{addrs}");
    assert!(!addrs.contains(&lan.host(0).ip().to_string()), "{addrs}");
}

#[test]
fn a_cut_cuts_both_ways_and_nothing_else_until_lifted() {
    let Some(lan) = Lan::new(3) else { return };
    let (a, b, c) = (lan.host(0), lan.host(1), lan.host(2));
    lan.cut(0, 1);
    assert!(!reaches_v4(a, b) && !reaches_v4(b, a), "cut over IPv4");
    assert!(!reaches_v6(a, b) && !reaches_v6(b, a), "cut over IPv6");
    assert!(!reaches_link_local(a, b) && !reaches_link_local(b, a));
    for (x, y) in [(a, c), (c, a), (b, c), (c, b)] {
        assert!(reaches_v4(x, y), "{} -> {} still works", x.ip(), y.ip());
        assert!(reaches_v6(x, y), "{} -> {} still works", x.ip6(), y.ip6());
    }
    lan.uncut(0, 1);
    assert!(reaches_v4(a, b) && reaches_v4(b, a), "lifted over IPv4");
    assert!(reaches_v6(a, b) && reaches_v6(b, a), "lifted over IPv6");
}

/// How many of `n` datagrams sent from host `a` arrive at host `b`. The sender waits for each to be counted (or
/// 5 ms, when it was lost), so a busy machine never lets the receiver's buffer overflow: only the network drops.
fn delivered(a: &Host, b: &Host, n: usize) -> usize {
    let src = a.udp(IpAddr::V4(a.ip()));
    let dst = b.udp(IpAddr::V4(b.ip()));
    let to = dst.local_addr().unwrap();
    dst.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(n);
    let counter = std::thread::spawn(move || {
        let mut buf = [0u8; 16];
        while dst.recv_from(&mut buf).is_ok() {
            let _ = tx.send(());
        }
    });
    let mut got = 0;
    for i in 0..n {
        src.send_to(&(i as u64).to_be_bytes(), to).unwrap();
        got += rx.recv_timeout(Duration::from_millis(5)).is_ok() as usize;
    }
    counter.join().unwrap();
    got + rx.try_iter().count()
}

#[test]
fn loss_drops_about_the_percent_asked_and_zero_ends_it() {
    let Some(lan) = Lan::new(2) else { return };
    let (a, b) = (lan.host(0), lan.host(1));
    assert_eq!(delivered(a, b, 1000), 1000, "no loss before the rule");
    b.loss(20);
    let got = delivered(a, b, 1000);
    // 20 % of 1000: 200 lost, sd ~12.6; 140..260 is ~4.7 sd either way.
    assert!(
        (740..=860).contains(&got),
        "20 % loss delivered {got} of 1000"
    );
    eprintln!("20 % loss on host 1's link: {got} of 1000 datagrams arrived");
    b.loss(0);
    assert_eq!(delivered(a, b, 1000), 1000, "no loss once ended");
}

#[test]
fn a_changed_address_moves_the_host() {
    let Some(lan) = Lan::new(2) else { return };
    let (a, b) = (lan.host(0), lan.host(1));
    let old = b.ip();
    let listening = b.udp(IpAddr::V4(old));
    let to_old = listening.local_addr().unwrap();
    b.change_ip(std::net::Ipv4Addr::new(10, 77, 0, 200));
    assert_eq!(b.ip(), std::net::Ipv4Addr::new(10, 77, 0, 200));
    let src = a.udp(IpAddr::V4(a.ip()));
    assert!(
        !arrives(&src, &listening, to_old),
        "the old address is gone"
    );
    assert!(reaches_v4(a, b), "the new address is reached");
    assert!(reaches_v4(b, a), "and the host sends from it");
}
