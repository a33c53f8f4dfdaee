//! The tracker's side of sessions (docs/SESSIONS.md, sections 10 and 11): its HTTP API answered over QUIC, and
//! pushes of channel membership and presence to the peers that subscribe.
//!
//! - **Requests.** Run through the same axum router as the TCP server, with its limits and rate limiter, by
//!   [`RouterOverSession`] (src/http/over_session.rs, which the peer's `/p2p/*` routes use too); the key the
//!   dialler proved is in the request as a [`SessionKey`]. One code path: a bug fixed in a handler is fixed for
//!   both ways in.
//! - **Pushes.** A peer subscribes for its name (the name must be bound to the session's key). Whenever a change
//!   that can alter who is in a channel or how they are seen is saved ([`affects_presence`]), the [`Hub`]
//!   recomputes, for each subscriber, the `/get-list` answer of each channel it is in, as it may see it, and queues
//!   those that differ from the last one sent. A subscriber's queue holds at most one list per channel (a newer one
//!   replaces an unsent older one), so a slow peer costs the tracker one list per channel, never a backlog.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use futures_util::future::BoxFuture;
use tokio::sync::{Notify, mpsc};

use super::Shared;
use super::store::Change;
use crate::http::RouterOverSession;
use crate::http::rate_limit::RateLimiter;
use crate::identity::PublicKey;
use crate::link::{Caller, ErrorBody, Request, Response, Service};
use crate::proto::{ChannelName, ErrorCode, PeerInfo, PeerName, now_ms};

/// The key a request's session proved: one type for the tracker's and the peer's routes.
pub use crate::http::SessionKey;

/// Items a subscriber's stream holds ready to write; more wait in its per-channel queue (latest wins).
const PUSH_QUEUE: usize = 8;
/// After the hub recomputes, it waits this long before it looks again: a burst of changes (a peer rejoining ten
/// channels) is pushed as one list per channel.
const COALESCE: Duration = Duration::from_millis(20);
/// Requests answered over sessions, and their subscribers, as `/health` reports them.
#[derive(Debug, Default)]
pub struct SessionStats {
    pub requests: AtomicU64,
    pub subscribers: AtomicUsize,
    /// The UDP port and key the tracker listens with, once it does.
    pub listening: OnceLock<(u16, PublicKey)>,
}

/// Whether a saved change can alter what some `/get-list` answers.
pub(crate) fn affects_presence(c: &Change) -> bool {
    match c {
        Change::Registered { created, moved, .. } => *created || *moved,
        Change::Joined { .. }
        | Change::Left { .. }
        | Change::Unregistered { .. }
        | Change::Expired { .. }
        | Change::ModeSet { .. }
        | Change::Listed { .. }
        | Change::PresenceSet { .. }
        | Change::Forgotten { .. } => true,
        _ => false,
    }
}

/// One subscription: whose, what was last sent per channel (a hash), and what waits to be sent.
struct Subscriber {
    name: PeerName,
    state: Mutex<Queued>,
    wake: Notify,
}

#[derive(Default)]
struct Queued {
    sent: HashMap<ChannelName, u64>,
    pending: Vec<(ChannelName, Vec<u8>)>,
    closed: bool,
}

/// Every subscriber, and the signal that something changed.
#[derive(Default)]
pub struct Hub {
    subscribers: Mutex<HashMap<PeerName, Arc<Subscriber>>>,
    changed: Notify,
}

impl Hub {
    /// Something that may change presence was saved: recompute soon.
    pub(crate) fn poke(&self) {
        self.changed.notify_one();
    }

    /// Recomputes every subscriber's lists whenever poked, until `stop`.
    pub(crate) async fn run(
        shared: Arc<Shared>,
        stop: tokio_util::sync::CancellationToken,
        resync: Duration,
    ) {
        let mut tick = tokio::time::interval(resync);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shared.hub.changed.notified() => {}
                // Leases lapse by the clock before the sweep saves it: look now and then regardless.
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            Hub::recompute(&shared);
            tokio::select! {
                _ = tokio::time::sleep(COALESCE) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    fn recompute(shared: &Shared) {
        let subs: Vec<Arc<Subscriber>> = shared
            .hub
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let now = now_ms();
        // A channel's list is the same for every member who may see it: made once per recompute, not once per
        // subscriber (100 members subscribed to one channel made it 100 times, ~17 KB of JSON each).
        let mut made: std::collections::HashMap<ChannelName, Option<(Vec<u8>, u64)>> =
            std::collections::HashMap::new();
        for sub in subs {
            let lists: Vec<(ChannelName, Vec<u8>, u64)> = shared.read(|st| {
                st.registry
                    .channels_of(&sub.name)
                    .into_iter()
                    .filter(|ch| st.registry.may_see(ch, Some(&sub.name)))
                    .filter_map(|ch| {
                        let (json, hash) = made
                            .entry(ch.clone())
                            .or_insert_with(|| {
                                let peers = st
                                    .registry
                                    .members(&ch, Some(&sub.name), now)
                                    .map(|p| st.with_keys(p))
                                    .ok()?;
                                Some(members_push(&ch, peers))
                            })
                            .clone()?;
                        Some((ch, json, hash))
                    })
                    .collect()
            });
            Hub::queue(&sub, lists);
        }
    }

    /// Queues the lists that differ from what `sub` was last sent.
    fn queue(sub: &Subscriber, lists: Vec<(ChannelName, Vec<u8>, u64)>) {
        let mut q = sub.state.lock().unwrap_or_else(|p| p.into_inner());
        let current: std::collections::HashSet<&ChannelName> = lists.iter().map(|l| &l.0).collect();
        q.sent.retain(|ch, _| current.contains(ch));
        let mut any = false;
        for (ch, json, hash) in lists {
            if q.sent.get(&ch) == Some(&hash) {
                continue;
            }
            q.sent.insert(ch.clone(), hash);
            q.pending.retain(|(c, _)| *c != ch);
            q.pending.push((ch, json));
            any = true;
        }
        drop(q);
        if any {
            sub.wake.notify_one();
        }
    }
}

/// A channel's members as pushed, and a hash of what a subscriber sees in it (`last_seen_ms` left out: a
/// heartbeat changes it and nothing a user sees).
fn members_push(channel: &ChannelName, mut peers: Vec<PeerInfo>) -> (Vec<u8>, u64) {
    for p in &mut peers {
        p.last_seen_ms = 0;
    }
    let json = serde_json::to_vec(&serde_json::json!({
        "kind": "members",
        "channel": channel,
        "peers": peers,
    }))
    .expect("serializes");
    let mut h = std::collections::hash_map::DefaultHasher::new();
    json.hash(&mut h);
    (json, h.finish())
}

/// The tracker's [`Service`]: its router, its rate limiter, and the hub.
pub(crate) struct Sessions {
    router: RouterOverSession,
    shared: Arc<Shared>,
}

impl Sessions {
    /// `app` must already carry the server's limits ([`crate::http::with_limits`]).
    pub(crate) fn new(
        app: Router,
        limiter: Arc<RateLimiter>,
        per_second: u32,
        shared: Arc<Shared>,
    ) -> Sessions {
        Sessions {
            router: RouterOverSession::new(app, limiter, per_second),
            shared,
        }
    }

    async fn answer(&self, caller: Caller, req: Request) -> Response {
        self.shared
            .sessions
            .requests
            .fetch_add(1, Ordering::Relaxed);
        self.router.answer(caller, req).await
    }

    fn start_subscription(
        &self,
        caller: Caller,
        payload: Vec<u8>,
    ) -> Result<mpsc::Receiver<Vec<u8>>, ErrorBody> {
        #[derive(serde::Deserialize)]
        struct Subscribe {
            name: PeerName,
        }
        let Subscribe { name } = serde_json::from_slice(&payload).map_err(|e| {
            ErrorBody::new(
                ErrorCode::BadFrame,
                format!("a SUBSCRIBE payload must be {{\"name\":\"…\"}}: {e}"),
            )
        })?;
        match self.shared.read(|st| st.identities.key_of(&name)) {
            None => {
                return Err(ErrorBody::new(
                    ErrorCode::UnknownIdentity,
                    format!("no key is bound to {name}; register first"),
                ));
            }
            Some(k) if k != caller.key => {
                return Err(ErrorBody::new(
                    ErrorCode::ForgedSender,
                    format!("this session is authenticated as another key than {name}'s"),
                ));
            }
            Some(_) => {}
        }
        let sub = Arc::new(Subscriber {
            name: name.clone(),
            state: Mutex::default(),
            wake: Notify::new(),
        });
        // One subscription per name: a new one (a reconnect) replaces the old, whose stream then ends.
        let old = self
            .shared
            .hub
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, sub.clone());
        if let Some(old) = old {
            old.state.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
            old.wake.notify_one();
        } else {
            self.shared
                .sessions
                .subscribers
                .fetch_add(1, Ordering::Relaxed);
        }
        let (tx, rx) = mpsc::channel(PUSH_QUEUE);
        tokio::spawn(feed(self.shared.clone(), sub, tx));
        self.shared.hub.poke();
        Ok(rx)
    }
}

/// Moves a subscriber's queued lists into its stream, as fast as the stream takes them.
async fn feed(shared: Arc<Shared>, sub: Arc<Subscriber>, tx: mpsc::Sender<Vec<u8>>) {
    // The first lists (everything, as the subscription begins) come from the poke in `start_subscription`.
    loop {
        let batch = {
            let mut q = sub.state.lock().unwrap_or_else(|p| p.into_inner());
            if q.closed {
                break;
            }
            std::mem::take(&mut q.pending)
        };
        if batch.is_empty() {
            tokio::select! {
                _ = sub.wake.notified() => continue,
                _ = tx.closed() => break,
            }
        }
        for (_, json) in batch {
            if tx.send(json).await.is_err() {
                break;
            }
        }
        if tx.is_closed() {
            break;
        }
    }
    let mut subs = shared
        .hub
        .subscribers
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if subs.get(&sub.name).is_some_and(|s| Arc::ptr_eq(s, &sub)) {
        subs.remove(&sub.name);
        shared.sessions.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Service for Sessions {
    fn request(&self, caller: Caller, req: Request) -> BoxFuture<'_, Response> {
        Box::pin(self.answer(caller, req))
    }

    fn subscribe(
        &self,
        caller: Caller,
        payload: Vec<u8>,
    ) -> BoxFuture<'_, Result<mpsc::Receiver<Vec<u8>>, ErrorBody>> {
        Box::pin(async move { self.start_subscription(caller, payload) })
    }
}
