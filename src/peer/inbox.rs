//! Receiving: the checks a message passes before it is stored and shown. It must be for this node (its own name,
//! or a channel it has joined), from a peer the tracker knows, and new (a duplicate id is accepted, not shown).

use std::time::Instant;

use super::tracker_client::TrackerError;
use super::{KNOWN_PEER_FRESH, Node, lock};
use crate::http::ApiError;
use crate::peer::events::Event;
use crate::proto::{ChatMessage, Destination};

impl Node {
    /// Accepts a message from another peer. `Ok(true)` means it was a duplicate.
    pub async fn receive(&self, msg: ChatMessage) -> Result<bool, ApiError> {
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
        self.vouch_for(&msg).await?;
        let new = self
            .inner
            .store
            .save_received(vec![msg.clone()])
            .await
            .map_err(|e| {
                ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "store_failed",
                    e.to_string(),
                )
            })?[0];
        if new {
            tracing::debug!(peer = %self.name(), id = %msg.id, from = %msg.from, "message received");
            self.inner.events.publish(Event::Message {
                message: msg,
                own: false,
            });
        }
        Ok(!new)
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
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "cannot_verify_sender",
                format!("the sender cannot be checked now: {e}"),
            )),
        }
    }
}
