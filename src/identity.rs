//! Identities nobody can forge: each peer holds an Ed25519 key (made on its first run, kept in its data dir as
//! `identity.key`), and signs what it says with it: its registration, every request it makes to the tracker
//! (the `Hchat-Auth` header), and every chat message. The tracker binds a name to the key that first claims it,
//! and receivers check messages against that key.
//!
//! What lives here is pure: the key types and their wire form (base64url without padding), the exact bytes each
//! kind of signature covers, the header's syntax, and the replay guard. The tracker's extractor and the peer's
//! key cache build on it.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::proto::{ChatMessage, Destination, MessageId, PeerName, RegisterRequest};

/// The key file inside a peer's data dir: the 32-byte secret seed, readable by its owner only.
pub const KEY_FILE: &str = "identity.key";
/// A signed request or registration whose `ts` is further than this from the tracker's clock is refused.
pub const REQUEST_WINDOW_MS: u64 = 60_000;
/// Most (name, nonce) pairs the tracker remembers at once; beyond it, new requests wait (503) until old ones age.
pub const MAX_NONCES: usize = 1_000_000;
/// The header every tracker request that acts as a peer carries.
pub const AUTH_HEADER: &str = "hchat-auth";

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
    /// The stable code on the wire (`docs/PROTOCOL.md`).
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Unauthenticated => "unauthenticated",
            AuthError::MalformedHeader(_) => "bad_auth_header",
            AuthError::MissingIdentity => "missing_identity",
            AuthError::Stale { .. } => "stale_request",
            AuthError::Replayed => "replayed",
            AuthError::BadSignature | AuthError::Unsigned => "bad_signature",
            AuthError::UnknownIdentity(_) => "unknown_identity",
            AuthError::NotYou { .. } => "not_you",
            AuthError::Busy => "tracker_busy",
        }
    }

    /// The HTTP status it is answered with.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::MissingIdentity | AuthError::MalformedHeader(_) => 400,
            AuthError::NotYou { .. } => 403,
            AuthError::Busy => 503,
            _ => 401,
        }
    }
}

impl From<AuthError> for crate::http::ApiError {
    fn from(e: AuthError) -> Self {
        let status = axum::http::StatusCode::from_u16(e.status())
            .unwrap_or(axum::http::StatusCode::UNAUTHORIZED);
        crate::http::ApiError::new(status, e.code(), e.to_string())
    }
}

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read or write the identity key {0}: {1}")]
    Io(PathBuf, String),
    #[error("the identity key {0} is not a 32-byte key; move it away to make a new identity")]
    Corrupt(PathBuf),
}

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

/// Hex digits in a key's fingerprint: 128 bits, enough that nobody can make a key with a chosen fingerprint.
pub const FINGERPRINT_HEX: usize = 32;

impl PublicKey {
    /// How people compare keys by eye or over the phone: the first 128 bits of the SHA-256 of the key's 32 bytes,
    /// as 8 groups of 4 hex digits (`3f2a 9c1b 77d0 e4a5 0b6c 1d2e 4f5a 6b7c`). The page shows it on hover.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.0);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        hex.as_bytes()[..FINGERPRINT_HEX]
            .chunks(4)
            .map(|g| std::str::from_utf8(g).expect("hex is ASCII"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod fingerprint_tests {
    use super::*;

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
}

impl PublicKey {
    /// The 32 bytes of the compressed key.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// The key from its 32 compressed bytes, if they are one.
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<PublicKey> {
        VerifyingKey::from_bytes(bytes)
            .ok()
            .map(|_| PublicKey(*bytes))
    }

    /// Checks `sig` over `bytes` (strictly: no malleable or weak-key signatures).
    pub fn verify(&self, bytes: &[u8], sig: &Signature) -> Result<(), AuthError> {
        VerifyingKey::from_bytes(&self.0)
            .and_then(|key| key.verify_strict(bytes, &sig.0))
            .map_err(|_| AuthError::BadSignature)
    }
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

    /// The key in `dir/identity.key`, made (mode 0600) if there is none yet.
    pub fn load_or_create(dir: &Path) -> Result<Identity, IdentityError> {
        let path = dir.join(KEY_FILE);
        let io = |e: std::io::Error| IdentityError::Io(path.clone(), e.to_string());
        match std::fs::read(&path) {
            Ok(bytes) => {
                let seed: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| IdentityError::Corrupt(path.clone()))?;
                Ok(Identity::from_seed(seed))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::storage::create_private_dir(dir).map_err(io)?;
                let identity = Identity::ephemeral();
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(&path).map_err(io)?;
                file.write_all(identity.key.as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(identity)
            }
            Err(e) => Err(io(e)),
        }
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key().to_bytes())
    }

    pub fn sign(&self, bytes: &[u8]) -> Signature {
        Signature(self.key.sign(bytes))
    }

    /// Sets `msg.sig` to this key's signature of the message.
    pub fn sign_message(&self, msg: &mut ChatMessage) {
        msg.sig = Some(self.sign(&message_bytes(msg)));
    }

    /// A registration of `name` at `ip:port`, stamped now, with a fresh nonce, signed.
    pub fn register_request(&self, name: &PeerName, ip: IpAddr, port: u16) -> RegisterRequest {
        let (public_key, ts, nonce) = (self.public_key(), crate::proto::now_ms(), Nonce::random());
        let sig = self.sign(&register_bytes(name, ip, port, &public_key, ts, &nonce));
        RegisterRequest {
            name: name.clone(),
            ip,
            port,
            public_key: Some(public_key),
            ts: Some(ts),
            nonce: Some(nonce),
            sig: Some(sig),
        }
    }

    /// The `Hchat-Auth` header value for a request `name` makes: stamped now, fresh nonce, signed over
    /// method, path and query, and body.
    pub fn auth_header(
        &self,
        name: &PeerName,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> String {
        let (ts, nonce) = (crate::proto::now_ms(), Nonce::random());
        let sig = self.sign(&request_bytes(method, path_and_query, ts, &nonce, body));
        AuthHeader {
            name: name.clone(),
            ts,
            nonce,
            sig,
        }
        .to_string()
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
    key.verify(
        &register_bytes(&req.name, req.ip, req.port, &key, ts, &nonce),
        &sig,
    )?;
    Ok((key, nonce, ts))
}

/// Refuses a stamp further than [`REQUEST_WINDOW_MS`] from `now`.
pub fn check_window(ts: u64, now: u64) -> Result<(), AuthError> {
    if ts.abs_diff(now) > REQUEST_WINDOW_MS {
        return Err(AuthError::Stale { ts, now });
    }
    Ok(())
}

/// What a peer whose clock is off is told: by how much and which way, and how to fix it. A request's stamp is
/// the sender's clock, so a stamp behind the tracker's means the sender's clock is behind.
fn stale_message(ts: u64, now: u64) -> String {
    let (skew, way) = match ts < now {
        true => (now - ts, "behind"),
        false => (ts - now, "ahead of"),
    };
    format!(
        "your clock is {} {way} the tracker's (requests must be stamped within {} s of it, and this one is {skew}          ms off): set this machine's clock right, best by NTP (e.g. `timedatectl set-ntp true`), then start again",
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

/// The parsed `Hchat-Auth` header: `name=<peer>; ts=<unix ms>; nonce=<b64url>; sig=<b64url>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHeader {
    pub name: PeerName,
    pub ts: u64,
    pub nonce: Nonce,
    pub sig: Signature,
}

impl fmt::Display for AuthHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "name={}; ts={}; nonce={}; sig={}",
            self.name, self.ts, self.nonce, self.sig
        )
    }
}

impl std::str::FromStr for AuthHeader {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Self, AuthError> {
        let bad = |m: String| AuthError::MalformedHeader(m);
        let (mut name, mut ts, mut nonce, mut sig) = (None, None, None, None);
        for part in s.split(';') {
            let (k, v) = part
                .trim()
                .split_once('=')
                .ok_or_else(|| bad(format!("`{}` is not key=value", part.trim())))?;
            match k {
                "name" => name = Some(PeerName::new(v).map_err(|e| bad(format!("name: {e}")))?),
                "ts" => ts = Some(v.parse().map_err(|e| bad(format!("ts: {e}")))?),
                "nonce" => nonce = Some(v.parse().map_err(|e| bad(format!("nonce: {e}")))?),
                "sig" => sig = Some(v.parse().map_err(|e| bad(format!("sig: {e}")))?),
                other => return Err(bad(format!("unknown key `{other}`"))),
            }
        }
        match (name, ts, nonce, sig) {
            (Some(name), Some(ts), Some(nonce), Some(sig)) => Ok(AuthHeader {
                name,
                ts,
                nonce,
                sig,
            }),
            _ => Err(bad("name, ts, nonce and sig are all needed".into())),
        }
    }
}

impl AuthHeader {
    /// Checks the stamp and the signature of a request against the signer's key.
    pub fn verify(
        &self,
        key: &PublicKey,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        now: u64,
    ) -> Result<(), AuthError> {
        check_window(self.ts, now)?;
        key.verify(
            &request_bytes(method, path_and_query, self.ts, &self.nonce, body),
            &self.sig,
        )
    }
}

/// Remembers the (name, nonce) of every signed request accepted within the window, so none is accepted twice.
/// Bounded by [`MAX_NONCES`]; an entry is forgotten once its request could no longer pass the window check.
///
/// A pair is kept as a 64-bit keyed hash (the key is random per process), 24 bytes an entry instead of a name and
/// a nonce twice over: a tracker at full rate holds a million of them. Two pairs share a hash with odds of one in
/// 2^64 per pair held, and the worst that does is refuse one honest request as a replay.
#[derive(Debug)]
pub struct ReplayGuard {
    seen: HashSet<u64>,
    /// In the order they were seen, with when each may be forgotten (monotonic, so the front ages first).
    order: VecDeque<(u64, u64)>,
    capacity: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard::with_capacity(MAX_NONCES)
    }
}

impl ReplayGuard {
    pub fn with_capacity(capacity: usize) -> ReplayGuard {
        ReplayGuard {
            seen: HashSet::new(),
            order: VecDeque::new(),
            capacity,
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Records a nonce first seen at `now`; refuses it if it was seen before.
    pub fn admit(&mut self, name: &PeerName, nonce: Nonce, now: u64) -> Result<(), AuthError> {
        // A stamp may run up to one window ahead of the clock, and is good for one window after it.
        while let Some((forget_at, _)) = self.order.front()
            && *forget_at <= now
        {
            let (_, old) = self.order.pop_front().expect("front exists");
            self.seen.remove(&old);
        }
        let key = std::hash::BuildHasher::hash_one(&self.hasher, (name.as_str(), nonce.0));
        if self.seen.contains(&key) {
            return Err(AuthError::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(AuthError::Busy);
        }
        let forget_at = self
            .order
            .back()
            .map_or(0, |b| b.0)
            .max(now + 2 * REQUEST_WINDOW_MS);
        self.order.push_back((forget_at, key));
        self.seen.insert(key);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ChannelName;

    fn n(s: &str) -> PeerName {
        PeerName::new(s).unwrap()
    }

    /// A field's name and how to change it.
    type Tamper<T> = Vec<(&'static str, Box<dyn Fn(&mut T)>)>;

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

    #[test]
    fn a_stale_stamp_says_how_far_and_which_way_the_clock_is_off_and_how_to_fix_it() {
        let now = 1_800_000_000_000;
        let behind = check_window(now - 120_000, now).unwrap_err();
        assert_eq!(behind.code(), "stale_request");
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
    fn a_receipt_has_the_documented_bytes_and_binds_receiver_messages_and_verdicts() {
        let (alice, bob) = (n("alice"), n("bob"));
        let id = uuid::Uuid::nil();
        let refused = ReceiptVerdict::Refused("not_joined".into());
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
    fn an_auth_header_round_trips_and_covers_method_path_and_body() {
        let id = Identity::ephemeral();
        let value = id.auth_header(&n("alice"), "POST", "/add-list", b"{\"a\":1}");
        let h: AuthHeader = value.parse().unwrap();
        assert_eq!(h.name, n("alice"));
        let key = id.public_key();
        h.verify(&key, "POST", "/add-list", b"{\"a\":1}", h.ts)
            .unwrap();
        for (m, p, b) in [
            ("GET", "/add-list", &b"{\"a\":1}"[..]),
            ("POST", "/leave", &b"{\"a\":1}"[..]),
            ("POST", "/add-list", &b"{\"a\":2}"[..]),
        ] {
            assert_eq!(h.verify(&key, m, p, b, h.ts), Err(AuthError::BadSignature));
        }
        assert!(matches!(
            h.verify(
                &key,
                "POST",
                "/add-list",
                b"{\"a\":1}",
                h.ts - REQUEST_WINDOW_MS - 1
            ),
            Err(AuthError::Stale { .. })
        ));
        for bad in ["", "name=alice", "name=al ice; ts=1; nonce=x; sig=y", "x"] {
            assert!(matches!(
                bad.parse::<AuthHeader>(),
                Err(AuthError::MalformedHeader(_))
            ));
        }
    }

    #[test]
    fn the_replay_guard_refuses_a_nonce_twice_forgets_it_after_the_window_and_is_bounded() {
        let mut g = ReplayGuard::with_capacity(2);
        let (a, x, y, z) = (
            n("alice"),
            Nonce::random(),
            Nonce::random(),
            Nonce::random(),
        );
        g.admit(&a, x, 0).unwrap();
        assert_eq!(g.admit(&a, x, 10), Err(AuthError::Replayed));
        g.admit(&n("bob"), x, 10).unwrap();
        assert_eq!(g.admit(&a, y, 20), Err(AuthError::Busy));
        g.admit(&a, z, 2 * REQUEST_WINDOW_MS + 10).unwrap();
        assert_eq!(g.len(), 1, "the old entries aged out");
    }

    #[test]
    fn a_key_file_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        let again = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(first.public_key(), again.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::Corrupt(_))
        ));
    }
}
