//! A peer node: one user's end of the chat. It registers with the tracker and keeps its lease alive, receives
//! messages from other peers at `POST /p2p/receive`, carries its user's messages straight to the recipients, and
//! serves the local API that its front ends (CLI, web page) act through.
//!
//! [`Node`] is a cheap handle (an `Arc`); every front end holds one and calls the same methods, so the CLI and
//! the page cannot drift apart.

pub mod delivery;
pub mod events;
pub mod history;
mod inbox;
pub mod presence;
pub mod routes;
pub mod tracker_client;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::http::{ServerLimits, bind_with_fallback, serve};
use crate::proto::*;
use delivery::{Courier, DeliveryError};
use events::{Event, Events, Stamped};
use history::History;
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
}

/// Why a node operation failed; each says what the user can do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeError {
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, String),
    #[error(
        "{0} binds every interface; say with --advertise-ip which address other peers should use"
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
}

/// A positive answer about a peer is trusted this long before the tracker is asked again.
const KNOWN_PEER_FRESH: Duration = Duration::from_secs(10);

/// What became of a sent message.
#[derive(Debug, Clone, Serialize)]
pub struct SendReport {
    pub id: MessageId,
    pub ts: u64,
    pub delivered: Vec<PeerName>,
    pub failed: Vec<FailedDelivery>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailedDelivery {
    pub peer: PeerName,
    pub error: String,
}

struct Inner {
    me: PeerName,
    advertised: SocketAddr,
    local_addr: SocketAddr,
    token: String,
    tracker: TrackerClient,
    courier: Courier,
    events: Events,
    presence: Arc<presence::Presence>,
    history: Mutex<History>,
    joined: Mutex<BTreeSet<ChannelName>>,
    /// Peers the tracker vouched for recently, and the last fan-out list of each channel: what lets chat go on for
    /// a while when the tracker is down.
    known: Mutex<HashMap<PeerName, (PeerInfo, Instant)>>,
    last_fan_out: Mutex<HashMap<ChannelName, Vec<PeerInfo>>>,
    lease_ttl: Mutex<Duration>,
    shutdown: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A running peer node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Node {
    /// Binds, registers with the tracker and starts serving. Fails if the tracker cannot be reached or refuses the
    /// name, so a user learns at once.
    pub async fn start(config: PeerConfig) -> Result<Node, NodeError> {
        let advertised_ip = config.advertise_ip.unwrap_or(config.ip);
        if advertised_ip.is_unspecified() {
            return Err(NodeError::NoAdvertiseAddress(advertised_ip));
        }
        let asked = SocketAddr::new(config.ip, config.port);
        let bound = bind_with_fallback(config.ip, config.port)
            .await
            .map_err(|e| NodeError::Bind(asked, e.to_string()))?;
        let shutdown = CancellationToken::new();
        let token = config
            .token
            .clone()
            .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()));
        let inner = Arc::new(Inner {
            me: config.name.clone(),
            advertised: SocketAddr::new(advertised_ip, bound.local_addr.port()),
            local_addr: bound.local_addr,
            token,
            tracker: TrackerClient::new(config.tracker),
            courier: Courier::new(shutdown.child_token()),
            events: Events::default(),
            presence: Arc::default(),
            history: Mutex::new(History::new(config.name.clone())),
            joined: Mutex::default(),
            known: Mutex::default(),
            last_fan_out: Mutex::default(),
            lease_ttl: Mutex::new(Duration::from_secs(30)),
            shutdown: shutdown.clone(),
            tasks: Mutex::default(),
        });
        let node = Node { inner };
        let server = tokio::spawn(serve(
            bound.listener,
            routes::app(node.clone()),
            shutdown.clone(),
            config.limits,
        ));
        lock(&node.inner.tasks).push(server);
        if let Err(e) = node.renew().await {
            shutdown.cancel();
            return Err(e.into());
        }
        let heartbeat = tokio::spawn(node.clone().keep_lease());
        lock(&node.inner.tasks).push(heartbeat);
        let presence = tokio::spawn(node.clone().keep_presence());
        lock(&node.inner.tasks).push(presence);
        tracing::info!(peer = %node.name(), addr = %node.local_addr(), "peer started");
        Ok(node)
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
        self.inner.advertised
    }

    /// The token that lets a non-loopback caller act as this user.
    pub fn token(&self) -> &str {
        &self.inner.token
    }

    /// The web chat's address, with the token, as printed at start-up.
    pub fn chat_url(&self) -> String {
        let host = if self.inner.local_addr.ip().is_unspecified() {
            self.inner.advertised
        } else {
            self.inner.local_addr
        };
        format!("http://{host}/chat?token={}", self.inner.token)
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
        lock(&self.inner.joined).iter().cloned().collect()
    }

    pub fn is_joined(&self, channel: &ChannelName) -> bool {
        lock(&self.inner.joined).contains(channel)
    }

    fn register_request(&self) -> RegisterRequest {
        RegisterRequest {
            name: self.inner.me.clone(),
            ip: self.inner.advertised.ip(),
            port: self.inner.advertised.port(),
        }
    }

    /// Registers (or renews), and joins again any channel the tracker has forgotten.
    async fn renew(&self) -> Result<(), TrackerError> {
        let answer = self
            .inner
            .tracker
            .register(&self.register_request())
            .await?;
        *lock(&self.inner.lease_ttl) = Duration::from_secs(answer.ttl_secs.max(1));
        let known: BTreeSet<ChannelName> = answer.channels.into_iter().collect();
        let missing: Vec<ChannelName> = self
            .joined()
            .into_iter()
            .filter(|c| !known.contains(c))
            .collect();
        if answer.created && !missing.is_empty() {
            tracing::info!(peer = %self.name(), "the tracker had forgotten this peer; registered and re-joining {} channel(s)", missing.len());
        }
        for channel in missing {
            self.inner.tracker.join(&self.inner.me, &channel).await?;
        }
        Ok(())
    }

    /// Renews the lease a few times per TTL. While the tracker is unreachable it tries every second, so chat
    /// resumes soon after a tracker restart.
    async fn keep_lease(self) {
        let mut tracker_lost = false;
        loop {
            let every = if tracker_lost {
                Duration::from_secs(1)
            } else {
                (*lock(&self.inner.lease_ttl) / 3).max(Duration::from_millis(200))
            };
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = self.inner.shutdown.cancelled() => return,
            }
            match self.renew().await {
                Ok(()) if tracker_lost => {
                    tracker_lost = false;
                    self.notice("the tracker is back; registered again".into());
                }
                Ok(()) => {}
                Err(e) => {
                    if !tracker_lost {
                        tracing::warn!(peer = %self.name(), "lease renewal failed: {e}");
                        self.notice(format!("lost the tracker ({e}); retrying every second"));
                    }
                    tracker_lost = true;
                }
            }
        }
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

    /// Joins a channel (created if new); returns its live member count.
    pub async fn join(&self, channel: &ChannelName) -> Result<usize, NodeError> {
        let t = &self.inner.tracker;
        let me = &self.inner.me;
        let answer = self.tracked(|| t.join(me, channel)).await?;
        let new = lock(&self.inner.joined).insert(channel.clone());
        if new {
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
            Err(TrackerError::Refused { code, .. }) if code == "not_member" => {}
            Err(e) => return Err(e.into()),
        }
        lock(&self.inner.joined).remove(channel);
        lock(&self.inner.last_fan_out).remove(channel);
        self.forget_members(channel);
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
        lock(&self.inner.history).recent(conversation, n)
    }

    /// The peers this node has a direct conversation with (messages in its history), by name.
    pub fn direct_conversations(&self) -> Vec<PeerName> {
        let mut peers: Vec<PeerName> = lock(&self.inner.history)
            .conversations()
            .into_iter()
            .filter_map(|c| match c {
                Destination::Direct(p) => Some(p),
                Destination::Channel(_) => None,
            })
            .collect();
        peers.sort();
        peers
    }

    fn remember(&self, peers: &[PeerInfo]) {
        let now = Instant::now();
        let mut known = lock(&self.inner.known);
        for p in peers {
            known.insert(p.name.clone(), (p.clone(), now));
        }
    }

    /// Where a peer is: from the recent cache, else from the tracker.
    async fn locate(&self, peer: &PeerName) -> Result<PeerInfo, NodeError> {
        if let Some((info, at)) = lock(&self.inner.known).get(peer)
            && at.elapsed() < KNOWN_PEER_FRESH
        {
            return Ok(info.clone());
        }
        let t = &self.inner.tracker;
        match self.tracked(|| t.lookup(peer)).await {
            Ok(info) => {
                self.remember(std::slice::from_ref(&info));
                Ok(info)
            }
            Err(e)
                if e.forgot_us()
                    || matches!(&e, TrackerError::Refused { code, .. } if code == "unknown_peer") =>
            {
                lock(&self.inner.known).remove(peer);
                Err(NodeError::PeerOffline { peer: peer.clone() })
            }
            Err(e @ TrackerError::Unreachable(..)) => {
                // The tracker is down: the last address we had is the best guess, however old.
                lock(&self.inner.known)
                    .get(peer)
                    .map(|(i, _)| i.clone())
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
        match self.tracked(|| t.fan_out(me, channel)).await {
            Ok(peers) => {
                self.remember(&peers);
                lock(&self.inner.last_fan_out).insert(channel.clone(), peers.clone());
                Ok(peers)
            }
            Err(e @ TrackerError::Unreachable(..)) => lock(&self.inner.last_fan_out)
                .get(channel)
                .cloned()
                .ok_or(NodeError::Tracker(e)),
            Err(e) => Err(e.into()),
        }
    }

    /// Sends the user's `text` to a channel or a peer, straight to the recipients, and reports who got it.
    pub async fn send(&self, dest: Destination, text: String) -> Result<SendReport, NodeError> {
        self.send_with_id(dest, text, None).await
    }

    /// [`Node::send`] with the message id chosen by the caller: sending again with the same id (a retry) is
    /// stored and shown once, by this node and by every recipient.
    pub async fn send_with_id(
        &self,
        dest: Destination,
        text: String,
        id: Option<MessageId>,
    ) -> Result<SendReport, NodeError> {
        let recipients = match &dest {
            Destination::Channel(c) if !self.is_joined(c) => {
                return Err(NodeError::NotJoined(c.clone()));
            }
            Destination::Channel(c) => self.recipients(c).await?,
            Destination::Direct(p) if p == self.name() => return Err(NodeError::SelfMessage),
            Destination::Direct(p) => vec![self.locate(p).await?],
        };
        let mut msg = ChatMessage::new(self.inner.me.clone(), dest.clone(), text)?;
        if let Some(id) = id {
            msg.id = id;
        }
        let msg = Arc::new(msg);
        if lock(&self.inner.history).append(&msg) {
            self.inner.events.publish(Event::Message {
                message: (*msg).clone(),
                own: true,
            });
        }

        let deliveries = recipients.iter().map(|p| {
            let msg = msg.clone();
            async move { (p, self.inner.courier.deliver(&p.name, p.addr(), msg).await) }
        });
        let mut report = SendReport {
            id: msg.id,
            ts: msg.ts,
            delivered: vec![],
            failed: vec![],
        };
        for (peer, result) in futures_util::future::join_all(deliveries).await {
            match result {
                Ok(()) => report.delivered.push(peer.name.clone()),
                Err(e) => {
                    if matches!(e, DeliveryError::Unreachable(_)) {
                        lock(&self.inner.known).remove(&peer.name);
                    }
                    report.failed.push(FailedDelivery {
                        peer: peer.name.clone(),
                        error: e.to_string(),
                    });
                }
            }
        }
        if let (Destination::Direct(peer), Some(failed)) = (&dest, report.failed.pop()) {
            // The cached address may be stale: ask the tracker again. A peer that restarted elsewhere gets the
            // message there; one that is gone is reported as offline rather than as a network error.
            let fresh = self.locate(peer).await?;
            if fresh.addr() == recipients[0].addr() {
                return Err(NodeError::NotDelivered {
                    peer: peer.clone(),
                    error: failed.error,
                });
            }
            self.inner
                .courier
                .deliver(peer, fresh.addr(), msg)
                .await
                .map_err(|e| {
                    lock(&self.inner.known).remove(peer);
                    NodeError::NotDelivered {
                        peer: peer.clone(),
                        error: e.to_string(),
                    }
                })?;
            report.delivered.push(peer.clone());
        }
        Ok(report)
    }

    /// Deregisters and stops: the peer leaves every list at once, open requests finish, tasks end.
    pub async fn shutdown(&self) {
        if self.inner.shutdown.is_cancelled() {
            return;
        }
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
        let tasks: Vec<_> = lock(&self.inner.tasks).drain(..).collect();
        for t in tasks {
            let _ = t.await;
        }
    }
}
