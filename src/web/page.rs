//! `GET /chat`: the web chat's files, built into the binary with `include_str!` so a node serves its page with
//! nothing to install and nothing loaded from the internet. The page holds no secret, so it is served to anyone;
//! everything it does goes through the local API, which asks for the token or the session cookie.
//!
//! `GET /chat?login=CODE` is the link the node prints: while the code works it sets the session cookie and
//! redirects to a clean `/chat` ([`super::login`]); after, it is refused 403 `link_expired`.

use std::time::Instant;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::http::{ApiError, ApiQuery};
use crate::proto::ErrorCode;

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
            // Never tell another site which page linked to it.
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct PageQuery {
    login: Option<String>,
}

pub(super) async fn chat_page(
    State(web): State<super::Web>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let Some(code) = q.login else {
        return Ok(asset("text/html; charset=utf-8", CHAT_HTML));
    };
    let login = web.login();
    if !login.redeem(&code, Instant::now()) {
        return Err(ApiError::of(
            ErrorCode::LinkExpired,
            format!(
                "this web chat link is not valid or has expired (a link works for {}): type /web in the peer's CLI for a fresh one",
                super::login::spoken(login.ttl())
            ),
        ));
    }
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/chat".to_string()),
            (header::SET_COOKIE, login.set_cookie()),
            (header::CACHE_CONTROL, "no-store".to_string()),
            (header::REFERRER_POLICY, "no-referrer".to_string()),
        ],
    )
        .into_response())
}

pub(super) async fn chat_css() -> Response {
    asset("text/css; charset=utf-8", CHAT_CSS)
}

pub(super) async fn chat_js() -> Response {
    asset("text/javascript; charset=utf-8", CHAT_JS)
}
