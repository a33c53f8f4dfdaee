//! The peer's own HTTP surface: `POST /p2p/receive` (and its batch) and `GET /p2p/history` for other peers, and
//! `GET /health`. The `/p2p/*` routes are also answered over sessions ([`p2p`]). A front end (the local API and web page) is merged on top by whoever starts the node
//! (`Node::start_with`); the peer never names it.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Serialize;

use super::delivery::{BatchRequest, BatchResponse, BatchResult, MAX_PUSH_BATCH};
use super::inbox::Via;
use super::recovery::{HistoryPage, HistoryRequest};
use super::tracker_client::TrackerError;
use super::{Node, NodeError};
use crate::http::{
    ApiError, ApiJson, ApiQuery, SessionKey, fallback_not_found, method_not_allowed,
};
use crate::identity::{ReceiptVerdict, Signature, receipt_bytes};
use crate::proto::*;

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let msg = e.to_string();
        match e {
            NodeError::NotJoined(_) => ApiError::of(ErrorCode::NotJoined, msg),
            NodeError::BadMessage(e) => ApiError::unprocessable(e.code(), msg),
            NodeError::SelfMessage => ApiError::of(ErrorCode::InvalidField, msg),
            NodeError::PeerOffline { .. } => ApiError::of(ErrorCode::PeerOffline, msg),
            NodeError::Refused { code, message, .. } => {
                let status = match code {
                    ErrorCode::UnknownRecipient | ErrorCode::WrongRecipient => {
                        StatusCode::NOT_FOUND
                    }
                    ErrorCode::InvalidField => StatusCode::UNPROCESSABLE_ENTITY,
                    _ => StatusCode::FORBIDDEN,
                };
                ApiError::new(status, code, message)
            }
            NodeError::OutboxFull(_) => ApiError::of(ErrorCode::OutboxFull, msg),
            NodeError::BadSearch(_) => ApiError::of(ErrorCode::BadQuery, msg),
            NodeError::NotDelivered { .. } => ApiError::of(ErrorCode::NotDelivered, msg),
            NodeError::Tracker(TrackerError::Unreachable(..)) => {
                ApiError::of(ErrorCode::TrackerUnreachable, msg)
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
                ApiError::of(ErrorCode::TrackerError, msg)
            }
            NodeError::Tracker(TrackerError::Untrusted(_)) => {
                ApiError::of(ErrorCode::TrackerUntrusted, msg)
            }
            // This node could not save (its disk is full, its database failed): nothing was kept, try again.
            NodeError::Store(_) => ApiError::of(ErrorCode::StoreFailed, msg),
            NodeError::Bind(..) | NodeError::NoAdvertiseAddress(_) | NodeError::Identity(_) => {
                ApiError::of(ErrorCode::Internal, msg)
            }
        }
    }
}

/// The peer's router: the peer-to-peer routes and `/health`, with `front` (a front end's routes, already given
/// their state) merged on top, and the JSON answers for an unknown path or method.
pub(crate) fn app(node: Node, front: Router) -> Router {
    p2p_routes()
        .route("/health", get(health))
        .with_state(node)
        .merge(front)
        .fallback(fallback_not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// The peer-to-peer routes alone, with the JSON answers for an unknown path or method: what the node's session
/// endpoint answers request streams with (peer/sessions.rs). Never the local API: a session proves who dials,
/// not that it may act as this node's user.
pub(crate) fn p2p(node: Node) -> Router {
    p2p_routes()
        .with_state(node)
        .fallback(fallback_not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

fn p2p_routes() -> Router<Node> {
    Router::new()
        .route("/p2p/receive", post(message_receive))
        .route("/p2p/receive-batch", post(message_receive_batch))
        .route("/p2p/history", get(channel_history_serve))
        .route(
            "/p2p/delivered",
            post(super::receipts::delivered_notice_receive),
        )
}

async fn message_receive(
    State(node): State<Node>,
    ApiJson(msg): ApiJson<ChatMessage>,
) -> Result<Json<ReceiveAck>, ApiError> {
    let (from, id) = (msg.from.clone(), msg.id);
    let duplicate = node.receive(msg).await?;
    let verdict = match duplicate {
        true => ReceiptVerdict::Duplicate,
        false => ReceiptVerdict::Stored,
    };
    Ok(Json(ReceiveAck {
        ok: true,
        duplicate,
        receipt: Some(node.sign_receipt(&from, [(&from, &id, &verdict)])),
    }))
}

async fn message_receive_batch(
    State(node): State<Node>,
    ApiJson(req): ApiJson<BatchRequest>,
) -> Result<Json<BatchResponse>, ApiError> {
    if req.messages.is_empty() || req.messages.len() > MAX_PUSH_BATCH {
        return Err(ApiError::of(
            ErrorCode::InvalidField,
            format!("messages: from 1 to {MAX_PUSH_BATCH} at a time"),
        ));
    }
    let ids: Vec<(PeerName, MessageId)> = req
        .messages
        .iter()
        .map(|m| (m.from.clone(), m.id))
        .collect();
    let verdicts = node
        .receive_many(req.messages.into_iter().map(|m| (m, Via::Direct)).collect())
        .await?;
    let stated: Vec<ReceiptVerdict> = verdicts
        .iter()
        .map(|v| match v {
            Ok(true) => ReceiptVerdict::Duplicate,
            Ok(false) => ReceiptVerdict::Stored,
            Err(e) => ReceiptVerdict::Refused(e.code.to_string()),
        })
        .collect();
    let receipt = node.sign_receipt(
        &ids[0].0,
        ids.iter().zip(&stated).map(|((from, id), v)| (from, id, v)),
    );
    let results = ids
        .into_iter()
        .zip(verdicts)
        .map(|((_, id), v)| match v {
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
    Ok(Json(BatchResponse {
        ok: true,
        results,
        receipt: Some(receipt),
    }))
}

async fn channel_history_serve(
    State(node): State<Node>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    session: Option<Extension<SessionKey>>,
    ApiQuery(req): ApiQuery<HistoryRequest>,
) -> Result<Json<HistoryPage>, ApiError> {
    let session = session.map(|Extension(SessionKey(k))| k);
    Ok(Json(node.history_for_member(req, remote, session).await?))
}

#[derive(Serialize)]
struct NodeHealth {
    ok: bool,
    name: PeerName,
    /// Requests this node has sent its tracker since start, by way (docs/PROTOCOL.md, `GET /health` of a peer).
    tracker_requests: TrackerRequests,
    /// The UDP port this node takes sessions on (absent: sessions are off).
    #[serde(skip_serializing_if = "Option::is_none")]
    quic_port: Option<u16>,
    /// Messages carried each way since this start, by path.
    pushes: super::PushCounts,
    /// What the relay carried (absent: sessions are off), and the peers reached through it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    relay: Option<crate::link::relay::PortCounts>,
    via_relay: Vec<PeerName>,
}

#[derive(Serialize)]
struct TrackerRequests {
    session: u64,
    http: u64,
}

async fn health(State(node): State<Node>) -> Json<NodeHealth> {
    let (session, http) = node.inner.tracker.requests_sent();
    Json(NodeHealth {
        ok: true,
        name: node.name().clone(),
        tracker_requests: TrackerRequests { session, http },
        quic_port: node.session_addr().map(|a| a.port()),
        pushes: node.push_counts(),
        relay: node.relay_counts(),
        via_relay: node.via_relay(),
    })
}

impl Node {
    /// This node's receipt for what it did with pushed messages: signed with its key, so the sender can tell the
    /// answer came from the node that holds this name and not from whatever listens at the address.
    fn sign_receipt<'a>(
        &self,
        sender: &PeerName,
        entries: impl IntoIterator<Item = (&'a PeerName, &'a MessageId, &'a ReceiptVerdict)>,
    ) -> Signature {
        self.inner
            .identity
            .sign(&receipt_bytes(self.name(), sender, entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::DbError;

    #[test]
    fn a_store_that_cannot_save_answers_store_failed_not_internal() {
        let e: ApiError = NodeError::Store(DbError::Full("database or disk is full".into())).into();
        assert_eq!(
            (e.status, e.code.as_ref()),
            (StatusCode::INTERNAL_SERVER_ERROR, "store_failed")
        );
        assert!(e.message.contains("free some space"), "{}", e.message);
    }
}
