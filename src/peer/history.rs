//! The messages a node has sent and received, by conversation, and the ids it has seen (so a duplicate is stored
//! and shown once). Kept in memory and bounded.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::proto::{ChatMessage, Destination, MessageId, PeerName};

/// Messages kept per conversation.
pub const HISTORY_PER_CONVERSATION: usize = 1000;
/// Message ids remembered for duplicate detection.
pub const SEEN_IDS: usize = 100_000;

/// History and duplicate detection for one node.
#[derive(Debug)]
pub struct History {
    me: PeerName,
    conversations: HashMap<Destination, VecDeque<ChatMessage>>,
    seen: HashSet<MessageId>,
    seen_order: VecDeque<MessageId>,
}

impl History {
    pub fn new(me: PeerName) -> Self {
        Self {
            me,
            conversations: HashMap::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
        }
    }

    /// Stores a message unless its id was seen before; returns whether it was new.
    pub fn append(&mut self, msg: &ChatMessage) -> bool {
        if !self.seen.insert(msg.id) {
            return false;
        }
        self.seen_order.push_back(msg.id);
        if self.seen_order.len() > SEEN_IDS
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        let conv = self
            .conversations
            .entry(msg.conversation(&self.me))
            .or_default();
        conv.push_back(msg.clone());
        if conv.len() > HISTORY_PER_CONVERSATION {
            conv.pop_front();
        }
        true
    }

    /// The last `n` messages of a conversation, oldest first.
    pub fn recent(&self, conv: &Destination, n: usize) -> Vec<ChatMessage> {
        self.conversations.get(conv).map_or_else(Vec::new, |c| {
            c.iter().skip(c.len().saturating_sub(n)).cloned().collect()
        })
    }

    /// Every conversation this node has messages in.
    pub fn conversations(&self) -> Vec<Destination> {
        self.conversations.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ChannelName;

    #[test]
    fn a_duplicate_id_is_stored_once_and_recent_is_oldest_first() {
        let me = PeerName::new("bob").unwrap();
        let mut h = History::new(me.clone());
        let ch = Destination::Channel(ChannelName::new("g").unwrap());
        let a = ChatMessage::new(PeerName::new("alice").unwrap(), ch.clone(), "1".into()).unwrap();
        let b = ChatMessage::new(PeerName::new("alice").unwrap(), ch.clone(), "2".into()).unwrap();
        assert!(h.append(&a));
        assert!(!h.append(&a));
        assert!(h.append(&b));
        let texts: Vec<_> = h.recent(&ch, 10).into_iter().map(|m| m.text).collect();
        assert_eq!(texts, ["1", "2"]);
        assert_eq!(h.recent(&ch, 1)[0].text, "2");
    }
}
