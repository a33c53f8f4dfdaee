//! Mailboxes: what the tracker holds for peers that could not be reached directly, as a pure value (no I/O, no
//! clock), like the registry. The tracker keeps each message's envelope *opaquely*, exactly as the sender sent it:
//! it reads only who deposited it, for whom, and its id (to store a retried deposit once). A held message is known
//! by its depositor *and* id ([`MailKey`]): a depositor who reuses another's id only adds an entry of its own,
//! it cannot make the other's deposit look like a retry, nor have its acknowledgement drop it. The recipient checks the
//! envelope as if it had come straight from the sender, so once envelopes are signed (and sealed) the tracker can
//! neither forge nor read what it holds.
//!
//! Only names that have registered at least once have a mailbox (a typo does not fill the tracker), every mailbox
//! holds at most `limit` entries, and all of them together at most [`MAILBOX_TOTAL_BYTES`].

use std::collections::{HashMap, HashSet, VecDeque};

use crate::proto::{MailKey, MessageId, PeerName};

/// Entries one mailbox holds unless `--mailbox-limit` says otherwise.
pub const DEFAULT_MAILBOX_LIMIT: u64 = 10_000;
/// Bytes of envelopes all mailboxes together hold.
pub const MAILBOX_TOTAL_BYTES: usize = 256 * 1024 * 1024;
/// Names that may have a mailbox (every name that ever registered, up to this many).
pub const MAX_MAILBOXES: usize = 1_000_000;

/// One held message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailEntry {
    pub id: MessageId,
    pub from: PeerName,
    /// The envelope as the sender sent it (JSON text), never parsed by the tracker.
    pub envelope: String,
    pub deposited_ms: u64,
}

impl MailEntry {
    /// What identifies it in its mailbox.
    pub fn key(&self) -> MailKey {
        MailKey {
            from: self.from.clone(),
            id: self.id,
        }
    }
}

/// Why a deposit is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailboxError {
    #[error("no peer called {0} has ever registered with this tracker")]
    UnknownRecipient(PeerName),
    #[error(
        "{name}'s mailbox is full ({held} of {limit} messages held); it empties when {name} comes back"
    )]
    Full {
        name: PeerName,
        held: usize,
        limit: usize,
    },
    #[error("the tracker holds as much mail as it can")]
    TrackerFull,
}

#[derive(Debug, Default, Clone)]
struct Mailbox {
    entries: VecDeque<MailEntry>,
    keys: HashSet<MailKey>,
}

/// Every peer's mailbox.
#[derive(Debug, Clone)]
pub struct Mailboxes {
    limit: usize,
    boxes: HashMap<PeerName, Mailbox>,
    bytes: usize,
}

impl Mailboxes {
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            boxes: HashMap::new(),
            bytes: 0,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Gives `name` a mailbox (it has registered); a no-op if it has one.
    pub fn open(&mut self, name: &PeerName) {
        if !self.boxes.contains_key(name) && self.boxes.len() < MAX_MAILBOXES {
            self.boxes.insert(name.clone(), Mailbox::default());
        }
    }

    pub fn knows(&self, name: &PeerName) -> bool {
        self.boxes.contains_key(name)
    }

    /// Holds `entries` for `to`, all or none. An entry already held (the same depositor and id) is not stored
    /// again. Returns how many were new.
    pub fn deposit(
        &mut self,
        to: &PeerName,
        entries: Vec<MailEntry>,
    ) -> Result<usize, MailboxError> {
        let limit = self.limit;
        let total = self.bytes;
        let mb = self
            .boxes
            .get_mut(to)
            .ok_or_else(|| MailboxError::UnknownRecipient(to.clone()))?;
        let mut seen = HashSet::new();
        let new: Vec<MailEntry> = entries
            .into_iter()
            .filter(|e| {
                let k = e.key();
                !mb.keys.contains(&k) && seen.insert(k)
            })
            .collect();
        if mb.entries.len() + new.len() > limit {
            return Err(MailboxError::Full {
                name: to.clone(),
                held: mb.entries.len(),
                limit,
            });
        }
        let bytes: usize = new.iter().map(|e| e.envelope.len()).sum();
        if total + bytes > MAILBOX_TOTAL_BYTES {
            return Err(MailboxError::TrackerFull);
        }
        let n = new.len();
        for e in new {
            mb.keys.insert(e.key());
            mb.entries.push_back(e);
        }
        self.bytes += bytes;
        Ok(n)
    }

    /// The oldest `limit` entries held for `name`, and whether more are held.
    pub fn fetch(&self, name: &PeerName, limit: usize) -> (Vec<MailEntry>, bool) {
        match self.boxes.get(name) {
            Some(mb) => (
                mb.entries.iter().take(limit).cloned().collect(),
                mb.entries.len() > limit,
            ),
            None => (Vec::new(), false),
        }
    }

    /// Puts back an entry a store saved, whatever the limit is now (a lowered limit refuses new mail, it loses
    /// none).
    pub fn restore(&mut self, to: &PeerName, entry: MailEntry) {
        self.open(to);
        if let Some(mb) = self.boxes.get_mut(to)
            && mb.keys.insert(entry.key())
        {
            self.bytes += entry.envelope.len();
            mb.entries.push_back(entry);
        }
    }

    /// How many entries are held for `name`.
    pub fn pending(&self, name: &PeerName) -> usize {
        self.boxes.get(name).map_or(0, |mb| mb.entries.len())
    }

    /// Deletes the entries `name` has acknowledged: each of `keys`, and every entry under one of `ids` whoever
    /// deposited it (the older form of an acknowledgement). Returns the entries deleted.
    pub fn ack(&mut self, name: &PeerName, keys: &[MailKey], ids: &[MessageId]) -> Vec<MailKey> {
        let Some(mb) = self.boxes.get_mut(name) else {
            return Vec::new();
        };
        let by_id: HashSet<&MessageId> = ids.iter().collect();
        let mut gone: HashSet<MailKey> = keys
            .iter()
            .filter(|k| mb.keys.contains(*k))
            .cloned()
            .collect();
        if !by_id.is_empty() {
            gone.extend(mb.keys.iter().filter(|k| by_id.contains(&k.id)).cloned());
        }
        if gone.is_empty() {
            return Vec::new();
        }
        let mut freed = 0;
        let mut deleted = Vec::with_capacity(gone.len());
        mb.entries.retain(|e| {
            let k = e.key();
            let keep = !gone.contains(&k);
            if !keep {
                freed += e.envelope.len();
                mb.keys.remove(&k);
                deleted.push(k);
            }
            keep
        });
        self.bytes -= freed;
        deleted
    }

    /// Every held entry by recipient (for tests and stores).
    pub fn all(&self) -> impl Iterator<Item = (&PeerName, &MailEntry)> {
        self.boxes
            .iter()
            .flat_map(|(n, mb)| mb.entries.iter().map(move |e| (n, e)))
    }

    /// Every name with a mailbox.
    pub fn names(&self) -> impl Iterator<Item = &PeerName> {
        self.boxes.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> PeerName {
        PeerName::new(s).unwrap()
    }
    fn entry(text: &str) -> MailEntry {
        entry_from("alice", MessageId::now_v7(), text)
    }
    fn entry_from(from: &str, id: MessageId, text: &str) -> MailEntry {
        MailEntry {
            id,
            from: n(from),
            envelope: format!("{{\"text\":\"{text}\"}}"),
            deposited_ms: 0,
        }
    }

    #[test]
    fn given_a_name_that_never_registered_then_a_deposit_is_refused() {
        let mut m = Mailboxes::new(10);
        assert_eq!(
            m.deposit(&n("bbo"), vec![entry("x")]),
            Err(MailboxError::UnknownRecipient(n("bbo")))
        );
    }

    #[test]
    fn a_retried_deposit_is_held_once_and_fetch_is_oldest_first() {
        let mut m = Mailboxes::new(10);
        m.open(&n("bob"));
        let (a, b) = (entry("a"), entry("b"));
        assert_eq!(m.deposit(&n("bob"), vec![a.clone(), b.clone()]), Ok(2));
        assert_eq!(m.deposit(&n("bob"), vec![a.clone()]), Ok(0));
        assert_eq!(m.fetch(&n("bob"), 1), (vec![a.clone()], true));
        assert_eq!(m.pending(&n("bob")), 2);
    }

    #[test]
    fn a_full_mailbox_refuses_the_whole_deposit_until_acknowledged() {
        let mut m = Mailboxes::new(2);
        m.open(&n("bob"));
        let held = vec![entry("1"), entry("2")];
        m.deposit(&n("bob"), held.clone()).unwrap();
        let err = m.deposit(&n("bob"), vec![entry("3")]).unwrap_err();
        assert!(matches!(
            err,
            MailboxError::Full {
                held: 2,
                limit: 2,
                ..
            }
        ));
        assert_eq!(
            m.ack(&n("bob"), &[], &[held[0].id, MessageId::now_v7()]),
            vec![held[0].key()]
        );
        assert_eq!(m.deposit(&n("bob"), vec![entry("3")]), Ok(1));
        assert_eq!(m.fetch(&n("bob"), 10).0.len(), 2);
    }

    #[test]
    fn given_another_depositor_used_the_id_first_then_the_real_deposit_is_still_held() {
        let mut m = Mailboxes::new(10);
        m.open(&n("bob"));
        let id = MessageId::now_v7();
        let squat = entry_from("mallory", id, "mine now");
        let real = entry_from("alice", id, "the real one");
        assert_eq!(m.deposit(&n("bob"), vec![squat.clone()]), Ok(1));
        assert_eq!(
            m.deposit(&n("bob"), vec![real.clone()]),
            Ok(1),
            "not a retry"
        );
        assert_eq!(m.deposit(&n("bob"), vec![real.clone()]), Ok(0), "a retry");
        assert_eq!(m.fetch(&n("bob"), 10).0, vec![squat.clone(), real.clone()]);
        // Acknowledging mallory's entry leaves alice's held.
        assert_eq!(m.ack(&n("bob"), &[squat.key()], &[]), vec![squat.key()]);
        assert_eq!(m.fetch(&n("bob"), 10).0, vec![real.clone()]);
        assert_eq!(m.ack(&n("bob"), &[real.key()], &[]), vec![real.key()]);
        assert_eq!(m.pending(&n("bob")), 0);
        assert_eq!(m.bytes, 0);
    }
}
