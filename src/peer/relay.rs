//! The peer's side of the relay (docs/SESSIONS.md, 12): when another peer cannot be reached directly, the session
//! with it goes through the tracker, encrypted end to end ([`crate::link::relay`] does the carrying).
//!
//! - [`Node::keep_relay`] keeps one relay stream open over this peer's session with its tracker, for as long as
//!   the node runs (opened again when the session is), so others can reach this peer through the relay.
//! - [`Paths`] remembers, per peer, whether the last session used with it was relayed, and tells the front ends
//!   when that changes ([`Event::Path`]): the CLI prints `* @bob: via relay`, the page marks the member and the
//!   conversation.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::Node;
use super::events::Event;
use crate::identity::PublicKey;
use crate::link::relay::{self, PortCounts};
use crate::proto::PeerName;
use crate::sync::lock;

/// Peers whose path is remembered at most (beyond, a new peer's path is shown but not remembered).
pub(super) const MAX_PATHS: usize = 4096;
/// After a relay stream ends or is refused, another is opened this long after.
const RELAY_REOPEN: Duration = Duration::from_secs(1);

/// Whether the session last used with each peer (by name, with its key) was relayed.
#[derive(Debug, Default)]
pub(super) struct Paths(Mutex<HashMap<PeerName, (PublicKey, bool)>>);

impl Node {
    /// Keeps a relay stream open with the tracker until the node stops.
    pub(super) async fn keep_relay(self) {
        let Some(port) = self.inner.link.as_ref().and_then(|e| e.relay().cloned()) else {
            return;
        };
        let stop = self.inner.shutdown.clone();
        while !stop.is_cancelled() {
            if let Ok(Some(link)) = self.inner.tracker.link().await {
                tokio::select! {
                    r = relay::carry(&link, &port) => {
                        if let Err(e) = r {
                            tracing::debug!(peer = %self.name(), "relay stream: {e}");
                        }
                    }
                    _ = stop.cancelled() => return,
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(RELAY_REOPEN) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    /// Follows the endpoint's sessions as they move on or off the relay (a relayed session that found the direct
    /// path, on either side), for the peers whose path is known.
    pub(super) async fn watch_paths(self) {
        let Some(mut changes) = self.inner.link.as_ref().map(|e| e.path_changes()) else {
            return;
        };
        let stop = self.inner.shutdown.clone();
        loop {
            let change = tokio::select! {
                c = changes.recv() => c,
                _ = stop.cancelled() => return,
            };
            let (key, relayed) = match change {
                Ok(c) => c,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            let peers: Vec<PeerName> = lock(&self.inner.paths.0)
                .iter()
                .filter(|(_, (k, _))| *k == key)
                .map(|(p, _)| p.clone())
                .collect();
            for p in peers {
                self.note_path(&p, key, relayed);
            }
        }
    }

    /// Records that the session with `peer` (`key`) is (or is not) relayed now; tells the front ends when that
    /// changed.
    pub(super) fn note_path(&self, peer: &PeerName, key: PublicKey, relayed: bool) {
        let changed = {
            let mut paths = lock(&self.inner.paths.0);
            match paths.get(peer) {
                Some((_, was)) => {
                    let changed = *was != relayed;
                    paths.insert(peer.clone(), (key, relayed));
                    changed
                }
                None => {
                    if paths.len() < MAX_PATHS {
                        paths.insert(peer.clone(), (key, relayed));
                    }
                    relayed
                }
            }
        };
        if changed {
            tracing::info!(peer = %self.name(), with = %peer, relayed, "the session's path changed");
            self.inner.events.publish(Event::Path {
                peer: peer.clone(),
                relayed,
            });
        }
    }

    /// The peers whose session goes through the relay now, by name.
    pub fn via_relay(&self) -> Vec<PeerName> {
        let mut v: Vec<PeerName> = lock(&self.inner.paths.0)
            .iter()
            .filter(|(_, (_, r))| *r)
            .map(|(p, _)| p.clone())
            .collect();
        v.sort();
        v
    }

    /// What this node's relay carried, if its sessions can be relayed.
    pub fn relay_counts(&self) -> Option<PortCounts> {
        Some(self.inner.link.as_ref()?.relay()?.counts())
    }
}
