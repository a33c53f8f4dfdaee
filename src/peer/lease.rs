//! The node's lease at the tracker: how long it lasts, and the rule that no registration lands after the node's
//! goodbye. Registering holds [`Lease::registering`]; a stopping node calls [`Lease::leave`], which marks it
//! leaving and waits for a registration under way, so a background renewal cannot bring the dead node back.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::MutexGuard;

use crate::sync::lock;

/// The lease assumed until the tracker's first answer says how long it is.
const FIRST_TTL: Duration = Duration::from_secs(30);
/// Renewals come at least this far apart, however short the lease.
const RENEW_MIN: Duration = Duration::from_millis(200);

pub(super) struct Lease {
    ttl: Mutex<Duration>,
    /// Held while registering.
    renewing: tokio::sync::Mutex<()>,
    leaving: AtomicBool,
}

impl Default for Lease {
    fn default() -> Self {
        Lease {
            ttl: Mutex::new(FIRST_TTL),
            renewing: tokio::sync::Mutex::new(()),
            leaving: AtomicBool::new(false),
        }
    }
}

impl Lease {
    /// The right to register, held until the guard drops; `None` once the node is leaving.
    pub(super) async fn registering(&self) -> Option<MutexGuard<'_, ()>> {
        let guard = self.renewing.lock().await;
        (!self.is_leaving()).then_some(guard)
    }

    /// Waits until a registration under way (if any) is done.
    pub(super) async fn settled(&self) {
        drop(self.renewing.lock().await);
    }

    /// The tracker granted a lease of `ttl_secs`.
    pub(super) fn granted(&self, ttl_secs: u64) {
        *lock(&self.ttl) = Duration::from_secs(ttl_secs.max(1));
    }

    /// How often to renew: a few times per lease.
    pub(super) fn renew_every(&self) -> Duration {
        (*lock(&self.ttl) / 3).max(RENEW_MIN)
    }

    /// Marks the node leaving and waits for a registration under way: none can start after this returns.
    pub(super) async fn leave(&self) {
        self.leaving.store(true, Ordering::SeqCst);
        self.settled().await;
    }

    pub(super) fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::SeqCst)
    }
}
