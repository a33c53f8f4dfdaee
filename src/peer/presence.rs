//! Who is online in the channels this node has joined, learnt from the tracker and pushed to the web pages as
//! [`Event::Presence`] only when it changes, so a page never polls.
//!
//! The tracker lists a channel's *live* members only. A member that drops out of that list is looked up once: if
//! the tracker still knows the peer, it left the channel and is removed; if not, its lease lapsed (it quit or
//! died) and it stays listed as offline until it comes back or this node leaves the channel. While at least one
//! page watches the event stream, the node subscribes to the tracker's pushes over its session (each push is a
//! channel's live members) and refreshes everything only every [`PRESENCE_RESYNC`]; a tracker without sessions is
//! asked every [`PRESENCE_EVERY`] instead. A CLI-only node asks nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::events::{Event, Member, MembersChange, Resumed};
use super::tracker_client::TrackerError;
use super::{Node, NodeError};
use crate::proto::{ChannelName, ErrorCode, PeerInfo, PeerName, PeerStatus, Role};
use crate::sync::lock;

/// How often the members of joined channels are refreshed while a page watches, when the tracker pushes nothing
/// (a tracker without sessions); with pushes, how long the node waits before subscribing again after the push
/// stream ended.
pub(crate) const PRESENCE_EVERY: Duration = Duration::from_secs(1);
/// With pushes: a full refresh this often all the same (a safety net; pushes carry every change).
pub(crate) const PRESENCE_RESYNC: Duration = Duration::from_secs(30);
/// Offline members remembered per channel; the oldest-named beyond it are forgotten.
pub(crate) const OFFLINE_MEMBERS_KEPT: usize = 1000;

/// The presence state of one node.
#[derive(Debug, Default)]
pub(super) struct Presence {
    /// Per joined channel: member → how it was last seen.
    channels: std::sync::Mutex<HashMap<ChannelName, BTreeMap<PeerName, Seen>>>,
    /// Per joined channel: the list last published, whose unchanged entries the next list shares.
    shown: std::sync::Mutex<HashMap<ChannelName, Vec<Arc<Member>>>>,
    /// One refresh at a time, so two cannot publish changes out of order.
    refreshing: tokio::sync::Mutex<()>,
    watchers: AtomicUsize,
    watched: Notify,
}

/// Held by each open event stream; while any exists, the node keeps presence fresh.
pub struct PresenceWatch {
    presence: Arc<Presence>,
}

impl Drop for PresenceWatch {
    fn drop(&mut self) {
        self.presence.watchers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A channel's members as of event number `seq`: a later presence event for the channel supersedes it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MemberList {
    pub channel: ChannelName,
    pub seq: u64,
    pub members: Vec<Arc<Member>>,
}

/// How a member was last seen: online or not, its role, its away status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    online: bool,
    role: Option<Role>,
    status: PeerStatus,
    away: Option<String>,
    key: Option<crate::identity::PublicKey>,
}

impl Seen {
    fn live(p: &PeerInfo) -> Seen {
        Seen {
            online: true,
            role: p.role,
            status: p.status,
            away: p.away.clone(),
            key: p.public_key,
        }
    }
    fn offline(&self) -> Seen {
        Seen {
            online: false,
            role: self.role,
            status: PeerStatus::Offline,
            away: None,
            key: self.key,
        }
    }
}

fn as_members(state: &BTreeMap<PeerName, Seen>) -> Vec<Member> {
    state
        .iter()
        .map(|(name, seen)| Member {
            name: name.clone(),
            online: seen.online,
            role: seen.role,
            status: seen.status,
            away: seen.away.clone(),
            fingerprint: seen.key.map(|k| k.fingerprint()),
        })
        .collect()
}

/// `fresh` (sorted by name) with each entry that equals one of `shown` (sorted by name too) taken from there.
fn shared(shown: &[Arc<Member>], fresh: Vec<Member>) -> Vec<Arc<Member>> {
    let mut old = shown.iter().peekable();
    fresh
        .into_iter()
        .map(|m| {
            while old.next_if(|o| o.name < m.name).is_some() {}
            match old.next_if(|o| o.name == m.name) {
                Some(o) if **o == m => o.clone(),
                _ => Arc::new(m),
            }
        })
        .collect()
}

/// A channel's live members by name, as the tracker lists them.
type Live = BTreeMap<PeerName, Seen>;

fn live_of(peers: &[PeerInfo]) -> Live {
    peers
        .iter()
        .map(|p| (p.name.clone(), Seen::live(p)))
        .collect()
}

/// The members that were online and are no longer in the tracker's live list: each has either left the channel
/// or gone offline, which only a look-up can tell.
fn vanished(before: &BTreeMap<PeerName, Seen>, live: &Live) -> Vec<PeerName> {
    before
        .iter()
        .filter(|(name, seen)| seen.online && !live.contains_key(*name))
        .map(|(name, _)| name.clone())
        .collect()
}

/// A channel's members after a refresh: the live ones online; the ones `gone` from the tracker, and the ones
/// already offline, offline (at most [`OFFLINE_MEMBERS_KEPT`]); any other member that vanished left the channel.
fn next_members(
    before: &BTreeMap<PeerName, Seen>,
    live: &Live,
    gone: &BTreeSet<PeerName>,
) -> BTreeMap<PeerName, Seen> {
    let mut after = live.clone();
    let offline: Vec<(&PeerName, &Seen)> = before
        .iter()
        .filter(|(name, seen)| !after.contains_key(*name) && (!seen.online || gone.contains(*name)))
        .take(OFFLINE_MEMBERS_KEPT)
        .collect();
    for (name, seen) in offline {
        after.insert(name.clone(), seen.offline());
    }
    after
}

/// The live members after a pushed change (docs/SESSIONS.md, 11): the ones online `before`, less the `gone`,
/// with each of `changed` as it is now (a change names every member whose entry differs, whole).
fn live_after_change(
    before: &BTreeMap<PeerName, Seen>,
    changed: &[PeerInfo],
    gone: &[PeerName],
) -> Live {
    let mut live: Live = before
        .iter()
        .filter(|(name, seen)| seen.online && !gone.contains(name))
        .map(|(name, seen)| (name.clone(), seen.clone()))
        .collect();
    live.extend(live_of(changed));
    live
}

impl Node {
    /// Subscribes as of just after event `since` (see [`Events::resume`](super::events::Events::resume)).
    pub fn resume_events(&self, since: u64) -> Resumed {
        self.inner.events.resume(since)
    }

    /// The number of the last event published.
    pub fn last_event_seq(&self) -> u64 {
        self.inner.events.last_seq()
    }

    /// Keeps presence fresh until the returned guard is dropped.
    pub fn watch_presence(&self) -> PresenceWatch {
        let presence = self.inner.presence.clone();
        presence.watchers.fetch_add(1, Ordering::SeqCst);
        presence.watched.notify_one();
        PresenceWatch { presence }
    }

    /// Asks the tracker who is in `channel` now, publishes a presence event if that changed, and answers the list.
    pub async fn channel_members(&self, channel: &ChannelName) -> Result<MemberList, NodeError> {
        if !self.is_joined(channel) {
            return Err(NodeError::NotJoined(channel.clone()));
        }
        let _one_at_a_time = self.inner.presence.refreshing.lock().await;
        let live = match self.inner.tracker.members(channel).await {
            // The page shows the key pinned for a name, the one to compare out of band.
            Ok(peers) => peers
                .into_iter()
                .map(|p| PeerInfo {
                    public_key: self.shown_key(&p.name, p.public_key),
                    ..p
                })
                .collect(),
            Err(TrackerError::Refused {
                code: ErrorCode::UnknownChannel,
                ..
            }) => vec![],
            Err(e) => return Err(e.into()),
        };
        self.apply_members(channel, live_of(&live)).await
    }

    /// Takes `live` as the channel's live members (from an answer or a push), looks up the ones that vanished,
    /// and publishes a presence event if anything changed. The caller holds `refreshing`.
    async fn apply_members(
        &self,
        channel: &ChannelName,
        live: Live,
    ) -> Result<MemberList, NodeError> {
        let presence = &self.inner.presence;
        let before = lock(&presence.channels)
            .get(channel)
            .cloned()
            .unwrap_or_default();
        let mut gone = BTreeSet::new();
        for name in vanished(&before, &live) {
            match self.inner.tracker.lookup(&name).await {
                // Online but no longer a member: it left the channel.
                Ok(_) => {}
                Err(TrackerError::Refused {
                    code: ErrorCode::UnknownPeer,
                    ..
                }) => {
                    gone.insert(name);
                }
                Err(e) => return Err(e.into()),
            }
        }
        let after = next_members(&before, &live, &gone);
        if !self.is_joined(channel) {
            // Left while the tracker was being asked.
            return Err(NodeError::NotJoined(channel.clone()));
        }
        let shown = lock(&presence.shown).get(channel).cloned();
        let members = shared(shown.as_deref().unwrap_or_default(), as_members(&after));
        let known = lock(&presence.channels).contains_key(channel);
        let seq = if after != before || !known {
            lock(&presence.channels).insert(channel.clone(), after);
            lock(&presence.shown).insert(channel.clone(), members.clone());
            // Pages that asked for changes get only what changed (O(changes), not O(members), per event).
            let change = known.then(|| {
                let before = shown.unwrap_or_default();
                Arc::new(MembersChange::between(&before, &members))
            });
            self.inner.events.publish(Event::Presence {
                channel: channel.clone(),
                members: members.clone(),
                change,
            })
        } else {
            self.inner.events.last_seq()
        };
        Ok(MemberList {
            channel: channel.clone(),
            seq,
            members,
        })
    }

    /// A push from the tracker (docs/SESSIONS.md, 11): a channel's live members, as `/get-list` would answer
    /// (`members`), or what changed in them since the push before (`members_changed`).
    async fn apply_push(&self, item: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Push {
            kind: String,
            channel: Option<ChannelName>,
            #[serde(default)]
            peers: Vec<PeerInfo>,
            #[serde(default)]
            gone: Vec<PeerName>,
        }
        let push: Push = match serde_json::from_slice(item) {
            Ok(p) => p,
            Err(e) => return tracing::debug!("a push that does not parse, ignored: {e}"),
        };
        let change = match push.kind.as_str() {
            "members" => false,
            "members_changed" => true,
            _ => {
                return tracing::debug!(kind = %push.kind, "a push of a kind not known here, ignored");
            }
        };
        let Some(channel) = push.channel else {
            return tracing::debug!("a members push without a channel, ignored");
        };
        if !self.is_joined(&channel) {
            return;
        }
        // The page shows the key pinned for a name, the one to compare out of band (as an answer's list does).
        let peers: Vec<PeerInfo> = push
            .peers
            .into_iter()
            .map(|p| PeerInfo {
                public_key: self.shown_key(&p.name, p.public_key),
                ..p
            })
            .collect();
        let _one_at_a_time = self.inner.presence.refreshing.lock().await;
        let live = match change {
            false => Some(live_of(&peers)),
            true => lock(&self.inner.presence.channels)
                .get(&channel)
                .map(|before| live_after_change(before, &peers, &push.gone)),
        };
        let Some(live) = live else {
            // Nothing to apply the change to (the channel was left and joined again meanwhile): ask for the list.
            drop(_one_at_a_time);
            if let Err(e) = self.channel_members(&channel).await {
                tracing::debug!(peer = %self.name(), %channel, "presence not refreshed: {e}");
            }
            return;
        };
        if let Err(e) = self.apply_members(&channel, live).await {
            tracing::debug!(peer = %self.name(), %channel, "pushed presence not applied: {e}");
        }
    }

    /// Forgets a channel's members (on leave).
    pub(super) fn forget_members(&self, channel: &ChannelName) {
        lock(&self.inner.presence.channels).remove(channel);
        lock(&self.inner.presence.shown).remove(channel);
    }

    /// Keeps presence fresh while a page watches: from the tracker's pushes over the session, with a full
    /// refresh every [`PRESENCE_RESYNC`]; from a refresh every [`PRESENCE_EVERY`] if the tracker pushes nothing
    /// (it offers no session).
    pub(super) async fn keep_presence(self) {
        let presence = self.inner.presence.clone();
        let stop = self.inner.shutdown.clone();
        loop {
            while presence.watchers.load(Ordering::SeqCst) == 0 {
                tokio::select! {
                    _ = presence.watched.notified() => {}
                    _ = stop.cancelled() => return,
                }
            }
            match self.inner.tracker.subscribe().await {
                Ok(Some(mut pushes)) => {
                    let mut resync = tokio::time::interval_at(
                        tokio::time::Instant::now() + PRESENCE_RESYNC,
                        PRESENCE_RESYNC,
                    );
                    loop {
                        tokio::select! {
                            item = pushes.next() => match item {
                                Ok(Some(item)) => self.apply_push(&item).await,
                                Ok(None) => break,
                                Err(e) => {
                                    tracing::debug!(peer = %self.name(), "push stream: {e}");
                                    break;
                                }
                            },
                            _ = resync.tick() => {
                                if presence.watchers.load(Ordering::SeqCst) == 0 {
                                    break;
                                }
                                self.refresh_all_members().await;
                            }
                            _ = stop.cancelled() => return,
                        }
                    }
                    // The session ended (tracker restarted, or idle): subscribe again, after a breath.
                }
                Ok(None) => self.refresh_all_members().await,
                Err(e) => tracing::debug!(peer = %self.name(), "no push stream: {e}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(PRESENCE_EVERY) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    async fn refresh_all_members(&self) {
        for channel in self.joined() {
            if let Err(e) = self.channel_members(&channel).await {
                tracing::debug!(peer = %self.name(), %channel, "presence not refreshed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<PeerName> {
        list.iter().map(|n| PeerName::new(*n).unwrap()).collect()
    }

    fn seen(on: bool) -> Seen {
        Seen {
            online: on,
            role: None,
            status: if on {
                PeerStatus::Online
            } else {
                PeerStatus::Offline
            },
            away: None,
            key: None,
        }
    }

    fn state(list: &[(&str, bool)]) -> BTreeMap<PeerName, Seen> {
        list.iter()
            .map(|(n, on)| (PeerName::new(*n).unwrap(), seen(*on)))
            .collect()
    }

    #[test]
    fn a_new_list_shares_the_entries_that_did_not_change_with_the_list_before() {
        let before = shared(
            &[],
            as_members(&state(&[("alice", true), ("bob", true), ("dave", true)])),
        );
        let after = shared(
            &before,
            as_members(&state(&[
                ("alice", true),
                ("bob", false),
                ("carol", true),
                ("dave", true),
            ])),
        );
        assert_eq!(
            after,
            shared(
                &[],
                as_members(&state(&[
                    ("alice", true),
                    ("bob", false),
                    ("carol", true),
                    ("dave", true)
                ]))
            )
        );
        let same: Vec<bool> = ["alice", "bob", "carol", "dave"]
            .iter()
            .map(|n| {
                let a = after.iter().find(|m| m.name.as_str() == *n).unwrap();
                before.iter().any(|b| Arc::ptr_eq(a, b))
            })
            .collect();
        assert_eq!(same, [true, false, false, true]);
    }

    fn info(name: &str) -> PeerInfo {
        PeerInfo {
            name: PeerName::new(name).unwrap(),
            ip: [127, 0, 0, 1].into(),
            port: 1,
            last_seen_ms: 0,
            status: PeerStatus::Online,
            away: None,
            role: None,
            public_key: None,
            quic_port: None,
        }
    }

    fn infos(list: &[&str]) -> Vec<PeerInfo> {
        list.iter().map(|n| info(n)).collect()
    }

    #[test]
    fn given_members_when_one_dies_and_one_leaves_then_the_dead_one_is_offline_and_the_other_gone()
    {
        let before = state(&[("alice", true), ("bob", true), ("carol", true)]);
        let live = live_of(&[info("alice")]);
        assert_eq!(vanished(&before, &live), names(&["bob", "carol"]));
        // The tracker no longer knows bob (lease lapsed); carol is still online elsewhere.
        let gone: BTreeSet<_> = names(&["bob"]).into_iter().collect();
        let after = next_members(&before, &live, &gone);
        assert_eq!(after, state(&[("alice", true), ("bob", false)]));
    }

    #[test]
    fn given_an_offline_member_then_it_stays_listed_until_it_comes_back_online() {
        let before = state(&[("alice", true), ("bob", false)]);
        assert!(
            vanished(&before, &live_of(&[info("alice")])).is_empty(),
            "no look-up for bob again"
        );
        let none = BTreeSet::new();
        let alice = live_of(&infos(&["alice"]));
        assert_eq!(next_members(&before, &alice, &none), before);
        let back = next_members(&before, &live_of(&infos(&["alice", "bob", "dave"])), &none);
        assert_eq!(
            back,
            state(&[("alice", true), ("bob", true), ("dave", true)])
        );
    }

    #[test]
    fn a_pushed_change_updates_the_members_it_names_and_keeps_the_others() {
        let before = state(&[("alice", true), ("bob", true), ("carol", false)]);
        let mut away = info("bob");
        away.status = PeerStatus::Away;
        let live = live_after_change(&before, &[away, info("dave")], &names(&["alice"]));
        let expected: Vec<(PeerName, PeerStatus)> = vec![
            (PeerName::new("bob").unwrap(), PeerStatus::Away),
            (PeerName::new("dave").unwrap(), PeerStatus::Online),
        ];
        let got: Vec<(PeerName, PeerStatus)> =
            live.iter().map(|(n, s)| (n.clone(), s.status)).collect();
        assert_eq!(
            got, expected,
            "alice gone, carol was not live, bob changed, dave new"
        );
        // Alice vanished from the live list: looked up once, like a member missing from a whole list.
        assert_eq!(vanished(&before, &live), names(&["alice"]));
    }

    #[test]
    fn offline_members_are_bounded() {
        let many: Vec<(String, bool)> = (0..OFFLINE_MEMBERS_KEPT + 5)
            .map(|i| (format!("p{i:05}"), false))
            .collect();
        let before: BTreeMap<PeerName, Seen> = many
            .iter()
            .map(|(n, on)| (PeerName::new(n).unwrap(), seen(*on)))
            .collect();
        let after = next_members(&before, &live_of(&infos(&["alice"])), &BTreeSet::new());
        assert_eq!(after.len(), OFFLINE_MEMBERS_KEPT + 1);
    }
}
