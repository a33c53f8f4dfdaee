//! [`TrackerState`]: the registry, the mailboxes and the identities, and the verbs that touch more than one of them
//! (a registration binds the name, renews the lease and opens the mailbox; the sweep expires across all three).
//! Like its parts, every verb is pure (time is given) and returns its answer with what it changed ([`Change`]s, in
//! order), which the caller queues for the store before it answers.

use std::net::IpAddr;

use bytes::Bytes;

use super::TrackerConfig;
use super::identities::{BindError, Identities};
use super::lists::ListCache;
use super::mailbox::{MailEntry, MailboxError, Mailboxes};
use super::quota::Origin;
use super::registry::{Registered, Registry, RegistryError};
use super::store::{Change, Store, StoreError};
use crate::identity::PublicKey;
use crate::proto::{ChannelName, ChannelPeers, MailKey, MessageId, PeerInfo, PeerName};

/// Never-used names unbound per sweep: each one is looked for on every channel's lists, so a few at a time.
const NAMES_EXPIRED_PER_SWEEP: usize = 100;

/// The tracker's state: who is online and where, channels, mailboxes, and which key each name belongs to.
pub struct TrackerState {
    pub registry: Registry,
    pub mailboxes: Mailboxes,
    pub identities: Identities,
    /// Each channel's `/get-list` answer as last sent, while it holds ([`TrackerState::members_json`]).
    lists: ListCache,
}

/// Why a verb that touches more than one part of the state refused: that part's own error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Identity(#[from] BindError),
    #[error(transparent)]
    Mailbox(#[from] MailboxError),
}

/// What a registration answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub registered: Registered,
    /// How long the lease lasts unless renewed, in whole seconds (at least 1).
    pub ttl_secs: u64,
    /// Messages held for the peer.
    pub mailbox: usize,
}

impl TrackerState {
    /// The state `store` saved (empty on first start), held to `config`'s limits and quotas.
    pub(super) fn load(
        store: &mut dyn Store,
        config: &TrackerConfig,
    ) -> Result<TrackerState, StoreError> {
        let (mut registry, mut mailboxes) = store.load(config.peer_ttl, config.mailbox_limit)?;
        let mut identities = store.load_identities()?;
        registry.set_quotas(config.quotas.clone());
        mailboxes.set_quotas(config.quotas.clone());
        identities.set_quotas(config.quotas.clone());
        Ok(TrackerState {
            registry,
            mailboxes,
            identities,
            lists: ListCache::default(),
        })
    }

    /// `key` (proven by the request) registers `name` at `ip:port` from `origin`: the name must be free or the
    /// key's; a free name is bound to it once the lease is granted, and the peer's mailbox is opened.
    pub fn register(
        &mut self,
        name: &PeerName,
        (ip, port): (IpAddr, u16),
        key: PublicKey,
        origin: Origin,
        now: u64,
    ) -> Result<(Registration, Vec<Change>), Refused> {
        self.register_with_quic(name, (ip, port), None, key, origin, now)
    }

    /// [`TrackerState::register`] with the session port the peer advertised (`None`: none).
    pub fn register_with_quic(
        &mut self,
        name: &PeerName,
        (ip, port): (IpAddr, u16),
        quic_port: Option<u16>,
        key: PublicKey,
        origin: Origin,
        now: u64,
    ) -> Result<(Registration, Vec<Change>), Refused> {
        let free = self.identities.check(name, key, origin, now)?;
        let before = self.registry.live_endpoint(name, now);
        // The key's holder whose host changed address: its lease follows it (issue 14).
        if self.registry.follow_move(name, (ip, port), origin, now) {
            tracing::info!(peer = %name, %ip, port, "a live peer moved to a new address");
        }
        let ttl_secs = self.registry.ttl().as_secs().max(1);
        let (registered, lease) = self.registry.register(name, ip, port, now)?;
        self.registry.set_quic_port(name, quic_port);
        let moved = before.is_some_and(|b| b != (ip, port, quic_port));
        let mut lease = lease;
        for c in &mut lease {
            if let Change::Registered {
                quic_port: q,
                moved: m,
                ..
            } = c
            {
                *q = quic_port;
                *m = moved;
            }
        }
        self.mailboxes.open(name);
        let mut changes: Vec<Change> = self
            .identities
            .registered(name, key, origin, now, free)
            .into_iter()
            .collect();
        if free {
            // The name has a key now: the lists it is in show it.
            self.registry.touch_peer(name);
        }
        changes.extend(lease);
        let answer = Registration {
            registered,
            ttl_secs,
            mailbox: self.mailboxes.pending(name),
        };
        Ok((answer, changes))
    }

    /// Only a live peer acts on a mailbox (the signature has already shown it is that peer).
    pub fn check_live(&self, name: &PeerName, now: u64) -> Result<(), RegistryError> {
        match self.registry.live_addr(name, now) {
            None => Err(RegistryError::UnknownPeer(name.clone())),
            Some(_) => Ok(()),
        }
    }

    /// The live peer `from` leaves `entries` for `to`. Answers how many were new and how many `to` now has held.
    pub fn deposit(
        &mut self,
        from: &PeerName,
        to: &PeerName,
        entries: Vec<MailEntry>,
        now: u64,
    ) -> Result<((usize, usize), Vec<Change>), Refused> {
        self.check_live(from, now)?;
        let (stored, changes) = self.mailboxes.deposit(to, entries)?;
        Ok(((stored, self.mailboxes.pending(to)), changes))
    }

    /// The live peer `name` acknowledges held mail ([`Mailboxes::ack`]). Answers how many entries were deleted and
    /// how many are still held.
    pub fn ack(
        &mut self,
        name: &PeerName,
        keys: &[MailKey],
        ids: &[MessageId],
        now: u64,
    ) -> Result<((usize, usize), Vec<Change>), RegistryError> {
        self.check_live(name, now)?;
        let (deleted, changes) = self.mailboxes.ack(name, keys, ids);
        Ok(((deleted.len(), self.mailboxes.pending(name)), changes))
    }

    /// `GET /get-list`'s answer, as JSON: `channel`'s live members with their keys, as `caller` may see the channel
    /// (checked every time). It is the answer kept from an earlier request while nothing it was made from has
    /// changed (see `lists.rs`), else it is made, and kept.
    pub fn members_json(
        &mut self,
        channel: &ChannelName,
        caller: Option<&PeerName>,
        now: u64,
    ) -> Result<Bytes, RegistryError> {
        let version = self.registry.members_version(channel, caller)?;
        if let Some(body) = self.lists.get(channel, version, now) {
            return Ok(body);
        }
        let (peers, until) = self.registry.members_until(channel, caller, now)?;
        let answer = ChannelPeers {
            channel: channel.clone(),
            peers: self.with_keys(peers),
        };
        let body = Bytes::from(serde_json::to_vec(&answer).expect("a member list serializes"));
        self.lists.put(channel, version, now, until, body.clone());
        Ok(body)
    }

    /// Adds to each peer the key its name is bound to, so receivers can check its messages without asking again.
    pub fn with_keys(&self, mut peers: Vec<PeerInfo>) -> Vec<PeerInfo> {
        for p in &mut peers {
            p.public_key = self.identities.key_of(&p.name);
        }
        peers
    }

    /// Drops held mail past its time, unbinds names never used past theirs, and forgets channels empty past theirs
    /// (at most `max` channels a turn). Returns what to record.
    pub fn expire_unused(&mut self, now: u64, max: usize) -> Vec<Change> {
        let mut changes = Vec::new();
        let cutoff = self.mailboxes.hold_cutoff(now);
        let dropped = self.mailboxes.expire(cutoff);
        if dropped > 0 {
            tracing::info!(count = dropped, "held mail expired unfetched");
            changes.push(Change::MailExpired { cutoff_ms: cutoff });
        }
        let registry = &self.registry;
        let names = self
            .identities
            .expire_unused(now, NAMES_EXPIRED_PER_SWEEP, |n| {
                registry.live_addr(n, now).is_some()
            });
        if !names.is_empty() {
            tracing::info!(count = names.len(), "names never used were unbound");
            for n in &names {
                self.registry.forget_name(n);
                self.mailboxes.close(n);
            }
            changes.push(Change::NamesExpired { names });
        }
        let (emptied, gone) = self.registry.forget_empty_channels(now, max);
        if !emptied.is_empty() {
            changes.push(Change::Emptied {
                channels: emptied,
                at_ms: now,
            });
        }
        if !gone.is_empty() {
            tracing::info!(count = gone.len(), "empty channels forgotten");
            for c in &gone {
                self.lists.forget(c);
            }
            changes.push(Change::Forgotten { channels: gone });
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    //! The kept `/get-list` answers (`lists.rs`) against the registry: after every kind of change, the answer sent is
    //! byte for byte the one made afresh, and a change elsewhere keeps the same bytes.

    use std::time::Duration;

    use super::*;
    use crate::identity::Identity;
    use crate::proto::{ChannelMode, GivenRole, PeerStatus};
    use crate::tracker::acl::AclError;
    use crate::tracker::store::MemoryStore;

    const TTL: u64 = 30_000;
    const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn n(s: &str) -> PeerName {
        PeerName::new(s).unwrap()
    }
    fn c(s: &str) -> ChannelName {
        ChannelName::new(s).unwrap()
    }
    fn key(name: &str) -> PublicKey {
        let mut seed = [7u8; 32];
        seed[..name.len()].copy_from_slice(name.as_bytes());
        Identity::from_seed(seed).public_key()
    }

    fn state() -> TrackerState {
        let config = TrackerConfig {
            peer_ttl: Duration::from_millis(TTL),
            ..TrackerConfig::default()
        };
        TrackerState::load(&mut MemoryStore, &config).unwrap()
    }

    /// `name` registers (or renews) at 127.0.0.1:`port` with its own key.
    fn register(st: &mut TrackerState, name: &str, port: u16, now: u64) {
        st.register(&n(name), (LO, port), key(name), None, now)
            .unwrap();
    }

    /// Registers each of `names` and puts it in `channel`, the first one creating (and owning) it.
    fn channel_of(st: &mut TrackerState, channel: &str, names: &[&str], now: u64) {
        for (i, name) in names.iter().enumerate() {
            register(st, name, 8000 + i as u16, now);
            st.registry.join(&n(name), &c(channel), None, now).unwrap();
        }
    }

    /// The answer made afresh from the registry, as the handler made it before answers were kept.
    fn fresh(
        st: &TrackerState,
        channel: &str,
        caller: Option<&str>,
        now: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let caller = caller.map(n);
        let peers = st.registry.members(&c(channel), caller.as_ref(), now)?;
        let answer = ChannelPeers {
            channel: c(channel),
            peers: st.with_keys(peers),
        };
        Ok(serde_json::to_vec(&answer).unwrap())
    }

    /// Asks for the list as `caller`: the answer must be the fresh one. Returns it.
    fn ask(st: &mut TrackerState, channel: &str, caller: Option<&str>, now: u64) -> Bytes {
        let sent = st
            .members_json(&c(channel), caller.map(n).as_ref(), now)
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&sent),
            String::from_utf8_lossy(&fresh(st, channel, caller, now).unwrap()),
            "the answer sent is the one made afresh"
        );
        sent
    }

    /// Whether two answers are the same kept bytes (not merely equal ones).
    fn same_bytes(a: &Bytes, b: &Bytes) -> bool {
        a.as_ptr() == b.as_ptr() && a.len() == b.len()
    }

    /// Asks before and after `change` (at `now`): the answer must be the fresh one both times, and a new one.
    fn changes_answer(st: &mut TrackerState, now: u64, change: impl FnOnce(&mut TrackerState)) {
        let before = ask(st, "x", Some("alice"), now);
        assert!(
            same_bytes(&before, &ask(st, "x", Some("alice"), now)),
            "kept while nothing changes"
        );
        change(st);
        let after = ask(st, "x", Some("alice"), now);
        assert!(!same_bytes(&before, &after), "made again after the change");
        assert_ne!(before, after, "the change shows in the answer");
    }

    #[test]
    fn given_nothing_changed_then_the_kept_bytes_are_sent_again_to_everyone_who_may_see_them() {
        let mut st = state();
        channel_of(&mut st, "x", &["alice", "bob"], 0);
        let first = ask(&mut st, "x", None, 10);
        assert!(same_bytes(&first, &ask(&mut st, "x", Some("bob"), 20)));
        assert!(same_bytes(&first, &ask(&mut st, "x", None, TTL - 1)));
    }

    #[test]
    fn given_a_kept_list_when_a_peer_joins_leaves_is_removed_or_banned_then_the_answer_follows() {
        let mut st = state();
        channel_of(&mut st, "x", &["alice", "bob"], 0);
        register(&mut st, "carol", 9000, 0);
        changes_answer(&mut st, 1, |st| {
            st.registry.join(&n("carol"), &c("x"), None, 1).unwrap();
        });
        changes_answer(&mut st, 1, |st| {
            st.registry.leave(&n("carol"), &c("x"), 1).unwrap();
        });
        changes_answer(&mut st, 1, |st| {
            st.registry
                .remove_member(&n("alice"), &c("x"), &n("bob"), 1)
                .unwrap();
        });
        st.registry.join(&n("carol"), &c("x"), None, 1).unwrap();
        changes_answer(&mut st, 1, |st| {
            st.registry
                .ban(&n("alice"), &c("x"), &n("carol"), 1)
                .unwrap();
        });
        register(&mut st, "dave", 9001, 1);
        st.registry.join(&n("dave"), &c("x"), None, 1).unwrap();
        changes_answer(&mut st, 1, |st| {
            st.registry.unregister(&n("dave"), 1).unwrap();
        });
    }

    #[test]
    fn given_a_kept_list_when_a_members_lease_lapses_then_it_is_left_out_at_once_without_any_change()
     {
        let mut st = state();
        channel_of(&mut st, "x", &["alice", "bob"], 0);
        register(&mut st, "alice", 8000, 10);
        let both = ask(&mut st, "x", None, TTL - 1);
        assert!(same_bytes(&both, &ask(&mut st, "x", None, TTL - 1)));
        let one = ask(&mut st, "x", None, TTL);
        assert!(
            !one.windows(3).any(|w| w == b"bob"),
            "bob's lease lapsed at TTL"
        );
        assert!(same_bytes(&one, &ask(&mut st, "x", None, TTL + 9)));
        let none = ask(&mut st, "x", None, TTL + 10);
        assert_eq!(none, fresh(&st, "x", None, TTL + 10).unwrap());
        assert_eq!(&none[..], br#"{"channel":"x","peers":[]}"#);
    }

    #[test]
    fn given_a_kept_list_when_a_member_renews_then_its_last_seen_changes_and_a_renewal_elsewhere_keeps_it()
     {
        let mut st = state();
        channel_of(&mut st, "x", &["alice", "bob"], 0);
        channel_of(&mut st, "y", &["carol"], 0);
        let kept = ask(&mut st, "x", None, 5);
        register(&mut st, "carol", 8000, 5);
        register(&mut st, "bob", 8001, 0);
        assert!(
            same_bytes(&kept, &ask(&mut st, "x", None, 5)),
            "a renewal in another channel, or one that changes nothing (the same millisecond), keeps the answer"
        );
        changes_answer(&mut st, 6, |st| register(st, "bob", 8001, 6));
    }

    /// Whether any of a registration's changes has the presence hub push the lists at once.
    fn pushes(changes: &[Change]) -> bool {
        changes.iter().any(super::super::sessions::affects_presence)
    }

    #[test]
    fn a_renewal_that_moves_or_changes_the_session_port_is_pushed_at_once_and_a_plain_one_is_not() {
        let mut st = state();
        let (_, first) = st
            .register_with_quic(&n("bob"), (LO, 8001), Some(8001), key("bob"), None, 0)
            .unwrap();
        assert!(pushes(&first), "a new lease: {first:?}");
        let (_, plain) = st
            .register_with_quic(&n("bob"), (LO, 8001), Some(8001), key("bob"), None, 1)
            .unwrap();
        assert!(!pushes(&plain), "the same address and port: {plain:?}");
        let (_, port) = st
            .register_with_quic(&n("bob"), (LO, 8001), Some(9001), key("bob"), None, 2)
            .unwrap();
        assert!(pushes(&port), "another session port: {port:?}");
        assert!(
            port.iter().any(|c| matches!(
                c,
                Change::Registered {
                    quic_port: Some(9001),
                    ..
                }
            )),
            "the port is recorded: {port:?}"
        );
        let (_, off) = st
            .register_with_quic(&n("bob"), (LO, 8001), None, key("bob"), None, 3)
            .unwrap();
        assert!(pushes(&off), "sessions turned off: {off:?}");
        let new_ip: IpAddr = [10, 0, 0, 7].into();
        let (_, moved) = st
            .register_with_quic(&n("bob"), (new_ip, 8001), None, key("bob"), Some(new_ip), 4)
            .unwrap();
        assert!(pushes(&moved), "a new address: {moved:?}");
    }

    #[test]
    fn given_a_kept_list_when_a_member_moves_or_changes_its_session_port_then_the_answer_follows() {
        let mut st = state();
        channel_of(&mut st, "x", &["alice", "bob"], 0);
        let new_ip: IpAddr = [10, 0, 0, 7].into();
        changes_answer(&mut st, 0, |st| {
            st.register(&n("bob"), (new_ip, 8001), key("bob"), Some(new_ip), 0)
                .unwrap();
        });
        changes_answer(&mut st, 0, |st| {
            st.register_with_quic(&n("bob"), (new_ip, 8001), Some(8001), key("bob"), None, 0)
                .unwrap();
        });
        let kept = ask(&mut st, "x", None, 0);
        st.register_with_quic(&n("bob"), (new_ip, 8001), Some(8001), key("bob"), None, 0)
            .unwrap();
        assert!(
            same_bytes(&kept, &ask(&mut st, "x", None, 0)),
            "the same port again"
        );
        changes_answer(&mut st, 0, |st| {
            st.register_with_quic(&n("bob"), (new_ip, 8001), None, key("bob"), None, 0)
                .unwrap();
        });
    }

    #[test]
    fn given_a_kept_list_when_a_listed_members_name_is_bound_to_a_key_then_the_answer_carries_it() {
        // A listed member's key cannot change while it is listed (the first key wins, and a name is unbound only
        // when it is not live); it can appear: a lease and membership restored from a store, with no binding,
        // bound by the peer's next registration.
        let mut st = state();
        channel_of(&mut st, "x", &["alice"], 0);
        st.registry.restore_lease(n("bob"), (LO, 8001, None), 0);
        st.registry.restore_channel(c("x"), Some(n("bob")));
        let unbound = ask(&mut st, "x", None, 1);
        assert!(
            st.with_keys(st.registry.members(&c("x"), None, 1).unwrap())[1]
                .public_key
                .is_none()
        );
        register(&mut st, "bob", 8001, 1);
        let bound = ask(&mut st, "x", None, 1);
        assert!(!same_bytes(&unbound, &bound));
        assert!(
            String::from_utf8_lossy(&bound).contains(&key("bob").to_string()),
            "bob's key is in the answer"
        );
    }

    #[test]
    fn given_a_kept_list_when_presence_or_a_role_changes_then_the_answer_follows() {
        let mut st = state();
        channel_of(&mut st, "x", &["alice", "bob", "carol"], 0);
        changes_answer(&mut st, 1, |st| {
            st.registry
                .set_presence(&n("bob"), PeerStatus::Away, Some("lunch".into()), 1)
                .unwrap();
        });
        changes_answer(&mut st, 1, |st| {
            st.registry
                .set_presence(&n("bob"), PeerStatus::Invisible, None, 1)
                .unwrap();
        });
        changes_answer(&mut st, 1, |st| {
            st.registry
                .set_role(&n("alice"), &c("x"), &n("carol"), GivenRole::Visitor, 1)
                .unwrap();
        });
        let kept = ask(&mut st, "x", None, 1);
        st.registry
            .set_presence(&n("bob"), PeerStatus::Invisible, None, 1)
            .unwrap();
        assert!(
            same_bytes(&kept, &ask(&mut st, "x", None, 1)),
            "the same presence again"
        );
    }

    #[test]
    fn given_a_kept_list_of_an_open_channel_when_it_is_closed_then_only_members_get_it() {
        let mut st = state();
        channel_of(&mut st, "x", &["alice", "bob"], 0);
        register(&mut st, "mallory", 9000, 0);
        ask(&mut st, "x", Some("mallory"), 1);
        changes_answer(&mut st, 1, |st| {
            st.registry
                .set_mode(&n("alice"), &c("x"), ChannelMode::Invite, None, 1)
                .unwrap();
            // The mode alone is not in the answer: a role is, so that the bytes differ.
            st.registry
                .set_role(&n("alice"), &c("x"), &n("bob"), GivenRole::Visitor, 1)
                .unwrap();
        });
        for caller in [Some(n("mallory")), None] {
            assert!(matches!(
                st.members_json(&c("x"), caller.as_ref(), 1),
                Err(RegistryError::Acl(AclError::MembersOnly(_)))
            ));
        }
        ask(&mut st, "x", Some("bob"), 1);
    }

    #[test]
    fn given_a_kept_list_of_a_private_or_key_channel_then_a_non_member_is_still_refused() {
        for (mode, key) in [(ChannelMode::Invite, None), (ChannelMode::Key, Some("pw"))] {
            let mut st = state();
            channel_of(&mut st, "x", &["alice"], 0);
            st.registry
                .set_mode(&n("alice"), &c("x"), mode, key, 0)
                .unwrap();
            register(&mut st, "mallory", 9000, 0);
            let kept = ask(&mut st, "x", Some("alice"), 1);
            assert!(same_bytes(&kept, &ask(&mut st, "x", Some("alice"), 2)));
            for caller in [Some(n("mallory")), None] {
                assert!(
                    matches!(
                        st.members_json(&c("x"), caller.as_ref(), 2),
                        Err(RegistryError::Acl(AclError::MembersOnly(_)))
                    ),
                    "{mode:?}: the kept answer is for members only"
                );
            }
        }
    }

    #[test]
    fn given_a_channel_forgotten_and_made_again_then_its_old_answer_is_never_sent() {
        let mut st = state();
        channel_of(&mut st, "x", &["alice"], 0);
        let old = ask(&mut st, "x", None, 1);
        st.registry.leave(&n("alice"), &c("x"), 1).unwrap();
        let expiry = crate::tracker::quota::ms(crate::tracker::quota::DEFAULT_EMPTY_CHANNEL_EXPIRY);
        st.expire_unused(2, 100);
        st.expire_unused(2 + expiry, 100);
        assert!(matches!(
            st.members_json(&c("x"), None, 2 + expiry),
            Err(RegistryError::UnknownChannel(_))
        ));
        register(&mut st, "bob", 8001, 2 + expiry);
        st.registry
            .join(&n("bob"), &c("x"), None, 2 + expiry)
            .unwrap();
        let new = ask(&mut st, "x", None, 2 + expiry);
        assert_ne!(old, new);
    }

    /// A walk of changes of every kind in a pseudo-random order, asking after each: the answer is always the one
    /// made afresh.
    #[test]
    fn given_any_sequence_of_changes_then_the_answer_sent_is_always_the_fresh_one() {
        let names = ["alice", "bob", "carol", "dave", "erin"];
        let mut st = state();
        channel_of(&mut st, "x", &names, 0);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut roll = |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        let mut now = 1;
        for _ in 0..2_000 {
            now += roll(4_000);
            let who = n(names[roll(names.len() as u64) as usize]);
            let port = 8000 + names.iter().position(|x| n(x) == who).unwrap() as u16;
            let _ = match roll(10) {
                0 => st.registry.join(&who, &c("x"), None, now).map(|_| ()),
                1 => st.registry.leave(&who, &c("x"), now).map(|_| ()),
                2 | 3 => st
                    .register(&who, (LO, port), key(who.as_str()), None, now)
                    .map(|_| ())
                    .map_err(|_| RegistryError::UnknownPeer(who.clone())),
                4 => st
                    .registry
                    .set_presence(
                        &who,
                        [PeerStatus::Online, PeerStatus::Away, PeerStatus::Invisible]
                            [roll(3) as usize],
                        None,
                        now,
                    )
                    .map(|_| ()),
                5 => st
                    .registry
                    .set_role(
                        &n("alice"),
                        &c("x"),
                        &who,
                        [GivenRole::Visitor, GivenRole::Member][roll(2) as usize],
                        now,
                    )
                    .map(|_| ()),
                6 => st
                    .registry
                    .remove_member(&n("alice"), &c("x"), &who, now)
                    .map(|_| ()),
                7 => st
                    .register_with_quic(
                        &who,
                        (LO, port),
                        Some(port + roll(2) as u16),
                        key(who.as_str()),
                        None,
                        now,
                    )
                    .map(|_| ())
                    .map_err(|_| RegistryError::UnknownPeer(who.clone())),
                8 => st.registry.unregister(&who, now).map(|_| ()),
                _ => {
                    st.registry.expire(now);
                    Ok(())
                }
            };
            match fresh(&st, "x", Some("alice"), now) {
                Ok(_) => {
                    ask(&mut st, "x", Some("alice"), now);
                }
                Err(e) => assert_eq!(
                    st.members_json(&c("x"), Some(&n("alice")), now)
                        .unwrap_err(),
                    e
                ),
            }
        }
    }
}
