//! [`AuthError`]: why a signature, a key or a signed request is not accepted, with its stable code.

use super::signed::REQUEST_WINDOW_MS;
use crate::proto::{ErrorCode, PeerName};

/// Why a signature, a key or a signed request is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("this request acts as a peer and needs an Hchat-Auth header (see docs/PROTOCOL.md)")]
    Unauthenticated,
    #[error("the Hchat-Auth header is malformed: {0}")]
    MalformedHeader(String),
    #[error("the registration carries no identity: public_key, ts, nonce and sig are all needed")]
    MissingIdentity,
    #[error("{}", stale_message(*ts, *now))]
    Stale {
        /// The request's stamp (the sender's clock).
        ts: u64,
        /// The tracker's clock.
        now: u64,
    },
    #[error("this request was seen before (same name and nonce)")]
    Replayed,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the message is not signed")]
    Unsigned,
    #[error("no identity is known for {0}")]
    UnknownIdentity(PeerName),
    #[error("signed by {signer} but acting as {actor}")]
    NotYou { signer: PeerName, actor: PeerName },
    #[error("the tracker remembers too many recent requests; try again in a moment")]
    Busy,
}

impl AuthError {
    /// The stable code on the wire (`docs/PROTOCOL.md`); the refusal is sent with that code's status.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Unauthenticated => ErrorCode::Unauthenticated,
            AuthError::MalformedHeader(_) => ErrorCode::BadAuthHeader,
            AuthError::MissingIdentity => ErrorCode::MissingIdentity,
            AuthError::Stale { .. } => ErrorCode::StaleRequest,
            AuthError::Replayed => ErrorCode::Replayed,
            AuthError::BadSignature | AuthError::Unsigned => ErrorCode::BadSignature,
            AuthError::UnknownIdentity(_) => ErrorCode::UnknownIdentity,
            AuthError::NotYou { .. } => ErrorCode::NotYou,
            AuthError::Busy => ErrorCode::TrackerBusy,
        }
    }
}

/// What a peer whose clock is off is told: by how much and which way, and how to fix it. A request's stamp is
/// the sender's clock, so a stamp behind the tracker's means the sender's clock is behind.
fn stale_message(ts: u64, now: u64) -> String {
    let (skew, way) = match ts < now {
        true => (now - ts, "behind"),
        false => (ts - now, "ahead of"),
    };
    format!(
        "your clock is {} {way} the tracker's (requests must be stamped within {} s of it, and this one is {skew} ms off): set this machine's clock right, best by NTP (e.g. `timedatectl set-ntp true`), then start again",
        human_duration(skew),
        REQUEST_WINDOW_MS / 1000
    )
}

/// A length of time as people say it, rounded: `45 s`, `2 min`, `3 h`, `2 days`.
fn human_duration(ms: u64) -> String {
    let s = (ms + 500) / 1000;
    match s {
        0..120 => format!("{s} s"),
        120..7_200 => format!("{} min", (s + 30) / 60),
        7_200..172_800 => format!("{} h", (s + 1_800) / 3_600),
        _ => format!("{} days", (s + 43_200) / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::super::check_window;
    use super::*;

    #[test]
    fn a_stale_stamp_says_how_far_and_which_way_the_clock_is_off_and_how_to_fix_it() {
        let now = 1_800_000_000_000;
        let behind = check_window(now - 120_000, now).unwrap_err();
        assert_eq!(behind.code(), ErrorCode::StaleRequest);
        let text = behind.to_string();
        assert!(
            text.starts_with("your clock is 2 min behind the tracker's"),
            "{text}"
        );
        assert!(text.contains("NTP"), "{text}");
        let ahead = check_window(now + 3 * 86_400_000, now).unwrap_err();
        assert!(
            ahead
                .to_string()
                .starts_with("your clock is 3 days ahead of the tracker's"),
            "{ahead}"
        );
        assert!(check_window(now - REQUEST_WINDOW_MS, now).is_ok());
        assert_eq!(human_duration(61_000), "61 s");
        assert_eq!(human_duration(5 * 3_600_000), "5 h");
    }

    #[test]
    fn each_refusal_is_sent_with_the_status_it_always_had() {
        let stale = AuthError::Stale { ts: 0, now: 0 };
        let not_you = AuthError::NotYou {
            signer: crate::identity::test_name("a"),
            actor: crate::identity::test_name("b"),
        };
        let unknown = AuthError::UnknownIdentity(crate::identity::test_name("a"));
        let header = AuthError::MalformedHeader(String::new());
        for (e, status) in [
            (&AuthError::Unauthenticated, 401),
            (&header, 400),
            (&AuthError::MissingIdentity, 400),
            (&stale, 401),
            (&AuthError::Replayed, 401),
            (&AuthError::BadSignature, 401),
            (&AuthError::Unsigned, 401),
            (&unknown, 401),
            (&not_you, 403),
            (&AuthError::Busy, 503),
        ] {
            assert_eq!(e.code().status(), status, "{e}");
        }
    }
}
