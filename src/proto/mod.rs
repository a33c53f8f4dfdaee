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

/// `ms` (Unix ms) to the minute, as people read it: `2026-11-27 03:04 UTC`.
pub fn utc_minute(ms: u64) -> String {
    format!("{} UTC", utc_date_time(ms))
}

/// `ms` (Unix ms) as `YYYY-MM-DD HH:MM` (UTC).
pub fn utc_date_time(ms: u64) -> String {
    let rem = (ms / 1000) as i64 % 86_400;
    format!(
        "{} {:02}:{:02}",
        utc_date(ms),
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// `ms` (Unix ms) as `YYYY-MM-DD` (UTC).
pub fn utc_date(ms: u64) -> String {
    let days = (ms / 86_400_000) as i64;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Milliseconds since the Unix epoch, the one clock every timestamp on the wire uses.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
