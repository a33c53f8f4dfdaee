//! Receiving: the checks a message passes before it is stored and shown, whichever way it came. It must be for
//! this node (its own name, or a channel it has joined), not claim to be from this node, have a valid text, and
//! an id and `ts` not ahead of this node's clock by more than
//! [`MAX_CLOCK_AHEAD_MS`](crate::proto::MAX_CLOCK_AHEAD_MS) (422 `future_message`: such an id would sort after
//! everything said for years, and used to stop catch-up).
//! Then, by the way it came:
//! - from the tracker's mailbox: the envelope must name the peer that deposited it as its sender;
//! - by catch-up: it must belong to the channel asked about.
//!
//! And always: it must be signed by its sender's key, as the tracker vouches for it (`GET /identity`, or the keys
//! in its answers), kept in a bounded cache so the tracker is not asked per message. A message that does not
//! verify is refused (401), never stored or shown, and logged as one warning.
//!
//! A channel message, however it came, must also be from a member the tracker says may post (not a visitor, not
//! banned or removed), and this node must still be a member ([`access`](super::access), 403 `not_allowed`).
//!
//! Accepted messages are committed in one transaction, and only then answered and shown. A message is identified
//! by its sender and id: the same id from another sender is another message, stored and shown beside the first
//! (so nobody can bury alice's message by using its id first); the same sender and id again is a duplicate,
//! accepted and not shown again.

use std::collections::{HashMap, HashSet};

use super::tracker_client::TrackerError;
use super::{KEY_RECHECK, Node};

use crate::http::ApiError;
use crate::identity::{AuthError, PublicKey, verify_message, verify_messages};
use crate::proto::{ChannelName, ChatMessage, Destination, ErrorCode, PeerName, now_ms};

/// How a message reached this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// Pushed by its sender (`POST /p2p/receive`, `/p2p/receive-batch`).
    Direct,
    /// Held by the tracker; deposited by this peer.
    Mailbox { depositor: PeerName },
    /// Fetched from a member of this channel.
    CatchUp { channel: ChannelName },
    /// Pushed by its sender over a session authenticated as `key`: the session layer has checked that `from` is
    /// bound to that key (docs/SESSIONS.md), so the signature is kept but not verified again.
    Session { key: PublicKey },
}

/// Fewest signatures checked as one batch (examples/verify_bench.rs: a batch of 4 costs ~0.7 of checking each,
/// of 128 ~0.55; a single one costs more in a batch).
const BATCH_MIN: usize = 4;

/// Each message's verdict: `Ok(true)` stored before (duplicate: same sender, same id), `Ok(false)` new, `Err`
/// refused.
pub(crate) type Verdicts = Vec<Result<bool, ApiError>>;

impl Node {
    /// Accepts a message from another peer. `Ok(true)` means it was a duplicate.
    pub async fn receive(&self, msg: ChatMessage) -> Result<bool, ApiError> {
        self.receive_many(vec![(msg, Via::Direct)])
            .await?
            .pop()
            .expect("one verdict per message")
    }

    /// Checks, stores (one transaction) and shows messages; a verdict per message, in order. `Err` only when
    /// nothing could be stored. Of messages that came over a session, nothing after a refusal for now
    /// ([`ErrorCode::is_transient`]) is stored (`stream_halted`): its sender sends them again after the refused
    /// one, and they must not be stored ahead of it (docs/SESSIONS.md, 4).
    pub async fn receive_many(&self, msgs: Vec<(ChatMessage, Via)>) -> Result<Verdicts, ApiError> {
        let mut allowed: HashMap<(ChannelName, PeerName), Result<(), ApiError>> = HashMap::new();
        let mut verdicts: Vec<Option<Result<bool, ApiError>>> = Vec::with_capacity(msgs.len());
        let mut accepted = Vec::new();
        let verified = self.verify_together(&msgs).await;
        let mut halted = false;
        for (i, (msg, via)) in msgs.iter().enumerate() {
            let on_session = matches!(via, Via::Session { .. });
            if halted && on_session {
                let halted = ApiError::of(ErrorCode::StreamHalted, crate::link::HALTED);
                verdicts.push(Some(Err(halted)));
                continue;
            }
            let mut check = self.check(msg, via);
            if check.is_ok() && !matches!(via, Via::Session { .. }) && !verified.contains(&i) {
                check = self.verify_sender(msg).await;
                if let Err(e) = &check {
                    tracing::warn!(peer = %self.name(), id = %msg.id, from = %msg.from, ?via, "refused a message: {} ({})", e.message, e.code);
                }
            }
            if check.is_ok()
                && let Destination::Channel(c) = &msg.dest
            {
                let k = (c.clone(), msg.from.clone());
                if !allowed.contains_key(&k) {
                    let v = self.check_may_post(c, &msg.from).await;
                    allowed.insert(k.clone(), v);
                }
                check = allowed[&k].clone();
            }
            match check {
                Ok(()) => {
                    verdicts.push(None);
                    accepted.push(msg.clone());
                }
                Err(e) => {
                    halted |= on_session && e.code.is_transient();
                    verdicts.push(Some(Err(e)));
                }
            }
        }
        let new = if accepted.is_empty() {
            Vec::new()
        } else {
            self.inner
                .store
                .save_received(accepted)
                .await
                .map_err(|e| ApiError::of(ErrorCode::StoreFailed, e.to_string()))?
        };
        let mut new = new.into_iter();
        let mut out = Vec::with_capacity(msgs.len());
        let pushed: Vec<bool> = msgs
            .iter()
            .zip(&verdicts)
            .filter(|(_, v)| v.is_none())
            .filter_map(|((_, via), _)| match via {
                Via::Direct => Some(false),
                Via::Session { .. } => Some(true),
                _ => None,
            })
            .collect();
        let by_session = pushed.iter().filter(|s| **s).count();
        self.inner.pushes.received(true, by_session);
        self.inner.pushes.received(false, pushed.len() - by_session);
        for ((msg, via), verdict) in msgs.into_iter().zip(verdicts) {
            match verdict {
                Some(refused) => out.push(refused),
                None => {
                    let is_new = new.next().unwrap_or(false);
                    if is_new {
                        tracing::debug!(peer = %self.name(), id = %msg.id, from = %msg.from, ?via, "message stored");
                        // What the recovery paths bring back is shown in place, a block per conversation.
                        self.show_received(msg, &via);
                    }
                    out.push(Ok(!is_new));
                }
            }
        }
        Ok(out)
    }

    /// The rules every incoming message meets, whichever way it came.
    fn check(&self, msg: &ChatMessage, via: &Via) -> Result<(), ApiError> {
        msg.check()
            .map_err(|e| ApiError::of(ErrorCode::InvalidField, format!("text: {e}")))?;
        msg.check_clock(now_ms()).map_err(|e| {
            // Not silent: either someone tries to pin a message at the end of history, or a clock is wrong.
            tracing::warn!(peer = %self.name(), id = %msg.id, from = %msg.from, ?via, "refused a message: {e} ({})", e.code());
            ApiError::unprocessable(e.code(), format!("message {}: {e}", msg.id))
        })?;
        match &msg.dest {
            Destination::Direct(to) if to != self.name() => {
                return Err(ApiError::of(
                    ErrorCode::WrongRecipient,
                    format!("this node is {}, not {to}", self.name()),
                ));
            }
            Destination::Channel(c) if !self.is_joined(c) => {
                return Err(ApiError::of(
                    ErrorCode::NotJoined,
                    format!("{} is not in #{c}", self.name()),
                ));
            }
            _ => {}
        }
        if &msg.from == self.name() {
            return Err(ApiError::of(
                ErrorCode::UnknownSender,
                "a message cannot come from this node's own name",
            ));
        }
        match via {
            Via::Mailbox { depositor } if depositor != &msg.from => Err(ApiError::of(
                ErrorCode::ForgedSender,
                format!(
                    "{depositor} left a message claiming to be from {}",
                    msg.from
                ),
            )),
            Via::CatchUp { channel } if msg.dest != Destination::Channel(channel.clone()) => {
                Err(ApiError::of(
                    ErrorCode::WrongChannel,
                    format!(
                        "catch-up for #{channel} brought a message for {}",
                        msg.dest.label()
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Checks the message's signature against its sender's key: the cached one, else the tracker's. A cached key
    /// that does not verify is checked with the tracker again (at most every [`KEY_RECHECK`]), since a tracker that
    /// keeps nothing may have bound the name anew; a name the tracker knows no key for is not asked about again
    /// for as long, so a flood of messages under made-up names does not become a flood of tracker requests. While
    /// the tracker is down, a cached key stands.
    async fn verify_sender(&self, msg: &ChatMessage) -> Result<(), ApiError> {
        let cached = self.inner.directory.key_of(&msg.from);
        match cached {
            Some((Some(key), at)) => match verify_message(msg, &key) {
                Ok(()) => return self.pinned(&msg.from, key).await,
                Err(e) if at.elapsed() < KEY_RECHECK => return Err(e.into()),
                Err(_) => {}
            },
            Some((None, at)) if at.elapsed() < KEY_RECHECK => {
                return Err(AuthError::UnknownIdentity(msg.from.clone()).into());
            }
            _ => {}
        }
        let key: PublicKey = match self.ask_tracker_key(&msg.from).await {
            Ok(Some(key)) => key,
            Ok(None) => return Err(AuthError::UnknownIdentity(msg.from.clone()).into()),
            Err(e) => match cached {
                Some((Some(key), _)) => key,
                _ => {
                    return Err(ApiError::of(
                        ErrorCode::CannotVerifySender,
                        format!("the sender's key cannot be checked now: {e}"),
                    ));
                }
            },
        };
        verify_message(msg, &key).map_err(ApiError::from)?;
        self.pinned(&msg.from, key).await
    }

    /// The messages among `msgs` (by index) whose signatures were checked together and hold, each against its
    /// sender's key as [`Node::verify_sender`] would take it, that key pinned for the name. Messages pushed over
    /// a session are not among them (their sender is the handshake's); fewer than [`BATCH_MIN`] to check, a
    /// sender without a key known now, or a batch with any bad signature leaves the messages concerned to be
    /// checked one by one, which decides and says why.
    async fn verify_together(&self, msgs: &[(ChatMessage, Via)]) -> HashSet<usize> {
        let todo: Vec<usize> = msgs
            .iter()
            .enumerate()
            .filter(|(_, (m, via))| !matches!(via, Via::Session { .. }) && m.sig.is_some())
            .map(|(i, _)| i)
            .collect();
        if todo.len() < BATCH_MIN {
            return HashSet::new();
        }
        let mut keys: HashMap<PeerName, Option<PublicKey>> = HashMap::new();
        for &i in &todo {
            let from = &msgs[i].0.from;
            if !keys.contains_key(from) {
                let key = self.key_to_check(from).await;
                keys.insert(from.clone(), key);
            }
        }
        let items: Vec<(usize, &ChatMessage, PublicKey)> = todo
            .iter()
            .filter_map(|&i| {
                let m = &msgs[i].0;
                keys.get(&m.from).copied().flatten().map(|k| (i, m, k))
            })
            .collect();
        if items.len() < BATCH_MIN {
            return HashSet::new();
        }
        let pairs: Vec<(&ChatMessage, PublicKey)> =
            items.iter().map(|(_, m, k)| (*m, *k)).collect();
        if verify_messages(&pairs).is_err() {
            return HashSet::new();
        }
        let mut pinned = HashSet::new();
        for (name, key) in &keys {
            if let Some(key) = key
                && self.pinned(name, *key).await.is_ok()
            {
                pinned.insert(name.clone());
            }
        }
        items
            .into_iter()
            .filter(|(_, m, _)| pinned.contains(&m.from))
            .map(|(i, _, _)| i)
            .collect()
    }

    /// The key [`Node::verify_sender`] would check `from`'s messages against first: the one cached, else the
    /// tracker's (then cached, as there); `None` when there is none to try now.
    async fn key_to_check(&self, from: &PeerName) -> Option<PublicKey> {
        match self.inner.directory.key_of(from) {
            Some((Some(key), _)) => return Some(key),
            Some((None, at)) if at.elapsed() < KEY_RECHECK => return None,
            _ => {}
        }
        self.ask_tracker_key(from).await.ok().flatten()
    }

    /// The key the tracker binds to `name` (`None`: no key is bound to it), cached either way for the checks
    /// that follow; an `Err` (the tracker cannot be asked now) is not cached.
    pub(super) async fn ask_tracker_key(
        &self,
        name: &PeerName,
    ) -> Result<Option<PublicKey>, TrackerError> {
        let key = match self.inner.tracker.identity(name).await {
            Ok(key) => Some(key),
            Err(TrackerError::Refused {
                code: ErrorCode::UnknownIdentity,
                ..
            }) => None,
            Err(e) => return Err(e),
        };
        self.inner.directory.cache_key(name.clone(), key);
        Ok(key)
    }

    /// Refuses a sender whose key, as the tracker vouches for it, is not the one pinned for the name.
    async fn pinned(&self, from: &PeerName, key: PublicKey) -> Result<(), ApiError> {
        match self.pin_check(from, key).await {
            true => Ok(()),
            false => Err(ApiError::of(ErrorCode::KeyChanged, self.key_changed(from))),
        }
    }
}
