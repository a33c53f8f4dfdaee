//! A peer whose address changes (DHCP gives a new lease, a laptop moves) stays reachable without the user doing
//! anything. A peer that binds every interface (`--ip 0.0.0.0` or `::`) and is given no `--advertise-ip`
//! advertises the address its host uses to reach the tracker, and follows it: every [`ADDRESS_CHECK_EVERY`] it
//! looks that address up again (a route lookup, nothing is sent), and when it changed it re-registers at once, so
//! the tracker answers the new address to whoever asks where the peer is (a sender whose push to the old address
//! goes unanswered asks again: docs/PROTOCOL.md, "Peer to peer"). Its own sessions, bound to every interface,
//! carry on from the new address (QUIC connection migration); sessions others dialled to the old address go
//! silent, are dropped and dialled again at the new one.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::Node;
use crate::sync::lock;

/// How often a peer that follows its address looks it up again: a change is re-registered within this (plus one
/// request to the tracker).
pub(crate) const ADDRESS_CHECK_EVERY: Duration = Duration::from_millis(250);

/// The address this host sends from to reach `tracker`: a UDP socket on every interface, connected (the kernel
/// picks the route and the source; no packet is sent).
pub(crate) fn route_source(tracker: SocketAddr) -> std::io::Result<IpAddr> {
    let any: SocketAddr = match tracker {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = std::net::UdpSocket::bind(any)?;
    socket.connect(tracker)?;
    Ok(socket.local_addr()?.ip())
}

impl Node {
    /// `addr` ready to dial: a link-local IPv6 address comes from the tracker without a scope (a scope means
    /// something on one host only), and is taken to be on the link this node reaches the tracker by, so it gets
    /// the scope of the tracker's address (docs/PROTOCOL.md, "IPv6").
    pub(super) fn on_link(&self, addr: SocketAddr) -> SocketAddr {
        match (addr, self.inner.tracker_addr) {
            (SocketAddr::V6(mut v6), SocketAddr::V6(t))
                if v6.ip().is_unicast_link_local() && v6.scope_id() == 0 =>
            {
                v6.set_scope_id(t.scope_id());
                SocketAddr::V6(v6)
            }
            _ => addr,
        }
    }

    /// Whether this node advertises the address it reaches the tracker from, and follows it.
    pub(super) fn follows_address(&self) -> bool {
        self.inner.follows_address
    }

    /// Follows this host's address toward the tracker until the node stops (see the module's doc).
    pub(super) async fn follow_address(self) {
        let stop = self.inner.shutdown.clone();
        let tracker = self.inner.tracker_addr;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(ADDRESS_CHECK_EVERY) => {}
                _ = stop.cancelled() => return,
            }
            let now = match route_source(tracker) {
                Ok(ip) if !ip.is_unspecified() => ip,
                // No route right now (the interface is between addresses): look again soon.
                Ok(_) | Err(_) => continue,
            };
            let was = self.advertised();
            if now == was.ip() {
                continue;
            }
            *lock(&self.inner.advertised) = SocketAddr::new(now, was.port());
            tracing::info!(peer = %self.name(), from = %was.ip(), to = %now, "this host's address changed; registering the new one");
            let text = match self.renew().await {
                Ok(()) => format!(
                    "your address changed from {} to {now}; the tracker has the new one",
                    was.ip()
                ),
                Err(e) => format!(
                    "your address changed from {} to {now}, but the tracker did not take it yet ({e}); retried at the next renewal",
                    was.ip()
                ),
            };
            self.notice(text);
        }
    }
}
