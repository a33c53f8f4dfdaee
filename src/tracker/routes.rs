//! The tracker's HTTP API: thin handlers that parse, call the [`Registry`](super::registry::Registry), record the
//! change and answer. Every endpoint and error is listed in `docs/PROTOCOL.md`.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::Shared;
use super::registry::RegistryError;
use super::store::Change;
use crate::http::{ApiError, ApiJson, ApiQuery, fallback_not_found, method_not_allowed};
use crate::proto::*;

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let msg = e.to_string();
        match e {
            RegistryError::NameTaken { .. } => ApiError::conflict("name_taken", msg),
            RegistryError::UnknownPeer(_) => ApiError::not_found("unknown_peer", msg),
            RegistryError::UnknownChannel(_) => ApiError::not_found("unknown_channel", msg),
            RegistryError::NotMember { .. } => ApiError::forbidden("not_member", msg),
            RegistryError::Full(_) => ApiError::new(
                axum::http::StatusCode::INSUFFICIENT_STORAGE,
                "tracker_full",
                msg,
            ),
        }
    }
}

/// The tracker's router.
pub fn app(shared: Arc<Shared>) -> Router {
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
        .fallback(fallback_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(shared)
}

async fn peer_register(
    State(s): State<Arc<Shared>>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<Json<RegisterResponse>, ApiError> {
    if req.port == 0 {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "port: 0 is not a port a peer can be reached on",
        ));
    }
    if req.ip.is_unspecified() || req.ip.is_multicast() {
        return Err(ApiError::unprocessable(
            "invalid_field",
            format!("ip: {} is not an address a peer can be reached on", req.ip),
        ));
    }
    let now = now_ms();
    let (reg, ttl) = s.with(|r| {
        let ttl = r.ttl().as_secs().max(1);
        r.register(&req.name, req.ip, req.port, now)
            .map(|reg| (reg, ttl))
    })?;
    if reg.created {
        tracing::info!(peer = %req.name, addr = %std::net::SocketAddr::from((req.ip, req.port)), "peer registered");
    }
    s.record(Change::Registered {
        name: req.name,
        ip: req.ip,
        port: req.port,
        at_ms: now,
    });
    Ok(Json(RegisterResponse {
        ok: true,
        ttl_secs: ttl,
        created: reg.created,
        channels: reg.channels,
    }))
}

async fn peer_unregister(
    State(s): State<Arc<Shared>>,
    ApiJson(req): ApiJson<PeerRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    s.with(|r| r.unregister(&req.name, now_ms()))?;
    tracing::info!(peer = %req.name, "peer unregistered");
    s.record(Change::Unregistered { name: req.name });
    Ok(Json(serde_json::json!({ "ok": true })))
}

async fn channel_join(
    State(s): State<Arc<Shared>>,
    ApiJson(req): ApiJson<MembershipRequest>,
) -> Result<Json<MembershipResponse>, ApiError> {
    let now = now_ms();
    let members = s.with(|r| r.join(&req.name, &req.channel, now))?;
    s.record(Change::Joined {
        name: req.name,
        channel: req.channel.clone(),
        at_ms: now,
    });
    Ok(Json(MembershipResponse {
        ok: true,
        channel: req.channel,
        members,
    }))
}

async fn channel_leave(
    State(s): State<Arc<Shared>>,
    ApiJson(req): ApiJson<MembershipRequest>,
) -> Result<Json<MembershipResponse>, ApiError> {
    let members = s.with(|r| r.leave(&req.name, &req.channel, now_ms()))?;
    s.record(Change::Left {
        name: req.name,
        channel: req.channel.clone(),
    });
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

async fn channel_members(
    State(s): State<Arc<Shared>>,
    ApiQuery(q): ApiQuery<ChannelQuery>,
) -> Result<Json<ChannelPeers>, ApiError> {
    let channel = ChannelName::parse_user(&q.channel)
        .map_err(|e| ApiError::bad_request("bad_query", format!("channel: {e}")))?;
    let peers = s.with(|r| r.members(&channel, now_ms()))?;
    Ok(Json(ChannelPeers { channel, peers }))
}

async fn channel_fan_out(
    State(s): State<Arc<Shared>>,
    ApiJson(req): ApiJson<MembershipRequest>,
) -> Result<Json<PeerList>, ApiError> {
    let peers = s.with(|r| r.fan_out(&req.name, &req.channel, now_ms()))?;
    Ok(Json(PeerList { peers }))
}

async fn peer_lookup(
    State(s): State<Arc<Shared>>,
    ApiJson(req): ApiJson<PeerRequest>,
) -> Result<Json<PeerFound>, ApiError> {
    let peer = s.with(|r| r.lookup(&req.name, now_ms()))?;
    Ok(Json(PeerFound { peer }))
}

async fn peers_online(State(s): State<Arc<Shared>>) -> Json<PeerList> {
    Json(PeerList {
        peers: s.with(|r| r.online(now_ms())),
    })
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
    })
}
