//! The node's directory: where the peers it talks to are, their keys as the tracker vouched for them, and the last
//! fan-out list of each channel. What lets chat go on for a while when the tracker is down. Each map has its own
//! lock, held only inside these verbs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::proto::{ChannelName, PeerInfo, PeerName, PublicKey};
use crate::sync::lock;

/// A positive answer about a peer is trusted this long before the tracker is asked again.
const KNOWN_PEER_FRESH: Duration = Duration::from_secs(10);
/// Senders' keys kept at most (a name's key never changes while the tracker keeps its bindings).
pub const MAX_KEY_CACHE: usize = 10_000;

/// A sender's key as the tracker vouched for it (`None`: it said no key is bound to the name), and since when.
pub(super) type VouchedKey = (Option<PublicKey>, Instant);

#[derive(Default)]
pub(super) struct Directory {
    /// Peers the tracker vouched for recently, and when.
    known: Mutex<HashMap<PeerName, (PeerInfo, Instant)>>,
    /// Bounded by [`MAX_KEY_CACHE`].
    keys: Mutex<HashMap<PeerName, VouchedKey>>,
    last_fan_out: Mutex<HashMap<ChannelName, Vec<PeerInfo>>>,
}

impl Directory {
    /// Keeps where `peers` are (and their keys), as the tracker just said.
    pub(super) fn remember(&self, peers: &[PeerInfo]) {
        let now = Instant::now();
        let mut known = lock(&self.known);
        for p in peers {
            known.insert(p.name.clone(), (p.clone(), now));
            if p.public_key.is_some() {
                self.cache_key(p.name.clone(), p.public_key);
            }
        }
    }

    /// Where `peer` is, if the tracker said so recently enough to skip asking it again.
    pub(super) fn fresh(&self, peer: &PeerName) -> Option<PeerInfo> {
        lock(&self.known)
            .get(peer)
            .filter(|(_, at)| at.elapsed() < KNOWN_PEER_FRESH)
            .map(|(info, _)| info.clone())
    }

    /// The last address known for `peer`, however old: the best guess while the tracker is down.
    pub(super) fn last_known(&self, peer: &PeerName) -> Option<PeerInfo> {
        lock(&self.known).get(peer).map(|(info, _)| info.clone())
    }

    /// Forgets where `peer` was (its address failed, or the tracker says it is offline).
    pub(super) fn forget(&self, peer: &PeerName) {
        lock(&self.known).remove(peer);
    }

    /// Keeps a sender's key as the tracker vouched for it (`None`: the tracker knows no key for the name).
    pub(super) fn cache_key(&self, name: PeerName, key: Option<PublicKey>) {
        let mut keys = lock(&self.keys);
        if keys.len() >= MAX_KEY_CACHE && !keys.contains_key(&name) {
            let oldest = keys
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(n, _)| n.clone());
            if let Some(n) = oldest {
                keys.remove(&n);
            }
        }
        keys.insert(name, (key, Instant::now()));
    }

    /// Forgets the cached key of `name`: the tracker is asked again.
    pub(super) fn forget_key(&self, name: &PeerName) {
        lock(&self.keys).remove(name);
    }

    /// `name`'s key as last vouched for, if any answer is cached.
    pub(super) fn key_of(&self, name: &PeerName) -> Option<VouchedKey> {
        lock(&self.keys).get(name).copied()
    }

    /// Keeps a channel's fan-out list, as the tracker just gave it.
    pub(super) fn set_fan_out(&self, channel: &ChannelName, peers: Vec<PeerInfo>) {
        lock(&self.last_fan_out).insert(channel.clone(), peers);
    }

    /// The last fan-out list the tracker gave for `channel`.
    pub(super) fn last_fan_out(&self, channel: &ChannelName) -> Option<Vec<PeerInfo>> {
        lock(&self.last_fan_out).get(channel).cloned()
    }

    /// This node left `channel`: its fan-out list is no longer of use.
    pub(super) fn forget_channel(&self, channel: &ChannelName) {
        lock(&self.last_fan_out).remove(channel);
    }
}
