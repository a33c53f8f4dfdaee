//! The printed web chat link logs a browser in and then stops working (issue 11: the page's token stayed in the
//! browser's history as `/chat?token=…`), against a real peer started with a short `--web-link-ttl`:
//! - the link sets an HttpOnly, SameSite=Strict session cookie and redirects to a clean `/chat`;
//! - the cookie then acts as the user where a caller without it is refused (a request naming the node by a host
//!   name, as a browser on another machine may), but not from a page of another origin;
//! - past its lifetime the same link is refused 403 `link_expired`, while the browser it logged in stays in;
//! - `/web` in the CLI prints a fresh link that works; `Authorization: Bearer <token>` keeps working for scripts.

use crate::common;
use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "a-token-for-the-login-tests-01234";
const TTL_SECS: u64 = 3;

/// A client that shows redirects instead of following them.
fn browser() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(SOON)
        .build()
        .unwrap()
}

/// Opens a login link: the status, the `Location` and the `Set-Cookie` it answered, and the error code if any.
fn open(url: &str) -> (u16, Option<String>, Option<String>, Option<String>) {
    let r = browser().get(url).send().unwrap();
    let status = r.status().as_u16();
    let header = |h: &str| r.headers().get(h).map(|v| v.to_str().unwrap().to_string());
    let (location, cookie) = (header("location"), header("set-cookie"));
    let code = match status {
        303 => None,
        _ => r
            .json::<serde_json::Value>()
            .ok()
            .map(|v| v["error"]["code"].to_string()),
    };
    (status, location, cookie, code)
}

/// `GET /api/me` naming the node by a host name (so loopback alone does not let it act as the user).
fn me_by_name(peer: &Proc, headers: &[(&str, &str)]) -> u16 {
    let mut req = http()
        .get(peer.url("/api/me"))
        .header("host", format!("laptop.local:{}", peer.addr.port()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().unwrap().status().as_u16()
}

#[test]
fn the_printed_link_logs_a_browser_in_and_stops_working_after_its_lifetime() {
    let tracker = Proc::tracker(&[]);
    let ttl = TTL_SECS.to_string();
    let mut alice = Proc::peer(
        "alice",
        tracker.addr,
        &["--web-link-ttl", &ttl, "--token", TOKEN],
    );
    let link = chat_url(&alice);
    let printed = Instant::now();
    let base = format!("http://{}/chat?login=", alice.addr);
    assert!(link.starts_with(&base), "{link}");
    assert!(!link.contains(TOKEN), "the link does not carry the token");
    alice.out.wait_line(&format!(
        "* the link logs a browser in within {TTL_SECS} seconds; /web prints a fresh one"
    ));

    let (status, location, cookie, code) = open(&link);
    assert_eq!(status, 303, "{code:?}");
    assert_eq!(location.as_deref(), Some("/chat"), "to a clean address");
    let cookie = cookie.expect("a session cookie");
    let port = alice.addr.port();
    assert!(cookie.starts_with(&format!("hchat-{port}=")), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(TOKEN), "the cookie is not the token");
    let session = cookie.split(';').next().unwrap().to_string();

    // What the cookie is for: acting as the user where nothing else would let this caller.
    assert_eq!(me_by_name(&alice, &[]), 403);
    assert_eq!(me_by_name(&alice, &[("cookie", &session)]), 200);
    let own = format!("http://laptop.local:{port}");
    let own_page = [("cookie", session.as_str()), ("origin", own.as_str())];
    assert_eq!(me_by_name(&alice, &own_page), 200);
    let foreign = [
        ("cookie", session.as_str()),
        ("origin", "http://evil.example"),
    ];
    assert_eq!(
        me_by_name(&alice, &foreign),
        403,
        "not from another site's page"
    );
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(
        me_by_name(&alice, &[("authorization", &bearer)]),
        200,
        "scripts"
    );

    // Past its lifetime the link logs nobody in; the browser it logged in stays in.
    let mut refused = None;
    wait_until("the link to expire", SOON, || {
        refused = Some(open(&link));
        refused.as_ref().unwrap().0 != 303
    });
    let expired_after = printed.elapsed();
    let (status, _, cookie, code) = refused.unwrap();
    assert_eq!(
        (status, code.as_deref(), cookie),
        (403, Some("\"link_expired\""), None)
    );
    assert!(
        expired_after < Duration::from_secs(TTL_SECS + 2),
        "refused only {expired_after:?} after it was printed"
    );
    eprintln!("the link stopped working {expired_after:?} after it was printed");
    assert_eq!(me_by_name(&alice, &[("cookie", &session)]), 200);
    let (status, _, _, code) = open(&format!("{base}0123456789abcdef0123456789abcdef"));
    assert_eq!((status, code.as_deref()), (403, Some("\"link_expired\"")));

    // /web: a fresh link, which works.
    alice.type_line("/web");
    let fresh = alice.out.wait_for("a fresh link", SOON, |l| {
        l.starts_with("* web chat: ") && !l.ends_with(&link)
    });
    let fresh = fresh.trim_start_matches("* web chat: ");
    assert!(fresh.starts_with(&base), "{fresh}");
    assert_eq!(open(fresh).0, 303);
    // The page itself, without a login, is still served (it holds no secret).
    assert_eq!(
        http()
            .get(alice.url("/chat"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    alice.type_line("/quit");
    alice.wait_exit(SOON);
}
