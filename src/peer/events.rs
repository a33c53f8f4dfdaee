//! The node's events hub: one bounded broadcast that the CLI and every open web page subscribe to, so both front
//! ends see the same messages in the same order.
//!
//! Every event gets a sequence number (per node start, increasing from 1) and is kept in a bounded replay ring, so
//! a web page whose stream dropped can reconnect with the last number it saw and get exactly what it missed: no
//! gap, no duplicate. Numbering, the ring and the broadcast are updated under one lock, which is what makes
//! "replay then follow" exact.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

use super::receipts::{DeliveryState, StateUpdate};
use crate::proto::{ChannelName, ChatMessage, PeerName, PeerStatus, Role};
use crate::sync::lock;

/// How many events a slow subscriber may fall behind before it misses some (it is told how many).
pub const EVENT_BACKLOG: usize = 1024;
/// How many recent events are kept for a reconnecting stream to catch up from.
pub const EVENT_REPLAY: usize = 1024;

/// Something a front end shows.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A message received, or sent by this node's user (`own`), with its state (`sending` for a message just sent
    /// to someone, `delivered` for one received).
    Message {
        message: ChatMessage,
        own: bool,
        state: DeliveryState,
    },
    /// Some of this user's messages changed state (left the outbox, held by the tracker, delivered, refused).
    States { updates: Vec<StateUpdate> },
    /// `peer`'s node says it now has `count` of this user's messages that the tracker had held for it (`last`:
    /// the text of the latest of them).
    Receipt {
        peer: PeerName,
        count: usize,
        last: String,
    },
    /// Messages that reached this node while its user was away (from the tracker's mailbox, by catch-up, or
    /// pushed while the node was starting), one event per conversation, in sender order (by id): the latest
    /// [`MISSED_SHOWN`](super::missed::MISSED_SHOWN) of `count` new ones. Front ends show them in place, under a
    /// marker; these messages get no `message` event of their own.
    Missed {
        /// `#channel` or `@peer`.
        with: String,
        /// How many new messages the conversation got this way (`messages` may hold fewer: the latest).
        count: usize,
        messages: Vec<ChatMessage>,
    },
    /// The user has seen a conversation (`#channel` or `@peer`): nothing in it is unread any more.
    Read { with: String },
    /// This node joined a channel.
    Joined { channel: ChannelName },
    /// This node left a channel.
    Left { channel: ChannelName },
    /// Something the user should know that is not a message (tracker lost, re-registered, ...).
    Notice { text: String },
    /// This user's own presence changed (online, away with a message, invisible).
    Status {
        status: PeerStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        away: Option<String>,
    },
    /// The session with `peer` now goes through the tracker's relay (`relayed`), or straight to it again.
    Path { peer: PeerName, relayed: bool },
    /// The members of a joined channel and whether each is online, sent whenever that changes. `change` is the
    /// same news as what changed since the channel's presence event before (a stream that asked for changes
    /// gets that instead, as `members_changed`: see `web::stream`); `None` for a channel's first list.
    Presence {
        channel: ChannelName,
        /// Shared with the lists before and after it where a member did not change, so the replay ring holds
        /// a pointer per member per event, not a copy (a 1,000-member channel: ~8 KB an event, not ~180 KB).
        members: Vec<Arc<Member>>,
        #[serde(skip)]
        change: Option<Arc<MembersChange>>,
    },
}

/// What changed in a channel's members since its presence event before: every member that is new or differs,
/// whole, and the names no longer listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MembersChange {
    pub members: Vec<Arc<Member>>,
    pub gone: Vec<PeerName>,
}

impl MembersChange {
    /// From one list to the next (both sorted by name, as [`Event::Presence`] lists are).
    pub fn between(before: &[Arc<Member>], after: &[Arc<Member>]) -> MembersChange {
        let old: std::collections::HashMap<&PeerName, &Arc<Member>> =
            before.iter().map(|m| (&m.name, m)).collect();
        let new: std::collections::HashSet<&PeerName> = after.iter().map(|m| &m.name).collect();
        MembersChange {
            members: after
                .iter()
                .filter(|m| old.get(&m.name) != Some(m))
                .cloned()
                .collect(),
            gone: before
                .iter()
                .filter(|m| !new.contains(&m.name))
                .map(|m| m.name.clone())
                .collect(),
        }
    }
}

/// A channel member as the page lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Member {
    pub name: PeerName,
    pub online: bool,
    /// `owner`, `member` or `visitor`, as the tracker last said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// `online`, `away` or `offline`.
    pub status: PeerStatus,
    /// The away message, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub away: Option<String>,
    /// The [fingerprint](crate::identity::PublicKey::fingerprint) of the key the tracker binds the name to, which
    /// the page shows on hover.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// An event with its place in the node's sequence.
#[derive(Debug, Clone)]
pub struct Stamped {
    pub seq: u64,
    pub event: Event,
}

/// Where a subscriber that asked to resume from a sequence number stands.
#[derive(Debug)]
pub struct Resumed {
    /// The number the subscriber continues after: the one it asked for, or the last one published if it asked
    /// for a number this node never gave out.
    pub after: u64,
    /// The events after `after`, oldest first (all of them, unless `gap`).
    pub missed: Vec<Arc<Stamped>>,
    /// True when some events the subscriber has not seen are no longer kept, or its number is from another start
    /// of the node: it must reload its state.
    pub gap: bool,
    /// Every event after `missed`.
    pub live: broadcast::Receiver<Arc<Stamped>>,
}

#[derive(Debug, Default)]
struct Ring {
    last_seq: u64,
    recent: VecDeque<Arc<Stamped>>,
}

/// The sending side of the hub.
#[derive(Debug, Clone)]
pub struct Events {
    tx: broadcast::Sender<Arc<Stamped>>,
    ring: Arc<Mutex<Ring>>,
    /// Random per start of the node: sequence numbers from another start mean nothing here.
    boot: u64,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(EVENT_BACKLOG).0,
            ring: Arc::default(),
            boot: rand::random(),
        }
    }
}

impl Events {
    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        lock(&self.ring)
    }

    /// Numbers the event, keeps it for replay and sends it to every subscriber; returns its number.
    pub fn publish(&self, event: Event) -> u64 {
        let mut ring = self.ring();
        ring.last_seq += 1;
        let stamped = Arc::new(Stamped {
            seq: ring.last_seq,
            event,
        });
        if ring.recent.len() == EVENT_REPLAY {
            ring.recent.pop_front();
        }
        ring.recent.push_back(stamped.clone());
        // No subscriber is fine: a node without a front end still receives and stores.
        let _ = self.tx.send(stamped);
        ring.last_seq
    }

    /// Identifies this start of the node (see [`Events::resume`]).
    pub fn boot(&self) -> u64 {
        self.boot
    }

    /// The number of the last event published (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.ring().last_seq
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Stamped>> {
        self.tx.subscribe()
    }

    /// Subscribes as of just after event `since`: what was missed since then, and the live stream from there on.
    pub fn resume(&self, since: u64) -> Resumed {
        let ring = self.ring();
        let live = self.tx.subscribe();
        if since > ring.last_seq {
            // A number this node never gave out: the subscriber saw an earlier start of the node.
            return Resumed {
                after: ring.last_seq,
                missed: vec![],
                gap: true,
                live,
            };
        }
        let oldest_kept = ring.recent.front().map_or(ring.last_seq + 1, |s| s.seq);
        Resumed {
            after: since,
            missed: ring
                .recent
                .iter()
                .filter(|s| s.seq > since)
                .cloned()
                .collect(),
            gap: since + 1 < oldest_kept,
            live,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(i: usize) -> Event {
        Event::Notice {
            text: i.to_string(),
        }
    }

    fn texts(v: &[Arc<Stamped>]) -> Vec<u64> {
        v.iter().map(|s| s.seq).collect()
    }

    fn member(name: &str, online: bool) -> Arc<Member> {
        Arc::new(Member {
            name: PeerName::new(name).unwrap(),
            online,
            role: None,
            status: if online {
                PeerStatus::Online
            } else {
                PeerStatus::Offline
            },
            away: None,
            fingerprint: None,
        })
    }

    #[test]
    fn a_change_names_the_new_and_changed_members_whole_and_the_gone_by_name() {
        let before = [
            member("alice", true),
            member("bob", true),
            member("carol", true),
        ];
        let after = [
            member("alice", true),
            member("bob", false),
            member("dave", true),
        ];
        let change = MembersChange::between(&before, &after);
        assert_eq!(change.members, [member("bob", false), member("dave", true)]);
        assert_eq!(change.gone, [PeerName::new("carol").unwrap()]);
        let same = MembersChange::between(&after, &after);
        assert!(same.members.is_empty() && same.gone.is_empty());
    }

    #[test]
    fn resuming_gives_exactly_the_events_after_the_number_then_the_live_ones() {
        let hub = Events::default();
        for i in 0..5 {
            hub.publish(notice(i));
        }
        let mut r = hub.resume(3);
        assert!(!r.gap);
        assert_eq!(texts(&r.missed), [4, 5]);
        assert_eq!(hub.publish(notice(5)), 6);
        assert_eq!(r.live.try_recv().unwrap().seq, 6);
        assert!(r.live.try_recv().is_err());
        let r = hub.resume(6);
        assert!(r.missed.is_empty() && !r.gap);
    }

    #[test]
    fn resuming_from_before_the_ring_or_from_another_start_is_a_gap() {
        let hub = Events::default();
        for i in 0..EVENT_REPLAY + 10 {
            hub.publish(notice(i));
        }
        let r = hub.resume(5);
        assert!(r.gap);
        assert_eq!(r.missed.len(), EVENT_REPLAY);
        assert_eq!(r.missed[0].seq, 11);
        // The oldest kept event follows on exactly: no gap.
        assert!(!hub.resume(10).gap);
        let r = hub.resume(1_000_000);
        assert!(r.gap && r.missed.is_empty());
        assert_eq!(r.after, (EVENT_REPLAY + 10) as u64);
        // From zero on a fresh node: everything, no gap.
        let fresh = Events::default();
        fresh.publish(notice(0));
        let r = fresh.resume(0);
        assert!(!r.gap);
        assert_eq!(texts(&r.missed), [1]);
    }
}
