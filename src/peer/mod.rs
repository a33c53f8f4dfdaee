//! A peer node: one user's end of the chat. It registers with the tracker and keeps its lease alive, receives
//! messages from other peers at `POST /p2p/receive`, carries its user's messages straight to the recipients
//! (through a durable outbox, with the tracker's mailbox as the fallback), keeps its history on disk, catches up
//! on what it missed. Its own HTTP serves other peers (`/p2p/*`) and `/health`; whoever starts it may merge a
//! front end's routes on top (`Node::start_with`: the binary adds the local API and web page of `web`).
//!
//! [`Node`] is a cheap handle (an `Arc`); every front end holds one and calls the same methods, so the CLI and
//! the page cannot drift apart.

pub(crate) mod access;
pub(crate) mod delivery;
mod directory;
pub mod events;
pub(crate) mod inbox;
pub mod known_trackers;
mod lease;
pub mod missed;
mod outbox;
mod pins;
pub(crate) mod presence;
pub mod receipts;
pub(crate) mod recovery;
mod relay;
mod roaming;
pub(crate) mod routes;
pub mod search;
mod sessions;
pub(crate) mod store;
pub(crate) mod tracker_client;
mod unread;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::http::Bound;
use crate::http::rate_limit::RateLimiter;
use crate::http::{ServerLimits, bind_with_fallback, serve_sharing};
use crate::identity::Identity;
use crate::proto::*;
use crate::storage::{DbError, DbThread, Storage};
use crate::sync::lock;
use access::RolesCache;
use delivery::Courier;
use directory::Directory;
pub use directory::MAX_KEY_CACHE;
use events::{Event, Events, Stamped};
use lease::Lease;
use outbox::Outboxes;
pub use outbox::{OUTBOX_LIMIT, Outcome};
pub use pins::Whois;
use recovery::Recovery;
pub use sessions::{PushCounts, QuicPort};
use store::PeerStore;
use tracker_client::{TrackerClient, TrackerError};

/// How to run a peer.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub name: PeerName,
    /// Address to bind and, unless `advertise_ip` is set, to advertise.
    pub ip: IpAddr,
    pub port: u16,
    pub advertise_ip: Option<IpAddr>,
    pub tracker: SocketAddr,
    /// The token that lets a non-loopback caller act as the user; random when not given.
    pub token: Option<String>,
    pub limits: ServerLimits,
    /// Where history, outbox, joined channels and the identity key are kept.
    pub storage: Storage,
    /// The key to act with, instead of the data dir's `identity.key` (or, in memory, a new one each start): lets
    /// an in-process peer keep its name across restarts.
    pub identity: Option<Arc<Identity>>,
    /// The tracker's key, as `--tracker-key` gives it; `None`: pinned on first contact (`known_trackers`).
    pub tracker_key: Option<known_trackers::TrackerKey>,
    /// Where to take sessions (docs/SESSIONS.md): by default UDP at the HTTP port's number.
    pub quic_port: QuicPort,
    /// Reach other peers through the tracker's relay only, never directly (`--force-relay`; the benchmark's
    /// relayed rows). Off: direct first, the relay when direct fails.
    pub force_relay: bool,
}

impl PeerConfig {
    /// A peer on 127.0.0.1, on a free port, keeping nothing on disk: what the demo, benchmarks and in-process
    /// tests start. Change any field after.
    pub fn on_loopback(name: PeerName, tracker: SocketAddr) -> Self {
        Self {
            name,
            ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            port: 0,
            advertise_ip: None,
            tracker,
            token: None,
            limits: ServerLimits::default(),
            storage: Storage::Memory,
            identity: None,
            tracker_key: None,
            quic_port: QuicPort::default(),
            force_relay: false,
        }
    }
}

/// Why a node operation failed; each says what the user can do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeError {
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, String),
    #[error(
        "{0} binds every interface, and no route to the tracker shows which address other peers should use; say it with --advertise-ip"
    )]
    NoAdvertiseAddress(IpAddr),
    #[error(transparent)]
    Tracker(#[from] TrackerError),
    #[error("you are not in #{0}; type #{0} to join it first")]
    NotJoined(ChannelName),
    #[error("that is you; a direct message goes to another peer")]
    SelfMessage,
    #[error("{0}")]
    BadMessage(#[from] MessageError),
    #[error("{peer} is not online")]
    PeerOffline { peer: PeerName },
    #[error("not delivered to {peer}: {error}")]
    NotDelivered { peer: PeerName, error: String },
    #[error(transparent)]
    Store(#[from] DbError),
    #[error("{0}")]
    Identity(String),
    #[error("{peer} refused it: {message}")]
    Refused {
        peer: PeerName,
        code: ErrorCode,
        message: String,
    },
    #[error("{0} messages already wait in the outbox; try again once some are delivered")]
    OutboxFull(usize),
    #[error("{0}")]
    BadSearch(String),
}

/// A cached key that fails to verify a message is checked with the tracker again, but not more often than this.
const KEY_RECHECK: Duration = Duration::from_secs(10);
/// How long `send` waits to tell who got a message before reporting it as queued (it is delivered later).
pub const SEND_REPORT_WAIT: Duration = Duration::from_secs(3);

/// What became of a sent message. Every recipient is in exactly one list.
#[derive(Debug, Clone, Serialize)]
pub struct SendReport {
    pub id: MessageId,
    pub ts: u64,
    /// Stored by the recipient.
    pub delivered: Vec<PeerName>,
    /// Offline: the tracker holds it in their mailbox until they are back.
    pub held: Vec<PeerName>,
    /// Not reached yet: it waits in the outbox and is retried.
    pub queued: Vec<FailedDelivery>,
    /// Refused for good.
    pub failed: Vec<FailedDelivery>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailedDelivery {
    pub peer: PeerName,
    pub error: String,
}

struct Inner {
    me: PeerName,
    /// This peer's key: signs its registration, its tracker requests and its messages.
    identity: Arc<Identity>,
    /// Where other peers reach this one; it changes only for a node that follows its address (`roaming`).
    advertised: Mutex<SocketAddr>,
    /// Bound to every interface with no address to advertise given: advertises, and follows, the address this
    /// host reaches the tracker from (`roaming`).
    follows_address: bool,
    tracker_addr: SocketAddr,
    local_addr: SocketAddr,
    token: String,
    tracker: TrackerClient,
    courier: Courier,
    /// Where sessions are taken and dialled from (`None`: sessions are off).
    link: Option<Arc<crate::link::Endpoint>>,
    /// Messages carried each way, by path.
    pushes: sessions::Pushes,
    /// Whether the session with each peer goes through the relay.
    paths: relay::Paths,
    /// Each peer's key as first seen.
    pins: pins::Pins,
    outboxes: Outboxes,
    recovery: Recovery,
    /// What came back while the user was away, until the recovery pass shows it.
    missed: missed::Missed,
    /// Delivered notices waiting to be sent.
    notices: receipts::Notices,
    catch_up_http: reqwest::Client,
    events: Events,
    presence: Arc<presence::Presence>,
    store: PeerStore,
    _store_thread: DbThread,
    joined: Joined,
    /// Where peers are, their keys, each channel's last fan-out list.
    directory: Directory,
    /// Who may post in each joined channel, as the tracker last said.
    roles: RolesCache,
    my_presence: Mutex<access::MyPresence>,
    lease: Lease,
    shutdown: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The channels this user is in, as the store says (kept in memory for every message's checks), and those with a
/// join under way.
#[derive(Default)]
struct Joined(Mutex<JoinedSets>);

#[derive(Default)]
struct JoinedSets {
    channels: BTreeSet<ChannelName>,
    /// Joins under way, per channel: the tracker may not have counted this user in yet.
    joining: std::collections::BTreeMap<ChannelName, usize>,
}

impl Joined {
    fn list(&self) -> Vec<ChannelName> {
        lock(&self.0).channels.iter().cloned().collect()
    }

    /// The channels this user is in with no join of them under way: those a renewal's answer can be held against.
    /// A renewal answered before the tracker saw a join does not list that channel; taken as "removed by the
    /// owner", it would drop a channel the user has just joined (seen as "you are not in #side" right after
    /// joining it, under load, with a 2 s lease).
    fn settled(&self) -> Vec<ChannelName> {
        let sets = lock(&self.0);
        sets.channels
            .iter()
            .filter(|c| !sets.joining.contains_key(*c))
            .cloned()
            .collect()
    }

    fn contains(&self, channel: &ChannelName) -> bool {
        lock(&self.0).channels.contains(channel)
    }

    /// True when it is new.
    fn insert(&self, channel: &ChannelName) -> bool {
        lock(&self.0).channels.insert(channel.clone())
    }

    fn remove(&self, channel: &ChannelName) {
        lock(&self.0).channels.remove(channel);
    }

    /// Marks a join of `channel` under way until the guard is dropped.
    fn joining(&self, channel: &ChannelName) -> JoiningGuard<'_> {
        *lock(&self.0).joining.entry(channel.clone()).or_default() += 1;
        JoiningGuard {
            joined: self,
            channel: channel.clone(),
        }
    }
}

struct JoiningGuard<'a> {
    joined: &'a Joined,
    channel: ChannelName,
}

impl Drop for JoiningGuard<'_> {
    fn drop(&mut self) {
        let mut sets = lock(&self.joined.0);
        if let Some(n) = sets.joining.get_mut(&self.channel) {
            *n -= 1;
            if *n == 0 {
                sets.joining.remove(&self.channel);
            }
        }
    }
}

/// A running peer node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

/// The key to act with: the one given, else the data dir's `identity.key` (created on first start), else (in
/// memory) a new one.
fn identity_of(config: &PeerConfig) -> Result<Arc<Identity>, NodeError> {
    Ok(match (&config.identity, &config.storage) {
        (Some(id), _) => id.clone(),
        (None, Storage::Dir(dir)) => {
            Arc::new(Identity::load_or_create(dir).map_err(|e| NodeError::Identity(e.to_string()))?)
        }
        (None, Storage::Memory) => Arc::new(Identity::ephemeral()),
    })
}

/// Binds the node's socket. With `--port 0`, the port of the last run if it is free: a peer that crashed and
/// restarts at once renews its own lease (same address) instead of finding its name held, and others' cached
/// address still works. The port bound is kept for the next start.
async fn bind_port(config: &PeerConfig, store: &PeerStore) -> Result<Bound, NodeError> {
    let asked = SocketAddr::new(config.ip, config.port);
    let last_port = match config.port {
        0 => store
            .meta("port")
            .await?
            .and_then(|p| p.parse::<u16>().ok()),
        _ => None,
    };
    let reused = match last_port {
        Some(p) => bind_with_fallback(config.ip, p).await.ok(),
        None => None,
    };
    let bound = match reused {
        Some(b) => b,
        None => bind_with_fallback(config.ip, config.port)
            .await
            .map_err(|e| NodeError::Bind(asked, e.to_string()))?,
    };
    store
        .set_meta("port", bound.local_addr.port().to_string())
        .await?;
    Ok(bound)
}

/// Binds the node's session endpoint on UDP, at `http`'s address: at its port number unless told otherwise (and
/// then, if that UDP port is taken, at any free one: the port is advertised, so none has to be guessed).
fn bind_sessions(
    config: &PeerConfig,
    http: SocketAddr,
    identity: &Arc<Identity>,
    inbox: Arc<sessions::SessionInbox>,
) -> Result<Option<Arc<crate::link::Endpoint>>, NodeError> {
    let at = |port| SocketAddr::new(http.ip(), port);
    // On a relay socket: a session with a peer that cannot be reached directly goes through the tracker.
    let relayable = crate::link::Config {
        relay: true,
        ..crate::link::Config::default()
    };
    let bind = |port| {
        crate::link::Endpoint::bind_with(
            at(port),
            identity.clone(),
            inbox.clone(),
            relayable.clone(),
        )
    };
    let endpoint = match config.quic_port {
        QuicPort::Off => return Ok(None),
        QuicPort::Port(p) => bind(p).map_err(|e| NodeError::Bind(at(p), e.to_string()))?,
        QuicPort::SameAsHttp => match bind(http.port()) {
            Ok(e) => e,
            Err(first) => {
                let e = bind(0).map_err(|e| NodeError::Bind(at(0), e.to_string()))?;
                tracing::warn!(peer = %config.name, "UDP port {} is taken ({first}); taking sessions on {} instead", http.port(), e.local_addr());
                e
            }
        },
    };
    if let Some(relay) = endpoint.relay() {
        relay.set_force(config.force_relay);
    }
    Ok(Some(endpoint))
}

impl Node {
    /// Binds, registers with the tracker and starts serving the peer's own routes. Fails if the tracker cannot be
    /// reached or refuses the name, so a user learns at once.
    pub async fn start(config: PeerConfig) -> Result<Node, NodeError> {
        Self::start_with(config, |_| Router::new()).await
    }

    /// [`Node::start`] with a front end: `front` is called once with the node, before it serves, and the routes it
    /// returns are served beside the peer's own.
    pub(crate) async fn start_with(
        config: PeerConfig,
        front: impl FnOnce(&Node) -> Router + Send,
    ) -> Result<Node, NodeError> {
        let mut advertised_ip = config.advertise_ip.unwrap_or(config.ip);
        if advertised_ip.is_unspecified() {
            // Bound to every interface: advertise the address this host reaches the tracker from, and follow it.
            advertised_ip = roaming::route_source(config.tracker)
                .ok()
                .filter(|ip| !ip.is_unspecified())
                .ok_or(NodeError::NoAdvertiseAddress(advertised_ip))?;
        }
        // The store first: a data dir held by another process fails the start before anything is announced.
        let (store, store_thread) = PeerStore::open(&config.storage, config.name.clone())?;
        let joined_since = store.joined().await?;
        let identity = identity_of(&config)?;
        let bound = bind_port(&config, &store).await?;
        let inbox = Arc::new(sessions::SessionInbox::default());
        let link = bind_sessions(&config, bound.local_addr, &identity, inbox.clone())?;
        let node = Node::assemble(
            &config,
            advertised_ip,
            bound.local_addr,
            identity,
            link,
            store,
            store_thread,
        );
        node.inner.pins.load(node.inner.store.pins().await?);
        inbox.attach(&node);
        for (channel, _) in &joined_since {
            node.inner.joined.insert(channel);
        }
        // Where catch-up starts, fixed before anything can arrive and move the newest message held.
        let mut marks = Vec::new();
        for (channel, since) in joined_since {
            if let Some(mark) = node.catch_up_mark(&channel, Some(since)).await? {
                marks.push((channel, mark));
            }
        }
        // One rate limiter for both ways in to the `/p2p/*` routes: an address has one budget however it asks.
        let limiter = Arc::new(RateLimiter::new(config.limits.rate_limit));
        if let Some(endpoint) = &node.inner.link {
            endpoint.serve_requests(Arc::new(sessions::PeerRequests {
                inbox: inbox.clone(),
                limiter: limiter.clone(),
                per_second: config.limits.rate_limit.per_second,
                request_timeout: config.limits.request_timeout,
            }));
        }
        let app = routes::app(node.clone(), front(&node));
        node.spawn(serve_sharing(
            bound.listener,
            app,
            node.stopped(),
            config.limits,
            limiter,
        ));
        if let Err(e) = node.renew().await {
            node.inner.shutdown.cancel();
            return Err(e.into());
        }
        node.spawn(node.clone().keep_lease());
        node.spawn(node.clone().keep_presence());
        node.spawn(node.clone().recover());
        node.spawn(node.clone().show_missed_when_quiet());
        node.spawn(node.clone().send_notices());
        node.spawn(node.clone().index_for_search());
        if node.follows_address() {
            node.spawn(node.clone().follow_address());
        }
        node.spawn(node.clone().keep_relay());
        node.spawn(node.clone().watch_paths());
        node.want_recovery(true, marks);
        node.resume_outbox().await?;
        tracing::info!(peer = %node.name(), addr = %node.local_addr(), sessions = ?node.session_addr(), "peer started");
        Ok(node)
    }

    /// The node's parts, before it serves or registers.
    fn assemble(
        config: &PeerConfig,
        advertised_ip: IpAddr,
        local_addr: SocketAddr,
        identity: Arc<Identity>,
        link: Option<Arc<crate::link::Endpoint>>,
        store: PeerStore,
        store_thread: DbThread,
    ) -> Node {
        let token = config
            .token
            .clone()
            .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()));
        let data_dir = match &config.storage {
            Storage::Dir(dir) => Some(dir.as_path()),
            Storage::Memory => None,
        };
        let known = known_trackers::KnownTrackers::new(data_dir, config.tracker_key.clone());
        let tracker =
            TrackerClient::new(config.tracker, config.name.clone(), identity.clone(), known);
        if let Some(endpoint) = &link {
            tracker.dial_from(endpoint);
        }
        Node {
            inner: Arc::new(Inner {
                me: config.name.clone(),
                identity,
                advertised: Mutex::new(SocketAddr::new(advertised_ip, local_addr.port())),
                follows_address: config.advertise_ip.is_none() && config.ip.is_unspecified(),
                tracker_addr: config.tracker,
                local_addr,
                token,
                tracker,
                courier: Courier::default(),
                link,
                pushes: sessions::Pushes::default(),
                paths: relay::Paths::default(),
                pins: pins::Pins::default(),
                outboxes: Outboxes::default(),
                recovery: Recovery::default(),
                missed: missed::Missed::default(),
                notices: receipts::Notices::default(),
                catch_up_http: reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .timeout(Duration::from_secs(10))
                    .no_proxy()
                    .build()
                    .expect("a plain HTTP client always builds"),
                events: Events::default(),
                presence: Arc::default(),
                store,
                _store_thread: store_thread,
                joined: Joined::default(),
                directory: Directory::default(),
                roles: RolesCache::default(),
                my_presence: Mutex::default(),
                lease: Lease::default(),
                shutdown: CancellationToken::new(),
                tasks: Mutex::default(),
            }),
        }
    }

    /// Runs `task` until the node stops; [`Node::shutdown`] waits for it.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        lock(&self.inner.tasks).push(tokio::spawn(task));
    }

    pub fn name(&self) -> &PeerName {
        &self.inner.me
    }

    /// Where the node's socket is bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The address other peers reach this node at.
    pub fn advertised(&self) -> SocketAddr {
        *lock(&self.inner.advertised)
    }

    /// The token that lets a non-loopback caller act as this user.
    pub fn token(&self) -> &str {
        &self.inner.token
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Stamped>> {
        self.inner.events.subscribe()
    }

    /// Identifies this start of the node, so a page can tell its event numbers are from an earlier one.
    pub fn boot_id(&self) -> u64 {
        self.inner.events.boot()
    }

    /// A token cancelled when the node stops.
    pub fn stopped(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    pub fn joined(&self) -> Vec<ChannelName> {
        self.inner.joined.list()
    }

    pub fn is_joined(&self, channel: &ChannelName) -> bool {
        self.inner.joined.contains(channel)
    }

    /// The public half of this peer's identity.
    pub fn public_key(&self) -> PublicKey {
        self.inner.identity.public_key()
    }

    fn notice(&self, text: String) {
        self.inner.events.publish(Event::Notice { text });
    }

    /// Runs a tracker request; if the tracker has forgotten this peer (it restarted), registers again first and
    /// retries once, so the user never has to.
    async fn tracked<T, F, Fut>(&self, op: F) -> Result<T, TrackerError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, TrackerError>>,
    {
        match op().await {
            Err(e) if e.forgot_us() => {
                self.renew().await?;
                op().await
            }
            r => r,
        }
    }

    /// Joins a channel (created if new, owned by this user); returns its live member count.
    pub async fn join(&self, channel: &ChannelName) -> Result<usize, NodeError> {
        self.join_inner(channel, None).await
    }

    async fn join_inner(
        &self,
        channel: &ChannelName,
        key: Option<&str>,
    ) -> Result<usize, NodeError> {
        let t = &self.inner.tracker;
        let me = &self.inner.me;
        // Counted in before the tracker can list us: a member who sees us listed and sends at once must not be
        // refused `not_joined` (a refusal for good) while our answer is on its way back. Whether the sender may
        // post, and whether the tracker has us as a member, is still checked with the tracker as for any message.
        let _joining = self.inner.joined.joining(channel);
        let new = self.inner.joined.insert(channel);
        let joined = async {
            let answer = self.tracked(|| t.join(me, channel, key)).await?;
            self.forget_roles(channel);
            self.inner
                .store
                .set_joined(channel, Some(MessageId::now_v7()))
                .await?;
            Ok::<_, NodeError>(answer)
        };
        let answer = match joined.await {
            Ok(answer) => answer,
            Err(e) => {
                if new {
                    self.inner.joined.remove(channel);
                }
                return Err(e);
            }
        };
        if new {
            // Back in a channel we were in before: fetch what was said meanwhile.
            if let Some(mark) = self.catch_up_mark(channel, None).await? {
                self.want_recovery(false, vec![(channel.clone(), mark)]);
            }
            self.inner.events.publish(Event::Joined {
                channel: channel.clone(),
            });
        }
        Ok(answer.members)
    }

    /// Leaves a channel.
    pub async fn leave(&self, channel: &ChannelName) -> Result<(), NodeError> {
        if !self.is_joined(channel) {
            return Err(NodeError::NotJoined(channel.clone()));
        }
        let t = &self.inner.tracker;
        let me = &self.inner.me;
        match self.tracked(|| t.leave(me, channel)).await {
            Ok(_) => {}
            // The tracker had already dropped us from it: the user's wish holds all the same.
            Err(TrackerError::Refused {
                code: ErrorCode::NotMember,
                ..
            }) => {}
            Err(e) => return Err(e.into()),
        }
        self.inner.store.set_joined(channel, None).await?;
        self.inner.joined.remove(channel);
        self.inner.directory.forget_channel(channel);
        self.forget_members(channel);
        self.forget_roles(channel);
        self.inner.events.publish(Event::Left {
            channel: channel.clone(),
        });
        Ok(())
    }

    /// Who is online, or who is in a channel.
    pub async fn peers(&self, channel: Option<&ChannelName>) -> Result<Vec<PeerInfo>, NodeError> {
        Ok(match channel {
            Some(c) => self.inner.tracker.members(c).await?,
            None => self.inner.tracker.online().await?,
        })
    }

    /// The channels the tracker knows, with live member counts.
    pub async fn channels(&self) -> Result<Vec<ChannelSummary>, NodeError> {
        Ok(self.inner.tracker.channels().await?)
    }

    /// The last `n` messages of a conversation, oldest first.
    pub fn history(&self, conversation: &Destination, n: usize) -> Vec<ChatMessage> {
        self.inner
            .store
            .recent(conversation, n)
            .unwrap_or_else(|e| {
                tracing::error!(peer = %self.name(), "cannot read the history: {e}");
                Vec::new()
            })
    }

    /// The peers this node has a direct conversation with (messages in its history), by name.
    pub fn direct_conversations(&self) -> Vec<PeerName> {
        self.inner.store.direct_conversations().unwrap_or_else(|e| {
            tracing::error!(peer = %self.name(), "cannot read the history: {e}");
            Vec::new()
        })
    }

    /// [`Node::history`] for async callers: the read runs on the store's thread without blocking this one.
    pub async fn history_async(
        &self,
        conversation: &Destination,
        n: usize,
    ) -> Result<Vec<ChatMessage>, NodeError> {
        Ok(self.inner.store.recent_async(conversation, n).await?)
    }

    /// Where a peer is: from the recent cache, else from the tracker.
    async fn locate(&self, peer: &PeerName) -> Result<PeerInfo, NodeError> {
        if let Some(info) = self.inner.directory.fresh(peer) {
            return Ok(info);
        }
        let t = &self.inner.tracker;
        match self.tracked(|| t.lookup(peer)).await {
            Ok(info) => {
                self.inner.directory.remember(std::slice::from_ref(&info));
                Ok(info)
            }
            Err(e)
                if e.forgot_us()
                    || matches!(
                        &e,
                        TrackerError::Refused {
                            code: ErrorCode::UnknownPeer,
                            ..
                        }
                    ) =>
            {
                self.inner.directory.forget(peer);
                Err(NodeError::PeerOffline { peer: peer.clone() })
            }
            Err(e @ TrackerError::Unreachable(..)) => {
                // The tracker is down: the last address we had is the best guess, however old.
                self.inner
                    .directory
                    .last_known(peer)
                    .ok_or(NodeError::Tracker(e))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Who a channel message goes to: the tracker's fan-out list, or, while the tracker is unreachable, the last
    /// one it gave.
    async fn recipients(&self, channel: &ChannelName) -> Result<Vec<PeerInfo>, NodeError> {
        let t = &self.inner.tracker;
        let me = &self.inner.me;
        let mut answer = self.tracked(|| t.fan_out(me, channel)).await;
        if matches!(
            &answer,
            Err(TrackerError::Refused {
                code: ErrorCode::NotMember,
                ..
            })
        ) {
            // A tracker that has just forgotten us says `not_member` until the renewal under way has joined
            // this peer again: wait for that renewal, then ask once more before taking it as a removal.
            self.inner.lease.settled().await;
            answer = self.tracked(|| t.fan_out(me, channel)).await;
        }
        match answer {
            Ok(peers) => {
                self.inner.directory.remember(&peers);
                self.inner.directory.set_fan_out(channel, peers.clone());
                Ok(peers)
            }
            Err(e @ TrackerError::Unreachable(..)) => self
                .inner
                .directory
                .last_fan_out(channel)
                .ok_or(NodeError::Tracker(e)),
            // Removed or banned by the owner: no need to wait for the next renewal to stop showing the channel.
            Err(TrackerError::Refused {
                code: ErrorCode::Banned | ErrorCode::NotMember,
                message,
                ..
            }) => {
                self.removed_from(channel, &message).await;
                Err(NodeError::NotJoined(channel.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Forgets where a peer was (its address failed).
    fn forget_address(&self, peer: &PeerName) {
        self.inner.directory.forget(peer);
    }

    /// Sends the user's `text` to a channel or a peer. The message and one outbox entry per recipient are
    /// committed first; then each recipient's worker carries it (directly, or through the tracker's mailbox) and
    /// the report says, for each recipient, what became of it within [`SEND_REPORT_WAIT`].
    pub async fn send(&self, dest: Destination, text: String) -> Result<SendReport, NodeError> {
        self.send_with_id(dest, text, None).await
    }

    /// [`Node::send`] with the message id chosen by the caller (a UUIDv7, so history keeps its order): sending
    /// again with the same id (a retry) is carried again and stored and shown once, here and by every recipient.
    pub async fn send_with_id(
        &self,
        dest: Destination,
        text: String,
        id: Option<MessageId>,
    ) -> Result<SendReport, NodeError> {
        self.store_then_report(dest, text, id).await?.await
    }

    /// [`Node::send`] in two steps: returns once the message is signed and in the store (its place among this
    /// user's messages is fixed, and it is being carried), with the report to wait for. A front end that takes
    /// the next line while earlier ones wait for their reports keeps the user's order without making a line wait
    /// for the one before it to be delivered.
    pub async fn send_then_report(
        &self,
        dest: Destination,
        text: String,
    ) -> Result<
        impl std::future::Future<Output = Result<SendReport, NodeError>> + Send + 'static,
        NodeError,
    > {
        self.store_then_report(dest, text, None).await
    }

    /// Signs and stores the message (with the caller's id if given); the report on it is the future returned.
    async fn store_then_report(
        &self,
        dest: Destination,
        text: String,
        id: Option<MessageId>,
    ) -> Result<
        impl std::future::Future<Output = Result<SendReport, NodeError>> + Send + 'static,
        NodeError,
    > {
        let recipients = self.recipients_of(&dest).await?;
        self.inner.outboxes.room_for(recipients.len())?;
        let msg = self.compose(dest, text, id)?;
        let watches = self.commit_sent(&msg, &recipients).await?;
        let node = self.clone();
        Ok(async move { node.report_on(&msg, watches).await })
    }

    /// Who a message to `dest` goes to, by name.
    async fn recipients_of(&self, dest: &Destination) -> Result<Vec<PeerName>, NodeError> {
        Ok(match dest {
            Destination::Channel(c) if !self.is_joined(c) => {
                return Err(NodeError::NotJoined(c.clone()));
            }
            Destination::Channel(c) => self
                .recipients(c)
                .await?
                .into_iter()
                .map(|p| p.name)
                .collect(),
            Destination::Direct(p) if p == self.name() => return Err(NodeError::SelfMessage),
            Destination::Direct(p) => vec![p.clone()],
        })
    }

    /// The user's message, checked and signed; with the caller's id if given.
    fn compose(
        &self,
        dest: Destination,
        text: String,
        id: Option<MessageId>,
    ) -> Result<ChatMessage, NodeError> {
        let mut msg = ChatMessage::new(self.inner.me.clone(), dest, text)?;
        if let Some(id) = id {
            msg.id = id;
            // Every receiver would refuse it (`future_message`); say so before it is stored here.
            msg.check_clock(crate::proto::now_ms())?;
        }
        self.inner.identity.sign_message(&mut msg);
        Ok(msg)
    }

    /// Commits the message with one outbox row per recipient, and shows it; returns, per recipient, where its
    /// outcome will be told (watched before the commit, so no outcome can come first).
    async fn commit_sent(
        &self,
        msg: &ChatMessage,
        recipients: &[PeerName],
    ) -> Result<Vec<(PeerName, oneshot::Receiver<Outcome>)>, NodeError> {
        let watches: Vec<_> = recipients
            .iter()
            .map(|r| (r.clone(), self.inner.outboxes.watch(r, msg.id)))
            .collect();
        // Counted before the commit: a running worker may settle the new rows before this task resumes.
        self.inner.outboxes.added(recipients.len());
        let new = match self
            .inner
            .store
            .save_sent_counted(msg.clone(), recipients.to_vec())
            .await
        {
            Ok((new, added)) => {
                // A recipient whose row for this id was waiting already got no second one.
                self.inner.outboxes.removed(recipients.len() - added);
                new
            }
            Err(e) => {
                self.inner.outboxes.removed(recipients.len());
                for r in recipients {
                    self.inner.outboxes.unwatch(r, msg.id);
                }
                return Err(e.into());
            }
        };
        for r in recipients {
            self.inner.outboxes.offer(r, msg);
        }
        tracing::debug!(peer = %self.name(), id = %msg.id, to = %msg.dest.label(), "message sent");
        if new {
            self.inner.events.publish(Event::Message {
                message: msg.clone(),
                own: true,
                state: match recipients.is_empty() {
                    true => receipts::DeliveryState::Delivered,
                    false => receipts::DeliveryState::Sending,
                },
            });
        }
        Ok(watches)
    }

    /// Wakes each recipient's worker and waits up to [`SEND_REPORT_WAIT`] to tell what became of the message.
    async fn report_on(
        &self,
        msg: &ChatMessage,
        watches: Vec<(PeerName, oneshot::Receiver<Outcome>)>,
    ) -> Result<SendReport, NodeError> {
        let mut report = SendReport {
            id: msg.id,
            ts: msg.ts,
            delivered: vec![],
            held: vec![],
            queued: vec![],
            failed: vec![],
        };
        let mut pending = Vec::new();
        for (r, rx) in watches {
            match self.kick(&r) {
                // Its worker is backing off: the message waits its turn.
                Some(why) => {
                    self.inner.outboxes.unwatch(&r, msg.id);
                    report.queued.push(FailedDelivery {
                        peer: r,
                        error: why,
                    });
                }
                None => pending.push((r, rx)),
            }
        }
        let outcomes =
            futures_util::future::join_all(pending.into_iter().map(|(r, rx)| async move {
                (r, tokio::time::timeout(SEND_REPORT_WAIT, rx).await)
            }))
            .await;
        for (peer, outcome) in outcomes {
            match outcome {
                Ok(Ok(Outcome::Delivered)) => report.delivered.push(peer),
                Ok(Ok(Outcome::Held)) => report.held.push(peer),
                Ok(Ok(Outcome::Queued(error))) => {
                    report.queued.push(FailedDelivery { peer, error })
                }
                Ok(Ok(Outcome::Refused { code, message })) => {
                    // A direct message its only recipient refused is an error for the sender, as it always was.
                    if matches!(msg.dest, Destination::Direct(_)) {
                        return Err(NodeError::Refused {
                            peer,
                            code,
                            message,
                        });
                    }
                    report.failed.push(FailedDelivery {
                        peer,
                        error: message,
                    })
                }
                Ok(Err(_)) | Err(_) => {
                    self.inner.outboxes.unwatch(&peer, msg.id);
                    report.queued.push(FailedDelivery {
                        peer,
                        error: "still trying".into(),
                    });
                }
            }
        }
        Ok(report)
    }

    /// Deregisters and stops: the peer leaves every list at once, open requests finish, tasks end.
    pub async fn shutdown(&self) {
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        self.inner.lease.leave().await;
        let bye = self.inner.tracker.unregister(&self.inner.me);
        if let Err(e) = tokio::time::timeout(Duration::from_secs(2), bye)
            .await
            .unwrap_or_else(|_| {
                Err(TrackerError::Unreachable(
                    self.inner.tracker.base().into(),
                    "timed out".into(),
                ))
            })
        {
            tracing::warn!(peer = %self.name(), "could not deregister: {e}");
        }
        self.inner.shutdown.cancel();
        if let Some(link) = &self.inner.link {
            link.close_and_wait().await;
        }
        let mut tasks: Vec<_> = lock(&self.inner.tasks).drain(..).collect();
        tasks.extend(self.inner.outboxes.tasks());
        for t in tasks {
            let _ = t.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(name: &str) -> ChannelName {
        ChannelName::new(name).unwrap()
    }

    #[test]
    fn given_a_join_under_way_then_its_channel_is_joined_but_not_settled_until_it_ends() {
        let joined = Joined::default();
        joined.insert(&ch("general"));
        {
            let _first = joined.joining(&ch("side"));
            joined.insert(&ch("side"));
            {
                // The same channel joined twice at once (a page and the CLI): settled only when both end.
                let _second = joined.joining(&ch("side"));
            }
            assert!(joined.contains(&ch("side")));
            assert_eq!(joined.list(), [ch("general"), ch("side")]);
            assert_eq!(joined.settled(), [ch("general")]);
        }
        assert_eq!(joined.settled(), [ch("general"), ch("side")]);
    }
}
