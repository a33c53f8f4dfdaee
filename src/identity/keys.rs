//! The key types and their wire form: a peer's secret [`Identity`], its [`PublicKey`] (and the fingerprint people
//! compare), a [`Signature`] and a [`Nonce`], each base64url without padding on the wire.

use std::fmt;

use crate::sync::lock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::AuthError;

fn b64_decode<const N: usize>(s: &str, what: &str) -> Result<[u8; N], String> {
    let bytes = B64
        .decode(s)
        .map_err(|e| format!("{what} is not base64url without padding: {e}"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{what} is {} bytes, not {N}", b.len()))
}

macro_rules! b64_serde {
    ($t:ty, $what:literal) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", $what, self)
            }
        }
    };
}

/// A peer's public key: 43 characters of base64url on the wire. Kept as its 32 compressed bytes (checked to be a
/// point of the curve when made), so tables of many keys stay small and answers that list keys cost nothing to
/// write; it is expanded (a few µs) only to verify.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&B64.encode(self.0))
    }
}

impl std::str::FromStr for PublicKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bytes = b64_decode::<32>(s, "a public key")?;
        PublicKey::from_bytes(&bytes).ok_or_else(|| "not an Ed25519 public key".to_string())
    }
}
b64_serde!(PublicKey, "PublicKey");

/// Keys whose bytes were lately checked to be a curve point ([`PublicKey::from_bytes`]); forgotten all at once
/// when [`VALID_KEYS_KEPT`] is reached (128 KiB at most).
static VALID_KEYS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<[u8; 32]>>> =
    std::sync::LazyLock::new(Default::default);
const VALID_KEYS_KEPT: usize = 4096;

/// Hex digits in a key's fingerprint: 128 bits, enough that nobody can make a key with a chosen fingerprint.
pub const FINGERPRINT_HEX: usize = 32;

impl PublicKey {
    /// How people compare keys by eye or over the phone: the first 128 bits of the SHA-256 of the key's 32 bytes,
    /// as 8 groups of 4 hex digits (`3f2a 9c1b 77d0 e4a5 0b6c 1d2e 4f5a 6b7c`). The page shows it on hover.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = sha2::Sha256::digest(self.0);
        let mut out = String::with_capacity(FINGERPRINT_HEX + FINGERPRINT_HEX / 4);
        for (i, b) in digest[..FINGERPRINT_HEX / 2].iter().enumerate() {
            if i > 0 && i % 2 == 0 {
                out.push(' ');
            }
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
        out
    }
}

impl PublicKey {
    /// The 32 bytes of the compressed key.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// The key from its 32 compressed bytes, if they are one.
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<PublicKey> {
        // Checking a point decompresses it (a square root, ~12 µs), and the same few keys come back in every
        // member list and presence push a node reads: the ones found valid lately are remembered.
        if lock(&VALID_KEYS).contains(bytes) {
            return Some(PublicKey(*bytes));
        }
        VerifyingKey::from_bytes(bytes).ok()?;
        let mut valid = lock(&VALID_KEYS);
        if valid.len() >= VALID_KEYS_KEPT {
            valid.clear();
        }
        valid.insert(*bytes);
        Some(PublicKey(*bytes))
    }

    /// The X25519 public key this Ed25519 key maps to (the birational map from Edwards to Montgomery form, as
    /// libsodium's `crypto_sign_ed25519_pk_to_curve25519`): what mail is sealed to.
    pub fn x25519(&self) -> [u8; 32] {
        VerifyingKey::from_bytes(&self.0)
            .expect("checked to be a point when made")
            .to_montgomery()
            .to_bytes()
    }

    /// Checks `sig` over `bytes` (strictly: no malleable or weak-key signatures).
    pub fn verify(&self, bytes: &[u8], sig: &Signature) -> Result<(), AuthError> {
        VerifyingKey::from_bytes(&self.0)
            .and_then(|key| key.verify_strict(bytes, &sig.0))
            .map_err(|_| AuthError::BadSignature)
    }

    /// Checks many signatures at once (`(bytes, signature, key)` each): `Ok` only if every one would pass
    /// [`PublicKey::verify`]. One multiscalar multiplication for the lot (ed25519-dalek's `verify_batch`, random
    /// coefficients drawn from a transcript of all the inputs) costs about half of checking each alone. The checks
    /// `verify_strict` makes besides the equation are made first: no weak (small-order) key, no small-order `R`;
    /// a non-canonical `s` fails the batch. An `Err` says only that some signature failed: check them one by one
    /// to learn which.
    pub fn verify_batch(items: &[(&[u8], &Signature, &PublicKey)]) -> Result<(), AuthError> {
        let bad = || AuthError::BadSignature;
        let mut keys = Vec::with_capacity(items.len());
        for (_, sig, key) in items {
            let k = VerifyingKey::from_bytes(&key.0).map_err(|_| bad())?;
            if k.is_weak() {
                return Err(bad());
            }
            let r_bytes = sig.0.r_bytes();
            // `verify_strict` compares encodings, so it takes only the canonical one (y < p); decompressing would
            // take y + p too.
            if !canonical_y(r_bytes) {
                return Err(bad());
            }
            let r = curve25519_dalek::edwards::CompressedEdwardsY(r_bytes.to_owned())
                .decompress()
                .ok_or_else(bad)?;
            if r.is_small_order() {
                return Err(bad());
            }
            keys.push(k);
        }
        let messages: Vec<&[u8]> = items.iter().map(|(m, _, _)| *m).collect();
        let sigs: Vec<ed25519_dalek::Signature> = items.iter().map(|(_, s, _)| s.0).collect();
        ed25519_dalek::verify_batch(&messages, &sigs, &keys).map_err(|_| bad())
    }
}

/// Whether a compressed Edwards point's y (its 255 low bits, little-endian) is below p = 2^255 − 19.
fn canonical_y(bytes: &[u8; 32]) -> bool {
    let top = bytes[31] & 0x7f;
    !(top == 0x7f && bytes[1..31].iter().all(|b| *b == 0xff) && bytes[0] >= 0xed)
}

/// A signature: 86 characters of base64url on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(ed25519_dalek::Signature);

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&B64.encode(self.0.to_bytes()))
    }
}

impl std::str::FromStr for Signature {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bytes = b64_decode::<64>(s, "a signature")?;
        Ok(Signature(ed25519_dalek::Signature::from_bytes(&bytes)))
    }
}
b64_serde!(Signature, "Signature");

/// 16 random bytes that make each signed request unique (22 characters of base64url).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nonce(pub [u8; 16]);

impl Nonce {
    pub fn random() -> Nonce {
        Nonce(rand::random())
    }
}

impl fmt::Display for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&B64.encode(self.0))
    }
}

impl std::str::FromStr for Nonce {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        b64_decode::<16>(s, "a nonce").map(Nonce)
    }
}
b64_serde!(Nonce, "Nonce");

/// A peer's secret key. Never leaves the peer: not logged, not serialized.
pub struct Identity {
    key: SigningKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.public_key())
    }
}

impl Identity {
    /// A key kept nowhere: gone when the process ends (`--in-memory`, the demo, benchmarks).
    pub fn ephemeral() -> Identity {
        Identity::from_seed(rand::random())
    }

    /// The key made from a 32-byte secret seed.
    pub fn from_seed(seed: [u8; 32]) -> Identity {
        Identity {
            key: SigningKey::from_bytes(&seed),
        }
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key().to_bytes())
    }

    pub fn sign(&self, bytes: &[u8]) -> Signature {
        Signature(self.key.sign(bytes))
    }

    /// The X25519 secret scalar that goes with [`PublicKey::x25519`] (the first half of the SHA-512 of the seed,
    /// as libsodium's `crypto_sign_ed25519_sk_to_curve25519`; X25519 clamps it): what opens mail sealed to us.
    pub(super) fn x25519_secret(&self) -> [u8; 32] {
        self.key.to_scalar_bytes()
    }

    /// The 32-byte secret seed, for the key file.
    pub(super) fn seed(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_passes_only_when_every_signature_would_pass_alone() {
        let ids: Vec<Identity> = (0..3).map(|_| Identity::ephemeral()).collect();
        let texts: Vec<Vec<u8>> = (0..24).map(|i| format!("line {i}").into_bytes()).collect();
        let sigs: Vec<Signature> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| ids[i % 3].sign(t))
            .collect();
        let keys: Vec<PublicKey> = (0..24).map(|i| ids[i % 3].public_key()).collect();
        fn items<'a>(
            texts: &'a [Vec<u8>],
            sigs: &'a [Signature],
            keys: &'a [PublicKey],
        ) -> Vec<(&'a [u8], &'a Signature, &'a PublicKey)> {
            (0..texts.len())
                .map(|i| (texts[i].as_slice(), &sigs[i], &keys[i]))
                .collect()
        }
        PublicKey::verify_batch(&items(&texts, &sigs, &keys)).unwrap();
        PublicKey::verify_batch(&[]).unwrap();
        for i in [0, 11, 23] {
            let mut t = texts.clone();
            t[i].push(b'!');
            assert_eq!(
                PublicKey::verify_batch(&items(&t, &sigs, &keys)),
                Err(AuthError::BadSignature),
                "text {i} changed"
            );
            let mut k = keys.clone();
            k[i] = ids[(i + 1) % 3].public_key();
            assert_eq!(
                PublicKey::verify_batch(&items(&texts, &sigs, &k)),
                Err(AuthError::BadSignature),
                "signature {i} checked against another key"
            );
            let mut s = sigs.clone();
            s.swap(i, (i + 1) % 24);
            assert_eq!(
                PublicKey::verify_batch(&items(&texts, &s, &keys)),
                Err(AuthError::BadSignature),
                "signatures {i} and its neighbour swapped"
            );
        }
    }

    #[test]
    fn only_a_y_below_p_is_canonical() {
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        assert!(!canonical_y(&p), "p itself");
        let mut below = p;
        below[0] = 0xec;
        assert!(canonical_y(&below), "p - 1");
        let mut sign = below;
        sign[31] |= 0x80;
        assert!(canonical_y(&sign), "the sign bit is not part of y");
        assert!(!canonical_y(&[0xff; 32]), "2^255 - 1");
        assert!(canonical_y(&[0; 32]));
    }

    #[test]
    fn a_batch_refuses_a_weak_key_forgery_as_verify_strict_does() {
        // The identity point as a key: R = [r]B, s = r satisfies the plain equation for any text, so anyone
        // can "sign" as this key. `verify` (strict) refuses weak keys; the batch must too.
        let weak = PublicKey::from_bytes(
            &curve25519_dalek::edwards::EdwardsPoint::default()
                .compress()
                .0,
        )
        .expect("the identity is a point");
        let r = curve25519_dalek::scalar::Scalar::from(7u64);
        let big_r = curve25519_dalek::constants::ED25519_BASEPOINT_POINT * r;
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(big_r.compress().as_bytes());
        bytes[32..].copy_from_slice(r.as_bytes());
        let forged = Signature(ed25519_dalek::Signature::from_bytes(&bytes));
        let text: &[u8] = b"anything at all";
        // The equation alone accepts it: what the pre-checks are for.
        let plain = VerifyingKey::from_bytes(&weak.0).unwrap();
        ed25519_dalek::verify_batch(&[text], &[forged.0], &[plain]).unwrap();
        assert_eq!(weak.verify(text, &forged), Err(AuthError::BadSignature));
        assert_eq!(
            PublicKey::verify_batch(&[(text, &forged, &weak)]),
            Err(AuthError::BadSignature)
        );
        let honest = Identity::ephemeral();
        let good = honest.sign(text);
        let key = honest.public_key();
        assert_eq!(
            PublicKey::verify_batch(&[(text, &good, &key), (text, &forged, &weak)]),
            Err(AuthError::BadSignature),
            "one weak key spoils the batch"
        );
    }

    #[test]
    fn a_fingerprint_is_eight_groups_of_four_hex_digits_and_differs_per_key() {
        let a = Identity::ephemeral().public_key();
        let b = Identity::ephemeral().public_key();
        let fa = a.fingerprint();
        assert_eq!(fa.len(), FINGERPRINT_HEX + 7, "{fa}");
        assert!(
            fa.split(' ')
                .all(|g| g.len() == 4 && g.chars().all(|c| c.is_ascii_hexdigit()))
        );
        assert_eq!(fa, a.fingerprint(), "the same key, the same fingerprint");
        assert_ne!(fa, b.fingerprint());
        // Fixed by the format: the SHA-256 of 32 zero bytes begins 66687aadf862bd776c8fc18b8e9f8e20.
        let zero = PublicKey([0; 32]);
        assert_eq!(
            zero.fingerprint(),
            "6668 7aad f862 bd77 6c8f c18b 8e9f 8e20"
        );
    }

    #[test]
    fn a_key_is_checked_to_be_a_point_every_time_it_is_read_remembered_or_not() {
        let good = Identity::ephemeral().public_key().to_bytes();
        // Bytes that are not the y of any curve point (about half of all values are not).
        let bad = (0u8..=255)
            .map(|i| [i; 32])
            .find(|b| VerifyingKey::from_bytes(b).is_err())
            .expect("some value is no point");
        for _ in 0..2 {
            assert_eq!(
                PublicKey::from_bytes(&good).map(|k| k.to_bytes()),
                Some(good)
            );
            assert!(
                PublicKey::from_bytes(&bad).is_none(),
                "never remembered as valid"
            );
        }
    }

    #[test]
    fn keys_and_signatures_have_the_documented_wire_form_and_round_trip() {
        let id = Identity::ephemeral();
        let key = id.public_key();
        let text = serde_json::to_value(key).unwrap();
        assert_eq!(text.as_str().unwrap().len(), 43);
        assert_eq!(serde_json::from_value::<PublicKey>(text).unwrap(), key);
        let sig = id.sign(b"x");
        let text = serde_json::to_value(sig).unwrap();
        assert_eq!(text.as_str().unwrap().len(), 86);
        assert_eq!(serde_json::from_value::<Signature>(text).unwrap(), sig);
        assert!(serde_json::from_value::<PublicKey>("abc".into()).is_err());
        assert!(serde_json::from_value::<Signature>("!!".into()).is_err());
    }
}
