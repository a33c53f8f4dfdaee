//! Unread counts and read markers, kept by the node so that every front end (the CLI, each open page) agrees and
//! a reload keeps them. Each conversation has a marker in the store: the messages of others stored after it are
//! unread (in arrival order, so a message caught up late with an old id is unread too). A front end that shows
//! a conversation moves its marker (`POST /api/read`, the CLI's `/history`), and every front end hears it (a
//! `read` event).

use super::events::Event;
use super::store::Entry;
use super::{Node, NodeError};
use crate::proto::Destination;

impl Node {
    /// The last `n` messages of a conversation, oldest first, each with its state and whether it is unread.
    pub async fn history_entries(
        &self,
        conversation: &Destination,
        n: usize,
    ) -> Result<Vec<Entry>, NodeError> {
        Ok(self.inner.store.recent_entries(conversation, n).await?)
    }

    /// How many messages are unread in each conversation that has any (`#channel` or `@peer`).
    pub async fn unread(&self) -> Result<Vec<(String, usize)>, NodeError> {
        Ok(self.inner.store.unread().await?)
    }

    /// The user has seen `conversation`: everything in it so far is read (every front end is told).
    pub async fn mark_read(&self, conversation: &Destination) -> Result<(), NodeError> {
        if self.inner.store.mark_read(conversation).await? {
            self.inner.events.publish(Event::Read {
                with: conversation.label(),
            });
        }
        Ok(())
    }
}
