//! The outbox: store-and-forward delivery of this node's messages. A sent message is committed to the store with
//! one outbox row per recipient *before* anything goes out; one worker per recipient then drains that recipient's
//! rows in order, and a row is deleted only when the recipient answered that it stored the message, when the
//! tracker holds it in the recipient's mailbox, or when it was refused for good. A crash at any point leaves the
//! row, and the worker started at the next start-up sends it again (a duplicate id is stored once).
//!
//! Per recipient: push directly; while the push fails, retry with a doubling backoff; when the recipient stays
//! unreachable for [`GIVE_UP_DIRECT`] (or the tracker says it is offline), deposit into the tracker's mailbox for
//! it, and keep doing so for [`DIRECT_RETRY_AFTER`] before trying directly again. When neither works (tracker down,
//! mailbox full), the rows wait and the worker backs off up to [`BACKOFF_MAX`]: afresh from [`BACKOFF_MIN`] when it
//! turns to the mailbox, and no longer once the tracker is back ([`Outboxes::tracker_back`]).
//!
//! Once a direct push over a session has succeeded, the worker pipelines: up to [`PIPELINE`] batches taken from
//! memory go out on that session without waiting for the previous one's ack and settle (each batch settles when
//! its own ack comes back). Any failure ends the pipeline: the worker lets the batches in flight finish, then reads
//! its rows from the store and goes on one attempt at a time, as above, until a push succeeds again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesOrdered;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

use super::delivery::{DeliveryError, MAX_PUSH_BATCH, Pushed, fitting};
use super::receipts::DeliveryState;
use super::tracker_client::TrackerError;
use super::{KEY_RECHECK, Node, NodeError};
use crate::identity::{PublicKey, SealedMail};
use crate::link::LaneId;
use crate::proto::{ChatMessage, ErrorCode, MAX_MAIL_BATCH, MessageId, PeerName};
use crate::sync::lock;

/// Most messages waiting in the outbox, all recipients together; a send beyond it is refused.
pub const OUTBOX_LIMIT: usize = 100_000;
/// First retry delay after a failed attempt.
pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Longest retry delay.
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(4);
/// A recipient unreachable this long gets its messages through the tracker's mailbox instead.
pub(super) const GIVE_UP_DIRECT: Duration = Duration::from_secs(2);
/// After falling back to the mailbox, how long before a direct push is tried again.
pub(super) const DIRECT_RETRY_AFTER: Duration = Duration::from_secs(10);
/// A worker with nothing to send stops after this long.
const WORKER_IDLE: Duration = Duration::from_secs(60);
/// An address that answered a push without the recipient's signed receipt is not pushed to again for this long
/// (then twice as long each time it answers so again, up to [`BAD_ADDRESS_BACKOFF_MAX`]); meanwhile its
/// messages go through the tracker's mailbox.
pub(super) const BAD_ADDRESS_BACKOFF_MIN: Duration = Duration::from_secs(30);
/// Longest back-off of an address that keeps answering badly.
pub(super) const BAD_ADDRESS_BACKOFF_MAX: Duration = Duration::from_secs(600);
/// Most addresses whose record ([`Address`]) is kept; the least recently used goes first.
pub(super) const MAX_ADDRESSES: usize = 10_000;

/// What became of a message for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The recipient stored it.
    Delivered,
    /// The tracker holds it in the recipient's mailbox.
    Held,
    /// Not yet: it waits in the outbox and is retried (the reason the last attempt failed).
    Queued(String),
    /// Refused for good (a stable `code` and a sentence); it is no longer retried.
    Refused { code: ErrorCode, message: String },
}

/// Batches a worker may have in flight at once on a session a push has just proven ([`Route`]).
pub(super) const PIPELINE: usize = 4;
/// How long a proven session is pipelined to before the worker looks its recipient up again (address, key, pin)
/// with one ordinary attempt.
pub(super) const ROUTE_FRESH: Duration = Duration::from_secs(5);

/// Most freshly committed messages handed to a worker in memory ([`Fresh`]); beyond it, the worker reads its rows
/// from the store again.
pub(super) const FRESH_LIMIT: usize = 1024;

/// Messages committed since the worker last read its rows from the store, handed over in memory so that the
/// worker need not read back what was just written (a store round trip per message on the DM path). The store
/// stays the truth: the queue is only used while `complete` holds, i.e. while every row of this recipient left in
/// the store is either in the batch being pushed or in `msgs`. A failed attempt, a full queue or a store error
/// makes it incomplete, and the worker reads the store again.
#[derive(Default)]
struct Fresh {
    complete: bool,
    msgs: std::collections::VecDeque<ChatMessage>,
    /// The ids of the last store read: a message committed before that read but handed over after it is in both,
    /// and is pushed once.
    read: std::collections::HashSet<MessageId>,
    /// The ids of the pipelined batches in flight: a retry of one of them handed over meanwhile is not pushed
    /// beside it (the session would refuse the second copy while the first waits for its ack); the first's
    /// outcome answers both, and a failure leaves the row in the store for the next read.
    flying: std::collections::HashSet<MessageId>,
}

impl Fresh {
    /// The next batch from memory, if the queue is complete and holds one.
    fn take(&mut self, max: usize) -> Option<Vec<ChatMessage>> {
        if !self.complete {
            return None;
        }
        let (read, flying) = (&self.read, &self.flying);
        self.msgs
            .retain(|m| !read.contains(&m.id) && !flying.contains(&m.id));
        if self.msgs.is_empty() {
            return None;
        }
        let n = self.msgs.len().min(max);
        Some(self.msgs.drain(..n).collect())
    }

    /// The store is about to be read: what is committed from now on is handed over.
    fn reading(&mut self) {
        self.complete = true;
        self.msgs.clear();
        self.read.clear();
    }

    /// The store read returned `batch` out of at most `limit`.
    fn read_done(&mut self, batch: &[ChatMessage], limit: usize) {
        if batch.len() >= limit {
            // More rows wait in the store than were read: read it again next time.
            self.invalidate();
        } else {
            self.read = batch.iter().map(|m| m.id).collect();
        }
    }

    /// `batch` left the store: a copy handed over late is not pushed again, and the ids of the last read are no
    /// longer needed (a later send with the same id is a new row).
    fn settled(&mut self, batch: &[ChatMessage]) {
        let ids: std::collections::HashSet<MessageId> = batch.iter().map(|m| m.id).collect();
        self.msgs.retain(|m| !ids.contains(&m.id));
        self.read.clear();
    }

    fn invalidate(&mut self) {
        self.complete = false;
        self.msgs.clear();
        self.read.clear();
    }

    fn offer(&mut self, msg: &ChatMessage) {
        if !self.complete {
            return;
        }
        if self.msgs.len() >= FRESH_LIMIT {
            self.invalidate();
        } else if !self.msgs.iter().any(|m| m.id == msg.id) {
            self.msgs.push_back(msg.clone());
        }
    }
}

/// One recipient's worker, as the node sees it.
pub(super) struct Worker {
    fresh: Mutex<Fresh>,
    wake: Notify,
    /// Ends a back-off at once (the tracker is back).
    retry: Notify,
    /// Why the last attempt failed, while the worker is backing off.
    stuck: Mutex<Option<String>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// What pushes to one ip:port have shown. Any name can advertise any address, so an address earns trust only by
/// answering with the recipient's signed receipt; until it has, one push at a time goes there, and when it
/// answers badly it is backed off for every name that advertises it.
struct Address {
    /// It answered a push with a valid receipt (and has not answered badly since).
    proven: bool,
    /// Backed off until then, after a bad answer.
    bad_until: Option<Instant>,
    /// The back-off after the next bad answer.
    backoff: Duration,
    /// Held by the one push in flight to an address not proven yet.
    probe: Arc<tokio::sync::Mutex<()>>,
    last_used: Instant,
}

impl Address {
    fn new() -> Address {
        Address {
            proven: false,
            bad_until: None,
            backoff: BAD_ADDRESS_BACKOFF_MIN,
            probe: Arc::default(),
            last_used: Instant::now(),
        }
    }
}

/// Where a push goes: an HTTP address (`None`), or a session address dialled expecting a key. A session's
/// handshake proves the key before anything is sent, so a node that fails it is backed off only for that key:
/// a puppet advertising bob's session port bars itself, not bob.
type Target = (SocketAddr, Option<crate::identity::PublicKey>);

/// Every address pushed to lately (bounded by [`MAX_ADDRESSES`]).
#[derive(Default)]
struct Addresses(Mutex<HashMap<Target, Address>>);

/// May a push go to an address now?
enum Gate {
    /// Yes: proven, or this is the one probe (holding the guard until it is answered).
    Go(Option<tokio::sync::OwnedMutexGuard<()>>),
    /// Backed off after a bad answer, for this long yet.
    Barred(Duration),
    /// Another worker's first push to it is under way.
    Busy,
}

impl Addresses {
    fn gate(&self, addr: Target) -> Gate {
        let mut map = lock(&self.0);
        if map.len() >= MAX_ADDRESSES && !map.contains_key(&addr) {
            let oldest = map.iter().min_by_key(|(_, a)| a.last_used).map(|(k, _)| *k);
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
        let a = map.entry(addr).or_insert_with(Address::new);
        a.last_used = Instant::now();
        if let Some(left) = a
            .bad_until
            .and_then(|t| t.checked_duration_since(Instant::now()))
        {
            return Gate::Barred(left);
        }
        if a.proven {
            return Gate::Go(None);
        }
        match a.probe.clone().try_lock_owned() {
            Ok(guard) => Gate::Go(Some(guard)),
            Err(_) => Gate::Busy,
        }
    }

    /// The address answered with the recipient's receipt.
    fn proven(&self, addr: Target) {
        if let Some(a) = lock(&self.0).get_mut(&addr) {
            a.proven = true;
            a.backoff = BAD_ADDRESS_BACKOFF_MIN;
        }
    }

    /// The address answered, but not as the recipient: back it off. Returns for how long.
    fn bad(&self, addr: Target) -> Duration {
        let mut map = lock(&self.0);
        let a = map.entry(addr).or_insert_with(Address::new);
        let backoff = a.backoff;
        a.proven = false;
        a.bad_until = Some(Instant::now() + backoff);
        a.backoff = (backoff * 2).min(BAD_ADDRESS_BACKOFF_MAX);
        backoff
    }
}

/// Every recipient's worker, and the senders waiting to hear what became of their message.
#[derive(Default)]
pub(super) struct Outboxes {
    workers: Mutex<HashMap<PeerName, Arc<Worker>>>,
    addresses: Addresses,
    waiting: Mutex<HashMap<(PeerName, MessageId), oneshot::Sender<Outcome>>>,
    /// Messages waiting, all recipients together (kept in step with the store).
    len: AtomicUsize,
}

impl Outboxes {
    /// Whether `n` more messages fit under [`OUTBOX_LIMIT`]; if not, how many wait already.
    pub(super) fn room_for(&self, n: usize) -> Result<(), NodeError> {
        let waiting = self.len.load(Ordering::Relaxed);
        match waiting + n > OUTBOX_LIMIT {
            true => Err(NodeError::OutboxFull(waiting)),
            false => Ok(()),
        }
    }

    /// `msg` was just committed with a row for `to`: its worker, if running, takes it from memory.
    pub(super) fn offer(&self, to: &PeerName, msg: &ChatMessage) {
        if let Some(w) = lock(&self.workers).get(to) {
            lock(&w.fresh).offer(msg);
        }
    }

    /// `n` rows were committed to the store.
    pub(super) fn added(&self, n: usize) {
        self.len.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` rows left the store (delivered, held or refused), or were counted and not added.
    pub(super) fn removed(&self, n: usize) {
        // Never below zero, whatever the counts were at start-up.
        let _ = self
            .len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                Some(l.saturating_sub(n))
            });
    }

    /// Waits for `id`'s outcome at `to`.
    pub(super) fn watch(&self, to: &PeerName, id: MessageId) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert((to.clone(), id), tx);
        rx
    }

    fn tell(&self, to: &PeerName, id: MessageId, outcome: Outcome) {
        if let Some(tx) = lock(&self.waiting).remove(&(to.clone(), id)) {
            let _ = tx.send(outcome);
        }
    }

    /// Stops watching (the sender gave up waiting).
    pub(super) fn unwatch(&self, to: &PeerName, id: MessageId) {
        lock(&self.waiting).remove(&(to.clone(), id));
    }

    /// The tracker answers again after it could not be reached: every worker backing off tries again now (its
    /// back-off may have grown to seconds while the tracker was away).
    pub(super) fn tracker_back(&self) {
        for w in lock(&self.workers).values() {
            if lock(&w.stuck).is_some() {
                w.retry.notify_one();
            }
        }
    }

    /// Every worker's task, for shutdown.
    pub(super) fn tasks(&self) -> Vec<JoinHandle<()>> {
        lock(&self.workers)
            .values()
            .filter_map(|w| lock(&w.task).take())
            .collect()
    }
}

impl From<Pushed> for Outcome {
    fn from(p: Pushed) -> Outcome {
        match p {
            Pushed::Stored => Outcome::Delivered,
            Pushed::Refused { code, message } => Outcome::Refused { code, message },
        }
    }
}

/// What one attempt achieved.
enum Attempt {
    /// A verdict on each message of the batch.
    Done(Vec<Outcome>),
    /// No verdict; retry later.
    Stuck(String),
}

/// A session a direct push has just gone through: the pipeline's way to the recipient while it is fresh.
#[derive(Clone, Copy)]
struct Route {
    addr: SocketAddr,
    key: PublicKey,
    /// The sending stream that batch went on: the pipeline's batches go on it or not at all, so that none is
    /// stored ahead of an earlier one that failed (a new connection, a refusal for now that halted the stream).
    lane: LaneId,
    since: Instant,
}

/// A pipelined batch, once its push (and, if acked, its settle) is over.
struct Flight {
    batch: Vec<ChatMessage>,
    result: Result<(Vec<Outcome>, Result<usize, crate::storage::DbError>), DeliveryError>,
}

/// A worker's memory of the way it delivers.
struct Path {
    /// The session the last direct push went through, if it succeeded.
    route: Option<Route>,
    /// When direct pushes started failing.
    failing_since: Option<Instant>,
    /// When we last fell back to the mailbox.
    mailbox_since: Option<Instant>,
    /// The wait after the next failed attempt.
    backoff: Duration,
}

impl Default for Path {
    fn default() -> Path {
        Path {
            route: None,
            failing_since: None,
            mailbox_since: None,
            backoff: BACKOFF_MIN,
        }
    }
}

impl Path {
    /// An attempt failed: how long to wait before the next one.
    fn failed(&mut self) -> Duration {
        let wait = self.backoff;
        self.backoff = (wait * 2).min(BACKOFF_MAX);
        wait
    }

    /// The worker delivers through the tracker's mailbox from now on. Its back-off starts afresh there: the
    /// direct pushes to a recipient that died have doubled it to seconds by then, and a deposit that failed
    /// because the tracker was restarting at that moment would otherwise wait the whole of it, while the
    /// tracker is back at once (every message sent meanwhile reported `queued` instead of `held`).
    fn via_mailbox(&mut self) {
        self.route = None;
        if self.mailbox_since.is_none() {
            self.backoff = BACKOFF_MIN;
        }
        self.mailbox_since = Some(Instant::now());
    }
}

impl Node {
    /// Makes sure `to` has a running worker and wakes it; returns why it is stuck, if it is.
    pub(super) fn kick(&self, to: &PeerName) -> Option<String> {
        let mut workers = lock(&self.inner.outboxes.workers);
        if let Some(w) = workers.get(to)
            && lock(&w.task).as_ref().is_some_and(|t| !t.is_finished())
        {
            w.wake.notify_one();
            return lock(&w.stuck).clone();
        }
        if self.inner.shutdown.is_cancelled() {
            return Some("this node is stopping".into());
        }
        let worker = Arc::new(Worker {
            fresh: Mutex::default(),
            wake: Notify::new(),
            retry: Notify::new(),
            stuck: Mutex::new(None),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(self.clone().deliver_to(to.clone(), worker.clone()));
        *lock(&worker.task) = Some(task);
        workers.insert(to.clone(), worker);
        None
    }

    /// The worker for one recipient: drains its outbox rows in order until none are left for a while.
    async fn deliver_to(self, to: PeerName, worker: Arc<Worker>) {
        let stop = self.inner.shutdown.clone();
        let mut path = Path::default();
        let mut flights: FuturesOrdered<BoxFuture<'static, Flight>> = FuturesOrdered::new();
        loop {
            if stop.is_cancelled() {
                return;
            }
            // The pipeline: while the last push proved a session, what is in memory goes out at once.
            if let Some(route) = path.route.filter(|r| r.since.elapsed() < ROUTE_FRESH) {
                while flights.len() < PIPELINE {
                    // The recipient is still where the route goes, as far as this node knows (the tracker's
                    // word that it left, or moved, ends the pipeline: the next attempt looks it up).
                    if !self.route_holds(&to, &route) {
                        path.route = None;
                        break;
                    }
                    let Some(batch) = Self::fresh_batch(&worker) else {
                        break;
                    };
                    lock(&worker.fresh)
                        .flying
                        .extend(batch.iter().map(|m| m.id));
                    flights.push_back(self.clone().fly(to.clone(), route, batch));
                }
            }
            if !flights.is_empty() {
                let more = flights.len() < PIPELINE && path.route.is_some();
                tokio::select! {
                    Some(flight) = flights.next() => self.landed(&to, &worker, &mut path, flight),
                    _ = worker.wake.notified(), if more => {}
                    _ = stop.cancelled() => return,
                }
                continue;
            }
            let fresh = lock(&worker.fresh).take(MAX_PUSH_BATCH);
            let from_memory = fresh.is_some();
            let pending = match fresh {
                Some(p) => p,
                // Everything this worker has to send was handed over, and it has sent it.
                None if lock(&worker.fresh).complete => Vec::new(),
                None => {
                    lock(&worker.fresh).reading();
                    match self.inner.store.outbox_for(&to, MAX_PUSH_BATCH).await {
                        Ok(p) => {
                            lock(&worker.fresh).read_done(&p, MAX_PUSH_BATCH);
                            p
                        }
                        Err(e) => {
                            tracing::error!(peer = %self.name(), "cannot read the outbox: {e}");
                            lock(&worker.fresh).invalidate();
                            Vec::new()
                        }
                    }
                }
            };
            if pending.is_empty() {
                tokio::select! {
                    _ = worker.wake.notified() => continue,
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(WORKER_IDLE) => {}
                }
                // Retire, then look once more: a row queued meanwhile would have found no worker and started one,
                // or is seen here.
                {
                    let mut workers = lock(&self.inner.outboxes.workers);
                    if workers.get(&to).is_some_and(|w| Arc::ptr_eq(w, &worker)) {
                        workers.remove(&to);
                    }
                }
                if matches!(self.inner.store.outbox_for(&to, 1).await, Ok(p) if !p.is_empty()) {
                    self.kick(&to);
                }
                return;
            }
            let batch = &pending[..fitting(&pending, MAX_PUSH_BATCH)];
            let rest = &pending[batch.len()..];
            if !rest.is_empty() {
                let mut fresh = lock(&worker.fresh);
                match from_memory {
                    // What did not fit goes first next time.
                    true => {
                        for m in rest.iter().rev() {
                            fresh.msgs.push_front(m.clone());
                        }
                    }
                    false => fresh.invalidate(),
                }
            }
            match self.attempt(&to, batch, &mut path).await {
                Attempt::Done(outcomes) => {
                    path.backoff = BACKOFF_MIN;
                    *lock(&worker.stuck) = None;
                    // The recipient (or the tracker) has it durably. The outbox row goes first, then the sender
                    // hears: a send of the same id again (a Retry) that comes after it then finds no row left and
                    // queues a fresh one, instead of having its row deleted under it and waiting for nothing.
                    // A crash before the delete sends it again, and a duplicate id is stored once.
                    let done = self.settle_batch(&to, batch, &outcomes).await;
                    if !self.report(&to, &worker, batch, outcomes, done) {
                        path.route = None;
                        continue;
                    }
                }
                Attempt::Stuck(why) => {
                    tracing::debug!(peer = %self.name(), to = %to, "delivery stuck: {why}");
                    // The batch stays in the store: the next attempt reads it from there.
                    lock(&worker.fresh).invalidate();
                    *lock(&worker.stuck) = Some(why.clone());
                    for m in batch {
                        self.inner
                            .outboxes
                            .tell(&to, m.id, Outcome::Queued(why.clone()));
                    }
                    // A send does not cut the wait short (that would retry once per message sent); the tracker
                    // coming back does.
                    tokio::select! {
                        _ = tokio::time::sleep(path.failed()) => {}
                        _ = worker.retry.notified() => {}
                        _ = stop.cancelled() => return,
                    }
                }
            }
        }
    }

    /// The next batch in memory for the pipeline (what does not fit in one goes first next time).
    fn fresh_batch(worker: &Worker) -> Option<Vec<ChatMessage>> {
        let mut fresh = lock(&worker.fresh);
        let mut batch = fresh.take(MAX_PUSH_BATCH)?;
        let rest = batch.split_off(fitting(&batch, MAX_PUSH_BATCH));
        for m in rest.into_iter().rev() {
            fresh.msgs.push_front(m);
        }
        Some(batch)
    }

    /// Whether the directory still has `to` at `route`'s session address with its key.
    fn route_holds(&self, to: &PeerName, route: &Route) -> bool {
        self.inner.directory.fresh(to).is_some_and(|info| {
            info.public_key == Some(route.key)
                && info.session_addr().map(|a| self.on_link(a)) == Some(route.addr)
        })
    }

    /// A pipelined batch: pushed over `route`'s session and, if acked, settled in the store.
    fn fly(
        self,
        to: PeerName,
        route: Route,
        batch: Vec<ChatMessage>,
    ) -> BoxFuture<'static, Flight> {
        Box::pin(async move {
            let pushed = self
                .push_session(route.addr, &to, route.key, &batch, Some(route.lane))
                .await;
            let result = match pushed {
                Ok((verdicts, _)) => {
                    let outcomes: Vec<Outcome> = verdicts.into_iter().map(Outcome::from).collect();
                    let done = self.settle_batch(&to, &batch, &outcomes).await;
                    Ok((outcomes, done))
                }
                Err(e) => Err(e),
            };
            Flight { batch, result }
        })
    }

    /// A pipelined batch is over: its outcome is told, or, if the push failed, the pipeline ends (the batches
    /// still in flight finish; then the worker reads the store and makes ordinary attempts).
    fn landed(&self, to: &PeerName, worker: &Worker, path: &mut Path, flight: Flight) {
        {
            let mut fresh = lock(&worker.fresh);
            for m in &flight.batch {
                fresh.flying.remove(&m.id);
            }
        }
        match flight.result {
            Ok((outcomes, done)) => {
                if !self.report(to, worker, &flight.batch, outcomes, done) {
                    path.route = None;
                }
            }
            Err(e) => {
                tracing::debug!(peer = %self.name(), to = %to, "pipelined push failed: {e}");
                // As an attempt's failed push does: the next attempt asks the tracker where `to` is (or whether
                // it is gone, and its messages go to the mailbox at once).
                self.forget_address(to);
                path.route = None;
                lock(&worker.fresh).invalidate();
            }
        }
    }

    /// Deletes `batch`'s outbox rows and records what became of each message; how many rows were deleted.
    async fn settle_batch(
        &self,
        to: &PeerName,
        batch: &[ChatMessage],
        outcomes: &[Outcome],
    ) -> Result<usize, crate::storage::DbError> {
        let settled = batch
            .iter()
            .zip(outcomes)
            .map(|(m, o)| (m.id, DeliveryState::after(o)))
            .collect();
        self.settle_outbox(to, settled).await
    }

    /// After a batch was settled in the store (`done`): the in-memory queue forgets it, then each sender hears.
    /// Returns whether the settle succeeded (if not, the worker reads the store again).
    fn report(
        &self,
        to: &PeerName,
        worker: &Worker,
        batch: &[ChatMessage],
        outcomes: Vec<Outcome>,
        done: Result<usize, crate::storage::DbError>,
    ) -> bool {
        // The in-memory queue forgets the batch before the sender hears: a send of the same id again (a Retry)
        // that follows the outcome is offered after this, and so is kept and pushed. (Told first, a retry could be
        // offered between the two, dropped here as if it were this batch, and wait in the store until the worker's
        // next read: seen as a report saying "still trying" under load.)
        let settled_ok = match done {
            Ok(deleted) => {
                self.inner.outboxes.removed(deleted);
                lock(&worker.fresh).settled(batch);
                true
            }
            Err(e) => {
                tracing::error!(peer = %self.name(), "cannot update the outbox: {e}");
                lock(&worker.fresh).invalidate();
                false
            }
        };
        for (m, o) in batch.iter().zip(outcomes) {
            if let Outcome::Refused { message, .. } = &o {
                tracing::info!(peer = %self.name(), to = %to, id = %m.id, "refused: {message}");
            }
            self.inner.outboxes.tell(to, m.id, o);
        }
        settled_ok
    }

    /// One attempt at a batch: directly if the direct path is worth trying, else (or when it has failed long
    /// enough) through the tracker's mailbox.
    async fn attempt(&self, to: &PeerName, batch: &[ChatMessage], path: &mut Path) -> Attempt {
        // Set again only by a push that goes through.
        path.route = None;
        let try_direct = path
            .mailbox_since
            .is_none_or(|t| t.elapsed() >= DIRECT_RETRY_AFTER);
        if try_direct {
            // A failed push forgets the cached address and asks the tracker again: a peer that moved is reached at
            // its new address, and one the tracker knows to be gone goes to the mailbox at once.
            let mut failed: Option<(std::net::SocketAddr, String)> = None;
            for _ in 0..2 {
                let info = match self.locate(to).await {
                    Ok(info) => info,
                    Err(NodeError::PeerOffline { .. }) => {
                        failed = None;
                        break;
                    }
                    Err(e) => return Attempt::Stuck(e.to_string()),
                };
                // A recipient that takes sessions gets a session, never plaintext HTTP: a node in the path that
                // blocks UDP can delay its messages into the mailbox, not make them go in the clear.
                let session = match (info.session_addr(), &self.inner.link) {
                    (Some(addr), Some(_)) => Some(self.on_link(addr)),
                    _ => None,
                };
                if let Some(key) = info.public_key
                    && !self.pin_check(to, key).await
                {
                    let (code, message) = (ErrorCode::KeyChanged, self.key_changed(to));
                    return Attempt::Done(vec![Outcome::Refused { code, message }; batch.len()]);
                }
                let addr = session.unwrap_or_else(|| self.on_link(info.addr()));
                if failed.as_ref().is_some_and(|(a, _)| *a == addr) {
                    break;
                }
                let target = (addr, session.and(info.public_key));
                let _probe = match self.inner.outboxes.addresses.gate(target) {
                    Gate::Go(probe) => probe,
                    // Whatever answers there is not the recipient: the mailbox, at once.
                    Gate::Barred(left) => {
                        tracing::debug!(peer = %self.name(), to = %to, %addr, "address backed off for {left:?}");
                        break;
                    }
                    // Do not pile onto an address nobody has heard a receipt from yet; its probe's answer
                    // decides for everyone.
                    Gate::Busy => {
                        return Attempt::Stuck(format!("waiting for a first answer from {addr}"));
                    }
                };
                let mut lane = None;
                let pushed = match (session, info.public_key) {
                    (Some(addr), Some(key)) => self
                        .push_session(addr, to, key, batch, None)
                        .await
                        .map(|(verdicts, on)| {
                            lane = Some(on);
                            verdicts
                        }),
                    _ => {
                        let r = self
                            .inner
                            .courier
                            .push(addr, to, info.public_key, batch)
                            .await;
                        if let Ok(v) = &r {
                            let stored = v.iter().filter(|v| **v == Pushed::Stored).count();
                            self.inner.pushes.sent(false, stored);
                        }
                        r
                    }
                };
                match pushed {
                    Ok(verdicts) => {
                        self.inner.outboxes.addresses.proven(target);
                        *path = Path::default();
                        // A session that carried this batch carries the next ones without waiting (the pipeline).
                        if let (Some(addr), Some(key), Some(lane)) =
                            (session, info.public_key, lane)
                        {
                            path.route = Some(Route {
                                addr,
                                key,
                                lane,
                                since: Instant::now(),
                            });
                        }
                        return Attempt::Done(verdicts.into_iter().map(Outcome::from).collect());
                    }
                    Err(DeliveryError::BadAnswer(why)) => {
                        let backoff = self.inner.outboxes.addresses.bad(target);
                        tracing::warn!(peer = %self.name(), to = %to, %addr, "{addr} did not answer as {to} ({why}); not pushing there for {backoff:?}, using the mailbox");
                        self.forget_address(to);
                        break;
                    }
                    Err(e) => {
                        self.forget_address(to);
                        failed = Some((addr, e.to_string()));
                    }
                }
            }
            if let Some((_, why)) = failed {
                let since = *path.failing_since.get_or_insert_with(Instant::now);
                if path.mailbox_since.is_none() && since.elapsed() < GIVE_UP_DIRECT {
                    return Attempt::Stuck(why);
                }
            }
        }
        path.via_mailbox();
        self.deposit(to, batch).await
    }

    /// Leaves a batch in the tracker's mailbox for `to`, each message sealed to `to`'s key.
    async fn deposit(&self, to: &PeerName, batch: &[ChatMessage]) -> Attempt {
        const _: () = assert!(
            MAX_MAIL_BATCH >= MAX_PUSH_BATCH,
            "a pushed batch fits one deposit"
        );
        let key = match self.sealing_key(to, batch.len()).await {
            Ok(key) => key,
            Err(a) => return a,
        };
        let sealed: Vec<SealedMail> = batch
            .iter()
            .map(|m| SealedMail::seal(m, to, &key))
            .collect();
        let t = &self.inner.tracker;
        let me = self.name();
        // Sealed mail is a third larger than the message (base64): a batch that fits one push may need two
        // deposits. Should a later one fail, the whole batch is deposited again (a deposit is stored once).
        let mut result = Ok(());
        let mut left = &sealed[..];
        while !left.is_empty() && result.is_ok() {
            let (now, rest) = left.split_at(fitting_sealed(left));
            result = self.tracked(|| t.deposit(me, to, now)).await.map(drop);
            left = rest;
        }
        match result {
            Ok(()) => Attempt::Done(vec![Outcome::Held; batch.len()]),
            Err(TrackerError::Refused {
                code: code @ (ErrorCode::UnknownRecipient | ErrorCode::InvalidField),
                message,
                ..
            }) => Attempt::Done(vec![Outcome::Refused { code, message }; batch.len()]),
            Err(TrackerError::Refused {
                code: ErrorCode::MailboxFull,
                message,
                ..
            }) => {
                self.notice(format!(
                    "{message}; {} message(s) wait in your outbox and are retried",
                    batch.len()
                ));
                Attempt::Stuck(message)
            }
            Err(e) => Attempt::Stuck(e.to_string()),
        }
    }

    /// The key to seal `to`'s mail to: the one pinned for `to`, if this node pinned one and the tracker vouches
    /// for it now (another key: `key_changed`, refused until the user forgets the pin); else the one the tracker
    /// vouched for within [`KEY_RECHECK`], else the one it vouches for now. Never a cached key over the pin: a
    /// tracker that vouched for another key a moment ago (a fan-out list caches it) and for the pinned one when
    /// asked again gets nothing sealed to the other. A name with no key has no mailbox either: its `n` messages are
    /// refused for good.
    async fn sealing_key(&self, to: &PeerName, n: usize) -> Result<PublicKey, Attempt> {
        let unknown = |message| {
            Attempt::Done(vec![
                Outcome::Refused {
                    code: ErrorCode::UnknownRecipient,
                    message
                };
                n
            ])
        };
        if let Some((pinned, _)) = self.inner.pins.get(to) {
            return match self.inner.tracker.identity(to).await {
                Ok(key) if key == pinned => Ok(pinned),
                Ok(key) => {
                    // Reported once, loudly; nothing is deposited for whoever holds the name now.
                    self.pin_check(to, key).await;
                    let (code, message) = (ErrorCode::KeyChanged, self.key_changed(to));
                    Err(Attempt::Done(vec![Outcome::Refused { code, message }; n]))
                }
                Err(TrackerError::Refused {
                    code: ErrorCode::UnknownIdentity,
                    message,
                    ..
                }) => Err(unknown(message)),
                Err(e) => Err(Attempt::Stuck(e.to_string())),
            };
        }
        if let Some((Some(key), at)) = self.inner.directory.key_of(to)
            && at.elapsed() < KEY_RECHECK
        {
            return Ok(key);
        }
        match self.inner.tracker.identity(to).await {
            Ok(key) => {
                self.inner.directory.cache_key(to.clone(), Some(key));
                Ok(key)
            }
            Err(TrackerError::Refused {
                code: ErrorCode::UnknownIdentity,
                message,
                ..
            }) => Err(unknown(message)),
            Err(e) => Err(Attempt::Stuck(e.to_string())),
        }
    }

    /// Starts a worker for every recipient with messages left in the outbox (at start-up).
    pub(super) async fn resume_outbox(&self) -> Result<(), NodeError> {
        let (recipients, total) = self.inner.store.outbox_summary().await?;
        self.inner.outboxes.len.store(total, Ordering::Relaxed);
        if total > 0 {
            tracing::info!(peer = %self.name(), "{total} message(s) left in the outbox; sending them");
        }
        for r in recipients {
            self.kick(&r);
        }
        Ok(())
    }
}

/// The longest prefix of `sealed` that fits one deposit's body (at least one).
fn fitting_sealed(sealed: &[SealedMail]) -> usize {
    let budget = crate::proto::MAX_BODY_BYTES - 1024;
    let mut used = 0;
    for (i, m) in sealed.iter().enumerate() {
        // The envelope, plus what wraps it in a deposit (its id, quotes, commas).
        used += serde_json::to_string(m).map_or(budget, |s| s.len() + 64);
        if used > budget {
            return i.max(1);
        }
    }
    sealed.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> Target {
        (SocketAddr::from(([127, 0, 0, 1], port)), None)
    }

    fn msg(text: &str) -> ChatMessage {
        let alice = PeerName::new("alice").unwrap();
        let bob = PeerName::new("bob").unwrap();
        ChatMessage::new(alice, crate::proto::Destination::Direct(bob), text.into()).unwrap()
    }

    #[test]
    fn fresh_messages_are_taken_from_memory_only_while_the_queue_is_complete() {
        let mut fresh = Fresh::default();
        // Before the first read of the store, nothing handed over counts: the store has it.
        fresh.offer(&msg("before"));
        assert!(fresh.take(10).is_none());
        // A read returns m1; m1's hand-over arrives late, m2 is committed after the read.
        let m1 = msg("m1");
        let m2 = msg("m2");
        fresh.reading();
        fresh.read_done(std::slice::from_ref(&m1), 10);
        fresh.offer(&m1);
        fresh.offer(&m2);
        fresh.offer(&m2);
        assert_eq!(
            fresh.take(10).unwrap(),
            vec![m2.clone()],
            "m1 once, m2 once"
        );
        fresh.settled(std::slice::from_ref(&m1));
        // After the batch left the store, a send with the same id again is a new row: it is taken.
        fresh.offer(&m1);
        assert_eq!(fresh.take(10).unwrap(), vec![m1.clone()]);
        // A failure hands the rows back to the store.
        fresh.offer(&m2);
        fresh.invalidate();
        assert!(fresh.take(10).is_none());
        fresh.offer(&m2);
        assert!(
            fresh.take(10).is_none(),
            "incomplete until the store is read again"
        );
    }

    #[test]
    fn a_retry_of_a_message_in_flight_is_not_taken_beside_it_and_is_taken_after_it_settles() {
        let mut fresh = Fresh::default();
        fresh.reading();
        fresh.read_done(&[], 10);
        let m1 = msg("m1");
        let m2 = msg("m2");
        fresh.offer(&m1);
        let flying = fresh.take(10).unwrap();
        assert_eq!(flying, vec![m1.clone()]);
        fresh.flying.extend(flying.iter().map(|m| m.id));
        // The user retries m1 while its batch waits for its ack; m2 is sent meanwhile.
        fresh.offer(&m1);
        fresh.offer(&m2);
        assert_eq!(
            fresh.take(10).unwrap(),
            vec![m2.clone()],
            "m1 is in flight: its outcome answers the retry"
        );
        // It landed and settled: a later retry of m1 is a new row, pushed again.
        fresh.flying.remove(&m1.id);
        fresh.settled(std::slice::from_ref(&m1));
        fresh.offer(&m1);
        assert_eq!(fresh.take(10).unwrap(), vec![m1]);
    }

    #[test]
    fn a_full_read_or_a_full_queue_sends_the_worker_back_to_the_store() {
        let mut fresh = Fresh::default();
        fresh.reading();
        let batch: Vec<_> = (0..3).map(|i| msg(&format!("m{i}"))).collect();
        fresh.read_done(&batch, 3);
        fresh.offer(&msg("later"));
        assert!(fresh.take(10).is_none(), "more rows may wait in the store");
        fresh.reading();
        fresh.read_done(&[], 3);
        for i in 0..FRESH_LIMIT {
            fresh.offer(&msg(&format!("f{i}")));
        }
        assert_eq!(fresh.msgs.len(), FRESH_LIMIT);
        fresh.offer(&msg("one too many"));
        assert!(fresh.take(10).is_none());
    }

    #[test]
    fn given_an_unproven_address_then_one_probe_at_a_time_goes_there() {
        let book = Addresses::default();
        let Gate::Go(Some(probe)) = book.gate(addr(1)) else {
            panic!("the first push is the probe")
        };
        assert!(matches!(book.gate(addr(1)), Gate::Busy));
        assert!(
            matches!(book.gate(addr(2)), Gate::Go(Some(_))),
            "another address is not held up"
        );
        drop(probe);
        book.proven(addr(1));
        assert!(matches!(book.gate(addr(1)), Gate::Go(None)));
        assert!(
            matches!(book.gate(addr(1)), Gate::Go(None)),
            "proven: pushes in parallel"
        );
    }

    #[test]
    fn given_a_bad_answer_then_the_address_is_backed_off_longer_each_time_up_to_the_most() {
        let book = Addresses::default();
        assert_eq!(book.bad(addr(1)), BAD_ADDRESS_BACKOFF_MIN);
        assert!(
            matches!(book.gate(addr(1)), Gate::Barred(left) if left <= BAD_ADDRESS_BACKOFF_MIN)
        );
        assert_eq!(book.bad(addr(1)), BAD_ADDRESS_BACKOFF_MIN * 2);
        for _ in 0..10 {
            book.bad(addr(1));
        }
        assert_eq!(book.bad(addr(1)), BAD_ADDRESS_BACKOFF_MAX);
        book.proven(addr(1));
        assert_eq!(
            book.bad(addr(1)),
            BAD_ADDRESS_BACKOFF_MIN,
            "a receipt resets the back-off"
        );
    }

    #[test]
    fn given_a_pushed_batch_of_long_messages_then_its_sealed_deposits_each_fit_a_body() {
        let (alice, bob) = (
            crate::identity::Identity::ephemeral(),
            crate::identity::Identity::ephemeral(),
        );
        let to = PeerName::new("bob").unwrap();
        let batch: Vec<ChatMessage> = (0..8)
            .map(|_| {
                let text = "x".repeat(crate::proto::MAX_TEXT_BYTES);
                let dest = crate::proto::Destination::Direct(to.clone());
                let mut m = ChatMessage::new(PeerName::new("alice").unwrap(), dest, text).unwrap();
                alice.sign_message(&mut m);
                m
            })
            .collect();
        let pushed = fitting(&batch, MAX_PUSH_BATCH);
        let sealed: Vec<SealedMail> = batch[..pushed]
            .iter()
            .map(|m| SealedMail::seal(m, &to, &bob.public_key()))
            .collect();
        let mut left = &sealed[..];
        let mut deposits = 0;
        while !left.is_empty() {
            let (now, rest) = left.split_at(fitting_sealed(left));
            let body = serde_json::to_string(&now).unwrap();
            assert!(body.len() < crate::proto::MAX_BODY_BYTES, "{}", body.len());
            left = rest;
            deposits += 1;
        }
        assert!(
            deposits > 1,
            "{pushed} pushed at once need more than one deposit"
        );
    }

    #[test]
    fn given_direct_pushes_backed_off_to_the_most_when_the_worker_turns_to_the_mailbox_then_its_first_retry_is_soon()
     {
        let mut path = Path::default();
        let waits: Vec<Duration> = (0..6).map(|_| path.failed()).collect();
        assert_eq!(waits[0], BACKOFF_MIN);
        assert_eq!(waits[5], BACKOFF_MAX, "{waits:?}");
        path.via_mailbox();
        assert_eq!(
            path.failed(),
            BACKOFF_MIN,
            "a deposit refused while the tracker restarts"
        );
        assert_eq!(path.failed(), BACKOFF_MIN * 2);
        path.via_mailbox();
        assert_eq!(
            path.failed(),
            BACKOFF_MIN * 4,
            "still the mailbox: its own back-off goes on"
        );
    }

    #[test]
    fn the_address_book_is_bounded() {
        let book = Addresses::default();
        for port in 0..=MAX_ADDRESSES as u16 {
            book.gate(addr(port));
        }
        assert_eq!(lock(&book.0).len(), MAX_ADDRESSES);
    }
}
