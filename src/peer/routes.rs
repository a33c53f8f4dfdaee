//! The peer's HTTP surface: `POST /p2p/receive` for other peers and `GET /health`, merged with the local API its
//! user acts through (the web page, scripts via `POST /send-peer`), which lives in [`crate::web`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use super::tracker_client::TrackerError;
use super::{Node, NodeError};
use crate::http::{ApiError, ApiJson, fallback_not_found, method_not_allowed};
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
            NodeError::Bind(..) | NodeError::NoAdvertiseAddress(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", msg)
            }
        }
    }
}

/// The peer's router: the peer-to-peer routes here, the user's local API and web page from [`crate::web`].
pub fn app(node: Node) -> Router {
    Router::new()
        .route("/p2p/receive", post(message_receive))
        .route("/health", get(health))
        .merge(crate::web::routes(node.clone()))
        .fallback(fallback_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(node)
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

/// Parses a conversation as users write it: `#general`, `@bob`, or a bare channel name.
pub fn parse_conversation(s: &str) -> Result<Destination, NameError> {
    match s.strip_prefix('@') {
        Some(p) => PeerName::new(p).map(Destination::Direct),
        None => ChannelName::parse_user(s).map(Destination::Channel),
    }
}
