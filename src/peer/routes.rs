//! The peer's HTTP surface: `POST /p2p/receive` for other peers, and the local API its user acts through (the web
//! page, scripts via `POST /send-peer`). Whatever acts as the user answers only loopback callers or callers that
//! show the node's token.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::delivery::{BatchRequest, BatchResponse, BatchResult, MAX_PUSH_BATCH};
use super::inbox::Via;
use super::recovery::{HistoryPage, HistoryRequest};
use super::tracker_client::TrackerError;
use super::{Node, NodeError, SendReport};
use crate::http::{ApiError, ApiJson, ApiQuery, fallback_not_found, method_not_allowed};
use crate::proto::*;

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let msg = e.to_string();
        match e {
            NodeError::NotJoined(_) => ApiError::forbidden("not_joined", msg),
            NodeError::SelfMessage | NodeError::BadMessage(_) => {
                ApiError::unprocessable("invalid_field", msg)
            }
            NodeError::PeerOffline { .. } => ApiError::not_found("peer_offline", msg),
            NodeError::Refused { code, message, .. } => {
                let status = match code.as_str() {
                    "unknown_recipient" | "wrong_recipient" => StatusCode::NOT_FOUND,
                    "invalid_field" => StatusCode::UNPROCESSABLE_ENTITY,
                    _ => StatusCode::FORBIDDEN,
                };
                ApiError::new(status, code, message)
            }
            NodeError::OutboxFull(_) => {
                ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "outbox_full", msg)
            }
            NodeError::NotDelivered { .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, "not_delivered", msg)
            }
            NodeError::Tracker(TrackerError::Unreachable(..)) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "tracker_unreachable", msg)
            }
            NodeError::Tracker(TrackerError::Refused {
                status,
                code,
                message,
            }) => ApiError::new(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                code,
                format!("the tracker refused: {message}"),
            ),
            NodeError::Tracker(TrackerError::BadAnswer(_)) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "tracker_error", msg)
            }
            NodeError::Bind(..) | NodeError::NoAdvertiseAddress(_) | NodeError::Store(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", msg)
            }
        }
    }
}

/// The peer's router.
pub fn app(node: Node) -> Router {
    let local = Router::new()
        .route("/send-peer", post(message_send))
        .route("/api/send", post(message_send))
        .route("/api/join", post(channel_join))
        .route("/api/leave", post(channel_leave))
        .route("/api/me", get(me_show))
        .route("/api/history", get(history_list))
        .route("/api/peers", get(peers_list))
        .route("/api/channels", get(channels_list))
        .route_layer(axum::middleware::from_fn_with_state(
            node.clone(),
            user_only,
        ));
    Router::new()
        .route("/p2p/receive", post(message_receive))
        .route("/p2p/receive-batch", post(message_receive_batch))
        .route("/p2p/history", get(channel_history_serve))
        .route("/health", get(health))
        .merge(local)
        .fallback(fallback_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(node)
}

/// Lets a request act as the user only from loopback, or with the node's token (`Authorization: Bearer T`,
/// `X-Hchat-Token: T` or `?token=T`).
async fn user_only(
    State(node): State<Node>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    if remote.ip().is_loopback()
        || presented_token(&req).is_some_and(|t| same_secret(t, node.token()))
    {
        return next.run(req).await;
    }
    ApiError::forbidden(
        "forbidden",
        "this acts as the node's user: call it from the same host, or show the token the node printed at start-up",
    )
    .into_response()
}

fn presented_token(req: &Request) -> Option<&str> {
    let headers = req.headers();
    if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        return v.strip_prefix("Bearer ");
    }
    if let Some(v) = headers.get("x-hchat-token").and_then(|v| v.to_str().ok()) {
        return Some(v);
    }
    req.uri()
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
}

/// Compares secrets in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

async fn message_receive(
    State(node): State<Node>,
    ApiJson(msg): ApiJson<ChatMessage>,
) -> Result<Json<ReceiveAck>, ApiError> {
    let duplicate = node.receive(msg).await?;
    Ok(Json(ReceiveAck {
        ok: true,
        duplicate,
    }))
}

async fn message_receive_batch(
    State(node): State<Node>,
    ApiJson(req): ApiJson<BatchRequest>,
) -> Result<Json<BatchResponse>, ApiError> {
    if req.messages.is_empty() || req.messages.len() > MAX_PUSH_BATCH {
        return Err(ApiError::unprocessable(
            "invalid_field",
            format!("messages: from 1 to {MAX_PUSH_BATCH} at a time"),
        ));
    }
    let ids: Vec<MessageId> = req.messages.iter().map(|m| m.id).collect();
    let verdicts = node
        .receive_many(req.messages.into_iter().map(|m| (m, Via::Direct)).collect())
        .await?;
    let results = ids
        .into_iter()
        .zip(verdicts)
        .map(|(id, v)| match v {
            Ok(duplicate) => BatchResult {
                id,
                ok: true,
                duplicate,
                error: None,
            },
            Err(e) => BatchResult {
                id,
                ok: false,
                duplicate: false,
                error: Some(ErrorDetail {
                    code: e.code.to_string(),
                    message: e.message,
                }),
            },
        })
        .collect();
    Ok(Json(BatchResponse { ok: true, results }))
}

async fn channel_history_serve(
    State(node): State<Node>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    ApiQuery(req): ApiQuery<HistoryRequest>,
) -> Result<Json<HistoryPage>, ApiError> {
    Ok(Json(node.history_for_member(req, remote).await?))
}

#[derive(Serialize)]
struct NodeHealth {
    ok: bool,
    name: PeerName,
}

async fn health(State(node): State<Node>) -> Json<NodeHealth> {
    Json(NodeHealth {
        ok: true,
        name: node.name().clone(),
    })
}

/// `{"to","text"}` or `{"channel","text"}`.
#[derive(Deserialize)]
struct SendRequest {
    #[serde(flatten)]
    dest: Destination,
    text: String,
}

async fn message_send(
    State(node): State<Node>,
    ApiJson(req): ApiJson<SendRequest>,
) -> Result<Json<SendReport>, ApiError> {
    Ok(Json(node.send(req.dest, req.text).await?))
}

#[derive(Deserialize)]
struct ChannelRequest {
    channel: String,
}

fn channel_arg(s: &str) -> Result<ChannelName, ApiError> {
    ChannelName::parse_user(s)
        .map_err(|e| ApiError::unprocessable("invalid_field", format!("channel: {e}")))
}

async fn channel_join(
    State(node): State<Node>,
    ApiJson(req): ApiJson<ChannelRequest>,
) -> Result<Json<MembershipResponse>, ApiError> {
    let channel = channel_arg(&req.channel)?;
    let members = node.join(&channel).await?;
    Ok(Json(MembershipResponse {
        ok: true,
        channel,
        members,
    }))
}

async fn channel_leave(
    State(node): State<Node>,
    ApiJson(req): ApiJson<ChannelRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let channel = channel_arg(&req.channel)?;
    node.leave(&channel).await?;
    Ok(Json(serde_json::json!({ "ok": true, "channel": channel })))
}

#[derive(Serialize)]
struct Me {
    name: PeerName,
    advertised: SocketAddr,
    joined: Vec<ChannelName>,
}

async fn me_show(State(node): State<Node>) -> Json<Me> {
    Json(Me {
        name: node.name().clone(),
        advertised: node.advertised(),
        joined: node.joined(),
    })
}

/// Most messages one `GET /api/history` returns.
pub const HISTORY_PAGE_MAX: usize = 5000;

#[derive(Deserialize)]
struct HistoryQuery {
    /// `#channel` or `@peer` (or a bare channel name).
    with: String,
    limit: Option<usize>,
}

/// Parses a conversation as users write it: `#general`, `@bob`, or a bare channel name.
pub fn parse_conversation(s: &str) -> Result<Destination, NameError> {
    match s.strip_prefix('@') {
        Some(p) => PeerName::new(p).map(Destination::Direct),
        None => ChannelName::parse_user(s).map(Destination::Channel),
    }
}

async fn history_list(
    State(node): State<Node>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let conv = parse_conversation(&q.with)
        .map_err(|e| ApiError::bad_request("bad_query", format!("with: {e}")))?;
    let messages = node
        .history_async(&conv, q.limit.unwrap_or(50).min(HISTORY_PAGE_MAX))
        .await?;
    Ok(Json(
        serde_json::json!({ "with": conv.label(), "messages": messages }),
    ))
}

#[derive(Deserialize)]
struct PeersQuery {
    channel: Option<String>,
}

async fn peers_list(
    State(node): State<Node>,
    ApiQuery(q): ApiQuery<PeersQuery>,
) -> Result<Json<PeerList>, ApiError> {
    let channel = q.channel.as_deref().map(channel_arg).transpose()?;
    Ok(Json(PeerList {
        peers: node.peers(channel.as_ref()).await?,
    }))
}

async fn channels_list(State(node): State<Node>) -> Result<Json<ChannelList>, ApiError> {
    Ok(Json(ChannelList {
        channels: node.channels().await?,
    }))
}
