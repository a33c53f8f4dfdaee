//! [`TrackerState`]: the registry, the mailboxes and the identities, and the verbs that touch more than one of them
//! (a registration binds the name, renews the lease and opens the mailbox; the sweep expires across all three).
//! Like its parts, every verb is pure (time is given) and returns its answer with what it changed ([`Change`]s, in
//! order), which the caller queues for the store before it answers.

use std::net::IpAddr;

use super::TrackerConfig;
use super::identities::{BindError, Identities};
use super::mailbox::{MailEntry, MailboxError, Mailboxes};
use super::quota::Origin;
use super::registry::{Registered, Registry, RegistryError};
use super::store::{Change, Store, StoreError};
use crate::identity::PublicKey;
use crate::proto::{MailKey, MessageId, PeerInfo, PeerName};

/// Never-used names unbound per sweep: each one is looked for on every channel's lists, so a few at a time.
const NAMES_EXPIRED_PER_SWEEP: usize = 100;

/// The tracker's state: who is online and where, channels, mailboxes, and which key each name belongs to.
pub struct TrackerState {
    pub registry: Registry,
    pub mailboxes: Mailboxes,
    pub identities: Identities,
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
        // The key's holder whose host changed address: its lease follows it (issue 14).
        if self.registry.follow_move(name, (ip, port), origin, now) {
            tracing::info!(peer = %name, %ip, port, "a live peer moved to a new address");
        }
        let ttl_secs = self.registry.ttl().as_secs().max(1);
        let (registered, lease) = self.registry.register(name, ip, port, now)?;
        self.registry.set_quic_port(name, quic_port);
        self.mailboxes.open(name);
        let mut changes: Vec<Change> = self
            .identities
            .registered(name, key, origin, now, free)
            .into_iter()
            .collect();
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
            changes.push(Change::Forgotten { channels: gone });
        }
        changes
    }
}
