//! One connection per remote key, whoever opened it, used both ways; dropped when it closes (idle, or the other
//! side went away), and bounded: past the limit the least recently used is closed.
//!
//! When both sides dial each other at once there are briefly two connections. Both sides keep the same one:
//! the one dialled by the smaller key (bytes compared). Otherwise the newer connection replaces the older: a
//! node that dials while we hold a connection to it has lost its side of ours (it restarted, or evicted it),
//! so ours is stale. A replaced connection is not closed at once: what is in flight on it finishes, then it
//! idles out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{CLOSE_EVICTED, HANDSHAKE_TIMEOUT, Link};
use crate::identity::PublicKey;

/// Two connections between the same pair born closer together than this were dialled at once.
const SIMULTANEOUS: Duration = HANDSHAKE_TIMEOUT;

/// A remote key's place in the pool: its link, and a lock held while one task dials it (others wait for that
/// dial instead of dialling too).
#[derive(Default)]
pub(crate) struct Slot {
    link: Mutex<Option<Arc<Link>>>,
    pub(super) dialling: tokio::sync::Mutex<()>,
}

pub(crate) struct Pool {
    slots: Mutex<HashMap<PublicKey, Arc<Slot>>>,
    max: usize,
    /// Each time the link kept for a key moves between the relay and the direct path: (key, now relayed).
    paths: tokio::sync::broadcast::Sender<(PublicKey, bool)>,
}

/// Path changes a slow watcher may fall behind by before it misses some.
const PATH_CHANGES: usize = 64;

impl Pool {
    pub(crate) fn new(max: usize) -> Pool {
        Pool {
            slots: Mutex::new(HashMap::new()),
            max,
            paths: tokio::sync::broadcast::channel(PATH_CHANGES).0,
        }
    }

    /// The live link to `key`, marked used.
    pub(crate) fn get(&self, key: &PublicKey) -> Option<Arc<Link>> {
        let slot = self.slots.lock().expect("not poisoned").get(key)?.clone();
        let link = slot.link.lock().expect("not poisoned").clone()?;
        if link.is_closed() {
            return None;
        }
        link.touch();
        Some(link)
    }

    /// The slot of `key`, made if there is none.
    pub(crate) fn slot(&self, key: PublicKey) -> Arc<Slot> {
        self.slots
            .lock()
            .expect("not poisoned")
            .entry(key)
            .or_default()
            .clone()
    }

    /// Offers a new link; returns the one the pool keeps for its key (the new one, or the one it lost to).
    pub(crate) fn offer(&self, new: Arc<Link>) -> Arc<Link> {
        new.touch();
        let key = new.remote_key();
        let mut slots = self.slots.lock().expect("not poisoned");
        let slot = slots.entry(key).or_default().clone();
        let kept = {
            let mut held = slot.link.lock().expect("not poisoned");
            let keep_old = match held.as_ref() {
                Some(old) if !old.is_closed() => !prefer_new(old, &new),
                _ => false,
            };
            let was_relayed = held.as_ref().map(|old| old.is_relayed());
            if !keep_old {
                *held = Some(new.clone());
                if was_relayed.unwrap_or(false) != new.is_relayed() {
                    let _ = self.paths.send((key, new.is_relayed()));
                }
            }
            held.clone().expect("just set or kept")
        };
        if slots.len() > self.max {
            let victim = slots
                .iter()
                .filter(|(k, _)| **k != key)
                .filter_map(|(k, s)| {
                    let l = s.link.lock().expect("not poisoned").clone()?;
                    Some((*k, l))
                })
                .max_by_key(|(_, l)| {
                    l.born.elapsed().as_millis() as u64
                        - l.last_used.load(std::sync::atomic::Ordering::Relaxed)
                });
            // The one unused for the longest: born longest ago minus last use (both in ms since its birth).
            if let Some((k, l)) = victim {
                slots.remove(&k);
                l.conn.close(CLOSE_EVICTED, b"evicted: too many sessions");
            }
        }
        kept
    }

    /// Drops `link` from its slot if it is still the one held (its connection ended).
    pub(crate) fn forget(&self, link: &Arc<Link>) {
        let key = link.remote_key();
        let mut slots = self.slots.lock().expect("not poisoned");
        let Some(slot) = slots.get(&key).cloned() else {
            return;
        };
        let mut held = slot.link.lock().expect("not poisoned");
        if held.as_ref().is_some_and(|h| Arc::ptr_eq(h, link)) {
            *held = None;
            if slot.dialling.try_lock().is_ok() {
                slots.remove(&key);
            }
        }
    }

    /// Drops the slot of `key` if it holds no link and nobody is dialling it.
    pub(crate) fn forget_slot_if_empty(&self, key: &PublicKey) {
        let mut slots = self.slots.lock().expect("not poisoned");
        if let Some(slot) = slots.get(key)
            && slot.link.lock().expect("not poisoned").is_none()
            && slot.dialling.try_lock().is_ok()
        {
            slots.remove(key);
        }
    }

    /// Tells of each change of path of the link kept for a key.
    pub(crate) fn path_changes(&self) -> tokio::sync::broadcast::Receiver<(PublicKey, bool)> {
        self.paths.subscribe()
    }

    /// Live links held.
    pub(crate) fn len(&self) -> usize {
        self.slots
            .lock()
            .expect("not poisoned")
            .values()
            .filter(|s| {
                s.link
                    .lock()
                    .expect("not poisoned")
                    .as_ref()
                    .is_some_and(|l| !l.is_closed())
            })
            .count()
    }
}

/// Whether `new` replaces the live `old` to the same key (see the module doc).
fn prefer_new(old: &Link, new: &Link) -> bool {
    let simultaneous = new.born.saturating_duration_since(old.born) < SIMULTANEOUS;
    if old.dialler == new.dialler || !simultaneous {
        return true;
    }
    new.dialler.to_bytes() < old.dialler.to_bytes()
}
