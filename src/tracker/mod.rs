//! The tracker: the centre of the hybrid design. It knows who is online and where (leases renewed by
//! heartbeats), which channels exist and who is in them, and holds mail for peers that are away. It never reads a
//! chat message: mail is kept as the opaque envelope the sender deposited.
//!
//! Every change is recorded by a store thread (SQLite under `--data-dir`, or nothing) before it is answered, so a
//! restarted tracker comes back with what it had said.
//!
//! [`Tracker::start`] binds, serves and sweeps expired leases until [`Tracker::shutdown`]; tests start one on
//! port 0 and read [`Tracker::local_addr`].

pub(crate) mod acl;
pub(crate) mod auth;
mod errors;
pub(crate) mod identities;
mod lists;
pub mod mailbox;
pub mod quota;
pub(crate) mod registry;
pub mod relay;
pub(crate) mod routes;
pub mod sessions;
pub(crate) mod sqlite_store;
mod state;
pub(crate) mod store;

pub use state::TrackerState;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::http::rate_limit::RateLimiter;
use crate::http::{ApiError, ServerLimits, bind_with_fallback, serve_sharing, with_limits};
use crate::identity::{AuthError, Identity, Nonce, ReplayGuard};
use crate::proto::PeerName;
use crate::storage::{self, Storage};
use errors::SaveError;
use registry::Registry;
use store::{Change, MemoryStore, Store, StoreError};

/// How to run a tracker.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    pub ip: IpAddr,
    pub port: u16,
    /// A peer that has not renewed its lease for this long disappears from every answer.
    pub peer_ttl: Duration,
    pub limits: ServerLimits,
    /// Messages held for one peer at most.
    pub mailbox_limit: usize,
    /// Where leases, channels and mailboxes are kept ([`Storage::Memory`]: nowhere).
    pub storage: Storage,
    /// What one identity and one address may hold, and how long unused things are kept.
    pub quotas: quota::Quotas,
    /// The UDP port for sessions: `None` is the HTTP port's number (if that is taken and the HTTP port was picked
    /// by the system, any free one); `Some(0)` any free one.
    pub quic_port: Option<u16>,
    /// The key to listen with, instead of the data dir's `identity.key` (or, in memory, a new one each start).
    pub identity: Option<Arc<Identity>>,
    /// What the relay lets each peer send (docs/SESSIONS.md, 12).
    pub relay_limits: crate::link::relay::RelayLimits,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            port: 0,
            peer_ttl: Duration::from_secs(30),
            limits: ServerLimits::default(),
            mailbox_limit: mailbox::DEFAULT_MAILBOX_LIMIT as usize,
            storage: Storage::Memory,
            quotas: quota::Quotas::default(),
            quic_port: None,
            identity: None,
            relay_limits: Default::default(),
        }
    }
}

/// Why a tracker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Bind(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error("cannot listen for sessions on UDP {0}: {1}")]
    Sessions(SocketAddr, Box<crate::link::LinkError>),
}

/// A batch of changes for the store, and where to say whether it was saved.
type Record = (Vec<Change>, oneshot::Sender<Result<(), String>>);

/// The state the handlers share, and the queue to the thread that records its changes.
pub struct Shared {
    state: Mutex<TrackerState>,
    log: mpsc::Sender<Record>,
    /// Nonces of signed requests seen within the window; apart from the state so a check does not wait for it.
    replay: Mutex<ReplayGuard>,
    /// Who subscribed to pushes, and the signal that presence may have changed.
    pub(crate) hub: sessions::Hub,
    pub(crate) sessions: sessions::SessionStats,
    /// The relay of sessions between peers that cannot reach each other (set once the endpoint is bound).
    pub(crate) relay: std::sync::OnceLock<Arc<crate::link::Switch>>,
}

impl Shared {
    /// Shares `state`, and starts the store thread that records its changes in `store` ([`storage::group_commit`]:
    /// everything queued at once in one transaction). The thread ends when the last handle to the queue is gone.
    fn start(mut store: Box<dyn Store>, state: TrackerState) -> std::io::Result<Arc<Shared>> {
        let (log, _thread) = storage::group_commit("tracker-store", move |batch: Vec<Record>| {
            let changes: Vec<Change> = batch.iter().flat_map(|(c, _)| c.iter().cloned()).collect();
            let result = store.record(&changes).map_err(|e| {
                tracing::error!("{e}");
                e.to_string()
            });
            for (_, done) in batch {
                let _ = done.send(result.clone());
            }
        })?;
        Ok(Arc::new(Shared {
            state: Mutex::new(state),
            log,
            replay: Mutex::default(),
            hub: Default::default(),
            sessions: Default::default(),
            relay: Default::default(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TrackerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads (or, for what is never saved, changes) the registry. The lock is never held across an await.
    pub fn with<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        f(&mut self.lock().registry)
    }

    /// Records the nonce of a signed request; refuses one seen before within the window.
    pub fn admit(&self, name: &PeerName, nonce: Nonce, now: u64) -> Result<(), AuthError> {
        self.replay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(name, nonce, now)
    }

    /// `GET /get-list`'s answer as JSON ([`TrackerState::members_json`]: kept while it holds).
    pub(crate) fn members_json(
        &self,
        channel: &crate::proto::ChannelName,
        caller: Option<&PeerName>,
        now: u64,
    ) -> Result<bytes::Bytes, registry::RegistryError> {
        self.lock().members_json(channel, caller, now)
    }

    /// Reads the state.
    pub fn read<R>(&self, f: impl FnOnce(&TrackerState) -> R) -> R {
        f(&self.lock())
    }

    /// Makes a change and answers once it is durable. `f` decides under the lock and returns what to record; the
    /// record is queued before the lock is let go, so the store sees changes in the order they were made.
    pub async fn change<R, E: Into<ApiError>>(
        &self,
        f: impl FnOnce(&mut TrackerState) -> Result<(R, Vec<Change>), E>,
    ) -> Result<R, ApiError> {
        let (result, saved, pushed) = {
            let permit = self.log.try_reserve().map_err(|_| SaveError::Busy)?;
            let mut state = self.lock();
            let (result, changes) = f(&mut state).map_err(Into::into)?;
            if changes.is_empty() {
                return Ok(result);
            }
            let pushed = changes.iter().any(sessions::affects_presence);
            let (done, saved) = oneshot::channel();
            permit.send((changes, done));
            (result, saved, pushed)
        };
        match saved.await {
            Ok(Ok(())) => {
                if pushed {
                    self.hub.poke();
                }
                Ok(result)
            }
            Ok(Err(e)) => Err(SaveError::Failed(e).into()),
            Err(_) => Err(SaveError::Stopping.into()),
        }
    }
}

/// A running tracker.
pub struct Tracker {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    endpoint: Arc<crate::link::Endpoint>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Tracker {
    /// Binds (falling back to the wildcard address if `ip` is not on this host) and starts serving.
    pub async fn start(config: TrackerConfig) -> Result<Tracker, StartError> {
        let storage = config.storage.clone();
        let loaded = config.clone();
        let (store, state) = tokio::task::spawn_blocking(move || {
            let mut store: Box<dyn Store> = match &storage {
                Storage::Memory => Box::new(MemoryStore),
                Storage::Dir(_) => Box::new(sqlite_store::SqliteStore::open(&storage)?),
            };
            let state = TrackerState::load(store.as_mut(), &loaded)?;
            Ok::<_, StoreError>((store, state))
        })
        .await
        .map_err(|e| StoreError(e.to_string()))??;
        let identity = match (&config.identity, &config.storage) {
            (Some(id), _) => id.clone(),
            (None, Storage::Dir(dir)) => {
                let dir = dir.clone();
                Arc::new(
                    tokio::task::spawn_blocking(move || Identity::load_or_create(&dir))
                        .await
                        .map_err(|e| StoreError(e.to_string()))??,
                )
            }
            (None, Storage::Memory) => Arc::new(Identity::ephemeral()),
        };
        let bound = bind_with_fallback(config.ip, config.port).await?;
        let endpoint = bind_sessions(&config, bound.local_addr, identity)?;
        let shared = Shared::start(store, state)?;
        let shutdown = CancellationToken::new();
        let limiter = Arc::new(RateLimiter::new(config.limits.rate_limit));
        let _ = shared
            .sessions
            .listening
            .set((endpoint.local_addr().port(), endpoint.public_key()));
        endpoint.serve_requests(Arc::new(sessions::Sessions::new(
            with_limits(routes::app(shared.clone()), config.limits.request_timeout),
            limiter.clone(),
            config.limits.rate_limit.per_second,
            shared.clone(),
        )));
        relay::serve(&shared, &endpoint, config.relay_limits);
        let server = tokio::spawn(serve_sharing(
            bound.listener,
            routes::app(shared.clone()),
            shutdown.clone(),
            config.limits,
            limiter,
        ));
        let watcher = tokio::spawn(watch_store(shared.log.clone(), shutdown.clone()));
        let hub = tokio::spawn(sessions::Hub::run(
            shared.clone(),
            shutdown.clone(),
            PUSH_RESYNC,
        ));
        let sweeper = tokio::spawn(sweep(shared.clone(), config.peer_ttl, shutdown.clone()));
        Ok(Tracker {
            shared,
            local_addr: bound.local_addr,
            endpoint,
            shutdown,
            tasks: vec![server, sweeper, watcher, hub],
        })
    }

    /// What the relay carried since start (as `GET /health` says).
    pub fn relay_health(&self) -> Option<crate::proto::RelayHealth> {
        relay::health(&self.shared)
    }

    /// The UDP address sessions are accepted on.
    pub fn session_addr(&self) -> SocketAddr {
        self.endpoint.local_addr()
    }

    /// The tracker's key: what peers pin, and what its sessions prove.
    pub fn public_key(&self) -> crate::identity::PublicKey {
        self.endpoint.public_key()
    }

    /// An in-memory tracker's router, with no socket and no sweep: for tests that send it requests with
    /// `app.oneshot(req)`. `config.storage` is not read (nothing is kept); its limits and quotas are. Requests carry no
    /// client address, so the per-address quotas do not apply (as for the tracker's own host).
    pub fn router_in_memory(config: TrackerConfig) -> Result<axum::Router, StartError> {
        let mut store = MemoryStore;
        let state = TrackerState::load(&mut store, &config)?;
        Ok(routes::app(Shared::start(Box::new(store), state)?))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A token that stops the tracker when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, lets open requests finish, and returns when every task has ended.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.join().await;
    }

    /// Waits until the tracker has stopped (after its token is cancelled).
    pub async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
        self.endpoint.close_and_wait().await;
    }
}

/// How often the hub looks at every subscriber's lists even if nothing was saved: a lease lapses by the clock,
/// before the sweep saves its removal.
const PUSH_RESYNC: Duration = Duration::from_secs(5);
/// Requests (streams) one session may have in flight at once at the tracker; the router's own limits apply to each.
pub const MAX_REQUESTS_PER_SESSION: u32 = 128;
/// Sessions a tracker holds at once (a peer holds one to it).
const MAX_SESSIONS: usize = 16_384;

/// Listens for sessions on UDP at the HTTP address: on `config.quic_port`, or the HTTP port's number.
fn bind_sessions(
    config: &TrackerConfig,
    http: SocketAddr,
    identity: Arc<Identity>,
) -> Result<Arc<crate::link::Endpoint>, StartError> {
    let link_config = crate::link::Config {
        max_connections: MAX_SESSIONS,
        max_streams: MAX_REQUESTS_PER_SESSION,
        ..crate::link::Config::default()
    };
    let bind = |port: u16| {
        let addr = SocketAddr::new(http.ip(), port);
        crate::link::Endpoint::bind_with(
            addr,
            identity.clone(),
            Arc::new(crate::link::NoInbox),
            link_config.clone(),
        )
        .map_err(|e| StartError::Sessions(addr, Box::new(e)))
    };
    match config.quic_port {
        Some(port) => bind(port),
        None => bind(http.port()).or_else(|e| {
            if config.port == 0 {
                // The system picked a TCP port whose UDP twin is taken: any UDP port will do (it is in /health).
                bind(0)
            } else {
                Err(e)
            }
        }),
    }
}

/// How often the store checks that its database file is still its own when nothing is being saved (it checks
/// before every save too): a file removed under a quiet tracker is noticed, and written back, within this.
pub const STORE_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Nudges the store thread with an empty record every [`STORE_CHECK_EVERY`], so it checks its file.
async fn watch_store(log: mpsc::Sender<Record>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(STORE_CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let (done, _) = oneshot::channel();
        // A full queue is a busy store: it checks before those saves anyway.
        let _ = log.try_send((Vec::new(), done));
    }
}

/// Lapsed leases removed per hold of the registry: when many lapse at once (a whole lab going home), requests
/// wait for one batch at a time instead of the whole sweep (100,000 in one go held it ~300 ms, docs/BENCHMARKS.md).
pub const SWEEP_BATCH: usize = 1_000;
/// Between two batches of a sweep.
const SWEEP_PAUSE: Duration = Duration::from_millis(1);
/// Names of swept peers written out in the log line; the rest are counted.
const SWEEP_NAMES_LOGGED: usize = 10;

/// Removes expired leases for good, a few times per TTL, so memory follows the live population; then expires what
/// the quotas say is unused ([`TrackerState::expire_unused`]).
async fn sweep(shared: Arc<Shared>, ttl: Duration, shutdown: CancellationToken) {
    let every = (ttl / 4).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        loop {
            let swept = shared
                .change(|s| {
                    Ok::<_, ApiError>(s.registry.expire_some(crate::proto::now_ms(), SWEEP_BATCH))
                })
                .await;
            let names = match swept {
                Ok(names) => names,
                Err(e) => {
                    tracing::error!("the sweep could not save what it removed: {}", e.message);
                    break;
                }
            };
            let count = names.len();
            if count > 0 {
                let shown: Vec<&str> = names
                    .iter()
                    .take(SWEEP_NAMES_LOGGED)
                    .map(|n| n.as_str())
                    .collect();
                let more = count - shown.len();
                tracing::info!(
                    count,
                    "expired peers: {}{}",
                    shown.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                );
            }
            if count < SWEEP_BATCH {
                break;
            }
            // A pause, not just a yield: the registry's mutex is not fair, and a handler waiting for it on another
            // thread must get a turn before the next batch.
            tokio::time::sleep(SWEEP_PAUSE).await;
        }
        let expired = shared
            .change(|s| {
                let changes = s.expire_unused(crate::proto::now_ms(), SWEEP_BATCH);
                Ok::<_, ApiError>(((), changes))
            })
            .await;
        if let Err(e) = expired {
            tracing::error!("the sweep could not save what expired: {}", e.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn get(app: &axum::Router, uri: &str) -> (StatusCode, serde_json::Value) {
        let req = Request::get(uri).body(Body::empty()).unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn an_in_memory_router_answers_without_a_socket() {
        let app = Tracker::router_in_memory(TrackerConfig::default()).unwrap();
        let (status, health) = get(&app, "/health").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(health["peers"], 0);
        let (status, body) = get(&app, "/identity?name=nobody").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "unknown_identity");
    }
}
