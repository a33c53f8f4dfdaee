//! Wire types shared by the tracker, the peers and their clients: what travels as JSON, nothing that does I/O.
//!
//! Names and channels are validated newtypes, so a handler that holds a [`PeerName`] knows it is well formed; the
//! limits every node enforces are named constants here, so the docs and the code quote the same numbers.

mod error_code;
mod message;
mod names;
mod tracker;

pub use error_code::ErrorCode;
pub use message::{
    ChatMessage, Destination, MAX_CLOCK_AHEAD_MS, MessageError, MessageId, ReceiveAck, check_clock,
    first_id_at, id_ms, parse_conversation,
};
pub use names::{ChannelName, NameError, PeerName, skeleton};
pub use tracker::*;

/// Largest request body any node accepts; larger bodies are answered with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest message text, in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// Longest peer or channel name, in characters.
pub const MAX_NAME_CHARS: usize = 32;

/// Milliseconds since the Unix epoch, the one clock every timestamp on the wire uses.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
