//! The tracker's HTTP API: thin handlers that parse, call the state ([`TrackerState`](super::TrackerState) or
//! one of its parts), queue for the store what the call says it changed, and answer. Every endpoint and error is listed in `docs/PROTOCOL.md`.
//!
//! Registration proves possession of the key the name is bound to; every other request that acts as a peer is
//! a [`Signed`] body (the `Hchat-Auth` header), so no peer can act under another's name.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::Shared;
use super::auth::{Caller, Signed};
use super::mailbox::MailEntry;
use super::quota::Origin;
use super::registry::{Registry, RegistryError};
use super::state::Registration;
use super::store::Change;
use crate::http::{
    ApiError, ApiJson, ApiQuery, ClientOrigin, JsonBytes, fallback_not_found, method_not_allowed,
};
use crate::identity::{AuthError, SealedMail, verify_registration};
use crate::proto::*;

/// Where a request came from, for the per-address quotas: `None` for the tracker's own host (see `quota.rs`) and
/// for a request that did not come through the server (in-process tests).
struct FromAddr(Origin);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for FromAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(FromAddr(
            parts
                .extensions
                .get::<ClientOrigin>()
                .filter(|o| !o.this_host)
                .map(|o| o.addr.ip().to_canonical()),
        ))
    }
}

/// The tracker's router.
pub(crate) fn app(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/submit-info", post(peer_register))
        .route("/unregister", post(peer_unregister))
        .route("/add-list", post(channel_join))
        .route("/leave", post(channel_leave))
        .route("/get-list", get(channel_members))
        .route("/broadcast-peer", post(channel_fan_out))
        .route("/connect-peer", post(peer_lookup))
        .route("/peers", get(peers_online))
        .route("/channels", get(channels_list))
        .route("/health", get(health))
        .route("/channel/info", get(channel_info))
        .route("/channel/mode", post(channel_mode))
        .route("/channel/invite", post(channel_invite))
        .route("/channel/remove", post(channel_remove))
        .route("/channel/ban", post(channel_ban))
        .route("/channel/unban", post(channel_unban))
        .route("/channel/role", post(channel_role))
        .route("/presence", post(presence_set))
        .route("/identity", get(identity_lookup))
        .route("/mailbox/deposit", post(mail_deposit))
        .route("/mailbox/fetch", post(mail_fetch))
        .route("/mailbox/ack", post(mail_ack))
        .fallback(fallback_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(shared)
}

async fn peer_register(
    State(s): State<Arc<Shared>>,
    FromAddr(origin): FromAddr,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<Json<RegisterResponse>, ApiError> {
    if req.port == 0 {
        return Err(ApiError::of(
            ErrorCode::InvalidField,
            "port: 0 is not a port a peer can be reached on",
        ));
    }
    if req.quic_port == Some(0) {
        return Err(ApiError::of(
            ErrorCode::InvalidField,
            "quic_port: 0 is not a port a peer takes sessions on",
        ));
    }
    if req.ip.is_unspecified() || req.ip.is_multicast() {
        return Err(ApiError::of(
            ErrorCode::InvalidField,
            format!("ip: {} is not an address a peer can be reached on", req.ip),
        ));
    }
    let now = now_ms();
    let (key, nonce, _) = verify_registration(&req, now)?;
    s.admit(&req.name, nonce, now)?;
    let Registration {
        registered: reg,
        ttl_secs,
        mailbox,
    } = s
        .change(|st| {
            st.register_with_quic(
                &req.name,
                (req.ip, req.port),
                req.quic_port,
                key,
                origin,
                now,
            )
        })
        .await?;
    if reg.created {
        tracing::info!(peer = %req.name, addr = %std::net::SocketAddr::from((req.ip, req.port)), "peer registered");
    }
    Ok(Json(RegisterResponse {
        ok: true,
        ttl_secs,
        created: reg.created,
        channels: reg.channels,
        mailbox,
    }))
}

async fn peer_unregister(
    State(s): State<Arc<Shared>>,
    Signed { body: req, .. }: Signed<PeerRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    s.change(|st| st.registry.unregister(&req.name, now_ms()))
        .await?;
    tracing::info!(peer = %req.name, "peer unregistered");
    Ok(Json(serde_json::json!({ "ok": true })))
}

async fn channel_join(
    State(s): State<Arc<Shared>>,
    FromAddr(origin): FromAddr,
    Signed { body: req, .. }: Signed<MembershipRequest>,
) -> Result<Json<MembershipResponse>, ApiError> {
    let joined = s
        .change(|st| {
            st.registry.join_from(
                &req.name,
                &req.channel,
                req.key.as_deref(),
                origin,
                now_ms(),
            )
        })
        .await?;
    if joined.created {
        tracing::info!(peer = %req.name, channel = %req.channel, "channel created");
    }
    Ok(Json(MembershipResponse {
        ok: true,
        channel: req.channel,
        members: joined.members,
    }))
}

async fn channel_leave(
    State(s): State<Arc<Shared>>,
    Signed { body: req, .. }: Signed<MembershipRequest>,
) -> Result<Json<MembershipResponse>, ApiError> {
    let members = s
        .change(|st| st.registry.leave(&req.name, &req.channel, now_ms()))
        .await?;
    Ok(Json(MembershipResponse {
        ok: true,
        channel: req.channel,
        members,
    }))
}

#[derive(Deserialize)]
struct ChannelQuery {
    channel: String,
}

impl ChannelQuery {
    fn channel(&self) -> Result<ChannelName, ApiError> {
        ChannelName::parse_user(&self.channel)
            .map_err(|e| ApiError::of(ErrorCode::BadQuery, format!("channel: {e}")))
    }
}

/// `GET /get-list`: who asks matters for a non-open channel (members only), so a signed request names the caller.
/// The answer ([`ChannelPeers`]) is the same for everyone who may see the channel, so it is kept serialized.
async fn channel_members(
    State(s): State<Arc<Shared>>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<ChannelQuery>,
) -> Result<JsonBytes, ApiError> {
    let channel = q.channel()?;
    Ok(JsonBytes(s.members_json(
        &channel,
        caller.as_ref(),
        now_ms(),
    )?))
}

async fn channel_info(
    State(s): State<Arc<Shared>>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<ChannelQuery>,
) -> Result<Json<ChannelInfo>, ApiError> {
    let channel = q.channel()?;
    Ok(Json(s.with(|r| {
        r.channel_info(&channel, caller.as_ref(), now_ms())
    })?))
}

async fn channel_mode(
    State(s): State<Arc<Shared>>,
    Signed { body: req, .. }: Signed<ChannelModeRequest>,
) -> Result<Json<ChannelInfo>, ApiError> {
    let now = now_ms();
    let info = s
        .change(|st| {
            let (_, changes) =
                st.registry
                    .set_mode(&req.name, &req.channel, req.mode, req.key.as_deref(), now)?;
            let info = st
                .registry
                .channel_info(&req.channel, Some(&req.name), now)?;
            Ok::<_, RegistryError>((info, changes))
        })
        .await?;
    tracing::info!(peer = %req.name, channel = %req.channel, mode = req.mode.as_str(), "channel mode set");
    Ok(Json(info))
}

/// Runs one owner's action on a peer and answers the channel as it is after it.
async fn owner_acts<T>(
    s: &Shared,
    req: &ChannelPeerRequest,
    act: impl FnOnce(&mut Registry, u64) -> Result<(T, Vec<Change>), RegistryError>,
) -> Result<Json<ChannelInfo>, ApiError> {
    let now = now_ms();
    let info = s
        .change(|st| {
            let (_, changes) = act(&mut st.registry, now)?;
            let info = st
                .registry
                .channel_info(&req.channel, Some(&req.name), now)?;
            Ok::<_, RegistryError>((info, changes))
        })
        .await?;
    Ok(Json(info))
}

async fn channel_invite(
    State(s): State<Arc<Shared>>,
    Signed { body: req, .. }: Signed<ChannelPeerRequest>,
) -> Result<Json<ChannelInfo>, ApiError> {
    owner_acts(&s, &req, |r, now| {
        r.invite(&req.name, &req.channel, &req.peer, now)
    })
    .await
}

async fn channel_remove(
    State(s): State<Arc<Shared>>,
    Signed { body: req, .. }: Signed<ChannelPeerRequest>,
) -> Result<Json<ChannelInfo>, ApiError> {
    let answer = owner_acts(&s, &req, |r, now| {
        r.remove_member(&req.name, &req.channel, &req.peer, now)
    })
    .await?;
    tracing::info!(owner = %req.name, channel = %req.channel, peer = %req.peer, "member removed");
    Ok(answer)
}

async fn channel_ban(
    State(s): State<Arc<Shared>>,
    Signed { body: req, .. }: Signed<ChannelPeerRequest>,
) -> Result<Json<ChannelInfo>, ApiError> {
    let answer = owner_acts(&s, &req, |r, now| {
        r.ban(&req.name, &req.channel, &req.peer, now)
    })
    .await?;
    tracing::info!(owner = %req.name, channel = %req.channel, peer = %req.peer, "peer banned");
    Ok(answer)
}

async fn channel_unban(
    State(s): State<Arc<Shared>>,
    Signed { body: req, .. }: Signed<ChannelPeerRequest>,
) -> Result<Json<ChannelInfo>, ApiError> {
    owner_acts(&s, &req, |r, now| {
        r.unban(&req.name, &req.channel, &req.peer, now)
    })
    .await
}

async fn channel_role(
    State(s): State<Arc<Shared>>,
    Signed { body: req, .. }: Signed<ChannelRoleRequest>,
) -> Result<Json<ChannelInfo>, ApiError> {
    let target = ChannelPeerRequest {
        name: req.name.clone(),
        channel: req.channel.clone(),
        peer: req.peer.clone(),
    };
    owner_acts(&s, &target, |r, now| {
        r.set_role(&req.name, &req.channel, &req.peer, req.role, now)
    })
    .await
}

async fn presence_set(
    State(s): State<Arc<Shared>>,
    Signed { body: req, .. }: Signed<PresenceRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    s.change(|st| {
        st.registry
            .set_presence(&req.name, req.status, req.message.clone(), now_ms())
    })
    .await?;
    Ok(Json(
        serde_json::json!({ "ok": true, "status": req.status.as_str() }),
    ))
}

async fn channel_fan_out(
    State(s): State<Arc<Shared>>,
    Signed { body: req, .. }: Signed<MembershipRequest>,
) -> Result<Json<PeerList>, ApiError> {
    let peers = s.read(|st| {
        st.registry
            .fan_out(&req.name, &req.channel, now_ms())
            .map(|p| st.with_keys(p))
    })?;
    Ok(Json(PeerList { peers }))
}

async fn peer_lookup(
    State(s): State<Arc<Shared>>,
    Signed { body: req, .. }: Signed<LookupRequest>,
) -> Result<Json<PeerFound>, ApiError> {
    let peer = s.read(|st| {
        st.registry
            .lookup(&req.name, now_ms())
            .map(|p| st.with_keys(vec![p]).remove(0))
    })?;
    Ok(Json(PeerFound { peer }))
}

async fn peers_online(State(s): State<Arc<Shared>>) -> Json<PeerList> {
    Json(PeerList {
        peers: s.read(|st| st.with_keys(st.registry.online(now_ms()))),
    })
}

#[derive(Deserialize)]
struct NameQuery {
    name: String,
}

/// `GET /identity?name=X`: the key a name is bound to, online or not (receivers check mail and catch-up with it).
async fn identity_lookup(
    State(s): State<Arc<Shared>>,
    ApiQuery(q): ApiQuery<NameQuery>,
) -> Result<Json<IdentityAnswer>, ApiError> {
    let name = PeerName::new(q.name.as_str())
        .map_err(|e| ApiError::of(ErrorCode::BadQuery, format!("name: {e}")))?;
    let public_key = s.read(|st| st.identities.key_of(&name)).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownIdentity,
            format!("no key is bound to the name {name}"),
        )
    })?;
    Ok(Json(IdentityAnswer { name, public_key }))
}

async fn channels_list(State(s): State<Arc<Shared>>) -> Json<ChannelList> {
    Json(ChannelList {
        channels: s.with(|r| r.channels(now_ms())),
    })
}

async fn health(State(s): State<Arc<Shared>>) -> Json<Health> {
    let ((peers, channels), held) = s.with(|r| (r.counts(now_ms()), r.held()));
    Json(Health {
        ok: true,
        version: env!("CARGO_PKG_VERSION").to_string(),
        peers,
        channels,
        stale: held.saturating_sub(peers),
        session: s.sessions.listening.get().map(|(port, key)| SessionHealth {
            port: *port,
            key: *key,
            requests: s
                .sessions
                .requests
                .load(std::sync::atomic::Ordering::Relaxed),
            subscribers: s
                .sessions
                .subscribers
                .load(std::sync::atomic::Ordering::Relaxed),
            pushed_bytes: s
                .sessions
                .pushed_bytes
                .load(std::sync::atomic::Ordering::Relaxed),
        }),
        relay: super::relay::health(&s),
    })
}

/// Every envelope of a deposit must be mail sealed by the depositor (the signed request says who that is) for
/// the recipient, under the entry's id. Its inside is sealed to the recipient's key: the tracker cannot read it,
/// so the message's signature is the recipient's to check. An unsealed envelope (a plaintext message, as peers
/// before sealing sent) is refused with `not_sealed`, so no message text is ever kept here.
fn check_envelopes(req: &DepositRequest) -> Result<(), ApiError> {
    for (i, e) in req.entries.iter().enumerate() {
        let mail: SealedMail = serde_json::from_str(e.envelope.get()).map_err(|err| {
            match serde_json::from_str::<ChatMessage>(e.envelope.get()) {
                Ok(_) => ApiError::of(
                    ErrorCode::NotSealed,
                    format!("entries[{i}].envelope: a message in plaintext; this tracker holds only mail sealed to its recipient (a peer older than sealing must be updated)"),
                ),
                Err(_) => ApiError::of(
                    ErrorCode::InvalidField,
                    format!("entries[{i}].envelope: not sealed mail: {err}"),
                ),
            }
        })?;
        if mail.id != e.id || mail.to != req.to {
            return Err(ApiError::of(
                ErrorCode::InvalidField,
                format!(
                    "entries[{i}].envelope: its id must be the entry's, and its \"to\" must be {}",
                    req.to
                ),
            ));
        }
        if mail.from != req.from {
            return Err(AuthError::NotYou {
                signer: req.from.clone(),
                actor: mail.from,
            }
            .into());
        }
        mail.check_outside()
            .map_err(|err| ApiError::of(err.code(), format!("entries[{i}].envelope: {err}")))?;
        // Held mail from the future would be refused by the recipient anyway: refuse it here, and say so.
        check_clock(&mail.id, mail.ts, now_ms()).map_err(|err| {
            ApiError::of(
                ErrorCode::FutureMessage,
                format!("entries[{i}].envelope: {err}"),
            )
        })?;
    }
    Ok(())
}

fn batch_size(n: usize) -> Result<(), ApiError> {
    if n == 0 || n > MAX_MAIL_BATCH {
        return Err(ApiError::of(
            ErrorCode::InvalidField,
            format!("entries: from 1 to {MAX_MAIL_BATCH} at a time"),
        ));
    }
    Ok(())
}

async fn mail_deposit(
    State(s): State<Arc<Shared>>,
    FromAddr(origin): FromAddr,
    Signed { body: req, .. }: Signed<DepositRequest>,
) -> Result<Json<DepositResponse>, ApiError> {
    batch_size(req.entries.len())?;
    if req.from == req.to {
        return Err(ApiError::of(
            ErrorCode::InvalidField,
            "to: a peer does not leave mail for itself",
        ));
    }
    check_envelopes(&req)?;
    let now = now_ms();
    let entries: Vec<MailEntry> = req
        .entries
        .into_iter()
        .map(|e| MailEntry {
            id: e.id,
            from: req.from.clone(),
            envelope: e.envelope.get().to_string(),
            deposited_ms: now,
            origin,
        })
        .collect();
    let (stored, held) = s
        .change(|st| st.deposit(&req.from, &req.to, entries, now))
        .await?;
    tracing::debug!(from = %req.from, to = %req.to, stored, held, "mail deposited");
    Ok(Json(DepositResponse {
        ok: true,
        stored,
        held,
    }))
}

async fn mail_fetch(
    State(s): State<Arc<Shared>>,
    Signed { body: req, .. }: Signed<FetchRequest>,
) -> Result<Json<FetchResponse>, ApiError> {
    let limit = req.limit.unwrap_or(MAX_MAIL_BATCH);
    batch_size(limit).map_err(|_| {
        ApiError::of(
            ErrorCode::InvalidField,
            format!("limit: from 1 to {MAX_MAIL_BATCH}"),
        )
    })?;
    let (held, more) = s.read(|st| {
        st.check_live(&req.name, now_ms())?;
        Ok::<_, RegistryError>(st.mailboxes.fetch(&req.name, limit))
    })?;
    let entries = held
        .into_iter()
        .filter_map(|e| {
            Some(MailItem {
                id: e.id,
                envelope: serde_json::value::RawValue::from_string(e.envelope).ok()?,
                from: Some(e.from),
            })
        })
        .collect();
    Ok(Json(FetchResponse { entries, more }))
}

async fn mail_ack(
    State(s): State<Arc<Shared>>,
    Signed { body: req, .. }: Signed<AckRequest>,
) -> Result<Json<AckResponse>, ApiError> {
    batch_size(req.ids.len() + req.entries.len()).map_err(|_| {
        ApiError::of(
            ErrorCode::InvalidField,
            format!("entries and ids: from 1 to {MAX_MAIL_BATCH} in all"),
        )
    })?;
    let (deleted, held) = s
        .change(|st| st.ack(&req.name, &req.entries, &req.ids, now_ms()))
        .await?;
    Ok(Json(AckResponse {
        ok: true,
        deleted,
        held,
    }))
}
