//! Identities nobody can forge: each peer holds an Ed25519 key (made on its first run, kept in its data dir as
//! `identity.key`), and signs what it says with it: its registration, every request it makes to the tracker
//! (the `Hchat-Auth` header), and every chat message. The tracker binds a name to the key that first claims it,
//! and receivers check messages against that key.
//!
//! Pure: no HTTP and no network here, one file per concern:
//! - `keys`: the key types and their wire form (base64url without padding), fingerprints;
//! - `key_file`: the secret key kept in a peer's data dir;
//! - `signed`: the exact bytes each kind of signature covers (registration, request, message, receipt) and
//!   their checks;
//! - `auth_header`: the `Hchat-Auth` header's syntax;
//! - `replay`: the guard that accepts each signed request once;
//! - `seal`: held mail sealed to its recipient's key (the tracker keeps what it cannot read).
//!
//! The HTTP layer maps [`AuthError`] to its answer (`crate::http`); the tracker's extractor and the peer's key
//! cache build on what is here.

mod auth_header;
mod error;
mod key_file;
mod keys;
mod replay;
mod seal;
mod signed;

pub use auth_header::{AUTH_HEADER, AuthHeader};
pub use error::AuthError;
pub use key_file::{IdentityError, KEY_FILE};
pub use keys::{FINGERPRINT_HEX, Identity, Nonce, PublicKey, Signature};
pub use replay::{MAX_NONCES, ReplayGuard};
pub use seal::{SEAL, SEAL_OVERHEAD, SealError, SealedMail};
pub use signed::{
    REQUEST_WINDOW_MS, ReceiptVerdict, check_window, message_bytes, receipt_bytes, register_bytes,
    request_bytes, verify_message, verify_messages, verify_registration,
};

#[cfg(test)]
fn test_name(s: &str) -> crate::proto::PeerName {
    crate::proto::PeerName::new(s).unwrap()
}
