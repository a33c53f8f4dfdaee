//! The user's side of a peer node over HTTP: the local API that the web page, scripts and `curl` act through
//! (send, join, leave, history, members, conversations, the event stream) and the web chat page itself.
//!
//! - [`auth`]: `user_only`, the layer in front of every route that acts as the user (loopback or token).
//! - `api`: thin handlers over [`Node`].
//! - `stream`: `GET /api/events`, the events as Server-Sent Events with replay on reconnect.
//! - `page`: `GET /chat` and its files, embedded in the binary (`assets/`), and the login link `/chat?login=`.
//! - [`login`]: the short-lived login links and the session cookie they set.

mod api;
pub mod auth;
pub mod login;
mod page;
mod stream;

use axum::Router;
use axum::routing::{get, post};

use crate::peer::Node;

/// The local API (behind [`auth::user_only`]) and the page's files, to be merged into the peer's router.
pub fn routes(node: Node) -> Router<Node> {
    let acting_as_user = Router::new()
        .route("/send-peer", post(api::message_send))
        .route("/api/send", post(api::message_send))
        .route("/api/join", post(api::channel_join))
        .route("/api/leave", post(api::channel_leave))
        .route("/api/me", get(api::me_show))
        .route("/api/history", get(api::history_list))
        .route("/api/peers", get(api::peers_list))
        .route("/api/channels", get(api::channels_list))
        .route("/api/members", get(api::members_list))
        .route("/api/conversations", get(api::conversations_list))
        .route("/api/channel", get(api::channel_show))
        .route("/api/channel/mode", post(api::channel_mode))
        .route("/api/channel/act", post(api::channel_act))
        .route("/api/channel/role", post(api::channel_role))
        .route("/api/presence", post(api::presence_set))
        .route("/api/events", get(stream::events_stream))
        .route_layer(axum::middleware::from_fn_with_state(node, auth::user_only));
    Router::new()
        .route("/chat", get(page::chat_page))
        .route("/chat/app.css", get(page::chat_css))
        .route("/chat/app.js", get(page::chat_js))
        .merge(acting_as_user)
}
