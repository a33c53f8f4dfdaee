//! A recording relay: stands between nodes on loopback so a test sees every byte they send each other.
//!
//! A node binds 127.0.0.1:P and advertises another loopback address, say 127.0.0.50; a [`Relay`] listens on
//! 127.0.0.50:P for TCP and UDP and forwards each connection and datagram to 127.0.0.1:P, and the answers back,
//! keeping a copy of every payload in its [`Recording`]. So whatever one node sends another (HTTP, QUIC) passes
//! through it, while the test's own calls to a node's local API go straight to 127.0.0.1 and are not recorded.
//! Plain threads with short read timeouts: it serves tests on any runtime, and stops on drop.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often a relay thread looks up from a blocking read to see whether it should stop.
const POLL: Duration = Duration::from_millis(50);
/// Most bytes a recording keeps: a runaway test fails its search rather than filling memory.
const MAX_RECORDED: usize = 256 << 20;

/// Every payload that passed through some relays, in one buffer (each payload followed by a zero byte, so a
/// needle is only found within one packet or within a TCP stream's stretch).
#[derive(Clone, Default)]
pub(crate) struct Recording {
    bytes: Arc<Mutex<Vec<u8>>>,
    packets: Arc<std::sync::atomic::AtomicUsize>,
}

impl Recording {
    fn keep(&self, payload: &[u8]) {
        let mut b = self.bytes.lock().unwrap();
        assert!(
            b.len() + payload.len() < MAX_RECORDED,
            "the recording is full"
        );
        b.extend_from_slice(payload);
        b.push(0);
        self.packets.fetch_add(1, Ordering::Relaxed);
    }

    /// Payloads recorded so far.
    pub(crate) fn packets(&self) -> usize {
        self.packets.load(Ordering::Relaxed)
    }

    /// Bytes recorded so far.
    pub(crate) fn len(&self) -> usize {
        self.bytes.lock().unwrap().len()
    }

    /// Whether `needle` occurs in what was recorded.
    pub(crate) fn contains(&self, needle: &[u8]) -> bool {
        let b = self.bytes.lock().unwrap();
        !needle.is_empty() && b.windows(needle.len()).any(|w| w == needle)
    }
}

/// One address relayed (TCP and UDP) to another; stops on drop.
pub(crate) struct Relay {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Relays `listen` (TCP and UDP, the same port) to `target`, recording into `rec`.
    pub(crate) fn start(
        rec: &Recording,
        listen: SocketAddr,
        target: SocketAddr,
    ) -> std::io::Result<Relay> {
        let stop = Arc::new(AtomicBool::new(false));
        let tcp = TcpListener::bind(listen)?;
        tcp.set_nonblocking(true)?;
        let udp = UdpSocket::bind(listen)?;
        udp.set_read_timeout(Some(POLL))?;
        let mut threads = Vec::new();
        {
            let (rec, stop) = (rec.clone(), stop.clone());
            threads.push(std::thread::spawn(move || tcp_loop(tcp, target, rec, stop)));
        }
        {
            let (rec, stop) = (rec.clone(), stop.clone());
            threads.push(std::thread::spawn(move || udp_loop(udp, target, rec, stop)));
        }
        Ok(Relay { stop, threads })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn tcp_loop(listener: TcpListener, target: SocketAddr, rec: Recording, stop: Arc<AtomicBool>) {
    let mut pipes = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((client, _)) => {
                let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
                    continue;
                };
                for (from, to) in [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ] {
                    let (Ok(from), Ok(to)) = (from, to) else {
                        continue;
                    };
                    let (rec, stop) = (rec.clone(), stop.clone());
                    pipes.push(std::thread::spawn(move || pipe(from, to, rec, stop)));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(_) => std::thread::sleep(POLL),
        }
    }
    for p in pipes {
        let _ = p.join();
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, rec: Recording, stop: Arc<AtomicBool>) {
    let _ = from.set_nonblocking(false);
    let _ = from.set_read_timeout(Some(POLL));
    let mut buf = vec![0u8; 64 << 10];
    while !stop.load(Ordering::Relaxed) {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                rec.keep(&buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// Datagrams from each client go out through a socket of its own, so the answers find their way back to it.
fn udp_loop(socket: UdpSocket, target: SocketAddr, rec: Recording, stop: Arc<AtomicBool>) {
    let socket = Arc::new(socket);
    let mut upstream: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut backs = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let (n, client) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(_) => continue,
        };
        rec.keep(&buf[..n]);
        let up = match upstream.get(&client) {
            Some(u) => u.clone(),
            None => {
                let Ok(u) = UdpSocket::bind(SocketAddr::new(target.ip(), 0)) else {
                    continue;
                };
                let _ = u.set_read_timeout(Some(POLL));
                let u = Arc::new(u);
                upstream.insert(client, u.clone());
                let (u2, socket, rec, stop) =
                    (u.clone(), socket.clone(), rec.clone(), stop.clone());
                backs.push(std::thread::spawn(move || {
                    let mut buf = vec![0u8; 65_536];
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok(n) = u2.recv(&mut buf) {
                            rec.keep(&buf[..n]);
                            let _ = socket.send_to(&buf[..n], client);
                        }
                    }
                }));
                u
            }
        };
        let _ = up.send_to(&buf[..n], target);
    }
    for b in backs {
        let _ = b.join();
    }
}

/// `127.0.0.last`: another loopback address, for a relay in front of a node on 127.0.0.1.
pub(crate) fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A port free on both 127.0.0.1 and `other`, TCP and UDP (a relay on `other` and a node on 127.0.0.1 share it).
pub(crate) fn free_port(other: IpAddr) -> u16 {
    for _ in 0..50 {
        let port = TcpListener::bind((other, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let free = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
            && UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
            && UdpSocket::bind((other, port)).is_ok();
        if free {
            return port;
        }
    }
    panic!("no free port");
}
