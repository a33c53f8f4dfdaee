//! The relay (docs/SESSIONS.md, section 12): how two peers that cannot reach each other directly (client
//! isolation, a firewall, a NAT) still hold their identity-bound session, through the tracker, without the tracker
//! being able to read it.
//!
//! The relay carries the *same* QUIC session's packets, not its messages: a peer's endpoint runs on a
//! [`RelaySocket`], a UDP socket that sends packets for a *mapped address* (one per remote key, in `0.0.0.0/8`,
//! which no real packet comes from) over the peer's session with the tracker instead of the network, and surfaces
//! what the tracker relays from a key as coming from that key's mapped address. The handshake's key checks, the
//! frames, the acks and `wrong_sender` therefore hold unchanged on the relayed path, and the tracker sees only
//! packets encrypted end to end between the two peers (iroh's relay and magicsock do the same).
//!
//! - **Peer side**: [`RelayPort`] is the endpoint's handle on its socket; [`carry`] runs one relay stream over the
//!   tracker session (RELAY_OPEN, then RELAY frames both ways) until it ends.
//! - **Tracker side**: [`Switch`] forwards RELAY frames between the relay streams of keys its policy allows (a
//!   registered peer with a live lease), with per-key byte and packet rate limits and a bounded queue per
//!   destination; what exceeds them is dropped, as a congested router drops (QUIC's congestion control slows the
//!   sender down). The source of a relayed packet is always the key of the session it came in on, never a field.

use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Link;
use super::frame::{self, ErrorBody, TYPE_ERROR};
use super::request::{REQUEST_TIMEOUT, split};
use crate::identity::PublicKey;
use crate::proto::ErrorCode;
use crate::sync::lock;

/// Opens a relay stream (empty payload); the tracker answers with an empty RELAY_OPEN (accepted) or an ERROR.
pub const TYPE_RELAY_OPEN: u8 = 0x15;
/// One relayed packet: a 32-byte key (the destination towards the tracker, the source from it), then the packet.
pub const TYPE_RELAY: u8 = 0x16;
/// The largest packet relayed (QUIC's packets are at most 1,452 bytes here); a larger one is refused (`bad_frame`).
pub const MAX_RELAYED_PACKET: usize = 2048;
/// Packets waiting to go over the tracker session (peer), and waiting to go to one destination (tracker); beyond,
/// packets are dropped.
pub const RELAY_QUEUE: usize = 1024;
/// Relayed bytes per second one key may send through the tracker (a token bucket holding [`RELAY_BURST_BYTES`]).
pub const RELAY_BYTES_PER_SEC: u64 = 2 * 1024 * 1024;
pub const RELAY_BURST_BYTES: u64 = 4 * 1024 * 1024;
/// Relayed packets per second one key may send (a token bucket holding [`RELAY_BURST_PACKETS`]).
pub const RELAY_PACKETS_PER_SEC: u64 = 4_000;
pub const RELAY_BURST_PACKETS: u64 = 8_000;
/// The tracker asks its policy again about a key it relays for after this long (a lease that lapsed, a name
/// dropped): the relay stops for it within this time.
pub const RELAY_RECHECK: Duration = Duration::from_secs(5);
/// At most one ERROR frame per relay stream per this long (a flood of packets to nobody gets one answer).
pub const RELAY_ERROR_INTERVAL: Duration = Duration::from_secs(1);
/// Remote keys one peer's socket maps to addresses (beyond, packets from new keys are dropped).
pub const MAX_MAPPED: usize = 4096;
/// A dial to a peer tries the direct path alone this long before it also tries the relay; the first session up wins.
pub const RELAY_HEADSTART: Duration = Duration::from_millis(250);
/// A relayed session's dialler tries the direct path again after this long, doubling up to [`DIRECT_RETRY_MAX`],
/// and moves to it when it works.
pub const DIRECT_RETRY_FIRST: Duration = Duration::from_secs(1);
pub const DIRECT_RETRY_MAX: Duration = Duration::from_secs(8);
/// The port of every mapped address.
const MAPPED_PORT: u16 = 1;
const KEY_LEN: usize = 32;

// ---- mapped addresses ----------------------------------------------------------------------------------------

fn v4_index(ip: Ipv4Addr) -> Option<u32> {
    (ip.octets()[0] == 0 && !ip.is_unspecified()).then(|| u32::from(ip))
}

/// The mapping index of a relayed address (`0.x.y.z:1`, or the same as an IPv4-mapped IPv6 address).
fn mapped_index(addr: SocketAddr) -> Option<u32> {
    if addr.port() != MAPPED_PORT {
        return None;
    }
    match addr.ip() {
        IpAddr::V4(ip) => v4_index(ip),
        IpAddr::V6(ip) => v4_index(ip.to_ipv4_mapped()?),
    }
}

/// Whether a session's remote address is a relayed one (a mapped address, not a network address).
pub fn is_relayed(addr: SocketAddr) -> bool {
    mapped_index(addr).is_some()
}

/// The remote keys this socket relays for, each with its index (index 1 is `keys[0]`).
#[derive(Debug, Default)]
struct Mapping {
    by_key: HashMap<PublicKey, u32>,
    keys: Vec<PublicKey>,
}

impl Mapping {
    fn index(&mut self, key: PublicKey) -> Option<u32> {
        if let Some(i) = self.by_key.get(&key) {
            return Some(*i);
        }
        if self.keys.len() >= MAX_MAPPED {
            return None;
        }
        self.keys.push(key);
        let i = self.keys.len() as u32;
        self.by_key.insert(key, i);
        Some(i)
    }

    fn key(&self, index: u32) -> Option<PublicKey> {
        self.keys.get((index as usize).checked_sub(1)?).copied()
    }
}

// ---- the peer's socket ---------------------------------------------------------------------------------------

/// What a peer's socket and its relay stream share.
#[derive(Debug)]
struct PortShared {
    map: Mutex<Mapping>,
    /// The socket is IPv6: mapped addresses are written as IPv4-mapped IPv6 addresses (as quinn writes them).
    v6: bool,
    out: mpsc::Sender<(PublicKey, Bytes)>,
    incoming: mpsc::Sender<(SocketAddr, Bytes)>,
    /// A relay stream with the tracker is open now.
    up: AtomicBool,
    /// Dial peers over the relay only (the benchmark's relayed rows; `--force-relay`).
    force: AtomicBool,
    stats: PortStats,
}

#[derive(Debug, Default)]
struct PortStats {
    sent: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    direct_failed: AtomicU64,
}

/// A UDP socket that also reaches remote keys through the relay (see the module doc). Packets to network
/// addresses go to the inner socket untouched.
pub(crate) struct RelaySocket {
    inner: Arc<dyn AsyncUdpSocket>,
    port: Arc<PortShared>,
    incoming: Mutex<mpsc::Receiver<(SocketAddr, Bytes)>>,
}

impl std::fmt::Debug for RelaySocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelaySocket")
            .field("inner", &self.inner)
            .finish()
    }
}

/// A peer endpoint's handle on its relay: which keys map where, whether the relay is up, and the queues the relay
/// stream ([`carry`]) moves packets through.
#[derive(Debug, Clone)]
pub struct RelayPort {
    shared: Arc<PortShared>,
    outgoing: Arc<tokio::sync::Mutex<mpsc::Receiver<(PublicKey, Bytes)>>>,
}

/// What a peer's relay carried since its start (`GET /health`).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct PortCounts {
    /// Whether a relay stream with the tracker is open now.
    pub up: bool,
    /// Packets sent to the tracker for relaying, and received from it.
    pub packets_sent: u64,
    pub packets_received: u64,
    /// Packets dropped here (a full queue, a relay that is down, too many keys).
    pub packets_dropped: u64,
    /// Direct dials that failed while the relay was up (each one a session that went, or stayed, relayed).
    pub direct_failed: u64,
}

impl RelaySocket {
    /// Wraps `inner`: the socket to give the endpoint, and the handle for the relay stream.
    pub(crate) fn wrap(
        inner: Arc<dyn AsyncUdpSocket>,
    ) -> io::Result<(Arc<RelaySocket>, RelayPort)> {
        let v6 = inner.local_addr()?.is_ipv6();
        let (out_tx, out_rx) = mpsc::channel(RELAY_QUEUE);
        let (in_tx, in_rx) = mpsc::channel(RELAY_QUEUE);
        let shared = Arc::new(PortShared {
            map: Mutex::default(),
            v6,
            out: out_tx,
            incoming: in_tx,
            up: AtomicBool::new(false),
            force: AtomicBool::new(false),
            stats: PortStats::default(),
        });
        let socket = Arc::new(RelaySocket {
            inner,
            port: shared.clone(),
            incoming: Mutex::new(in_rx),
        });
        let port = RelayPort {
            shared,
            outgoing: Arc::new(tokio::sync::Mutex::new(out_rx)),
        };
        Ok((socket, port))
    }
}

impl AsyncUdpSocket for RelaySocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        // Relayed packets never wait (a full queue drops them, as a congested link does): only the real socket can
        // be unwritable.
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let Some(index) = mapped_index(transmit.destination) else {
            return self.inner.try_send(transmit);
        };
        let key = lock(&self.port.map).key(index);
        let segment = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        for packet in transmit.contents.chunks(segment) {
            let sent = key.is_some_and(|key| {
                self.port
                    .out
                    .try_send((key, Bytes::copy_from_slice(packet)))
                    .is_ok()
            });
            let c = if sent {
                &self.port.stats.sent
            } else {
                &self.port.stats.dropped
            };
            c.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut n = 0;
        {
            let mut incoming = lock(&self.incoming);
            while n < bufs.len().min(meta.len()) {
                let Poll::Ready(Some((addr, packet))) = incoming.poll_recv(cx) else {
                    break;
                };
                if packet.len() > bufs[n].len() {
                    continue;
                }
                bufs[n][..packet.len()].copy_from_slice(&packet);
                meta[n] = RecvMeta {
                    addr,
                    len: packet.len(),
                    stride: packet.len(),
                    ecn: None,
                    dst_ip: None,
                };
                n += 1;
            }
        }
        if n > 0 {
            return Poll::Ready(Ok(n));
        }
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

impl RelayPort {
    /// The address a session with `key` over the relay is dialled at (`None`: too many keys mapped already).
    pub fn mapped(&self, key: PublicKey) -> Option<SocketAddr> {
        let index = lock(&self.shared.map).index(key)?;
        let ip = Ipv4Addr::from(index);
        let ip: IpAddr = if self.shared.v6 {
            ip.to_ipv6_mapped().into()
        } else {
            ip.into()
        };
        Some(SocketAddr::new(ip, MAPPED_PORT))
    }

    /// The key a relayed address stands for.
    pub fn key_of(&self, addr: SocketAddr) -> Option<PublicKey> {
        lock(&self.shared.map).key(mapped_index(addr)?)
    }

    /// Whether a relay stream with the tracker is open now.
    pub fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::Relaxed)
    }

    /// Dial peers over the relay only (no direct attempts): the benchmark's relayed rows, `--force-relay`.
    pub fn set_force(&self, force: bool) {
        self.shared.force.store(force, Ordering::Relaxed);
    }

    pub fn forced(&self) -> bool {
        self.shared.force.load(Ordering::Relaxed)
    }

    pub fn counts(&self) -> PortCounts {
        let s = &self.shared.stats;
        PortCounts {
            up: self.is_up(),
            packets_sent: s.sent.load(Ordering::Relaxed),
            packets_received: s.received.load(Ordering::Relaxed),
            packets_dropped: s.dropped.load(Ordering::Relaxed),
            direct_failed: s.direct_failed.load(Ordering::Relaxed),
        }
    }

    pub(super) fn direct_failed(&self) {
        self.shared
            .stats
            .direct_failed
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A packet the tracker relayed from `from`: surfaces on the socket from `from`'s mapped address.
    fn deliver(&self, from: PublicKey, packet: Bytes) {
        let delivered = self
            .mapped(from)
            .is_some_and(|addr| self.shared.incoming.try_send((addr, packet)).is_ok());
        let c = if delivered {
            &self.shared.stats.received
        } else {
            &self.shared.stats.dropped
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why a relay stream ended or could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the tracker refused to relay: {} ({})", .0.code, .0.message)]
    Refused(ErrorBody),
    #[error("the relay stream ended")]
    Lost,
    #[error("no answer to RELAY_OPEN within {REQUEST_TIMEOUT:?}")]
    Timeout,
    #[error("the tracker's answer to RELAY_OPEN does not parse")]
    BadAnswer,
}

/// Reads until a whole frame is at the front of `buf`; its (length used, type, payload).
async fn first_frame(
    recv: &mut quinn::RecvStream,
    buf: &mut Vec<u8>,
) -> Option<(usize, u8, Vec<u8>)> {
    loop {
        match split(buf) {
            Err(_) => return None,
            Ok(Some((n, kind, payload))) => return Some((n, kind, payload.to_vec())),
            Ok(None) => match recv.read_chunk(usize::MAX, true).await {
                Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
                _ => return None,
            },
        }
    }
}

/// Runs one relay stream over `link` (the peer's session with its tracker) until it ends: sends what the
/// endpoint's socket queues for relayed addresses, and hands what the tracker relays to the socket.
pub async fn carry(link: &Link, port: &RelayPort) -> Result<(), RelayError> {
    let (mut send, mut recv) = link.conn.open_bi().await.map_err(|_| RelayError::Lost)?;
    let mut out = Vec::new();
    frame::encode_raw(TYPE_RELAY_OPEN, &[], &mut out).expect("an empty frame fits");
    send.write_all(&out).await.map_err(|_| RelayError::Lost)?;
    let mut buf = Vec::new();
    let answer = tokio::time::timeout(REQUEST_TIMEOUT, first_frame(&mut recv, &mut buf))
        .await
        .map_err(|_| RelayError::Timeout)?
        .ok_or(RelayError::Lost)?;
    match answer {
        (n, TYPE_RELAY_OPEN, _) => buf.drain(..n),
        (_, TYPE_ERROR, payload) => {
            return Err(serde_json::from_slice(&payload)
                .map(RelayError::Refused)
                .unwrap_or(RelayError::BadAnswer));
        }
        _ => return Err(RelayError::BadAnswer),
    };
    port.shared.up.store(true, Ordering::Relaxed);
    let reader = async {
        loop {
            loop {
                match split(&buf) {
                    Ok(Some((n, kind, payload))) => {
                        match (kind, payload.len() > KEY_LEN) {
                            (TYPE_RELAY, true) => {
                                let from: [u8; KEY_LEN] =
                                    payload[..KEY_LEN].try_into().expect("32 bytes");
                                if let Some(from) = PublicKey::from_bytes(&from) {
                                    port.deliver(from, Bytes::copy_from_slice(&payload[KEY_LEN..]));
                                }
                            }
                            (TYPE_ERROR, _) => {
                                let e: Option<ErrorBody> = serde_json::from_slice(payload).ok();
                                tracing::debug!(error = ?e, "the relay refused a packet");
                            }
                            _ => tracing::debug!(kind, "an unexpected frame on the relay stream"),
                        }
                        buf.drain(..n);
                    }
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
            match recv.read_chunk(usize::MAX, true).await {
                Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
                _ => return,
            }
        }
    };
    let writer = async {
        let mut rx = port.outgoing.lock().await;
        let mut out = Vec::with_capacity(frame::MAX_PAYLOAD);
        while let Some(first) = rx.recv().await {
            out.clear();
            let mut next = Some(first);
            while let Some((to, packet)) = next.take() {
                encode_relay(&to, &packet, &mut out);
                if out.len() < frame::MAX_PAYLOAD {
                    next = rx.try_recv().ok();
                }
            }
            if send.write_all(&out).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = reader => {}
        _ = writer => {}
    }
    port.shared.up.store(false, Ordering::Relaxed);
    Err(RelayError::Lost)
}

/// Appends a RELAY frame: `key` (the destination, or the source from the tracker), then the packet.
fn encode_relay(key: &PublicKey, packet: &[u8], out: &mut Vec<u8>) {
    let mut payload = Vec::with_capacity(KEY_LEN + packet.len());
    payload.extend_from_slice(&key.to_bytes());
    payload.extend_from_slice(packet);
    frame::encode_raw(TYPE_RELAY, &payload, out).expect("a relayed packet fits a frame");
}

// ---- the tracker's switch ------------------------------------------------------------------------------------

/// Who may use the relay: called with a key when its relay stream opens, and again every [`RELAY_RECHECK`].
pub type RelayPolicy = dyn Fn(&PublicKey) -> bool + Send + Sync;

/// The switch's limits; [`RelayLimits::default`] is the named constants above (tests lower them).
#[derive(Debug, Clone, Copy)]
pub struct RelayLimits {
    pub bytes_per_sec: u64,
    pub burst_bytes: u64,
    pub packets_per_sec: u64,
    pub burst_packets: u64,
    /// Packets queued per destination.
    pub queue: usize,
}

impl Default for RelayLimits {
    fn default() -> RelayLimits {
        RelayLimits {
            bytes_per_sec: RELAY_BYTES_PER_SEC,
            burst_bytes: RELAY_BURST_BYTES,
            packets_per_sec: RELAY_PACKETS_PER_SEC,
            burst_packets: RELAY_BURST_PACKETS,
            queue: RELAY_QUEUE,
        }
    }
}

/// What the switch did since the tracker started (`GET /health`): who talks to whom is never counted per pair.
#[derive(Debug, Default)]
pub struct RelayStats {
    pub streams: AtomicUsize,
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    /// Over a key's rate limit, or its destination's queue full.
    pub dropped: AtomicU64,
    /// Refused with an ERROR (no such destination, to itself, malformed).
    pub refused: AtomicU64,
}

/// A key's place in the switch: its relay stream's queue, its rate budget, and when its policy was last asked.
struct Member {
    tx: mpsc::Sender<Bytes>,
    bucket: Mutex<Bucket>,
    checked: Mutex<Instant>,
    gone: CancellationToken,
}

/// Two token buckets: bytes and packets.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    bytes: f64,
    packets: f64,
    at: Instant,
}

impl Bucket {
    fn full(limits: &RelayLimits, now: Instant) -> Bucket {
        Bucket {
            bytes: limits.burst_bytes as f64,
            packets: limits.burst_packets as f64,
            at: now,
        }
    }

    /// Takes one packet of `len` bytes if both budgets allow.
    fn take(&mut self, len: usize, limits: &RelayLimits, now: Instant) -> bool {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.bytes =
            (self.bytes + secs * limits.bytes_per_sec as f64).min(limits.burst_bytes as f64);
        self.packets =
            (self.packets + secs * limits.packets_per_sec as f64).min(limits.burst_packets as f64);
        if self.bytes < len as f64 || self.packets < 1.0 {
            return false;
        }
        self.bytes -= len as f64;
        self.packets -= 1.0;
        true
    }
}

/// The tracker's relay: one member per key with an open relay stream.
pub struct Switch {
    members: Mutex<HashMap<PublicKey, Arc<Member>>>,
    policy: Box<RelayPolicy>,
    limits: RelayLimits,
    pub stats: RelayStats,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch")
            .field("limits", &self.limits)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Switch {
    pub fn new(policy: Box<RelayPolicy>, limits: RelayLimits) -> Switch {
        Switch {
            members: Mutex::default(),
            policy,
            limits,
            stats: RelayStats::default(),
        }
    }

    /// Whether `member` (for `key`) may still use the relay: the policy, asked again once [`RELAY_RECHECK`] passed.
    fn still_allowed(&self, key: &PublicKey, member: &Member) -> bool {
        let mut checked = lock(&member.checked);
        if checked.elapsed() < RELAY_RECHECK {
            return true;
        }
        if (self.policy)(key) {
            *checked = Instant::now();
            return true;
        }
        member.gone.cancel();
        false
    }

    /// One RELAY frame's payload from `from`: forwarded, dropped (over a limit), or refused with the ERROR to send.
    fn forward(&self, from: &PublicKey, member: &Member, payload: &[u8]) -> Option<ErrorBody> {
        let refuse = |code, message: String| {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            Some(ErrorBody::new(code, message))
        };
        let packet_len = payload.len().saturating_sub(KEY_LEN);
        if payload.len() <= KEY_LEN || packet_len > MAX_RELAYED_PACKET {
            return refuse(
                ErrorCode::BadFrame,
                format!(
                    "a RELAY payload is a 32-byte key and a packet of 1 to {MAX_RELAYED_PACKET} bytes"
                ),
            );
        }
        let key: [u8; KEY_LEN] = payload[..KEY_LEN].try_into().expect("32 bytes");
        let Some(to) = PublicKey::from_bytes(&key) else {
            return refuse(
                ErrorCode::BadFrame,
                "a RELAY frame's first 32 bytes are not a key".into(),
            );
        };
        if to == *from {
            return refuse(
                ErrorCode::InvalidField,
                "a peer does not relay to itself".into(),
            );
        }
        if !lock(&member.bucket).take(packet_len, &self.limits, Instant::now()) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let dest = lock(&self.members).get(&to).cloned();
        let Some(dest) = dest.filter(|d| self.still_allowed(&to, d)) else {
            return refuse(
                ErrorCode::RelayUnreachable,
                format!("{to} holds no relay stream with this tracker"),
            );
        };
        let mut out = Vec::with_capacity(frame::HEADER_LEN + payload.len());
        encode_relay(from, &payload[KEY_LEN..], &mut out);
        if dest.tx.try_send(Bytes::from(out)).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.stats.packets.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes
            .fetch_add(packet_len as u64, Ordering::Relaxed);
        None
    }
}

/// Serves a relay stream whose first bytes (`buf`, at least a frame header of type RELAY_OPEN) were read already;
/// `key` is the session's, proved in its handshake.
pub(super) async fn serve_relay(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    mut buf: Vec<u8>,
    key: PublicKey,
    switch: Arc<Switch>,
) {
    let Ok(Some((n, _, _))) =
        tokio::time::timeout(REQUEST_TIMEOUT, first_frame(&mut recv, &mut buf)).await
    else {
        return;
    };
    buf.drain(..n);
    if !(switch.policy)(&key) {
        let mut out = Vec::new();
        frame::encode_error(
            &ErrorBody::new(
                ErrorCode::UnknownIdentity,
                "this key holds no live registration here; register first",
            ),
            &mut out,
        );
        let _ = send.write_all(&out).await;
        let _ = send.finish();
        return;
    }
    let (tx, mut rx) = mpsc::channel::<Bytes>(switch.limits.queue);
    let member = Arc::new(Member {
        tx,
        bucket: Mutex::new(Bucket::full(&switch.limits, Instant::now())),
        checked: Mutex::new(Instant::now()),
        gone: CancellationToken::new(),
    });
    // One relay stream per key: a new one (the peer's new session with us) replaces the old.
    match lock(&switch.members).insert(key, member.clone()) {
        Some(old) => old.gone.cancel(),
        None => {
            switch.stats.streams.fetch_add(1, Ordering::Relaxed);
        }
    }
    let mut out = Vec::new();
    frame::encode_raw(TYPE_RELAY_OPEN, &[], &mut out).expect("an empty frame fits");
    let writer = {
        let gone = member.gone.clone();
        async move {
            if send.write_all(&out).await.is_err() {
                return;
            }
            loop {
                let first = tokio::select! {
                    p = rx.recv() => p,
                    _ = gone.cancelled() => None,
                };
                let Some(first) = first else { break };
                out.clear();
                out.extend_from_slice(&first);
                while out.len() < frame::MAX_PAYLOAD {
                    match rx.try_recv() {
                        Ok(p) => out.extend_from_slice(&p),
                        Err(_) => break,
                    }
                }
                if send.write_all(&out).await.is_err() {
                    break;
                }
            }
            let _ = send.finish();
        }
    };
    let reader = async {
        let mut last_error: Option<Instant> = None;
        loop {
            loop {
                let (n, error) = match split(&buf) {
                    Ok(Some((n, TYPE_RELAY, payload))) => {
                        (n, switch.forward(&key, &member, payload))
                    }
                    Ok(Some((n, kind, _))) => {
                        switch.stats.refused.fetch_add(1, Ordering::Relaxed);
                        (
                            n,
                            Some(ErrorBody::new(
                                ErrorCode::UnknownFrameType,
                                format!(
                                    "a relay stream carries only RELAY frames, not {kind:#04x}"
                                ),
                            )),
                        )
                    }
                    Ok(None) => break,
                    // A length over the limit: the stream is out of step; end it.
                    Err(_) => return,
                };
                buf.drain(..n);
                if let Some(e) = error
                    && last_error.is_none_or(|t| t.elapsed() >= RELAY_ERROR_INTERVAL)
                {
                    last_error = Some(Instant::now());
                    let mut out = Vec::new();
                    frame::encode_error(&e, &mut out);
                    let _ = member.tx.try_send(Bytes::from(out));
                }
                if !switch.still_allowed(&key, &member) {
                    return;
                }
            }
            let chunk = tokio::select! {
                c = recv.read_chunk(usize::MAX, true) => c,
                _ = member.gone.cancelled() => return,
            };
            match chunk {
                Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
                _ => return,
            }
        }
    };
    let writing = tokio::spawn(writer);
    reader.await;
    member.gone.cancel();
    let _ = writing.await;
    let mut members = lock(&switch.members);
    if members.get(&key).is_some_and(|m| Arc::ptr_eq(m, &member)) {
        members.remove(&key);
        switch.stats.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapped_address_is_never_a_network_address_and_reads_back_in_both_families() {
        let mut m = Mapping::default();
        let i = m
            .index(crate::identity::Identity::ephemeral().public_key())
            .unwrap();
        let v4 = SocketAddr::new(Ipv4Addr::from(i).into(), MAPPED_PORT);
        let v6 = SocketAddr::new(Ipv4Addr::from(i).to_ipv6_mapped().into(), MAPPED_PORT);
        assert_eq!(mapped_index(v4), Some(i));
        assert_eq!(mapped_index(v6), Some(i));
        for real in [
            "127.0.0.1:1",
            "0.0.0.0:1",
            "0.0.0.1:443",
            "[::1]:1",
            "10.0.0.1:1",
        ] {
            assert_eq!(mapped_index(real.parse().unwrap()), None, "{real}");
        }
    }

    #[test]
    fn given_a_burst_when_it_is_spent_then_packets_wait_for_the_rate() {
        let limits = RelayLimits {
            bytes_per_sec: 1000,
            burst_bytes: 2000,
            packets_per_sec: 1000,
            burst_packets: 1000,
            queue: 8,
        };
        let t0 = Instant::now();
        let mut b = Bucket::full(&limits, t0);
        assert!(b.take(1500, &limits, t0));
        assert!(!b.take(1500, &limits, t0), "the burst is spent");
        assert!(
            b.take(1500, &limits, t0 + Duration::from_secs(1)),
            "a second refills 1000 bytes"
        );
    }

    #[test]
    fn the_mapping_is_bounded() {
        let mut m = Mapping::default();
        for _ in 0..MAX_MAPPED {
            assert!(
                m.index(crate::identity::Identity::ephemeral().public_key())
                    .is_some()
            );
        }
        assert_eq!(
            m.index(crate::identity::Identity::ephemeral().public_key()),
            None
        );
    }
}
