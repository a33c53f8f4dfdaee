//! How a browser on another host logs in to the web chat without the node's token ever being in its address bar.
//!
//! The node prints a link `http://…/chat?login=CODE`. The code is random, works for a short time only
//! ([`DEFAULT_LINK_TTL`], `--web-link-ttl`), and opening it sets a session cookie (HttpOnly, SameSite=Strict) and
//! redirects to a clean `/chat`. The browser's history so keeps only a link that has stopped working, and the page's
//! script never sees a secret (it cannot leak one). `/web` in the CLI prints a fresh link.
//!
//! The cookie's value is derived from the token (SHA-256 of a label and the token), so it works as long as the
//! token does: a node restarted with the same `--token` keeps its pages logged in, one with a new random token
//! logs them out. Its name carries the node's port, because a browser sends a host's cookies to every port of it.

use std::collections::VecDeque;
use std::sync::Mutex;

use std::time::{Duration, Instant};

use crate::sync::lock;
use sha2::{Digest, Sha256};

/// How long a printed link logs a browser in, unless `--web-link-ttl` says otherwise.
pub const DEFAULT_LINK_TTL: Duration = Duration::from_secs(10 * 60);
/// Links that work at once; minting another forgets the oldest.
pub const MAX_LIVE_LINKS: usize = 16;

/// The node's login links and its session cookie.
#[derive(Debug)]
pub struct WebLogin {
    ttl: Duration,
    live: Mutex<VecDeque<(String, Instant)>>,
    cookie_name: String,
    cookie_value: String,
}

impl WebLogin {
    /// The logins of the node serving on `port` with `token`.
    pub fn new(token: &str, port: u16, ttl: Duration) -> WebLogin {
        let mut h = Sha256::new();
        h.update(b"hchat web session\0");
        h.update(token.as_bytes());
        WebLogin {
            ttl,
            live: Mutex::default(),
            cookie_name: format!("hchat-{port}"),
            cookie_value: hex(&h.finalize()),
        }
    }

    /// How long a link works.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new link code, working for [`WebLogin::ttl`] from `now`.
    pub fn mint(&self, now: Instant) -> String {
        let code = format!("{:032x}", rand::random::<u128>());
        let mut live = lock(&self.live);
        live.retain(|(_, until)| *until > now);
        while live.len() >= MAX_LIVE_LINKS {
            live.pop_front();
        }
        live.push_back((code.clone(), now + self.ttl));
        code
    }

    /// Whether `code` is a link that still works at `now`. A link works until it expires, so the same link opened
    /// in a second browser within its time works too.
    pub fn redeem(&self, code: &str, now: Instant) -> bool {
        let mut live = lock(&self.live);
        live.retain(|(_, until)| *until > now);
        live.iter().any(|(c, _)| same_secret(c, code))
    }

    /// The `Set-Cookie` value that logs a browser in.
    pub fn set_cookie(&self) -> String {
        format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            self.cookie_name, self.cookie_value
        )
    }

    /// Whether the `Cookie` header values carry this node's session cookie.
    pub fn has_session<'a>(&self, cookie_headers: impl IntoIterator<Item = &'a str>) -> bool {
        cookie_headers
            .into_iter()
            .flat_map(|h| h.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .any(|(k, v)| k == self.cookie_name && same_secret(v, &self.cookie_value))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares secrets in time that does not depend on where they differ.
pub(super) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A duration as a person says it: `10 minutes`, `1 minute`, `30 seconds`.
pub fn spoken(d: Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = if s >= 60 && s.is_multiple_of(60) {
        (s / 60, "minute")
    } else {
        (s, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login() -> WebLogin {
        WebLogin::new("the-token", 8000, Duration::from_secs(60))
    }

    #[test]
    fn given_a_link_when_opened_within_its_time_then_it_works_and_after_it_not() {
        let l = login();
        let t0 = Instant::now();
        let code = l.mint(t0);
        assert!(l.redeem(&code, t0 + Duration::from_secs(59)));
        assert!(l.redeem(&code, t0 + Duration::from_secs(59)), "twice too");
        assert!(!l.redeem(&code, t0 + Duration::from_secs(60)));
        assert!(!l.redeem("0123", t0));
        assert!(!l.redeem("", t0));
    }

    #[test]
    fn live_links_are_bounded_and_the_oldest_goes_first() {
        let l = login();
        let t0 = Instant::now();
        let first = l.mint(t0);
        let rest: Vec<String> = (0..MAX_LIVE_LINKS).map(|_| l.mint(t0)).collect();
        assert!(!l.redeem(&first, t0));
        assert!(rest.iter().all(|c| l.redeem(c, t0)));
    }

    #[test]
    fn the_session_cookie_is_this_nodes_and_follows_the_token() {
        let l = login();
        let set = l.set_cookie();
        assert!(
            set.starts_with("hchat-8000=")
                && set.contains("HttpOnly")
                && set.contains("SameSite=Strict")
        );
        let pair = set.split(';').next().unwrap();
        assert!(l.has_session([format!("a=b; {pair}; c=d").as_str()]));
        assert!(!l.has_session(["hchat-8000=nope"]));
        assert!(
            !l.has_session([pair.replace("8000", "8001").as_str()]),
            "another port's name"
        );
        let other = WebLogin::new("another-token", 8000, Duration::from_secs(60));
        assert!(!other.has_session([pair]), "a new token logs pages out");
        assert!(!set.contains("the-token"), "the cookie is not the token");
    }

    #[test]
    fn durations_read_as_spoken() {
        assert_eq!(spoken(Duration::from_secs(600)), "10 minutes");
        assert_eq!(spoken(Duration::from_secs(60)), "1 minute");
        assert_eq!(spoken(Duration::from_secs(90)), "90 seconds");
        assert_eq!(spoken(Duration::from_secs(1)), "1 second");
    }
}
