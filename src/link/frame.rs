//! Frames: what travels on a session's streams (docs/SESSIONS.md, "Frames").
//!
//! ```text
//! frame   = length:u32 (big-endian, bytes of payload) | type:u8 | payload
//! MESSAGE = 0x01, payload: the signed ChatMessage as JSON, exactly the body of POST /p2p/receive
//! ACK     = 0x02, payload: one or more 16-byte message ids, each stored by the receiver
//! ERROR   = 0x03, payload: JSON {"code","message"} plus "id" when it refuses one message
//! ```
//!
//! Pure: encoding into a buffer, decoding from one. The stream loops in `session` feed them.

use serde::{Deserialize, Serialize};

use crate::proto::{ChatMessage, ErrorCode, MessageId};

/// Bytes before the payload: the length (4) and the type (1).
pub const HEADER_LEN: usize = 5;
/// The largest payload a receiver accepts: the HTTP path's body limit, so a message that fits one fits the other.
pub const MAX_PAYLOAD: usize = crate::proto::MAX_BODY_BYTES;
/// Message ids one ACK frame carries at most (a larger set is split over several frames).
pub const MAX_ACK_IDS: usize = MAX_PAYLOAD / 16;

pub const TYPE_MESSAGE: u8 = 0x01;
pub const TYPE_ACK: u8 = 0x02;
pub const TYPE_ERROR: u8 = 0x03;

/// The session layer's own error codes (entries of `proto::ErrorCode`, named here for the frame code).
pub mod code {
    use crate::proto::ErrorCode;
    /// The length prefix exceeds [`super::MAX_PAYLOAD`]: the stream is closed after this error.
    pub const FRAME_TOO_LARGE: ErrorCode = ErrorCode::FrameTooLarge;
    /// The payload does not parse as its type says; the stream goes on with the next frame.
    pub const BAD_FRAME: ErrorCode = ErrorCode::BadFrame;
    /// A type this node does not know (or not on this side of the stream); skipped, the stream goes on.
    pub const UNKNOWN_FRAME_TYPE: ErrorCode = ErrorCode::UnknownFrameType;
    /// Several messages with the same id in flight on one session: the later ones are refused.
    pub const DUPLICATE_IN_FLIGHT: ErrorCode = ErrorCode::DuplicateInFlight;
}

/// The payload of an ERROR frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable, snake_case: an `ErrorCode`'s name, kept as sent (`ErrorCode::parse` reads it).
    pub code: String,
    /// For people.
    pub message: String,
    /// The refused message, when the error is about one; absent for errors about a frame or the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<MessageId>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            code: code.as_str().to_string(),
            message: message.into(),
            id: None,
        }
    }

    pub fn with_id(mut self, id: MessageId) -> ErrorBody {
        self.id = Some(id);
        self
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Message(ChatMessage),
    Ack(Vec<MessageId>),
    Error(ErrorBody),
}

/// A length prefix larger than [`MAX_PAYLOAD`]: the stream cannot be trusted to be in step any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a frame of {0} bytes is larger than the {MAX_PAYLOAD} bytes allowed")]
pub struct TooLarge(pub usize);

/// What one step of decoding found at the front of a buffer.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    /// Not a whole frame yet: read more.
    Partial,
    /// A frame of `len` bytes (header included): either good, or refused with the error to send back.
    Frame(usize, Result<Frame, ErrorBody>),
}

/// Decodes the frame at the front of `buf`.
pub fn decode(buf: &[u8]) -> Result<Decoded, TooLarge> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(Decoded::Partial);
    };
    let len = u32::from_be_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    if len > MAX_PAYLOAD {
        return Err(TooLarge(len));
    }
    let Some(payload) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Ok(Decoded::Partial);
    };
    Ok(Decoded::Frame(HEADER_LEN + len, parse(header[4], payload)))
}

fn parse(kind: u8, payload: &[u8]) -> Result<Frame, ErrorBody> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        ErrorBody::new(
            code::BAD_FRAME,
            format!("a {what} frame that does not parse: {e}"),
        )
    };
    match kind {
        TYPE_MESSAGE => serde_json::from_slice(payload)
            .map(Frame::Message)
            .map_err(|e| bad("MESSAGE", &e)),
        TYPE_ACK => {
            if payload.is_empty() || !payload.len().is_multiple_of(16) {
                return Err(bad("ACK", &"not a whole number (≥ 1) of 16-byte ids"));
            }
            Ok(Frame::Ack(
                payload
                    .chunks_exact(16)
                    .map(|c| MessageId::from_bytes(c.try_into().expect("16 bytes")))
                    .collect(),
            ))
        }
        TYPE_ERROR => serde_json::from_slice(payload)
            .map(Frame::Error)
            .map_err(|e| bad("ERROR", &e)),
        other => Err(ErrorBody::new(
            code::UNKNOWN_FRAME_TYPE,
            format!("frame type 0x{other:02x} is not known here; skipped"),
        )),
    }
}

/// Appends a frame of type `kind` whose payload `write` appends; undone if the payload is too large.
fn append(out: &mut Vec<u8>, kind: u8, write: impl FnOnce(&mut Vec<u8>)) -> Result<(), TooLarge> {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, kind]);
    write(out);
    let len = out.len() - start - HEADER_LEN;
    if len > MAX_PAYLOAD {
        out.truncate(start);
        return Err(TooLarge(len));
    }
    out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// Appends a MESSAGE frame.
pub fn encode_message(msg: &ChatMessage, out: &mut Vec<u8>) -> Result<(), TooLarge> {
    append(out, TYPE_MESSAGE, |out| {
        serde_json::to_writer(out, msg).expect("a message always serializes")
    })
}

/// Appends ACK frames for `ids` (nothing if there are none; several frames past [`MAX_ACK_IDS`]).
pub fn encode_ack(ids: &[MessageId], out: &mut Vec<u8>) {
    for chunk in ids.chunks(MAX_ACK_IDS) {
        append(out, TYPE_ACK, |out| {
            chunk
                .iter()
                .for_each(|id| out.extend_from_slice(id.as_bytes()))
        })
        .expect("MAX_ACK_IDS ids fit a frame");
    }
}

/// Appends an ERROR frame (its message cut to fit, should it be huge).
pub fn encode_error(err: &ErrorBody, out: &mut Vec<u8>) {
    if append(out, TYPE_ERROR, |out| {
        serde_json::to_writer(out, err).expect("serializes")
    })
    .is_err()
    {
        let mut short = err.clone();
        short.message = short.message.chars().take(1000).collect();
        append(out, TYPE_ERROR, |out| {
            serde_json::to_writer(out, &short).expect("serializes")
        })
        .expect("a short error fits");
    }
}

/// Appends a frame of any type with a raw payload (tests, and frame types of later versions).
pub fn encode_raw(kind: u8, payload: &[u8], out: &mut Vec<u8>) -> Result<(), TooLarge> {
    append(out, kind, |out| out.extend_from_slice(payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::proto::{Destination, PeerName};

    fn message(text: &str) -> ChatMessage {
        let mut m = ChatMessage::new(
            PeerName::new("alice").unwrap(),
            Destination::Direct(PeerName::new("bob").unwrap()),
            text.into(),
        )
        .unwrap();
        Identity::ephemeral().sign_message(&mut m);
        m
    }

    fn one(buf: &[u8]) -> (usize, Result<Frame, ErrorBody>) {
        match decode(buf).unwrap() {
            Decoded::Frame(n, f) => (n, f),
            Decoded::Partial => panic!("partial"),
        }
    }

    #[test]
    fn each_frame_type_round_trips_and_a_prefix_is_partial() {
        let m = message("hello");
        let ids = [m.id, MessageId::now_v7()];
        let err = ErrorBody::new(ErrorCode::ForgedSender, "no").with_id(m.id);
        let mut buf = Vec::new();
        encode_message(&m, &mut buf).unwrap();
        let first = buf.len();
        encode_ack(&ids, &mut buf);
        encode_error(&err, &mut buf);
        for cut in 0..first {
            assert_eq!(decode(&buf[..cut]), Ok(Decoded::Partial));
        }
        let (n, f) = one(&buf);
        assert_eq!((n, f), (first, Ok(Frame::Message(m.clone()))));
        let (n2, f) = one(&buf[n..]);
        assert_eq!(n2, HEADER_LEN + 32);
        assert_eq!(f, Ok(Frame::Ack(ids.to_vec())));
        let (n3, f) = one(&buf[n + n2..]);
        assert_eq!(n + n2 + n3, buf.len());
        assert_eq!(f, Ok(Frame::Error(err)));
    }

    #[test]
    fn the_header_is_length_then_type() {
        let mut buf = Vec::new();
        encode_ack(&[MessageId::nil()], &mut buf);
        assert_eq!(&buf[..HEADER_LEN], &[0, 0, 0, 16, TYPE_ACK]);
    }

    #[test]
    fn oversize_is_refused_before_reading_and_bad_payloads_are_errors_in_step() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&((MAX_PAYLOAD + 1) as u32).to_be_bytes());
        buf.push(TYPE_MESSAGE);
        assert_eq!(decode(&buf), Err(TooLarge(MAX_PAYLOAD + 1)));

        let mut buf = Vec::new();
        encode_raw(TYPE_MESSAGE, b"{not json", &mut buf).unwrap();
        encode_raw(TYPE_ACK, &[1, 2, 3], &mut buf).unwrap();
        encode_raw(0x7f, b"future", &mut buf).unwrap();
        let mut at = 0;
        let mut codes = Vec::new();
        while at < buf.len() {
            let (n, f) = one(&buf[at..]);
            codes.push(f.unwrap_err().code);
            at += n;
        }
        assert_eq!(
            codes,
            [code::BAD_FRAME, code::BAD_FRAME, code::UNKNOWN_FRAME_TYPE].map(|c| c.as_str())
        );
        assert!(encode_raw(TYPE_MESSAGE, &vec![b' '; MAX_PAYLOAD + 1], &mut buf).is_err());
    }

    #[test]
    fn random_bytes_never_panic_and_never_claim_more_than_they_hold() {
        for _ in 0..20_000 {
            let len = rand::random::<u8>() as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| rand::random()).collect();
            if len >= HEADER_LEN && rand::random::<bool>() {
                // Mostly plausible lengths, so the payload parsers are reached too.
                buf[..4].copy_from_slice(&((len.saturating_sub(HEADER_LEN)) as u32).to_be_bytes());
                buf[4] = rand::random::<u8>() % 4;
            }
            if let Ok(Decoded::Frame(n, _)) = decode(&buf) {
                assert!(n <= buf.len());
            }
        }
    }

    #[test]
    fn many_acks_split_over_frames() {
        let ids: Vec<_> = (0..MAX_ACK_IDS + 1).map(|_| MessageId::now_v7()).collect();
        let mut buf = Vec::new();
        encode_ack(&ids, &mut buf);
        let (n, a) = one(&buf);
        let (_, b) = one(&buf[n..]);
        let (Ok(Frame::Ack(a)), Ok(Frame::Ack(b))) = (a, b) else {
            panic!("two acks")
        };
        assert_eq!([a, b].concat(), ids);
    }
}
