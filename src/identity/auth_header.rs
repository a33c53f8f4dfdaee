//! The `Hchat-Auth` header: its syntax, how a peer makes one and how the tracker checks one.

use std::fmt;

use super::signed::{check_window, request_bytes};
use super::{AuthError, Identity, Nonce, PublicKey, Signature};
use crate::proto::PeerName;

/// The header every tracker request that acts as a peer carries.
pub const AUTH_HEADER: &str = "hchat-auth";

impl Identity {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::REQUEST_WINDOW_MS;
    use crate::identity::test_name as n;

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
}
