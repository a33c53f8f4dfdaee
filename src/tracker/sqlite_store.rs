//! [`SqliteStore`]: the tracker's state in SQLite (`<data-dir>/tracker.sqlite3`): leases, channels, members, the
//! names that have a mailbox, the mailboxes themselves, and the key each name is bound to. Each batch of changes
//! is one transaction, fsynced before the requests that made them are answered (see [`crate::storage`]).

use std::time::Duration;

use rusqlite::{Connection, params};

use super::identities::Identities;
use super::mailbox::{MailEntry, Mailboxes};
use super::registry::Registry;
use super::store::{Change, Store, StoreError};
use crate::proto::{ChannelName, PeerName};
use crate::storage::{Storage, open};

/// The database file inside the tracker's data dir.
pub const DB_FILE: &str = "tracker.sqlite3";

/// The schema, one step per version (`PRAGMA user_version`). Never edit a step; append one.
const MIGRATIONS: &[&str] = &[
    // 1: leases, channels, members, mailboxes.
    "CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        ip TEXT NOT NULL,
        port INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL
    );
    CREATE TABLE channels (name TEXT PRIMARY KEY);
    CREATE TABLE members (
        channel TEXT NOT NULL,
        peer TEXT NOT NULL,
        PRIMARY KEY (channel, peer)
    ) WITHOUT ROWID;
    CREATE INDEX members_by_peer ON members (peer);
    CREATE TABLE mailbox_owners (name TEXT PRIMARY KEY);
    CREATE TABLE mail (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        recipient TEXT NOT NULL,
        id TEXT NOT NULL,
        sender TEXT NOT NULL,
        envelope TEXT NOT NULL,
        deposited_ms INTEGER NOT NULL,
        UNIQUE (recipient, id)
    )",
    // 2: the key each name is bound to, for good (identities, issue 5).
    "CREATE TABLE identities (
        name TEXT PRIMARY KEY,
        public_key TEXT NOT NULL
    )",
];

/// The tracker's SQLite store.
pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `storage`.
    pub fn open(storage: &Storage) -> Result<SqliteStore, StoreError> {
        Ok(SqliteStore {
            conn: open(storage, DB_FILE, MIGRATIONS)?,
        })
    }
}

fn apply(c: &Connection, change: &Change) -> Result<(), StoreError> {
    match change {
        Change::Registered {
            name,
            ip,
            port,
            at_ms,
            created,
        } => {
            if *created {
                c.execute("DELETE FROM members WHERE peer = ?1", [name.as_str()])?;
            }
            c.prepare_cached(
                "INSERT INTO leases (name, ip, port, last_seen_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET ip = ?2, port = ?3, last_seen_ms = ?4",
            )?
            .execute(params![name.as_str(), ip.to_string(), port, *at_ms as i64])?;
            c.prepare_cached("INSERT OR IGNORE INTO mailbox_owners (name) VALUES (?1)")?
                .execute([name.as_str()])?;
        }
        Change::Joined { name, channel, .. } => {
            c.prepare_cached("INSERT OR IGNORE INTO channels (name) VALUES (?1)")?
                .execute([channel.as_str()])?;
            c.prepare_cached("INSERT OR IGNORE INTO members (channel, peer) VALUES (?1, ?2)")?
                .execute([channel.as_str(), name.as_str()])?;
        }
        Change::Left { name, channel } => {
            c.execute(
                "DELETE FROM members WHERE channel = ?1 AND peer = ?2",
                [channel.as_str(), name.as_str()],
            )?;
        }
        Change::Unregistered { name } => forget(c, name)?,
        Change::Expired { names } => {
            for n in names {
                forget(c, n)?;
            }
        }
        Change::Deposited { to, entries } => {
            let mut q = c.prepare_cached(
                "INSERT OR IGNORE INTO mail (recipient, id, sender, envelope, deposited_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for e in entries {
                q.execute(params![
                    to.as_str(),
                    e.id.hyphenated().to_string(),
                    e.from.as_str(),
                    e.envelope,
                    e.deposited_ms as i64
                ])?;
            }
        }
        Change::Bound { name, key } => {
            c.prepare_cached(
                "INSERT OR IGNORE INTO identities (name, public_key) VALUES (?1, ?2)",
            )?
            .execute([name.as_str(), key.to_string().as_str()])?;
        }
        Change::Acked { name, ids } => {
            let mut q = c.prepare_cached("DELETE FROM mail WHERE recipient = ?1 AND id = ?2")?;
            for id in ids {
                q.execute(params![name.as_str(), id.hyphenated().to_string()])?;
            }
        }
    }
    Ok(())
}

fn forget(c: &Connection, name: &PeerName) -> Result<(), StoreError> {
    c.prepare_cached("DELETE FROM leases WHERE name = ?1")?
        .execute([name.as_str()])?;
    c.prepare_cached("DELETE FROM members WHERE peer = ?1")?
        .execute([name.as_str()])?;
    Ok(())
}

impl Store for SqliteStore {
    fn load(
        &mut self,
        ttl: Duration,
        mailbox_limit: usize,
    ) -> Result<(Registry, Mailboxes), StoreError> {
        let c = &self.conn;
        let mut registry = Registry::new(ttl);
        let mut q = c.prepare("SELECT name, ip, port, last_seen_ms FROM leases")?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u16>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (name, ip, port, seen) = row?;
            match (PeerName::new(name.clone()), ip.parse()) {
                (Ok(n), Ok(ip)) => registry.restore_lease(n, ip, port, seen as u64),
                _ => tracing::warn!("skipping a saved lease that does not parse: {name} at {ip}"),
            }
        }
        let mut q = c.prepare("SELECT name FROM channels")?;
        for name in q.query_map([], |r| r.get::<_, String>(0))? {
            if let Ok(ch) = ChannelName::new(name?) {
                registry.restore_channel(ch, None);
            }
        }
        let mut q = c.prepare("SELECT channel, peer FROM members")?;
        for row in q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (ch, peer) = row?;
            if let (Ok(ch), Ok(peer)) = (ChannelName::new(ch), PeerName::new(peer)) {
                registry.restore_channel(ch, Some(peer));
            }
        }
        let mut mailboxes = Mailboxes::new(mailbox_limit);
        let mut q = c.prepare("SELECT name FROM mailbox_owners")?;
        for name in q.query_map([], |r| r.get::<_, String>(0))? {
            if let Ok(n) = PeerName::new(name?) {
                mailboxes.open(&n);
            }
        }
        let mut q = c.prepare(
            "SELECT recipient, id, sender, envelope, deposited_ms FROM mail ORDER BY seq",
        )?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        for row in rows {
            let (to, id, from, envelope, at) = row?;
            let (Ok(to), Ok(id), Ok(from)) = (PeerName::new(to), id.parse(), PeerName::new(from))
            else {
                continue;
            };
            mailboxes.open(&to);
            let entry = MailEntry {
                id,
                from,
                envelope,
                deposited_ms: at as u64,
            };
            // Restored whatever the limit is now: a lowered --mailbox-limit refuses new mail, it loses none.
            mailboxes.restore(&to, entry);
        }
        Ok((registry, mailboxes))
    }

    fn load_identities(&mut self) -> Result<Identities, StoreError> {
        let mut identities = Identities::default();
        let mut q = self
            .conn
            .prepare("SELECT name, public_key FROM identities")?;
        for row in q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (name, key) = row?;
            match (PeerName::new(name.clone()), key.parse()) {
                (Ok(n), Ok(k)) => identities.bind(n, k),
                _ => tracing::warn!("skipping a saved identity that does not parse: {name}"),
            }
        }
        Ok(identities)
    }

    fn record(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        for c in changes {
            apply(&tx, c)?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::MessageId;
    use std::net::{IpAddr, Ipv4Addr};

    const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    fn n(s: &str) -> PeerName {
        PeerName::new(s).unwrap()
    }

    #[test]
    fn a_reopened_store_gives_back_leases_members_and_unacknowledged_mail() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::Dir(dir.path().to_path_buf());
        let ch = ChannelName::new("general").unwrap();
        let mail: Vec<MailEntry> = (0..3)
            .map(|i| MailEntry {
                id: MessageId::now_v7(),
                from: n("alice"),
                envelope: format!("{{\"n\":{i}}}"),
                deposited_ms: 5,
            })
            .collect();
        {
            let mut s = SqliteStore::open(&storage).unwrap();
            s.record(&[
                Change::Registered {
                    name: n("alice"),
                    ip: LO,
                    port: 1,
                    at_ms: 10,
                    created: true,
                },
                Change::Registered {
                    name: n("bob"),
                    ip: LO,
                    port: 2,
                    at_ms: 10,
                    created: true,
                },
                Change::Joined {
                    name: n("alice"),
                    channel: ch.clone(),
                    at_ms: 10,
                },
                Change::Joined {
                    name: n("bob"),
                    channel: ch.clone(),
                    at_ms: 10,
                },
                Change::Unregistered { name: n("bob") },
                Change::Deposited {
                    to: n("bob"),
                    entries: mail.clone(),
                },
                Change::Deposited {
                    to: n("bob"),
                    entries: mail[..1].to_vec(),
                },
                Change::Acked {
                    name: n("bob"),
                    ids: vec![mail[1].id],
                },
            ])
            .unwrap();
        }
        let mut s = SqliteStore::open(&storage).unwrap();
        let (registry, mailboxes) = s.load(Duration::from_secs(30), 100).unwrap();
        assert_eq!(registry.channels_of(&n("alice")), vec![ch.clone()]);
        assert_eq!(
            registry.members(&ch, 11).unwrap().len(),
            1,
            "bob left with his lease"
        );
        assert!(
            registry.members(&ch, 10 + 30_000).unwrap().is_empty(),
            "a restored lease expires as usual"
        );
        let held: Vec<_> = mailboxes.fetch(&n("bob"), 10).0;
        assert_eq!(held, vec![mail[0].clone(), mail[2].clone()]);
        assert!(mailboxes.knows(&n("alice")));
    }

    #[test]
    fn a_name_stays_bound_to_its_first_key_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::Dir(dir.path().to_path_buf());
        let (first, second) = (
            crate::identity::Identity::ephemeral().public_key(),
            crate::identity::Identity::ephemeral().public_key(),
        );
        {
            let mut s = SqliteStore::open(&storage).unwrap();
            s.record(&[
                Change::Bound {
                    name: n("alice"),
                    key: first,
                },
                Change::Bound {
                    name: n("alice"),
                    key: second,
                },
            ])
            .unwrap();
        }
        let ids = SqliteStore::open(&storage)
            .unwrap()
            .load_identities()
            .unwrap();
        assert_eq!(ids.key_of(&n("alice")), Some(first));
        assert_eq!(ids.len(), 1);
    }
}
