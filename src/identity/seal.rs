//! Held mail sealed to its recipient: what a sender leaves in the tracker's mailbox is a [`SealedMail`], whose
//! outside says only what the tracker needs (sender, recipient, id, `ts`: for deduplication, acknowledgements,
//! quotas and expiry) and whose inside, the whole signed [`ChatMessage`], only the recipient can read.
//!
//! The seal is libsodium's sealed box (`crypto_box_seal`: an ephemeral X25519 key, XSalsa20-Poly1305, the nonce
//! the BLAKE2b-192 of the ephemeral and the recipient's public keys), to the X25519 key that the recipient's
//! Ed25519 identity maps to ([`PublicKey::x25519`]). Anonymous on purpose: who wrote it is proved by the inner
//! message's signature, which the recipient checks as for any message, and the inside must agree with the outside
//! ([`SealedMail::open`]), so a tracker cannot pass one sender's sealed mail off as another's, nor re-address it.
//!
//! Pure: no I/O here. The tracker checks only the outside ([`SealedMail::check_outside`]); the peer opens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

use super::{Identity, PublicKey};
use crate::proto::{ChatMessage, Destination, ErrorCode, MessageId, PeerName};

/// The one seal there is: libsodium's `crypto_box_seal`, named as the `seal` field says it.
pub const SEAL: &str = "crypto_box_seal";
/// Bytes a seal adds to its plaintext: the ephemeral public key (32) and the Poly1305 tag (16).
pub const SEAL_OVERHEAD: usize = 48;

/// A held message as it travels to and from the tracker and is kept there (`POST /mailbox/deposit`'s envelope).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedMail {
    /// Always [`SEAL`].
    pub seal: String,
    pub from: PeerName,
    pub to: PeerName,
    pub id: MessageId,
    /// The inner message's `ts`.
    pub ts: u64,
    /// The sealed box of the inner message's JSON, base64url without padding.
    pub sealed: String,
}

/// Why sealed mail is refused (422 `bad_seal`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("mail sealed with {0:?}, not {SEAL}")]
    UnknownSeal(String),
    #[error("its sealed box is not base64url without padding")]
    NotBase64,
    #[error("its sealed box is {0} bytes, less than a seal's {SEAL_OVERHEAD}")]
    TooShort(usize),
    #[error("it does not open with this node's key (sealed to another key, or changed on the way)")]
    DoesNotOpen,
    #[error("it opens to something that is not a chat message: {0}")]
    NotAMessage(String),
    #[error("its outside says {field} {outside}, its inside {inside}")]
    Mismatch {
        field: &'static str,
        outside: String,
        inside: String,
    },
}

impl SealError {
    pub fn code(&self) -> ErrorCode {
        ErrorCode::BadSeal
    }
}

impl SealedMail {
    /// Seals a (signed) message for `to`, whose identity is `key`; for a channel message, one seal per member.
    pub fn seal(msg: &ChatMessage, to: &PeerName, key: &PublicKey) -> SealedMail {
        let plain = serde_json::to_vec(msg).expect("a message always serializes");
        let boxed = crypto_box::PublicKey::from(key.x25519())
            .seal(&mut crypto_box::aead::OsRng, &plain)
            .expect("sealing in memory does not fail");
        SealedMail {
            seal: SEAL.to_string(),
            from: msg.from.clone(),
            to: to.clone(),
            id: msg.id,
            ts: msg.ts,
            sealed: B64.encode(boxed),
        }
    }

    /// What can be checked without the recipient's key: the seal is known and its box well formed. Returns the
    /// box.
    pub fn check_outside(&self) -> Result<Vec<u8>, SealError> {
        if self.seal != SEAL {
            return Err(SealError::UnknownSeal(self.seal.clone()));
        }
        let boxed = B64.decode(&self.sealed).map_err(|_| SealError::NotBase64)?;
        if boxed.len() <= SEAL_OVERHEAD {
            return Err(SealError::TooShort(boxed.len()));
        }
        Ok(boxed)
    }

    /// Opens mail sealed to `me`, known as `my_name`, and checks that the inside is what the outside says: the
    /// same sender, id and `ts`, and for `my_name` (a direct message to `my_name`, or a channel message). The
    /// inner message's signature is the caller's to check, as for any message.
    pub fn open(&self, me: &Identity, my_name: &PeerName) -> Result<ChatMessage, SealError> {
        let boxed = self.check_outside()?;
        let plain = crypto_box::SecretKey::from(me.x25519_secret())
            .unseal(&boxed)
            .map_err(|_| SealError::DoesNotOpen)?;
        let msg: ChatMessage =
            serde_json::from_slice(&plain).map_err(|e| SealError::NotAMessage(e.to_string()))?;
        let mismatch = |field, outside: &dyn ToString, inside: &dyn ToString| {
            Err(SealError::Mismatch {
                field,
                outside: outside.to_string(),
                inside: inside.to_string(),
            })
        };
        if &self.to != my_name {
            return mismatch("to", &self.to, my_name);
        }
        if msg.from != self.from {
            return mismatch("from", &self.from, &msg.from);
        }
        if msg.id != self.id {
            return mismatch("id", &self.id, &msg.id);
        }
        if msg.ts != self.ts {
            return mismatch("ts", &self.ts, &msg.ts);
        }
        if let Destination::Direct(p) = &msg.dest
            && p != &self.to
        {
            return mismatch("to", &self.to, p);
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{test_name as n, verify_message};
    use crate::proto::ChannelName;

    fn signed(by: &Identity, from: &str, dest: Destination, text: &str) -> ChatMessage {
        let mut m = ChatMessage::new(n(from), dest, text.into()).unwrap();
        by.sign_message(&mut m);
        m
    }

    #[test]
    fn the_x25519_keys_derived_from_an_identity_are_a_pair() {
        let bob = Identity::ephemeral();
        let secret = crypto_box::SecretKey::from(bob.x25519_secret());
        assert_eq!(
            secret.public_key().to_bytes(),
            bob.public_key().x25519(),
            "the Edwards-to-Montgomery map of the public key is the public key of the derived secret"
        );
    }

    #[test]
    fn given_a_dm_and_a_channel_message_sealed_to_bob_then_bob_opens_each_and_nothing_of_them_shows_outside()
     {
        let (alice, bob) = (Identity::ephemeral(), Identity::ephemeral());
        let general = ChannelName::new("general").unwrap();
        for m in [
            signed(
                &alice,
                "alice",
                Destination::Direct(n("bob")),
                "the secret plan",
            ),
            signed(
                &alice,
                "alice",
                Destination::Channel(general),
                "the secret plan",
            ),
        ] {
            let sealed = SealedMail::seal(&m, &n("bob"), &bob.public_key());
            let wire = serde_json::to_string(&sealed).unwrap();
            assert!(
                !wire.contains("secret") && !wire.contains("general"),
                "{wire}"
            );
            let back: SealedMail = serde_json::from_str(&wire).unwrap();
            let opened = back.open(&bob, &n("bob")).unwrap();
            assert_eq!(opened, m);
            verify_message(&opened, &alice.public_key()).unwrap();
            assert_eq!(
                (sealed.from.as_str(), sealed.id, sealed.ts),
                ("alice", m.id, m.ts)
            );
        }
    }

    #[test]
    fn sealing_twice_gives_two_boxes() {
        let (alice, bob) = (Identity::ephemeral(), Identity::ephemeral());
        let m = signed(&alice, "alice", Destination::Direct(n("bob")), "hi");
        let (a, b) = (
            SealedMail::seal(&m, &n("bob"), &bob.public_key()),
            SealedMail::seal(&m, &n("bob"), &bob.public_key()),
        );
        assert_ne!(a.sealed, b.sealed, "an ephemeral key each time");
    }

    #[test]
    fn given_tampered_or_misdirected_mail_then_it_is_refused_with_bad_seal() {
        let (alice, bob, carol) = (
            Identity::ephemeral(),
            Identity::ephemeral(),
            Identity::ephemeral(),
        );
        let m = signed(&alice, "alice", Destination::Direct(n("bob")), "hi bob");
        let good = SealedMail::seal(&m, &n("bob"), &bob.public_key());

        let mut flipped = good.clone();
        let mut bytes = B64.decode(&flipped.sealed).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        flipped.sealed = B64.encode(&bytes);
        assert_eq!(flipped.open(&bob, &n("bob")), Err(SealError::DoesNotOpen));

        // Sealed to carol's key: bob cannot open it.
        let to_carol = SealedMail::seal(&m, &n("bob"), &carol.public_key());
        assert_eq!(to_carol.open(&bob, &n("bob")), Err(SealError::DoesNotOpen));
        // Opened by carol, it is not for her.
        let for_bob = SealedMail::seal(&m, &n("carol"), &carol.public_key());
        assert!(matches!(
            for_bob.open(&carol, &n("carol")),
            Err(SealError::Mismatch { field: "to", .. })
        ));
        // Addressed outside to someone else.
        assert!(matches!(
            good.open(&bob, &n("bobby")),
            Err(SealError::Mismatch { field: "to", .. })
        ));

        let mut swapped = good.clone();
        swapped.from = n("mallory");
        assert!(matches!(
            swapped.open(&bob, &n("bob")),
            Err(SealError::Mismatch { field: "from", .. })
        ));
        let mut other_id = good.clone();
        other_id.id = MessageId::now_v7();
        assert!(matches!(
            other_id.open(&bob, &n("bob")),
            Err(SealError::Mismatch { field: "id", .. })
        ));
        let mut other_ts = good.clone();
        other_ts.ts += 1;
        assert!(matches!(
            other_ts.open(&bob, &n("bob")),
            Err(SealError::Mismatch { field: "ts", .. })
        ));

        let mut unknown = good.clone();
        unknown.seal = "rot13".into();
        assert!(matches!(
            unknown.open(&bob, &n("bob")),
            Err(SealError::UnknownSeal(_))
        ));
        let mut short = good.clone();
        short.sealed = B64.encode([0u8; SEAL_OVERHEAD]);
        assert_eq!(short.check_outside(), Err(SealError::TooShort(48)));
        let mut garbled = good.clone();
        garbled.sealed = "not base64!".into();
        assert_eq!(garbled.check_outside(), Err(SealError::NotBase64));

        // Not a message inside (something bob's key opens, but not JSON of a message).
        let mut junk = good.clone();
        junk.sealed = B64.encode(
            crypto_box::PublicKey::from(bob.public_key().x25519())
                .seal(&mut crypto_box::aead::OsRng, b"{\"text\":\"x\"}")
                .unwrap(),
        );
        assert!(matches!(
            junk.open(&bob, &n("bob")),
            Err(SealError::NotAMessage(_))
        ));
        for e in [SealError::DoesNotOpen, SealError::NotBase64] {
            assert_eq!(e.code(), ErrorCode::BadSeal);
        }
        assert_eq!(good.open(&bob, &n("bob")).unwrap(), m);
    }
}
