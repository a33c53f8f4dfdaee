//! Pinned peer keys (issue 13): the key each name was first seen with, kept in the store (`peer_keys`), like
//! SSH's known_hosts. The tracker vouches for keys; a pin keeps it honest: once this node has talked with bob
//! under one key, a tracker that later vouches for another key for bob (a tracker that lost or rewrote its
//! bindings, or someone who took bob's name there) is refused, loudly, and nothing is sent to or accepted from bob
//! until the user has compared fingerprints with bob out of band and typed `/forget-key bob`.
//!
//! A name is pinned the first time a key vouched for it is used: a message sent to it or received from it, by any
//! path. The pins live in memory too (every message is checked against them) and are written through to the store.

use std::collections::{HashMap, HashSet};

/// Names pinned at most. Past it a new name is taken on the tracker's word (and logged) rather than forgetting
/// a pin, which would undo what pinning is for; a peer exchanges messages with far fewer names.
pub(crate) const MAX_PINS: usize = 100_000;
use std::sync::Mutex;

use serde::Serialize;

use super::{Node, NodeError};
use crate::identity::PublicKey;
use crate::proto::{PeerName, now_ms, utc_minute};
use crate::sync::lock;

/// The pins, as the store holds them, and which changed keys were already reported (one warning per name and key).
#[derive(Default)]
pub(super) struct Pins {
    keys: Mutex<HashMap<PeerName, (PublicKey, u64)>>,
    warned: Mutex<HashSet<(PeerName, PublicKey)>>,
}

/// A key held against the pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Pin {
    /// First sight: pinned now, at `since` (Unix ms).
    New { since: u64 },
    /// First sight, but [`MAX_PINS`] names are pinned already: not pinned.
    Unpinned,
    /// The pinned key.
    Same,
    /// Another key than the one pinned since `since` (Unix ms).
    Changed { pinned: PublicKey, since: u64 },
}

impl Pins {
    pub(super) fn load(&self, pins: Vec<(PeerName, PublicKey, u64)>) {
        let mut keys = lock(&self.keys);
        for (name, key, since) in pins {
            keys.insert(name, (key, since));
        }
    }

    /// Holds `key` against the pin for `name`, pinning it if there is none.
    pub(super) fn check(&self, name: &PeerName, key: PublicKey) -> Pin {
        let mut keys = lock(&self.keys);
        match keys.get(name) {
            None if keys.len() >= MAX_PINS => {
                tracing::warn!(
                    "{MAX_PINS} keys are pinned already; {name}'s is taken on the tracker's word"
                );
                Pin::Unpinned
            }
            None => {
                let since = now_ms();
                keys.insert(name.clone(), (key, since));
                Pin::New { since }
            }
            Some((pinned, _)) if *pinned == key => Pin::Same,
            Some((pinned, since)) => Pin::Changed {
                pinned: *pinned,
                since: *since,
            },
        }
    }

    pub(super) fn get(&self, name: &PeerName) -> Option<(PublicKey, u64)> {
        lock(&self.keys).get(name).copied()
    }

    fn forget(&self, name: &PeerName) -> bool {
        lock(&self.warned).retain(|(n, _)| n != name);
        lock(&self.keys).remove(name).is_some()
    }

    /// True the first time `key` is reported as a change for `name` (remembered for at most [`MAX_PINS`]
    /// changes; past that, reported again).
    fn first_warning(&self, name: &PeerName, key: PublicKey) -> bool {
        let mut warned = lock(&self.warned);
        if warned.len() >= MAX_PINS {
            warned.clear();
        }
        warned.insert((name.clone(), key))
    }
}

/// What `/whois` shows: the key pinned for a name (and since when), and the one the tracker vouches for now.
#[derive(Debug, Clone, Serialize)]
pub struct Whois {
    pub name: PeerName,
    /// The pinned key's fingerprint, and since when (Unix ms); absent if this node has not talked with the name.
    pub pinned: Option<(String, u64)>,
    /// The fingerprint of the key the tracker vouches for now (absent: it knows none, or cannot be reached).
    pub vouched: Option<String>,
}

impl Node {
    /// Whether `key` may stand for `name`: yes on first sight (then it is pinned) and for the pinned key; not for
    /// another key, which is reported once, loudly (a warning in the log and a notice to the user).
    pub(super) async fn pin_check(&self, name: &PeerName, key: PublicKey) -> bool {
        match self.inner.pins.check(name, key) {
            Pin::Same | Pin::Unpinned => true,
            Pin::New { since } => {
                // Kept before it is used; if it cannot be kept, it still holds in memory until the node stops.
                if let Err(e) = self.inner.store.pin(name, key, since).await {
                    tracing::error!(peer = %self.name(), "cannot keep {name}'s key: {e}");
                }
                true
            }
            Pin::Changed { pinned, since } => {
                if self.inner.pins.first_warning(name, key) {
                    let line = key_changed_line(name, &pinned, since, &key);
                    tracing::warn!(peer = %self.name(), "{line}");
                    self.notice(line);
                }
                false
            }
        }
    }

    /// The sentence a refusal because of a changed key carries.
    pub(super) fn key_changed(&self, name: &PeerName) -> String {
        format!(
            "{name}'s key is not the one pinned here; see /whois {name}, then /forget-key {name} if it is right"
        )
    }

    /// Forgets the key pinned for `name`: the next key the tracker vouches for is pinned instead. Whether one was
    /// pinned.
    pub async fn forget_key(&self, name: &PeerName) -> Result<bool, NodeError> {
        let had = self.inner.pins.forget(name);
        let stored = self.inner.store.unpin(name).await?;
        // Ask the tracker afresh, rather than trust a key cached before.
        self.inner.directory.forget(name);
        self.inner.directory.forget_key(name);
        Ok(had || stored)
    }

    /// The key pinned for `name` and the one the tracker vouches for now, to compare out of band.
    pub async fn whois(&self, name: &PeerName) -> Whois {
        let vouched = self.inner.tracker.identity(name).await.ok();
        Whois {
            name: name.clone(),
            pinned: self
                .inner
                .pins
                .get(name)
                .map(|(k, since)| (k.fingerprint(), since)),
            vouched: vouched.map(|k| k.fingerprint()),
        }
    }

    /// The key to show for `name`: the pinned one if any, else `vouched`.
    pub(super) fn shown_key(
        &self,
        name: &PeerName,
        vouched: Option<PublicKey>,
    ) -> Option<PublicKey> {
        self.inner.pins.get(name).map(|(k, _)| k).or(vouched)
    }
}

/// One line: whose key changed, both fingerprints, and what to do.
fn key_changed_line(name: &PeerName, pinned: &PublicKey, since: u64, now: &PublicKey) -> String {
    format!(
        "WARNING: the tracker now vouches for another key for {name} ({}) than the one pinned on {} ({}); nothing is sent to or accepted from {name} until you compare fingerprints with {name} out of band (/whois {name}) and, if the new one is right, type /forget-key {name}",
        now.fingerprint(),
        utc_minute(since),
        pinned.fingerprint(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> PeerName {
        PeerName::new(s).unwrap()
    }

    #[test]
    fn the_first_key_is_pinned_and_another_is_a_change_until_forgotten() {
        let pins = Pins::default();
        let (a, b) = (
            crate::identity::Identity::ephemeral().public_key(),
            crate::identity::Identity::ephemeral().public_key(),
        );
        assert!(matches!(pins.check(&n("bob"), a), Pin::New { .. }));
        assert_eq!(pins.check(&n("bob"), a), Pin::Same);
        assert!(matches!(pins.check(&n("bob"), b), Pin::Changed { pinned, .. } if pinned == a));
        assert!(pins.first_warning(&n("bob"), b));
        assert!(!pins.first_warning(&n("bob"), b), "one warning per key");
        assert!(pins.forget(&n("bob")));
        assert!(matches!(pins.check(&n("bob"), b), Pin::New { .. }));
        assert!(
            matches!(pins.check(&n("carol"), a), Pin::New { .. }),
            "per name"
        );
    }

    #[test]
    fn the_pins_are_bounded_and_keep_what_they_hold() {
        let pins = Pins::default();
        let key = crate::identity::Identity::ephemeral().public_key();
        let other = crate::identity::Identity::ephemeral().public_key();
        for i in 0..MAX_PINS {
            pins.check(&n(&format!("p{i}")), key);
        }
        assert_eq!(pins.check(&n("late"), key), Pin::Unpinned);
        assert!(
            matches!(pins.check(&n("p0"), other), Pin::Changed { .. }),
            "no pin was dropped"
        );
        assert_eq!(lock(&pins.keys).len(), MAX_PINS);
    }

    #[test]
    fn a_pin_date_reads_in_utc() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_minute(1_764_212_640_000), "2025-11-27 03:04 UTC");
    }
}
