//! The local API: what the user's front ends (the web page, scripts, `curl`) act through. Thin handlers: parse,
//! call [`Node`], answer. Every route here sits behind [`user_only`](super::auth::user_only).

use std::net::SocketAddr;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use crate::http::{ApiError, ApiJson, ApiQuery};
use crate::peer::presence::MemberList;
use crate::peer::{Node, SendReport};
use crate::proto::*;

/// `{"to","text"}` or `{"channel","text"}`, and optionally the message's `id` (a retry sends the same one).
#[derive(Deserialize)]
pub(super) struct SendRequest {
    #[serde(flatten)]
    dest: Destination,
    text: String,
    id: Option<MessageId>,
}

pub(super) async fn message_send(
    State(node): State<Node>,
    ApiJson(req): ApiJson<SendRequest>,
) -> Result<Json<SendReport>, ApiError> {
    Ok(Json(node.send_with_id(req.dest, req.text, req.id).await?))
}

#[derive(Deserialize)]
pub(super) struct ChannelRequest {
    channel: String,
    /// The channel's key, to join a `key` channel (`/api/join` only).
    #[serde(default)]
    key: Option<String>,
}

fn channel_arg(s: &str) -> Result<ChannelName, ApiError> {
    ChannelName::parse_user(s)
        .map_err(|e| ApiError::of(ErrorCode::InvalidField, format!("channel: {e}")))
}

pub(super) async fn channel_join(
    State(node): State<Node>,
    ApiJson(req): ApiJson<ChannelRequest>,
) -> Result<Json<MembershipResponse>, ApiError> {
    let channel = channel_arg(&req.channel)?;
    let members = node.join_with_key(&channel, req.key.as_deref()).await?;
    Ok(Json(MembershipResponse {
        ok: true,
        channel,
        members,
    }))
}

pub(super) async fn channel_leave(
    State(node): State<Node>,
    ApiJson(req): ApiJson<ChannelRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let channel = channel_arg(&req.channel)?;
    node.leave(&channel).await?;
    Ok(Json(serde_json::json!({ "ok": true, "channel": channel })))
}

#[derive(Serialize)]
pub(super) struct Me {
    name: PeerName,
    advertised: SocketAddr,
    joined: Vec<ChannelName>,
    /// `online`, `away` or `invisible`, as this user last set it.
    status: PeerStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    away: Option<String>,
    /// This node's identity, as other peers and the tracker know it, and its fingerprint.
    public_key: crate::identity::PublicKey,
    fingerprint: String,
    /// The peers whose session goes through the tracker's relay now (later changes come as `path` events).
    via_relay: Vec<PeerName>,
}

pub(super) async fn me_show(State(node): State<Node>) -> Json<Me> {
    let (status, away) = node.presence_status();
    Json(Me {
        name: node.name().clone(),
        advertised: node.advertised(),
        joined: node.joined(),
        status,
        away,
        public_key: node.public_key(),
        fingerprint: node.public_key().fingerprint(),
        via_relay: node.via_relay(),
    })
}

/// Most messages one `GET /api/history` returns.
pub(super) const HISTORY_PAGE_MAX: usize = 5000;

#[derive(Deserialize)]
pub(super) struct HistoryQuery {
    /// `#channel` or `@peer` (or a bare channel name).
    with: String,
    limit: Option<usize>,
}

pub(super) async fn history_list(
    State(node): State<Node>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let conv = parse_conversation(&q.with)
        .map_err(|e| ApiError::of(ErrorCode::BadQuery, format!("with: {e}")))?;
    let messages = node
        .history_entries(&conv, q.limit.unwrap_or(50).min(HISTORY_PAGE_MAX))
        .await?;
    Ok(Json(
        serde_json::json!({ "with": conv.label(), "messages": messages }),
    ))
}

#[derive(Deserialize)]
pub(super) struct PeersQuery {
    channel: Option<String>,
}

pub(super) async fn peers_list(
    State(node): State<Node>,
    ApiQuery(q): ApiQuery<PeersQuery>,
) -> Result<Json<PeerList>, ApiError> {
    let channel = q.channel.as_deref().map(channel_arg).transpose()?;
    Ok(Json(PeerList {
        peers: node.peers(channel.as_ref()).await?,
    }))
}

pub(super) async fn channels_list(State(node): State<Node>) -> Result<Json<ChannelList>, ApiError> {
    Ok(Json(ChannelList {
        channels: node.channels().await?,
    }))
}

#[derive(Deserialize)]
pub(super) struct MembersQuery {
    channel: String,
}

/// A joined channel's members with their online state, as of event `seq` (later presence events supersede it).
pub(super) async fn members_list(
    State(node): State<Node>,
    ApiQuery(q): ApiQuery<MembersQuery>,
) -> Result<Json<MemberList>, ApiError> {
    let channel = ChannelName::parse_user(&q.channel)
        .map_err(|e| ApiError::of(ErrorCode::BadQuery, format!("channel: {e}")))?;
    Ok(Json(node.channel_members(&channel).await?))
}

#[derive(Serialize)]
pub(super) struct Conversations {
    channels: Vec<ChannelName>,
    direct: Vec<PeerName>,
}

/// The conversations the page lists: joined channels, and peers with a direct conversation in the history.
pub(super) async fn conversations_list(State(node): State<Node>) -> Json<Conversations> {
    Json(Conversations {
        channels: node.joined(),
        direct: node.direct_conversations(),
    })
}

#[derive(Deserialize)]
pub(super) struct ChannelQuery {
    channel: String,
}

/// `GET /api/channel?channel=X`: owner, mode, members with roles and status, invited and banned names.
pub(super) async fn channel_show(
    State(node): State<Node>,
    ApiQuery(q): ApiQuery<ChannelQuery>,
) -> Result<Json<ChannelInfo>, ApiError> {
    let channel = ChannelName::parse_user(&q.channel)
        .map_err(|e| ApiError::of(ErrorCode::BadQuery, format!("channel: {e}")))?;
    Ok(Json(node.channel_info(&channel).await?))
}

#[derive(Deserialize)]
pub(super) struct ModeRequest {
    channel: String,
    mode: ChannelMode,
    #[serde(default)]
    key: Option<String>,
}

/// `POST /api/channel/mode {"channel","mode","key"?}` (the user must own the channel).
pub(super) async fn channel_mode(
    State(node): State<Node>,
    ApiJson(req): ApiJson<ModeRequest>,
) -> Result<Json<ChannelInfo>, ApiError> {
    let channel = channel_arg(&req.channel)?;
    Ok(Json(node.set_mode(&channel, req.mode, req.key).await?))
}

#[derive(Deserialize)]
pub(super) struct ActRequest {
    channel: String,
    action: ChannelAction,
    peer: PeerName,
}

/// `POST /api/channel/act {"channel","action":"invite|remove|ban|unban","peer"}` (the user must own the channel).
pub(super) async fn channel_act(
    State(node): State<Node>,
    ApiJson(req): ApiJson<ActRequest>,
) -> Result<Json<ChannelInfo>, ApiError> {
    let channel = channel_arg(&req.channel)?;
    Ok(Json(
        node.channel_act(req.action, &channel, &req.peer).await?,
    ))
}

#[derive(Deserialize)]
pub(super) struct RoleRequest {
    channel: String,
    peer: PeerName,
    role: GivenRole,
}

/// `POST /api/channel/role {"channel","peer","role":"member|visitor"}` (the user must own the channel).
pub(super) async fn channel_role(
    State(node): State<Node>,
    ApiJson(req): ApiJson<RoleRequest>,
) -> Result<Json<ChannelInfo>, ApiError> {
    let channel = channel_arg(&req.channel)?;
    Ok(Json(node.set_role(&channel, &req.peer, req.role).await?))
}

#[derive(Deserialize)]
pub(super) struct StatusRequest {
    status: PeerStatus,
    #[serde(default)]
    message: Option<String>,
}

/// `POST /api/presence {"status":"online|away|invisible","message"?}`.
pub(super) async fn presence_set(
    State(node): State<Node>,
    ApiJson(req): ApiJson<StatusRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    node.set_presence(req.status, req.message).await?;
    Ok(Json(
        serde_json::json!({ "ok": true, "status": req.status.as_str() }),
    ))
}

/// `GET /api/unread`: `{"unread":{"#general":3,"@alice":1}}`, the conversations with unread messages.
pub(super) async fn unread_list(
    State(node): State<Node>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let unread: serde_json::Map<String, serde_json::Value> = node
        .unread()
        .await?
        .into_iter()
        .map(|(with, n)| (with, n.into()))
        .collect();
    Ok(Json(serde_json::json!({ "unread": unread })))
}

#[derive(Deserialize)]
pub(super) struct ReadRequest {
    /// `#channel` or `@peer`.
    with: String,
}

/// `POST /api/read {"with"}`: the user has seen the conversation; nothing in it is unread any more.
pub(super) async fn conversation_read(
    State(node): State<Node>,
    ApiJson(req): ApiJson<ReadRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let conv = parse_conversation(&req.with)
        .map_err(|e| ApiError::unprocessable(ErrorCode::InvalidField, format!("with: {e}")))?;
    node.mark_read(&conv).await?;
    Ok(Json(
        serde_json::json!({ "ok": true, "with": conv.label() }),
    ))
}

#[derive(Deserialize)]
pub(super) struct SearchQuery {
    /// The words to find (each as a prefix, all required).
    q: String,
    /// `#channel` or `@peer` to search in; everywhere when absent.
    #[serde(rename = "in")]
    within: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/search?q=&in=&limit=`: `{"q","results":[message fields + "with"]}`, newest first.
pub(super) async fn search_list(
    State(node): State<Node>,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let within = match q.within.as_deref().filter(|w| !w.is_empty()) {
        Some(w) => Some(
            parse_conversation(w)
                .map_err(|e| ApiError::of(ErrorCode::BadQuery, format!("in: {e}")))?,
        ),
        None => None,
    };
    let limit = q
        .limit
        .unwrap_or(crate::peer::search::DEFAULT_SEARCH_RESULTS);
    let results = node.search(&q.q, within.as_ref(), limit).await?;
    Ok(Json(serde_json::json!({ "q": q.q, "results": results })))
}
