//! The peer's durable state in SQLite (`<data-dir>/peer.sqlite3`): every message sent and received (the history,
//! which is also the duplicate filter: a message, its sender and id, is stored once), the outbox (which recipient
//! still has to get which of our messages), and the channels the user has joined.
//!
//! Each message is kept as its whole wire envelope, its sender's signature (`sig`) included, so what this node
//! hands out in a catch-up answer can be verified by whoever asks; no column was needed for it (rows from before
//! signatures read back unsigned, and are refused by receivers like any unsigned message).
//!
//! History is ordered by message id within a conversation. Ids are UUIDv7, ordered by creation time within each
//! sender's process, so every sender's messages read in the order they were sent, however they arrived (directly,
//! from the tracker's mailbox, or by catch-up).
//!
//! A message is keyed by (sender, id), not by id: another member reusing alice's id stores a message of its own
//! beside hers, never in its place. Each row also keeps a `mark_ms`, the time catch-up may resume from after it:
//! its id's time, but never later than when it was stored here, so no sender can move this node's catch-up into the
//! future ([`PeerStore::catch_up_mark`]).

use rusqlite::{Connection, OptionalExtension, params};

use super::receipts::{DeliveryState, StateUpdate};
use crate::proto::{
    ChannelName, ChatMessage, Destination, MessageId, PeerName, PublicKey, first_id_at, id_ms,
    now_ms,
};
use crate::storage::{Db, DbError, DbThread, Storage, open};

/// The schema, one step per version (`PRAGMA user_version`). Never edit a step; append one.
const MIGRATIONS: &[&str] = &[
    // 1: history, outbox, joined channels.
    "CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        conversation TEXT NOT NULL,
        sender TEXT NOT NULL,
        ts INTEGER NOT NULL,
        envelope TEXT NOT NULL
    );
    CREATE INDEX messages_by_conversation ON messages (conversation, id);
    CREATE TABLE outbox (
        recipient TEXT NOT NULL,
        id TEXT NOT NULL REFERENCES messages (id),
        PRIMARY KEY (recipient, id)
    ) WITHOUT ROWID;
    CREATE TABLE joined (
        channel TEXT PRIMARY KEY,
        since TEXT NOT NULL
    );
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )",
    // 2: messages keyed by (sender, id) instead of id alone (issue 11: a member could store its own message under
    // another's id first and have the real one dropped as a duplicate), the outbox likewise; and `mark_ms`, the
    // id's time capped by the arrival time, which catch-up starts from (NULL for the rows stored before this step:
    // their arrival is unknown, see `catch_up_mark`).
    "CREATE TABLE messages_v2 (
        sender TEXT NOT NULL,
        id TEXT NOT NULL,
        conversation TEXT NOT NULL,
        ts INTEGER NOT NULL,
        envelope TEXT NOT NULL,
        mark_ms INTEGER,
        PRIMARY KEY (sender, id)
    );
    INSERT INTO messages_v2 (sender, id, conversation, ts, envelope)
        SELECT sender, id, conversation, ts, envelope FROM messages;
    CREATE TABLE outbox_v2 (
        recipient TEXT NOT NULL,
        sender TEXT NOT NULL,
        id TEXT NOT NULL,
        PRIMARY KEY (recipient, sender, id),
        FOREIGN KEY (sender, id) REFERENCES messages_v2 (sender, id)
    ) WITHOUT ROWID;
    INSERT INTO outbox_v2 (recipient, sender, id)
        SELECT o.recipient, m.sender, o.id FROM outbox o JOIN messages m ON m.id = o.id;
    DROP TABLE outbox;
    DROP TABLE messages;
    ALTER TABLE messages_v2 RENAME TO messages;
    ALTER TABLE outbox_v2 RENAME TO outbox;
    CREATE INDEX messages_by_conversation ON messages (conversation, id, sender);
    CREATE INDEX messages_by_mark ON messages (conversation, mark_ms);
    CREATE INDEX messages_unmarked ON messages (conversation, id) WHERE mark_ms IS NULL",
    // 3 (issue 13): the key each peer name was first seen with, pinned: a tracker that later vouches for another
    // key for the name is refused until the user forgets the pin (`/forget-key name`).
    "CREATE TABLE peer_keys (
        name TEXT PRIMARY KEY,
        key TEXT NOT NULL,
        since_ms INTEGER NOT NULL
    ) WITHOUT ROWID",
    // 4: what became of each of this node's messages at each recipient once it left the outbox (issue 15: `held`
    // until the recipient's node says it has it, `delivered`, `failed`), and the outbox by message, to tell
    // which messages are still `sending`.
    "CREATE TABLE delivery (
        id TEXT NOT NULL,
        recipient TEXT NOT NULL,
        state TEXT NOT NULL,
        PRIMARY KEY (id, recipient)
    ) WITHOUT ROWID;
    CREATE INDEX outbox_by_message ON outbox (sender, id)",
    // 5: the read marker of each conversation (issue 15): the messages stored after row `upto` (in arrival order)
    // are unread. What was stored before this step counts as read.
    "CREATE TABLE read_marks (
        conversation TEXT PRIMARY KEY,
        upto INTEGER NOT NULL
    );
    INSERT INTO read_marks (conversation, upto) SELECT conversation, max(rowid) FROM messages GROUP BY conversation",
    // 6: full-text search over every message's text (issue 15), SQLite's FTS5 (compiled into rusqlite's bundled
    // SQLite). Contentless: the text is in `messages` already; an index row has the message's rowid (messages
    // are never deleted and the database is never VACUUMed, so rowids stay put).
    "CREATE VIRTUAL TABLE messages_fts USING fts5(text, content = '', tokenize = 'unicode61 remove_diacritics 2');
    INSERT INTO messages_fts (rowid, text) SELECT rowid, json_extract(envelope, '$.text') FROM messages",
    // 7: the search index is filled in batches, not in each message's own transaction (FTS5 flushes its index at
    // every commit: a third of a stored message's cost). `fts_upto` is the last row indexed; rows after it are
    // indexed before any search runs ([`index_pending`]) and by the node every [`INDEX_EVERY`].
    "INSERT OR REPLACE INTO meta (key, value) SELECT 'fts_upto', coalesce(max(rowid), 0) FROM messages",
];

/// How often the node indexes the messages stored since the last time, for search (a search indexes them first
/// anyway; this only keeps that catching-up short).
pub(crate) const INDEX_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Adds the messages stored since the last call to the search index (in the caller's transaction); how many.
fn index_pending(c: &Connection) -> Result<usize, DbError> {
    let upto: i64 = c
        .prepare_cached("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'fts_upto'")?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let last: i64 = c
        .prepare_cached("SELECT coalesce(max(rowid), 0) FROM messages")?
        .query_row([], |r| r.get(0))?;
    if last <= upto {
        return Ok(0);
    }
    let n = c
        .prepare_cached(
            "INSERT INTO messages_fts (rowid, text)
             SELECT rowid, json_extract(envelope, '$.text') FROM messages WHERE rowid > ?1 AND rowid <= ?2",
        )?
        .execute(params![upto, last])?;
    c.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES ('fts_upto', ?1)")?
        .execute(params![last.to_string()])?;
    Ok(n)
}

/// The database file inside a peer's data dir.
pub(crate) const DB_FILE: &str = "peer.sqlite3";

/// A message waiting in the outbox for one recipient.
pub(crate) type Pending = ChatMessage;

/// The peer's store: a handle to the thread that owns the database.
#[derive(Clone)]
pub(crate) struct PeerStore {
    db: Db,
    me: PeerName,
}

fn id_text(id: &MessageId) -> String {
    id.hyphenated().to_string()
}

fn envelope(msg: &ChatMessage) -> String {
    serde_json::to_string(msg).expect("a message always serializes")
}

fn parse(env: String) -> Result<ChatMessage, DbError> {
    serde_json::from_str(&env)
        .map_err(|e| DbError::Sql(format!("a stored message is corrupt: {e}")))
}

/// Stores `msg` unless its (sender, id) is held already; whether it was new. `now` is this node's clock: the
/// message's catch-up mark is its id's time, never later than now.
fn insert(c: &Connection, me: &PeerName, msg: &ChatMessage, now: u64) -> Result<bool, DbError> {
    let n = c
        .prepare_cached(
            "INSERT OR IGNORE INTO messages (sender, id, conversation, ts, envelope, mark_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            msg.from.as_str(),
            id_text(&msg.id),
            msg.conversation(me).label(),
            msg.ts as i64,
            envelope(msg),
            id_ms(&msg.id).min(now) as i64
        ])?;
    Ok(n == 1)
}

impl PeerStore {
    /// Opens the store and starts its thread.
    pub(crate) fn open(storage: &Storage, me: PeerName) -> Result<(PeerStore, DbThread), DbError> {
        let conn = open(storage, DB_FILE, MIGRATIONS)?;
        // Conversations are stored from the owner's point of view: one data dir, one name.
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('owner', ?1)",
            [me.as_str()],
        )?;
        let owner: String =
            conn.query_row("SELECT value FROM meta WHERE key = 'owner'", [], |r| {
                r.get(0)
            })?;
        if owner != me.as_str() {
            return Err(DbError::Owner {
                dir: storage.describe(),
                owner,
            });
        }
        let (db, thread) = match storage {
            Storage::Memory => Db::inline(conn),
            Storage::Dir(_) => Db::start(conn, me.as_str())?,
        };
        Ok((PeerStore { db, me }, thread))
    }

    /// Stores a message this node's user sent, and queues it for each recipient, in one transaction. Returns
    /// whether it was new (a retry with the same id is queued again, and stored once by everyone).
    #[cfg(test)]
    pub(crate) async fn save_sent(
        &self,
        msg: ChatMessage,
        recipients: Vec<PeerName>,
    ) -> Result<bool, DbError> {
        Ok(self.save_sent_counted(msg, recipients).await?.0)
    }

    /// [`PeerStore::save_sent`], also saying how many outbox rows it added (a recipient whose row for this id
    /// waits already gets none).
    pub(crate) async fn save_sent_counted(
        &self,
        msg: ChatMessage,
        recipients: Vec<PeerName>,
    ) -> Result<(bool, usize), DbError> {
        let me = self.me.clone();
        self.db
            .call(move |c| {
                let new = insert(c, &me, &msg, now_ms())?;
                let mut q = c.prepare_cached(
                    "INSERT OR IGNORE INTO outbox (recipient, sender, id) VALUES (?1, ?2, ?3)",
                )?;
                let mut added = 0;
                for r in &recipients {
                    added += q.execute(params![r.as_str(), me.as_str(), id_text(&msg.id)])?;
                }
                Ok((new, added))
            })
            .await
    }

    /// The peers this node has a direct conversation with, by name.
    pub(crate) fn direct_conversations(&self) -> Result<Vec<PeerName>, DbError> {
        self.db.call_blocking(|c| {
            let mut q = c.prepare_cached(
                "SELECT DISTINCT conversation FROM messages WHERE conversation LIKE '@%' ORDER BY conversation",
            )?;
            let rows = q.query_map([], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for row in rows {
                if let Ok(p) = PeerName::new(&row?[1..]) {
                    out.push(p);
                }
            }
            Ok(out)
        })
    }

    /// Stores received messages; for each, whether it was new (the same sender and id is stored once).
    pub(crate) async fn save_received(&self, msgs: Vec<ChatMessage>) -> Result<Vec<bool>, DbError> {
        let me = self.me.clone();
        self.db
            .call(move |c| {
                let now = now_ms();
                msgs.iter().map(|m| insert(c, &me, m, now)).collect()
            })
            .await
    }

    /// The last `n` messages of a conversation, oldest first.
    pub(crate) fn recent(&self, conv: &Destination, n: usize) -> Result<Vec<ChatMessage>, DbError> {
        let label = conv.label();
        self.db.call_blocking(move |c| recent(c, &label, n))
    }

    /// [`PeerStore::recent`] for async callers.
    pub(crate) async fn recent_async(
        &self,
        conv: &Destination,
        n: usize,
    ) -> Result<Vec<ChatMessage>, DbError> {
        let label = conv.label();
        self.db.call(move |c| recent(c, &label, n)).await
    }

    /// A channel's messages with an id above `after`, oldest first (by id, then sender), at most `limit` (what
    /// catch-up serves).
    pub(crate) async fn channel_after(
        &self,
        channel: &ChannelName,
        after: MessageId,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, DbError> {
        let label = Destination::Channel(channel.clone()).label();
        self.db
            .call(move |c| {
                let mut q = c.prepare_cached(
                    "SELECT envelope FROM messages WHERE conversation = ?1 AND id > ?2 ORDER BY id, sender LIMIT ?3",
                )?;
                let rows = q.query_map(params![label, id_text(&after), limit as i64], |r| {
                    r.get::<_, String>(0)
                })?;
                rows.map(|r| parse(r?)).collect()
            })
            .await
    }

    /// The time up to which this node holds a conversation, as far as it can vouch for it (ms since the epoch):
    /// the newest `mark_ms`, each the message's id time capped by when it arrived. A row stored before marks were
    /// kept counts with its id's time only if that is not ahead of `now`: such a row from the future (accepted
    /// before ids from the future were refused) must not keep moving catch-up past everything said since.
    pub(crate) async fn catch_up_mark(
        &self,
        conv: &Destination,
        now: u64,
    ) -> Result<Option<u64>, DbError> {
        let label = conv.label();
        self.db
            .call(move |c| {
                let marked: Option<i64> = c.query_row(
                    "SELECT max(mark_ms) FROM messages WHERE conversation = ?1",
                    [&label],
                    |r| r.get(0),
                )?;
                let unmarked: Option<String> = c.query_row(
                    "SELECT max(id) FROM messages WHERE conversation = ?1 AND mark_ms IS NULL AND id < ?2",
                    params![label, id_text(&first_id_at(now + 1))],
                    |r| r.get(0),
                )?;
                let unmarked = unmarked.and_then(|s| s.parse::<MessageId>().ok());
                Ok(marked
                    .map(|ms| ms.max(0) as u64)
                    .into_iter()
                    .chain(unmarked.as_ref().map(id_ms))
                    .max())
            })
            .await
    }

    /// Up to `limit` messages waiting for `recipient`, oldest first.
    pub(crate) async fn outbox_for(
        &self,
        recipient: &PeerName,
        limit: usize,
    ) -> Result<Vec<Pending>, DbError> {
        let r = recipient.to_string();
        self.db
            .call(move |c| {
                // Two single-table look-ups, not a join: SQLite prepares a join on `messages` again at every
                // run (measured: a fifth of the store thread's time in the DM benchmark).
                let mut q = c.prepare_cached(
                    "SELECT sender, id FROM outbox WHERE recipient = ?1 ORDER BY id LIMIT ?2",
                )?;
                let keys = q
                    .query_map(params![r, limit as i64], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                let mut envelope = c.prepare_cached(
                    "SELECT envelope FROM messages WHERE sender = ?1 AND id = ?2",
                )?;
                keys.iter()
                    .filter_map(|(s, id)| {
                        envelope
                            .query_row(params![s, id], |r| r.get::<_, String>(0))
                            .optional()
                            .transpose()
                    })
                    .map(|e| parse(e?))
                    .collect()
            })
            .await
    }

    /// Every recipient with messages waiting, and how many messages wait in all.
    pub(crate) async fn outbox_summary(&self) -> Result<(Vec<PeerName>, usize), DbError> {
        self.db
            .call(|c| {
                let mut q =
                    c.prepare("SELECT recipient, count(*) FROM outbox GROUP BY recipient")?;
                let rows =
                    q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
                let mut names = Vec::new();
                let mut total = 0;
                for row in rows {
                    let (name, n) = row?;
                    total += n as usize;
                    if let Ok(name) = PeerName::new(name) {
                        names.push(name);
                    }
                }
                Ok((names, total))
            })
            .await
    }

    /// The channels the user is in, with the id from which catch-up starts when nothing newer is held.
    pub(crate) async fn joined(&self) -> Result<Vec<(ChannelName, MessageId)>, DbError> {
        self.db
            .call(|c| {
                let mut q = c.prepare("SELECT channel, since FROM joined ORDER BY channel")?;
                let rows =
                    q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
                let mut out = Vec::new();
                for row in rows {
                    let (ch, since) = row?;
                    if let (Ok(ch), Ok(since)) = (ChannelName::new(ch), since.parse()) {
                        out.push((ch, since));
                    }
                }
                Ok(out)
            })
            .await
    }

    /// A value this node keeps about itself (`meta` table).
    /// Every pinned key: (name, key, pinned since, Unix ms). A row that does not parse is skipped (and logged).
    pub(crate) async fn pins(&self) -> Result<Vec<(PeerName, PublicKey, u64)>, DbError> {
        self.db
            .call(|c| {
                let mut q = c.prepare("SELECT name, key, since_ms FROM peer_keys")?;
                let rows = q.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })?;
                let mut pins = Vec::new();
                for row in rows {
                    let (name, key, since) = row?;
                    match (PeerName::new(&name), key.parse::<PublicKey>()) {
                        (Ok(n), Ok(k)) => pins.push((n, k, since as u64)),
                        _ => tracing::error!("a pinned key for {name:?} is corrupt; skipped"),
                    }
                }
                Ok(pins)
            })
            .await
    }

    /// Pins `key` for `name` unless a key is pinned for it already.
    pub(crate) async fn pin(
        &self,
        name: &PeerName,
        key: PublicKey,
        since: u64,
    ) -> Result<(), DbError> {
        let (name, key) = (name.to_string(), key.to_string());
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT OR IGNORE INTO peer_keys (name, key, since_ms) VALUES (?1, ?2, ?3)",
                    params![name, key, since as i64],
                )?;
                Ok(())
            })
            .await
    }

    /// Forgets the key pinned for `name`; whether there was one.
    pub(crate) async fn unpin(&self, name: &PeerName) -> Result<bool, DbError> {
        let name = name.to_string();
        self.db
            .call(move |c| Ok(c.execute("DELETE FROM peer_keys WHERE name = ?1", [name])? > 0))
            .await
    }

    pub(crate) async fn meta(&self, key: &'static str) -> Result<Option<String>, DbError> {
        self.db
            .call(move |c| {
                Ok(
                    c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                        .optional()?,
                )
            })
            .await
    }

    pub(crate) async fn set_meta(&self, key: &'static str, value: String) -> Result<(), DbError> {
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = ?2",
                    [key, value.as_str()],
                )?;
                Ok(())
            })
            .await
    }

    /// Records that the user joined (`since`: from when on they are a member) or left a channel.
    pub(crate) async fn set_joined(
        &self,
        channel: &ChannelName,
        since: Option<MessageId>,
    ) -> Result<(), DbError> {
        let ch = channel.to_string();
        self.db
            .call(move |c| {
                match since {
                    Some(id) => c.execute(
                        "INSERT OR IGNORE INTO joined (channel, since) VALUES (?1, ?2)",
                        params![ch, id_text(&id)],
                    )?,
                    None => c.execute("DELETE FROM joined WHERE channel = ?1", [ch])?,
                };
                Ok(())
            })
            .await
    }
}

/// The state of one of this node's messages (`me` its sender), all recipients together: `sending` while any
/// recipient's outbox row is left, else `held` while the tracker holds it for any, else `delivered` if anyone
/// got it (or there was nobody to give it to), else `failed` (every recipient refused it).
fn own_state(c: &Connection, me: &str, id: &str) -> Result<DeliveryState, DbError> {
    if any_queued(c, me, id)? {
        return Ok(DeliveryState::Sending);
    }
    state_once_sent(c, id)
}

/// Whether any recipient's outbox row is left for one of this node's messages. `EXISTS` stops at the first row
/// (a channel message has one per member, and every member's settle asks: counting them made it quadratic).
fn any_queued(c: &Connection, me: &str, id: &str) -> Result<bool, DbError> {
    Ok(
        c.prepare_cached("SELECT EXISTS (SELECT 1 FROM outbox WHERE sender = ?1 AND id = ?2)")?
            .query_row(params![me, id], |r| r.get(0))?,
    )
}

/// [`own_state`] of a message with no outbox row left: from what became of it at each recipient.
fn state_once_sent(c: &Connection, id: &str) -> Result<DeliveryState, DbError> {
    let mut q = c.prepare_cached("SELECT state FROM delivery WHERE id = ?1")?;
    let states = q
        .query_map([id], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let has = |s: DeliveryState| states.iter().any(|x| x == s.as_str());
    Ok(if has(DeliveryState::Held) {
        DeliveryState::Held
    } else if has(DeliveryState::Delivered) || states.is_empty() {
        DeliveryState::Delivered
    } else {
        DeliveryState::Failed
    })
}

/// A message's state as this node sees it: its own messages by [`own_state`], others' are `delivered` (here).
fn state_of(c: &Connection, me: &PeerName, msg: &ChatMessage) -> Result<DeliveryState, DbError> {
    match &msg.from == me {
        true => own_state(c, me.as_str(), &id_text(&msg.id)),
        false => Ok(DeliveryState::Delivered),
    }
}

impl PeerStore {
    /// [`PeerStore::recent_async`], each message with its state and whether it is unread.
    pub(crate) async fn recent_entries(
        &self,
        conv: &Destination,
        n: usize,
    ) -> Result<Vec<Entry>, DbError> {
        let label = conv.label();
        let me = self.me.clone();
        self.db
            .call(move |c| {
                let upto = read_upto(c, &label)?;
                let mut q = c.prepare_cached(
                    "SELECT envelope, rowid FROM messages WHERE conversation = ?1
                     ORDER BY id DESC, sender DESC LIMIT ?2",
                )?;
                let rows = q.query_map(params![label, n as i64], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })?;
                let mut out = Vec::new();
                for row in rows {
                    let (env, rowid) = row?;
                    let message = parse(env)?;
                    let state = state_of(c, &me, &message)?;
                    let unread = message.from != me && rowid > upto;
                    out.push(Entry {
                        message,
                        state,
                        unread,
                    });
                }
                out.reverse();
                Ok(out)
            })
            .await
    }

    /// Others' messages stored after each conversation's read marker, per conversation (those with any).
    pub(crate) async fn unread(&self) -> Result<Vec<(String, usize)>, DbError> {
        let me = self.me.to_string();
        self.db
            .call(move |c| {
                let mut q = c.prepare_cached(
                    "SELECT m.conversation, count(*) FROM messages m
                     LEFT JOIN read_marks r ON r.conversation = m.conversation
                     WHERE m.sender != ?1 AND m.rowid > coalesce(r.upto, 0)
                     GROUP BY m.conversation ORDER BY m.conversation",
                )?;
                let rows =
                    q.query_map([me], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
                rows.map(|r| r.map(|(c, n)| (c, n as usize)).map_err(DbError::from))
                    .collect()
            })
            .await
    }

    /// The newest messages whose text has every word of `query` (an FTS5 query, see `peer::search`), in one
    /// conversation (`#channel`, `@peer`) or all, newest first, at most `limit`; each with its conversation.
    pub(crate) async fn search(
        &self,
        query: String,
        within: Option<String>,
        limit: usize,
    ) -> Result<Vec<(ChatMessage, String)>, DbError> {
        self.db
            .call(move |c| {
                index_pending(c)?;
                let mut q = c.prepare_cached(
                    "SELECT envelope, conversation FROM messages
                     WHERE rowid IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?1)
                       AND (?2 IS NULL OR conversation = ?2)
                     ORDER BY rowid DESC LIMIT ?3",
                )?;
                let rows = q.query_map(params![query, within, limit as i64], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?;
                rows.map(|r| {
                    let (env, with) = r?;
                    Ok((parse(env)?, with))
                })
                .collect()
            })
            .await
    }

    /// Adds the messages stored since the last time to the search index; how many (see [`INDEX_EVERY`]).
    pub(crate) async fn index_for_search(&self) -> Result<usize, DbError> {
        self.db.call_relaxed(index_pending).await
    }

    /// Moves a conversation's read marker past every message stored so far; whether it moved.
    pub(crate) async fn mark_read(&self, conv: &Destination) -> Result<bool, DbError> {
        let label = conv.label();
        self.db
            .call(move |c| {
                let last: Option<i64> = c.query_row(
                    "SELECT max(rowid) FROM messages WHERE conversation = ?1",
                    [&label],
                    |r| r.get(0),
                )?;
                let Some(last) = last else { return Ok(false) };
                let n = c.execute(
                    "INSERT INTO read_marks (conversation, upto) VALUES (?1, ?2)
                     ON CONFLICT (conversation) DO UPDATE SET upto = ?2 WHERE upto < ?2",
                    params![label, last],
                )?;
                Ok(n > 0)
            })
            .await
    }

    /// Takes messages off `recipient`'s outbox with what became of each there, in one transaction; returns the
    /// messages whose state (all recipients together) this changed, with it.
    #[cfg(test)]
    pub(crate) async fn outbox_settled(
        &self,
        recipient: &PeerName,
        outcomes: Vec<(MessageId, Option<DeliveryState>)>,
    ) -> Result<Vec<StateUpdate>, DbError> {
        Ok(self.outbox_settled_counted(recipient, outcomes).await?.0)
    }

    /// [`PeerStore::outbox_settled`], also saying how many outbox rows it deleted (a message pushed twice is
    /// settled once).
    pub(crate) async fn outbox_settled_counted(
        &self,
        recipient: &PeerName,
        outcomes: Vec<(MessageId, Option<DeliveryState>)>,
    ) -> Result<(Vec<StateUpdate>, usize), DbError> {
        let r = recipient.to_string();
        let me = self.me.clone();
        self.db
            .call(move |c| {
                let mut changed = Vec::new();
                let mut deleted = 0;
                for (id, state) in &outcomes {
                    let id = id_text(id);
                    // `own_state` before and after, reading the delivery rows only when no outbox row is left
                    // (for a channel message, every recipient's settle read every recipient's row: quadratic).
                    let gone = c
                        .prepare_cached(
                            "DELETE FROM outbox WHERE recipient = ?1 AND sender = ?2 AND id = ?3",
                        )?
                        .execute(params![r, me.as_str(), id])?;
                    deleted += gone;
                    // A row was there, so it was `sending`; else the delete changed nothing and it is as it is.
                    let before = match gone > 0 || any_queued(c, me.as_str(), &id)? {
                        true => DeliveryState::Sending,
                        false => state_once_sent(c, &id)?,
                    };
                    if let Some(state) = state {
                        c.prepare_cached(
                            "INSERT INTO delivery (id, recipient, state) VALUES (?1, ?2, ?3)
                             ON CONFLICT (id, recipient) DO UPDATE SET state = ?3",
                        )?
                        .execute(params![id, r, state.as_str()])?;
                    }
                    let after = match any_queued(c, me.as_str(), &id)? {
                        true => DeliveryState::Sending,
                        false => state_once_sent(c, &id)?,
                    };
                    if after != before {
                        changed.extend(own_update(c, me.as_str(), &id, after)?);
                    }
                }
                Ok((changed, deleted))
            })
            .await
    }

    /// `recipient`'s node says it holds these messages of ours: those the tracker held for it become
    /// `delivered`. Returns the messages whose state this changed, with their text.
    pub(crate) async fn mark_delivered(
        &self,
        recipient: &PeerName,
        ids: Vec<MessageId>,
    ) -> Result<Vec<(StateUpdate, String)>, DbError> {
        let r = recipient.to_string();
        let me = self.me.clone();
        self.db
            .call(move |c| {
                let mut changed = Vec::new();
                for id in &ids {
                    let id = id_text(id);
                    let before = own_state(c, me.as_str(), &id)?;
                    let n = c
                        .prepare_cached(
                            "UPDATE delivery SET state = 'delivered'
                             WHERE id = ?1 AND recipient = ?2 AND state = 'held'",
                        )?
                        .execute(params![id, r])?;
                    let after = own_state(c, me.as_str(), &id)?;
                    if n == 0 || after == before {
                        continue;
                    }
                    let text: Option<String> = c
                        .prepare_cached(
                            "SELECT envelope FROM messages WHERE sender = ?1 AND id = ?2",
                        )?
                        .query_row(params![me.as_str(), id], |r| r.get(0))
                        .optional()?;
                    if let (Some(update), Some(env)) =
                        (own_update(c, me.as_str(), &id, after)?, text)
                    {
                        changed.push((update, parse(env)?.text));
                    }
                }
                Ok(changed)
            })
            .await
    }
}

/// The row after which a conversation's messages are unread (0: all of them).
fn read_upto(c: &Connection, label: &str) -> Result<i64, DbError> {
    Ok(
        c.prepare_cached("SELECT upto FROM read_marks WHERE conversation = ?1")?
            .query_row([label], |r| r.get(0))
            .optional()?
            .unwrap_or(0),
    )
}

/// A message as the local API lists it: its fields, its state, and whether it is unread (after the read marker).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    #[serde(flatten)]
    pub message: ChatMessage,
    pub state: DeliveryState,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unread: bool,
}

/// A state change of one of this node's messages, with the conversation it is in (as the front ends key it).
fn own_update(
    c: &Connection,
    me: &str,
    id: &str,
    state: DeliveryState,
) -> Result<Option<StateUpdate>, DbError> {
    let with: Option<String> = c
        .prepare_cached("SELECT conversation FROM messages WHERE sender = ?1 AND id = ?2")?
        .query_row(params![me, id], |r| r.get(0))
        .optional()?;
    Ok(match (with, id.parse::<MessageId>()) {
        (Some(with), Ok(id)) => Some(StateUpdate { id, with, state }),
        _ => None,
    })
}

fn recent(c: &Connection, label: &str, n: usize) -> Result<Vec<ChatMessage>, DbError> {
    let mut q = c.prepare_cached(
        "SELECT envelope FROM messages WHERE conversation = ?1 ORDER BY id DESC, sender DESC LIMIT ?2",
    )?;
    let rows = q.query_map(params![label, n as i64], |r| r.get::<_, String>(0))?;
    let mut msgs = rows.map(|r| parse(r?)).collect::<Result<Vec<_>, _>>()?;
    msgs.reverse();
    Ok(msgs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> PeerName {
        PeerName::new(s).unwrap()
    }

    #[test]
    fn a_data_dir_belongs_to_one_name() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::Dir(dir.path().to_path_buf());
        let (store, thread) = PeerStore::open(&storage, n("alice")).unwrap();
        drop(store);
        thread.join();
        let err = PeerStore::open(&storage, n("bob")).err().unwrap();
        assert!(err.to_string().contains("holds alice's data"), "{err}");
        assert!(PeerStore::open(&storage, n("alice")).is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn history_survives_a_reopen_once_per_id_in_sender_order_and_the_outbox_too() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::Dir(dir.path().to_path_buf());
        let ch = Destination::Channel(ChannelName::new("g").unwrap());
        let msgs: Vec<ChatMessage> = (0..5)
            .map(|i| ChatMessage::new(n("alice"), ch.clone(), format!("m{i}")).unwrap())
            .collect();
        let dm = ChatMessage::new(n("bob"), Destination::Direct(n("carol")), "hi".into()).unwrap();
        {
            let (store, thread) = PeerStore::open(&storage, n("bob")).unwrap();
            // Arrival out of order, and twice.
            let mut shuffled = msgs.clone();
            shuffled.reverse();
            assert_eq!(store.save_received(shuffled).await.unwrap(), [true; 5]);
            assert_eq!(
                store.save_received(vec![msgs[2].clone()]).await.unwrap(),
                [false]
            );
            store.save_sent(dm.clone(), vec![n("carol")]).await.unwrap();
            drop(store);
            thread.join();
        }
        let (store, _thread) = PeerStore::open(&storage, n("bob")).unwrap();
        let texts: Vec<_> = store
            .recent(&ch, 10)
            .unwrap()
            .into_iter()
            .map(|m| m.text)
            .collect();
        assert_eq!(texts, ["m0", "m1", "m2", "m3", "m4"]);
        assert_eq!(store.recent(&ch, 2).unwrap()[0].text, "m3");
        let waiting = store.outbox_for(&n("carol"), 10).await.unwrap();
        assert_eq!(waiting, vec![dm.clone()]);
        assert_eq!(
            store.recent(&Destination::Direct(n("carol")), 5).unwrap(),
            vec![dm.clone()]
        );
        store
            .outbox_settled(&n("carol"), vec![(dm.id, None)])
            .await
            .unwrap();
        assert_eq!(store.outbox_summary().await.unwrap(), (vec![], 0));
        let after = store
            .channel_after(ch_name(&ch), msgs[2].id, 10)
            .await
            .unwrap();
        assert_eq!(after, msgs[3..].to_vec());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn given_another_sender_used_an_id_first_then_both_messages_are_kept_and_a_repeat_is_a_duplicate()
     {
        let (store, _thread) = PeerStore::open(&Storage::Memory, n("bob")).unwrap();
        let ch = Destination::Channel(ChannelName::new("g").unwrap());
        let real = ChatMessage::new(n("alice"), ch.clone(), "the real one".into()).unwrap();
        let mut squat = ChatMessage::new(n("mallory"), ch.clone(), "mine now".into()).unwrap();
        squat.id = real.id;
        assert_eq!(
            store.save_received(vec![squat.clone()]).await.unwrap(),
            [true]
        );
        assert_eq!(
            store
                .save_received(vec![real.clone(), real.clone(), squat.clone()])
                .await
                .unwrap(),
            [true, false, false]
        );
        let held = store.recent(&ch, 10).unwrap();
        assert_eq!(held.len(), 2);
        assert!(held.contains(&real) && held.contains(&squat));
        // My own message under a received id is mine, queued and delivered by (me, id).
        let mut mine = ChatMessage::new(n("bob"), ch.clone(), "me too".into()).unwrap();
        mine.id = real.id;
        assert!(
            store
                .save_sent(mine.clone(), vec![n("alice")])
                .await
                .unwrap()
        );
        assert_eq!(store.outbox_for(&n("alice"), 10).await.unwrap(), vec![mine]);
        store
            .outbox_settled(&n("alice"), vec![(real.id, None)])
            .await
            .unwrap();
        assert_eq!(store.outbox_summary().await.unwrap(), (vec![], 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn given_a_store_from_before_sender_keys_then_it_migrates_and_its_future_rows_do_not_mark_catch_up()
     {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ms();
        let ch = Destination::Channel(ChannelName::new("g").unwrap());
        let old = ChatMessage::new(n("alice"), ch.clone(), "an hour ago".into())
            .map(|mut m| {
                m.id = first_id_at(now - 3_600_000);
                m
            })
            .unwrap();
        let mut future = ChatMessage::new(n("mallory"), ch.clone(), "from 2031".into()).unwrap();
        future.id = first_id_at(now + 5 * 365 * 24 * 3_600_000);
        let sent =
            ChatMessage::new(n("bob"), Destination::Direct(n("carol")), "hi".into()).unwrap();
        {
            // Schema 1, as a node before this change left it.
            let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.execute_batch("PRAGMA user_version = 1").unwrap();
            for m in [&old, &future, &sent] {
                c.execute(
                    "INSERT INTO messages (id, conversation, sender, ts, envelope) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id_text(&m.id), m.conversation(&n("bob")).label(), m.from.as_str(), m.ts as i64, envelope(m)],
                )
                .unwrap();
            }
            c.execute(
                "INSERT INTO outbox (recipient, id) VALUES ('carol', ?1)",
                [id_text(&sent.id)],
            )
            .unwrap();
        }
        let storage = Storage::Dir(dir.path().to_path_buf());
        let (store, _thread) = PeerStore::open(&storage, n("bob")).unwrap();
        assert_eq!(
            store.recent(&ch, 10).unwrap(),
            vec![old.clone(), future.clone()]
        );
        assert_eq!(store.outbox_for(&n("carol"), 10).await.unwrap(), vec![sent]);
        // The row from the future does not count; the one from an hour ago does.
        assert_eq!(
            store.catch_up_mark(&ch, now).await.unwrap(),
            Some(id_ms(&old.id))
        );
        // A message received now marks now, whatever its id says (within the allowed skew).
        let mut ahead = ChatMessage::new(n("alice"), ch.clone(), "a minute ahead".into()).unwrap();
        ahead.id = first_id_at(now_ms() + 60_000);
        store.save_received(vec![ahead]).await.unwrap();
        let mark = store.catch_up_mark(&ch, now_ms()).await.unwrap().unwrap();
        assert!(mark >= now && mark <= now_ms(), "{mark} is not now ({now})");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sent_message_is_sending_then_held_while_anyone_waits_then_delivered_and_only_its_recipient_can_say_so()
     {
        let (store, _thread) = PeerStore::open(&Storage::Memory, n("alice")).unwrap();
        let ch = Destination::Channel(ChannelName::new("g").unwrap());
        let msg = ChatMessage::new(n("alice"), ch.clone(), "hi all".into()).unwrap();
        let state = |s: &PeerStore| {
            let s = s.clone();
            async move { s.recent_entries(&ch_of(), 10).await.unwrap()[0].state }
        };
        fn ch_of() -> Destination {
            Destination::Channel(ChannelName::new("g").unwrap())
        }
        store
            .save_sent(msg.clone(), vec![n("bob"), n("carol")])
            .await
            .unwrap();
        assert_eq!(state(&store).await, DeliveryState::Sending);
        let changed = store
            .outbox_settled(&n("bob"), vec![(msg.id, Some(DeliveryState::Held))])
            .await
            .unwrap();
        assert!(changed.is_empty(), "still sending to carol");
        let changed = store
            .outbox_settled(&n("carol"), vec![(msg.id, Some(DeliveryState::Delivered))])
            .await
            .unwrap();
        assert_eq!(changed[0].state, DeliveryState::Held);
        assert_eq!(changed[0].with, "#g");
        // Only bob's word moves bob's copy; carol's changes nothing.
        assert!(
            store
                .mark_delivered(&n("carol"), vec![msg.id])
                .await
                .unwrap()
                .is_empty()
        );
        let changed = store.mark_delivered(&n("bob"), vec![msg.id]).await.unwrap();
        assert_eq!(
            (changed[0].0.state, changed[0].1.as_str()),
            (DeliveryState::Delivered, "hi all")
        );
        assert_eq!(state(&store).await, DeliveryState::Delivered);
        assert!(
            store
                .mark_delivered(&n("bob"), vec![msg.id])
                .await
                .unwrap()
                .is_empty(),
            "a replay changes nothing"
        );
        // Refused by everyone: failed. Nobody to send to: delivered.
        let refused =
            ChatMessage::new(n("alice"), Destination::Direct(n("dave")), "x".into()).unwrap();
        store
            .save_sent(refused.clone(), vec![n("dave")])
            .await
            .unwrap();
        store
            .outbox_settled(&n("dave"), vec![(refused.id, Some(DeliveryState::Failed))])
            .await
            .unwrap();
        let dave = store
            .recent_entries(&Destination::Direct(n("dave")), 1)
            .await
            .unwrap();
        assert_eq!(dave[0].state, DeliveryState::Failed);
        let alone = ChatMessage::new(n("alice"), ch.clone(), "anyone?".into()).unwrap();
        store.save_sent(alone, vec![]).await.unwrap();
        assert_eq!(
            store.recent_entries(&ch, 1).await.unwrap()[0].state,
            DeliveryState::Delivered
        );
    }

    fn ch_name(d: &Destination) -> &ChannelName {
        match d {
            Destination::Channel(c) => c,
            _ => unreachable!(),
        }
    }
}
