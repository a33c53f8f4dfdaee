//! The user's side of a peer node over HTTP: the local API that the web page, scripts and `curl` act through
//! (send, join, leave, history, members, conversations, the event stream) and the web chat page itself. It sits on
//! top of [`crate::peer`]: [`start`] starts a node with these routes merged into its own, and the peer never names
//! this module.
//!
//! - [`auth`]: `user_only`, the layer in front of every route that acts as the user (loopback or token).
//! - `api`: thin handlers over [`Node`].
//! - `stream`: `GET /api/events`, the events as Server-Sent Events with replay on reconnect.
//! - `page`: `GET /chat` and its files, embedded in the binary (`assets/`), and the login link `/chat?login=`.
//! - [`login`]: the short-lived login links and the session cookie they set.

mod api;
pub(crate) mod auth;
pub mod login;
mod page;
mod stream;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post};

use crate::peer::{Node, NodeError, PeerConfig};
use login::WebLogin;

/// A running node with its local API and web page: the node, and the web chat's login links.
#[derive(Clone)]
pub struct Web {
    node: Node,
    login: Arc<WebLogin>,
}

impl FromRef<Web> for Node {
    fn from_ref(web: &Web) -> Node {
        web.node.clone()
    }
}

/// Starts a node serving the local API and the web page beside its own routes; a printed login link works for
/// `link_ttl`.
pub async fn start(config: PeerConfig, link_ttl: Duration) -> Result<Web, NodeError> {
    let mut web = None;
    let node = Node::start_with(config, |node| {
        let login = WebLogin::new(node.token(), node.local_addr().port(), link_ttl);
        let w = Web {
            node: node.clone(),
            login: Arc::new(login),
        };
        let app = routes(w.clone());
        web = Some(w);
        app
    })
    .await?;
    Ok(
        web.unwrap_or_else(|| {
            unreachable!("{} started without calling its front end", node.name())
        }),
    )
}

impl Web {
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The web chat's login links and session cookie.
    pub(crate) fn login(&self) -> &WebLogin {
        &self.login
    }

    /// The web chat's address, without any secret (a browser on this host needs none).
    pub(crate) fn chat_page(&self) -> String {
        let local = self.node.local_addr();
        let host = if local.ip().is_unspecified() {
            self.node.advertised()
        } else {
            local
        };
        format!("http://{host}/chat")
    }

    /// The whole router the node serves (its own routes with the local API and page on top), for calling it
    /// without a socket (`oneshot` tests).
    pub fn router(&self) -> Router {
        crate::peer::routes::app(self.node.clone(), routes(self.clone()))
    }

    /// A fresh link that logs a browser in to the web chat for a short time, as printed at start-up and by `/web`.
    pub fn chat_url(&self) -> String {
        let code = self.login.mint(Instant::now());
        format!("{}?login={code}", self.chat_page())
    }
}

/// The local API (behind [`auth::user_only`]) and the page's files, to be merged into the peer's router.
fn routes(web: Web) -> Router {
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
        .route("/api/unread", get(api::unread_list))
        .route("/api/read", post(api::conversation_read))
        .route("/api/search", get(api::search_list))
        .route("/api/events", get(stream::events_stream))
        .route_layer(axum::middleware::from_fn_with_state(
            web.clone(),
            auth::user_only,
        ));
    Router::new()
        .route("/chat", get(page::chat_page))
        .route("/chat/app.css", get(page::chat_css))
        .route("/chat/app.js", get(page::chat_js))
        .merge(acting_as_user)
        .with_state(web)
}
