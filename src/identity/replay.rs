//! The replay guard: each signed request is accepted once.

use std::collections::{HashSet, VecDeque};

use super::signed::REQUEST_WINDOW_MS;
use super::{AuthError, Nonce};
use crate::proto::PeerName;

/// Most (name, nonce) pairs the tracker remembers at once; beyond it, new requests wait (503) until old ones age.
pub const MAX_NONCES: usize = 1_000_000;

/// Remembers the (name, nonce) of every signed request accepted within the window, so none is accepted twice.
/// Bounded by [`MAX_NONCES`]; an entry is forgotten once its request could no longer pass the window check.
///
/// A pair is kept as a 64-bit keyed hash (the key is random per process), 24 bytes an entry instead of a name and
/// a nonce twice over: a tracker at full rate holds a million of them. Two pairs share a hash with odds of one in
/// 2^64 per pair held, and the worst that does is refuse one honest request as a replay.
#[derive(Debug)]
pub struct ReplayGuard {
    seen: HashSet<u64>,
    /// In the order they were seen, with when each may be forgotten (monotonic, so the front ages first).
    order: VecDeque<(u64, u64)>,
    capacity: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard::with_capacity(MAX_NONCES)
    }
}

impl ReplayGuard {
    pub fn with_capacity(capacity: usize) -> ReplayGuard {
        ReplayGuard {
            seen: HashSet::new(),
            order: VecDeque::new(),
            capacity,
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Records a nonce first seen at `now`; refuses it if it was seen before.
    pub fn admit(&mut self, name: &PeerName, nonce: Nonce, now: u64) -> Result<(), AuthError> {
        // A stamp may run up to one window ahead of the clock, and is good for one window after it.
        while let Some((forget_at, _)) = self.order.front()
            && *forget_at <= now
        {
            let (_, old) = self.order.pop_front().expect("front exists");
            self.seen.remove(&old);
        }
        let key = std::hash::BuildHasher::hash_one(&self.hasher, (name.as_str(), nonce.0));
        if self.seen.contains(&key) {
            return Err(AuthError::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(AuthError::Busy);
        }
        let forget_at = self
            .order
            .back()
            .map_or(0, |b| b.0)
            .max(now + 2 * REQUEST_WINDOW_MS);
        self.order.push_back((forget_at, key));
        self.seen.insert(key);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::test_name as n;

    #[test]
    fn the_replay_guard_refuses_a_nonce_twice_forgets_it_after_the_window_and_is_bounded() {
        let mut g = ReplayGuard::with_capacity(2);
        let (a, x, y, z) = (
            n("alice"),
            Nonce::random(),
            Nonce::random(),
            Nonce::random(),
        );
        g.admit(&a, x, 0).unwrap();
        assert_eq!(g.admit(&a, x, 10), Err(AuthError::Replayed));
        g.admit(&n("bob"), x, 10).unwrap();
        assert_eq!(g.admit(&a, y, 20), Err(AuthError::Busy));
        g.admit(&a, z, 2 * REQUEST_WINDOW_MS + 10).unwrap();
        assert_eq!(g.len(), 1, "the old entries aged out");
    }
}
