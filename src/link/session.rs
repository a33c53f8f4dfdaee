//! One authenticated connection to one remote key ([`Link`]), and the two stream loops on it:
//!
//! - **Sending** ([`Link::send`]): the first message opens this side's long-lived bidirectional stream (a *lane*,
//!   [`LaneId`]); a writer task writes every queued MESSAGE frame in one write (so frames coalesce under load and
//!   order is kept), and an ack task reads ACK and ERROR frames from the same stream and resolves each message's
//!   waiter by id. A refusal for now ([`ErrorCode::is_transient`]) halts the lane: the receiver stores nothing
//!   more from it, so the next send opens a new one, and sends bound to the old lane ([`Link::send_on`]) fail
//!   unwritten, so a sender never has a later message stored before an earlier one it must send again.
//! - **Receiving** ([`serve_stream`]): every stream the other side opens is read in chunks; all the whole frames in
//!   a chunk form one batch, checked (text rules, `from` bound to the handshake's key), handed to the [`Inbox`]
//!   at once, and answered with one ACK frame for all that were stored plus one ERROR frame per refusal. After a
//!   refusal for now, every later MESSAGE on that stream is answered `stream_halted` and not stored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::future::BoxFuture;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::frame::{self, Decoded, ErrorBody, Frame, TooLarge};
use super::{ACK_TIMEOUT, MAX_BATCH, MAX_IN_FLIGHT, STREAM_CLOSED_FRAME_TOO_LARGE};
use crate::identity::PublicKey;
use crate::proto::{ChatMessage, ErrorCode, MessageId, PeerName};

/// What the node behind an endpoint does with what arrives: who a name is, and storing messages.
pub trait Inbox: Send + Sync + 'static {
    /// The key bound to `name` (the tracker's word, or a pin), or `None` if none is known.
    fn key_of<'a>(&'a self, name: &'a PeerName) -> BoxFuture<'a, Option<PublicKey>>;

    /// Stores `batch` (in order, all sent by the holder of `from`, each already checked to be from it); one
    /// result per message, in the same order. `Ok` means stored (or stored before: a duplicate id): it is acked.
    /// After the first refusal for now ([`ErrorCode::is_transient`]) nothing later in the batch may be stored:
    /// those get `stream_halted` (the sender sends them again after the refused one, in order).
    fn deliver(
        &self,
        from: PublicKey,
        batch: Vec<ChatMessage>,
    ) -> BoxFuture<'_, Vec<Result<(), ErrorBody>>>;
}

/// Why a message sent over a link is not known to be delivered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    /// The receiver answered with an ERROR frame for this message: it is not stored.
    #[error("refused: {} ({})", .0.code, .0.message)]
    Refused(ErrorBody),
    /// The stream or connection ended before the ack: it may or may not be stored (resending is safe: ids are
    /// deduplicated).
    #[error("the session ended before the message was acknowledged")]
    Lost,
    #[error("no acknowledgement within {ACK_TIMEOUT:?}")]
    Timeout,
    /// No session could be had with the node (not sent at all).
    #[error(transparent)]
    NoLink(#[from] super::LinkError),
    /// The lane this send was bound to ([`Link::send_on`]) has ended or was halted by a refusal for now: nothing
    /// was written. Send again on a new lane, after what was refused.
    #[error("the session stream this message was bound to has ended (not sent)")]
    StreamEnded,
}

/// One sending stream of one link ([`Link::lane`]). Sends bound to a lane go out on that stream or not at all,
/// so a sender that must have its messages stored in the order it sent them (the outbox's pipeline) never has a
/// later one go out on a fresh stream, and be stored, before an earlier one it has to send again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LaneId(u64);

/// Lane ids are unique in the process, so a lane of a connection that was replaced is never taken for a new one.
static NEXT_LANE: AtomicU64 = AtomicU64::new(1);

/// The sending stream the link writes to now.
struct Lane {
    id: LaneId,
    tx: mpsc::Sender<Queued>,
    pending: Arc<Mutex<Pending>>,
}

impl Lane {
    /// Whether sends may still go on it: its writer is running, its stream is alive and was not halted.
    fn open(&self) -> bool {
        let p = self.pending.lock().expect("not poisoned");
        !self.tx.is_closed() && !p.dead && !p.halted
    }
}

type Waiter = oneshot::Sender<Result<(), SendError>>;

struct Queued {
    id: MessageId,
    frame: Vec<u8>,
    done: Waiter,
}

/// The waiters of one sending stream; `dead` once its ack task has ended (nothing more will be acked there),
/// `halted` once the receiver refused a message on it for now (it stores nothing more from that stream).
#[derive(Default)]
struct Pending {
    waiters: HashMap<MessageId, Waiter>,
    dead: bool,
    halted: bool,
}

/// One connection to one remote key, usable both ways; shared by the pool.
pub struct Link {
    pub(super) conn: quinn::Connection,
    remote: PublicKey,
    /// Who opened the connection (us or them): the pool's tie-break when both dialled at once.
    pub(super) dialler: PublicKey,
    pub(super) born: Instant,
    /// Milliseconds since `born` at the last use, for the pool's least-recently-used eviction.
    pub(super) last_used: AtomicU64,
    writer: Mutex<Option<Lane>>,
    in_flight: Semaphore,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("remote", &self.remote)
            .field("addr", &self.conn.remote_address())
            .field("dialled_by_remote", &(self.dialler == self.remote))
            .finish()
    }
}

impl Link {
    pub(super) fn new(conn: quinn::Connection, remote: PublicKey, dialler: PublicKey) -> Link {
        Link {
            conn,
            remote,
            dialler,
            born: Instant::now(),
            last_used: AtomicU64::new(0),
            writer: Mutex::new(None),
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
        }
    }

    /// The key the other side proved in the handshake.
    pub fn remote_key(&self) -> PublicKey {
        self.remote
    }

    /// Who opened the connection: the remote key, or ours.
    pub fn dialler(&self) -> PublicKey {
        self.dialler
    }

    pub fn remote_address(&self) -> std::net::SocketAddr {
        self.conn.remote_address()
    }

    /// Closes the connection (what is in flight on it is in doubt); the pool drops it and the next send dials
    /// afresh. For a sender that got no answers in time: the other side may be gone without a word (QUIC would
    /// notice only at the idle timeout).
    pub fn close(&self) {
        self.conn.close(super::CLOSE_NORMAL, b"no answer");
    }

    /// UDP datagrams received on this connection so far: a sender waiting for answers can tell a slow receiver
    /// (its transport still acknowledges packets) from a gone one (nothing at all comes back).
    pub fn datagrams_received(&self) -> u64 {
        self.conn.stats().udp_rx.datagrams
    }

    /// Whether this session goes through the tracker's relay (docs/SESSIONS.md, 12) rather than straight to the
    /// other node.
    pub fn is_relayed(&self) -> bool {
        super::relay::is_relayed(self.conn.remote_address())
    }

    /// Opens a bidirectional stream for a caller that writes and reads frames itself (tools and tests that speak
    /// the protocol by hand).
    pub async fn open_stream(
        &self,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), quinn::ConnectionError> {
        self.conn.open_bi().await
    }

    pub fn is_closed(&self) -> bool {
        self.conn.close_reason().is_some()
    }

    pub(super) fn touch(&self) {
        self.last_used
            .store(self.born.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Sends `msg` and waits for the receiver's ack (it is stored) or its refusal. Messages sent from one task
    /// one after another arrive in that order; at most [`MAX_IN_FLIGHT`] wait for acks at once.
    pub async fn send(&self, msg: &ChatMessage) -> Result<(), SendError> {
        self.send_on(self.lane(), msg).await
    }

    /// [`Link::send`] on `lane` only: [`SendError::StreamEnded`], and nothing written, once that lane has ended
    /// or was halted.
    pub async fn send_on(&self, lane: LaneId, msg: &ChatMessage) -> Result<(), SendError> {
        let mut buf = Vec::new();
        frame::encode_message(msg, &mut buf)?;
        self.send_encoded(lane, msg.id, buf).await
    }

    /// The MESSAGE frame `frame` of message `id`, queued on `lane` and waited for.
    async fn send_encoded(
        &self,
        lane: LaneId,
        id: MessageId,
        frame: Vec<u8>,
    ) -> Result<(), SendError> {
        let _permit = self.in_flight.acquire().await.expect("never closed");
        self.touch();
        let (done, rx) = oneshot::channel();
        let (tx, pending) = self.lane_queue(lane).ok_or(SendError::StreamEnded)?;
        if tx.send(Queued { id, frame, done }).await.is_err() {
            // The writer stopped before taking it: not written.
            let halted = pending.lock().expect("not poisoned").halted;
            return Err(if halted {
                SendError::StreamEnded
            } else {
                SendError::Lost
            });
        }
        match tokio::time::timeout(ACK_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(SendError::Lost),
            Err(_) => Err(SendError::Timeout),
        }
    }

    /// The lane sends go on now: this side's sending stream, a new one if there is none or it has ended or was
    /// halted. (The stream itself is opened by its first message.)
    pub fn lane(&self) -> LaneId {
        let mut writer = self.writer.lock().expect("not poisoned");
        if let Some(lane) = writer.as_ref().filter(|l| l.open()) {
            return lane.id;
        }
        let (tx, rx) = mpsc::channel(MAX_IN_FLIGHT);
        let pending = Arc::new(Mutex::new(Pending::default()));
        tokio::spawn(write_loop(self.conn.clone(), rx, pending.clone()));
        let id = LaneId(NEXT_LANE.fetch_add(1, Ordering::Relaxed));
        *writer = Some(Lane { id, tx, pending });
        id
    }

    /// The queue of `lane`, if it is this link's current lane and still open.
    fn lane_queue(&self, lane: LaneId) -> Option<(mpsc::Sender<Queued>, Arc<Mutex<Pending>>)> {
        let writer = self.writer.lock().expect("not poisoned");
        writer
            .as_ref()
            .filter(|l| l.id == lane && l.open())
            .map(|l| (l.tx.clone(), l.pending.clone()))
    }
}

/// Opens a stream, then writes whatever is queued, as many frames per write as are waiting. Once the receiver
/// has halted the stream (a refusal for now), what is still queued is answered [`SendError::StreamEnded`]
/// unwritten and the stream is finished.
async fn write_loop(
    conn: quinn::Connection,
    mut rx: mpsc::Receiver<Queued>,
    pending: Arc<Mutex<Pending>>,
) {
    let Some(first) = rx.recv().await else {
        return;
    };
    let Ok((mut send, recv)) = conn.open_bi().await else {
        return; // dropping `first` and `rx` resolves their waiters as Lost
    };
    tokio::spawn(ack_loop(recv, pending.clone()));
    let mut buf = Vec::with_capacity(frame::MAX_PAYLOAD);
    let mut next = Some(first);
    loop {
        let halted = {
            let mut p = pending.lock().expect("not poisoned");
            let mut count = 0;
            while let Some(q) = next.take() {
                if p.dead {
                    return;
                }
                if p.halted {
                    let _ = q.done.send(Err(SendError::StreamEnded));
                    break;
                }
                match p.waiters.entry(q.id) {
                    std::collections::hash_map::Entry::Occupied(_) => {
                        let _ = q.done.send(Err(SendError::Refused(ErrorBody::new(
                            frame::code::DUPLICATE_IN_FLIGHT,
                            "this id is already waiting for an ack on this session",
                        ))));
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(q.done);
                        buf.extend_from_slice(&q.frame);
                    }
                }
                count += 1;
                if buf.len() >= frame::MAX_PAYLOAD || count >= MAX_BATCH {
                    break;
                }
                next = rx.try_recv().ok();
            }
            p.halted
        };
        // What was taken before the halt was seen goes out (the receiver answers it `stream_halted`).
        if !buf.is_empty() && send.write_all(&buf).await.is_err() {
            return; // the ack task sees the stream end and fails the waiters
        }
        buf.clear();
        if halted {
            rx.close();
            while let Ok(q) = rx.try_recv() {
                let _ = q.done.send(Err(SendError::StreamEnded));
            }
            break;
        }
        match rx.recv().await {
            Some(q) => next = Some(q),
            None => break,
        }
    }
    let _ = send.finish();
}

/// Reads ACK and ERROR frames and resolves waiters; when the stream ends, every waiter left is Lost.
async fn ack_loop(mut recv: quinn::RecvStream, pending: Arc<Mutex<Pending>>) {
    let mut buf = Vec::new();
    'read: while let Ok(Some(chunk)) = recv.read_chunk(usize::MAX, true).await {
        buf.extend_from_slice(&chunk.bytes);
        let mut at = 0;
        loop {
            match frame::decode(&buf[at..]) {
                Ok(Decoded::Partial) => break,
                Err(_) => break 'read,
                Ok(Decoded::Frame(n, f)) => {
                    at += n;
                    let mut p = pending.lock().expect("not poisoned");
                    match f {
                        Ok(Frame::Ack(ids)) => {
                            for id in ids {
                                if let Some(w) = p.waiters.remove(&id) {
                                    let _ = w.send(Ok(()));
                                }
                            }
                        }
                        Ok(Frame::Error(e)) => match e.id.and_then(|id| p.waiters.remove(&id)) {
                            Some(w) => {
                                // The receiver stores nothing more from this stream: later sends take a new one.
                                if ErrorCode::parse(&e.code).is_transient() {
                                    p.halted = true;
                                }
                                let _ = w.send(Err(SendError::Refused(e)));
                            }
                            None => tracing::debug!(code = %e.code, "session error: {}", e.message),
                        },
                        Ok(Frame::Message(_)) | Err(_) => {
                            tracing::debug!("unexpected frame on a sending stream, ignored")
                        }
                    }
                }
            }
        }
        buf.drain(..at);
    }
    let mut p = pending.lock().expect("not poisoned");
    p.dead = true;
    p.waiters.clear();
}

/// Serves one stream the other side opened: reads MESSAGE frames in batches, answers ACK / ERROR frames.
pub(super) async fn serve_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    remote: PublicKey,
    inbox: Arc<dyn Inbox>,
    first: Vec<u8>,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut pending = Some(first);
    // Set by the first refusal for now: nothing later on this stream is stored.
    let mut halted = false;
    loop {
        match pending.take() {
            Some(bytes) => buf.extend_from_slice(&bytes),
            None => match recv.read_chunk(usize::MAX, true).await {
                Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
                _ => break,
            },
        }
        let mut batch = Vec::new();
        let mut at = 0;
        let mut too_large = None;
        loop {
            match frame::decode(&buf[at..]) {
                Ok(Decoded::Partial) => break,
                Err(e) => {
                    too_large = Some(e);
                    break;
                }
                Ok(Decoded::Frame(n, f)) => {
                    at += n;
                    match f {
                        Ok(Frame::Message(m)) => batch.push(m),
                        Ok(Frame::Ack(_) | Frame::Error(_)) => frame::encode_error(
                            &ErrorBody::new(
                                frame::code::UNKNOWN_FRAME_TYPE,
                                "ACK and ERROR frames go only from the receiver to the stream's opener",
                            ),
                            &mut out,
                        ),
                        Err(e) => frame::encode_error(&e, &mut out),
                    }
                }
            }
        }
        buf.drain(..at);
        for group in chunks(batch) {
            answer(group, remote, &*inbox, &mut out, &mut halted).await;
        }
        if let Some(e) = too_large {
            frame::encode_error(
                &ErrorBody::new(
                    frame::code::FRAME_TOO_LARGE,
                    format!("{e}; this stream is closed, open another"),
                ),
                &mut out,
            );
            let _ = send.write_all(&out).await;
            let _ = send.finish();
            let _ = recv.stop(STREAM_CLOSED_FRAME_TOO_LARGE);
            return;
        }
        if !out.is_empty() {
            if send.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    }
    let _ = send.finish();
}

fn chunks(mut batch: Vec<ChatMessage>) -> Vec<Vec<ChatMessage>> {
    let mut groups = Vec::new();
    while batch.len() > MAX_BATCH {
        let rest = batch.split_off(MAX_BATCH);
        groups.push(batch);
        batch = rest;
    }
    if !batch.is_empty() {
        groups.push(batch);
    }
    groups
}

/// Why a message that came after a refusal for now on the same stream is refused (`stream_halted`), by the
/// session layer or by an [`Inbox`].
pub const HALTED: &str = "an earlier message on this stream was refused for now, so nothing after it is stored; \
                          send them again, in order, on a new stream";

fn halted_error(id: MessageId) -> ErrorBody {
    ErrorBody::new(ErrorCode::StreamHalted, HALTED).with_id(id)
}

/// Checks each message of a batch, hands the good ones to the inbox, and writes the ACK and ERROR frames. A
/// refusal for now sets `halted`; once it is set, every message is refused `stream_halted` and not stored.
async fn answer(
    batch: Vec<ChatMessage>,
    remote: PublicKey,
    inbox: &dyn Inbox,
    out: &mut Vec<u8>,
    halted: &mut bool,
) {
    let mut accepted = Vec::with_capacity(batch.len());
    // Most batches come from one sender name: look its key up once.
    let mut known: Option<(PeerName, Option<PublicKey>)> = None;
    for m in batch {
        if *halted {
            frame::encode_error(&halted_error(m.id), out);
            continue;
        }
        if let Err(e) = m.check() {
            let err = ErrorBody::new(ErrorCode::InvalidField, e.to_string());
            frame::encode_error(&err.with_id(m.id), out);
            continue;
        }
        let key = match &known {
            Some((name, key)) if *name == m.from => *key,
            _ => {
                let key = inbox.key_of(&m.from).await;
                known = Some((m.from.clone(), key));
                key
            }
        };
        let refusal = match key {
            Some(k) if k == remote => None,
            Some(_) => Some(ErrorBody::new(
                ErrorCode::WrongSender,
                format!(
                    "this session is authenticated as another key than {}'s",
                    m.from
                ),
            )),
            None => Some(ErrorBody::new(
                ErrorCode::UnknownIdentity,
                format!("no key is known for {}", m.from),
            )),
        };
        match refusal {
            Some(err) => {
                *halted = ErrorCode::parse(&err.code).is_transient();
                frame::encode_error(&err.with_id(m.id), out);
            }
            None => accepted.push(m),
        }
    }
    if accepted.is_empty() {
        return;
    }
    let ids: Vec<MessageId> = accepted.iter().map(|m| m.id).collect();
    let results = inbox.deliver(remote, accepted).await;
    let mut acked = Vec::with_capacity(ids.len());
    for (i, id) in ids.into_iter().enumerate() {
        let refusal = match results.get(i) {
            // Stored: acked, even after a refusal for now (an inbox should not have stored it, but it did).
            Some(Ok(())) => {
                acked.push(id);
                continue;
            }
            Some(Err(e)) => e.clone(),
            None => ErrorBody::new(ErrorCode::Internal, "the inbox gave no answer"),
        };
        *halted |= ErrorCode::parse(&refusal.code).is_transient();
        frame::encode_error(&refusal.with_id(id), out);
    }
    frame::encode_ack(&acked, out);
}
