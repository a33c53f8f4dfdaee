//! The node's events hub: one bounded broadcast that the CLI and every open web page subscribe to, so both front
//! ends see the same messages in the same order.

use serde::Serialize;
use tokio::sync::broadcast;

use crate::proto::{ChannelName, ChatMessage};

/// How many events a slow subscriber may fall behind before it misses some (it is told how many).
pub const EVENT_BACKLOG: usize = 1024;

/// Something a front end shows.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A message received, or sent by this node's user (`own`).
    Message { message: ChatMessage, own: bool },
    /// This node joined a channel.
    Joined { channel: ChannelName },
    /// This node left a channel.
    Left { channel: ChannelName },
    /// Something the user should know that is not a message (tracker lost, re-registered, ...).
    Notice { text: String },
}

/// The sending side of the hub.
#[derive(Debug, Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(EVENT_BACKLOG).0,
        }
    }
}

impl Events {
    pub fn publish(&self, event: Event) {
        // No subscriber is fine: a node without a front end still receives and stores.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
