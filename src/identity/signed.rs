//! What each signature covers, byte for byte, and the checks of it: a registration, a request (the `Hchat-Auth`
//! header's signature), a chat message and a delivery receipt. Each starts with its own tag (`hchat-msg-v1`, ...),
//! so a signature of one kind is never valid as another.

use std::fmt;
use std::net::IpAddr;

use super::{AuthError, Identity, Nonce, PublicKey};
use crate::proto::{ChatMessage, Destination, MessageId, PeerName, RegisterRequest};

/// A signed request or registration whose `ts` is further than this from the tracker's clock is refused.
pub const REQUEST_WINDOW_MS: u64 = 60_000;

impl Identity {
    /// Sets `msg.sig` to this key's signature of the message.
    pub fn sign_message(&self, msg: &mut ChatMessage) {
        msg.sig = Some(self.sign(&message_bytes(msg)));
    }

    /// A registration of `name` at `ip:port`, stamped now, with a fresh nonce, signed.
    pub fn register_request(&self, name: &PeerName, ip: IpAddr, port: u16) -> RegisterRequest {
        self.register_request_with(name, ip, port, None)
    }

    /// [`Identity::register_request`] advertising a session port too (signed with the rest).
    pub fn register_request_with(
        &self,
        name: &PeerName,
        ip: IpAddr,
        port: u16,
        quic_port: Option<u16>,
    ) -> RegisterRequest {
        let (public_key, ts, nonce) = (self.public_key(), crate::proto::now_ms(), Nonce::random());
        let mut bytes = register_bytes(name, ip, port, &public_key, ts, &nonce);
        append_quic_port(&mut bytes, quic_port);
        let sig = self.sign(&bytes);
        RegisterRequest {
            name: name.clone(),
            ip,
            port,
            public_key: Some(public_key),
            ts: Some(ts),
            nonce: Some(nonce),
            sig: Some(sig),
            quic_port,
        }
    }
}

/// A registration that advertises a session port signs it too, after the rest: `\nquic {port}`. Without one the
/// signed bytes are exactly [`register_bytes`], as before sessions.
fn append_quic_port(bytes: &mut Vec<u8>, quic_port: Option<u16>) {
    if let Some(p) = quic_port {
        bytes.extend_from_slice(format!("\nquic {p}").as_bytes());
    }
}

/// What a chat message's `sig` covers: everything that gives it meaning.
pub fn message_bytes(msg: &ChatMessage) -> Vec<u8> {
    let dest = match &msg.dest {
        Destination::Channel(c) => format!("#{c}"),
        Destination::Direct(p) => format!("@{p}"),
    };
    format!(
        "hchat-msg-v1\n{}\n{}\n{dest}\n{}\n{}",
        msg.id.hyphenated(),
        msg.from,
        msg.ts,
        msg.text
    )
    .into_bytes()
}

/// What a registration's `sig` covers.
pub fn register_bytes(
    name: &PeerName,
    ip: IpAddr,
    port: u16,
    key: &PublicKey,
    ts: u64,
    nonce: &Nonce,
) -> Vec<u8> {
    format!("hchat-register-v1\n{name}\n{ip}\n{port}\n{key}\n{ts}\n{nonce}").into_bytes()
}

/// What an `Hchat-Auth` signature covers: the request line's method and target, the stamp, then the raw body.
pub fn request_bytes(
    method: &str,
    path_and_query: &str,
    ts: u64,
    nonce: &Nonce,
    body: &[u8],
) -> Vec<u8> {
    let mut bytes =
        format!("hchat-req-v1\n{method}\n{path_and_query}\n{ts}\n{nonce}\n").into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// What a receiver did with one pushed message, as its receipt states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptVerdict {
    /// Stored now.
    Stored,
    /// Held already (the same sender and id).
    Duplicate,
    /// Refused, with the stable code the answer gives.
    Refused(String),
}

impl fmt::Display for ReceiptVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReceiptVerdict::Stored => f.write_str("stored"),
            ReceiptVerdict::Duplicate => f.write_str("duplicate"),
            ReceiptVerdict::Refused(code) => write!(f, "refused:{code}"),
        }
    }
}

/// What a delivery receipt's signature covers: the receiver's name, the sender (the `from` of the first message
/// pushed), then one line per message pushed, in order: its `from`, its id and the verdict. Signed with the
/// receiver's key, it proves that the node which answered at the address holds the key the tracker binds to the
/// name the message was for; an address that does not hold it (a puppet's) cannot make one.
pub fn receipt_bytes<'a>(
    receiver: &PeerName,
    sender: &PeerName,
    entries: impl IntoIterator<Item = (&'a PeerName, &'a MessageId, &'a ReceiptVerdict)>,
) -> Vec<u8> {
    let mut s = format!("hchat-receipt-v1\n{receiver}\n{sender}");
    for (from, id, verdict) in entries {
        s.push_str(&format!("\n{from} {} {verdict}", id.hyphenated()));
    }
    s.into_bytes()
}

/// Checks a message's signature against its sender's key.
pub fn verify_message(msg: &ChatMessage, key: &PublicKey) -> Result<(), AuthError> {
    let sig = msg.sig.as_ref().ok_or(AuthError::Unsigned)?;
    key.verify(&message_bytes(msg), sig)
}

/// Checks the signatures of many messages at once, each against the key given with it: `Ok` only if every one
/// would pass [`verify_message`] ([`PublicKey::verify_batch`]); on `Err`, check them one by one to learn which.
pub fn verify_messages(items: &[(&ChatMessage, PublicKey)]) -> Result<(), AuthError> {
    let bytes: Vec<Vec<u8>> = items.iter().map(|(m, _)| message_bytes(m)).collect();
    let mut list = Vec::with_capacity(items.len());
    for ((m, key), b) in items.iter().zip(&bytes) {
        let sig = m.sig.as_ref().ok_or(AuthError::Unsigned)?;
        list.push((b.as_slice(), sig, key));
    }
    PublicKey::verify_batch(&list)
}

/// Checks a registration: all identity fields present, stamped within the window of `now`, signed by the key it
/// carries. Returns that key and the nonce (for the replay guard).
pub fn verify_registration(
    req: &RegisterRequest,
    now: u64,
) -> Result<(PublicKey, Nonce, u64), AuthError> {
    let (Some(key), Some(ts), Some(nonce), Some(sig)) =
        (req.public_key, req.ts, req.nonce, req.sig)
    else {
        return Err(AuthError::MissingIdentity);
    };
    check_window(ts, now)?;
    let mut bytes = register_bytes(&req.name, req.ip, req.port, &key, ts, &nonce);
    append_quic_port(&mut bytes, req.quic_port);
    key.verify(&bytes, &sig)?;
    Ok((key, nonce, ts))
}

/// Refuses a stamp further than [`REQUEST_WINDOW_MS`] from `now`.
pub fn check_window(ts: u64, now: u64) -> Result<(), AuthError> {
    if ts.abs_diff(now) > REQUEST_WINDOW_MS {
        return Err(AuthError::Stale { ts, now });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::test_name as n;
    use crate::proto::ChannelName;

    /// A field's name and how to change it.
    type Tamper<T> = Vec<(&'static str, Box<dyn Fn(&mut T)>)>;

    #[test]
    fn a_receipt_has_the_documented_bytes_and_binds_receiver_messages_and_verdicts() {
        let (alice, bob) = (n("alice"), n("bob"));
        let id = uuid::Uuid::nil();
        let refused = ReceiptVerdict::Refused(crate::proto::ErrorCode::NotJoined.to_string());
        let entries = [
            (&alice, &id, &ReceiptVerdict::Stored),
            (&alice, &id, &ReceiptVerdict::Duplicate),
            (&alice, &id, &refused),
        ];
        assert_eq!(
            String::from_utf8(receipt_bytes(&bob, &alice, entries)).unwrap(),
            "hchat-receipt-v1\nbob\nalice\n\
             alice 00000000-0000-0000-0000-000000000000 stored\n\
             alice 00000000-0000-0000-0000-000000000000 duplicate\n\
             alice 00000000-0000-0000-0000-000000000000 refused:not_joined"
        );
        let key = Identity::ephemeral();
        let sig = key.sign(&receipt_bytes(&bob, &alice, entries));
        let public = key.public_key();
        public
            .verify(&receipt_bytes(&bob, &alice, entries), &sig)
            .unwrap();
        let other_verdict = [(&alice, &id, &ReceiptVerdict::Stored)];
        for wrong in [
            receipt_bytes(&n("carol"), &alice, entries),
            receipt_bytes(&bob, &alice, other_verdict),
            receipt_bytes(&bob, &bob, entries),
        ] {
            assert_eq!(public.verify(&wrong, &sig), Err(AuthError::BadSignature));
        }
        let puppet = Identity::ephemeral().public_key();
        assert!(
            puppet
                .verify(&receipt_bytes(&bob, &alice, entries), &sig)
                .is_err()
        );
    }

    #[test]
    fn a_signed_message_verifies_and_any_tampered_field_fails() {
        let alice = Identity::ephemeral();
        let mut m = ChatMessage::new(
            n("alice"),
            Destination::Channel(ChannelName::new("general").unwrap()),
            "hello".into(),
        )
        .unwrap();
        assert_eq!(
            verify_message(&m, &alice.public_key()),
            Err(AuthError::Unsigned)
        );
        alice.sign_message(&mut m);
        verify_message(&m, &alice.public_key()).unwrap();
        let wire: ChatMessage = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        verify_message(&wire, &alice.public_key()).unwrap();

        let tampered: Tamper<ChatMessage> = vec![
            ("id", Box::new(|m| m.id = uuid::Uuid::now_v7())),
            ("from", Box::new(|m| m.from = n("mallory"))),
            (
                "channel",
                Box::new(|m| m.dest = Destination::Channel(ChannelName::new("other").unwrap())),
            ),
            (
                "to",
                Box::new(|m| m.dest = Destination::Direct(n("general"))),
            ),
            ("ts", Box::new(|m| m.ts += 1)),
            ("text", Box::new(|m| m.text.push('!'))),
        ];
        for (field, change) in tampered {
            let mut t = m.clone();
            change(&mut t);
            assert_eq!(
                verify_message(&t, &alice.public_key()),
                Err(AuthError::BadSignature),
                "a changed {field} must not verify"
            );
        }
        let mallory = Identity::ephemeral();
        assert_eq!(
            verify_message(&m, &mallory.public_key()),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn a_registration_verifies_within_the_window_and_each_tampered_field_fails() {
        let id = Identity::ephemeral();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let req = id.register_request(&n("alice"), lo, 8000);
        let now = req.ts.unwrap();
        let (key, ..) = verify_registration(&req, now).unwrap();
        assert_eq!(key, id.public_key());
        assert!(matches!(
            verify_registration(&req, now + REQUEST_WINDOW_MS + 1),
            Err(AuthError::Stale { .. })
        ));
        let other = Identity::ephemeral().public_key();
        let tampered: Tamper<RegisterRequest> = vec![
            ("name", Box::new(|r| r.name = n("bob"))),
            ("ip", Box::new(|r| r.ip = "127.0.0.2".parse().unwrap())),
            ("port", Box::new(|r| r.port = 8001)),
            ("public_key", Box::new(move |r| r.public_key = Some(other))),
            ("ts", Box::new(|r| r.ts = r.ts.map(|t| t + 1))),
            ("nonce", Box::new(|r| r.nonce = Some(Nonce::random()))),
            ("quic_port", Box::new(|r| r.quic_port = Some(8000))),
        ];
        for (field, change) in tampered {
            let mut t = req.clone();
            change(&mut t);
            assert_eq!(
                verify_registration(&t, now).map(|_| ()),
                Err(AuthError::BadSignature),
                "a changed {field} must not verify"
            );
        }
        let mut bare = req.clone();
        bare.sig = None;
        assert_eq!(
            verify_registration(&bare, now).map(|_| ()),
            Err(AuthError::MissingIdentity)
        );
    }

    #[test]
    fn a_registration_with_a_session_port_signs_it() {
        let id = Identity::ephemeral();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let req = id.register_request_with(&n("alice"), lo, 8000, Some(8000));
        let now = req.ts.unwrap();
        assert!(verify_registration(&req, now).is_ok());
        for changed in [None, Some(8001)] {
            let mut t = req.clone();
            t.quic_port = changed;
            assert_eq!(
                verify_registration(&t, now).map(|_| ()),
                Err(AuthError::BadSignature),
                "quic_port {changed:?} instead of 8000 must not verify"
            );
        }
    }
}
