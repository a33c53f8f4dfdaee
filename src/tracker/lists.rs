//! [`ListCache`]: each channel's `GET /get-list` answer kept as the bytes sent, so that asking again is a copy of a
//! pointer rather than a walk of the registry and a serialization of every member (docs/BENCHMARKS.md: that was
//! nine tenths of the request's instructions).
//!
//! An answer is kept with the version of the channel's answer it was made at ([`Registry::members_version`]: a
//! new version whenever a member joins or leaves, or one's lease, presence, role or key changes) and until when it
//! holds without any change (its first lease lapse, [`Registry::members_until`]). It is served only at that version,
//! within that time, and only after the caller was found to be allowed to see the channel: who may see a list is
//! checked on every request, never cached. The answer is the same for every caller who may see it.
//!
//! Pure, with the time given, like the registry: unit-tested here and, with the registry, in `state.rs`.
//!
//! [`Registry::members_version`]: super::registry::Registry::members_version
//! [`Registry::members_until`]: super::registry::Registry::members_until

use std::collections::HashMap;

use bytes::Bytes;

use crate::proto::ChannelName;

/// Bytes of answers kept at most (a channel of 10,000 members answers ~1.7 MB); past it, others make room.
pub(crate) const LIST_CACHE_BYTES: usize = 32 << 20;

/// One kept answer, and when it holds.
#[derive(Debug, Clone)]
struct Kept {
    version: u64,
    /// When it was made (Unix ms): a clock set back past this is not trusted with it.
    made_ms: u64,
    /// When its first lease lapses (Unix ms, exclusive).
    until_ms: u64,
    body: Bytes,
}

impl Kept {
    fn holds(&self, version: u64, now: u64) -> bool {
        self.version == version && self.made_ms <= now && now < self.until_ms
    }
}

/// The kept answers, by channel, within [`LIST_CACHE_BYTES`].
#[derive(Debug, Default, Clone)]
pub(crate) struct ListCache {
    kept: HashMap<ChannelName, Kept>,
    bytes: usize,
}

impl ListCache {
    /// The answer kept for `channel`, if it was made at `version` and still holds at `now`.
    pub(crate) fn get(&self, channel: &ChannelName, version: u64, now: u64) -> Option<Bytes> {
        self.kept
            .get(channel)
            .filter(|k| k.holds(version, now))
            .map(|k| k.body.clone())
    }

    /// Keeps `body`, made at `now` from `channel` at `version`, holding until `until_ms`; it replaces what was kept
    /// for the channel. An answer larger than the whole budget is not kept.
    pub(crate) fn put(
        &mut self,
        channel: &ChannelName,
        version: u64,
        now: u64,
        until_ms: u64,
        body: Bytes,
    ) {
        self.forget(channel);
        if body.len() > LIST_CACHE_BYTES {
            return;
        }
        while self.bytes + body.len() > LIST_CACHE_BYTES {
            // Any other channel's answer: it is made again when next asked for.
            let Some(other) = self.kept.keys().next().cloned() else {
                break;
            };
            self.forget(&other);
        }
        self.bytes += body.len();
        self.kept.insert(
            channel.clone(),
            Kept {
                version,
                made_ms: now,
                until_ms,
                body,
            },
        );
    }

    /// Drops what was kept for `channel` (it was forgotten).
    pub(crate) fn forget(&mut self, channel: &ChannelName) {
        if let Some(k) = self.kept.remove(channel) {
            self.bytes -= k.body.len();
        }
    }

    /// Bytes of answers kept.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> ChannelName {
        ChannelName::new(s).unwrap()
    }

    #[test]
    fn given_a_kept_answer_then_it_is_served_only_at_its_version_and_within_its_time() {
        let mut cache = ListCache::default();
        let body = Bytes::from_static(b"{\"channel\":\"x\",\"peers\":[]}");
        cache.put(&c("x"), 7, 100, 200, body.clone());
        let got = cache.get(&c("x"), 7, 100).unwrap();
        assert_eq!(got.as_ptr(), body.as_ptr(), "the same bytes, not a copy");
        assert!(cache.get(&c("x"), 7, 199).is_some());
        assert!(cache.get(&c("x"), 8, 150).is_none(), "another version");
        assert!(cache.get(&c("x"), 7, 200).is_none(), "a lease lapsed");
        assert!(cache.get(&c("x"), 7, 99).is_none(), "the clock went back");
        assert!(cache.get(&c("y"), 7, 150).is_none(), "another channel");
    }

    #[test]
    fn given_answers_past_the_budget_then_others_make_room_and_the_count_stays_exact() {
        let mut cache = ListCache::default();
        let half = Bytes::from(vec![b' '; LIST_CACHE_BYTES / 2]);
        cache.put(&c("a"), 1, 0, 10, half.clone());
        cache.put(&c("b"), 1, 0, 10, half.clone());
        assert_eq!(cache.bytes(), LIST_CACHE_BYTES);
        cache.put(&c("c"), 1, 0, 10, Bytes::from_static(b"[]"));
        assert_eq!(cache.bytes(), LIST_CACHE_BYTES / 2 + 2);
        assert!(cache.get(&c("c"), 1, 0).is_some());
        cache.put(&c("c"), 2, 0, 10, Bytes::from_static(b"[1]"));
        assert_eq!(
            cache.bytes(),
            LIST_CACHE_BYTES / 2 + 3,
            "a new answer replaces"
        );
        cache.forget(&c("c"));
        assert_eq!(cache.bytes(), LIST_CACHE_BYTES / 2);
        cache.put(
            &c("d"),
            1,
            0,
            10,
            Bytes::from(vec![b' '; LIST_CACHE_BYTES + 1]),
        );
        assert!(cache.get(&c("d"), 1, 0).is_none(), "larger than the budget");
        assert!(cache.bytes() <= LIST_CACHE_BYTES);
    }
}
