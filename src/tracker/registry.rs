//! The tracker's state as a pure value: leases, channels and their members. No I/O and no clock of its own
//! (every call takes `now` in Unix ms), so every rule is unit-tested here without a network.
//!
//! A lease that has not been renewed for `ttl` is *expired*: it is left out of every answer at once, and
//! [`Registry::expire`] later removes it for good.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};

use crate::proto::{ChannelName, ChannelSummary, PeerInfo, PeerName};

/// Most peers one tracker holds; registrations beyond it are refused (bound every table).
pub const MAX_PEERS: usize = 1_000_000;
/// Most channels one tracker holds.
pub const MAX_CHANNELS: usize = 100_000;
/// Most channels one peer may be a member of.
pub const MAX_CHANNELS_PER_PEER: usize = 256;

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
}

#[derive(Debug, Clone)]
struct Lease {
    ip: IpAddr,
    port: u16,
    last_seen_ms: u64,
    channels: BTreeSet<ChannelName>,
}

#[derive(Debug, Clone, Default)]
struct Channel {
    members: BTreeSet<PeerName>,
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
}

impl Registry {
    pub fn new(ttl: std::time::Duration) -> Self {
        Self {
            ttl_ms: ttl.as_millis() as u64,
            peers: HashMap::new(),
            channels: BTreeMap::new(),
        }
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

    fn info(name: &PeerName, lease: &Lease) -> PeerInfo {
        PeerInfo {
            name: name.clone(),
            ip: lease.ip,
            port: lease.port,
            last_seen_ms: lease.last_seen_ms,
            public_key: None,
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
                lease.last_seen_ms = now;
                return Ok(Registered {
                    created: false,
                    channels: lease.channels.iter().cloned().collect(),
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
                last_seen_ms: now,
                channels: BTreeSet::new(),
            },
        );
        Ok(Registered {
            created: true,
            channels: Vec::new(),
        })
    }

    /// Puts back a lease as a store saved it (at start-up); it expires as usual from `last_seen_ms`.
    pub fn restore_lease(&mut self, name: PeerName, ip: IpAddr, port: u16, last_seen_ms: u64) {
        self.peers.insert(
            name,
            Lease {
                ip,
                port,
                last_seen_ms,
                channels: BTreeSet::new(),
            },
        );
    }

    /// Puts back a channel, and optionally one member whose lease was restored, as a store saved them.
    pub fn restore_channel(&mut self, channel: ChannelName, member: Option<PeerName>) {
        let ch = self.channels.entry(channel.clone()).or_default();
        if let Some(m) = member
            && let Some(lease) = self.peers.get_mut(&m)
        {
            lease.channels.insert(channel);
            ch.members.insert(m);
        }
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

    /// Makes a live peer a member of `channel`, creating the channel if new. Returns the live member count.
    pub fn join(
        &mut self,
        name: &PeerName,
        channel: &ChannelName,
        now: u64,
    ) -> Result<usize, RegistryError> {
        let lease = self
            .live(name, now)
            .ok_or_else(|| RegistryError::UnknownPeer(name.clone()))?;
        if !lease.channels.contains(channel) {
            if lease.channels.len() >= MAX_CHANNELS_PER_PEER {
                return Err(RegistryError::Full("this peer is in too many channels"));
            }
            if !self.channels.contains_key(channel) && self.channels.len() >= MAX_CHANNELS {
                return Err(RegistryError::Full("too many channels"));
            }
        }
        self.channels
            .entry(channel.clone())
            .or_default()
            .members
            .insert(name.clone());
        self.peers
            .get_mut(name)
            .expect("live")
            .channels
            .insert(channel.clone());
        Ok(self.live_count(channel, now))
    }

    /// Takes a peer out of a channel. The channel itself stays known.
    pub fn leave(
        &mut self,
        name: &PeerName,
        channel: &ChannelName,
        now: u64,
    ) -> Result<usize, RegistryError> {
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
        Ok(self.live_count(channel, now))
    }

    /// Removes a live peer at once (it said goodbye).
    pub fn unregister(&mut self, name: &PeerName, now: u64) -> Result<(), RegistryError> {
        self.live(name, now)
            .ok_or_else(|| RegistryError::UnknownPeer(name.clone()))?;
        self.remove(name);
        Ok(())
    }

    fn remove(&mut self, name: &PeerName) {
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

    /// The live members of a channel.
    pub fn members(&self, channel: &ChannelName, now: u64) -> Result<Vec<PeerInfo>, RegistryError> {
        let ch = self
            .channels
            .get(channel)
            .ok_or_else(|| RegistryError::UnknownChannel(channel.clone()))?;
        Ok(ch
            .members
            .iter()
            .filter_map(|m| self.live(m, now).map(|l| Self::info(m, l)))
            .collect())
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
        if !self.channels.contains_key(channel) {
            return Err(RegistryError::UnknownChannel(channel.clone()));
        }
        if !lease.channels.contains(channel) {
            return Err(RegistryError::NotMember {
                peer: name.clone(),
                channel: channel.clone(),
            });
        }
        let mut peers = self.members(channel, now)?;
        peers.retain(|p| &p.name != name);
        Ok(peers)
    }

    /// Where a live peer is.
    pub fn lookup(&self, name: &PeerName, now: u64) -> Result<PeerInfo, RegistryError> {
        self.live(name, now)
            .map(|l| Self::info(name, l))
            .ok_or_else(|| RegistryError::UnknownPeer(name.clone()))
    }

    /// Every live peer, by name.
    pub fn online(&self, now: u64) -> Vec<PeerInfo> {
        let mut v: Vec<_> = self
            .peers
            .iter()
            .filter(|(_, l)| self.is_live(l, now))
            .map(|(n, l)| Self::info(n, l))
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Every channel with its live member count.
    pub fn channels(&self, now: u64) -> Vec<ChannelSummary> {
        self.channels
            .keys()
            .map(|c| ChannelSummary {
                name: c.clone(),
                members: self.live_count(c, now),
            })
            .collect()
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

    /// Removes expired leases for good and returns their names.
    pub fn expire(&mut self, now: u64) -> Vec<PeerName> {
        self.expire_some(now, usize::MAX)
    }

    /// Removes at most `max` expired leases for good and returns their names. The sweep calls it until it returns
    /// fewer than `max`, letting go of the registry in between, so a mass expiry never stalls requests for long.
    pub fn expire_some(&mut self, now: u64, max: usize) -> Vec<PeerName> {
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
        dead
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn given_a_live_name_when_another_address_registers_it_then_it_is_refused() {
        let mut r = reg();
        assert!(r.register(&n("alice"), LO, 8000, 0).unwrap().created);
        let err = r.register(&n("alice"), LO, 8001, 10).unwrap_err();
        assert!(matches!(err, RegistryError::NameTaken { .. }));
    }

    #[test]
    fn given_a_live_peer_when_it_registers_again_then_its_lease_is_renewed_with_its_channels() {
        let mut r = reg();
        r.register(&n("alice"), LO, 8000, 0).unwrap();
        r.join(&n("alice"), &c("general"), 0).unwrap();
        let again = r.register(&n("alice"), LO, 8000, TTL - 1).unwrap();
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
        r.join(&n("alice"), &c("general"), 0).unwrap();
        r.join(&n("bob"), &c("general"), 0).unwrap();
        r.register(&n("bob"), LO, 8001, TTL / 2).unwrap();
        let now = TTL + 1;
        assert!(r.lookup(&n("alice"), now).is_err());
        assert_eq!(r.members(&c("general"), now).unwrap().len(), 1);
        assert_eq!(
            r.channels(now),
            vec![ChannelSummary {
                name: c("general"),
                members: 1
            }]
        );
        assert_eq!(r.online(now).len(), 1);
        let taken = r.register(&n("alice"), LO, 9999, now).unwrap();
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
            r.join(&n(p), &c("x"), 0).unwrap();
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
        r.join(&n("a"), &c("x"), 0).unwrap();
        r.join(&n("b"), &c("x"), 0).unwrap();
        assert_eq!(r.leave(&n("a"), &c("x"), 1).unwrap(), 1);
        assert!(matches!(
            r.leave(&n("a"), &c("x"), 1),
            Err(RegistryError::NotMember { .. })
        ));
        r.unregister(&n("b"), 2).unwrap();
        assert!(r.lookup(&n("b"), 2).is_err());
        assert_eq!(r.members(&c("x"), 2).unwrap(), vec![]);
        assert_eq!(r.channels(2).len(), 1, "an empty channel stays known");
    }

    #[test]
    fn expire_forgets_dead_leases_for_good() {
        let mut r = reg();
        r.register(&n("a"), LO, 1, 0).unwrap();
        r.join(&n("a"), &c("x"), 0).unwrap();
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
            r.join(&n(&format!("old{i}")), &c("x"), 0).unwrap();
        }
        r.register(&n("fresh"), LO, 9, TTL).unwrap();
        r.join(&n("fresh"), &c("x"), TTL).unwrap();
        let sizes: Vec<usize> = (0..4).map(|_| r.expire_some(TTL, 2).len()).collect();
        assert_eq!(sizes, vec![2, 2, 1, 0]);
        assert_eq!(r.held(), 1);
        assert_eq!(r.members(&c("x"), TTL).unwrap().len(), 1);
    }

    #[test]
    fn joining_needs_a_live_peer() {
        let mut r = reg();
        assert!(matches!(
            r.join(&n("ghost"), &c("x"), 0),
            Err(RegistryError::UnknownPeer(_))
        ));
        assert!(
            r.channels(0).is_empty(),
            "a refused join creates no channel"
        );
    }
}
