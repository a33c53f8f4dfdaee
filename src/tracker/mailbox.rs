//! Mailboxes: what the tracker holds for peers that could not be reached directly, as a pure value (no I/O, no
//! clock), like the registry. The tracker keeps each message's envelope *opaquely*, exactly as the sender sent it:
//! it reads only who deposited it, for whom, and its id (to store a retried deposit once). A held message is known
//! by its depositor *and* id ([`MailKey`]): a depositor who reuses another's id only adds an entry of its own,
//! it cannot make the other's deposit look like a retry, nor have its acknowledgement drop it. Envelopes are sealed
//! to their recipient ([`SealedMail`](crate::identity::SealedMail)), who opens them and checks them as if they had
//! come straight from the sender: the tracker can neither forge nor read what it holds.
//!
//! Only names that have registered at least once have a mailbox (a typo does not fill the tracker), every mailbox
//! holds at most `limit` entries, and all of them together at most [`MAILBOX_TOTAL_BYTES`]. Before that shared cap,
//! the [`Quotas`] bound the bytes held per depositor, per depositing address and per recipient, so one sender
//! cannot fill the tracker for everyone; held mail is dropped after the quotas' `mail_hold`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;

use super::quota::{self, Origin, QuotaError, Quotas};
use super::store::Change;
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
    /// The client address it was deposited from (`None`: the tracker's own host), for the per-address quota.
    pub origin: Origin,
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
    #[error(transparent)]
    Quota(#[from] QuotaError),
}

#[derive(Debug, Default, Clone)]
struct Mailbox {
    entries: VecDeque<MailEntry>,
    keys: HashSet<MailKey>,
    bytes: usize,
}

/// Bytes held, counted by who deposited them and from where.
#[derive(Debug, Default, Clone)]
struct Tally {
    by_depositor: HashMap<PeerName, usize>,
    by_origin: HashMap<IpAddr, usize>,
}

impl Tally {
    fn add(&mut self, e: &MailEntry) {
        *self.by_depositor.entry(e.from.clone()).or_default() += e.envelope.len();
        if let Some(ip) = e.origin {
            *self.by_origin.entry(ip).or_default() += e.envelope.len();
        }
    }

    fn remove(&mut self, e: &MailEntry) {
        fn sub<K: std::hash::Hash + Eq>(m: &mut HashMap<K, usize>, k: &K, n: usize) {
            if let Some(v) = m.get_mut(k) {
                *v = v.saturating_sub(n);
                if *v == 0 {
                    m.remove(k);
                }
            }
        }
        sub(&mut self.by_depositor, &e.from, e.envelope.len());
        if let Some(ip) = e.origin {
            sub(&mut self.by_origin, &ip, e.envelope.len());
        }
    }
}

/// Every peer's mailbox.
#[derive(Debug, Clone)]
pub struct Mailboxes {
    limit: usize,
    boxes: HashMap<PeerName, Mailbox>,
    bytes: usize,
    tally: Tally,
    quotas: Quotas,
}

impl Mailboxes {
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            boxes: HashMap::new(),
            bytes: 0,
            tally: Tally::default(),
            quotas: Quotas::default(),
        }
    }

    pub fn set_quotas(&mut self, quotas: Quotas) {
        self.quotas = quotas;
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
    /// again. Returns how many were new, and the change to record (none when nothing was).
    pub fn deposit(
        &mut self,
        to: &PeerName,
        entries: Vec<MailEntry>,
    ) -> Result<(usize, Vec<Change>), MailboxError> {
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
        if let Some(e) = new.first() {
            let q = &self.quotas;
            let sent = self.tally.by_depositor.get(&e.from).copied().unwrap_or(0);
            if sent + bytes > q.mail_bytes_per_depositor {
                return Err(QuotaError::Mail {
                    who: e.from.to_string(),
                    held: sent,
                    limit: q.mail_bytes_per_depositor,
                }
                .into());
            }
            if let Some(ip) = e.origin {
                let sent = self.tally.by_origin.get(&ip).copied().unwrap_or(0);
                if sent + bytes > q.mail_bytes_per_address {
                    return Err(QuotaError::Mail {
                        who: format!("the address {ip}"),
                        held: sent,
                        limit: q.mail_bytes_per_address,
                    }
                    .into());
                }
            }
            if mb.bytes + bytes > q.mail_bytes_per_recipient {
                return Err(QuotaError::RecipientMail {
                    name: to.to_string(),
                    held: mb.bytes,
                    limit: q.mail_bytes_per_recipient,
                }
                .into());
            }
        }
        if total + bytes > MAILBOX_TOTAL_BYTES {
            return Err(MailboxError::TrackerFull);
        }
        let n = new.len();
        let changes = if new.is_empty() {
            vec![]
        } else {
            vec![Change::Deposited {
                to: to.clone(),
                entries: new.clone(),
            }]
        };
        for e in new {
            mb.keys.insert(e.key());
            self.tally.add(&e);
            mb.entries.push_back(e);
        }
        mb.bytes += bytes;
        self.bytes += bytes;
        Ok((n, changes))
    }

    /// Drops every entry deposited at or before `cutoff_ms` (held longer than the quotas' `mail_hold` when
    /// `cutoff_ms` is [`Mailboxes::hold_cutoff`]); returns how many.
    pub fn expire(&mut self, cutoff_ms: u64) -> usize {
        let mut dropped = 0;
        for mb in self.boxes.values_mut() {
            // Entries are kept in deposit order, so the old ones are at the front.
            while mb
                .entries
                .front()
                .is_some_and(|e| e.deposited_ms <= cutoff_ms)
            {
                let e = mb.entries.pop_front().expect("checked");
                mb.keys.remove(&e.key());
                mb.bytes -= e.envelope.len();
                self.bytes -= e.envelope.len();
                self.tally.remove(&e);
                dropped += 1;
            }
        }
        dropped
    }

    /// Mail deposited at or before this was held for the whole `mail_hold` at `now`.
    pub fn hold_cutoff(&self, now: u64) -> u64 {
        now.saturating_sub(quota::ms(self.quotas.mail_hold))
    }

    /// Closes `name`'s mailbox and drops what it held (the name was unbound).
    pub fn close(&mut self, name: &PeerName) {
        if let Some(mb) = self.boxes.remove(name) {
            self.bytes -= mb.bytes;
            for e in &mb.entries {
                self.tally.remove(e);
            }
        }
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
            mb.bytes += entry.envelope.len();
            self.tally.add(&entry);
            mb.entries.push_back(entry);
        }
    }

    /// How many entries are held for `name`.
    pub fn pending(&self, name: &PeerName) -> usize {
        self.boxes.get(name).map_or(0, |mb| mb.entries.len())
    }

    /// Deletes the entries `name` has acknowledged: each of `keys`, and every entry under one of `ids` whoever
    /// deposited it (the older form of an acknowledgement). Returns the entries deleted, and the change to record
    /// (none when nothing was).
    pub fn ack(
        &mut self,
        name: &PeerName,
        keys: &[MailKey],
        ids: &[MessageId],
    ) -> (Vec<MailKey>, Vec<Change>) {
        let deleted = self.delete(name, keys, ids);
        let changes = if deleted.is_empty() {
            vec![]
        } else {
            vec![Change::Acked {
                name: name.clone(),
                keys: deleted.clone(),
            }]
        };
        (deleted, changes)
    }

    fn delete(&mut self, name: &PeerName, keys: &[MailKey], ids: &[MessageId]) -> Vec<MailKey> {
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
        let tally = &mut self.tally;
        mb.entries.retain(|e| {
            let k = e.key();
            let keep = !gone.contains(&k);
            if !keep {
                freed += e.envelope.len();
                mb.keys.remove(&k);
                deleted.push(k);
                tally.remove(e);
            }
            keep
        });
        mb.bytes -= freed;
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

    /// A mutation's answer without what it changed (what a change records is the store's tests' business).
    trait Answer<T, E> {
        fn answer(self) -> Result<T, E>;
    }

    impl<T, E> Answer<T, E> for Result<(T, Vec<Change>), E> {
        fn answer(self) -> Result<T, E> {
            self.map(|(a, _)| a)
        }
    }

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
            origin: None,
        }
    }

    #[test]
    fn given_a_name_that_never_registered_then_a_deposit_is_refused() {
        let mut m = Mailboxes::new(10);
        assert_eq!(
            m.deposit(&n("bbo"), vec![entry("x")]).answer(),
            Err(MailboxError::UnknownRecipient(n("bbo")))
        );
    }

    #[test]
    fn a_retried_deposit_is_held_once_and_fetch_is_oldest_first() {
        let mut m = Mailboxes::new(10);
        m.open(&n("bob"));
        let (a, b) = (entry("a"), entry("b"));
        assert_eq!(
            m.deposit(&n("bob"), vec![a.clone(), b.clone()]).answer(),
            Ok(2)
        );
        assert_eq!(m.deposit(&n("bob"), vec![a.clone()]).answer(), Ok(0));
        assert_eq!(m.fetch(&n("bob"), 1), (vec![a.clone()], true));
        assert_eq!(m.pending(&n("bob")), 2);
    }

    #[test]
    fn a_full_mailbox_refuses_the_whole_deposit_until_acknowledged() {
        let mut m = Mailboxes::new(2);
        m.open(&n("bob"));
        let held = vec![entry("1"), entry("2")];
        m.deposit(&n("bob"), held.clone()).unwrap();
        let err = m.deposit(&n("bob"), vec![entry("3")]).answer().unwrap_err();
        assert!(matches!(
            err,
            MailboxError::Full {
                held: 2,
                limit: 2,
                ..
            }
        ));
        assert_eq!(
            m.ack(&n("bob"), &[], &[held[0].id, MessageId::now_v7()]).0,
            vec![held[0].key()]
        );
        assert_eq!(m.deposit(&n("bob"), vec![entry("3")]).answer(), Ok(1));
        assert_eq!(m.fetch(&n("bob"), 10).0.len(), 2);
    }

    #[test]
    fn given_another_depositor_used_the_id_first_then_the_real_deposit_is_still_held() {
        let mut m = Mailboxes::new(10);
        m.open(&n("bob"));
        let id = MessageId::now_v7();
        let squat = entry_from("mallory", id, "mine now");
        let real = entry_from("alice", id, "the real one");
        assert_eq!(m.deposit(&n("bob"), vec![squat.clone()]).answer(), Ok(1));
        assert_eq!(
            m.deposit(&n("bob"), vec![real.clone()]).answer(),
            Ok(1),
            "not a retry"
        );
        assert_eq!(
            m.deposit(&n("bob"), vec![real.clone()]).answer(),
            Ok(0),
            "a retry"
        );
        assert_eq!(m.fetch(&n("bob"), 10).0, vec![squat.clone(), real.clone()]);
        // Acknowledging mallory's entry leaves alice's held.
        assert_eq!(m.ack(&n("bob"), &[squat.key()], &[]).0, vec![squat.key()]);
        assert_eq!(m.fetch(&n("bob"), 10).0, vec![real.clone()]);
        assert_eq!(m.ack(&n("bob"), &[real.key()], &[]).0, vec![real.key()]);
        assert_eq!(m.pending(&n("bob")), 0);
        assert_eq!(m.bytes, 0);
    }

    fn sized(from: &str, bytes: usize, origin: Origin, at: u64) -> MailEntry {
        MailEntry {
            id: MessageId::now_v7(),
            from: n(from),
            envelope: "x".repeat(bytes),
            deposited_ms: at,
            origin,
        }
    }
    const EVE_HOST: Origin = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)));

    fn quotas() -> Mailboxes {
        let mut m = Mailboxes::new(1_000);
        m.set_quotas(Quotas {
            mail_bytes_per_depositor: 100,
            mail_bytes_per_address: 150,
            mail_bytes_per_recipient: 250,
            ..Quotas::default()
        });
        for p in ["bob", "carol", "dave", "erin"] {
            m.open(&n(p));
        }
        m
    }

    #[test]
    fn given_a_depositor_at_its_quota_then_its_next_deposit_is_refused_and_another_sender_still_gets_through()
     {
        let mut m = quotas();
        assert_eq!(
            m.deposit(&n("bob"), vec![sized("eve", 100, None, 0)])
                .answer(),
            Ok(1)
        );
        let err = m
            .deposit(&n("carol"), vec![sized("eve", 1, None, 0)])
            .answer()
            .unwrap_err();
        assert!(matches!(
            err,
            MailboxError::Quota(QuotaError::Mail {
                held: 100,
                limit: 100,
                ..
            })
        ));
        assert_eq!(
            m.deposit(&n("carol"), vec![sized("alice", 10, None, 0)])
                .answer(),
            Ok(1)
        );
        let first = m.fetch(&n("bob"), 1).0[0].key();
        m.ack(&n("bob"), &[first], &[]);
        assert_eq!(
            m.deposit(&n("carol"), vec![sized("eve", 1, None, 0)])
                .answer(),
            Ok(1),
            "fetched mail frees the quota"
        );
    }

    #[test]
    fn given_many_depositors_from_one_address_then_the_address_quota_holds_them_together() {
        let mut m = quotas();
        assert_eq!(
            m.deposit(&n("bob"), vec![sized("eve1", 100, EVE_HOST, 0)])
                .answer(),
            Ok(1)
        );
        let err = m
            .deposit(&n("bob"), vec![sized("eve2", 60, EVE_HOST, 0)])
            .answer()
            .unwrap_err();
        assert!(matches!(
            err,
            MailboxError::Quota(QuotaError::Mail {
                held: 100,
                limit: 150,
                ..
            })
        ));
        assert_eq!(
            m.deposit(&n("bob"), vec![sized("eve2", 50, EVE_HOST, 0)])
                .answer(),
            Ok(1)
        );
        assert_eq!(
            m.deposit(&n("bob"), vec![sized("alice", 60, None, 0)])
                .answer(),
            Ok(1)
        );
    }

    #[test]
    fn given_a_full_recipient_then_deposits_to_it_are_refused_and_others_are_not() {
        let mut m = quotas();
        for who in ["a", "b"] {
            m.deposit(&n("bob"), vec![sized(who, 100, None, 0)])
                .answer()
                .unwrap();
        }
        let err = m
            .deposit(&n("bob"), vec![sized("c", 60, None, 0)])
            .answer()
            .unwrap_err();
        assert!(
            err.to_string().contains("bob's mailbox holds 200 bytes"),
            "{err}"
        );
        assert!(matches!(
            err,
            MailboxError::Quota(QuotaError::RecipientMail { .. })
        ));
        assert_eq!(
            m.deposit(&n("dave"), vec![sized("c", 60, None, 0)])
                .answer(),
            Ok(1)
        );
    }

    #[test]
    fn given_mail_held_past_its_time_then_it_expires_and_frees_every_quota() {
        let mut m = quotas();
        let hold = quota::ms(quota::DEFAULT_MAIL_HOLD);
        let t = 1_000;
        m.deposit(&n("bob"), vec![sized("eve", 100, EVE_HOST, t)])
            .unwrap();
        m.deposit(&n("bob"), vec![sized("alice", 10, None, t + 5)])
            .unwrap();
        assert_eq!(m.expire(m.hold_cutoff(t + hold - 1)), 0);
        assert_eq!(m.expire(m.hold_cutoff(t + hold)), 1);
        assert_eq!(m.pending(&n("bob")), 1);
        assert_eq!(
            m.deposit(&n("carol"), vec![sized("eve", 100, EVE_HOST, t + hold)])
                .answer(),
            Ok(1)
        );
        assert_eq!(m.expire(m.hold_cutoff(t + hold + 5)), 1);
        m.close(&n("carol"));
        assert_eq!(m.all().count(), 0);
        assert_eq!(
            m.deposit(&n("bob"), vec![sized("eve", 100, EVE_HOST, t + hold)])
                .answer(),
            Ok(1)
        );
    }
}
