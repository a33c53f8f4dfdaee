//! Who may act as the node's user: the `user_only` layer in front of every local API route.
//!
//! A caller passes if it shows the node's token (`Authorization: Bearer T`, `X-Hchat-Token: T` or `?token=T`), or
//! is a browser logged in through the printed link (the session cookie of [`super::login`]) on a page of this
//! node (a request from another page, `Origin` not this node, does not pass on the cookie alone).
//! Without either, only a caller on loopback passes, and only when nothing suggests that a web page from
//! elsewhere is behind the request: a browser on this host is on loopback too, so a page from another site
//! (`Origin` that is not this node) or a DNS-rebound name (`Host` that is not an IP or `localhost`) could
//! otherwise post messages as the user.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::login::{WebLogin, same_secret};
use crate::http::ApiError;
use crate::proto::ErrorCode;

/// Lets a request act as the user only with the node's token, or from loopback when it is not a cross-site
/// browser request.
pub(crate) async fn user_only(
    State(web): State<super::Web>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    match admit(web.node().token(), web.login(), remote, &req) {
        Ok(()) => next.run(req).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// The rule of [`user_only`].
fn admit(token: &str, login: &WebLogin, remote: SocketAddr, req: &Request) -> Result<(), ApiError> {
    if presented_token(req).is_some_and(|t| same_secret(t, token)) {
        return Ok(());
    }
    // A browser sends a host's cookies only to that host (not to a rebound name), and with SameSite=Strict not on
    // another site's requests; the Origin check also keeps out a page on another port of the same host.
    let cookies = req
        .headers()
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok());
    if login.has_session(cookies) && same_origin(req.headers()).is_ok() {
        return Ok(());
    }
    if !remote.ip().is_loopback() {
        return Err(ApiError::of(
            ErrorCode::Forbidden,
            "this acts as the node's user: call it from the same host, or show the token the node printed at start-up",
        ));
    }
    same_site(req.headers()).map_err(|why| {
        ApiError::of(
            ErrorCode::Forbidden,
            format!("{why}; a page acting as the user must show the node's token"),
        )
    })
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

/// The host part of a `Host` header or an origin's authority, without the port.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// Checks that a tokenless loopback request names this host by address (not a name an attacker's DNS could point
/// here) and, if a browser says which page sent it, that the page is this node's own.
fn same_site(headers: &HeaderMap) -> Result<(), String> {
    let host = headers.get("host").and_then(|v| v.to_str().ok());
    if let Some(host) = host {
        let name = host_of(host);
        if name.parse::<IpAddr>().is_err() && !name.eq_ignore_ascii_case("localhost") {
            return Err(format!(
                "the request names this node as {name:?}, not by address"
            ));
        }
    }
    same_origin(headers)
}

/// Checks that, if a browser says which page sent the request, the page is this node's own.
fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    let host = headers.get("host").and_then(|v| v.to_str().ok());
    if let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok()) {
        let authority = origin.split_once("://").map_or(origin, |(_, a)| a);
        if Some(authority) != host {
            return Err(format!("the request comes from a page of {origin}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    const TOKEN: &str = "0123456789abcdef";

    fn login() -> WebLogin {
        WebLogin::new(TOKEN, 8000, std::time::Duration::from_secs(60))
    }

    /// The `Cookie` header a browser logged in through the link sends.
    fn session() -> String {
        login().set_cookie().split(';').next().unwrap().to_string()
    }

    fn status(remote: &str, token: Option<&str>, headers: &[(&str, &str)]) -> u16 {
        let uri = match token {
            Some(t) => format!("/api/me?token={t}"),
            None => "/api/me".to_string(),
        };
        let mut req = axum::http::Request::builder().uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Body::empty()).unwrap();
        match admit(TOKEN, &login(), remote.parse().unwrap(), &req) {
            Ok(()) => 200,
            Err(e) => e.status.as_u16(),
        }
    }

    #[test]
    fn a_lan_caller_needs_the_token_and_a_loopback_caller_does_not() {
        assert_eq!(status("192.0.2.7:5000", None, &[]), 403);
        assert_eq!(status("192.0.2.7:5000", Some("nope"), &[]), 403);
        assert_eq!(status("192.0.2.7:5000", Some(TOKEN), &[]), 200);
        let bearer = format!("Bearer {TOKEN}");
        assert_eq!(
            status("192.0.2.7:5000", None, &[("authorization", &bearer)]),
            200
        );
        assert_eq!(
            status("192.0.2.7:5000", None, &[("x-hchat-token", TOKEN)]),
            200
        );
        assert_eq!(status("127.0.0.1:5000", None, &[]), 200);
        assert_eq!(status("[::1]:5000", None, &[]), 200);
    }

    #[test]
    fn a_page_of_another_site_or_a_rebound_name_needs_the_token_even_on_loopback() {
        let host = ("host", "127.0.0.1:8000");
        assert_eq!(status("127.0.0.1:1", None, &[host]), 200);
        let own = ("origin", "http://127.0.0.1:8000");
        assert_eq!(status("127.0.0.1:1", None, &[host, own]), 200);
        let evil = ("origin", "http://evil.example");
        assert_eq!(status("127.0.0.1:1", None, &[host, evil]), 403);
        assert_eq!(status("127.0.0.1:1", Some(TOKEN), &[host, evil]), 200);
        let rebound = ("host", "evil.example:8000");
        assert_eq!(status("127.0.0.1:1", None, &[rebound]), 403);
        assert_eq!(
            status("127.0.0.1:1", None, &[("host", "localhost:8000")]),
            200
        );
        assert_eq!(status("127.0.0.1:1", None, &[("host", "[::1]:8000")]), 200);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }

    #[test]
    fn a_browser_logged_in_by_the_link_passes_on_its_cookie_from_its_own_pages_only() {
        let cookie = session();
        let lan = "192.0.2.7:5000";
        let host = ("host", "192.0.2.1:8000");
        assert_eq!(status(lan, None, &[host, ("cookie", &cookie)]), 200);
        let own = ("origin", "http://192.0.2.1:8000");
        assert_eq!(status(lan, None, &[host, own, ("cookie", &cookie)]), 200);
        let other_port = ("origin", "http://192.0.2.1:9999");
        assert_eq!(
            status(lan, None, &[host, other_port, ("cookie", &cookie)]),
            403
        );
        assert_eq!(
            status(lan, None, &[host, ("cookie", "hchat-8000=guess")]),
            403
        );
        let named = ("host", "laptop.local:8000");
        assert_eq!(status("127.0.0.1:1", None, &[named]), 403);
        assert_eq!(
            status("127.0.0.1:1", None, &[named, ("cookie", &cookie)]),
            200
        );
    }
}
