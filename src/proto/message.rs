//! The chat message as it travels from peer to peer (`POST /p2p/receive`), signed by its sender, and the
//! receiver's answer.

use serde::{Deserialize, Serialize};

use super::{ChannelName, MAX_TEXT_BYTES, PeerName};

/// A message's unique id: a UUIDv7, so ids also sort by creation time.
pub type MessageId = uuid::Uuid;

/// Where a message goes: a channel, or one peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Destination {
    #[serde(rename = "channel")]
    Channel(ChannelName),
    #[serde(rename = "to")]
    Direct(PeerName),
}

impl Destination {
    /// How the CLI and the history name a conversation: `#general` or `@bob`.
    pub fn label(&self) -> String {
        match self {
            Destination::Channel(c) => format!("#{c}"),
            Destination::Direct(p) => format!("@{p}"),
        }
    }
}

/// One chat message. On the wire: `{"id","from","text","ts"}` plus `"channel"` or `"to"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub id: MessageId,
    pub from: PeerName,
    #[serde(flatten)]
    pub dest: Destination,
    pub text: String,
    /// Sender's clock, milliseconds since the Unix epoch.
    pub ts: u64,
    /// The sender's Ed25519 signature of [`crate::identity::message_bytes`]; receivers refuse a message without a
    /// valid one. Optional in the type only so that a message can be built, then signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<crate::identity::Signature>,
}

/// Why a message is not acceptable whatever the receiver's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("text is empty")]
    EmptyText,
    #[error("text is longer than {MAX_TEXT_BYTES} bytes")]
    TextTooLong,
}

impl ChatMessage {
    /// A new message from `from`, stamped now with a fresh id.
    pub fn new(from: PeerName, dest: Destination, text: String) -> Result<Self, MessageError> {
        let msg = ChatMessage {
            id: uuid::Uuid::now_v7(),
            from,
            dest,
            text,
            ts: super::now_ms(),
            sig: None,
        };
        msg.check()?;
        Ok(msg)
    }

    /// The rules on the text, checked by sender and receiver alike.
    pub fn check(&self) -> Result<(), MessageError> {
        if self.text.trim().is_empty() {
            return Err(MessageError::EmptyText);
        }
        if self.text.len() > MAX_TEXT_BYTES {
            return Err(MessageError::TextTooLong);
        }
        Ok(())
    }

    /// The conversation this message belongs to, from `me`'s point of view: the channel, or the other peer.
    pub fn conversation(&self, me: &PeerName) -> Destination {
        match &self.dest {
            Destination::Channel(c) => Destination::Channel(c.clone()),
            Destination::Direct(to) if to == me => Destination::Direct(self.from.clone()),
            Destination::Direct(to) => Destination::Direct(to.clone()),
        }
    }

    /// The line the CLI prints for it, exactly as CONTRACT.md fixes: `[#general] alice: Hello!`.
    pub fn cli_line(&self, me: &PeerName) -> String {
        format!(
            "[{}] {}: {}",
            self.conversation(me).label(),
            self.from,
            self.text
        )
    }
}

/// A receiver's answer to `POST /p2p/receive`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceiveAck {
    pub ok: bool,
    /// True when the id had been received before: accepted again, shown once.
    pub duplicate: bool,
    /// The receiver's signature over what it did ([`crate::identity::receipt_bytes`]): without a valid one, the
    /// sender does not count the message as delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<crate::identity::Signature>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> PeerName {
        PeerName::new(s).unwrap()
    }

    #[test]
    fn wire_form_is_flat_with_channel_or_to() {
        let m = ChatMessage::new(
            name("alice"),
            Destination::Channel(ChannelName::new("general").unwrap()),
            "hi".into(),
        )
        .unwrap();
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["channel"], "general");
        assert_eq!(v["from"], "alice");
        assert!(v.get("to").is_none());
        let back: ChatMessage = serde_json::from_value(v).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn a_message_needs_exactly_one_destination() {
        let id = uuid::Uuid::now_v7();
        let none = serde_json::json!({"id": id, "from": "a", "text": "x", "ts": 1});
        assert!(serde_json::from_value::<ChatMessage>(none).is_err());
    }

    #[test]
    fn a_direct_message_is_shown_under_the_senders_name_to_the_receiver() {
        let m = ChatMessage::new(
            name("alice"),
            Destination::Direct(name("bob")),
            "hi bob".into(),
        )
        .unwrap();
        assert_eq!(m.cli_line(&name("bob")), "[@alice] alice: hi bob");
        assert_eq!(
            m.conversation(&name("alice")),
            Destination::Direct(name("bob"))
        );
    }

    #[test]
    fn empty_and_oversize_texts_are_refused() {
        assert!(ChatMessage::new(name("a"), Destination::Direct(name("b")), "  ".into()).is_err());
        let long = "x".repeat(MAX_TEXT_BYTES + 1);
        assert_eq!(
            ChatMessage::new(name("a"), Destination::Direct(name("b")), long),
            Err(MessageError::TextTooLong)
        );
    }
}
