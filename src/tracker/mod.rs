//! The tracker: the centre of the hybrid design. It knows who is online and where (leases renewed by
//! heartbeats), which channels exist and who is in them; it never sees a chat message.
//!
//! [`Tracker::start`] binds, serves and sweeps expired leases until [`Tracker::shutdown`]; tests start one on
//! port 0 and read [`Tracker::local_addr`].

pub mod registry;
pub mod routes;
pub mod store;

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::http::{ServerLimits, bind_with_fallback, serve};
use registry::Registry;
use store::{Change, MemoryStore, Store};

/// How to run a tracker.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    pub ip: IpAddr,
    pub port: u16,
    /// A peer that has not renewed its lease for this long disappears from every answer.
    pub peer_ttl: Duration,
    pub limits: ServerLimits,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            port: 0,
            peer_ttl: Duration::from_secs(30),
            limits: ServerLimits::default(),
        }
    }
}

/// The state the handlers share: the registry and where its changes are recorded.
pub struct Shared {
    registry: Mutex<Registry>,
    store: Mutex<Box<dyn Store>>,
}

impl Shared {
    /// Runs `f` on the registry. The lock is never held across an await.
    pub fn with<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        f(&mut self.registry.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn record(&self, change: Change) {
        if let Err(e) = self
            .store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(&change)
        {
            tracing::error!("{e}");
        }
    }
}

/// A running tracker.
pub struct Tracker {
    local_addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Tracker {
    /// Binds (falling back to the wildcard address if `ip` is not on this host) and starts serving.
    pub async fn start(config: TrackerConfig) -> std::io::Result<Tracker> {
        let bound = bind_with_fallback(config.ip, config.port).await?;
        let mut store: Box<dyn Store> = Box::new(MemoryStore);
        let registry = store.load(config.peer_ttl).map_err(std::io::Error::other)?;
        let shared = std::sync::Arc::new(Shared {
            registry: Mutex::new(registry),
            store: Mutex::new(store),
        });
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(
            bound.listener,
            routes::app(shared.clone()),
            shutdown.clone(),
            config.limits,
        ));
        let sweeper = tokio::spawn(sweep(shared, config.peer_ttl, shutdown.clone()));
        Ok(Tracker {
            local_addr: bound.local_addr,
            shutdown,
            tasks: vec![server, sweeper],
        })
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
    }
}

/// Lapsed leases removed per hold of the registry: when many lapse at once (a whole lab going home), requests
/// wait for one batch at a time instead of the whole sweep (100,000 in one go held it ~300 ms, docs/BENCHMARKS.md).
pub const SWEEP_BATCH: usize = 1_000;
/// Between two batches of a sweep.
const SWEEP_PAUSE: Duration = Duration::from_millis(1);
/// Names of swept peers written out in the log line; the rest are counted.
const SWEEP_NAMES_LOGGED: usize = 10;

/// Removes expired leases for good, a few times per TTL, so memory follows the live population.
async fn sweep(shared: std::sync::Arc<Shared>, ttl: Duration, shutdown: CancellationToken) {
    let every = (ttl / 4).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        loop {
            let names = shared.with(|r| r.expire_some(crate::proto::now_ms(), SWEEP_BATCH));
            let swept = names.len();
            if swept > 0 {
                let shown: Vec<&str> = names
                    .iter()
                    .take(SWEEP_NAMES_LOGGED)
                    .map(|n| n.as_str())
                    .collect();
                let more = swept - shown.len();
                tracing::info!(
                    count = swept,
                    "expired peers: {}{}",
                    shown.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                );
                shared.record(Change::Expired { names });
            }
            if swept < SWEEP_BATCH {
                break;
            }
            // A pause, not just a yield: the registry's mutex is not fair, and a handler waiting for it on another
            // thread must get a turn before the next batch.
            tokio::time::sleep(SWEEP_PAUSE).await;
        }
    }
}
