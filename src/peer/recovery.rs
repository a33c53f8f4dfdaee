//! Getting back what was sent while this node was away, by the two ways the hybrid design offers:
//! - the **mailbox**: what senders could not push is held by the tracker; the node fetches it, stores it, and only
//!   then acknowledges it, so the tracker deletes nothing that is not durable here;
//! - **catch-up**: channel messages nobody queued for us (our lease had expired, so senders did not list us) are
//!   fetched from online members of the channel (`GET /p2p/history`), a bounded window per channel: over a
//!   session with each member that takes them (the member knows the asker from the handshake, and nothing
//!   crosses in the clear), over HTTP with the others.
//!
//! One task does both, woken at start-up, when the tracker reports mail waiting, when it had forgotten us, and
//! when the user re-joins a channel.
//!
//! **Where catch-up starts cannot be steered by any member.** It used to start from the newest message id held,
//! and ids are chosen by senders: one signed message whose id was years ahead became the newest for good, and
//! every catch-up after it asked for messages from the future and got none. Now (issue 11):
//! - receivers refuse ids and `ts` more than [`MAX_CLOCK_AHEAD_MS`](crate::proto::MAX_CLOCK_AHEAD_MS) ahead of
//!   their clock (`future_message`);
//! - the start is [`PeerStore::catch_up_mark`](super::store::PeerStore::catch_up_mark): per message, its id's time
//!   capped by when this node stored it, i.e. this node's own clock; rows from before marks were kept count only
//!   if their id is not ahead of now. A sender can at most make its message count as "received now", which is
//!   what it is;
//! - answers are asked of up to [`CATCH_UP_SOURCES`] members, each checked message by message, so a member that
//!   answers nothing (or only refused messages) does not stand for the channel.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::inbox::Via;
use super::sessions::SESSION_DIAL_TIMEOUT;
use super::{Node, NodeError};
use crate::http::ApiError;
use crate::identity::{PublicKey, SealError, SealedMail};
use crate::proto::{
    ChannelName, ChatMessage, Destination, ErrorCode, MAX_MAIL_BATCH, MailKey, MessageId, PeerInfo,
    PeerName, first_id_at, id_ms, now_ms,
};
use crate::sync::lock;

/// Messages one `GET /p2p/history` answer carries at most.
pub(crate) const CATCH_UP_PAGE: usize = 500;
/// Messages fetched per channel and member in one catch-up at most.
pub(crate) const CATCH_UP_WINDOW: usize = 5_000;
/// Members asked per channel.
pub(crate) const CATCH_UP_SOURCES: usize = 3;
/// Catch-up starts this long before the newest message held, for senders whose clocks run behind.
pub(crate) const CATCH_UP_SKEW: Duration = Duration::from_secs(60);
/// Mailbox pages fetched in one drain at most (more are fetched at the next wake-up).
const DRAIN_PAGES: usize = 200;

/// What the recovery task has been asked to do.
#[derive(Default)]
pub(super) struct Wanted {
    pub(super) mailbox: bool,
    /// Channels to catch up on, each from the id after which messages are wanted.
    pub(super) channels: BTreeMap<ChannelName, MessageId>,
}

/// The recovery task's inbox.
#[derive(Default)]
pub(super) struct Recovery {
    pub(super) wanted: std::sync::Mutex<Wanted>,
    pub(super) wake: Notify,
}

/// `GET /p2p/history` query.
#[derive(Debug, Deserialize, Serialize)]
pub struct HistoryRequest {
    pub channel: String,
    /// Who asks: a live member of the channel; over a session, the name bound to the session's key; over HTTP, a
    /// member without sessions calling from the address it registered.
    pub name: String,
    /// Messages with an id above this one (default: from the start).
    pub after: Option<MessageId>,
    pub limit: Option<usize>,
}

/// `GET /p2p/history` answer.
#[derive(Debug, Deserialize, Serialize)]
pub struct HistoryPage {
    pub channel: ChannelName,
    pub messages: Vec<ChatMessage>,
    /// More messages follow the last one.
    pub more: bool,
}

/// Where catch-up starts for a conversation held up to `mark_ms` (this node's clock).
pub(crate) fn catch_up_from(mark_ms: u64) -> MessageId {
    first_id_at(mark_ms.saturating_sub(CATCH_UP_SKEW.as_millis() as u64))
}

/// The id the next catch-up page starts after, once a page ended with `last`: just below it, so that messages of
/// other senders under the same id (a page may end between them) are asked for again rather than skipped; `last`
/// itself only when a whole page shared that id (the next page must move on).
fn next_after(after: MessageId, last: MessageId) -> MessageId {
    let below = MessageId::from_u128(last.as_u128().saturating_sub(1));
    if below > after { below } else { last }
}

impl Node {
    /// Asks the recovery task to drain the mailbox and/or catch up on channels.
    pub(super) fn want_recovery(&self, mailbox: bool, channels: Vec<(ChannelName, MessageId)>) {
        {
            let mut w = lock(&self.inner.recovery.wanted);
            w.mailbox |= mailbox;
            for (c, after) in channels {
                let e = w.channels.entry(c).or_insert(after);
                *e = (*e).min(after);
            }
        }
        self.inner.recovery.wake.notify_one();
    }

    /// Where catch-up on `channel` should start: just before the time up to which this node holds it (never
    /// beyond its own clock, see the module doc), else before joining.
    pub(super) async fn catch_up_mark(
        &self,
        channel: &ChannelName,
        since: Option<MessageId>,
    ) -> Result<Option<MessageId>, NodeError> {
        let now = now_ms();
        let held = self
            .inner
            .store
            .catch_up_mark(&Destination::Channel(channel.clone()), now)
            .await?;
        // `since` is an id this node made when it joined; capped all the same, as a store may outlive a clock.
        let joined = since.map(|s| id_ms(&s).min(now));
        Ok(held.into_iter().chain(joined).max().map(catch_up_from))
    }

    /// The recovery task.
    pub(super) async fn recover(self) {
        let stop = self.inner.shutdown.clone();
        loop {
            tokio::select! {
                _ = self.inner.recovery.wake.notified() => {}
                _ = stop.cancelled() => return,
            }
            let wanted = std::mem::take(&mut *lock(&self.inner.recovery.wanted));
            self.missed_pass_begins();
            if wanted.mailbox
                && let Err(e) = self.drain_mailbox().await
                // A node stopping while it fetches says nothing: its exit line says why it stops.
                && !self.inner.lease.is_leaving()
            {
                tracing::warn!(peer = %self.name(), "cannot fetch the mailbox now: {e}");
                // Asked again at the next renewal that reports mail waiting.
            }
            let mut caught_up = Vec::new();
            for (channel, after) in wanted.channels {
                if !self.is_joined(&channel) {
                    continue;
                }
                match self.catch_up(&channel, after).await {
                    Ok(0) => {}
                    Ok(n) => caught_up.push(format!(
                        "caught up on #{channel}: {n} message(s) you missed (/history #{channel} shows them)"
                    )),
                    Err(e) => tracing::warn!(peer = %self.name(), %channel, "catch-up failed: {e}"),
                }
            }
            // The messages first, in place; then the summary of each catch-up.
            self.show_missed();
            caught_up.into_iter().for_each(|n| self.notice(n));
        }
    }

    /// Fetches, stores and acknowledges everything the tracker holds for this node.
    async fn drain_mailbox(&self) -> Result<usize, NodeError> {
        let t = &self.inner.tracker;
        let me = self.name();
        let mut total = 0;
        for _ in 0..DRAIN_PAGES {
            let page = self.tracked(|| t.fetch_mail(me, MAX_MAIL_BATCH)).await?;
            if page.entries.is_empty() {
                break;
            }
            let mut msgs = Vec::new();
            let mut acks = Vec::new();
            let mut unattributed = Vec::new();
            for e in &page.entries {
                let Some(depositor) = e.from.clone() else {
                    // Not a message (a tracker names every depositor): dropped, by id as it has no other key.
                    unattributed.push(e.id);
                    continue;
                };
                // Acknowledged by depositor and id: another depositor's entry under the same id stays held.
                acks.push(MailKey {
                    from: depositor.clone(),
                    id: e.id,
                });
                match self.unseal(e.envelope.get()) {
                    Ok(m) if m.id == e.id => msgs.push((m, Via::Mailbox { depositor })),
                    Ok(_) => {
                        tracing::warn!(peer = %me, id = %e.id, "dropping held mail that is not a valid message")
                    }
                    // Refused like any message that fails a check (one warning, never stored or shown), and
                    // acknowledged: it will not open later either.
                    Err(err) => {
                        tracing::warn!(peer = %me, id = %e.id, from = %depositor, "refused held mail: {err} ({})", err.code())
                    }
                }
            }
            let senders: Vec<(PeerName, MessageId)> =
                msgs.iter().map(|(m, _)| (m.from.clone(), m.id)).collect();
            let verdicts = self
                .receive_many(msgs)
                .await
                .map_err(|e| NodeError::NotDelivered {
                    peer: me.clone(),
                    error: e.message,
                })?;
            total += verdicts.iter().filter(|v| matches!(v, Ok(false))).count();
            // Not checkable now (the tracker could not say who may post): keep it held and try again later.
            if let Some(e) = verdicts
                .iter()
                .filter_map(|v| v.as_ref().err())
                .find(|e| e.status.is_server_error())
            {
                return Err(NodeError::NotDelivered {
                    peer: me.clone(),
                    error: e.message.clone(),
                });
            }
            for v in verdicts.iter().filter_map(|v| v.as_ref().err()) {
                tracing::info!(peer = %me, "dropping held mail: {}", v.message);
            }
            // Stored (or refused for good): the tracker may forget them now.
            self.tracked(|| t.ack_mail(me, acks.clone(), unattributed.clone()))
                .await?;
            // Each sender may now show its held messages as delivered.
            let mut stored: BTreeMap<PeerName, Vec<MessageId>> = BTreeMap::new();
            for ((from, id), v) in senders.into_iter().zip(&verdicts) {
                if v.is_ok() {
                    stored.entry(from).or_default().push(id);
                }
            }
            for (from, ids) in stored {
                self.tell_delivered(from, ids);
            }
            if !page.more {
                break;
            }
        }
        if total > 0 {
            tracing::info!(peer = %me, "{total} message(s) from the mailbox");
        }
        Ok(total)
    }

    /// The message in a held envelope: sealed mail opened with this node's key (and its outside matching its
    /// inside), or a plaintext message as trackers held them before mail was sealed (deposited by an older peer
    /// before its tracker refused unsealed mail; its signature is checked all the same).
    fn unseal(&self, envelope: &str) -> Result<ChatMessage, SealError> {
        match serde_json::from_str::<SealedMail>(envelope) {
            Ok(sealed) => sealed.open(&self.inner.identity, self.name()),
            Err(_) => serde_json::from_str::<ChatMessage>(envelope)
                .map_err(|e| SealError::NotAMessage(e.to_string())),
        }
    }

    /// Fetches `channel`'s messages after `after` from up to [`CATCH_UP_SOURCES`] online members; returns how many
    /// were new here.
    async fn catch_up(&self, channel: &ChannelName, after: MessageId) -> Result<usize, NodeError> {
        let members = self.peers(Some(channel)).await?;
        let mut new = 0;
        for m in members
            .iter()
            .filter(|m| &m.name != self.name())
            .take(CATCH_UP_SOURCES)
        {
            match self.catch_up_from_member(channel, after, m).await {
                Ok(n) => new += n,
                Err(e) => tracing::debug!(peer = %self.name(), from = %m.name, "catch-up: {e}"),
            }
        }
        Ok(new)
    }

    async fn catch_up_from_member(
        &self,
        channel: &ChannelName,
        mut after: MessageId,
        member: &PeerInfo,
    ) -> Result<usize, String> {
        let mut fetched = 0;
        let mut new = 0;
        while fetched < CATCH_UP_WINDOW {
            let query = HistoryRequest {
                channel: channel.to_string(),
                name: self.name().to_string(),
                after: Some(after),
                limit: Some(CATCH_UP_PAGE),
            };
            let query = serde_urlencoded::to_string(&query).map_err(|e| e.to_string())?;
            let page = self.history_page(member, &query).await?;
            let Some(last) = page.messages.last().map(|m| m.id) else {
                break;
            };
            fetched += page.messages.len();
            let batch = page
                .messages
                .into_iter()
                .map(|m| {
                    (
                        m,
                        Via::CatchUp {
                            channel: channel.clone(),
                        },
                    )
                })
                .collect();
            let verdicts = self.receive_many(batch).await.map_err(|e| e.message)?;
            new += verdicts.iter().filter(|v| matches!(v, Ok(false))).count();
            if !page.more {
                break;
            }
            after = next_after(after, last);
        }
        Ok(new)
    }

    /// One page of `member`'s history: over a session when both sides take them (the answer is then private, and
    /// the member knows who asks from the handshake), else over HTTP (the member checks the source address).
    async fn history_page(&self, member: &PeerInfo, query: &str) -> Result<HistoryPage, String> {
        let path = format!("/p2p/history?{query}");
        let session = member.session_addr().map(|a| self.on_link(a));
        let (Some(addr), Some(endpoint)) = (session, self.inner.link.as_ref()) else {
            let url = format!("http://{}{path}", member.addr());
            let resp = self
                .inner
                .catch_up_http
                .get(url)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("{} answered {}", member.addr(), resp.status()));
            }
            return resp.json().await.map_err(|e| e.to_string());
        };
        let key = self
            .vouched_key(&member.name)
            .await
            .ok_or_else(|| format!("no key this node accepts for {}", member.name))?;
        let link = tokio::time::timeout(SESSION_DIAL_TIMEOUT, endpoint.link(addr, key))
            .await
            .map_err(|_| format!("no session with {addr} within {SESSION_DIAL_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        let resp = link
            .request(&crate::link::Request {
                method: "GET".into(),
                path,
                headers: BTreeMap::new(),
                body: Vec::new(),
            })
            .await
            .map_err(|e| e.to_string())?;
        if resp.status != 200 {
            return Err(format!(
                "{} answered {} over the session: {}",
                member.name,
                resp.status,
                String::from_utf8_lossy(&resp.body)
            ));
        }
        serde_json::from_slice(&resp.body).map_err(|e| e.to_string())
    }

    /// A member the channel's list left out (it is invisible): the tracker's channel info says it is a member,
    /// and `connect-peer` where it is.
    async fn invisible_member(
        &self,
        channel: &ChannelName,
        asker: &PeerName,
    ) -> Result<PeerInfo, ApiError> {
        let not_member = || {
            ApiError::of(
                ErrorCode::NotMember,
                format!("the tracker does not list {asker} in #{channel}"),
            )
        };
        let info = self.channel_info(channel).await.map_err(ApiError::from)?;
        if !info.members.iter().any(|m| &m.name == asker) {
            return Err(not_member());
        }
        self.inner
            .tracker
            .lookup(asker)
            .await
            .map_err(|_| not_member())
    }

    /// Serves `GET /p2p/history`: a channel's messages to a live member of it. Over a session (`session`: the key
    /// the dialler proved) the asker must be the name bound to that key, as the tracker vouches for it and this
    /// node pinned it. Over HTTP only a member that takes no sessions is answered (from its registered address):
    /// a member that does is refused `use_session`, so its history never crosses in the clear.
    pub async fn history_for_member(
        &self,
        req: HistoryRequest,
        remote: SocketAddr,
        session: Option<PublicKey>,
    ) -> Result<HistoryPage, ApiError> {
        let channel = ChannelName::parse_user(&req.channel)
            .map_err(|e| ApiError::of(ErrorCode::BadQuery, format!("channel: {e}")))?;
        let asker = PeerName::new(req.name.as_str())
            .map_err(|e| ApiError::of(ErrorCode::BadQuery, format!("name: {e}")))?;
        let limit = req.limit.unwrap_or(CATCH_UP_PAGE);
        if limit == 0 || limit > CATCH_UP_PAGE {
            return Err(ApiError::of(
                ErrorCode::BadQuery,
                format!("limit: from 1 to {CATCH_UP_PAGE}"),
            ));
        }
        if !self.is_joined(&channel) {
            return Err(ApiError::of(
                ErrorCode::NotJoined,
                format!("{} is not in #{channel}", self.name()),
            ));
        }
        let members = self.peers(Some(&channel)).await.map_err(ApiError::from)?;
        let member = match members.into_iter().find(|m| m.name == asker) {
            Some(m) => m,
            // Lists leave invisible members out: ask about this one alone.
            None => self.invisible_member(&channel, &asker).await?,
        };
        if let Some(proved) = session {
            // The session's key, not the query's name, says who asks.
            if self.vouched_key(&asker).await != Some(proved) {
                return Err(ApiError::of(
                    ErrorCode::ForgedSender,
                    format!("this session is authenticated as another key than {asker}'s"),
                ));
            }
        } else if member.quic_port.is_some() {
            return Err(ApiError::of(
                ErrorCode::UseSession,
                format!(
                    "{asker} takes sessions: it asks for #{channel}'s history over one, never in the clear"
                ),
            ));
        } else if !(member.ip == remote.ip()
            || (member.ip.is_loopback() && remote.ip().is_loopback()))
        {
            return Err(ApiError::of(
                ErrorCode::WrongAddress,
                format!(
                    "{asker} is registered at {}, not at {}",
                    member.ip,
                    remote.ip()
                ),
            ));
        }
        let mut messages = self
            .inner
            .store
            .channel_after(&channel, req.after.unwrap_or(MessageId::nil()), limit + 1)
            .await
            .map_err(|e| ApiError::of(crate::proto::ErrorCode::StoreFailed, e.to_string()))?;
        let more = messages.len() > limit;
        messages.truncate(limit);
        Ok(HistoryPage {
            channel,
            messages,
            more,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_page_ending_inside_an_id_then_the_next_page_asks_for_that_id_again() {
        let after = first_id_at(1_000);
        let last = first_id_at(2_000);
        let next = next_after(after, last);
        assert!(next < last && next > after);
        // A page all under one id: move on past it.
        let below = MessageId::from_u128(last.as_u128() - 1);
        assert_eq!(next_after(below, last), last);
    }

    #[test]
    fn catch_up_starts_a_skew_before_the_mark_and_never_beyond_it() {
        let mark = 10_000_000;
        let from = catch_up_from(mark);
        assert_eq!(id_ms(&from), mark - CATCH_UP_SKEW.as_millis() as u64);
    }
}
