//! Who is asking: the tracker's side of signed requests. [`Signed<T>`] is the JSON body of a request that acts as
//! a peer, accepted only with a valid `Hchat-Auth` header from the key the name is bound to; [`Caller`] is the
//! signer of a GET whose answer may depend on who asks (no header: anonymous).
//!
//! The order of the checks is the documented one: the body must parse (400/422), then the header must be present
//! and well formed, fresh (60 s), signed by the bound key, and not seen before; and a body that names its acting
//! peer must name the signer (403 `not_you`). Over a session, a body that names its acting peer may come without
//! the header: the key the handshake proved must then be the one that name is bound to.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::Shared;
use super::sessions::SessionKey;
use crate::http::{ApiError, parse_json, read_body};
use crate::identity::{AUTH_HEADER, AuthError, AuthHeader, PublicKey, check_window};
use crate::proto::ErrorCode;
use crate::proto::{
    AckRequest, ChannelModeRequest, ChannelPeerRequest, ChannelRoleRequest, DepositRequest,
    FetchRequest, LookupRequest, MembershipRequest, PeerName, PeerRequest, PresenceRequest, now_ms,
};

/// A request body that may name the peer it acts as.
pub(crate) trait Acting {
    /// The acting peer the body names, if any: it must be the signer.
    fn actor(&self) -> Option<&PeerName>;
}

impl Acting for MembershipRequest {
    fn actor(&self) -> Option<&PeerName> {
        Some(&self.name)
    }
}
impl Acting for PeerRequest {
    fn actor(&self) -> Option<&PeerName> {
        Some(&self.name)
    }
}
/// Channel rules and presence: the acting peer is `name` (only a channel's owner may change its rules).
macro_rules! acting_as_name {
    ($($t:ty),*) => {$(
        impl Acting for $t {
            fn actor(&self) -> Option<&PeerName> {
                Some(&self.name)
            }
        }
    )*};
}
acting_as_name!(
    ChannelModeRequest,
    ChannelPeerRequest,
    ChannelRoleRequest,
    PresenceRequest
);

impl Acting for LookupRequest {
    /// The name is the peer wanted, not the asker.
    fn actor(&self) -> Option<&PeerName> {
        None
    }
}
impl Acting for DepositRequest {
    fn actor(&self) -> Option<&PeerName> {
        Some(&self.from)
    }
}
impl Acting for FetchRequest {
    fn actor(&self) -> Option<&PeerName> {
        Some(&self.name)
    }
}
impl Acting for AckRequest {
    fn actor(&self) -> Option<&PeerName> {
        Some(&self.name)
    }
}

/// A JSON body whose acting peer proved it is the sender with the `Hchat-Auth` header (so handlers act on the
/// body's name: it is the signer's).
pub(crate) struct Signed<T> {
    pub body: T,
}

impl<T> FromRequest<Arc<Shared>> for Signed<T>
where
    T: DeserializeOwned + Acting,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, shared: &Arc<Shared>) -> Result<Self, ApiError> {
        let method = req.method().as_str().to_owned();
        let target = path_and_query(req.uri());
        let headers = req.headers().clone();
        let session = req.extensions().get::<SessionKey>().copied();
        let bytes = read_body(req, shared).await?;
        let body: T = parse_json(&bytes)?;
        let caller = match (session, body.actor()) {
            // Over a session, a body that names its acting peer needs no signature: the handshake proved the key.
            (Some(SessionKey(proved)), Some(actor)) if !headers.contains_key(AUTH_HEADER) => {
                session_actor(shared, actor, proved)?
            }
            _ => authenticate(shared, &headers, &method, &target, &bytes, session)?,
        };
        if let Some(actor) = body.actor()
            && actor != &caller
        {
            return Err(AuthError::NotYou {
                signer: caller,
                actor: actor.clone(),
            }
            .into());
        }
        Ok(Signed { body })
    }
}

/// The signer of a GET, or `None` when it carries no `Hchat-Auth` header. A header that is present must verify.
pub(crate) struct Caller(pub Option<PeerName>);

impl FromRequestParts<Arc<Shared>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, ApiError> {
        if !parts.headers.contains_key(AUTH_HEADER) {
            return Ok(Caller(None));
        }
        let target = path_and_query(&parts.uri);
        let session = parts.extensions.get::<SessionKey>().copied();
        authenticate(
            shared,
            &parts.headers,
            parts.method.as_str(),
            &target,
            b"",
            session,
        )
        .map(|n| Caller(Some(n)))
    }
}

fn path_and_query(uri: &axum::http::Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned())
}

/// The acting peer of an unsigned request over a session, if the key the session proved is the one its name is
/// bound to (else 401 `unknown_identity`, or 403 `forged_sender`: a session acts only as its own name). Nothing
/// else of the header is needed there: the session's AEAD keeps the request whole and cannot be replayed.
fn session_actor(
    shared: &Shared,
    actor: &PeerName,
    proved: PublicKey,
) -> Result<PeerName, ApiError> {
    let key = shared
        .read(|st| st.identities.key_of(actor))
        .ok_or_else(|| AuthError::UnknownIdentity(actor.clone()))?;
    if key != proved {
        return Err(forged_sender(actor));
    }
    Ok(actor.clone())
}

/// 403 `forged_sender`: a request acting as `name` over a session that proved another key.
fn forged_sender(name: &PeerName) -> ApiError {
    ApiError::of(
        ErrorCode::ForgedSender,
        format!("this session is authenticated as another key than {name}'s"),
    )
}

/// Checks the `Hchat-Auth` header of a request; the signer's name when it holds. Over a session, the signer must
/// also be the session's key: a session acts only as the name its handshake proved (403 `forged_sender`).
fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    method: &str,
    target: &str,
    body: &[u8],
    session: Option<SessionKey>,
) -> Result<PeerName, ApiError> {
    let value = headers
        .get(AUTH_HEADER)
        .ok_or(AuthError::Unauthenticated)?
        .to_str()
        .map_err(|_| AuthError::MalformedHeader("not visible ASCII".into()))?;
    let header: AuthHeader = value.parse()?;
    let now = now_ms();
    check_window(header.ts, now)?;
    let key = shared
        .read(|st| st.identities.key_of(&header.name))
        .ok_or_else(|| AuthError::UnknownIdentity(header.name.clone()))?;
    header.verify(&key, method, target, body, now)?;
    if let Some(SessionKey(proved)) = session
        && proved != key
    {
        return Err(forged_sender(&header.name));
    }
    shared.admit(&header.name, header.nonce, now)?;
    Ok(header.name)
}
