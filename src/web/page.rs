//! `GET /chat`: the web chat's files, built into the binary with `include_str!` so a node serves its page with
//! nothing to install and nothing loaded from the internet. The page holds no secret, so it is served to anyone;
//! everything it does goes through the local API, which asks for the token.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const CHAT_HTML: &str = include_str!("assets/chat.html");
const CHAT_CSS: &str = include_str!("assets/chat.css");
const CHAT_JS: &str = include_str!("assets/chat.js");

/// Only this node's own files and API: a page that cannot load or send anything anywhere else.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // The page's address carries the token: never send it anywhere as a referrer.
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

pub(super) async fn chat_page() -> Response {
    asset("text/html; charset=utf-8", CHAT_HTML)
}

pub(super) async fn chat_css() -> Response {
    asset("text/css; charset=utf-8", CHAT_CSS)
}

pub(super) async fn chat_js() -> Response {
    asset("text/javascript; charset=utf-8", CHAT_JS)
}
