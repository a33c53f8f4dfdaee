//! The peer's client of the tracker API: one kept-alive HTTP client, typed requests and answers, and errors that
//! tell "the tracker is down" apart from "the tracker said no". Every request that acts as this peer is signed
//! with its identity (the `Hchat-Auth` header; the registration carries its own signature).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::identity::{AUTH_HEADER, Identity};
use crate::proto::*;

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
    http: reqwest::Client,
    me: PeerName,
    identity: Arc<Identity>,
}

impl TrackerClient {
    pub(crate) fn new(
        tracker: std::net::SocketAddr,
        me: PeerName,
        identity: Arc<Identity>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .pool_idle_timeout(crate::http::CLIENT_IDLE)
            .no_proxy()
            .build()
            .expect("a plain HTTP client always builds");
        Self {
            base: format!("http://{tracker}"),
            http,
            me,
            identity,
        }
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    async fn answer<T: DeserializeOwned>(
        &self,
        resp: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<T, TrackerError> {
        let resp =
            resp.map_err(|e| TrackerError::Unreachable(self.base.clone(), root_cause(&e)))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| TrackerError::Unreachable(self.base.clone(), root_cause(&e)))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| TrackerError::BadAnswer(e.to_string()));
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => Err(TrackerError::Refused {
                status: status.as_u16(),
                code: ErrorCode::parse(&b.error.code),
                message: b.error.message,
            }),
            Err(_) => Err(TrackerError::BadAnswer(format!("status {status}"))),
        }
    }

    /// A POST signed as this peer.
    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, TrackerError> {
        let bytes = serde_json::to_vec(body).expect("a request always serializes");
        let auth = self.identity.auth_header(&self.me, "POST", path, &bytes);
        let r = send_within_rate(
            self.http
                .post(format!("{}{path}", self.base))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(AUTH_HEADER, auth)
                .body(bytes),
        )
        .await;
        self.answer(r).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, TrackerError> {
        let r = send_within_rate(self.http.get(format!("{}{path}", self.base))).await;
        self.answer(r).await
    }

    /// A GET signed as this peer: for answers that depend on who asks (a non-open channel's members).
    async fn get_signed<T: DeserializeOwned>(&self, path: &str) -> Result<T, TrackerError> {
        let auth = self.identity.auth_header(&self.me, "GET", path, b"");
        let r = send_within_rate(
            self.http
                .get(format!("{}{path}", self.base))
                .header(AUTH_HEADER, auth),
        )
        .await;
        self.answer(r).await
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
        let r = send_within_rate(
            self.http
                .post(format!("{}/submit-info", self.base))
                .json(&req),
        )
        .await;
        self.answer(r).await
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
            .post("/connect-peer", &LookupRequest { name: name.clone() })
            .await?;
        Ok(found.peer)
    }

    /// Leaves messages in `to`'s mailbox; the envelopes go as they are, for the recipient to check.
    pub(crate) async fn deposit(
        &self,
        from: &PeerName,
        to: &PeerName,
        msgs: &[ChatMessage],
    ) -> Result<DepositResponse, TrackerError> {
        let entries = msgs
            .iter()
            .map(|m| {
                let text = serde_json::to_string(m).expect("a message always serializes");
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

/// Sends `req`, waiting out a 429 as its `Retry-After` says, up to [`RATE_LIMIT_RETRIES`] times: a burst (rejoining
/// every channel after a tracker restart, a script sending fast) is slowed down rather than failed.
async fn send_within_rate(
    req: reqwest::RequestBuilder,
) -> Result<reqwest::Response, reqwest::Error> {
    for _ in 0..RATE_LIMIT_RETRIES {
        let Some(again) = req.try_clone() else { break };
        let resp = again.send().await?;
        if resp.status() != reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Ok(resp);
        }
        let wait = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .map(Duration::from_secs);
        match wait {
            Some(w) if w <= RATE_LIMIT_LONGEST_WAIT => {
                tracing::debug!("the tracker asks to slow down; again in {w:?}");
                tokio::time::sleep(w).await;
            }
            _ => return Ok(resp),
        }
    }
    req.send().await
}

/// The innermost cause of a client error ("connection refused"), which is what a user can act on.
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
