//! The TLS 1.3 side of a session: each node's Ed25519 identity is its TLS key, presented as an RFC 7250 raw public
//! key (a 44-byte SubjectPublicKeyInfo, no X.509 certificate, no CA), and both sides must present one.
//!
//! - The dialler builds a client config per dial that accepts exactly one key: the one bound to the name it wants
//!   ([`client_config`]). Any other key fails the handshake before the dialler has sent a byte of application
//!   data (and before it has even shown its own key: TLS 1.3 sends the client's certificate only after it has
//!   checked the server's).
//! - The listener accepts any well-formed Ed25519 key ([`server_config`]) and learns from the handshake who
//!   dialled ([`peer_key`]); whether that key may do anything is for the layers above (the frame checks, the
//!   tracker's registry).
//! - Signatures in the handshake are made by [`Identity::sign`] (pure Ed25519, no pre-hash) and checked with
//!   `verify_strict` (no malleable or weak-key signatures, as [`PublicKey::verify`]). TLS 1.3's signed content starts with 64 spaces and a context string, so it
//!   can never be mistaken for any hchat signature (those start `hchat-msg-v1`, `hchat-req-v1`, ...).
//! - Resumption is off on both sides: a connection is long-lived, and a full handshake each time keeps the proof
//!   of both keys in every connection. No early data.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error as TlsError,
    PeerIncompatible, SignatureAlgorithm, SignatureScheme,
};

use super::ALPN;
use crate::identity::{Identity, PublicKey};

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID 1.3.101.112 },
/// BIT STRING (0 unused bits) }, followed by the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// The length of that SubjectPublicKeyInfo.
pub(crate) const SPKI_LEN: usize = 44;

/// The raw public key as it travels in the TLS Certificate message.
pub(crate) fn spki(key: &PublicKey) -> Vec<u8> {
    let mut der = Vec::with_capacity(SPKI_LEN);
    der.extend_from_slice(&ED25519_SPKI_PREFIX);
    der.extend_from_slice(&key.to_bytes());
    der
}

/// The key in a raw-public-key certificate: exactly an Ed25519 SubjectPublicKeyInfo of a valid point, or nothing.
pub(crate) fn key_of_spki(der: &[u8]) -> Option<PublicKey> {
    let bytes: &[u8; 32] = der.strip_prefix(&ED25519_SPKI_PREFIX)?.try_into().ok()?;
    PublicKey::from_bytes(bytes)
}

/// The key the other side proved in a finished handshake (quinn hands the peer's "certificates" as
/// `Vec<CertificateDer>`; with raw public keys there is exactly one, the SPKI).
pub(crate) fn peer_key(conn: &quinn::Connection) -> Option<PublicKey> {
    let any = conn.peer_identity()?;
    let certs = any.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    match certs.as_slice() {
        [one] => key_of_spki(one.as_ref()),
        _ => None,
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certified_key(identity: &Arc<Identity>) -> Arc<CertifiedKey> {
    let cert = CertificateDer::from(spki(&identity.public_key()));
    Arc::new(CertifiedKey::new(
        vec![cert],
        Arc::new(IdentityKey(identity.clone())),
    ))
}

/// The listener's TLS config: presents `identity`, requires a client key, offers ALPN `hchat/1` only.
pub(crate) fn server_config(identity: &Arc<Identity>) -> Result<rustls::ServerConfig, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(AnyEd25519Client))
        .with_cert_resolver(Arc::new(
            rustls::server::AlwaysResolvesServerRawPublicKeys::new(certified_key(identity)),
        ));
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// What the dialler's verifier saw: the key the server presented, once it has (set whether accepted or not).
pub(crate) type Seen = Arc<std::sync::OnceLock<PublicKey>>;

/// The dialler's TLS config for one dial: presents `identity`, accepts only `expected` (`None`: any well-formed
/// key, for a first contact whose key the caller pins). The returned cell
/// receives the key the server presented, so a refused handshake can say which key answered.
pub(crate) fn client_config(
    identity: &Arc<Identity>,
    expected: Option<PublicKey>,
) -> Result<(rustls::ClientConfig, Seen), TlsError> {
    let seen = Seen::default();
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ExpectedServer {
            expected,
            seen: seen.clone(),
        }))
        .with_client_cert_resolver(Arc::new(
            rustls::client::AlwaysResolvesClientRawPublicKeys::new(certified_key(identity)),
        ));
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    config.enable_early_data = false;
    Ok((config, seen))
}

/// A dialler that checks the server like [`client_config`] but presents no key of its own (tests: the listener
/// must refuse it).
#[cfg(test)]
pub(super) fn client_config_without_key(expected: PublicKey) -> rustls::ClientConfig {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 is supported")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ExpectedServer {
            expected: Some(expected),
            seen: Seen::default(),
        }))
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN.to_vec()];
    config
}

/// Checks a TLS 1.3 CertificateVerify signature made with the key in `cert`.
fn verify_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, TlsError> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(PeerIncompatible::NoSignatureSchemesInCommon.into());
    }
    let key = key_of_spki(cert.as_ref())
        .ok_or(TlsError::InvalidCertificate(CertificateError::BadEncoding))?;
    let sig: [u8; 64] = dss
        .signature()
        .try_into()
        .map_err(|_| TlsError::InvalidCertificate(CertificateError::BadSignature))?;
    ed25519_dalek::VerifyingKey::from_bytes(&key.to_bytes())
        .and_then(|k| k.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig)))
        .map_err(|_| TlsError::InvalidCertificate(CertificateError::BadSignature))?;
    Ok(HandshakeSignatureValid::assertion())
}

/// The dialler's check: the server's raw public key is exactly the expected one.
#[derive(Debug)]
struct ExpectedServer {
    expected: Option<PublicKey>,
    seen: Seen,
}

impl ServerCertVerifier for ExpectedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        if !intermediates.is_empty() {
            return Err(TlsError::InvalidCertificate(CertificateError::BadEncoding));
        }
        let key = key_of_spki(end_entity.as_ref())
            .ok_or(TlsError::InvalidCertificate(CertificateError::BadEncoding))?;
        let _ = self.seen.set(key);
        if self.expected.is_some_and(|e| e != key) {
            return Err(TlsError::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        Err(PeerIncompatible::Tls12NotOffered.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// The listener's check: the client presents a well-formed Ed25519 raw public key (mandatory).
#[derive(Debug)]
struct AnyEd25519Client;

impl ClientCertVerifier for AnyEd25519Client {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, TlsError> {
        if !intermediates.is_empty() || key_of_spki(end_entity.as_ref()).is_none() {
            return Err(TlsError::InvalidCertificate(CertificateError::BadEncoding));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        Err(PeerIncompatible::Tls12NotOffered.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// The node's identity as a rustls signing key (Ed25519 only). The secret stays inside [`Identity`].
#[derive(Debug)]
struct IdentityKey(Arc<Identity>);

impl SigningKey for IdentityKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&SignatureScheme::ED25519)
            .then(|| Box::new(IdentitySigner(self.0.clone())) as Box<dyn Signer>)
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(spki(&self.0.public_key())))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ED25519
    }
}

#[derive(Debug)]
struct IdentitySigner(Arc<Identity>);

impl Signer for IdentitySigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, TlsError> {
        // `identity::Signature` shows its bytes only as base64url (its wire form); one decode per handshake.
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(self.0.sign(message).to_string())
            .map_err(|e| TlsError::General(format!("signature encoding: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_through_its_spki_and_nothing_else_is_a_key() {
        let key = Identity::ephemeral().public_key();
        let der = spki(&key);
        assert_eq!(der.len(), SPKI_LEN);
        assert_eq!(key_of_spki(&der), Some(key));
        assert_eq!(key_of_spki(&der[..43]), None);
        let mut longer = der.clone();
        longer.push(0);
        assert_eq!(key_of_spki(&longer), None);
        let mut other_alg = der.clone();
        other_alg[8] = 0x71; // Ed448's OID
        assert_eq!(key_of_spki(&other_alg), None);
    }
}
