//! Requests and answers of the tracker's HTTP API (`docs/PROTOCOL.md`, "Tracker").

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{ChannelName, PeerName};

/// Where a peer can be reached, as the tracker answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub name: PeerName,
    pub ip: IpAddr,
    pub port: u16,
    /// When the tracker last heard from the peer (Unix ms).
    pub last_seen_ms: u64,
}

impl PeerInfo {
    pub fn addr(&self) -> std::net::SocketAddr {
        (self.ip, self.port).into()
    }
}

/// `POST /submit-info`: register, or renew the lease of, a peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub name: PeerName,
    pub ip: IpAddr,
    pub port: u16,
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
}

/// `POST /add-list`, `POST /leave` and `POST /broadcast-peer`: a peer and a channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MembershipRequest {
    pub name: PeerName,
    pub channel: ChannelName,
}

/// Answer to `POST /add-list` and `POST /leave`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MembershipResponse {
    pub ok: bool,
    pub channel: ChannelName,
    /// Live members after the change.
    pub members: usize,
}

/// `POST /connect-peer` and `POST /unregister`: one peer by name.
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
}

/// The body of every refusal: `{"error":{"code","message"}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `bad_json`, `unknown_peer`, ... (`docs/PROTOCOL.md` lists them all).
    pub code: String,
    /// For people.
    pub message: String,
}
