//! One clock for sending and receiving: nanoseconds since the first reading in this process. Every sender writes
//! its reading into the message text and every receiver subtracts it from its own, so a latency never mixes two
//! clocks. Every system under test is driven from this process, so they all share it.

use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since this process first asked.
pub(crate) fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The text every benchmark message carries: its sequence number and the sender's clock, padded to about the
/// size of a chat line (the same text the anchors carry).
pub(crate) fn stamp(seq: u64) -> String {
    format!("{seq} {} pad-to-about-sixty-bytes-of-chat-text", now_ns())
}

/// Reads back what [`stamp`] wrote: `(seq, sent_ns)`.
pub(crate) fn parse_stamp(text: &str) -> Option<(u64, u64)> {
    let mut words = text.split_ascii_whitespace();
    let seq = words.next()?.parse().ok()?;
    let sent = words.next()?.parse().ok()?;
    Some((seq, sent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_reads_back_with_a_clock_that_does_not_go_backwards() {
        let before = now_ns();
        let text = stamp(42);
        let (seq, sent) = parse_stamp(&text).unwrap();
        assert_eq!(seq, 42);
        assert!(sent >= before && sent <= now_ns());
        assert!(text.len() > 40, "about a chat line: {text:?}");
        assert_eq!(parse_stamp("hello there"), None);
    }
}
