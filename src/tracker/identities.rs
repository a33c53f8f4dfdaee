//! Which key each name belongs to. The first key to register a name owns it for good: the binding is recorded in
//! the tracker's store and restored on restart, so nobody can take a name over by waiting for its lease to lapse
//! or for the tracker to restart. Pure state, unit-tested here.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use super::quota::{self, Origin, QuotaError, Quotas};
use super::store::Change;
use crate::identity::PublicKey;
use crate::proto::PeerName;

/// Most names bound at once (as many as the registry holds peers).
pub(crate) const MAX_IDENTITIES: usize = super::registry::MAX_PEERS;

/// Why a binding is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    #[error(
        "name {0} belongs to another identity; start with its data dir (its identity.key) or pick another name"
    )]
    NameTaken(PeerName),
    #[error(
        "the name {name} looks like {like}, which is already taken (names differing only in case or in lookalike characters such as I/l/1, O/0, rn/m are one name); pick a name that looks different"
    )]
    Confusable { name: PeerName, like: PeerName },
    #[error("the tracker is full: too many identities")]
    Full,
    #[error(transparent)]
    Quota(#[from] QuotaError),
}

/// One name's binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub key: PublicKey,
    /// When the name was bound (0 for names bound before this was recorded).
    pub bound_ms: u64,
    /// The name registered again at least [`quota::NAME_USED_AFTER`] after it was bound: it is kept for good.
    pub used: bool,
    /// The client address that bound it (`None`: the tracker's own host, or not recorded).
    pub origin: Origin,
}

/// Names and the keys they are bound to (32 bytes a key), with what the quotas need to know about each binding.
#[derive(Debug, Default, Clone)]
pub struct Identities {
    keys: HashMap<PeerName, Binding>,
    /// Every bound name by its skeleton (more than one only for names bound before lookalikes were refused).
    skeletons: HashMap<String, Vec<PeerName>>,
    /// When each client address bound its names within the last [`quota::NAME_WINDOW`], oldest first.
    recent: HashMap<IpAddr, VecDeque<u64>>,
    quotas: Quotas,
}

impl Identities {
    pub fn new(quotas: Quotas) -> Self {
        Self {
            quotas,
            ..Self::default()
        }
    }

    pub fn set_quotas(&mut self, quotas: Quotas) {
        self.quotas = quotas;
    }

    /// The key `name` is bound to.
    pub fn key_of(&self, name: &PeerName) -> Option<PublicKey> {
        self.keys.get(name).map(|b| b.key)
    }

    /// The names bound to `key` (a scan of every binding: the relay asks once per key every few seconds).
    pub fn names_of(&self, key: &PublicKey) -> Vec<PeerName> {
        self.keys
            .iter()
            .filter(|(_, b)| b.key == *key)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// May `key` act as `name`, registering from `origin` at `now`? `Ok(true)` when the name is free and
    /// [`Identities::registered`] must bind it once the registration is accepted; `Ok(false)` when it is already
    /// `key`'s. A free name that looks like a bound one, or one more new name from an address that
    /// bound its hourly quota, is refused.
    pub fn check(
        &mut self,
        name: &PeerName,
        key: PublicKey,
        origin: Origin,
        now: u64,
    ) -> Result<bool, BindError> {
        match self.keys.get(name) {
            Some(b) if b.key == key => return Ok(false),
            Some(_) => return Err(BindError::NameTaken(name.clone())),
            None => {}
        }
        if let Some(like) = self.skeletons.get(&name.skeleton()).and_then(|v| v.first()) {
            return Err(BindError::Confusable {
                name: name.clone(),
                like: like.clone(),
            });
        }
        if self.keys.len() >= MAX_IDENTITIES {
            return Err(BindError::Full);
        }
        if let Some(ip) = origin {
            let window = quota::ms(quota::NAME_WINDOW);
            let limit = self.quotas.names_per_address_per_hour;
            if let Some(times) = self.recent.get_mut(&ip) {
                while times
                    .front()
                    .is_some_and(|t| now.saturating_sub(*t) >= window)
                {
                    times.pop_front();
                }
                if times.len() >= limit {
                    let oldest = times.front().copied().unwrap_or(now);
                    let wait = (oldest + window).saturating_sub(now);
                    return Err(QuotaError::Names {
                        addr: ip,
                        limit,
                        retry_mins: wait.div_ceil(60_000).max(1),
                    }
                    .into());
                }
            }
        }
        Ok(true)
    }

    /// Binds a free name to `key` (after [`Identities::check`]) from `origin` at `now`.
    pub fn bind(&mut self, name: PeerName, key: PublicKey, origin: Origin, now: u64) {
        self.restore(
            name,
            Binding {
                key,
                bound_ms: now,
                used: false,
                origin,
            },
        );
    }

    /// `name` registered with `key` from `origin` at `now`, after [`Identities::check`] said whether it was `free`:
    /// a free name is bound to the key; a bound one may become used ([`Identities::seen`]). Returns what to record.
    pub fn registered(
        &mut self,
        name: &PeerName,
        key: PublicKey,
        origin: Origin,
        now: u64,
        free: bool,
    ) -> Option<Change> {
        if free {
            self.bind(name.clone(), key, origin, now);
            tracing::info!(peer = %name, %key, "name bound to its key");
            Some(Change::Bound {
                name: name.clone(),
                key,
                at_ms: now,
                origin,
            })
        } else if self.seen(name, now) {
            Some(Change::NameUsed { name: name.clone() })
        } else {
            None
        }
    }

    /// Puts back a binding as a store saved it (a name already bound keeps its first key).
    pub fn restore(&mut self, name: PeerName, binding: Binding) {
        if self.keys.contains_key(&name) {
            return;
        }
        if let Some(ip) = binding.origin {
            let times = self.recent.entry(ip).or_default();
            let at = times.partition_point(|t| *t <= binding.bound_ms);
            times.insert(at, binding.bound_ms);
        }
        // Grown one name at a time: almost every skeleton has one name, and a vector's first push makes room for
        // four (72 bytes a peer wasted, docs/BENCHMARKS.md, figure 4).
        let names = self.skeletons.entry(name.skeleton()).or_default();
        names.reserve_exact(1);
        names.push(name.clone());
        self.keys.insert(name, binding);
    }

    /// The bound name registered at `now`: returns true when that makes it *used* for the first time (to be
    /// recorded: a used name is kept for good).
    pub fn seen(&mut self, name: &PeerName, now: u64) -> bool {
        match self.keys.get_mut(name) {
            Some(b)
                if !b.used
                    && now.saturating_sub(b.bound_ms) >= quota::ms(quota::NAME_USED_AFTER) =>
            {
                b.used = true;
                true
            }
            _ => false,
        }
    }

    /// Marks a name used (as a store saved it).
    pub fn restore_used(&mut self, name: &PeerName) {
        if let Some(b) = self.keys.get_mut(name) {
            b.used = true;
        }
    }

    pub fn binding(&self, name: &PeerName) -> Option<&Binding> {
        self.keys.get(name)
    }

    /// Unbinds at most `max` names that were never used and were bound longer than the unused-name expiry ago,
    /// skipping any `in_use` says is live; returns them. The name is free again (for anyone) afterwards.
    pub fn expire_unused(
        &mut self,
        now: u64,
        max: usize,
        in_use: impl Fn(&PeerName) -> bool,
    ) -> Vec<PeerName> {
        let after = quota::ms(self.quotas.unused_name_expiry);
        let dead: Vec<PeerName> = self
            .keys
            .iter()
            .filter(|(n, b)| !b.used && now.saturating_sub(b.bound_ms) >= after && !in_use(n))
            .take(max)
            .map(|(n, _)| n.clone())
            .collect();
        for n in &dead {
            self.keys.remove(n);
            let skel = n.skeleton();
            if let Some(v) = self.skeletons.get_mut(&skel) {
                v.retain(|x| x != n);
                if v.is_empty() {
                    self.skeletons.remove(&skel);
                }
            }
        }
        let window = quota::ms(quota::NAME_WINDOW);
        self.recent.retain(|_, times| {
            while times
                .front()
                .is_some_and(|t| now.saturating_sub(*t) >= window)
            {
                times.pop_front();
            }
            !times.is_empty()
        });
        dead
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    #[test]
    fn given_a_bound_name_when_another_key_claims_it_then_it_is_refused_and_the_owner_keeps_it() {
        let mut ids = Identities::default();
        let alice = PeerName::new("alice").unwrap();
        let (k1, k2) = (
            Identity::ephemeral().public_key(),
            Identity::ephemeral().public_key(),
        );
        assert_eq!(ids.check(&alice, k1, None, 0), Ok(true));
        ids.bind(alice.clone(), k1, None, 0);
        assert_eq!(ids.check(&alice, k1, None, 0), Ok(false));
        assert_eq!(
            ids.check(&alice, k2, None, 0),
            Err(BindError::NameTaken(alice.clone()))
        );
        ids.bind(alice.clone(), k2, None, 0);
        assert_eq!(
            ids.key_of(&alice),
            Some(k1),
            "a bound name is never rebound"
        );
    }

    fn n(s: &str) -> PeerName {
        PeerName::new(s).unwrap()
    }
    fn key() -> PublicKey {
        Identity::ephemeral().public_key()
    }
    const HOST: Origin = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)));
    const HOUR: u64 = 3_600_000;
    const DAY: u64 = 24 * HOUR;

    #[test]
    fn given_alice_bound_when_a_lookalike_registers_then_it_is_refused_naming_alice() {
        let mut ids = Identities::default();
        ids.bind(n("alice"), key(), None, 0);
        for like in ["aIice", "Alice", "ALICE", "a1ice"] {
            assert_eq!(
                ids.check(&n(like), key(), None, 1),
                Err(BindError::Confusable {
                    name: n(like),
                    like: n("alice")
                })
            );
        }
        assert_eq!(ids.check(&n("alicia"), key(), None, 1), Ok(true));
    }

    #[test]
    fn given_lookalikes_bound_before_the_rule_then_both_keep_working() {
        let mut ids = Identities::default();
        let (k1, k2) = (key(), key());
        ids.restore(
            n("alice"),
            Binding {
                key: k1,
                bound_ms: 0,
                used: true,
                origin: None,
            },
        );
        ids.restore(
            n("aIice"),
            Binding {
                key: k2,
                bound_ms: 0,
                used: true,
                origin: None,
            },
        );
        assert_eq!(ids.check(&n("alice"), k1, None, 1), Ok(false));
        assert_eq!(ids.check(&n("aIice"), k2, None, 1), Ok(false));
    }

    #[test]
    fn given_an_address_that_bound_its_hourly_quota_then_the_next_name_waits_and_others_are_not_held_back()
     {
        let mut ids = Identities::new(Quotas {
            names_per_address_per_hour: 10,
            ..Quotas::default()
        });
        for i in 0..10 {
            let name = n(&format!("p{i}"));
            assert_eq!(ids.check(&name, key(), HOST, i), Ok(true), "{i}");
            ids.bind(name, key(), HOST, i);
        }
        assert!(matches!(
            ids.check(&n("p10"), key(), HOST, 10),
            Err(BindError::Quota(QuotaError::Names {
                limit: 10,
                retry_mins: 60,
                ..
            }))
        ));
        let other = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 3)));
        assert_eq!(ids.check(&n("q"), key(), other, 10), Ok(true));
        assert_eq!(
            ids.check(&n("q"), key(), None, 10),
            Ok(true),
            "this host is not held to it"
        );
        assert_eq!(
            ids.check(&n("p10"), key(), HOST, HOUR),
            Ok(true),
            "an hour later"
        );
    }

    #[test]
    fn given_a_name_never_used_then_it_expires_and_a_used_or_live_one_stays() {
        let mut ids = Identities::default();
        for name in ["once", "back", "live"] {
            ids.bind(n(name), key(), HOST, 0);
        }
        assert!(
            !ids.seen(&n("back"), HOUR),
            "the same day is not coming back"
        );
        assert!(ids.seen(&n("back"), DAY));
        assert!(!ids.seen(&n("back"), DAY + 1), "recorded once");
        let expiry = quota::ms(quota::DEFAULT_UNUSED_NAME_EXPIRY);
        assert!(ids.expire_unused(expiry - 1, 10, |_| false).is_empty());
        assert_eq!(
            ids.expire_unused(expiry, 10, |p| p.as_str() == "live"),
            vec![n("once")]
        );
        assert_eq!(ids.key_of(&n("once")), None);
        assert_eq!(
            ids.check(&n("once"), key(), None, expiry),
            Ok(true),
            "free again"
        );
        assert!(ids.key_of(&n("back")).is_some());
    }
}
