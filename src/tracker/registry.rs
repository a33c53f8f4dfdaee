//! The tracker's state as a pure value: leases, channels and their members. No I/O and no clock of its own
//! (every call takes `now` in Unix ms), so every rule is unit-tested here without a network.
//!
//! Each mutation returns its answer and what it changed ([`Change`]s, in order): the caller queues those for the
//! store before answering, so a new kind of change is written here and in the store's mapping only.
//!
//! A lease that has not been renewed for `ttl` is *expired*: it is left out of every answer at once, and
//! [`Registry::expire`] later removes it for good.
//!
//! Channels are bounded by the [`Quotas`]: each identity and each client address may have created only so many that
//! still exist, and a channel nobody is in is forgotten after a while ([`Registry::forget_empty_channels`]), later
//! when its owner set rules, so channels made and left (or made by peers that never come back) do not pile up.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};

use super::acl::{Acl, AclError, AclList, KeyHash};
use super::quota::{self, Origin, QuotaError, Quotas};
use super::store::Change;
use crate::proto::{
    ChannelInfo, ChannelMember, ChannelMode, ChannelName, ChannelSummary, GivenRole, MAX_AWAY_LEN,
    PeerInfo, PeerName, PeerStatus,
};

/// Most peers one tracker holds; registrations beyond it are refused (bound every table).
pub(crate) const MAX_PEERS: usize = 1_000_000;
/// Most channels one tracker holds.
pub(crate) const MAX_CHANNELS: usize = 100_000;
/// Most channels one peer may be a member of.
pub(crate) const MAX_CHANNELS_PER_PEER: usize = 256;

/// Why the registry refuses a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("the name {name} is in use by a live peer at {holder}")]
    NameTaken { name: PeerName, holder: SocketAddr },
    #[error("no live peer is called {0}")]
    UnknownPeer(PeerName),
    #[error("there is no channel #{0}")]
    UnknownChannel(ChannelName),
    #[error("{peer} is not a member of #{channel}")]
    NotMember {
        peer: PeerName,
        channel: ChannelName,
    },
    #[error("the tracker is full: {0}")]
    Full(&'static str),
    #[error(transparent)]
    Acl(#[from] AclError),
    #[error("{0}")]
    InvalidPresence(&'static str),
    #[error(transparent)]
    Quota(#[from] QuotaError),
    #[error(
        "a channel #{like} exists and #{channel} looks like it (case and lookalike characters such as I/l/1, O/0, rn/m do not count); join #{like} or pick a name that looks different"
    )]
    Confusable {
        channel: ChannelName,
        like: ChannelName,
    },
}

#[derive(Debug, Clone)]
struct Lease {
    ip: IpAddr,
    port: u16,
    /// The UDP port the peer takes sessions on, as its last registration said (not kept in the store: a
    /// restored lease has none until the peer renews, and is reached over HTTP meanwhile).
    quic_port: Option<u16>,
    last_seen_ms: u64,
    channels: LeaseChannels,
}

/// The channels one lease is in, sorted, in a vector grown one name at a time: most peers are in a few channels,
/// and a `BTreeSet` allocates a whole node (room for 11 names, 280 bytes) for the first one, a quarter of what
/// the tracker held per peer (docs/BENCHMARKS.md, figure 4). A peer is in at most [`MAX_CHANNELS_PER_PEER`].
#[derive(Debug, Clone, Default)]
struct LeaseChannels(Vec<ChannelName>);

impl LeaseChannels {
    fn contains(&self, channel: &ChannelName) -> bool {
        self.0.binary_search(channel).is_ok()
    }

    /// Adds `channel`; false if it was there.
    fn insert(&mut self, channel: ChannelName) -> bool {
        match self.0.binary_search(&channel) {
            Ok(_) => false,
            Err(at) => {
                self.0.reserve_exact(1);
                self.0.insert(at, channel);
                true
            }
        }
    }

    /// Takes `channel` out; false if it was not there.
    fn remove(&mut self, channel: &ChannelName) -> bool {
        match self.0.binary_search(channel) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn iter(&self) -> std::slice::Iter<'_, ChannelName> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a LeaseChannels {
    type Item = &'a ChannelName;
    type IntoIter = std::slice::Iter<'a, ChannelName>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[derive(Debug, Clone, Default)]
struct Channel {
    members: BTreeSet<PeerName>,
    acl: Acl,
    /// The client address the channel was created from (`None`: this host, or not recorded).
    origin: Origin,
    /// Since when the channel has had no members (`None` while it has some).
    empty_since: Option<u64>,
    /// Which version of its `GET /get-list` answer the channel is at: a new value (from the registry's counter, so
    /// a channel forgotten and made again never repeats one) whenever its members, their roles, leases or presence
    /// change. A cached answer made at this value is still the answer, until a listed lease lapses.
    answer_gen: u64,
}

impl Channel {
    /// The owner set rules worth keeping longer: a mode other than open, or a name on a list.
    fn has_rules(&self) -> bool {
        self.acl.mode != ChannelMode::Open
            || !self.acl.invited.is_empty()
            || !self.acl.banned.is_empty()
            || !self.acl.visitors.is_empty()
    }
}

/// What a peer said about how others should see it (kept only when not plain `online`, and only while its lease
/// is held, so the table is bounded by the leases).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub status: PeerStatus,
    pub message: Option<String>,
}

/// The result of a join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// Live members after the join.
    pub members: usize,
    /// The join created the channel: the peer owns it.
    pub created: bool,
    /// The join brought the right key: the peer is admitted for good (recorded as invited).
    pub admitted: bool,
}

/// What a remove or ban changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The peer was a member and is not any more.
    pub was_member: bool,
    /// The peer had been invited (or admitted by key) and is not any more.
    pub was_invited: bool,
}

impl Removed {
    /// What a removal of `peer` from `channel` changed, to record.
    fn changes(&self, channel: &ChannelName, peer: &PeerName) -> Vec<Change> {
        let mut changes = Vec::new();
        if self.was_member {
            changes.push(Change::Left {
                name: peer.clone(),
                channel: channel.clone(),
            });
        }
        if self.was_invited {
            changes.push(listed(channel, AclList::Invited, peer, false));
        }
        changes
    }
}

/// `peer` was put on (`on`) or taken off one of `channel`'s lists.
fn listed(channel: &ChannelName, list: AclList, peer: &PeerName, on: bool) -> Change {
    Change::Listed {
        channel: channel.clone(),
        list,
        peer: peer.clone(),
        on,
    }
}

/// `changed`, and the [`listed`] change to record if it did.
fn listed_if(
    changed: bool,
    channel: &ChannelName,
    list: AclList,
    peer: &PeerName,
    on: bool,
) -> (bool, Vec<Change>) {
    let changes = if changed {
        vec![listed(channel, list, peer, on)]
    } else {
        vec![]
    };
    (changed, changes)
}

/// The result of a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// True when there was no live lease before.
    pub created: bool,
    /// The channels the peer is a member of.
    pub channels: Vec<ChannelName>,
}

/// Leases and channels.
#[derive(Debug, Clone)]
pub struct Registry {
    ttl_ms: u64,
    peers: HashMap<PeerName, Lease>,
    channels: BTreeMap<ChannelName, Channel>,
    presence: HashMap<PeerName, Presence>,
    /// Every channel by its name's skeleton (more than one only for channels made before lookalikes were refused).
    skeletons: HashMap<String, Vec<ChannelName>>,
    /// Channels that exist, counted by who created them (their owner) and from which address.
    owned: HashMap<PeerName, usize>,
    created_from: HashMap<IpAddr, usize>,
    quotas: Quotas,
    /// The last value handed out as a channel's `answer_gen`.
    generation: u64,
}

impl Registry {
    pub fn new(ttl: std::time::Duration) -> Self {
        Self {
            ttl_ms: ttl.as_millis() as u64,
            peers: HashMap::new(),
            channels: BTreeMap::new(),
            presence: HashMap::new(),
            skeletons: HashMap::new(),
            owned: HashMap::new(),
            created_from: HashMap::new(),
            quotas: Quotas::default(),
            generation: 0,
        }
    }

    pub fn set_quotas(&mut self, quotas: Quotas) {
        self.quotas = quotas;
    }

    /// `channel`'s `/get-list` answer may have changed: it moves to a new version.
    fn touch(&mut self, channel: &ChannelName) {
        if let Some(ch) = self.channels.get_mut(channel) {
            self.generation += 1;
            ch.answer_gen = self.generation;
        }
    }

    /// How `name` is listed may have changed (its lease, presence or key): every channel it is in moves to a new
    /// version of its `/get-list` answer.
    pub(crate) fn touch_peer(&mut self, name: &PeerName) {
        let Registry {
            peers,
            channels,
            generation,
            ..
        } = self;
        let Some(lease) = peers.get(name) else {
            return;
        };
        *generation += 1;
        for c in &lease.channels {
            if let Some(ch) = channels.get_mut(c) {
                ch.answer_gen = *generation;
            }
        }
    }

    /// Adds a channel to the maps that count channels (by skeleton, owner, address).
    fn count_in(&mut self, name: &ChannelName) {
        self.skeletons
            .entry(name.skeleton())
            .or_default()
            .push(name.clone());
    }

    fn count_owner(&mut self, owner: Option<&PeerName>, origin: Origin, by: isize) {
        fn bump<K: std::hash::Hash + Eq + Clone>(m: &mut HashMap<K, usize>, k: &K, by: isize) {
            let v = m.entry(k.clone()).or_default();
            *v = v.saturating_add_signed(by);
            if *v == 0 {
                m.remove(k);
            }
        }
        if let Some(o) = owner {
            bump(&mut self.owned, o, by);
        }
        if let Some(ip) = origin {
            bump(&mut self.created_from, &ip, by);
        }
    }

    /// May `name`, asking from `origin`, create `channel`? Refuses a lookalike of an existing channel and a
    /// creator over its quota.
    fn check_create(
        &self,
        name: &PeerName,
        channel: &ChannelName,
        origin: Origin,
    ) -> Result<(), RegistryError> {
        if let Some(like) = self
            .skeletons
            .get(&channel.skeleton())
            .and_then(|v| v.first())
        {
            return Err(RegistryError::Confusable {
                channel: channel.clone(),
                like: like.clone(),
            });
        }
        let q = &self.quotas;
        if self.owned.get(name).copied().unwrap_or(0) >= q.channels_per_identity {
            return Err(QuotaError::Channels {
                who: name.to_string(),
                limit: q.channels_per_identity,
            }
            .into());
        }
        if let Some(ip) = origin
            && self.created_from.get(&ip).copied().unwrap_or(0) >= q.channels_per_address
        {
            return Err(QuotaError::Channels {
                who: format!("the address {ip}"),
                limit: q.channels_per_address,
            }
            .into());
        }
        Ok(())
    }

    pub fn ttl(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.ttl_ms)
    }

    fn is_live(&self, lease: &Lease, now: u64) -> bool {
        now.saturating_sub(lease.last_seen_ms) < self.ttl_ms
    }

    fn live(&self, name: &PeerName, now: u64) -> Option<&Lease> {
        self.peers.get(name).filter(|l| self.is_live(l, now))
    }

    fn info(&self, name: &PeerName, lease: &Lease) -> PeerInfo {
        let (status, away) = match self.presence.get(name) {
            Some(p) => (p.status, p.message.clone()),
            None => (PeerStatus::Online, None),
        };
        PeerInfo {
            name: name.clone(),
            ip: lease.ip,
            port: lease.port,
            last_seen_ms: lease.last_seen_ms,
            status,
            away,
            role: None,
            public_key: None,
            quic_port: lease.quic_port,
        }
    }

    fn invisible(&self, name: &PeerName) -> bool {
        self.presence
            .get(name)
            .is_some_and(|p| p.status == PeerStatus::Invisible)
    }

    /// The channel, or `UnknownChannel`.
    fn channel(&self, channel: &ChannelName) -> Result<&Channel, RegistryError> {
        self.channels
            .get(channel)
            .ok_or_else(|| RegistryError::UnknownChannel(channel.clone()))
    }

    fn channel_mut(&mut self, channel: &ChannelName) -> Result<&mut Channel, RegistryError> {
        self.channels
            .get_mut(channel)
            .ok_or_else(|| RegistryError::UnknownChannel(channel.clone()))
    }

    /// A non-open channel shows itself only to its members.
    fn check_may_see(
        &self,
        ch: &Channel,
        channel: &ChannelName,
        caller: Option<&PeerName>,
    ) -> Result<(), RegistryError> {
        if ch.acl.mode == ChannelMode::Open {
            return Ok(());
        }
        match caller {
            Some(c) if ch.members.contains(c) => Ok(()),
            _ => Err(AclError::MembersOnly(channel.to_string()).into()),
        }
    }

    /// Registers `name` at `ip:port`, or renews its lease. A live name held at another address is refused; an
    /// expired one is taken over, starting with no channels.
    pub fn register(
        &mut self,
        name: &PeerName,
        ip: IpAddr,
        port: u16,
        now: u64,
    ) -> Result<(Registered, Vec<Change>), RegistryError> {
        let registered = self.renew_or_lease(name, ip, port, now)?;
        let change = Change::Registered {
            name: name.clone(),
            ip,
            port,
            at_ms: now,
            created: registered.created,
            quic_port: None,
            moved: false,
        };
        Ok((registered, vec![change]))
    }

    /// The holder of `name`'s key (the caller checked the key) registers at `ip:port` from `origin`: when its live
    /// lease is at another IP and the request comes from that new IP itself, the lease moves there, channels and
    /// all, and the registration that follows renews it. A host whose address changed (DHCP, a laptop moving) is
    /// reachable again at once; a second process at the same IP, or a claim sent from elsewhere, is still
    /// refused as `name_taken` by [`Registry::register`].
    pub fn follow_move(
        &mut self,
        name: &PeerName,
        (ip, port): (IpAddr, u16),
        origin: Option<IpAddr>,
        now: u64,
    ) -> bool {
        if origin != Some(ip) {
            return false;
        }
        let ttl_ms = self.ttl_ms;
        match self.peers.get_mut(name) {
            Some(lease) if now.saturating_sub(lease.last_seen_ms) < ttl_ms && lease.ip != ip => {
                lease.ip = ip;
                lease.port = port;
                self.touch_peer(name);
                true
            }
            _ => false,
        }
    }

    fn renew_or_lease(
        &mut self,
        name: &PeerName,
        ip: IpAddr,
        port: u16,
        now: u64,
    ) -> Result<Registered, RegistryError> {
        if let Some(lease) = self.peers.get(name) {
            let live = self.is_live(lease, now);
            if live && (lease.ip, lease.port) != (ip, port) {
                return Err(RegistryError::NameTaken {
                    name: name.clone(),
                    holder: (lease.ip, lease.port).into(),
                });
            }
            if live {
                let lease = self.peers.get_mut(name).expect("checked above");
                let seen_before = std::mem::replace(&mut lease.last_seen_ms, now);
                let channels = lease.channels.iter().cloned().collect();
                // `last_seen_ms` is in every list the peer is in: a renewal in the same millisecond changes nothing.
                if seen_before != now {
                    self.touch_peer(name);
                }
                return Ok(Registered {
                    created: false,
                    channels,
                });
            }
            self.remove(name);
        }
        if self.peers.len() >= MAX_PEERS {
            self.expire(now);
            if self.peers.len() >= MAX_PEERS {
                return Err(RegistryError::Full("too many peers"));
            }
        }
        self.peers.insert(
            name.clone(),
            Lease {
                ip,
                port,
                quic_port: None,
                last_seen_ms: now,
                channels: LeaseChannels::default(),
            },
        );
        Ok(Registered {
            created: true,
            channels: Vec::new(),
        })
    }

    /// Records the session port `name` registered with (`None`: it advertised none). Called right after a
    /// successful [`Registry::register`]; a name without a lease is left alone.
    pub fn set_quic_port(&mut self, name: &PeerName, quic_port: Option<u16>) {
        if let Some(lease) = self.peers.get_mut(name)
            && lease.quic_port != quic_port
        {
            lease.quic_port = quic_port;
            self.touch_peer(name);
        }
    }

    /// Puts back a lease as a store saved it (at start-up); it expires as usual from `last_seen_ms`.
    pub fn restore_lease(
        &mut self,
        name: PeerName,
        (ip, port, quic_port): (IpAddr, u16, Option<u16>),
        last_seen_ms: u64,
    ) {
        self.touch_peer(&name);
        self.peers.insert(
            name,
            Lease {
                ip,
                port,
                quic_port,
                last_seen_ms,
                channels: LeaseChannels::default(),
            },
        );
    }

    /// Puts back a channel, and optionally one member whose lease was restored, as a store saved them.
    pub fn restore_channel(&mut self, channel: ChannelName, member: Option<PeerName>) {
        self.restored(&channel);
        let ch = self.channels.get_mut(&channel).expect("just restored");
        if let Some(m) = member
            && let Some(lease) = self.peers.get_mut(&m)
        {
            lease.channels.insert(channel.clone());
            ch.members.insert(m);
            ch.empty_since = None;
            self.touch(&channel);
        }
    }

    /// The channel as a store saved it, created (empty since it was restored, until a member is) if new.
    fn restored(&mut self, channel: &ChannelName) -> &mut Channel {
        if !self.channels.contains_key(channel) {
            self.count_in(channel);
            self.channels.insert(
                channel.clone(),
                Channel {
                    empty_since: None,
                    ..Channel::default()
                },
            );
        }
        self.touch(channel);
        self.channels.get_mut(channel).expect("inserted")
    }

    /// Puts back where a channel was created from and since when it has been empty, as a store saved them (after
    /// its rules, so the owner is known).
    pub fn restore_channel_times(
        &mut self,
        channel: &ChannelName,
        origin: Origin,
        empty_since: Option<u64>,
    ) {
        let Some(ch) = self.channels.get_mut(channel) else {
            return;
        };
        ch.origin = origin;
        if ch.members.is_empty() {
            ch.empty_since = empty_since;
        }
    }

    /// Counts every restored channel against its creator's quotas (once, after everything is restored).
    pub fn restore_quotas(&mut self) {
        let counted: Vec<(Option<PeerName>, Origin)> = self
            .channels
            .values()
            .map(|ch| (ch.acl.owner.clone(), ch.origin))
            .collect();
        self.owned.clear();
        self.created_from.clear();
        for (owner, origin) in counted {
            self.count_owner(owner.as_ref(), origin, 1);
        }
    }

    /// Puts back a channel's owner, mode and key as a store saved them.
    pub fn restore_rules(
        &mut self,
        channel: ChannelName,
        owner: Option<PeerName>,
        mode: ChannelMode,
        key: Option<KeyHash>,
    ) {
        let acl = &mut self.restored(&channel).acl;
        acl.owner = owner;
        acl.mode = mode;
        acl.key = key;
    }

    /// Puts back a name on one of a channel's lists as a store saved it.
    pub fn restore_listed(&mut self, channel: ChannelName, list: AclList, peer: PeerName) {
        let ch = self.restored(&channel);
        let _ = ch.acl.set_listed(list, &peer, true, channel.as_str());
    }

    /// Puts back a peer's presence as a store saved it.
    pub fn restore_presence(&mut self, name: PeerName, presence: Presence) {
        self.touch_peer(&name);
        self.presence.insert(name, presence);
    }

    /// The channels a peer is in (live or not), as saved.
    pub fn channels_of(&self, name: &PeerName) -> Vec<ChannelName> {
        self.peers
            .get(name)
            .map(|l| l.channels.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The address a live peer registered, if it is live.
    pub fn live_addr(&self, name: &PeerName, now: u64) -> Option<IpAddr> {
        self.live(name, now).map(|l| l.ip)
    }

    /// Where a live peer is: its address, port and session port.
    pub fn live_endpoint(&self, name: &PeerName, now: u64) -> Option<(IpAddr, u16, Option<u16>)> {
        self.live(name, now).map(|l| (l.ip, l.port, l.quic_port))
    }

    /// Makes a live peer a member of `channel`, creating the channel (owned by the peer) if new. A member joining
    /// again is let through; anyone else must meet the channel's rules (ban, invitation, key).
    pub fn join(
        &mut self,
        name: &PeerName,
        channel: &ChannelName,
        key: Option<&str>,
        now: u64,
    ) -> Result<(Joined, Vec<Change>), RegistryError> {
        self.join_from(name, channel, key, None, now)
    }

    /// [`Registry::join`] asked from `origin`: a join that would create the channel counts against the quotas of
    /// the peer and of that address.
    pub fn join_from(
        &mut self,
        name: &PeerName,
        channel: &ChannelName,
        key: Option<&str>,
        origin: Origin,
        now: u64,
    ) -> Result<(Joined, Vec<Change>), RegistryError> {
        let lease = self
            .live(name, now)
            .ok_or_else(|| RegistryError::UnknownPeer(name.clone()))?;
        let mut admitted = false;
        let created = !self.channels.contains_key(channel);
        if !lease.channels.contains(channel) {
            if lease.channels.len() >= MAX_CHANNELS_PER_PEER {
                return Err(RegistryError::Full("this peer is in too many channels"));
            }
            if created {
                self.check_create(name, channel, origin)?;
            }
            if created && self.channels.len() >= MAX_CHANNELS {
                return Err(RegistryError::Full("too many channels"));
            }
            if let Some(ch) = self.channels.get(channel) {
                admitted = ch.acl.admit(name, key, channel.as_str())?;
            }
        }
        if created {
            self.count_in(channel);
            self.count_owner(Some(name), origin, 1);
        }
        let ch = self
            .channels
            .entry(channel.clone())
            .or_insert_with(|| Channel {
                members: BTreeSet::new(),
                acl: Acl::owned_by(name.clone()),
                origin,
                empty_since: None,
                answer_gen: 0,
            });
        ch.empty_since = None;
        if admitted {
            ch.acl
                .set_listed(AclList::Invited, name, true, channel.as_str())?;
        }
        if ch.members.insert(name.clone()) || created {
            self.touch(channel);
        }
        self.peers
            .get_mut(name)
            .expect("live")
            .channels
            .insert(channel.clone());
        let mut changes = vec![Change::Joined {
            name: name.clone(),
            channel: channel.clone(),
            at_ms: now,
        }];
        if created {
            changes.push(Change::Owned {
                channel: channel.clone(),
                owner: name.clone(),
                origin,
            });
        }
        if admitted {
            changes.push(listed(channel, AclList::Invited, name, true));
        }
        let joined = Joined {
            members: self.live_count(channel, now),
            created,
            admitted,
        };
        Ok((joined, changes))
    }

    /// Takes a peer out of a channel. The channel itself stays known.
    pub fn leave(
        &mut self,
        name: &PeerName,
        channel: &ChannelName,
        now: u64,
    ) -> Result<(usize, Vec<Change>), RegistryError> {
        self.live(name, now)
            .ok_or_else(|| RegistryError::UnknownPeer(name.clone()))?;
        let ch = self
            .channels
            .get_mut(channel)
            .ok_or_else(|| RegistryError::UnknownChannel(channel.clone()))?;
        if !ch.members.remove(name) {
            return Err(RegistryError::NotMember {
                peer: name.clone(),
                channel: channel.clone(),
            });
        }
        self.peers
            .get_mut(name)
            .expect("live")
            .channels
            .remove(channel);
        self.touch(channel);
        let left = Change::Left {
            name: name.clone(),
            channel: channel.clone(),
        };
        Ok((self.live_count(channel, now), vec![left]))
    }

    /// Removes a live peer at once (it said goodbye).
    pub fn unregister(
        &mut self,
        name: &PeerName,
        now: u64,
    ) -> Result<((), Vec<Change>), RegistryError> {
        self.live(name, now)
            .ok_or_else(|| RegistryError::UnknownPeer(name.clone()))?;
        self.remove(name);
        Ok(((), vec![Change::Unregistered { name: name.clone() }]))
    }

    fn remove(&mut self, name: &PeerName) {
        self.touch_peer(name);
        self.presence.remove(name);
        if let Some(lease) = self.peers.remove(name) {
            for c in &lease.channels {
                if let Some(ch) = self.channels.get_mut(c) {
                    ch.members.remove(name);
                }
            }
        }
    }

    fn live_count(&self, channel: &ChannelName, now: u64) -> usize {
        self.channels.get(channel).map_or(0, |ch| {
            ch.members
                .iter()
                .filter(|m| self.live(m, now).is_some())
                .count()
        })
    }

    /// The live members of a channel, each with its role, as `caller` may see them: a non-open channel answers
    /// only its members, and invisible members are left out (shown as offline).
    pub fn members(
        &self,
        channel: &ChannelName,
        caller: Option<&PeerName>,
        now: u64,
    ) -> Result<Vec<PeerInfo>, RegistryError> {
        let ch = self.channel(channel)?;
        self.check_may_see(ch, channel, caller)?;
        Ok(self
            .live_members(ch, now)
            .into_iter()
            .filter(|p| !self.invisible(&p.name))
            .collect())
    }

    /// The version of `channel`'s `/get-list` answer, once `caller` may see it (as [`Registry::members`] checks):
    /// an answer made at this version is the answer still, until the first of its leases lapses
    /// ([`Registry::members_until`]).
    pub fn members_version(
        &self,
        channel: &ChannelName,
        caller: Option<&PeerName>,
    ) -> Result<u64, RegistryError> {
        let ch = self.channel(channel)?;
        self.check_may_see(ch, channel, caller)?;
        Ok(ch.answer_gen)
    }

    /// [`Registry::members`], and until when (Unix ms, exclusive) they stay the answer if nothing changes: the
    /// moment the first listed lease lapses.
    pub fn members_until(
        &self,
        channel: &ChannelName,
        caller: Option<&PeerName>,
        now: u64,
    ) -> Result<(Vec<PeerInfo>, u64), RegistryError> {
        let peers = self.members(channel, caller, now)?;
        let until = peers
            .iter()
            .map(|p| p.last_seen_ms.saturating_add(self.ttl_ms))
            .min()
            .unwrap_or(u64::MAX);
        Ok((peers, until))
    }

    /// Whether `caller` may see `channel`'s members (what [`Registry::members`] checks first).
    pub fn may_see(&self, channel: &ChannelName, caller: Option<&PeerName>) -> bool {
        self.channel(channel)
            .and_then(|ch| self.check_may_see(ch, channel, caller))
            .is_ok()
    }

    /// Every live member, invisible ones too, with roles.
    fn live_members(&self, ch: &Channel, now: u64) -> Vec<PeerInfo> {
        ch.members
            .iter()
            .filter_map(|m| {
                self.live(m, now).map(|l| PeerInfo {
                    role: Some(ch.acl.role(m)),
                    ..self.info(m, l)
                })
            })
            .collect()
    }

    /// Who a live member's channel message goes to: the other live members.
    pub fn fan_out(
        &self,
        name: &PeerName,
        channel: &ChannelName,
        now: u64,
    ) -> Result<Vec<PeerInfo>, RegistryError> {
        let lease = self
            .live(name, now)
            .ok_or_else(|| RegistryError::UnknownPeer(name.clone()))?;
        let ch = self.channel(channel)?;
        ch.acl.check_not_banned(name, channel.as_str())?;
        if !lease.channels.contains(channel) {
            return Err(RegistryError::NotMember {
                peer: name.clone(),
                channel: channel.clone(),
            });
        }
        ch.acl.may_post(name, channel.as_str())?;
        let mut peers = self.live_members(ch, now);
        peers.retain(|p| &p.name != name);
        Ok(peers)
    }

    /// Where a live peer is.
    pub fn lookup(&self, name: &PeerName, now: u64) -> Result<PeerInfo, RegistryError> {
        self.live(name, now)
            .map(|l| self.info(name, l))
            .ok_or_else(|| RegistryError::UnknownPeer(name.clone()))
    }

    /// Every live peer that is not invisible, by name.
    pub fn online(&self, now: u64) -> Vec<PeerInfo> {
        let mut v: Vec<_> = self
            .peers
            .iter()
            .filter(|(n, l)| self.is_live(l, now) && !self.invisible(n))
            .map(|(n, l)| self.info(n, l))
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Every channel with its live member count.
    pub fn channels(&self, now: u64) -> Vec<ChannelSummary> {
        self.channels
            .iter()
            .map(|(c, ch)| ChannelSummary {
                name: c.clone(),
                members: self.live_count(c, now),
                mode: ch.acl.mode,
            })
            .collect()
    }

    /// A channel's owner, mode, members (with role and status), invited and banned names, as `caller` may see
    /// it (a non-open channel only to its members).
    pub fn channel_info(
        &self,
        channel: &ChannelName,
        caller: Option<&PeerName>,
        now: u64,
    ) -> Result<ChannelInfo, RegistryError> {
        let ch = self.channel(channel)?;
        self.check_may_see(ch, channel, caller)?;
        let members = ch
            .members
            .iter()
            .map(|m| {
                let shown = self.live(m, now).is_some() && !self.invisible(m);
                let p = self.presence.get(m).filter(|_| shown);
                ChannelMember {
                    name: m.clone(),
                    role: ch.acl.role(m),
                    status: match (shown, p) {
                        (false, _) => PeerStatus::Offline,
                        (true, Some(p)) => p.status,
                        (true, None) => PeerStatus::Online,
                    },
                    away: p.and_then(|p| p.message.clone()),
                }
            })
            .collect();
        Ok(ChannelInfo {
            channel: channel.clone(),
            owner: ch.acl.owner.clone(),
            mode: ch.acl.mode,
            members,
            invited: ch.acl.invited.iter().cloned().collect(),
            banned: ch.acl.banned.iter().cloned().collect(),
        })
    }

    /// The acting peer must be live and own the channel; returns the channel to change.
    fn owned(
        &mut self,
        actor: &PeerName,
        channel: &ChannelName,
        now: u64,
    ) -> Result<&mut Channel, RegistryError> {
        self.live(actor, now)
            .ok_or_else(|| RegistryError::UnknownPeer(actor.clone()))?;
        let ch = self.channel_mut(channel)?;
        ch.acl.check_owner(actor, channel.as_str())?;
        Ok(ch)
    }

    /// The owner sets how the channel admits. Closing a channel admits its members of the moment for good (they
    /// are put on the invited list), so one whose lease lapses can still join again. Returns the names newly
    /// invited (the change records the key's salted hash, never the key).
    pub fn set_mode(
        &mut self,
        actor: &PeerName,
        channel: &ChannelName,
        mode: ChannelMode,
        key: Option<&str>,
        now: u64,
    ) -> Result<(Vec<PeerName>, Vec<Change>), RegistryError> {
        let ch = self.owned(actor, channel, now)?;
        ch.acl.set_mode(mode, key)?;
        let mut admitted = Vec::new();
        if mode != ChannelMode::Open {
            let members: Vec<PeerName> = ch.members.iter().cloned().collect();
            for m in members {
                if ch.acl.owner.as_ref() != Some(&m)
                    && ch
                        .acl
                        .set_listed(AclList::Invited, &m, true, channel.as_str())?
                {
                    admitted.push(m);
                }
            }
        }
        let mut changes = vec![Change::ModeSet {
            channel: channel.clone(),
            mode,
            key: ch.acl.key.clone(),
        }];
        // Who may see the list is checked on every request; a new version all the same, so that no answer made
        // under the old rules outlives them.
        self.touch(channel);
        changes.extend(
            admitted
                .iter()
                .map(|p| listed(channel, AclList::Invited, p, true)),
        );
        Ok((admitted, changes))
    }

    /// The owner invites a name (it may join an invite or key channel without the key). Returns whether it is new.
    pub fn invite(
        &mut self,
        actor: &PeerName,
        channel: &ChannelName,
        peer: &PeerName,
        now: u64,
    ) -> Result<(bool, Vec<Change>), RegistryError> {
        let ch = self.owned(actor, channel, now)?;
        ch.acl.check_not_banned(peer, channel.as_str())?;
        let new = ch
            .acl
            .set_listed(AclList::Invited, peer, true, channel.as_str())?;
        Ok(listed_if(new, channel, AclList::Invited, peer, true))
    }

    fn drop_member(&mut self, peer: &PeerName, channel: &ChannelName) -> Removed {
        let mut out = Removed {
            was_member: false,
            was_invited: false,
        };
        if let Some(ch) = self.channels.get_mut(channel) {
            out.was_member = ch.members.remove(peer);
            out.was_invited = ch.acl.invited.remove(peer);
        }
        if let Some(l) = self.peers.get_mut(peer) {
            l.channels.remove(channel);
        }
        if out.was_member {
            self.touch(channel);
        }
        out
    }

    /// The owner takes a member out of the channel and withdraws its invitation.
    pub fn remove_member(
        &mut self,
        actor: &PeerName,
        channel: &ChannelName,
        peer: &PeerName,
        now: u64,
    ) -> Result<(Removed, Vec<Change>), RegistryError> {
        let ch = self.owned(actor, channel, now)?;
        ch.acl.check_not_owner_target(peer, channel.as_str())?;
        if !ch.members.contains(peer) && !ch.acl.invited.contains(peer) {
            return Err(RegistryError::NotMember {
                peer: peer.clone(),
                channel: channel.clone(),
            });
        }
        let removed = self.drop_member(peer, channel);
        let changes = removed.changes(channel, peer);
        Ok((removed, changes))
    }

    /// The owner bans a name: it is removed at once and refused everywhere in the channel until unbanned.
    /// Returns what the removal changed, or `None` when the name was banned already.
    pub fn ban(
        &mut self,
        actor: &PeerName,
        channel: &ChannelName,
        peer: &PeerName,
        now: u64,
    ) -> Result<(Option<Removed>, Vec<Change>), RegistryError> {
        let ch = self.owned(actor, channel, now)?;
        ch.acl.check_not_owner_target(peer, channel.as_str())?;
        if !ch
            .acl
            .set_listed(AclList::Banned, peer, true, channel.as_str())?
        {
            return Ok((None, vec![]));
        }
        let removed = self.drop_member(peer, channel);
        let mut changes = vec![listed(channel, AclList::Banned, peer, true)];
        changes.extend(removed.changes(channel, peer));
        Ok((Some(removed), changes))
    }

    /// The owner lifts a ban. Returns whether the name was banned.
    pub fn unban(
        &mut self,
        actor: &PeerName,
        channel: &ChannelName,
        peer: &PeerName,
        now: u64,
    ) -> Result<(bool, Vec<Change>), RegistryError> {
        let ch = self.owned(actor, channel, now)?;
        let was = ch
            .acl
            .set_listed(AclList::Banned, peer, false, channel.as_str())?;
        Ok(listed_if(was, channel, AclList::Banned, peer, false))
    }

    /// The owner makes a member a visitor (read-only) or a member again. Returns whether it changed.
    pub fn set_role(
        &mut self,
        actor: &PeerName,
        channel: &ChannelName,
        peer: &PeerName,
        role: GivenRole,
        now: u64,
    ) -> Result<(bool, Vec<Change>), RegistryError> {
        let ch = self.owned(actor, channel, now)?;
        ch.acl.check_not_owner_target(peer, channel.as_str())?;
        if !ch.members.contains(peer) {
            return Err(RegistryError::NotMember {
                peer: peer.clone(),
                channel: channel.clone(),
            });
        }
        let visitor = role == GivenRole::Visitor;
        let changed = ch
            .acl
            .set_listed(AclList::Visitor, peer, visitor, channel.as_str())?;
        if changed {
            self.touch(channel);
        }
        Ok(listed_if(changed, channel, AclList::Visitor, peer, visitor))
    }

    /// A live peer says how others should see it. Returns what to record (`None`: plain online).
    pub fn set_presence(
        &mut self,
        name: &PeerName,
        status: PeerStatus,
        message: Option<String>,
        now: u64,
    ) -> Result<(Option<Presence>, Vec<Change>), RegistryError> {
        self.live(name, now)
            .ok_or_else(|| RegistryError::UnknownPeer(name.clone()))?;
        let message = message.filter(|m| !m.trim().is_empty());
        if let Some(m) = &message {
            if m.len() > MAX_AWAY_LEN {
                return Err(RegistryError::InvalidPresence("message: at most 200 bytes"));
            }
            if m.chars().any(char::is_control) {
                return Err(RegistryError::InvalidPresence(
                    "message: no control characters (one line)",
                ));
            }
        }
        let presence = match status {
            PeerStatus::Online => None,
            PeerStatus::Away => Some(Presence { status, message }),
            PeerStatus::Invisible if message.is_none() => Some(Presence {
                status,
                message: None,
            }),
            PeerStatus::Invisible => {
                return Err(RegistryError::InvalidPresence(
                    "message: only status away takes a message",
                ));
            }
            PeerStatus::Offline => {
                return Err(RegistryError::InvalidPresence(
                    "status: one of online, away, invisible",
                ));
            }
        };
        let before = match &presence {
            Some(p) => self.presence.insert(name.clone(), p.clone()),
            None => self.presence.remove(name),
        };
        if before != presence {
            self.touch_peer(name);
        }
        let change = Change::PresenceSet {
            name: name.clone(),
            presence: presence.clone(),
        };
        Ok((presence, vec![change]))
    }

    /// Counts for `/health`: live peers, channels.
    pub fn counts(&self, now: u64) -> (usize, usize) {
        (
            self.peers.values().filter(|l| self.is_live(l, now)).count(),
            self.channels.len(),
        )
    }

    /// Leases held, live or lapsed: lapsed ones stay until [`Registry::expire`] removes them.
    pub fn held(&self) -> usize {
        self.peers.len()
    }

    /// Notes, at `now`, which channels have just become empty and forgets at most `max` of those empty for longer
    /// than the quotas' expiry (the longer one when the owner set rules). Returns the channels that have just
    /// become empty (to record since when) and those forgotten.
    pub fn forget_empty_channels(
        &mut self,
        now: u64,
        max: usize,
    ) -> (Vec<ChannelName>, Vec<ChannelName>) {
        let (plain, ruled) = (
            quota::ms(self.quotas.empty_channel_expiry),
            quota::ms(self.quotas.ruled_channel_expiry),
        );
        let mut emptied = Vec::new();
        let mut gone = Vec::new();
        for (name, ch) in &mut self.channels {
            if !ch.members.is_empty() {
                ch.empty_since = None;
                continue;
            }
            match ch.empty_since {
                None => {
                    ch.empty_since = Some(now);
                    emptied.push(name.clone());
                }
                Some(since) => {
                    let keep = if ch.has_rules() { ruled } else { plain };
                    if now.saturating_sub(since) >= keep && gone.len() < max {
                        gone.push(name.clone());
                    }
                }
            }
        }
        for name in &gone {
            if let Some(ch) = self.channels.remove(name) {
                self.count_owner(ch.acl.owner.as_ref(), ch.origin, -1);
            }
            let skel = name.skeleton();
            if let Some(v) = self.skeletons.get_mut(&skel) {
                v.retain(|x| x != name);
                if v.is_empty() {
                    self.skeletons.remove(&skel);
                }
            }
        }
        (emptied, gone)
    }

    /// Forgets everything about a name that was unbound: its lease, its memberships, its place on every channel's
    /// lists, and its ownership (its channels keep their rules, with no owner, until they are forgotten).
    pub fn forget_name(&mut self, name: &PeerName) {
        self.remove(name);
        let generation = self.generation + 1;
        for ch in self.channels.values_mut() {
            let mut listed = ch.members.remove(name);
            ch.acl.invited.remove(name);
            ch.acl.banned.remove(name);
            listed |= ch.acl.visitors.remove(name);
            if ch.acl.owner.as_ref() == Some(name) {
                ch.acl.owner = None;
                listed = true;
            }
            if listed {
                ch.answer_gen = generation;
            }
        }
        self.generation = generation;
        self.owned.remove(name);
    }

    /// Removes expired leases for good and returns their names.
    pub fn expire(&mut self, now: u64) -> Vec<PeerName> {
        self.expire_some(now, usize::MAX).0
    }

    /// Removes at most `max` expired leases for good and returns their names. The sweep calls it until it returns
    /// fewer than `max`, letting go of the registry in between, so a mass expiry never stalls requests for long.
    pub fn expire_some(&mut self, now: u64, max: usize) -> (Vec<PeerName>, Vec<Change>) {
        let dead: Vec<PeerName> = self
            .peers
            .iter()
            .filter(|(_, l)| !self.is_live(l, now))
            .take(max)
            .map(|(n, _)| n.clone())
            .collect();
        for n in &dead {
            self.remove(n);
        }
        let changes = if dead.is_empty() {
            vec![]
        } else {
            vec![Change::Expired {
                names: dead.clone(),
            }]
        };
        (dead, changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mutation's answer without what it changed (what a change records is the store's tests' business).
    trait Answer<T, E> {
        fn answer(self) -> Result<T, E>;
    }

    impl<T, E> Answer<T, E> for Result<(T, Vec<Change>), E> {
        fn answer(self) -> Result<T, E> {
            self.map(|(a, _)| a)
        }
    }
    use crate::proto::PeerStatus;
    use std::time::Duration;

    const TTL: u64 = 30_000;
    fn reg() -> Registry {
        Registry::new(Duration::from_millis(TTL))
    }
    fn n(s: &str) -> PeerName {
        PeerName::new(s).unwrap()
    }
    fn c(s: &str) -> ChannelName {
        ChannelName::new(s).unwrap()
    }
    const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn a_leases_channels_stay_sorted_and_unique_and_take_no_more_room_than_they_need() {
        let mut set = LeaseChannels::default();
        for ch in ["b", "a", "c", "a"] {
            set.insert(c(ch));
        }
        assert_eq!(
            set.iter().cloned().collect::<Vec<_>>(),
            vec![c("a"), c("b"), c("c")]
        );
        assert_eq!(set.0.capacity(), 3, "room for exactly the names held");
        assert!(set.remove(&c("b")));
        assert!(!set.remove(&c("b")));
        assert!(set.contains(&c("a")) && !set.contains(&c("b")));
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn given_a_live_name_when_another_address_registers_it_then_it_is_refused() {
        let mut r = reg();
        assert!(
            r.register(&n("alice"), LO, 8000, 0)
                .answer()
                .unwrap()
                .created
        );
        let err = r.register(&n("alice"), LO, 8001, 10).answer().unwrap_err();
        assert!(matches!(err, RegistryError::NameTaken { .. }));
    }

    #[test]
    fn given_a_live_peer_whose_ip_changed_when_it_registers_from_the_new_ip_then_its_lease_follows()
    {
        let mut r = reg();
        let (old, new) = (
            IpAddr::from([10, 77, 0, 11]),
            IpAddr::from([10, 77, 0, 200]),
        );
        r.register(&n("alice"), old, 8000, 0).unwrap();
        r.join(&n("alice"), &c("general"), None, 0).unwrap();
        // Claimed from elsewhere, or a second process on the same IP: no move.
        assert!(!r.follow_move(&n("alice"), (new, 8000), Some(old), 5));
        assert!(!r.follow_move(&n("alice"), (old, 8001), Some(old), 5));
        assert!(!r.follow_move(&n("alice"), (new, 8000), None, 5));
        assert!(r.register(&n("alice"), new, 8000, 5).answer().is_err());
        // From the new IP itself: the lease moves, channels and all.
        assert!(r.follow_move(&n("alice"), (new, 8000), Some(new), 10));
        let again = r.register(&n("alice"), new, 8000, 10).answer().unwrap();
        assert!(!again.created);
        assert_eq!(again.channels, vec![c("general")]);
        assert_eq!(r.live_addr(&n("alice"), 10), Some(new));
    }

    #[test]
    fn given_a_live_peer_when_it_registers_again_then_its_lease_is_renewed_with_its_channels() {
        let mut r = reg();
        r.register(&n("alice"), LO, 8000, 0).unwrap();
        r.join(&n("alice"), &c("general"), None, 0).unwrap();
        let again = r.register(&n("alice"), LO, 8000, TTL - 1).answer().unwrap();
        assert_eq!(
            again,
            Registered {
                created: false,
                channels: vec![c("general")]
            }
        );
        assert!(
            r.lookup(&n("alice"), 2 * TTL - 2).is_ok(),
            "renewed lease runs from the renewal"
        );
    }

    #[test]
    fn given_an_expired_lease_then_the_peer_is_in_no_answer_and_its_name_is_free() {
        let mut r = reg();
        r.register(&n("alice"), LO, 8000, 0).unwrap();
        r.register(&n("bob"), LO, 8001, 0).unwrap();
        r.join(&n("alice"), &c("general"), None, 0).unwrap();
        r.join(&n("bob"), &c("general"), None, 0).unwrap();
        r.register(&n("bob"), LO, 8001, TTL / 2).unwrap();
        let now = TTL + 1;
        assert!(r.lookup(&n("alice"), now).is_err());
        assert_eq!(r.members(&c("general"), None, now).unwrap().len(), 1);
        assert_eq!(
            r.channels(now),
            vec![ChannelSummary {
                name: c("general"),
                members: 1,
                mode: ChannelMode::Open,
            }]
        );
        assert_eq!(r.online(now).len(), 1);
        let taken = r.register(&n("alice"), LO, 9999, now).answer().unwrap();
        assert_eq!(
            taken,
            Registered {
                created: true,
                channels: vec![]
            },
            "a taken-over name starts clean"
        );
    }

    #[test]
    fn fan_out_is_the_other_live_members_and_needs_membership() {
        let mut r = reg();
        for (i, p) in ["a", "b", "c", "d"].iter().enumerate() {
            r.register(&n(p), LO, 8000 + i as u16, 0).unwrap();
        }
        for p in ["a", "b", "c"] {
            r.join(&n(p), &c("x"), None, 0).unwrap();
        }
        let names: Vec<_> = r
            .fan_out(&n("a"), &c("x"), 1)
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, vec![n("b"), n("c")]);
        assert!(matches!(
            r.fan_out(&n("d"), &c("x"), 1),
            Err(RegistryError::NotMember { .. })
        ));
        assert!(matches!(
            r.fan_out(&n("a"), &c("nope"), 1),
            Err(RegistryError::UnknownChannel(_))
        ));
        assert!(matches!(
            r.fan_out(&n("zz"), &c("x"), 1),
            Err(RegistryError::UnknownPeer(_))
        ));
    }

    #[test]
    fn leaving_and_unregistering_take_effect_at_once() {
        let mut r = reg();
        r.register(&n("a"), LO, 1, 0).unwrap();
        r.register(&n("b"), LO, 2, 0).unwrap();
        r.join(&n("a"), &c("x"), None, 0).unwrap();
        r.join(&n("b"), &c("x"), None, 0).unwrap();
        assert_eq!(r.leave(&n("a"), &c("x"), 1).answer().unwrap(), 1);
        assert!(matches!(
            r.leave(&n("a"), &c("x"), 1).answer(),
            Err(RegistryError::NotMember { .. })
        ));
        r.unregister(&n("b"), 2).unwrap();
        assert!(r.lookup(&n("b"), 2).is_err());
        assert_eq!(r.members(&c("x"), None, 2).unwrap(), vec![]);
        assert_eq!(r.channels(2).len(), 1, "an empty channel stays known");
    }

    #[test]
    fn a_registered_session_port_is_answered_until_a_registration_without_one() {
        let mut r = Registry::new(Duration::from_millis(TTL));
        r.register(&n("alice"), LO, 8000, 0).unwrap();
        assert_eq!(r.lookup(&n("alice"), 0).unwrap().quic_port, None);
        r.set_quic_port(&n("alice"), Some(8000));
        assert_eq!(r.lookup(&n("alice"), 1).unwrap().quic_port, Some(8000));
        r.register(&n("alice"), LO, 8000, 2).unwrap();
        r.set_quic_port(&n("alice"), None);
        assert_eq!(r.lookup(&n("alice"), 2).unwrap().quic_port, None);
        r.set_quic_port(&n("nobody"), Some(1));
        assert!(r.lookup(&n("nobody"), 2).is_err());
    }

    #[test]
    fn expire_forgets_dead_leases_for_good() {
        let mut r = reg();
        r.register(&n("a"), LO, 1, 0).unwrap();
        r.join(&n("a"), &c("x"), None, 0).unwrap();
        assert_eq!(r.expire(TTL - 1), Vec::<PeerName>::new());
        assert_eq!(r.expire(TTL), vec![n("a")]);
        assert_eq!(r.counts(TTL), (0, 1));
    }

    #[test]
    fn given_many_lapsed_leases_when_expiring_in_batches_then_each_batch_is_bounded_and_live_ones_stay()
     {
        let mut r = reg();
        for i in 0..5 {
            r.register(&n(&format!("old{i}")), LO, 1 + i, 0).unwrap();
            r.join(&n(&format!("old{i}")), &c("x"), None, 0).unwrap();
        }
        r.register(&n("fresh"), LO, 9, TTL).unwrap();
        r.join(&n("fresh"), &c("x"), None, TTL).unwrap();
        let sizes: Vec<usize> = (0..4).map(|_| r.expire_some(TTL, 2).0.len()).collect();
        assert_eq!(sizes, vec![2, 2, 1, 0]);
        assert_eq!(r.held(), 1);
        assert_eq!(r.members(&c("x"), None, TTL).unwrap().len(), 1);
    }

    #[test]
    fn joining_needs_a_live_peer() {
        let mut r = reg();
        assert!(matches!(
            r.join(&n("ghost"), &c("x"), None, 0).answer(),
            Err(RegistryError::UnknownPeer(_))
        ));
        assert!(
            r.channels(0).is_empty(),
            "a refused join creates no channel"
        );
    }

    fn three_in(mode: ChannelMode, key: Option<&str>) -> Registry {
        let mut r = reg();
        for (i, p) in ["alice", "bob", "carol"].iter().enumerate() {
            r.register(&n(p), LO, 8000 + i as u16, 0).unwrap();
        }
        let j = r.join(&n("alice"), &c("x"), None, 0).answer().unwrap();
        assert!(j.created, "the first join creates, and alice owns");
        r.set_mode(&n("alice"), &c("x"), mode, key, 0).unwrap();
        r
    }

    #[test]
    fn given_members_when_the_owner_closes_the_channel_then_they_are_admitted_for_good() {
        let mut r = three_in(ChannelMode::Open, None);
        r.join(&n("bob"), &c("x"), None, 1).unwrap();
        let (admitted, changes) = r
            .set_mode(&n("alice"), &c("x"), ChannelMode::Invite, None, 1)
            .unwrap();
        assert_eq!(admitted, vec![n("bob")]);
        assert_eq!(
            changes,
            vec![
                Change::ModeSet {
                    channel: c("x"),
                    mode: ChannelMode::Invite,
                    key: None
                },
                listed(&c("x"), AclList::Invited, &n("bob"), true)
            ],
            "what the store records: the mode, then each name admitted"
        );
        r.leave(&n("bob"), &c("x"), 2).unwrap();
        assert!(r.join(&n("bob"), &c("x"), None, 2).is_ok());
        assert!(r.join(&n("carol"), &c("x"), None, 2).is_err());
    }

    #[test]
    fn given_an_invite_channel_when_a_stranger_joins_then_it_is_refused_until_invited() {
        let mut r = three_in(ChannelMode::Invite, None);
        assert!(matches!(
            r.join(&n("bob"), &c("x"), None, 1).answer(),
            Err(RegistryError::Acl(AclError::InviteOnly(_)))
        ));
        assert!(matches!(
            r.invite(&n("bob"), &c("x"), &n("bob"), 1).answer(),
            Err(RegistryError::Acl(AclError::NotOwner { .. }))
        ));
        assert!(
            r.invite(&n("alice"), &c("x"), &n("bob"), 1)
                .answer()
                .unwrap()
        );
        assert!(
            !r.join(&n("bob"), &c("x"), None, 1)
                .answer()
                .unwrap()
                .created
        );
        assert!(matches!(
            r.members(&c("x"), Some(&n("carol")), 1),
            Err(RegistryError::Acl(AclError::MembersOnly(_)))
        ));
        assert_eq!(r.members(&c("x"), Some(&n("bob")), 1).unwrap().len(), 2);
        assert_eq!(r.channels(1)[0].mode, ChannelMode::Invite);
    }

    #[test]
    fn given_a_key_channel_then_the_key_admits_for_good() {
        let mut r = three_in(ChannelMode::Key, Some("pw"));
        assert!(r.join(&n("bob"), &c("x"), Some("no"), 1).is_err());
        assert!(
            r.join(&n("bob"), &c("x"), Some("pw"), 1)
                .answer()
                .unwrap()
                .admitted
        );
        r.leave(&n("bob"), &c("x"), 2).unwrap();
        assert!(
            r.join(&n("bob"), &c("x"), None, 3).is_ok(),
            "admitted once, no key needed again"
        );
    }

    #[test]
    fn given_a_visitor_then_it_reads_but_its_fan_out_is_refused() {
        let mut r = three_in(ChannelMode::Open, None);
        r.join(&n("bob"), &c("x"), None, 1).unwrap();
        r.set_role(&n("alice"), &c("x"), &n("bob"), GivenRole::Visitor, 1)
            .unwrap();
        assert!(matches!(
            r.fan_out(&n("bob"), &c("x"), 1),
            Err(RegistryError::Acl(AclError::ReadOnly { .. }))
        ));
        let to = r.fan_out(&n("alice"), &c("x"), 1).unwrap();
        assert_eq!(to.len(), 1, "the visitor still receives");
        assert_eq!(to[0].role, Some(crate::proto::Role::Visitor));
        assert!(
            r.set_role(&n("alice"), &c("x"), &n("alice"), GivenRole::Visitor, 1)
                .answer()
                .is_err()
        );
    }

    #[test]
    fn given_a_ban_then_the_peer_is_out_at_once_and_cannot_come_back_until_unbanned() {
        let mut r = three_in(ChannelMode::Open, None);
        r.join(&n("bob"), &c("x"), None, 1).unwrap();
        let (removed, changes) = r.ban(&n("alice"), &c("x"), &n("bob"), 1).unwrap();
        assert!(removed.unwrap().was_member);
        assert_eq!(
            changes,
            vec![
                listed(&c("x"), AclList::Banned, &n("bob"), true),
                Change::Left {
                    name: n("bob"),
                    channel: c("x")
                }
            ],
            "what the store records: on the banned list, out of the channel"
        );
        assert!(r.channels_of(&n("bob")).is_empty());
        assert!(matches!(
            r.join(&n("bob"), &c("x"), None, 1).answer(),
            Err(RegistryError::Acl(AclError::Banned { .. }))
        ));
        assert!(
            r.unban(&n("alice"), &c("x"), &n("bob"), 1)
                .answer()
                .unwrap()
        );
        assert!(r.join(&n("bob"), &c("x"), None, 1).is_ok());
        r.remove_member(&n("alice"), &c("x"), &n("bob"), 2).unwrap();
        assert!(r.channels_of(&n("bob")).is_empty());
    }

    #[test]
    fn given_an_invisible_peer_then_lists_leave_it_out_but_fan_out_and_lookup_keep_it() {
        let mut r = three_in(ChannelMode::Open, None);
        r.join(&n("bob"), &c("x"), None, 1).unwrap();
        r.set_presence(&n("bob"), PeerStatus::Invisible, None, 1)
            .unwrap();
        r.set_presence(&n("carol"), PeerStatus::Away, Some("lunch".into()), 1)
            .unwrap();
        let online: Vec<_> = r
            .online(1)
            .into_iter()
            .map(|p| (p.name, p.status))
            .collect();
        assert_eq!(
            online,
            vec![
                (n("alice"), PeerStatus::Online),
                (n("carol"), PeerStatus::Away)
            ]
        );
        assert_eq!(r.members(&c("x"), None, 1).unwrap().len(), 1);
        assert_eq!(r.fan_out(&n("alice"), &c("x"), 1).unwrap().len(), 1);
        assert!(r.lookup(&n("bob"), 1).is_ok());
        let info = r.channel_info(&c("x"), None, 1).unwrap();
        assert_eq!(info.members[1].status, PeerStatus::Offline);
        let renewed = r.register(&n("bob"), LO, 8001, 2).answer().unwrap();
        assert!(!renewed.created);
        assert!(
            r.online(2).iter().all(|p| p.name != n("bob")),
            "a renewal keeps the status"
        );
        assert!(
            r.set_presence(&n("carol"), PeerStatus::Away, Some("x".repeat(201)), 2)
                .answer()
                .is_err()
        );
    }

    const EVE_HOST: Origin = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)));

    fn quota_reg(per_identity: usize, per_address: usize) -> Registry {
        let mut r = reg();
        r.set_quotas(Quotas {
            channels_per_identity: per_identity,
            channels_per_address: per_address,
            ..Quotas::default()
        });
        r
    }

    #[test]
    fn given_an_identity_at_its_channel_quota_then_it_creates_no_more_but_joins_and_others_create()
    {
        let mut r = quota_reg(2, 100);
        for p in ["eve", "alice"] {
            r.register(&n(p), LO, 1, 0).unwrap();
        }
        r.join_from(&n("eve"), &c("e1"), None, EVE_HOST, 0).unwrap();
        r.join_from(&n("eve"), &c("e2"), None, EVE_HOST, 0).unwrap();
        let err = r
            .join_from(&n("eve"), &c("e3"), None, EVE_HOST, 0)
            .answer()
            .unwrap_err();
        assert!(
            matches!(
                err,
                RegistryError::Quota(QuotaError::Channels { limit: 2, .. })
            ),
            "{err}"
        );
        assert!(
            r.join(&n("eve"), &c("e3"), None, 0).is_err(),
            "from this host too"
        );
        assert!(
            r.channels(0).iter().all(|ch| ch.name != c("e3")),
            "a refused join creates nothing"
        );
        r.join(&n("alice"), &c("a1"), None, 0).unwrap();
        r.join(&n("eve"), &c("a1"), None, 0).unwrap();
    }

    #[test]
    fn given_an_address_at_its_channel_quota_then_its_new_identities_create_no_more_there() {
        let mut r = quota_reg(10, 3);
        for i in 0..4 {
            let p = n(&format!("eve{i}"));
            r.register(&p, LO, 1 + i as u16, 0).unwrap();
            let made = r.join_from(&p, &c(&format!("x{i}")), None, EVE_HOST, 0);
            assert_eq!(made.is_ok(), i < 3, "{i}: {made:?}");
        }
        r.register(&n("alice"), LO, 9, 0).unwrap();
        let other = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 3)));
        assert!(r.join_from(&n("alice"), &c("mine"), None, other, 0).is_ok());
        assert!(
            r.join_from(&n("eve3"), &c("x3"), None, None, 0).is_ok(),
            "this host is not held to it"
        );
    }

    #[test]
    fn given_a_channel_when_a_lookalike_is_joined_then_it_is_refused_naming_the_channel() {
        let mut r = reg();
        r.register(&n("a"), LO, 1, 0).unwrap();
        r.join(&n("a"), &c("general"), None, 0).unwrap();
        for like in ["General", "GENERAL", "genera1"] {
            let err = r.join(&n("a"), &c(like), None, 0).answer().unwrap_err();
            assert_eq!(
                err,
                RegistryError::Confusable {
                    channel: c(like),
                    like: c("general")
                }
            );
        }
    }

    #[test]
    fn given_empty_channels_then_they_are_forgotten_after_their_time_and_ruled_ones_later() {
        let (plain, ruled) = (
            quota::ms(quota::DEFAULT_EMPTY_CHANNEL_EXPIRY),
            quota::ms(quota::DEFAULT_RULED_CHANNEL_EXPIRY),
        );
        let mut r = quota_reg(2, 2);
        r.register(&n("eve"), LO, 1, 0).unwrap();
        r.register(&n("bob"), LO, 2, 0).unwrap();
        for ch in ["plain", "ruled", "busy"] {
            r.join(
                &n(if ch == "busy" { "bob" } else { "eve" }),
                &c(ch),
                None,
                0,
            )
            .unwrap();
        }
        r.set_mode(&n("eve"), &c("ruled"), ChannelMode::Invite, None, 0)
            .unwrap();
        r.unregister(&n("eve"), 1).unwrap();
        assert_eq!(
            r.forget_empty_channels(10, 100),
            (vec![c("plain"), c("ruled")], vec![])
        );
        assert_eq!(
            r.forget_empty_channels(10 + plain - 1, 100),
            (vec![], vec![])
        );
        assert_eq!(
            r.forget_empty_channels(10 + plain, 100),
            (vec![], vec![c("plain")])
        );
        r.register(&n("eve"), LO, 1, 20).unwrap();
        assert!(
            r.join(&n("eve"), &c("plain2"), None, 20).is_ok(),
            "a forgotten channel frees its creator's quota"
        );
        r.unregister(&n("eve"), 21).unwrap();
        r.forget_empty_channels(22, 100);
        assert!(
            r.channels(22).iter().any(|ch| ch.name == c("ruled")),
            "rules are kept longer"
        );
        assert_eq!(
            r.forget_empty_channels(10 + ruled, 100).1,
            vec![c("plain2"), c("ruled")]
        );
        assert_eq!(
            r.channels(10 + ruled).len(),
            1,
            "a channel with members stays"
        );
        r.register(&n("bob"), LO, 2, 10 + ruled).unwrap();
        assert!(
            r.join(&n("bob"), &c("plain"), None, 10 + ruled)
                .answer()
                .unwrap()
                .created,
            "the name is free again"
        );
    }
}
