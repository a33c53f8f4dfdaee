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
    /// Bytes of push payloads written to subscribers' streams, ever.
    pub pushed_bytes: AtomicU64,
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

/// One subscription: whose, whether it takes changes (else every push is a whole list), what was last sent per
/// channel (a version), and what waits to be sent.
struct Subscriber {
    name: PeerName,
    changes: bool,
    state: Mutex<Queued>,
    wake: Notify,
}

#[derive(Default)]
struct Queued {
    sent: HashMap<ChannelName, u64>,
    pending: Vec<(ChannelName, Arc<Vec<u8>>)>,
    closed: bool,
}

/// A channel's live members as the hub last made them: each member's pushed entry, the whole list, and what
/// changed since the version before (`None` for the first).
struct Snapshot {
    version: u64,
    entries: HashMap<PeerName, Vec<u8>>,
    full: Arc<Vec<u8>>,
    change: Option<(u64, Arc<Vec<u8>>)>,
}

/// Every subscriber, each channel's last snapshot, and the signal that something changed.
#[derive(Default)]
pub struct Hub {
    subscribers: Mutex<HashMap<PeerName, Arc<Subscriber>>>,
    snapshots: Mutex<HashMap<ChannelName, Snapshot>>,
    /// Versions are drawn from one counter: a channel made again after it was forgotten never reuses one.
    versions: AtomicU64,
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
        let mut snapshots = shared
            .hub
            .snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // A channel's list is the same for every member who may see it: made once per recompute, not once per
        // subscriber (100 members subscribed to one channel made it 100 times, ~17 KB of JSON each).
        let mut made: HashMap<ChannelName, Option<View>> = HashMap::new();
        for sub in subs {
            let lists: Vec<(ChannelName, View)> = shared.read(|st| {
                st.registry
                    .channels_of(&sub.name)
                    .into_iter()
                    .filter(|ch| st.registry.may_see(ch, Some(&sub.name)))
                    .filter_map(|ch| {
                        let view = made
                            .entry(ch.clone())
                            .or_insert_with(|| {
                                let peers = st
                                    .registry
                                    .members(&ch, Some(&sub.name), now)
                                    .map(|p| st.with_keys(p))
                                    .ok()?;
                                Some(shared.hub.update(&mut snapshots, &ch, peers))
                            })
                            .clone()?;
                        Some((ch, view))
                    })
                    .collect()
            });
            Hub::queue(&sub, lists);
        }
        // A channel no subscriber sees now is forgotten: whoever sees it again gets its whole list first.
        snapshots.retain(|ch, _| made.contains_key(ch));
    }

    /// Takes `peers` as `channel`'s live members now: a new version if anything a subscriber sees differs.
    fn update(
        &self,
        snapshots: &mut HashMap<ChannelName, Snapshot>,
        channel: &ChannelName,
        peers: Vec<PeerInfo>,
    ) -> View {
        let entries: Vec<(PeerName, Vec<u8>)> = peers
            .into_iter()
            .map(|mut p| {
                // A heartbeat moves it and nothing a user sees.
                p.last_seen_ms = 0;
                let json = serde_json::to_vec(&p).expect("serializes");
                (p.name, json)
            })
            .collect();
        let old = snapshots.get(channel);
        let same = old.is_some_and(|o| {
            o.entries.len() == entries.len()
                && entries.iter().all(|(n, j)| o.entries.get(n) == Some(j))
        });
        if !same {
            let version = self.versions.fetch_add(1, Ordering::Relaxed) + 1;
            let change = old.map(|o| {
                let changed: Vec<&[u8]> = entries
                    .iter()
                    .filter(|(n, j)| o.entries.get(n) != Some(j))
                    .map(|(_, j)| j.as_slice())
                    .collect();
                let kept: std::collections::HashSet<&PeerName> =
                    entries.iter().map(|(n, _)| n).collect();
                let gone: Vec<&PeerName> = o.entries.keys().filter(|n| !kept.contains(n)).collect();
                (
                    o.version,
                    Arc::new(push_json("members_changed", channel, &changed, Some(&gone))),
                )
            });
            let all: Vec<&[u8]> = entries.iter().map(|(_, j)| j.as_slice()).collect();
            let full = Arc::new(push_json("members", channel, &all, None));
            snapshots.insert(
                channel.clone(),
                Snapshot {
                    version,
                    entries: entries.into_iter().collect(),
                    full,
                    change,
                },
            );
        }
        let s = &snapshots[channel];
        View {
            version: s.version,
            full: s.full.clone(),
            change: s.change.clone(),
        }
    }

    /// Queues, for each of `sub`'s channels whose version it was not sent, the change since the version it was sent
    /// if it takes changes and has nothing unsent for that channel; else the whole list (replacing an unsent one).
    fn queue(sub: &Subscriber, lists: Vec<(ChannelName, View)>) {
        let mut q = sub.state.lock().unwrap_or_else(|p| p.into_inner());
        let current: std::collections::HashSet<&ChannelName> = lists.iter().map(|l| &l.0).collect();
        q.sent.retain(|ch, _| current.contains(ch));
        let mut any = false;
        for (ch, view) in lists {
            let sent = q.sent.get(&ch).copied();
            if sent == Some(view.version) {
                continue;
            }
            let unsent = q.pending.iter().any(|(c, _)| *c == ch);
            let item = match (&view.change, sent) {
                (Some((from, change)), Some(s)) if sub.changes && !unsent && *from == s => {
                    change.clone()
                }
                _ => {
                    q.pending.retain(|(c, _)| *c != ch);
                    view.full.clone()
                }
            };
            q.sent.insert(ch.clone(), view.version);
            q.pending.push((ch, item));
            any = true;
        }
        drop(q);
        if any {
            sub.wake.notify_one();
        }
    }
}

/// One channel's version as a subscriber may be sent it: whole, or as the change from the version before.
#[derive(Clone)]
struct View {
    version: u64,
    full: Arc<Vec<u8>>,
    change: Option<(u64, Arc<Vec<u8>>)>,
}

/// A push's JSON: `{"kind":…,"channel":…,"peers":[…]}` from entries already serialized, with `"gone":[…]` for a
/// change.
fn push_json(
    kind: &str,
    channel: &ChannelName,
    peers: &[&[u8]],
    gone: Option<&[&PeerName]>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + peers.iter().map(|p| p.len() + 1).sum::<usize>());
    out.extend_from_slice(b"{\"kind\":");
    serde_json::to_writer(&mut out, kind).expect("serializes");
    out.extend_from_slice(b",\"channel\":");
    serde_json::to_writer(&mut out, channel).expect("serializes");
    out.extend_from_slice(b",\"peers\":[");
    for (i, p) in peers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(p);
    }
    out.push(b']');
    if let Some(gone) = gone {
        out.extend_from_slice(b",\"gone\":");
        serde_json::to_writer(&mut out, gone).expect("serializes");
    }
    out.push(b'}');
    out
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
            /// The subscriber applies `members_changed` pushes (else it is sent whole lists only).
            #[serde(default)]
            changes: bool,
        }
        let Subscribe { name, changes } = serde_json::from_slice(&payload).map_err(|e| {
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
            changes,
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
            let len = json.len() as u64;
            if tx.send(Arc::unwrap_or_clone(json)).await.is_err() {
                break;
            }
            shared
                .sessions
                .pushed_bytes
                .fetch_add(len, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::PeerStatus;

    fn peer(name: &str, status: PeerStatus) -> PeerInfo {
        PeerInfo {
            name: PeerName::new(name).unwrap(),
            ip: [127, 0, 0, 1].into(),
            port: 1,
            last_seen_ms: now_ms(),
            status,
            away: None,
            role: None,
            public_key: None,
            quic_port: None,
        }
    }

    fn online(names: &[&str]) -> Vec<PeerInfo> {
        names.iter().map(|n| peer(n, PeerStatus::Online)).collect()
    }

    fn subscriber(changes: bool) -> Subscriber {
        Subscriber {
            name: PeerName::new("alice").unwrap(),
            changes,
            state: Mutex::default(),
            wake: Notify::new(),
        }
    }

    /// The pushes waiting for `sub`, parsed, and taken (as its feed would).
    fn take(sub: &Subscriber) -> Vec<serde_json::Value> {
        std::mem::take(&mut sub.state.lock().unwrap().pending)
            .into_iter()
            .map(|(_, json)| serde_json::from_slice(&json).unwrap())
            .collect()
    }

    fn names(v: &serde_json::Value, field: &str) -> Vec<String> {
        v[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.get("name").unwrap_or(p).as_str().unwrap().to_string())
            .collect()
    }

    /// `peers` as #general's live members now, offered to `sub` (as a recompute does).
    fn offer(
        hub: &Hub,
        snaps: &mut HashMap<ChannelName, Snapshot>,
        sub: &Subscriber,
        peers: Vec<PeerInfo>,
    ) {
        let ch = ChannelName::new("general").unwrap();
        let view = hub.update(snaps, &ch, peers);
        Hub::queue(sub, vec![(ch, view)]);
    }

    #[test]
    fn a_subscriber_gets_the_whole_list_first_then_only_what_changed_and_nothing_for_a_heartbeat() {
        let hub = Hub::default();
        let mut snaps = HashMap::new();
        let sub = subscriber(true);
        let step = |snaps: &mut HashMap<_, _>, peers| {
            offer(&hub, snaps, &sub, peers);
            take(&sub)
        };
        let first = step(&mut snaps, online(&["alice", "bob", "carol"]));
        assert_eq!(first.len(), 1);
        assert_eq!(first[0]["kind"], "members");
        assert_eq!(names(&first[0], "peers"), ["alice", "bob", "carol"]);

        // Dave joins, carol goes away: the change names those two, whole, and nobody else.
        let mut now = online(&["alice", "bob", "dave"]);
        now.push(peer("carol", PeerStatus::Away));
        let second = step(&mut snaps, now.clone());
        assert_eq!(second.len(), 1, "{second:?}");
        assert_eq!(second[0]["kind"], "members_changed");
        assert_eq!(names(&second[0], "peers"), ["dave", "carol"]);
        assert_eq!(second[0]["peers"][1]["status"], "away");
        assert_eq!(names(&second[0], "gone"), Vec::<String>::new());

        // Only heartbeats (last_seen_ms moves): nothing is pushed.
        for p in &mut now {
            p.last_seen_ms += 5_000;
        }
        assert!(step(&mut snaps, now).is_empty());

        // Bob leaves: a change with only `gone`.
        let mut now = online(&["alice", "dave"]);
        now.push(peer("carol", PeerStatus::Away));
        let third = step(&mut snaps, now);
        assert_eq!(third[0]["kind"], "members_changed");
        assert!(names(&third[0], "peers").is_empty());
        assert_eq!(names(&third[0], "gone"), ["bob"]);
    }

    #[test]
    fn a_change_goes_only_on_top_of_what_was_sent_else_the_whole_list_replaces_anything_unsent() {
        let hub = Hub::default();
        let mut snaps = HashMap::new();
        let sub = subscriber(true);
        let queue = |snaps: &mut HashMap<_, _>, peers| offer(&hub, snaps, &sub, peers);
        queue(&mut snaps, online(&["alice"]));
        take(&sub);
        // Two changes before the subscriber's stream takes anything: one whole list, the latest.
        queue(&mut snaps, online(&["alice", "bob"]));
        queue(&mut snaps, online(&["alice", "bob", "carol"]));
        let waiting = take(&sub);
        assert_eq!(waiting.len(), 1, "{waiting:?}");
        assert_eq!(waiting[0]["kind"], "members");
        assert_eq!(names(&waiting[0], "peers"), ["alice", "bob", "carol"]);

        // A subscriber that no longer sees the channel forgets what it was sent: seen again, it gets it whole.
        Hub::queue(&sub, vec![]);
        queue(&mut snaps, online(&["alice", "bob", "carol", "dave"]));
        let back = take(&sub);
        assert_eq!(back[0]["kind"], "members");

        // A subscriber that did not ask for changes gets whole lists only.
        let old = subscriber(false);
        offer(&hub, &mut snaps, &old, online(&["alice"]));
        take(&old);
        offer(&hub, &mut snaps, &old, online(&["alice", "erin"]));
        let pushed = take(&old);
        assert_eq!(pushed[0]["kind"], "members");
        assert_eq!(names(&pushed[0], "peers"), ["alice", "erin"]);
    }

    #[test]
    fn a_push_is_the_json_a_reader_parses() {
        let ch = ChannelName::new("general").unwrap();
        let bob = PeerName::new("bob").unwrap();
        let json = push_json("members_changed", &ch, &[br#"{"name":"x"}"#], Some(&[&bob]));
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"kind":"members_changed","channel":"general","peers":[{"name":"x"}],"gone":["bob"]})
        );
    }
}
