//! An axum [`Router`] answering a session's request streams (docs/SESSIONS.md, section 10): one way in for the
//! tracker's API (tracker/sessions.rs) and the peer's `/p2p/*` routes (peer/sessions.rs).
//!
//! A REQUEST frame is turned into an HTTP request and run through the same router as the TCP server
//! (`tower::ServiceExt::oneshot`), behind the same per-address rate limiter, with `ConnectInfo` /
//! [`ClientOrigin`] set to the session's UDP address, so every handler, quota and check is the one the HTTP API
//! has. The key the dialler proved goes in as a [`SessionKey`] extension: a handler that must know who asks reads
//! it there (it is absent on the HTTP path). One code path: a bug fixed in a handler is fixed for both ways in.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::rate_limit::RateLimiter;
use super::{ApiError, ClientOrigin, rate_limited};
use crate::identity::PublicKey;
use crate::link::{Caller, Request, Response};
use crate::proto::ErrorCode;

/// The key a request's session proved (a request extension; absent on the HTTP path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionKey(pub PublicKey);

/// A router, and the rate limiter it shares with its TCP server.
pub struct RouterOverSession {
    app: Router,
    limiter: Arc<RateLimiter>,
    per_second: u32,
}

impl RouterOverSession {
    /// `app` must already carry the server's limits ([`super::with_limits`]); `limiter` is the TCP server's, so a
    /// client address has one budget however it asks.
    pub(crate) fn new(
        app: Router,
        limiter: Arc<RateLimiter>,
        per_second: u32,
    ) -> RouterOverSession {
        RouterOverSession {
            app,
            limiter,
            per_second,
        }
    }

    /// Runs `req` from `caller` through the router. Only the `hchat-auth` and `content-type` headers are passed
    /// on; the answer keeps `retry-after` and `content-type`.
    pub async fn answer(&self, caller: Caller, req: Request) -> Response {
        let client = caller.addr.ip().to_canonical();
        // As on TCP: a client at the address it reached us at is this host, and no per-address limit applies.
        let this_host = match caller.local_ip {
            Some(local) => local.to_canonical() == client,
            None => client.is_loopback(),
        };
        let resp = if !this_host
            && let Err(t) = self.limiter.check(client, std::time::Instant::now())
        {
            if t.first {
                tracing::warn!(%client, "more than {} requests a second over a session; refusing with 429 until it slows down", self.per_second);
            }
            rate_limited(caller.addr, self.per_second, t.wait)
        } else {
            let mut http = axum::http::Request::builder()
                .method(req.method.as_str())
                .uri(req.path.as_str());
            for (k, v) in &req.headers {
                if k == "hchat-auth" || k == "content-type" {
                    http = http.header(k.as_str(), v.as_str());
                }
            }
            match http.body(Body::from(req.body)) {
                Err(e) => axum::response::IntoResponse::into_response(ApiError::of(
                    ErrorCode::BadFrame,
                    format!("a request head that is not a valid HTTP request: {e}"),
                )),
                Ok(mut http) => {
                    http.extensions_mut().insert(ConnectInfo(caller.addr));
                    http.extensions_mut().insert(ClientOrigin {
                        addr: caller.addr,
                        this_host,
                    });
                    http.extensions_mut().insert(SessionKey(caller.key));
                    match self.app.clone().oneshot(http).await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    }
                }
            }
        };
        let status = resp.status().as_u16();
        let mut headers = std::collections::BTreeMap::new();
        for name in [
            axum::http::header::RETRY_AFTER,
            axum::http::header::CONTENT_TYPE,
        ] {
            if let Some(v) = resp.headers().get(&name).and_then(|v| v.to_str().ok()) {
                headers.insert(name.as_str().to_string(), v.to_string());
            }
        }
        let body = match resp.into_body().collect().await {
            Ok(b) => b.to_bytes().to_vec(),
            Err(e) => {
                tracing::warn!("a session answer's body failed: {e}");
                Vec::new()
            }
        };
        Response {
            status,
            headers,
            body,
        }
    }
}
