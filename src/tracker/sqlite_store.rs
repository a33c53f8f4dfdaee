//! [`SqliteStore`]: the tracker's state in SQLite (`<data-dir>/tracker.sqlite3`): leases, channels, members, the
//! names that have a mailbox, the mailboxes themselves, and the key each name is bound to. Each batch of changes
//! is one transaction, fsynced before the requests that made them are answered (see [`crate::storage`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, params};

use super::acl::{AclList, KeyHash};
use super::identities::{Binding, Identities};
use super::mailbox::{MailEntry, Mailboxes};
use super::registry::{Presence, Registry};
use super::store::{Change, Store, StoreError};
use crate::proto::{ChannelMode, ChannelName, PeerName, PeerStatus};
use crate::storage::{Storage, open};

/// The database file inside the tracker's data dir.
pub(crate) const DB_FILE: &str = "tracker.sqlite3";

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
    // 2: channel access control (owner, mode, salted key hash; invited, banned, visitor lists) and presence.
    "CREATE TABLE channel_rules (
        channel TEXT PRIMARY KEY,
        owner TEXT,
        mode TEXT NOT NULL DEFAULT 'open',
        key_salt BLOB,
        key_hash BLOB
    );
    CREATE TABLE channel_lists (
        channel TEXT NOT NULL,
        list TEXT NOT NULL,
        peer TEXT NOT NULL,
        PRIMARY KEY (channel, list, peer)
    ) WITHOUT ROWID;
    CREATE TABLE presence (
        name TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        message TEXT
    )",
    // 3: the key each name is bound to, for good (identities, issue 5).
    "CREATE TABLE identities (
        name TEXT PRIMARY KEY,
        public_key TEXT NOT NULL
    )",
    // 4: held mail is unique per recipient by (sender, id), not by id (issue 11: a depositor reusing another's id
    // had the real deposit taken for a retry). SQLite cannot change a UNIQUE constraint in place: the table is
    // copied, in its order (`seq`, the mailbox's order).
    "CREATE TABLE mail_v4 (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        recipient TEXT NOT NULL,
        id TEXT NOT NULL,
        sender TEXT NOT NULL,
        envelope TEXT NOT NULL,
        deposited_ms INTEGER NOT NULL,
        UNIQUE (recipient, sender, id)
    );
    INSERT INTO mail_v4 (seq, recipient, id, sender, envelope, deposited_ms)
        SELECT seq, recipient, id, sender, envelope, deposited_ms FROM mail;
    DROP TABLE mail;
    ALTER TABLE mail_v4 RENAME TO mail",
    // 5: what the quotas and expiries need (issue 11): when and from where a name was bound and whether it was
    // used since (names bound before count as used: they are kept), where a channel was created from and since
    // when it is empty, and where held mail was deposited from.
    "ALTER TABLE identities ADD COLUMN bound_ms INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE identities ADD COLUMN used INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE identities ADD COLUMN origin TEXT;
    ALTER TABLE channels ADD COLUMN origin TEXT;
    ALTER TABLE channels ADD COLUMN emptied_ms INTEGER;
    ALTER TABLE mail ADD COLUMN origin TEXT;
    CREATE INDEX mail_by_time ON mail (deposited_ms)",
    // 6: the session port each lease advertised (issue 13), so a restarted tracker answers it before the peer's
    // next renewal; leases saved before it have none until then.
    "ALTER TABLE leases ADD COLUMN quic_port INTEGER",
];

/// The tracker's SQLite store.
pub(crate) struct SqliteStore {
    conn: Connection,
    storage: Storage,
    /// The database file, and which file it was when opened (device and inode): a file removed or replaced under
    /// the running tracker is noticed before the next save (see [`SqliteStore::check_file`]).
    file: Option<(PathBuf, FileId)>,
}

/// A file's identity: device and inode.
type FileId = (u64, u64);

fn file_id(path: &Path) -> std::io::Result<FileId> {
    let meta = std::fs::metadata(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        Ok((0, meta.len()))
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `storage`, and checks it (`PRAGMA quick_check`): a corrupt
    /// database refuses the start with a sentence saying what to do, rather than failing at some later save.
    pub(crate) fn open(storage: &Storage) -> Result<SqliteStore, StoreError> {
        let conn = open(storage, DB_FILE, MIGRATIONS)?;
        let file = match storage {
            Storage::Memory => None,
            Storage::Dir(dir) => {
                let path = dir.join(DB_FILE);
                let verdict: String = conn
                    .query_row("PRAGMA quick_check", [], |r| r.get(0))
                    .unwrap_or_else(|e| e.to_string());
                if verdict != "ok" {
                    return Err(StoreError(format!(
                        "{} is corrupt (quick_check: {verdict}); move it away to start with an empty tracker, or \
                         put back a backup",
                        path.display()
                    )));
                }
                let id =
                    file_id(&path).map_err(|e| StoreError(format!("{}: {e}", path.display())))?;
                Some((path, id))
            }
        };
        Ok(SqliteStore {
            conn,
            storage: storage.clone(),
            file,
        })
    }

    /// Checks that the database file at its path is still the one this tracker has open. SQLite keeps writing to
    /// a file removed under it, and every save would then be lost at the next restart (held mail included), so a
    /// file that was removed or replaced is written back at once from the open one, which holds everything
    /// (`VACUUM INTO`), and the store goes on with it. Said loudly either way; `Err` (and no save) only if it
    /// cannot be written back.
    pub(crate) fn check_file(&mut self) -> Result<(), StoreError> {
        let Some((path, id)) = self.file.clone() else {
            return Ok(());
        };
        let what = match file_id(&path) {
            Ok(now) if now == id => return Ok(()),
            Ok(_) => "was replaced by another file",
            Err(_) => "was removed",
        };
        tracing::error!(
            "the tracker's database {} {what} while the tracker runs; writing everything it holds back there",
            path.display()
        );
        match self.write_back(&path) {
            Ok(()) => {
                tracing::error!(
                    "the tracker's database is back at {}; nothing was lost (find out what {what} it)",
                    path.display()
                );
                Ok(())
            }
            Err(e) => {
                let e = format!(
                    "the tracker's database {} {what} and could not be written back ({e}); nothing more can be \
                     saved, so changes are refused (store_failed) until it can: free the disk or restore the data \
                     dir",
                    path.display()
                );
                tracing::error!("{e}");
                Err(StoreError(e))
            }
        }
    }

    fn write_back(&mut self, path: &Path) -> Result<(), StoreError> {
        let io = |e: std::io::Error| StoreError(e.to_string());
        let dir = path.parent().unwrap_or(Path::new("."));
        crate::storage::create_private_dir(dir).map_err(io)?;
        if path.exists() {
            let aside = path.with_extension(format!("sqlite3.foreign-{}", crate::proto::now_ms()));
            std::fs::rename(path, &aside).map_err(io)?;
            tracing::error!("the file found there was moved to {}", aside.display());
        }
        let fresh = dir.join(format!("{DB_FILE}.restoring"));
        let _ = std::fs::remove_file(&fresh);
        let target = fresh
            .to_str()
            .ok_or_else(|| StoreError("the data dir's path is not UTF-8".into()))?;
        self.conn.execute("VACUUM INTO ?1", [target])?;
        // Close the old file (its write-ahead log, under the same name, goes with it) before the new one takes
        // the name.
        let old = std::mem::replace(&mut self.conn, Connection::open_in_memory()?);
        if let Err((_, e)) = old.close() {
            tracing::warn!("closing the removed database: {e}");
        }
        for leftover in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{leftover}", path.display()));
        }
        std::fs::rename(&fresh, path).map_err(io)?;
        self.conn = open(&self.storage, DB_FILE, MIGRATIONS)?;
        self.file = Some((path.to_path_buf(), file_id(path).map_err(io)?));
        Ok(())
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
            quic_port,
            moved: _,
        } => {
            if *created {
                c.execute("DELETE FROM members WHERE peer = ?1", [name.as_str()])?;
                c.execute("DELETE FROM presence WHERE name = ?1", [name.as_str()])?;
            }
            c.prepare_cached(
                "INSERT INTO leases (name, ip, port, last_seen_ms, quic_port) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET ip = ?2, port = ?3, last_seen_ms = ?4, quic_port = ?5",
            )?
            .execute(params![
                name.as_str(),
                ip.to_string(),
                port,
                *at_ms as i64,
                quic_port
            ])?;
            c.prepare_cached("INSERT OR IGNORE INTO mailbox_owners (name) VALUES (?1)")?
                .execute([name.as_str()])?;
        }
        Change::Joined { name, channel, .. } => {
            c.prepare_cached("INSERT OR IGNORE INTO channels (name) VALUES (?1)")?
                .execute([channel.as_str()])?;
            c.prepare_cached("UPDATE channels SET emptied_ms = NULL WHERE name = ?1")?
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
                "INSERT OR IGNORE INTO mail (recipient, id, sender, envelope, deposited_ms, origin)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for e in entries {
                q.execute(params![
                    to.as_str(),
                    e.id.hyphenated().to_string(),
                    e.from.as_str(),
                    e.envelope,
                    e.deposited_ms as i64,
                    e.origin.map(|ip| ip.to_string()),
                ])?;
            }
        }
        Change::Bound {
            name,
            key,
            at_ms,
            origin,
        } => {
            c.prepare_cached(
                "INSERT OR IGNORE INTO identities (name, public_key, bound_ms, used, origin)
                 VALUES (?1, ?2, ?3, 0, ?4)",
            )?
            .execute(params![
                name.as_str(),
                key.to_string(),
                *at_ms as i64,
                origin.map(|ip| ip.to_string())
            ])?;
        }
        Change::NameUsed { name } => {
            c.prepare_cached("UPDATE identities SET used = 1 WHERE name = ?1")?
                .execute([name.as_str()])?;
        }
        Change::NamesExpired { names } => {
            for name in names {
                forget(c, name)?;
                let n = name.as_str();
                for sql in [
                    "DELETE FROM identities WHERE name = ?1",
                    "DELETE FROM mailbox_owners WHERE name = ?1",
                    "DELETE FROM mail WHERE recipient = ?1",
                    "DELETE FROM channel_lists WHERE peer = ?1",
                    "UPDATE channel_rules SET owner = NULL WHERE owner = ?1",
                ] {
                    c.prepare_cached(sql)?.execute([n])?;
                }
            }
        }
        Change::Emptied { channels, at_ms } => {
            let mut q = c.prepare_cached("UPDATE channels SET emptied_ms = ?2 WHERE name = ?1")?;
            for ch in channels {
                q.execute(params![ch.as_str(), *at_ms as i64])?;
            }
        }
        Change::Forgotten { channels } => {
            for ch in channels {
                for sql in [
                    "DELETE FROM channels WHERE name = ?1",
                    "DELETE FROM members WHERE channel = ?1",
                    "DELETE FROM channel_rules WHERE channel = ?1",
                    "DELETE FROM channel_lists WHERE channel = ?1",
                ] {
                    c.prepare_cached(sql)?.execute([ch.as_str()])?;
                }
            }
        }
        Change::MailExpired { cutoff_ms } => {
            c.prepare_cached("DELETE FROM mail WHERE deposited_ms <= ?1")?
                .execute([*cutoff_ms as i64])?;
        }
        Change::Acked { name, keys } => {
            let mut q = c.prepare_cached(
                "DELETE FROM mail WHERE recipient = ?1 AND sender = ?2 AND id = ?3",
            )?;
            for k in keys {
                q.execute(params![
                    name.as_str(),
                    k.from.as_str(),
                    k.id.hyphenated().to_string()
                ])?;
            }
        }
        Change::Owned {
            channel,
            owner,
            origin,
        } => {
            c.prepare_cached("INSERT OR IGNORE INTO channels (name) VALUES (?1)")?
                .execute([channel.as_str()])?;
            c.prepare_cached("UPDATE channels SET origin = ?2 WHERE name = ?1")?
                .execute(params![channel.as_str(), origin.map(|ip| ip.to_string())])?;
            c.prepare_cached(
                "INSERT INTO channel_rules (channel, owner, mode) VALUES (?1, ?2, 'open')
                 ON CONFLICT (channel) DO UPDATE SET owner = ?2",
            )?
            .execute([channel.as_str(), owner.as_str()])?;
        }
        Change::ModeSet { channel, mode, key } => {
            c.prepare_cached(
                "INSERT INTO channel_rules (channel, mode, key_salt, key_hash) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (channel) DO UPDATE SET mode = ?2, key_salt = ?3, key_hash = ?4",
            )?
            .execute(params![
                channel.as_str(),
                mode.as_str(),
                key.as_ref().map(|k| k.salt.to_vec()),
                key.as_ref().map(|k| k.hash.to_vec()),
            ])?;
        }
        Change::Listed {
            channel,
            list,
            peer,
            on,
        } => {
            let sql = if *on {
                "INSERT OR IGNORE INTO channel_lists (channel, list, peer) VALUES (?1, ?2, ?3)"
            } else {
                "DELETE FROM channel_lists WHERE channel = ?1 AND list = ?2 AND peer = ?3"
            };
            c.prepare_cached(sql)?
                .execute([channel.as_str(), list.as_str(), peer.as_str()])?;
        }
        Change::PresenceSet { name, presence } => match presence {
            Some(p) => {
                c.prepare_cached(
                    "INSERT INTO presence (name, status, message) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET status = ?2, message = ?3",
                )?
                .execute(params![name.as_str(), p.status.as_str(), p.message])?;
            }
            None => {
                c.prepare_cached("DELETE FROM presence WHERE name = ?1")?
                    .execute([name.as_str()])?;
            }
        },
    }
    Ok(())
}

fn forget(c: &Connection, name: &PeerName) -> Result<(), StoreError> {
    c.prepare_cached("DELETE FROM leases WHERE name = ?1")?
        .execute([name.as_str()])?;
    c.prepare_cached("DELETE FROM members WHERE peer = ?1")?
        .execute([name.as_str()])?;
    c.prepare_cached("DELETE FROM presence WHERE name = ?1")?
        .execute([name.as_str()])?;
    Ok(())
}

/// Channel owners, modes, keys, lists and presences, back into the registry.
fn load_rules(c: &Connection, registry: &mut Registry) -> Result<(), StoreError> {
    let mut q = c.prepare("SELECT channel, owner, mode, key_salt, key_hash FROM channel_rules")?;
    let rows = q.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<Vec<u8>>>(3)?,
            r.get::<_, Option<Vec<u8>>>(4)?,
        ))
    })?;
    for row in rows {
        let (ch, owner, mode, salt, hash) = row?;
        let Ok(ch) = ChannelName::new(ch) else {
            continue;
        };
        let owner = owner.and_then(|o| PeerName::new(o).ok());
        let key = match (salt, hash) {
            (Some(s), Some(h)) => match (s.try_into(), h.try_into()) {
                (Ok(salt), Ok(hash)) => Some(KeyHash { salt, hash }),
                _ => None,
            },
            _ => None,
        };
        // A key channel whose key did not load stays closed to newcomers rather than opening up.
        let mode = ChannelMode::parse(&mode).unwrap_or(ChannelMode::Invite);
        let mode = if mode == ChannelMode::Key && key.is_none() {
            ChannelMode::Invite
        } else {
            mode
        };
        registry.restore_rules(ch, owner, mode, key);
    }
    let mut q = c.prepare("SELECT channel, list, peer FROM channel_lists")?;
    let rows = q.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for row in rows {
        let (ch, list, peer) = row?;
        if let (Ok(ch), Some(list), Ok(peer)) = (
            ChannelName::new(ch),
            AclList::parse(&list),
            PeerName::new(peer),
        ) {
            registry.restore_listed(ch, list, peer);
        }
    }
    let mut q = c.prepare("SELECT name, status, message FROM presence")?;
    let rows = q.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
        ))
    })?;
    for row in rows {
        let (name, status, message) = row?;
        let status = match status.as_str() {
            "away" => PeerStatus::Away,
            "invisible" => PeerStatus::Invisible,
            _ => continue,
        };
        if let Ok(name) = PeerName::new(name) {
            registry.restore_presence(name, Presence { status, message });
        }
    }
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
        let mut q = c.prepare("SELECT name, ip, port, last_seen_ms, quic_port FROM leases")?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u16>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<u16>>(4)?,
            ))
        })?;
        for row in rows {
            let (name, ip, port, seen, quic_port) = row?;
            match (PeerName::new(name.clone()), ip.parse()) {
                (Ok(n), Ok(ip)) => registry.restore_lease(n, (ip, port, quic_port), seen as u64),
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
        load_rules(c, &mut registry)?;
        let mut q = c.prepare("SELECT name, origin, emptied_ms FROM channels")?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        })?;
        for row in rows {
            let (name, origin, emptied) = row?;
            if let Ok(ch) = ChannelName::new(name) {
                let origin = origin.and_then(|ip| ip.parse().ok());
                registry.restore_channel_times(&ch, origin, emptied.map(|t| t as u64));
            }
        }
        registry.restore_quotas();
        let mut mailboxes = Mailboxes::new(mailbox_limit);
        let mut q = c.prepare("SELECT name FROM mailbox_owners")?;
        for name in q.query_map([], |r| r.get::<_, String>(0))? {
            if let Ok(n) = PeerName::new(name?) {
                mailboxes.open(&n);
            }
        }
        let mut q = c.prepare(
            "SELECT recipient, id, sender, envelope, deposited_ms, origin FROM mail ORDER BY seq",
        )?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })?;
        for row in rows {
            let (to, id, from, envelope, at, origin) = row?;
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
                origin: origin.and_then(|ip| ip.parse().ok()),
            };
            // Restored whatever the limit is now: a lowered --mailbox-limit refuses new mail, it loses none.
            mailboxes.restore(&to, entry);
        }
        Ok((registry, mailboxes))
    }

    fn load_identities(&mut self) -> Result<Identities, StoreError> {
        let mut identities = Identities::default();
        let mut q = self.conn.prepare(
            "SELECT name, public_key, bound_ms, used, origin FROM identities ORDER BY bound_ms",
        )?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        for row in rows {
            let (name, key, bound_ms, used, origin) = row?;
            match (PeerName::new(name.clone()), key.parse()) {
                (Ok(n), Ok(key)) => identities.restore(
                    n,
                    Binding {
                        key,
                        bound_ms: bound_ms as u64,
                        used,
                        origin: origin.and_then(|ip| ip.parse().ok()),
                    },
                ),
                _ => tracing::warn!("skipping a saved identity that does not parse: {name}"),
            }
        }
        Ok(identities)
    }

    fn record(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        self.check_file()?;
        if changes.is_empty() {
            return Ok(());
        }
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
    fn given_mail_held_by_schema_3_then_schema_4_keeps_it_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::Dir(dir.path().to_path_buf());
        let ids = [MessageId::now_v7(), MessageId::now_v7()];
        {
            let c = open(&storage, DB_FILE, &MIGRATIONS[..3]).unwrap();
            c.execute("INSERT INTO mailbox_owners (name) VALUES ('bob')", [])
                .unwrap();
            for (i, id) in ids.iter().enumerate() {
                c.execute(
                    "INSERT INTO mail (recipient, id, sender, envelope, deposited_ms) VALUES ('bob', ?1, 'alice', ?2, 5)",
                    params![id.hyphenated().to_string(), format!("{{\"n\":{i}}}")],
                )
                .unwrap();
            }
        }
        let mut s = SqliteStore::open(&storage).unwrap();
        let (_, mailboxes) = s.load(Duration::from_secs(30), 100).unwrap();
        let held: Vec<MessageId> = mailboxes
            .fetch(&n("bob"), 10)
            .0
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(held, ids);
    }

    #[test]
    fn given_two_depositors_under_one_id_then_both_are_held_across_a_reopen_and_acked_apart() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::Dir(dir.path().to_path_buf());
        let id = MessageId::now_v7();
        let mail: Vec<MailEntry> = ["mallory", "alice"]
            .iter()
            .map(|from| MailEntry {
                id,
                from: n(from),
                envelope: format!("{{\"from\":\"{from}\"}}"),
                deposited_ms: 5,
                origin: None,
            })
            .collect();
        let registered = Change::Registered {
            name: n("bob"),
            ip: LO,
            port: 2,
            at_ms: 10,
            created: true,
            quic_port: None,
            moved: false,
        };
        {
            let mut s = SqliteStore::open(&storage).unwrap();
            s.record(&[
                registered,
                Change::Deposited {
                    to: n("bob"),
                    entries: mail[..1].to_vec(),
                },
                Change::Deposited {
                    to: n("bob"),
                    entries: mail[1..].to_vec(),
                },
            ])
            .unwrap();
        }
        let mut s = SqliteStore::open(&storage).unwrap();
        let (_, mailboxes) = s.load(Duration::from_secs(30), 100).unwrap();
        assert_eq!(mailboxes.fetch(&n("bob"), 10).0, mail);
        s.record(&[Change::Acked {
            name: n("bob"),
            keys: vec![mail[0].key()],
        }])
        .unwrap();
        let (_, mailboxes) = s.load(Duration::from_secs(30), 100).unwrap();
        assert_eq!(mailboxes.fetch(&n("bob"), 10).0, mail[1..].to_vec());
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
                origin: None,
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
                    quic_port: None,
                    moved: false,
                },
                Change::Registered {
                    name: n("bob"),
                    ip: LO,
                    port: 2,
                    at_ms: 10,
                    created: true,
                    quic_port: None,
                    moved: false,
                },
                // alice renews with a session port: a restarted tracker answers it.
                Change::Registered {
                    name: n("alice"),
                    ip: LO,
                    port: 1,
                    at_ms: 10,
                    created: false,
                    quic_port: Some(4433),
                    moved: true,
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
                    keys: vec![mail[1].key()],
                },
            ])
            .unwrap();
        }
        let mut s = SqliteStore::open(&storage).unwrap();
        let (registry, mailboxes) = s.load(Duration::from_secs(30), 100).unwrap();
        assert_eq!(registry.channels_of(&n("alice")), vec![ch.clone()]);
        assert_eq!(
            registry.live_endpoint(&n("alice"), 11),
            Some((LO, 1, Some(4433))),
            "the session port survives a restart"
        );
        assert_eq!(
            registry.members(&ch, None, 11).unwrap().len(),
            1,
            "bob left with his lease"
        );
        assert!(
            registry.members(&ch, None, 10 + 30_000).unwrap().is_empty(),
            "a restored lease expires as usual"
        );
        let held: Vec<_> = mailboxes.fetch(&n("bob"), 10).0;
        assert_eq!(held, vec![mail[0].clone(), mail[2].clone()]);
        assert!(mailboxes.knows(&n("alice")));
    }

    #[test]
    fn a_reopened_store_gives_back_owners_modes_keys_lists_and_presence() {
        use crate::proto::{ChannelMode, PeerStatus, Role};
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::Dir(dir.path().to_path_buf());
        let ch = ChannelName::new("secret").unwrap();
        let key = KeyHash::new("pw").unwrap();
        let reg = |name: &str, port| Change::Registered {
            name: n(name),
            ip: LO,
            port,
            at_ms: 10,
            created: true,
            quic_port: None,
            moved: false,
        };
        let join = |name: &str| Change::Joined {
            name: n(name),
            channel: ch.clone(),
            at_ms: 10,
        };
        let list = |l, name: &str, on| Change::Listed {
            channel: ch.clone(),
            list: l,
            peer: n(name),
            on,
        };
        {
            let mut s = SqliteStore::open(&storage).unwrap();
            s.record(&[
                reg("alice", 1),
                reg("bob", 2),
                reg("carol", 3),
                join("alice"),
                Change::Owned {
                    channel: ch.clone(),
                    owner: n("alice"),
                    origin: None,
                },
                Change::ModeSet {
                    channel: ch.clone(),
                    mode: ChannelMode::Key,
                    key: Some(key.clone()),
                },
                list(AclList::Invited, "bob", true),
                join("bob"),
                list(AclList::Visitor, "bob", true),
                list(AclList::Banned, "carol", true),
                list(AclList::Invited, "dave", true),
                list(AclList::Invited, "dave", false),
                Change::PresenceSet {
                    name: n("bob"),
                    presence: Some(Presence {
                        status: PeerStatus::Away,
                        message: Some("lunch".into()),
                    }),
                },
            ])
            .unwrap();
        }
        let mut s = SqliteStore::open(&storage).unwrap();
        let (registry, _) = s.load(Duration::from_secs(30), 100).unwrap();
        let info = registry.channel_info(&ch, Some(&n("alice")), 11).unwrap();
        assert_eq!(info.owner, Some(n("alice")));
        assert_eq!(info.mode, ChannelMode::Key);
        assert_eq!(info.invited, vec![n("bob")]);
        assert_eq!(info.banned, vec![n("carol")]);
        let bob = info.members.iter().find(|m| m.name == n("bob")).unwrap();
        assert_eq!(bob.role, Role::Visitor);
        assert_eq!(bob.status, PeerStatus::Away);
        assert_eq!(bob.away.as_deref(), Some("lunch"));
        assert!(
            registry.channel_info(&ch, Some(&n("carol")), 11).is_err(),
            "a key channel is shown to its members only, after a restart too"
        );
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
                    at_ms: 0,
                    origin: None,
                },
                Change::Bound {
                    name: n("alice"),
                    key: second,
                    at_ms: 0,
                    origin: None,
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

    #[test]
    fn given_quotas_used_and_things_expired_when_the_store_is_reopened_then_neither_is_forgotten_nor_back()
     {
        use crate::tracker::quota::Quotas;
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::Dir(dir.path().to_path_buf());
        let eve_host: IpAddr = "10.0.0.2".parse().unwrap();
        let key = || crate::identity::Identity::ephemeral().public_key();
        let c = |s: &str| ChannelName::new(s).unwrap();
        let mail = |at: u64| MailEntry {
            id: MessageId::now_v7(),
            from: n("eve"),
            envelope: "x".repeat(10),
            deposited_ms: at,
            origin: Some(eve_host),
        };
        {
            let mut s = SqliteStore::open(&storage).unwrap();
            let mut changes = vec![];
            for name in ["eve", "gone", "kept"] {
                changes.push(Change::Bound {
                    name: n(name),
                    key: key(),
                    at_ms: 100,
                    origin: Some(eve_host),
                });
            }
            changes.push(Change::NameUsed { name: n("kept") });
            changes.push(Change::Registered {
                name: n("eve"),
                ip: LO,
                port: 1,
                at_ms: 100,
                created: true,
                quic_port: None,
                moved: false,
            });
            for ch in ["a", "b"] {
                changes.push(Change::Joined {
                    name: n("eve"),
                    channel: c(ch),
                    at_ms: 100,
                });
                changes.push(Change::Owned {
                    channel: c(ch),
                    owner: n("eve"),
                    origin: Some(eve_host),
                });
            }
            changes.push(Change::Left {
                name: n("eve"),
                channel: c("b"),
            });
            changes.push(Change::Emptied {
                channels: vec![c("b")],
                at_ms: 200,
            });
            changes.push(Change::Deposited {
                to: n("kept"),
                entries: vec![mail(100), mail(300)],
            });
            changes.push(Change::MailExpired { cutoff_ms: 100 });
            changes.push(Change::NamesExpired {
                names: vec![n("gone")],
            });
            s.record(&changes).unwrap();
        }
        let mut s = SqliteStore::open(&storage).unwrap();
        let (mut registry, mut mailboxes) = s.load(Duration::from_secs(30), 100).unwrap();
        let ids = s.load_identities().unwrap();
        assert_eq!(
            ids.key_of(&n("gone")),
            None,
            "an expired name stays unbound"
        );
        assert!(!ids.binding(&n("eve")).unwrap().used);
        assert!(ids.binding(&n("kept")).unwrap().used);
        assert_eq!(
            mailboxes.pending(&n("kept")),
            1,
            "expired mail stays dropped"
        );
        mailboxes.set_quotas(Quotas {
            mail_bytes_per_address: 15,
            ..Quotas::default()
        });
        assert!(
            mailboxes.deposit(&n("kept"), vec![mail(400)]).is_err(),
            "the address's held bytes are counted again"
        );
        registry.set_quotas(Quotas {
            channels_per_identity: 2,
            empty_channel_expiry: Duration::from_millis(1_000),
            ..Quotas::default()
        });
        registry.register(&n("eve"), LO, 1, 300).unwrap();
        assert!(
            matches!(
                registry.join_from(&n("eve"), &c("third"), None, Some(eve_host), 300),
                Err(crate::tracker::registry::RegistryError::Quota(_))
            ),
            "eve's channels are counted again"
        );
        let (_, gone) = registry.forget_empty_channels(1_200, 10);
        assert_eq!(gone, vec![c("b")], "b was empty since 200, saved");
    }

    #[test]
    fn a_corrupt_database_refuses_the_start_saying_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::Dir(dir.path().to_path_buf());
        let mut store = SqliteStore::open(&storage).unwrap();
        let changes: Vec<Change> = (0..2_000)
            .map(|i| Change::Registered {
                name: n(&format!("peer{i}")),
                ip: LO,
                port: 1,
                at_ms: 10,
                created: true,
                quic_port: None,
                moved: false,
            })
            .collect();
        store.record(&changes).unwrap();
        drop(store);
        // Garbage over a page in the middle of the file, as a bad disk or a stray write would leave it.
        let path = dir.path().join(DB_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 5 * 4096, "{} bytes", bytes.len());
        bytes[3 * 4096..4 * 4096].fill(0x5a);
        std::fs::write(&path, bytes).unwrap();
        let e = SqliteStore::open(&storage)
            .err()
            .expect("a corrupt database is refused");
        assert!(
            e.0.contains("is corrupt") && e.0.contains("move it away"),
            "{e}"
        );
    }

    #[test]
    fn a_database_removed_under_the_store_is_written_back_and_refuses_saves_while_it_cannot_be() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("tracker");
        let storage = Storage::Dir(dir.clone());
        let mut store = SqliteStore::open(&storage).unwrap();
        let registered = |name: &str| Change::Registered {
            name: n(name),
            ip: LO,
            port: 1,
            at_ms: 10,
            created: true,
            quic_port: None,
            moved: false,
        };
        store.record(&[registered("alice")]).unwrap();
        // The whole data dir removed, and a file where it was: nothing can be written back there.
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::write(&dir, b"not a dir").unwrap();
        let e = store.record(&[registered("bob")]).unwrap_err();
        assert!(e.0.contains("could not be written back"), "{e}");
        std::fs::remove_file(&dir).unwrap();
        store.record(&[registered("carol")]).unwrap();
        drop(store);
        let (registry, _) = SqliteStore::open(&storage)
            .unwrap()
            .load(Duration::from_secs(3600), 10)
            .unwrap();
        let known = |name: &str| registry.lookup(&n(name), 10).is_ok();
        assert!(
            known("alice") && known("carol"),
            "written back with everything"
        );
        assert!(!known("bob"), "refused, so not kept");
    }
}
