//! What the server keeps per connection and per client address, so that no one client can hold the node:
//! - [`ClientConnections`]: how many connections each client IP has open, capped per client beside the server's
//!   global cap (a host that opens thousands of sockets takes its own share, not everyone's);
//! - [`Activity`]: whether a connection has a request in flight and since when it has been idle, so the server can
//!   close one that sends nothing (before its first request, or between requests) after a deadline, whatever
//!   protocol stage it is in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Open connections per client address.
#[derive(Debug)]
pub(super) struct ClientConnections {
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; the count drops when this does. The map holds only addresses with an open connection,
/// so it is bounded by the server's global connection cap.
#[derive(Debug)]
pub(super) struct ConnectionSlot {
    owner: Arc<ClientConnections>,
    client: IpAddr,
}

impl ClientConnections {
    pub(super) fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a new connection from `client`, or `None` when it already has `cap` open.
    pub(super) fn admit(self: &Arc<Self>, client: IpAddr) -> Option<ConnectionSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(client).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot {
            owner: self.clone(),
            client,
        })
    }

    /// Connections `client` has open now.
    #[cfg(test)]
    pub(super) fn open_from(&self, client: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&client).copied().unwrap_or(0)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// The requests of one connection: how many are in flight (a response being streamed counts until its body
/// ends) and when the last one ended.
#[derive(Debug)]
pub(super) struct Activity {
    busy: AtomicUsize,
    idle_since: Mutex<Instant>,
    changed: Notify,
}

/// One request in flight; dropping it (with the response body) marks the connection idle again if it was the last.
#[derive(Debug)]
pub(super) struct Busy(Arc<Activity>);

impl Activity {
    /// A connection idle since `since` (its accept).
    pub(super) fn since(since: Instant) -> Arc<Self> {
        Arc::new(Self {
            busy: AtomicUsize::new(0),
            idle_since: Mutex::new(since),
            changed: Notify::new(),
        })
    }

    /// A request has begun.
    pub(super) fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_one();
        Busy(self.clone())
    }

    /// Resolves once the connection has had no request in flight for `limit` without a break.
    pub(super) async fn idle_for(&self, limit: Duration) {
        loop {
            // Registered before the state is read, so a change in between is not missed.
            let changed = self.changed.notified();
            if self.busy.load(Ordering::SeqCst) == 0 {
                let since = *self.idle_since.lock().unwrap_or_else(|p| p.into_inner());
                tokio::select! {
                    _ = tokio::time::sleep_until(since + limit) => {
                        let still = *self.idle_since.lock().unwrap_or_else(|p| p.into_inner()) == since;
                        if still && self.busy.load(Ordering::SeqCst) == 0 {
                            return;
                        }
                    }
                    _ = changed => {}
                }
            } else {
                changed.await;
            }
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn given_a_client_at_its_cap_then_it_is_refused_until_one_closes_and_others_are_not() {
        let conns = ClientConnections::new(2);
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let first = conns.admit(a).unwrap();
        let _second = conns.admit(a).unwrap();
        assert!(conns.admit(a).is_none());
        assert!(conns.admit(b).is_some());
        drop(first);
        assert_eq!(conns.open_from(a), 1);
        assert!(conns.admit(a).is_some());
    }

    #[test]
    fn given_no_connections_left_then_the_client_is_forgotten() {
        let conns = ClientConnections::new(2);
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        drop(conns.admit(a).unwrap());
        assert!(conns.open.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn given_a_request_in_flight_then_the_connection_is_idle_only_once_it_ends() {
        let limit = Duration::from_millis(100);
        let activity = Activity::since(Instant::now());
        let busy = activity.begin();
        let watcher = {
            let a = activity.clone();
            tokio::spawn(async move { a.idle_for(limit).await })
        };
        tokio::time::sleep(limit * 5).await;
        assert!(!watcher.is_finished(), "busy all along, never idle");
        let ended = Instant::now();
        drop(busy);
        watcher.await.unwrap();
        assert!(ended.elapsed() >= limit, "idle for the limit after the end");
    }

    #[tokio::test]
    async fn given_no_request_then_the_connection_is_idle_after_the_limit_from_its_start() {
        let limit = Duration::from_millis(100);
        let started = Instant::now();
        Activity::since(started).idle_for(limit).await;
        let took = started.elapsed();
        assert!(took >= limit && took < limit * 10, "{took:?}");
    }
}
