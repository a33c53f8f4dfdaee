//! [`ErrorCode`]: every machine-readable code a node puts in `{"error":{"code","message"}}`, with the HTTP status
//! it is sent with. One list, so a code cannot be misspelt at one site, a client matches on a variant instead of
//! comparing strings, and `docs/PROTOCOL.md`'s table of every code is checked against it (a unit test below).
//!
//! A code read from the wire that this build does not know (a newer or foreign node) is kept as
//! [`ErrorCode::Unknown`]; what a person needs is in the message beside it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! error_codes {
    ($($variant:ident = $text:literal, $status:literal;)*) => {
        /// A stable error code (see the module doc).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
            /// A code this build does not know, read from another node's answer; never sent.
            Unknown,
        }

        impl ErrorCode {
            /// Every code this build sends, in the order of the table in docs/PROTOCOL.md.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as it travels: snake_case.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                    ErrorCode::Unknown => "unknown",
                }
            }

            /// The HTTP status the code is sent with, unless the endpoint's documentation says otherwise.
            pub const fn status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                    ErrorCode::Unknown => 502,
                }
            }

            /// The code named `s`, or [`ErrorCode::Unknown`].
            pub fn parse(s: &str) -> ErrorCode {
                match s {
                    $($text => ErrorCode::$variant,)*
                    _ => ErrorCode::Unknown,
                }
            }
        }
    };
}

error_codes! {
    // Any endpoint: the request itself.
    BadJson = "bad_json", 400;
    BadQuery = "bad_query", 400;
    BadBody = "bad_body", 400;
    NotHttp = "not_http", 400;
    NoSuchEndpoint = "no_such_endpoint", 404;
    MethodNotAllowed = "method_not_allowed", 405;
    Timeout = "timeout", 408;
    BodyTooLarge = "body_too_large", 413;
    InvalidField = "invalid_field", 422;
    RateLimited = "rate_limited", 429;
    TooManyConnections = "too_many_connections", 429;
    // Identities and signed requests.
    Unauthenticated = "unauthenticated", 401;
    BadAuthHeader = "bad_auth_header", 400;
    StaleRequest = "stale_request", 401;
    UnknownIdentity = "unknown_identity", 401;
    BadSignature = "bad_signature", 401;
    Replayed = "replayed", 401;
    NotYou = "not_you", 403;
    MissingIdentity = "missing_identity", 400;
    NameTaken = "name_taken", 409;
    NameConfusable = "name_confusable", 409;
    // The tracker's registry, channels and their rules.
    UnknownPeer = "unknown_peer", 404;
    UnknownChannel = "unknown_channel", 404;
    NotMember = "not_member", 403;
    MembersOnly = "members_only", 403;
    NotOwner = "not_owner", 403;
    InviteOnly = "invite_only", 403;
    BadKey = "bad_key", 403;
    Banned = "banned", 403;
    ReadOnly = "read_only", 403;
    TrackerFull = "tracker_full", 507;
    TrackerBusy = "tracker_busy", 503;
    Stopping = "stopping", 503;
    // Quotas per identity and per address.
    ChannelQuota = "channel_quota", 429;
    NameQuota = "name_quota", 429;
    MailQuota = "mail_quota", 429;
    RecipientQuota = "recipient_quota", 429;
    // The mailbox.
    UnknownRecipient = "unknown_recipient", 404;
    MailboxFull = "mailbox_full", 507;
    NotSealed = "not_sealed", 422;
    BadSeal = "bad_seal", 422;
    // A peer receiving a message.
    WrongRecipient = "wrong_recipient", 404;
    FutureMessage = "future_message", 422;
    UnknownSender = "unknown_sender", 403;
    ForgedSender = "forged_sender", 403;
    WrongSender = "wrong_sender", 403;
    KeyChanged = "key_changed", 403;
    WrongChannel = "wrong_channel", 403;
    WrongAddress = "wrong_address", 403;
    UseSession = "use_session", 403;
    NotAllowed = "not_allowed", 403;
    CannotVerifySender = "cannot_verify_sender", 503;
    // A peer's local API.
    Forbidden = "forbidden", 403;
    LinkExpired = "link_expired", 403;
    NotJoined = "not_joined", 403;
    PeerOffline = "peer_offline", 404;
    BadLastEventId = "bad_last_event_id", 400;
    OutboxFull = "outbox_full", 507;
    NotDelivered = "not_delivered", 502;
    TrackerUnreachable = "tracker_unreachable", 503;
    TrackerError = "tracker_error", 502;
    TrackerUntrusted = "tracker_untrusted", 502;
    // Sessions (docs/SESSIONS.md): errors about a frame, sent as an ERROR frame; the status is the HTTP equivalent.
    BadFrame = "bad_frame", 400;
    UnknownFrameType = "unknown_frame_type", 400;
    FrameTooLarge = "frame_too_large", 413;
    DuplicateInFlight = "duplicate_in_flight", 409;
    StreamHalted = "stream_halted", 503;
    // The relay (docs/SESSIONS.md, 12): a RELAY frame names a key that holds no relay stream with the tracker.
    RelayUnreachable = "relay_unreachable", 404;
    // Our own faults.
    StoreFailed = "store_failed", 500;
    Internal = "internal", 500;
}

impl ErrorCode {
    /// Whether a refusal with this code is "not now" rather than "never": the receiver may lift it by itself (its
    /// store, its tracker, its start-up, a rate limit), so the sender tries the message again. `unknown_identity`
    /// is one: a receiver that could not look the sender's key up now may find it later. On a session such a
    /// refusal halts the sending stream (docs/SESSIONS.md, 4), so nothing sent after it is stored before it.
    pub fn is_transient(self) -> bool {
        self.status() >= 500 || self.status() == 429 || self == ErrorCode::UnknownIdentity
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for ErrorCode {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(ErrorCode::parse(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_as_itself() {
        for &c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), c);
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), c);
            assert!((400..600).contains(&c.status()), "{c}");
        }
        assert_eq!(ErrorCode::parse("from_a_newer_node"), ErrorCode::Unknown);
    }

    /// docs/PROTOCOL.md's table of every code (`| status | code | ...` under "## Every error code") lists exactly
    /// the codes of [`ErrorCode::ALL`], each with its status.
    #[test]
    fn the_protocol_documents_every_code_with_its_status() {
        let doc = include_str!("../../docs/PROTOCOL.md");
        let section = doc
            .split("\n## Every error code")
            .nth(1)
            .expect("PROTOCOL.md has a section \"## Every error code\"");
        let section = section.split("\n## ").next().unwrap_or(section);
        let mut documented = Vec::new();
        for line in section.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if cells.len() < 4 || !cells[2].starts_with('`') {
                continue;
            }
            let status: u16 = cells[1].parse().expect("a status in the first column");
            documented.push((cells[2].trim_matches('`').to_string(), status));
        }
        let ours: Vec<(String, u16)> = ErrorCode::ALL
            .iter()
            .map(|c| (c.as_str().to_string(), c.status()))
            .collect();
        for c in &ours {
            assert!(
                documented.contains(c),
                "{c:?} is not in PROTOCOL.md's table of every code"
            );
        }
        for d in &documented {
            assert!(
                ours.contains(d),
                "PROTOCOL.md lists {d:?}, which ErrorCode does not have"
            );
        }
    }
}
