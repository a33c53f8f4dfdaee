//! Receiving: the checks a message passes before it is stored and shown, whichever way it came. It must be for
//! this node (its own name, or a channel it has joined), not claim to be from this node, and have a valid text.
//! Then, by the way it came:
//! - pushed by its sender: the tracker must know the sender (cached 10 s);
//! - from the tracker's mailbox: the envelope must name the peer that deposited it as its sender (the tracker
//!   vouched for the depositor when it took the deposit);
//! - by catch-up: it must belong to the channel asked about.
//!
//! A channel message, however it came, must also be from a member the tracker says may post (not a visitor, not
//! banned or removed), and this node must still be a member ([`access`](super::access), 403 `not_allowed`).
//!
//! Accepted messages are committed in one transaction, and only then answered and shown; a duplicate id is
//! accepted and not shown again.

use std::collections::HashMap;
use std::time::Instant;

use axum::http::StatusCode;

use super::tracker_client::TrackerError;
use super::{KNOWN_PEER_FRESH, Node, lock};
use crate::http::ApiError;
use crate::peer::events::Event;
use crate::proto::{ChannelName, ChatMessage, Destination, PeerName};

/// How a message reached this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// Pushed by its sender (`POST /p2p/receive`, `/p2p/receive-batch`).
    Direct,
    /// Held by the tracker; deposited by this peer.
    Mailbox { depositor: PeerName },
    /// Fetched from a member of this channel.
    CatchUp { channel: ChannelName },
}

/// Each message's verdict: `Ok(true)` stored before (duplicate), `Ok(false)` new, `Err` refused.
pub type Verdicts = Vec<Result<bool, ApiError>>;

impl Node {
    /// Accepts a message from another peer. `Ok(true)` means it was a duplicate.
    pub async fn receive(&self, msg: ChatMessage) -> Result<bool, ApiError> {
        self.receive_many(vec![(msg, Via::Direct)])
            .await?
            .pop()
            .expect("one verdict per message")
    }

    /// Checks, stores (one transaction) and shows messages; a verdict per message, in order. `Err` only when
    /// nothing could be stored.
    pub async fn receive_many(&self, msgs: Vec<(ChatMessage, Via)>) -> Result<Verdicts, ApiError> {
        let mut vouched: HashMap<PeerName, Result<(), ApiError>> = HashMap::new();
        let mut allowed: HashMap<(ChannelName, PeerName), Result<(), ApiError>> = HashMap::new();
        let mut verdicts: Vec<Option<Result<bool, ApiError>>> = Vec::with_capacity(msgs.len());
        let mut accepted = Vec::new();
        for (msg, via) in &msgs {
            let mut check = self.check(msg, via);
            if check.is_ok() && *via == Via::Direct {
                if !vouched.contains_key(&msg.from) {
                    let v = self.vouch_for(msg).await;
                    vouched.insert(msg.from.clone(), v);
                }
                check = vouched[&msg.from].clone();
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
                Err(e) => verdicts.push(Some(Err(e))),
            }
        }
        let new = if accepted.is_empty() {
            Vec::new()
        } else {
            self.inner
                .store
                .save_received(accepted)
                .await
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "store_failed",
                        e.to_string(),
                    )
                })?
        };
        let mut new = new.into_iter();
        let mut out = Vec::with_capacity(msgs.len());
        for ((msg, via), verdict) in msgs.into_iter().zip(verdicts) {
            match verdict {
                Some(refused) => out.push(refused),
                None => {
                    let is_new = new.next().unwrap_or(false);
                    if is_new {
                        tracing::debug!(peer = %self.name(), id = %msg.id, from = %msg.from, ?via, "message stored");
                        // Catch-up can bring hundreds at once: its caller sums them up in one notice instead.
                        if !matches!(via, Via::CatchUp { .. }) {
                            self.inner.events.publish(Event::Message {
                                message: msg,
                                own: false,
                            });
                        }
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
            .map_err(|e| ApiError::unprocessable("invalid_field", format!("text: {e}")))?;
        match &msg.dest {
            Destination::Direct(to) if to != self.name() => {
                return Err(ApiError::not_found(
                    "wrong_recipient",
                    format!("this node is {}, not {to}", self.name()),
                ));
            }
            Destination::Channel(c) if !self.is_joined(c) => {
                return Err(ApiError::forbidden(
                    "not_joined",
                    format!("{} is not in #{c}", self.name()),
                ));
            }
            _ => {}
        }
        if &msg.from == self.name() {
            return Err(ApiError::forbidden(
                "unknown_sender",
                "a message cannot come from this node's own name",
            ));
        }
        match via {
            Via::Mailbox { depositor } if depositor != &msg.from => Err(ApiError::forbidden(
                "forged_sender",
                format!(
                    "{depositor} left a message claiming to be from {}",
                    msg.from
                ),
            )),
            Via::CatchUp { channel } if msg.dest != Destination::Channel(channel.clone()) => {
                Err(ApiError::forbidden(
                    "wrong_channel",
                    format!(
                        "catch-up for #{channel} brought a message for {}",
                        msg.dest.label()
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Checks that the tracker knows the sender (from a recent answer, or by asking). While the tracker is down, a
    /// sender it knew before is still accepted, so chat goes on.
    async fn vouch_for(&self, msg: &ChatMessage) -> Result<(), ApiError> {
        let cached = lock(&self.inner.known).get(&msg.from).map(|(_, at)| *at);
        if cached.is_some_and(|at| at.elapsed() < KNOWN_PEER_FRESH) {
            return Ok(());
        }
        match self.inner.tracker.lookup(&msg.from).await {
            Ok(info) => {
                lock(&self.inner.known).insert(msg.from.clone(), (info, Instant::now()));
                Ok(())
            }
            Err(TrackerError::Refused { code, .. }) if code == "unknown_peer" => {
                Err(ApiError::forbidden(
                    "unknown_sender",
                    format!("the tracker does not know a peer called {}", msg.from),
                ))
            }
            Err(_) if cached.is_some() => Ok(()),
            Err(e) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot_verify_sender",
                format!("the sender cannot be checked now: {e}"),
            )),
        }
    }
}
