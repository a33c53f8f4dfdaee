//! Where the tracker keeps its state between restarts.
//!
//! The [`Registry`] and the [`Mailboxes`] are the truth while the tracker runs; a [`Store`] is told every change
//! they accept, in the order they accepted them, and hands the saved state back at start-up. A request is answered
//! only after its change is recorded, so what a peer was told survives a crash of the tracker.
//! [`MemoryStore`] keeps nothing (a restarted tracker starts empty and peers re-register on their own);
//! [`SqliteStore`](super::sqlite_store::SqliteStore) keeps everything in `<data-dir>/tracker.sqlite3`.

use std::net::IpAddr;
use std::time::Duration;

use super::acl::{AclList, KeyHash};
use super::identities::Identities;
use super::mailbox::{MailEntry, Mailboxes};
use super::quota::Origin;
use super::registry::{Presence, Registry};
use crate::proto::{ChannelMode, ChannelName, MailKey, PeerName, PublicKey};

/// A change the registry or the mailboxes have accepted, in the order it was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Registered {
        name: PeerName,
        ip: IpAddr,
        port: u16,
        at_ms: u64,
        /// A new lease (not a renewal): the name starts with no channels.
        created: bool,
        /// The session port the peer advertised (`None`: none); stored, so a restarted tracker still answers it.
        quic_port: Option<u16>,
        /// A renewal that changed the live lease's address or session port: the lists it is in are pushed to
        /// their subscribers at once (not stored: only the running tracker acts on it).
        moved: bool,
    },
    Joined {
        name: PeerName,
        channel: ChannelName,
        at_ms: u64,
    },
    Left {
        name: PeerName,
        channel: ChannelName,
    },
    Unregistered {
        name: PeerName,
    },
    Expired {
        names: Vec<PeerName>,
    },
    Deposited {
        to: PeerName,
        entries: Vec<MailEntry>,
    },
    /// `name` acknowledged these entries (each by depositor and id); they are deleted.
    Acked {
        name: PeerName,
        keys: Vec<MailKey>,
    },
    /// A join created the channel: its creator owns it (asking from `origin`, counted against its quotas).
    Owned {
        channel: ChannelName,
        owner: PeerName,
        origin: Origin,
    },
    /// The sweep found these channels empty at `at_ms` (a join makes them non-empty again).
    Emptied {
        channels: Vec<ChannelName>,
        at_ms: u64,
    },
    /// Channels empty for longer than their expiry: forgotten with their rules and lists.
    Forgotten {
        channels: Vec<ChannelName>,
    },
    /// Mail deposited at or before `cutoff_ms` was held for its whole time and dropped.
    MailExpired {
        cutoff_ms: u64,
    },
    /// A name registered again a day or more after it was bound: it is kept for good.
    NameUsed {
        name: PeerName,
    },
    /// Names bound and never used, unbound after their expiry with everything about them.
    NamesExpired {
        names: Vec<PeerName>,
    },
    /// The owner set the mode (and, for `key`, the salted hash of the key; never the key).
    ModeSet {
        channel: ChannelName,
        mode: ChannelMode,
        key: Option<KeyHash>,
    },
    /// A name was put on (`on`) or taken off one of a channel's lists.
    Listed {
        channel: ChannelName,
        list: AclList,
        peer: PeerName,
        on: bool,
    },
    /// A peer's presence (`None`: plain online).
    PresenceSet {
        name: PeerName,
        presence: Option<Presence>,
    },
    /// A name was claimed by a key for the first time, at `at_ms` from `origin`: it belongs to that key (for good
    /// once it is used).
    Bound {
        name: PeerName,
        key: PublicKey,
        at_ms: u64,
        origin: Origin,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("tracker store: {0}")]
pub struct StoreError(pub String);

impl From<crate::storage::DbError> for StoreError {
    fn from(e: crate::storage::DbError) -> Self {
        StoreError(e.to_string())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

/// Keeps the tracker's state across restarts. Runs on the tracker's store thread, never on an async one.
pub(crate) trait Store: Send + 'static {
    /// The state as it was last saved (empty on first start).
    fn load(
        &mut self,
        ttl: Duration,
        mailbox_limit: usize,
    ) -> Result<(Registry, Mailboxes), StoreError>;
    /// The name-to-key bindings as last saved (none on first start, or when nothing is kept).
    fn load_identities(&mut self) -> Result<Identities, StoreError> {
        Ok(Identities::default())
    }
    /// Records changes just accepted, all or none, durably before it returns.
    fn record(&mut self, changes: &[Change]) -> Result<(), StoreError>;
}

/// Keeps nothing: a restarted tracker starts empty.
#[derive(Debug, Default)]
pub(crate) struct MemoryStore;

impl Store for MemoryStore {
    fn load(
        &mut self,
        ttl: Duration,
        mailbox_limit: usize,
    ) -> Result<(Registry, Mailboxes), StoreError> {
        Ok((Registry::new(ttl), Mailboxes::new(mailbox_limit)))
    }
    fn record(&mut self, _changes: &[Change]) -> Result<(), StoreError> {
        Ok(())
    }
}
