//! The peer's client of the tracker API: one kept-alive HTTP client, typed requests and answers, and errors that
//! tell "the tracker is down" apart from "the tracker said no". Every request that acts as this peer is signed
//! with its identity (the `Hchat-Auth` header; the registration carries its own signature).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::known_trackers::KnownTrackers;
use crate::identity::{AUTH_HEADER, Identity, SealedMail};
use crate::link::{self, Endpoint, Link, RequestError};
use crate::proto::*;
use crate::sync::lock;

/// What went wrong talking to the tracker.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TrackerError {
    #[error("the tracker at {0} cannot be reached: {1}")]
    Unreachable(String, String),
    #[error("the tracker refused: {message} ({code})")]
    Refused {
        status: u16,
        code: ErrorCode,
        message: String,
    },
    #[error("the tracker sent an answer this peer does not understand: {0}")]
    BadAnswer(String),
    /// The tracker did not prove the key this peer trusts (pinned, or `--tracker-key`): nothing is sent to it.
    /// The text is the one line for the user.
    #[error("{0}")]
    Untrusted(String),
}

impl TrackerError {
    /// True when the tracker has forgotten us (restart or expiry): register again and retry.
    pub fn forgot_us(&self) -> bool {
        // `unknown_peer`: no lease; a 401 `unknown_identity` to a signed request: no key bound to our name (a
        // tracker that restarted without its data), so it could not even check who asks.
        matches!(
            self,
            TrackerError::Refused {
                code: ErrorCode::UnknownPeer,
                ..
            } | TrackerError::Refused {
                status: 401,
                code: ErrorCode::UnknownIdentity,
                ..
            }
        )
    }
}

/// A client of one tracker, acting as one peer.
#[derive(Debug, Clone)]
pub(crate) struct TrackerClient {
    base: String,
    tracker: SocketAddr,
    http: reqwest::Client,
    me: PeerName,
    identity: Arc<Identity>,
    session: Arc<Session>,
}

/// This peer's session with the tracker: the endpoint it dials from, the live link, and the pins.
#[derive(Debug)]
struct Session {
    endpoint: std::sync::OnceLock<Arc<Endpoint>>,
    link: tokio::sync::Mutex<Option<Arc<Link>>>,
    known: KnownTrackers,
    /// Until when plain HTTP is used without asking again (the tracker offered no session).
    http_until: std::sync::Mutex<Option<std::time::Instant>>,
    /// Requests sent over the session, and over HTTP (for tests and the record).
    over_session: AtomicU64,
    over_http: AtomicU64,
}

/// The session with the tracker closes after this long without a packet: a tracker that died (and so sends no
/// reset) is noticed this soon, and a request waits no longer for it.
const SESSION_IDLE: Duration = Duration::from_secs(3);
/// A QUIC PING this often keeps a quiet session open (a packet, not a request: the tracker does no work for it).
const SESSION_KEEP_ALIVE: Duration = Duration::from_secs(1);
/// The limits of the session with the tracker, whichever endpoint it is dialled from.
fn session_limits() -> link::Config {
    link::Config {
        idle_timeout: SESSION_IDLE,
        keep_alive: Some(SESSION_KEEP_ALIVE),
        ..link::Config::default()
    }
}

/// Whether a UDP socket bound at `local` can send to `tracker`: the same address family, and not a socket bound to
/// loopback for a tracker elsewhere (or the other way round).
fn reaches(local: SocketAddr, tracker: SocketAddr) -> bool {
    local.is_ipv4() == tracker.is_ipv4()
        && (local.ip().is_unspecified() || local.ip().is_loopback() == tracker.ip().is_loopback())
}

/// A tracker without sessions is asked again after this long.
const HTTP_ONLY_FOR: Duration = Duration::from_secs(60);

/// How a request to the tracker says who sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// It does not.
    None,
    /// A fresh `Hchat-Auth` header, whichever way the request goes.
    Signed,
    /// Its body names this peer as the one acting: over the session the key its handshake proved stands for the
    /// peer (no signature to make, none for the tracker to check); over HTTP, a fresh `Hchat-Auth` header.
    Acting,
}

/// One answer, whichever way it came.
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Vec<u8>,
}

/// The name a link-local tracker is asked by over HTTP: a URL cannot carry an IPv6 zone (scope), so the client
/// resolves this name to the scoped address instead.
const SCOPED_TRACKER_HOST: &str = "hchat-tracker.invalid";

/// The base URL of the tracker's HTTP API, and, for a link-local address with its scope, the name to resolve to
/// it (issue 14).
fn base_url(tracker: SocketAddr) -> (String, Option<(&'static str, SocketAddr)>) {
    match tracker {
        SocketAddr::V6(v6) if v6.scope_id() != 0 => (
            format!("http://{SCOPED_TRACKER_HOST}:{}", v6.port()),
            Some((SCOPED_TRACKER_HOST, tracker)),
        ),
        _ => (format!("http://{tracker}"), None),
    }
}

impl TrackerClient {
    pub(crate) fn new(
        tracker: SocketAddr,
        me: PeerName,
        identity: Arc<Identity>,
        known: KnownTrackers,
    ) -> Self {
        let (base, scoped) = base_url(tracker);
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .pool_idle_timeout(crate::http::CLIENT_IDLE)
            .no_proxy();
        if let Some((host, addr)) = scoped {
            http = http.resolve(host, addr);
        }
        let http = http.build().expect("a plain HTTP client always builds");
        Self {
            base,
            tracker,
            http,
            me,
            identity,
            session: Arc::new(Session {
                endpoint: Default::default(),
                link: Default::default(),
                known,
                http_until: Default::default(),
                over_session: AtomicU64::new(0),
                over_http: AtomicU64::new(0),
            }),
        }
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// Requests sent so far over the session and over plain HTTP.
    pub(crate) fn requests_sent(&self) -> (u64, u64) {
        (
            self.session.over_session.load(Ordering::Relaxed),
            self.session.over_http.load(Ordering::Relaxed),
        )
    }

    /// The live session with the tracker, dialled if there is none; `None`: the tracker offers none (plain HTTP).
    /// A pinned tracker must offer one and prove the pinned key.
    pub(crate) async fn link(&self) -> Result<Option<Arc<Link>>, TrackerError> {
        let mut held = self.session.link.lock().await;
        if let Some(link) = held.as_ref().filter(|l| !l.is_closed()) {
            return Ok(Some(link.clone()));
        }
        *held = None;
        let required = self.session.known.requires_session(self.tracker);
        if required.is_none()
            && lock(&self.session.http_until).is_some_and(|t| std::time::Instant::now() < t)
        {
            return Ok(None);
        }
        let unreachable = |e: String| TrackerError::Unreachable(self.base.clone(), e);
        let health: Health = {
            let r = self.http.get(format!("{}/health", self.base)).send().await;
            let a = self.http_answer(r).await?;
            serde_json::from_slice(&a.body).map_err(|e| TrackerError::BadAnswer(e.to_string()))?
        };
        let Some(offer) = health.session else {
            if let Some(why) = required {
                return Err(TrackerError::Untrusted(format!(
                    "tracker {} offers no session, but {why}; this peer talks to it only over a session with that key",
                    self.tracker
                )));
            }
            *lock(&self.session.http_until) = Some(std::time::Instant::now() + HTTP_ONLY_FOR);
            return Ok(None);
        };
        let endpoint = self.endpoint()?;
        // The tracker's address with the session port (and the scope of a link-local one).
        let mut addr = self.tracker;
        addr.set_port(offer.port);
        let link = endpoint
            .dial_any_with(addr, &session_limits())
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        if let Err(line) = self.session.known.check(self.tracker, &link.remote_key()) {
            link.close();
            return Err(TrackerError::Untrusted(line));
        }
        *held = Some(link.clone());
        Ok(Some(link))
    }

    /// Dials the tracker from `endpoint`, the one this peer takes sessions on, if that socket can reach it: one
    /// UDP port for everything, so the tracker sees the peer's sessions come from the port it advertises (and a
    /// NAT maps one port, not two). Else (sessions off, another address family, a socket bound to loopback and a
    /// tracker that is not) the first session binds an endpoint of its own.
    pub(crate) fn dial_from(&self, endpoint: &Arc<Endpoint>) {
        if reaches(endpoint.local_addr(), self.tracker) {
            let _ = self.session.endpoint.set(endpoint.clone());
        }
    }

    fn endpoint(&self) -> Result<Arc<Endpoint>, TrackerError> {
        if let Some(e) = self.session.endpoint.get() {
            return Ok(e.clone());
        }
        let any: std::net::IpAddr = if self.tracker.is_ipv4() {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        };
        let e = Endpoint::bind_with(
            SocketAddr::new(any, 0),
            self.identity.clone(),
            Arc::new(link::NoInbox),
            session_limits(),
        )
        .map_err(|e| TrackerError::Unreachable(self.base.clone(), e.to_string()))?;
        Ok(self.session.endpoint.get_or_init(|| e).clone())
    }

    async fn http_answer(
        &self,
        resp: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<Answer, TrackerError> {
        let resp =
            resp.map_err(|e| TrackerError::Unreachable(self.base.clone(), root_cause(&e)))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let body = resp
            .bytes()
            .await
            .map_err(|e| TrackerError::Unreachable(self.base.clone(), root_cause(&e)))?
            .to_vec();
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }

    fn answer<T: DeserializeOwned>(&self, a: Answer) -> Result<T, TrackerError> {
        if (200..300).contains(&a.status) {
            return serde_json::from_slice(&a.body)
                .map_err(|e| TrackerError::BadAnswer(e.to_string()));
        }
        match serde_json::from_slice::<ErrorBody>(&a.body) {
            Ok(b) => Err(TrackerError::Refused {
                status: a.status,
                code: ErrorCode::parse(&b.error.code),
                message: b.error.message,
            }),
            Err(_) => Err(TrackerError::BadAnswer(format!("status {}", a.status))),
        }
    }

    /// One request, over the session if there is one, else over HTTP, saying who sends it as `auth` says.
    async fn once(
        &self,
        method: &'static str,
        path: &str,
        auth: Auth,
        body: Option<&[u8]>,
    ) -> Result<Answer, TrackerError> {
        let header = || {
            self.identity
                .auth_header(&self.me, method, path, body.unwrap_or(b""))
        };
        for attempt in 0..2 {
            let Some(link) = self.link().await? else {
                break;
            };
            let mut headers = std::collections::BTreeMap::new();
            if auth == Auth::Signed {
                headers.insert(AUTH_HEADER.to_ascii_lowercase(), header());
            }
            if body.is_some() {
                headers.insert("content-type".into(), "application/json".into());
            }
            let req = link::Request {
                method: method.into(),
                path: path.into(),
                headers,
                body: body.unwrap_or_default().to_vec(),
            };
            self.session.over_session.fetch_add(1, Ordering::Relaxed);
            match link.request(&req).await {
                Ok(r) => {
                    return Ok(Answer {
                        status: r.status,
                        retry_after: r.headers.get("retry-after").and_then(|v| v.parse().ok()),
                        body: r.body,
                    });
                }
                Err(RequestError::Refused(e)) => {
                    return Err(TrackerError::Refused {
                        status: ErrorCode::parse(&e.code).status(),
                        code: ErrorCode::parse(&e.code),
                        message: e.message,
                    });
                }
                // The session ended under the request (the tracker restarted): once more on a new one.
                Err(RequestError::Lost) if attempt == 0 => {
                    *self.session.link.lock().await = None;
                    link.close();
                }
                Err(e) => {
                    *self.session.link.lock().await = None;
                    return Err(TrackerError::Unreachable(self.base.clone(), e.to_string()));
                }
            }
        }
        self.session.over_http.fetch_add(1, Ordering::Relaxed);
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        };
        if auth != Auth::None {
            req = req.header(AUTH_HEADER, header());
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_vec());
        }
        let r = req.send().await;
        self.http_answer(r).await
    }

    /// [`Self::once`], waiting out a 429 as its `Retry-After` says, up to [`RATE_LIMIT_RETRIES`] times: a burst
    /// (rejoining every channel after a tracker restart, a script sending fast) is slowed down rather than failed.
    async fn exchange<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        auth: Auth,
        body: Option<&[u8]>,
    ) -> Result<T, TrackerError> {
        let mut tries = 0;
        loop {
            let a = self.once(method, path, auth, body).await?;
            tries += 1;
            if a.status != 429 || tries > RATE_LIMIT_RETRIES {
                return self.answer(a);
            }
            match a.retry_after.map(Duration::from_secs) {
                Some(w) if w <= RATE_LIMIT_LONGEST_WAIT => {
                    tracing::debug!("the tracker asks to slow down; again in {w:?}");
                    tokio::time::sleep(w).await;
                }
                _ => return self.answer(a),
            }
        }
    }

    /// Subscribes to the tracker's pushes over the session; `None` if the tracker offers no session.
    pub(crate) async fn subscribe(&self) -> Result<Option<link::PushStream>, TrackerError> {
        let Some(link) = self.link().await? else {
            return Ok(None);
        };
        // `changes`: this peer applies `members_changed` pushes, so a join in a big channel costs each member one
        // entry instead of the whole list.
        let payload = serde_json::to_vec(&serde_json::json!({ "name": self.me, "changes": true }))
            .expect("serializes");
        self.session.over_session.fetch_add(1, Ordering::Relaxed);
        link.subscribe(&payload)
            .await
            .map(Some)
            .map_err(|e| TrackerError::Unreachable(self.base.clone(), e.to_string()))
    }

    /// A POST whose body names this peer as the one acting: over the session, the session's key stands for it;
    /// over HTTP, it is signed.
    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, TrackerError> {
        self.post_as(path, body, Auth::Acting).await
    }

    /// A POST saying who sends it as `auth` says.
    async fn post_as<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        auth: Auth,
    ) -> Result<T, TrackerError> {
        let bytes = serde_json::to_vec(body).expect("a request always serializes");
        self.exchange("POST", path, auth, Some(&bytes)).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, TrackerError> {
        self.exchange("GET", path, Auth::None, None).await
    }

    /// A GET signed as this peer: for answers that depend on who asks (a non-open channel's members).
    async fn get_signed<T: DeserializeOwned>(&self, path: &str) -> Result<T, TrackerError> {
        self.exchange("GET", path, Auth::Signed, None).await
    }

    /// Registers (or renews) this peer at `addr`, taking sessions at `quic_port` if given, with a fresh signed
    /// proof of its key.
    pub(crate) async fn register(
        &self,
        addr: std::net::SocketAddr,
        quic_port: Option<u16>,
    ) -> Result<RegisterResponse, TrackerError> {
        let req = self
            .identity
            .register_request_with(&self.me, addr.ip(), addr.port(), quic_port);
        let bytes = serde_json::to_vec(&req).expect("a request always serializes");
        self.exchange("POST", "/submit-info", Auth::None, Some(&bytes))
            .await
    }

    /// The key the tracker binds `name` to, online or not.
    pub(crate) async fn identity(&self, name: &PeerName) -> Result<PublicKey, TrackerError> {
        let found: IdentityAnswer = self.get(&format!("/identity?name={name}")).await?;
        Ok(found.public_key)
    }

    pub(crate) async fn unregister(
        &self,
        name: &PeerName,
    ) -> Result<serde_json::Value, TrackerError> {
        self.post("/unregister", &PeerRequest { name: name.clone() })
            .await
    }

    /// Joins `channel`, with its key when it has one.
    pub(crate) async fn join(
        &self,
        name: &PeerName,
        channel: &ChannelName,
        key: Option<&str>,
    ) -> Result<MembershipResponse, TrackerError> {
        self.post(
            "/add-list",
            &MembershipRequest {
                name: name.clone(),
                channel: channel.clone(),
                key: key.map(str::to_string),
            },
        )
        .await
    }

    pub(crate) async fn leave(
        &self,
        name: &PeerName,
        channel: &ChannelName,
    ) -> Result<MembershipResponse, TrackerError> {
        self.post(
            "/leave",
            &MembershipRequest {
                name: name.clone(),
                channel: channel.clone(),
                key: None,
            },
        )
        .await
    }

    pub(crate) async fn fan_out(
        &self,
        name: &PeerName,
        channel: &ChannelName,
    ) -> Result<Vec<PeerInfo>, TrackerError> {
        let list: PeerList = self
            .post(
                "/broadcast-peer",
                &MembershipRequest {
                    name: name.clone(),
                    channel: channel.clone(),
                    key: None,
                },
            )
            .await?;
        Ok(list.peers)
    }

    pub(crate) async fn lookup(&self, name: &PeerName) -> Result<PeerInfo, TrackerError> {
        let found: PeerFound = self
            .post_as(
                "/connect-peer",
                &LookupRequest { name: name.clone() },
                // Its body names the peer wanted, not the asker: signed whichever way it goes.
                Auth::Signed,
            )
            .await?;
        Ok(found.peer)
    }

    /// Leaves messages in `to`'s mailbox, each sealed to `to` (the tracker keeps what it cannot read).
    pub(crate) async fn deposit(
        &self,
        from: &PeerName,
        to: &PeerName,
        sealed: &[SealedMail],
    ) -> Result<DepositResponse, TrackerError> {
        let entries = sealed
            .iter()
            .map(|m| {
                let text = serde_json::to_string(m).expect("sealed mail always serializes");
                MailItem {
                    id: m.id,
                    envelope: serde_json::value::RawValue::from_string(text)
                        .expect("serde_json writes valid JSON"),
                    from: None,
                }
            })
            .collect();
        self.post(
            "/mailbox/deposit",
            &DepositRequest {
                from: from.clone(),
                to: to.clone(),
                entries,
            },
        )
        .await
    }

    /// What the tracker holds for this peer, oldest first.
    pub(crate) async fn fetch_mail(
        &self,
        name: &PeerName,
        limit: usize,
    ) -> Result<FetchResponse, TrackerError> {
        self.post(
            "/mailbox/fetch",
            &FetchRequest {
                name: name.clone(),
                limit: Some(limit),
            },
        )
        .await
    }

    /// Tells the tracker these entries (by depositor and id) are stored here; it deletes them. `ids` deletes
    /// every entry under an id, whoever deposited it: only for entries that name no depositor.
    pub(crate) async fn ack_mail(
        &self,
        name: &PeerName,
        entries: Vec<MailKey>,
        ids: Vec<MessageId>,
    ) -> Result<AckResponse, TrackerError> {
        self.post(
            "/mailbox/ack",
            &AckRequest {
                name: name.clone(),
                ids,
                entries,
            },
        )
        .await
    }

    /// The live members of a channel, as this peer may see them (a non-open channel answers only its members).
    pub(crate) async fn members(
        &self,
        channel: &ChannelName,
    ) -> Result<Vec<PeerInfo>, TrackerError> {
        let list: ChannelPeers = self
            .get_signed(&format!("/get-list?channel={channel}"))
            .await?;
        Ok(list.peers)
    }

    /// A channel's owner, mode and every member with its role, as this peer may see it.
    pub(crate) async fn channel_info(
        &self,
        channel: &ChannelName,
    ) -> Result<ChannelInfo, TrackerError> {
        self.get_signed(&format!("/channel/info?channel={channel}"))
            .await
    }

    /// The owner sets a channel's mode (with its key for `key`).
    pub(crate) async fn set_mode(
        &self,
        req: &ChannelModeRequest,
    ) -> Result<ChannelInfo, TrackerError> {
        self.post("/channel/mode", req).await
    }

    /// The owner acts on a peer: `action` is `invite`, `remove`, `ban` or `unban`.
    pub(crate) async fn channel_act(
        &self,
        action: ChannelAction,
        req: &ChannelPeerRequest,
    ) -> Result<ChannelInfo, TrackerError> {
        self.post(&format!("/channel/{}", action.as_str()), req)
            .await
    }

    /// The owner makes a member a visitor or a member again.
    pub(crate) async fn set_role(
        &self,
        req: &ChannelRoleRequest,
    ) -> Result<ChannelInfo, TrackerError> {
        self.post("/channel/role", req).await
    }

    /// Tells the tracker how others should see this peer.
    pub(crate) async fn set_presence(
        &self,
        req: &PresenceRequest,
    ) -> Result<serde_json::Value, TrackerError> {
        self.post("/presence", req).await
    }

    pub(crate) async fn online(&self) -> Result<Vec<PeerInfo>, TrackerError> {
        let list: PeerList = self.get("/peers").await?;
        Ok(list.peers)
    }

    pub(crate) async fn channels(&self) -> Result<Vec<ChannelSummary>, TrackerError> {
        let list: ChannelList = self.get("/channels").await?;
        Ok(list.channels)
    }
}

/// How many times a request refused with 429 (the tracker's per-client rate limit) is sent again.
const RATE_LIMIT_RETRIES: usize = 3;
/// The longest `Retry-After` waited for; a longer one is reported to the user instead.
const RATE_LIMIT_LONGEST_WAIT: Duration = Duration::from_secs(2);

/// The innermost cause of a client error ("connection refused"), which is what a user can act on.
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_sessions_socket_dials_the_tracker_only_where_it_can_reach_it() {
        let tracker_lan = at("192.168.1.2:9000");
        assert!(reaches(at("0.0.0.0:7000"), tracker_lan));
        assert!(reaches(at("192.168.1.5:7000"), tracker_lan));
        assert!(reaches(at("127.0.0.1:7000"), at("127.0.0.1:9000")));
        assert!(reaches(at("[::1]:7000"), at("[::1]:9000")));
        assert!(
            !reaches(at("127.0.0.1:7000"), tracker_lan),
            "loopback cannot send to the LAN"
        );
        assert!(
            !reaches(at("192.168.1.5:7000"), at("127.0.0.1:9000")),
            "nor the LAN to loopback"
        );
        assert!(!reaches(at("[::]:7000"), tracker_lan), "another family");
        assert!(
            !reaches(at("0.0.0.0:7000"), at("[fe80::1%2]:9000")),
            "another family"
        );
    }
}
