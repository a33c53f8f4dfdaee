//! Requests and answers of the tracker's HTTP API (`docs/PROTOCOL.md`, "Tracker").

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use serde_json::value::RawValue;

use super::{ChannelName, MessageId, PeerName};
pub use crate::identity::{Nonce, PublicKey, Signature};

/// Where a peer can be reached, as the tracker answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub name: PeerName,
    pub ip: IpAddr,
    pub port: u16,
    /// When the tracker last heard from the peer (Unix ms).
    pub last_seen_ms: u64,
    /// `online` or `away` (an invisible peer is left out of lists; `offline` only in `GET /channel/info`).
    #[serde(default)]
    pub status: PeerStatus,
    /// The away message, when `status` is `away` and the peer gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub away: Option<String>,
    /// The member's role, in answers about a channel (`get-list`, `broadcast-peer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The key the tracker binds this name to: what the peer's messages must be signed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PublicKey>,
    /// The UDP port the peer takes sessions on (docs/SESSIONS.md), at `ip`, as it registered it; absent when it
    /// registered none (an implementation without sessions: it is reached over HTTP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quic_port: Option<u16>,
}

/// Longest away message (bytes).
pub const MAX_AWAY_LEN: usize = 200;

/// A peer's presence as others see it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerStatus {
    #[default]
    Online,
    Away,
    /// Connected and receiving, shown to others as offline. Only the peer itself sets or sees it.
    Invisible,
    /// Not connected (or invisible), in `GET /channel/info`.
    Offline,
}

impl PeerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerStatus::Online => "online",
            PeerStatus::Away => "away",
            PeerStatus::Invisible => "invisible",
            PeerStatus::Offline => "offline",
        }
    }
}

/// How a channel admits new members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelMode {
    /// Anyone not banned may join.
    #[default]
    Open,
    /// Only the owner and the names it invited.
    Invite,
    /// Only who brings the channel's key (or was invited).
    Key,
}

impl ChannelMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelMode::Open => "open",
            ChannelMode::Invite => "invite",
            ChannelMode::Key => "key",
        }
    }
    pub fn parse(s: &str) -> Option<ChannelMode> {
        match s {
            "open" => Some(ChannelMode::Open),
            "invite" => Some(ChannelMode::Invite),
            "key" => Some(ChannelMode::Key),
            _ => None,
        }
    }
}

/// A member's role in a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Created the channel; the only one who changes it. Posts.
    Owner,
    /// Posts.
    Member,
    /// Reads, cannot post.
    Visitor,
}

impl Role {
    pub fn may_post(self) -> bool {
        self != Role::Visitor
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Member => "member",
            Role::Visitor => "visitor",
        }
    }
}

impl PeerInfo {
    pub fn addr(&self) -> std::net::SocketAddr {
        (self.ip, self.port).into()
    }

    /// Where the peer takes sessions, if it said.
    pub fn session_addr(&self) -> Option<std::net::SocketAddr> {
        self.quic_port.map(|p| (self.ip, p).into())
    }
}

/// `POST /submit-info`: register, or renew the lease of, a peer, proving it holds the key the name is bound to.
/// The identity fields are optional in the type only so that their absence is answered 400 `missing_identity`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub name: PeerName,
    pub ip: IpAddr,
    pub port: u16,
    #[serde(default)]
    pub public_key: Option<PublicKey>,
    /// The peer's clock (Unix ms); within 60 s of the tracker's.
    #[serde(default)]
    pub ts: Option<u64>,
    /// Never used twice (the tracker refuses a replay).
    #[serde(default)]
    pub nonce: Option<Nonce>,
    /// Signs [`crate::identity::register_bytes`].
    #[serde(default)]
    pub sig: Option<Signature>,
    /// The UDP port the peer takes sessions on, at `ip` (signed with the rest when present); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quic_port: Option<u16>,
}

/// Answer to `POST /submit-info`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub ok: bool,
    /// The lease lasts this long after each registration; renew well before.
    pub ttl_secs: u64,
    /// True when the tracker did not hold a live lease for this peer (first start, expiry, tracker restart).
    pub created: bool,
    /// The channels the tracker has this peer in, so a peer can tell what a restarted tracker forgot.
    pub channels: Vec<ChannelName>,
    /// Messages waiting in this peer's mailbox at the tracker (fetch them with `POST /mailbox/fetch`).
    #[serde(default)]
    pub mailbox: usize,
}

/// `POST /add-list`, `POST /leave` and `POST /broadcast-peer`: a peer and a channel.
#[derive(Clone, Serialize, Deserialize)]
pub struct MembershipRequest {
    pub name: PeerName,
    pub channel: ChannelName,
    /// The channel's key, when joining a `key` channel (`add-list` only). Never logged or echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl std::fmt::Debug for MembershipRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MembershipRequest")
            .field("name", &self.name)
            .field("channel", &self.channel)
            .field("key", &self.key.as_ref().map(|_| "…"))
            .finish()
    }
}

/// `POST /channel/mode`: the owner sets how the channel admits.
#[derive(Clone, Serialize, Deserialize)]
pub struct ChannelModeRequest {
    pub name: PeerName,
    pub channel: ChannelName,
    pub mode: ChannelMode,
    /// Required with mode `key`, refused with the others. Never logged or echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl std::fmt::Debug for ChannelModeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelModeRequest")
            .field("name", &self.name)
            .field("channel", &self.channel)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// `POST /channel/invite`, `/channel/remove`, `/channel/ban`, `/channel/unban`: the owner acts on a peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChannelPeerRequest {
    pub name: PeerName,
    pub channel: ChannelName,
    pub peer: PeerName,
}

/// What an owner does to a peer with `POST /channel/<action>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelAction {
    Invite,
    Remove,
    Ban,
    Unban,
}

impl ChannelAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelAction::Invite => "invite",
            ChannelAction::Remove => "remove",
            ChannelAction::Ban => "ban",
            ChannelAction::Unban => "unban",
        }
    }
}

/// A role the owner may give a member with `POST /channel/role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GivenRole {
    Member,
    Visitor,
}

/// `POST /channel/role`: the owner makes a member a visitor (read-only) or a member again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChannelRoleRequest {
    pub name: PeerName,
    pub channel: ChannelName,
    pub peer: PeerName,
    pub role: GivenRole,
}

/// One member in `GET /channel/info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelMember {
    pub name: PeerName,
    pub role: Role,
    /// `online`, `away` or `offline` (an invisible member shows as offline).
    pub status: PeerStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub away: Option<String>,
}

/// Answer to `GET /channel/info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    pub channel: ChannelName,
    /// `null` for a channel made before channels had owners.
    pub owner: Option<PeerName>,
    pub mode: ChannelMode,
    /// Every member, online or not.
    pub members: Vec<ChannelMember>,
    pub invited: Vec<PeerName>,
    pub banned: Vec<PeerName>,
}

/// `POST /presence`: a peer says how others should see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PresenceRequest {
    pub name: PeerName,
    /// `online`, `away` or `invisible`.
    pub status: PeerStatus,
    /// With `away`: shown beside the name (at most [`MAX_AWAY_LEN`] bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Answer to `POST /add-list` and `POST /leave`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MembershipResponse {
    pub ok: bool,
    pub channel: ChannelName,
    /// Live members after the change.
    pub members: usize,
}

/// `POST /connect-peer`: the peer wanted, by name (the asker is the `Hchat-Auth` signer).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LookupRequest {
    pub name: PeerName,
}

/// Answer to `GET /identity?name=X`: the key the tracker binds the name to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdentityAnswer {
    pub name: PeerName,
    pub public_key: PublicKey,
}

/// `POST /unregister`: the peer itself, by name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerRequest {
    pub name: PeerName,
}

/// Answer to `GET /get-list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChannelPeers {
    pub channel: ChannelName,
    pub peers: Vec<PeerInfo>,
}

/// Answer to `POST /broadcast-peer` and `GET /peers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerList {
    pub peers: Vec<PeerInfo>,
}

/// Answer to `POST /connect-peer`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerFound {
    pub peer: PeerInfo,
}

/// One entry of `GET /channels`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSummary {
    pub name: ChannelName,
    /// Live members.
    pub members: usize,
    #[serde(default)]
    pub mode: ChannelMode,
}

/// Answer to `GET /channels`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChannelList {
    pub channels: Vec<ChannelSummary>,
}

/// Answer to `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub ok: bool,
    pub version: String,
    pub peers: usize,
    pub channels: usize,
    /// Leases that have lapsed (left out of every answer) but are still held until the next sweep removes them.
    #[serde(default)]
    pub stale: usize,
    /// Where and with which key the tracker takes sessions, and how much they are used; absent from a tracker
    /// without sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionHealth>,
    /// What the relay carried since start (docs/SESSIONS.md, 12); absent from a tracker without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayHealth>,
}

/// The `relay` part of `GET /health`: totals only (who relays to whom is not counted).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct RelayHealth {
    /// Peers holding a relay stream now.
    pub streams: usize,
    /// Packets relayed, and their bytes (packets only, without frame headers).
    pub packets: u64,
    pub bytes: u64,
    /// Packets dropped: a sender over its rate limit, or a destination's queue full.
    pub dropped: u64,
    /// RELAY frames refused with an ERROR: no such destination, to itself, malformed.
    pub refused: u64,
}

/// The `session` part of `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionHealth {
    /// The UDP port sessions are accepted on (at the tracker's IP).
    pub port: u16,
    /// The tracker's key (what its sessions prove; base64url, as every key).
    pub key: PublicKey,
    /// Requests answered over sessions since start.
    pub requests: u64,
    /// Peers subscribed to pushes now.
    pub subscribers: usize,
    /// Bytes of pushes written to subscribers since start (absent from trackers before it was added).
    #[serde(default)]
    pub pushed_bytes: u64,
}

/// The body of every refusal: `{"error":{"code","message"}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable, machine-readable (`docs/PROTOCOL.md` lists them all; `ErrorCode::parse` reads it). Kept as sent: a receipt signs it.
    pub code: String,
    /// For people.
    pub message: String,
}

/// Most entries one `POST /mailbox/deposit` or `POST /mailbox/fetch` carries.
pub const MAX_MAIL_BATCH: usize = 500;

/// `POST /mailbox/deposit`: a live peer leaves messages for another peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DepositRequest {
    pub from: PeerName,
    pub to: PeerName,
    pub entries: Vec<MailItem>,
}

/// One held message: its id, and the envelope exactly as the sender sent it (the tracker never reads it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MailItem {
    pub id: MessageId,
    pub envelope: Box<RawValue>,
    /// Who deposited it (set by the tracker in `POST /mailbox/fetch` answers; ignored in deposits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<PeerName>,
}

/// Answer to `POST /mailbox/deposit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DepositResponse {
    pub ok: bool,
    /// Entries that were new (a retried deposit stores an id once).
    pub stored: usize,
    /// Entries now held for the recipient.
    pub held: usize,
}

/// `POST /mailbox/fetch`: a peer asks for what is held for it, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchRequest {
    pub name: PeerName,
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Answer to `POST /mailbox/fetch`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchResponse {
    pub entries: Vec<MailItem>,
    /// More are held than were returned.
    pub more: bool,
}

/// `POST /mailbox/ack`: the peer has stored these; the tracker deletes them. Between them, `entries` and `ids`
/// name 1 to [`MAX_MAIL_BATCH`] acknowledgements.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AckRequest {
    pub name: PeerName,
    /// Deletes every entry held under each id, whoever deposited it (the form from before `entries`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<MessageId>,
    /// Deletes the entry each (depositor, id) names, and no other: one depositor's ack cannot be made to drop
    /// another's message that reused its id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<MailKey>,
}

/// What identifies a held message: who deposited it (its sender) and its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MailKey {
    pub from: PeerName,
    pub id: MessageId,
}

/// Answer to `POST /mailbox/ack`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AckResponse {
    pub ok: bool,
    pub deleted: usize,
    pub held: usize,
}
