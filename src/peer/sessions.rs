//! The peer's sessions (docs/SESSIONS.md): what lets peers carry messages to each other over identity-bound QUIC
//! connections instead of one plaintext HTTP request per push.
//!
//! - **Listening**: [`SessionInbox`] is the [`Inbox`] the node's [`Endpoint`] serves. It answers who a name is
//!   from the node's directory (the tracker's word, checked against this node's pins), and stores a batch through
//!   the same checks as `POST /p2p/receive-batch` ([`Via::Session`]), so a message is acked only once stored.
//! - **Sending**: [`Node::push_session`] carries a batch over the pooled session to the recipient's advertised
//!   `quic_port`, dialled expecting the key the tracker vouches for; its ack replaces the signed HTTP receipt (the
//!   handshake proved the key). The outbox ([`super::outbox`]) decides when, and what to do when it fails.
//! - **Requests**: [`PeerRequests`] answers request streams with the `/p2p/*` routes (catch-up's
//!   `GET /p2p/history` is asked this way, so the member knows the asker from the handshake and the history
//!   crosses encrypted); peers take no subscriptions.
//! - **Counting**: [`Pushes`], how many messages went and came each way, shown in `GET /health` so tests and
//!   operators can tell which path carried them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Serialize;

use super::delivery::{DeliveryError, Pushed};
use super::inbox::Via;
use super::{Inner, Node};
use tokio::sync::mpsc;

use crate::http::RouterOverSession;
use crate::http::rate_limit::RateLimiter;
use crate::identity::PublicKey;
use crate::link::{
    Caller, ErrorBody, Inbox, LaneId, LinkError, Request, Response, SendError, Service,
};
use crate::proto::{ChatMessage, ErrorCode, ErrorDetail, PeerName};

/// A session dial to a peer that has not completed its handshake in this time fails (the link's own limit is
/// longer; a peer on a LAN answers in milliseconds, and a dead one must not hold its outbox worker long).
pub(super) const SESSION_DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// A session over which nothing at all came back this long after a batch was sent is taken for dead: the attempt
/// fails (what was sent is in doubt and is sent again; ids are deduplicated), as an HTTP push to a closed port.
pub(super) const SESSION_SILENCE: Duration = Duration::from_secs(1);

/// Which UDP port a peer takes sessions on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QuicPort {
    /// The HTTP port's number (any free port if that UDP port is taken).
    #[default]
    SameAsHttp,
    /// This one (0: any free port); failing to bind it fails the start.
    Port(u16),
    /// No sessions: the peer registers no `quic_port` and pushes over HTTP only (what an implementation without
    /// sessions does; tests and the benchmark's "before" use it).
    Off,
}

impl std::str::FromStr for QuicPort {
    type Err = String;
    fn from_str(s: &str) -> Result<QuicPort, String> {
        match s {
            "off" => Ok(QuicPort::Off),
            p => p
                .parse::<u16>()
                .map(QuicPort::Port)
                .map_err(|_| format!("{p:?}: a UDP port (0: any free one) or `off`")),
        }
    }
}

/// Messages carried each way, by path (since this start).
#[derive(Debug, Default)]
pub(super) struct Pushes {
    session_out: AtomicU64,
    http_out: AtomicU64,
    session_in: AtomicU64,
    http_in: AtomicU64,
    relayed_out: AtomicU64,
    relayed_in: AtomicU64,
}

/// [`Pushes`] as `GET /health` shows them.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct PushCounts {
    /// Messages this node pushed that a recipient acked over a session.
    pub session_out: u64,
    /// Messages this node pushed that a recipient stored over HTTP (`/p2p/receive`, `/p2p/receive-batch`).
    pub http_out: u64,
    /// Messages stored (new or duplicate) that arrived over a session.
    pub session_in: u64,
    /// Messages stored (new or duplicate) that arrived by `POST /p2p/receive` or `/p2p/receive-batch`.
    pub http_in: u64,
    /// Of `session_out`, those whose session went through the tracker's relay (docs/SESSIONS.md, 12).
    pub relayed_out: u64,
    /// Of `session_in`, those that came over a relayed session.
    pub relayed_in: u64,
}

impl Pushes {
    pub(super) fn sent(&self, session: bool, n: usize) {
        let c = if session {
            &self.session_out
        } else {
            &self.http_out
        };
        c.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(super) fn received(&self, session: bool, n: usize) {
        let c = if session {
            &self.session_in
        } else {
            &self.http_in
        };
        c.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(super) fn relayed(&self, out: bool, n: usize) {
        let c = if out {
            &self.relayed_out
        } else {
            &self.relayed_in
        };
        c.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(super) fn counts(&self) -> PushCounts {
        PushCounts {
            session_out: self.session_out.load(Ordering::Relaxed),
            http_out: self.http_out.load(Ordering::Relaxed),
            session_in: self.session_in.load(Ordering::Relaxed),
            http_in: self.http_in.load(Ordering::Relaxed),
            relayed_out: self.relayed_out.load(Ordering::Relaxed),
            relayed_in: self.relayed_in.load(Ordering::Relaxed),
        }
    }
}

/// The node's side of its endpoint: set once the node is assembled (the endpoint is bound first, since the
/// node advertises its port), and holding the node weakly so a stopped node is not kept alive by its listener.
#[derive(Default)]
pub(super) struct SessionInbox {
    node: OnceLock<Weak<Inner>>,
}

impl SessionInbox {
    pub(super) fn attach(&self, node: &Node) {
        let _ = self.node.set(Arc::downgrade(&node.inner));
    }

    fn node(&self) -> Option<Node> {
        let inner = self.node.get()?.upgrade()?;
        let node = Node { inner };
        (!node.inner.shutdown.is_cancelled()).then_some(node)
    }
}

impl Inbox for SessionInbox {
    fn key_of<'a>(&'a self, name: &'a PeerName) -> BoxFuture<'a, Option<PublicKey>> {
        Box::pin(async move { self.node()?.vouched_key(name).await })
    }

    fn deliver(
        &self,
        from: PublicKey,
        batch: Vec<ChatMessage>,
    ) -> BoxFuture<'_, Vec<Result<(), ErrorBody>>> {
        Box::pin(async move {
            let n = batch.len();
            let Some(node) = self.node() else {
                let e = ErrorBody::new(ErrorCode::Stopping, "this node is stopping");
                return vec![Err(e); n];
            };
            let sender = batch.first().map(|m| m.from.clone());
            let msgs = batch
                .into_iter()
                .map(|m| (m, Via::Session { key: from }))
                .collect();
            match node.receive_many(msgs).await {
                Ok(verdicts) => {
                    let stored = verdicts.iter().filter(|v| v.is_ok()).count();
                    node.note_session_in(from, sender.as_ref(), stored);
                    verdicts
                        .into_iter()
                        .map(|v| v.map(|_| ()).map_err(|e| ErrorBody::new(e.code, e.message)))
                        .collect()
                }
                Err(e) => vec![Err(ErrorBody::new(e.code, e.message)); n],
            }
        })
    }
}

/// What the node's endpoint answers request streams with: its `/p2p/*` routes only ([`super::routes::p2p`]),
/// never the local API, behind the TCP server's rate limiter, with the dialler's key as a
/// [`SessionKey`](crate::http::SessionKey). It holds the node weakly (through the [`SessionInbox`]), as the
/// inbox does, so the endpoint keeps no stopped node alive; the router is built per request for that reason.
pub(super) struct PeerRequests {
    pub(super) inbox: Arc<SessionInbox>,
    pub(super) limiter: Arc<RateLimiter>,
    pub(super) per_second: u32,
    pub(super) request_timeout: Duration,
}

impl Service for PeerRequests {
    fn request(&self, caller: Caller, req: Request) -> BoxFuture<'_, Response> {
        Box::pin(async move {
            let Some(node) = self.inbox.node() else {
                let body = serde_json::to_vec(&crate::proto::ErrorBody {
                    error: ErrorDetail {
                        code: ErrorCode::Stopping.to_string(),
                        message: "this node is stopping".into(),
                    },
                })
                .expect("serializes");
                return Response {
                    status: ErrorCode::Stopping.status(),
                    headers: [("content-type".to_string(), "application/json".to_string())].into(),
                    body,
                };
            };
            let app = crate::http::with_limits(super::routes::p2p(node), self.request_timeout);
            RouterOverSession::new(app, self.limiter.clone(), self.per_second)
                .answer(caller, req)
                .await
        })
    }

    fn subscribe(
        &self,
        _caller: Caller,
        _payload: Vec<u8>,
    ) -> BoxFuture<'_, Result<mpsc::Receiver<Vec<u8>>, ErrorBody>> {
        Box::pin(async {
            Err(ErrorBody::new(
                ErrorCode::UnknownFrameType,
                "a peer takes no subscriptions",
            ))
        })
    }
}

impl Node {
    /// The key the tracker vouches for `name` (cached for a while, as for checking HTTP pushes), unless it is not
    /// the key this node has pinned for the name: then none (nothing is accepted from it) and a loud warning.
    pub(super) async fn vouched_key(&self, name: &PeerName) -> Option<PublicKey> {
        let cached = self.inner.directory.key_of(name);
        let key = match cached {
            Some((key, at)) if at.elapsed() < super::KEY_RECHECK => key,
            _ => match self.inner.tracker.identity(name).await {
                Ok(key) => {
                    self.inner.directory.cache_key(name.clone(), Some(key));
                    Some(key)
                }
                Err(super::TrackerError::Refused {
                    code: ErrorCode::UnknownIdentity,
                    ..
                }) => {
                    self.inner.directory.cache_key(name.clone(), None);
                    None
                }
                // The tracker is down: a cached key stands.
                Err(_) => cached.and_then(|(k, _)| k),
            },
        }?;
        self.pin_check(name, key).await.then_some(key)
    }

    /// Pushes `batch` (in order) to `to` over a session at `addr`, which must prove `key`. An ack means stored:
    /// the handshake proved whom the session is with, so no receipt is needed. A node presenting another key
    /// gets nothing and is [`DeliveryError::BadAnswer`]; no session, or answers missing, is worth retrying.
    ///
    /// The batch goes on one lane (sending stream): `on`'s if given, and then not at all if that lane has ended
    /// (a pipeline's batches follow the one that proved the lane, and none may be stored ahead of an earlier one
    /// that failed there). Returns the lane used, for the batches that follow.
    pub(super) async fn push_session(
        &self,
        addr: SocketAddr,
        to: &PeerName,
        key: PublicKey,
        batch: &[ChatMessage],
        on: Option<LaneId>,
    ) -> Result<(Vec<Pushed>, LaneId), DeliveryError> {
        let Some(endpoint) = self.inner.link.as_ref() else {
            return Err(DeliveryError::Unreachable("sessions are off".into()));
        };
        let link =
            match tokio::time::timeout(SESSION_DIAL_TIMEOUT, endpoint.link_via(addr, key)).await {
                Err(_) => {
                    return Err(DeliveryError::Unreachable(format!(
                        "no session with {addr} within {SESSION_DIAL_TIMEOUT:?}"
                    )));
                }
                Ok(Err(e @ LinkError::WrongKey { .. })) => {
                    return Err(DeliveryError::BadAnswer(format!("not {to}: {e}")));
                }
                Ok(Err(e)) => return Err(DeliveryError::Unreachable(e.to_string())),
                Ok(Ok(link)) => link,
            };
        // Polled in order, each send queues its frame before the next: one write, order kept.
        let heard = link.datagrams_received();
        let lane = on.unwrap_or_else(|| link.lane());
        let sends = futures_util::future::join_all(batch.iter().map(|m| link.send_on(lane, m)));
        tokio::pin!(sends);
        let results = tokio::select! {
            r = &mut sends => r,
            _ = tokio::time::sleep(SESSION_SILENCE) => {
                // A live receiver's transport acknowledges our packets within a round trip, however slow its
                // store; nothing at all back means it is gone (QUIC itself would notice only at the idle timeout):
                // drop the connection, so the next attempt dials afresh and the outbox moves on.
                if link.datagrams_received() == heard {
                    link.close();
                    return Err(DeliveryError::Unreachable(format!(
                        "no answer over the session within {SESSION_SILENCE:?}"
                    )));
                }
                // Alive: each send waits for its answer up to the link's own limit.
                sends.await
            }
        };
        let mut verdicts = Vec::with_capacity(results.len());
        for r in results {
            match r {
                Ok(()) => verdicts.push(Pushed::Stored),
                Err(SendError::Refused(body)) => {
                    let code = ErrorCode::parse(&body.code);
                    // Refusals a receiver may lift by itself (its store, its tracker, its start-up): the batch is
                    // tried again, and goes to the mailbox if they last. `unknown_identity` is one on a session:
                    // this sender is registered (it found the recipient through the tracker), so a receiver that
                    // knows no key for it could not ask its tracker now or no longer accepts the key: the mailbox
                    // carries it, and the receiver checks it again when it drains it. Such a refusal also halted
                    // the stream (`stream_halted` for what followed), so the retry goes out on a new one, in order.
                    if code.is_transient() {
                        return Err(DeliveryError::Unavailable {
                            code,
                            message: body.message,
                        });
                    }
                    verdicts.push(Pushed::Refused {
                        code,
                        message: body.message,
                    });
                }
                Err(e @ (SendError::Lost | SendError::Timeout)) => {
                    link.close();
                    return Err(DeliveryError::Unreachable(e.to_string()));
                }
                Err(SendError::NoLink(e)) => return Err(DeliveryError::Unreachable(e.to_string())),
                // Not sent: the lane ended or was halted before (a new connection, or a refusal for now).
                Err(e @ SendError::StreamEnded) => {
                    return Err(DeliveryError::Unavailable {
                        code: ErrorCode::StreamHalted,
                        message: e.to_string(),
                    });
                }
                Err(SendError::TooLarge(e)) => verdicts.push(Pushed::Refused {
                    code: ErrorCode::InvalidField,
                    message: e.to_string(),
                }),
            }
        }
        let stored = verdicts.iter().filter(|v| **v == Pushed::Stored).count();
        self.inner.pushes.sent(true, stored);
        if link.is_relayed() {
            self.inner.pushes.relayed(true, stored);
        }
        self.note_path(to, key, link.is_relayed());
        Ok((verdicts, lane))
    }

    /// Counts messages that came over a session with `from` (relayed or not) and notes its path for `sender`.
    fn note_session_in(&self, from: PublicKey, sender: Option<&PeerName>, stored: usize) {
        let relayed = self
            .inner
            .link
            .as_ref()
            .and_then(|e| e.pooled_link(&from))
            .is_some_and(|l| l.is_relayed());
        if relayed {
            self.inner.pushes.relayed(false, stored);
        }
        if let Some(sender) = sender.filter(|_| stored > 0) {
            self.note_path(sender, from, relayed);
        }
    }

    /// How many messages went and came over sessions and over HTTP since this start.
    pub fn push_counts(&self) -> PushCounts {
        self.inner.pushes.counts()
    }

    /// Where this node takes sessions, if it does.
    pub fn session_addr(&self) -> Option<SocketAddr> {
        self.inner.link.as_ref().map(|e| e.local_addr())
    }
}
