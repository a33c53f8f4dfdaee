//! Where the tracker keeps its registry between restarts.
//!
//! The registry is the truth while the tracker runs; a [`Store`] is told every change the registry accepts and
//! hands the saved state back at start-up. [`MemoryStore`] keeps nothing (a restarted tracker starts empty and
//! peers re-register on their own); a persistent store plugs in behind the same trait.

use std::net::IpAddr;

use super::registry::Registry;
use crate::proto::{ChannelName, PeerName};

/// A change the registry has accepted, in the order it was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Registered {
        name: PeerName,
        ip: IpAddr,
        port: u16,
        at_ms: u64,
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
}

#[derive(Debug, thiserror::Error)]
#[error("tracker store: {0}")]
pub struct StoreError(pub String);

/// Keeps the tracker's state across restarts.
pub trait Store: Send + 'static {
    /// The registry as it was last saved (empty on first start).
    fn load(&mut self, ttl: std::time::Duration) -> Result<Registry, StoreError>;
    /// Records a change the registry has just accepted.
    fn record(&mut self, change: &Change) -> Result<(), StoreError>;
}

/// Keeps nothing: a restarted tracker starts empty.
#[derive(Debug, Default)]
pub struct MemoryStore;

impl Store for MemoryStore {
    fn load(&mut self, ttl: std::time::Duration) -> Result<Registry, StoreError> {
        Ok(Registry::new(ttl))
    }
    fn record(&mut self, _change: &Change) -> Result<(), StoreError> {
        Ok(())
    }
}
