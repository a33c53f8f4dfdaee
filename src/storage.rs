//! SQLite plumbing shared by the peer's and the tracker's stores: where a node keeps its data, opening a database
//! with the crash-safety settings every store relies on, versioned schema migrations, and [`Db`]: one connection
//! owned by a dedicated thread behind a bounded queue, committing whatever is queued together (group commit).
//!
//! Settings, on every database: WAL journal (readers never block the writer; a crash leaves either the old or the
//! new transaction, never half of one), `synchronous=FULL` (each commit is fsynced before it is reported, so what
//! we acknowledge survives a power cut, not only a crash of the process; group commit pays for it), and exclusive
//! locking (a second process on the same data dir is refused instead of interleaving writes).

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

/// Jobs that may wait for the store thread before callers are held back.
pub const STORE_QUEUE: usize = 1024;
/// Most jobs committed in one transaction.
pub const GROUP_COMMIT_MAX: usize = 512;

/// Where a node keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// Nothing on disk: everything is gone when the process ends (the demo, the benchmark's baseline).
    Memory,
    /// A folder holding the node's database.
    Dir(PathBuf),
}

impl Storage {
    /// `explicit` if given, else `<user data dir>/hchat/<leaf>` (`$XDG_DATA_HOME`, else `~/.local/share`).
    pub fn dir_or_default(explicit: Option<PathBuf>, leaf: &str) -> Storage {
        Storage::Dir(explicit.unwrap_or_else(|| default_root().join(leaf)))
    }

    pub fn describe(&self) -> String {
        match self {
            Storage::Memory => "memory (nothing kept)".into(),
            Storage::Dir(d) => d.display().to_string(),
        }
    }
}

fn default_root() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("hchat")
}

/// Why a database could not be opened or used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    #[error("cannot open {0}: {1}")]
    Open(PathBuf, String),
    #[error("{0} is in use by another hchat process; give this one its own --data-dir")]
    InUse(PathBuf),
    #[error("{0} was written by a newer hchat (schema {1}, this one knows {2}); upgrade hchat")]
    TooNew(PathBuf, usize, usize),
    #[error("{dir} holds {owner}'s data; give each name its own --data-dir")]
    Owner { dir: String, owner: String },
    #[error("database error: {0}")]
    Sql(String),
    /// The disk (or the database's size limit) is full: nothing more can be saved until space is freed.
    #[error("the disk holding the data is full; free some space ({0})")]
    Full(String),
    #[error("the store has stopped")]
    Stopped,
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => DbError::Full(e.to_string()),
            _ => DbError::Sql(e.to_string()),
        }
    }
}

/// Makes `dir` (and its missing parents) readable by its owner only (0700): a data dir holds the identity key,
/// the history and the outbox, which are nobody else's business.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    builder.create(dir)
}

/// Makes a database file and its companions (`-wal`, `-shm`) readable by their owner only (0600). SQLite creates
/// them 0644 (less the umask), and gives the companions the main file's mode.
fn make_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    let _ = path;
    Ok(())
}

/// Opens (creating if needed) `file` in `storage`, applies the settings above and brings the schema up to date:
/// `migrations[i]` takes a database from version `i` to `i + 1` (`PRAGMA user_version`), each in one transaction.
pub fn open(storage: &Storage, file: &str, migrations: &[&str]) -> Result<Connection, DbError> {
    let (conn, path) = match storage {
        Storage::Memory => (Connection::open_in_memory()?, PathBuf::from(":memory:")),
        Storage::Dir(dir) => {
            create_private_dir(dir).map_err(|e| DbError::Open(dir.clone(), e.to_string()))?;
            let path = dir.join(file);
            let open_err = |e: std::io::Error| DbError::Open(path.clone(), e.to_string());
            if !path.exists() {
                // Made 0600 before SQLite makes it 0644, so it is never readable by others, even for a moment.
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                options.open(&path).map_err(open_err)?;
            }
            make_private(&path).map_err(open_err)?;
            let conn =
                Connection::open(&path).map_err(|e| DbError::Open(path.clone(), e.to_string()))?;
            (conn, path)
        }
    };
    if matches!(storage, Storage::Dir(_)) {
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(|e| busy_or(&path, e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(DbError::Open(path, format!("journal mode {mode}, not WAL")));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Take the exclusive lock now, so a second process fails at start rather than at its first write.
        conn.execute_batch("BEGIN IMMEDIATE; COMMIT;")
            .map_err(|e| busy_or(&path, e))?;
        make_private(&path).map_err(|e| DbError::Open(path.clone(), e.to_string()))?;
    }
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrate(&conn, &path, migrations)?;
    Ok(conn)
}

fn busy_or(path: &Path, e: rusqlite::Error) -> DbError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            DbError::InUse(path.to_path_buf())
        }
        _ => DbError::Open(path.to_path_buf(), e.to_string()),
    }
}

fn migrate(conn: &Connection, path: &Path, migrations: &[&str]) -> Result<(), DbError> {
    let at: usize = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if at > migrations.len() {
        return Err(DbError::TooNew(path.to_path_buf(), at, migrations.len()));
    }
    for (i, step) in migrations.iter().enumerate().skip(at) {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {step}; PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))
        .map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            DbError::Sql(format!("migration to schema {}: {e}", i + 1))
        })?;
        tracing::debug!(db = %path.display(), version = i + 1, "schema migrated");
    }
    Ok(())
}

/// A job for the store thread: it runs inside the open transaction and returns what to do once the transaction
/// has committed (or failed).
type Run = Box<dyn FnOnce(&Connection) -> Box<dyn FnOnce(Result<(), DbError>) + Send> + Send>;

struct Job {
    run: Run,
    /// The caller needs the commit fsynced before it hears back (see [`Db::call_relaxed`]).
    durable: bool,
}

/// One connection owned by a dedicated thread. Callers queue closures; the thread runs everything queued in one
/// transaction and answers each caller only after the commit, so an answer means "durable".
///
/// An in-memory database ([`Db::inline`]) has no disk to wait for, so it has no thread: a call runs at once on the
/// caller's thread when the connection is free. Measured on the benchmark's DM path, the hand-off to a store thread
/// and back cost ~150 µs a call (two thread wake-ups) for a few microseconds of SQLite work. A call that finds the
/// connection in use leaves its job to the caller holding it, which commits every job left so before it lets go
/// (the thread's group commit, done by whoever is there): no worker thread of the runtime ever blocks on another's
/// transaction. Measured on a fan-out burst, where the sender's store settles a hundred members' acks from both
/// worker threads, blocking on the lock was a third of the process's futex calls.
#[derive(Clone)]
pub struct Db {
    to: To,
}

#[derive(Clone)]
enum To {
    /// The store thread's queue.
    Thread(mpsc::Sender<Job>),
    /// The connection itself, and the jobs waiting for whoever holds it.
    Inline(std::sync::Arc<Inline>),
}

/// An in-memory store's connection, with the jobs left for whoever holds it (see [`Db`]).
struct Inline {
    /// The connection, and whether its last commit was at `synchronous=FULL` (as the thread keeps it).
    conn: std::sync::Mutex<(Connection, bool)>,
    /// Jobs whose callers found the connection in use; the holder commits them before it lets go. Bounded by the
    /// callers: each waits for its job's answer before it can queue another.
    waiting: std::sync::Mutex<Vec<Job>>,
}

impl Inline {
    /// Queues `job` and, unless another caller holds the connection (it will commit `job`), commits everything
    /// queued. Each round takes what is queued, at most [`GROUP_COMMIT_MAX`] jobs, as one transaction; after
    /// letting go, the holder looks again, so a job queued by a caller that found the connection taken is never
    /// left behind.
    fn run(&self, job: Job) {
        crate::sync::lock(&self.waiting).push(job);
        self.run_waiting();
    }

    /// [`Inline::run`] for a synchronous caller, which may wait for the connection: once it holds it, every job
    /// queued before, its own included, has been committed (by it or by the holder before).
    fn run_blocking(&self, job: Job) {
        crate::sync::lock(&self.waiting).push(job);
        let mut guard = crate::sync::lock(&self.conn);
        self.commit_waiting(&mut guard);
        drop(guard);
        // Jobs queued while this caller committed, whose callers found the connection taken.
        self.run_waiting();
    }

    /// Commits what is queued unless another caller holds the connection, and looks again after letting go.
    fn run_waiting(&self) {
        loop {
            let mut guard = match self.conn.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return,
            };
            self.commit_waiting(&mut guard);
            drop(guard);
            if crate::sync::lock(&self.waiting).is_empty() {
                return;
            }
        }
    }

    fn commit_waiting(&self, guard: &mut std::sync::MutexGuard<'_, (Connection, bool)>) {
        loop {
            let jobs: Vec<Job> = {
                let mut waiting = crate::sync::lock(&self.waiting);
                let n = waiting.len().min(GROUP_COMMIT_MAX);
                waiting.drain(..n).collect()
            };
            if jobs.is_empty() {
                return;
            }
            let (conn, synced) = &mut **guard;
            commit_jobs(conn, synced, jobs);
        }
    }
}

/// The store thread; joining it waits until every queued job has been committed.
pub struct DbThread(Option<std::thread::JoinHandle<()>>);

impl DbThread {
    /// Waits for the thread to finish (after every [`Db`] handle is dropped).
    pub fn join(mut self) {
        if let Some(t) = self.0.take() {
            let _ = t.join();
        }
    }
}

impl Db {
    /// Starts the thread that owns `conn`.
    pub fn start(conn: Connection, name: &str) -> Result<(Db, DbThread), DbError> {
        let mut synced = true;
        let (tx, thread) = group_commit(&format!("{name}-store"), move |jobs| {
            commit_jobs(&conn, &mut synced, jobs)
        })
        .map_err(|e| DbError::Sql(format!("cannot start the store thread: {e}")))?;
        Ok((Db { to: To::Thread(tx) }, DbThread(Some(thread))))
    }

    /// A store that runs calls on its callers' threads (for an in-memory database: nothing to wait for), each
    /// group committed as the thread would commit it.
    pub fn inline(conn: Connection) -> (Db, DbThread) {
        let inline = Inline {
            conn: std::sync::Mutex::new((conn, true)),
            waiting: std::sync::Mutex::new(Vec::new()),
        };
        (
            Db {
                to: To::Inline(std::sync::Arc::new(inline)),
            },
            DbThread(None),
        )
    }

    /// Hands `job` to the store; its answer comes on the job's own channel.
    async fn queue(&self, job: Job) -> Result<(), DbError> {
        match &self.to {
            To::Thread(tx) => tx.send(job).await.map_err(|_| DbError::Stopped),
            To::Inline(inline) => {
                inline.run(job);
                Ok(())
            }
        }
    }

    fn job<R: Send + 'static>(
        durable: bool,
        f: impl FnOnce(&Connection) -> Result<R, DbError> + Send + 'static,
    ) -> (Job, oneshot::Receiver<Result<R, DbError>>) {
        let (reply, answer) = oneshot::channel();
        let run: Run = Box::new(move |conn| {
            let result = f(conn);
            Box::new(move |committed| {
                let _ = reply.send(committed.and(result));
            })
        });
        (Job { run, durable }, answer)
    }

    /// Runs `f` on the store thread and returns its result once committed.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, DbError> + Send + 'static,
    ) -> Result<R, DbError> {
        let (job, answer) = Self::job(true, f);
        self.queue(job).await?;
        answer.await.unwrap_or(Err(DbError::Stopped))
    }

    /// [`Db::call`] for changes whose loss in a power cut is harmless (a delivered message's outbox row: were it
    /// to come back, the message is sent again and stored once). If nothing else in its group needs it, the
    /// commit is not fsynced at once (`synchronous=NORMAL`: the next fsynced commit or checkpoint carries it), so
    /// it does not hold up the next message. A crash of the process loses nothing either way.
    pub async fn call_relaxed<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, DbError> + Send + 'static,
    ) -> Result<R, DbError> {
        let (job, answer) = Self::job(false, f);
        self.queue(job).await?;
        answer.await.unwrap_or(Err(DbError::Stopped))
    }

    /// [`Db::call`] for synchronous callers. Inside a multi-threaded runtime the worker thread is handed over to
    /// blocking first; elsewhere a scoped thread waits, so no async thread is ever parked on the store.
    pub fn call_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, DbError> + Send + 'static,
    ) -> Result<R, DbError> {
        let (job, mut answer) = Self::job(true, f);
        let tx = match &self.to {
            To::Thread(tx) => tx,
            To::Inline(inline) => {
                inline.run_blocking(job);
                // Answered before `run_blocking` returned.
                return answer.try_recv().unwrap_or(Err(DbError::Stopped));
            }
        };
        let wait = move || -> Result<R, DbError> {
            tx.blocking_send(job).map_err(|_| DbError::Stopped)?;
            answer.blocking_recv().unwrap_or(Err(DbError::Stopped))
        };
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
            Ok(_) => std::thread::scope(|s| {
                s.spawn(wait)
                    .join()
                    .unwrap_or_else(|_| Err(DbError::Stopped))
            }),
            Err(_) => wait(),
        }
    }
}

/// The group-commit loop, the one every store runs: a thread named `name` waits for a job, takes whatever else
/// is queued with it (at most [`GROUP_COMMIT_MAX`]) and hands the batch to `commit`, which saves it in one
/// transaction and answers each job's caller. The queue holds [`STORE_QUEUE`] jobs; the thread ends once every
/// sender is dropped and the queue is empty. Used by [`Db`] (the peer's store) and by the tracker's store.
pub fn group_commit<J: Send + 'static>(
    name: &str,
    mut commit: impl FnMut(Vec<J>) + Send + 'static,
) -> std::io::Result<(mpsc::Sender<J>, std::thread::JoinHandle<()>)> {
    let (tx, mut rx) = mpsc::channel(STORE_QUEUE);
    let thread = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            while let Some(first) = rx.blocking_recv() {
                let mut batch = vec![first];
                while batch.len() < GROUP_COMMIT_MAX {
                    match rx.try_recv() {
                        Ok(j) => batch.push(j),
                        Err(_) => break,
                    }
                }
                commit(batch);
            }
        })?;
    Ok((tx, thread))
}

/// [`Db`]'s commit: runs a batch of jobs in one transaction, fsynced unless every job is relaxed.
fn commit_jobs(conn: &Connection, synced: &mut bool, jobs: Vec<Job>) {
    // FULL unless every job in the group is relaxed (on an in-memory database the setting does nothing).
    let durable = jobs.iter().any(|j| j.durable);
    if durable != *synced {
        let level = if durable { "FULL" } else { "NORMAL" };
        match conn.pragma_update(None, "synchronous", level) {
            Ok(()) => *synced = durable,
            Err(e) => tracing::error!("store: cannot set synchronous={level}: {e}"),
        }
    }
    // Cached statements: `execute_batch` would parse the SQL again for every group.
    let run = |sql: &str| -> Result<(), DbError> {
        conn.prepare_cached(sql)?.execute([])?;
        Ok(())
    };
    let began = run("BEGIN IMMEDIATE");
    if let Err(e) = began {
        // Run nothing outside a transaction: dropping the jobs answers every caller with an error.
        tracing::error!("store: {e}");
        return;
    }
    let done: Vec<_> = jobs.into_iter().map(|job| (job.run)(conn)).collect();
    let committed = run("COMMIT");
    if let Err(e) = &committed {
        tracing::error!("store: commit failed: {e}");
        let _ = run("ROLLBACK");
    }
    for d in done {
        d(committed.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &[&str] = &[
        "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)",
        "ALTER TABLE t ADD COLUMN w TEXT",
    ];

    #[cfg(unix)]
    #[test]
    fn a_data_dir_is_private_and_its_database_files_too() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("alice");
        let conn = open(&Storage::Dir(dir.clone()), "x.sqlite3", SCHEMA).unwrap();
        conn.execute("INSERT INTO t (k, v) VALUES (1, 'a')", [])
            .unwrap();
        let mode = |p: PathBuf| std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.clone()), 0o700);
        assert_eq!(mode(dir.join("x.sqlite3")), 0o600);
        assert_eq!(mode(dir.join("x.sqlite3-wal")), 0o600);
        drop(conn);
        // A database made by an older hchat, readable by all, is made private when opened.
        std::fs::set_permissions(
            dir.join("x.sqlite3"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let _conn = open(&Storage::Dir(dir.clone()), "x.sqlite3", SCHEMA).unwrap();
        assert_eq!(mode(dir.join("x.sqlite3")), 0o600);
    }

    #[test]
    fn a_full_disk_is_its_own_error() {
        let conn = open(&Storage::Memory, "x.sqlite3", SCHEMA).unwrap();
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        // The database may not grow: what a full disk does to a write.
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
            .unwrap();
        let big = "x".repeat(100_000);
        let e: DbError = conn
            .execute("INSERT INTO t (k, v) VALUES (1, ?1)", [&big])
            .unwrap_err()
            .into();
        assert!(matches!(e, DbError::Full(_)), "{e:?}");
        assert!(e.to_string().contains("free some space"), "{e}");
    }

    #[test]
    fn migrations_run_once_in_order_and_a_second_process_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::Dir(dir.path().to_path_buf());
        let conn = open(&storage, "x.sqlite3", &SCHEMA[..1]).unwrap();
        conn.execute("INSERT INTO t (k, v) VALUES (1, 'a')", [])
            .unwrap();
        assert!(matches!(
            open(&storage, "x.sqlite3", SCHEMA),
            Err(DbError::InUse(_))
        ));
        drop(conn);
        let conn = open(&storage, "x.sqlite3", SCHEMA).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 2);
        conn.execute("UPDATE t SET w = 'b' WHERE k = 1", [])
            .unwrap();
        drop(conn);
        assert!(matches!(
            open(&storage, "x.sqlite3", &SCHEMA[..1]),
            Err(DbError::TooNew(_, 2, 1))
        ));
    }

    #[test]
    fn an_inline_call_that_finds_the_connection_taken_waits_without_blocking_and_its_holder_commits_it()
     {
        let (db, _thread) = Db::inline(open(&Storage::Memory, "x", SCHEMA).unwrap());
        let To::Inline(inline) = &db.to else {
            unreachable!("an in-memory store is inline")
        };
        // Another caller is mid-transaction.
        let held = crate::sync::lock(&inline.conn);
        let (polled, first_poll) = std::sync::mpsc::channel();
        let caller = {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut call = Box::pin(async move {
                    db.call(|c| {
                        c.execute("INSERT INTO t (k, v) VALUES (7, 'x')", [])?;
                        Ok(())
                    })
                    .await
                });
                let waker = futures_util::task::noop_waker();
                let mut cx = std::task::Context::from_waker(&waker);
                let pending = call.as_mut().poll(&mut cx).is_pending();
                polled.send(pending).unwrap();
                call
            })
        };
        // The caller's thread is not held up by the transaction in progress: its call is pending, its job queued.
        let pending = first_poll
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the caller's thread blocked on a connection in use");
        assert!(pending, "the call cannot have run: the connection is taken");
        assert_eq!(crate::sync::lock(&inline.waiting).len(), 1);
        // The holder lets go and looks again, as `Inline::run` does: it commits the job left to it.
        drop(held);
        inline.run_waiting();
        let mut call = caller.join().unwrap();
        let waker = futures_util::task::noop_waker();
        let answer = call
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&waker));
        assert!(
            matches!(answer, std::task::Poll::Ready(Ok(()))),
            "answered once committed"
        );
        let n: i64 = db
            .call_blocking(|c| {
                Ok(c.query_row("SELECT count(*) FROM t WHERE k = 7", [], |r| r.get(0))?)
            })
            .unwrap();
        assert_eq!(n, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inline_calls_from_many_tasks_on_both_threads_are_each_answered_and_committed() {
        let (db, _thread) = Db::inline(open(&Storage::Memory, "x", SCHEMA).unwrap());
        let tasks: Vec<_> = (0..8i64)
            .map(|t| {
                let db = db.clone();
                tokio::spawn(async move {
                    for i in 0..300i64 {
                        let k = t * 1000 + i;
                        let call = db.call(move |c| {
                            c.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [k])?;
                            Ok(k)
                        });
                        assert_eq!(call.await.unwrap(), k);
                        // A relaxed call mixed in (its group may or may not be fsynced: nothing to fsync here).
                        if i % 50 == 0 {
                            db.call_relaxed(|c| {
                                Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?)
                            })
                            .await
                            .unwrap();
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let n: i64 = db
            .call(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(n, 2400);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_answers_after_commit_and_sees_earlier_calls() {
        // The store thread, and an in-memory store's inline calls: the same answers.
        for inline in [false, true] {
            let conn = open(&Storage::Memory, "x", SCHEMA).unwrap();
            let (db, thread) = match inline {
                false => Db::start(conn, "test").unwrap(),
                true => Db::inline(conn),
            };
            let writes = (0..50).map(|i| {
                let db = db.clone();
                async move {
                    db.call(move |c| {
                        c.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [i])?;
                        Ok(())
                    })
                    .await
                }
            });
            for r in futures_util::future::join_all(writes).await {
                r.unwrap();
            }
            let n: i64 = db
                .call_blocking(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
                .unwrap();
            assert_eq!(n, 50, "inline: {inline}");
            // A call that fails says so, and the store goes on serving.
            let dup = db
                .call(|c| {
                    c.execute("INSERT INTO t (k, v) VALUES (1, 'again')", [])?;
                    Ok(())
                })
                .await;
            assert!(
                dup.is_err(),
                "inline: {inline}: a duplicate key is an error"
            );
            let n: i64 = db
                .call_relaxed(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
                .await
                .unwrap();
            assert_eq!(n, 50, "inline: {inline}");
            drop(db);
            thread.join();
        }
    }
}
