//! What became of this user's messages, and the receipts that tell a sender its held messages arrived.
//!
//! Each of this node's messages has a [`DeliveryState`] (the store keeps one per recipient once the message left
//! the outbox, and sums them up): `sending` while it waits in the outbox, `held` while the tracker's mailbox holds
//! it for someone offline, `delivered`, or `failed`. `/api/history` and the events carry it.
//!
//! A message pushed to its recipient is known `delivered` at once (the push's answer is signed by the recipient).
//! One the tracker held is not: the recipient fetches it later, from the tracker, not from us. So a node that has
//! stored messages from its mailbox tells each depositor, with a **delivered notice**: `POST /p2p/delivered`
//! `{"from","to","ids","sig"}`, `sig` the telling node's Ed25519 signature over [`notice_bytes`]. The sender checks it against the key the tracker binds to `from` (as it checks messages), and
//! marks those of its messages held for `from` delivered. Between nodes with sessions the notice goes on a request
//! stream of the session (the sender's key is then the handshake's too, and nothing of it is in the clear); to a
//! node without one, over HTTP. A forged notice (another key, another recipient's name,
//! an altered list) is refused with a stable code and changes nothing. A replayed one changes nothing either: it
//! can only say again what was true. Notices go out from one task through a bounded queue
//! ([`NOTICE_QUEUE`]); one that cannot be sent (the sender is offline) is dropped, and that message stays `held`
//! in the sender's view. Read receipts are not sent.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::Node;
use super::events::Event;
use super::outbox::Outcome;
use crate::http::ApiError;
use crate::identity::{AuthError, PublicKey, Signature};
use crate::proto::{ErrorCode, MAX_MAIL_BATCH, MessageId, PeerName};

/// Notices waiting to be sent at most; more are dropped (their messages stay `held` for their sender).
pub const NOTICE_QUEUE: usize = 256;
/// Messages one notice names at most (one mailbox page's worth).
pub const MAX_NOTICE_IDS: usize = MAX_MAIL_BATCH;

/// What became of a message, as the front ends show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting in this node's outbox for at least one recipient.
    Sending,
    /// The tracker holds it for a recipient that is offline.
    Held,
    /// Every recipient that could have it has it (or there was nobody to give it to); others' messages here.
    Delivered,
    /// Every recipient refused it.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Sending => "sending",
            DeliveryState::Held => "held",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    /// The state at one recipient after the outbox's outcome (`None`: still in the outbox).
    pub(crate) fn after(outcome: &Outcome) -> Option<DeliveryState> {
        match outcome {
            Outcome::Delivered => Some(DeliveryState::Delivered),
            Outcome::Held => Some(DeliveryState::Held),
            Outcome::Refused { .. } => Some(DeliveryState::Failed),
            Outcome::Queued(_) => None,
        }
    }
}

/// One message's new state (an element of the `states` event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateUpdate {
    pub id: MessageId,
    /// `#channel` or `@peer`.
    pub with: String,
    pub state: DeliveryState,
}

/// `POST /p2p/delivered`: `from`'s node holds these messages of `to`'s (they came from the tracker's mailbox).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveredNotice {
    pub from: PeerName,
    pub to: PeerName,
    pub ids: Vec<MessageId>,
    pub sig: Signature,
}

/// What a delivered notice's signature covers: a tag, who tells, whom, and each id on its own line, in order.
pub fn notice_bytes(from: &PeerName, to: &PeerName, ids: &[MessageId]) -> Vec<u8> {
    let mut s = format!("hchat-delivered-v1\n{from}\n{to}");
    for id in ids {
        s.push('\n');
        s.push_str(&id.hyphenated().to_string());
    }
    s.into_bytes()
}

/// A notice to send: to whom, for which of its messages.
type Notice = (PeerName, Vec<MessageId>);

/// The queue of notices to send, and its one consumer (taken by the task that sends them).
pub(crate) struct Notices {
    tx: mpsc::Sender<Notice>,
    rx: Mutex<Option<mpsc::Receiver<Notice>>>,
}

impl Default for Notices {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(NOTICE_QUEUE);
        Notices {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }
}

impl Node {
    /// The outbox's worker for `to` is done with these messages: record what became of each there, and tell the
    /// front ends of every message whose state changed.
    pub(super) async fn settle_outbox(
        &self,
        to: &PeerName,
        outcomes: Vec<(MessageId, Option<DeliveryState>)>,
    ) -> Result<usize, crate::storage::DbError> {
        let (updates, deleted) = self
            .inner
            .store
            .outbox_settled_counted(to, outcomes)
            .await?;
        if !updates.is_empty() {
            self.inner.events.publish(Event::States { updates });
        }
        Ok(deleted)
    }

    /// Queues a delivered notice to `depositor` for messages of its that this node has from the mailbox.
    pub(super) fn tell_delivered(&self, depositor: PeerName, ids: Vec<MessageId>) {
        for chunk in ids.chunks(MAX_NOTICE_IDS) {
            if self
                .inner
                .notices
                .tx
                .try_send((depositor.clone(), chunk.to_vec()))
                .is_err()
            {
                tracing::info!(peer = %self.name(), to = %depositor, "too many delivered notices waiting; one is dropped");
            }
        }
    }

    /// Sends the queued delivered notices, one at a time (a task of the node).
    pub(super) async fn send_notices(self) {
        let Some(mut rx) = crate::sync::lock(&self.inner.notices.rx).take() else {
            return;
        };
        let stop = self.inner.shutdown.clone();
        loop {
            let (to, ids) = tokio::select! {
                n = rx.recv() => match n { Some(n) => n, None => return },
                _ = stop.cancelled() => return,
            };
            if let Err(e) = self.send_notice(&to, ids).await {
                tracing::info!(peer = %self.name(), %to, "delivered notice not sent: {e}");
            }
        }
    }

    async fn send_notice(&self, to: &PeerName, ids: Vec<MessageId>) -> Result<(), String> {
        let at = self.locate(to).await.map_err(|e| e.to_string())?;
        let sig = self
            .inner
            .identity
            .sign(&notice_bytes(self.name(), to, &ids));
        let notice = DeliveredNotice {
            from: self.name().clone(),
            to: to.clone(),
            ids,
            sig,
        };
        if let Some(addr) = at.session_addr() {
            return self.send_notice_over_session(&at.name, addr, &notice).await;
        }
        let resp = self
            .inner
            .catch_up_http
            .post(format!("http://{}/p2p/delivered", at.addr()))
            .json(&notice)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        match resp.status().is_success() {
            true => Ok(()),
            false => Err(format!("{to} answered {}", resp.status())),
        }
    }

    /// Sends `notice` as `POST /p2p/delivered` on a request stream of the session with `to` at `addr` (direct,
    /// or through the tracker's relay, as messages go): who received which message stays between the two. A
    /// notice that cannot go this way is dropped, not sent in the clear.
    async fn send_notice_over_session(
        &self,
        to: &PeerName,
        addr: std::net::SocketAddr,
        notice: &DeliveredNotice,
    ) -> Result<(), String> {
        let Some(endpoint) = self.inner.link.as_ref() else {
            return Err("sessions are off on this node".into());
        };
        let key = self
            .vouched_key(to)
            .await
            .ok_or_else(|| format!("no key this node accepts for {to}"))?;
        let link = tokio::time::timeout(
            super::sessions::SESSION_DIAL_TIMEOUT,
            endpoint.link_via(self.on_link(addr), key),
        )
        .await
        .map_err(|_| format!("no session with {to} at {addr}"))?
        .map_err(|e| e.to_string())?;
        let body = serde_json::to_vec(notice).map_err(|e| e.to_string())?;
        let resp = link
            .request(&crate::link::Request {
                method: "POST".into(),
                path: "/p2p/delivered".into(),
                headers: [("content-type".to_string(), "application/json".to_string())].into(),
                body,
            })
            .await
            .map_err(|e| e.to_string())?;
        match resp.status {
            200..=299 => Ok(()),
            s => Err(format!(
                "{to} answered {s} over the session: {}",
                String::from_utf8_lossy(&resp.body)
            )),
        }
    }

    /// Serves `POST /p2p/delivered`: checks the notice against the key the tracker binds to its sender, marks
    /// the messages it names delivered, and tells the front ends. Returns how many changed state.
    pub async fn delivered_notice(&self, notice: DeliveredNotice) -> Result<usize, ApiError> {
        if &notice.to != self.name() {
            return Err(ApiError::of(
                ErrorCode::WrongRecipient,
                format!("this node is {}, not {}", self.name(), notice.to),
            ));
        }
        if notice.ids.is_empty() || notice.ids.len() > MAX_NOTICE_IDS {
            return Err(ApiError::unprocessable(
                ErrorCode::InvalidField,
                format!("ids: from 1 to {MAX_NOTICE_IDS}"),
            ));
        }
        let key = self.notice_key(&notice.from).await?;
        key.verify(
            &notice_bytes(&notice.from, &notice.to, &notice.ids),
            &notice.sig,
        )
        .map_err(ApiError::from)?;
        let changed = self
            .inner
            .store
            .mark_delivered(&notice.from, notice.ids)
            .await
            .map_err(|e| ApiError::of(ErrorCode::StoreFailed, e.to_string()))?;
        let n = changed.len();
        if n > 0 {
            let (updates, texts): (Vec<_>, Vec<_>) = changed.into_iter().unzip();
            self.inner.events.publish(Event::States { updates });
            self.inner.events.publish(Event::Receipt {
                peer: notice.from,
                count: n,
                last: texts.into_iter().last().unwrap_or_default(),
            });
        }
        Ok(n)
    }

    /// The key the tracker binds to `name`, cached as for messages: an answer (a key, or none) stands for
    /// [`KEY_RECHECK`](super::KEY_RECHECK), so a flood of notices under made-up names is not a flood of tracker
    /// requests. A key other than the one pinned for the name is refused (`key_changed`), as for messages.
    async fn notice_key(&self, name: &PeerName) -> Result<PublicKey, ApiError> {
        let key = self.notice_key_vouched(name).await?;
        if !self.pin_check(name, key).await {
            return Err(ApiError::of(
                ErrorCode::KeyChanged,
                format!("the tracker vouches for another key for {name} than the one pinned"),
            ));
        }
        Ok(key)
    }

    async fn notice_key_vouched(&self, name: &PeerName) -> Result<PublicKey, ApiError> {
        match self.inner.directory.key_of(name) {
            Some((Some(key), at)) if at.elapsed() < super::KEY_RECHECK => return Ok(key),
            Some((None, at)) if at.elapsed() < super::KEY_RECHECK => {
                return Err(AuthError::UnknownIdentity(name.clone()).into());
            }
            _ => {}
        }
        match self.ask_tracker_key(name).await {
            Ok(Some(key)) => Ok(key),
            Ok(None) => Err(AuthError::UnknownIdentity(name.clone()).into()),
            Err(e) => Err(ApiError::of(
                ErrorCode::CannotVerifySender,
                format!("{name}'s key cannot be checked now: {e}"),
            )),
        }
    }
}

/// `POST /p2p/delivered`: the recipient of messages the tracker held says it has them (see `peer::receipts`).
pub(super) async fn delivered_notice_receive(
    axum::extract::State(node): axum::extract::State<Node>,
    crate::http::ApiJson(notice): crate::http::ApiJson<DeliveredNotice>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let marked = node.delivered_notice(notice).await?;
    Ok(axum::Json(
        serde_json::json!({ "ok": true, "marked": marked }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_signature_covers_who_tells_whom_and_every_id_in_order() {
        let (a, b) = (PeerName::new("a").unwrap(), PeerName::new("b").unwrap());
        let ids = [MessageId::now_v7(), MessageId::now_v7()];
        let base = notice_bytes(&a, &b, &ids);
        assert_ne!(base, notice_bytes(&b, &a, &ids));
        assert_ne!(base, notice_bytes(&a, &b, &[ids[1], ids[0]]));
        assert_ne!(base, notice_bytes(&a, &b, &ids[..1]));
    }
}
