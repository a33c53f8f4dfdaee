//! The chat message as it travels from peer to peer (`POST /p2p/receive`), signed by its sender, and the
//! receiver's answer.
//!
//! A message is identified by its sender **and** its id ([`ChatMessage::key`]), never by the id alone: ids are
//! chosen by senders, so a member who saw alice's id could otherwise send something of its own under it first and
//! have alice's real message taken for a duplicate. The same id from two senders is two messages.
//!
//! An id is a UUIDv7, whose first 48 bits are its creation time, and history and catch-up are ordered by it. So a
//! message whose id (or `ts`) is more than [`MAX_CLOCK_AHEAD_MS`] ahead of the receiver's clock is refused
//! ([`ChatMessage::check_clock`]): one such message would otherwise sort after everything said for years.

use serde::{Deserialize, Serialize};

use super::{ChannelName, ErrorCode, MAX_TEXT_BYTES, PeerName};

/// A message's id, unique among its sender's messages: a UUIDv7, so ids also sort by creation time.
pub type MessageId = uuid::Uuid;

/// How far ahead of a receiver's clock a message's id time or `ts` may be. Every online peer's clock is within
/// [`crate::identity::REQUEST_WINDOW_MS`] (60 s) of the tracker's, or the tracker refuses its requests, so two
/// honest peers' clocks differ by 120 s at most; anything further ahead was made so on purpose (or by a clock that
/// is wrong, which its owner needs to hear about).
pub const MAX_CLOCK_AHEAD_MS: u64 = 2 * crate::identity::REQUEST_WINDOW_MS;

/// Milliseconds since the epoch at which a UUIDv7 was made (its first 48 bits).
pub fn id_ms(id: &MessageId) -> u64 {
    (id.as_u128() >> 80) as u64
}

/// The smallest UUIDv7 of a millisecond: every message id made at or after `ms` sorts at or above it.
pub fn first_id_at(ms: u64) -> MessageId {
    MessageId::from_u128(((ms as u128) << 80) | (0x7u128 << 76) | (0b10u128 << 62))
}

/// [`ChatMessage::check_clock`] of an id and a `ts` (also what a tracker checks of sealed mail's outside).
pub fn check_clock(id: &MessageId, ts: u64, now_ms: u64) -> Result<(), MessageError> {
    for (what, at) in [("id's time", id_ms(id)), ("ts", ts)] {
        let ahead_ms = at.saturating_sub(now_ms);
        if ahead_ms > MAX_CLOCK_AHEAD_MS {
            return Err(MessageError::FromTheFuture { what, ahead_ms });
        }
    }
    Ok(())
}

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

/// Parses a conversation as users write it: `#general`, `@bob`, or a bare channel name (the CLI, the local API's
/// `?with=`, and fuzzing share it).
pub fn parse_conversation(s: &str) -> Result<Destination, super::NameError> {
    match s.strip_prefix('@') {
        Some(p) => PeerName::new(p).map(Destination::Direct),
        None => ChannelName::parse_user(s).map(Destination::Channel),
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
    #[error(
        "its {what} is {ahead_ms} ms ahead of this node's clock (at most {MAX_CLOCK_AHEAD_MS} ms is allowed): \
         the sender's clock, or this node's, is wrong and needs setting right"
    )]
    FromTheFuture { what: &'static str, ahead_ms: u64 },
}

impl MessageError {
    /// The stable code a refusal for this reason carries (`docs/PROTOCOL.md`).
    pub fn code(&self) -> ErrorCode {
        match self {
            MessageError::FromTheFuture { .. } => ErrorCode::FutureMessage,
            MessageError::EmptyText | MessageError::TextTooLong => ErrorCode::InvalidField,
        }
    }
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

    /// Refuses an id or `ts` more than [`MAX_CLOCK_AHEAD_MS`] ahead of `now_ms` (the checker's clock).
    pub fn check_clock(&self, now_ms: u64) -> Result<(), MessageError> {
        check_clock(&self.id, self.ts, now_ms)
    }

    /// What identifies this message: its sender and its id.
    pub fn key(&self) -> (PeerName, MessageId) {
        (self.from.clone(), self.id)
    }

    /// The conversation this message belongs to, from `me`'s point of view: the channel, or the other peer.
    pub fn conversation(&self, me: &PeerName) -> Destination {
        match &self.dest {
            Destination::Channel(c) => Destination::Channel(c.clone()),
            Destination::Direct(to) if to == me => Destination::Direct(self.from.clone()),
            Destination::Direct(to) => Destination::Direct(to.clone()),
        }
    }

    /// The line the CLI prints for it, exactly `[#general] alice: Hello!` (`[@alice] alice: hi bob` for a direct
    /// message shown to bob): scripts parse it, so it never changes (docs/PROTOCOL.md, "The interactive CLI").
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
    /// True when this message (the same sender and id) had been received before: accepted again, shown once.
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
    fn given_an_id_or_ts_beyond_the_allowed_skew_then_the_message_is_refused() {
        let now = super::super::now_ms();
        let ch = Destination::Channel(ChannelName::new("general").unwrap());
        let mut m = ChatMessage::new(name("alice"), ch, "hi".into()).unwrap();
        assert_eq!(m.check_clock(now), Ok(()));
        m.id = first_id_at(now + MAX_CLOCK_AHEAD_MS);
        assert_eq!(m.check_clock(now), Ok(()), "within the skew");
        m.id = first_id_at(now + 5 * 365 * 24 * 3600 * 1000);
        let err = m.check_clock(now).unwrap_err();
        assert_eq!(err.code(), ErrorCode::FutureMessage);
        assert!(err.to_string().contains("id's time"), "{err}");
        m.id = first_id_at(now);
        m.ts = now + MAX_CLOCK_AHEAD_MS + 1;
        assert!(matches!(
            m.check_clock(now),
            Err(MessageError::FromTheFuture { what: "ts", .. })
        ));
    }

    #[test]
    fn the_first_id_of_a_millisecond_sorts_below_every_id_made_then() {
        let id = MessageId::now_v7();
        let ms = id_ms(&id);
        assert!(first_id_at(ms) <= id);
        assert!(first_id_at(ms + 1) > id);
        assert_eq!(first_id_at(ms).get_version_num(), 7);
        assert!(first_id_at(ms).hyphenated().to_string() <= id.hyphenated().to_string());
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
