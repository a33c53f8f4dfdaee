//! Sessions: identity-bound QUIC connections between nodes (issue 13; the protocol is docs/SESSIONS.md).
//!
//! An [`Endpoint`] listens on one UDP socket and dials from it. Its TLS key is the node's Ed25519 [`Identity`],
//! presented as a raw public key (RFC 7250); both sides must present one, so each side of a connection knows the
//! other's key for certain ([`tls`]). The dialler names the key it expects and gets an error unless it reached
//! exactly that key. On a connection, each side sends its messages on one long-lived stream of length-delimited
//! frames ([`frame`]) and the other side acks each once stored ([`session`]). The [`pool`] keeps one connection
//! per remote key, used both ways, until it has been idle for [`IDLE_TIMEOUT`].
//!
//! The peer and the tracker each run one endpoint; what they supply is an [`Inbox`] (who a name is, and how a
//! batch of messages is stored) and, for requests, a [`Service`].

pub mod frame;
pub(crate) mod pool;
pub mod relay;
pub mod request;
pub(crate) mod session;
pub(crate) mod tls;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use frame::ErrorBody;
pub use relay::{RelayPort, Switch};
pub use request::{Caller, PushStream, Request, RequestError, Response, Service};
pub use session::{HALTED, Inbox, LaneId, Link, SendError};

use crate::identity::{Identity, PublicKey};
use crate::proto::ChatMessage;

/// The one ALPN protocol a session speaks; a handshake offering anything else fails.
pub const ALPN: &[u8] = b"hchat/1";
/// The server name (SNI) every dialler sends: a constant, so the handshake does not show whom it wants (the key
/// it expects is checked in the verifier, not named on the wire). The listener ignores it.
pub const SERVER_NAME: &str = "hchat.invalid";
/// Bidirectional streams the other side may have open at once on one connection (each side uses one for its
/// messages; the rest is room for a stream replaced after an error, and for the tracker's requests later).
pub const MAX_STREAMS: u32 = 8;
/// A connection with no packet either way for this long is closed (no keep-alives: idle means closed).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A dial whose handshake has not finished in this time fails.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A sent message with no ACK or ERROR in this time is reported [`SendError::Timeout`] (it may still be stored).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections the pool keeps at once; past it, the least recently used is closed.
pub const MAX_CONNECTIONS: usize = 1024;
/// Handshakes a listener runs at once; more incoming connections are refused until some finish.
pub const MAX_HANDSHAKES: usize = 128;
/// Messages a receiver hands its inbox at once (and so acks in one frame), and a sender writes in one go.
pub const MAX_BATCH: usize = 256;
/// Messages one link has waiting for acks at once; more senders wait for room.
pub const MAX_IN_FLIGHT: usize = 1024;
/// The receive and send buffer an endpoint's UDP socket asks the kernel for (which caps it at
/// `net.core.rmem_max` / `wmem_max`, and counts twice the value granted). One socket carries all of a node's
/// sessions: when a hundred members ack a channel message at once, the default of 208 KiB filled whenever the
/// node was busy for a few milliseconds, the kernel dropped what came next (`RcvbufErrors` in
/// `/proc/net/snmp`), and QUIC's loss recovery then held the sender back (docs/BENCHMARKS.md).
pub const SOCKET_BUFFER: usize = 2 * 1024 * 1024;

/// QUIC application codes (docs/SESSIONS.md, "Closing").
pub const CLOSE_NORMAL: quinn::VarInt = quinn::VarInt::from_u32(0);
pub const CLOSE_EVICTED: quinn::VarInt = quinn::VarInt::from_u32(1);
pub const STREAM_CLOSED_FRAME_TOO_LARGE: quinn::VarInt = quinn::VarInt::from_u32(1);

/// Why a link could not be had.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot listen for sessions: {0}")]
    Bind(#[source] std::io::Error),
    #[error("TLS set-up: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot dial {0}: {1}")]
    Connect(SocketAddr, quinn::ConnectError),
    /// The node at the address presented another key than the one expected (`found`, when it got that far):
    /// it is not who we wanted. Nothing was sent to it.
    #[error("{addr} is not the node we expected: it presented key {} instead of {expected}", found.map_or("none".to_string(), |k| k.to_string()))]
    WrongKey {
        addr: SocketAddr,
        expected: PublicKey,
        found: Option<PublicKey>,
    },
    #[error("the session handshake with {0} failed: {1}")]
    Handshake(SocketAddr, quinn::ConnectionError),
    #[error("{0} did not complete a session handshake within {HANDSHAKE_TIMEOUT:?}")]
    Timeout(SocketAddr),
    #[error("this endpoint is closed")]
    Closed,
    /// Dialling through the relay only (`--force-relay`), and no relay stream is open with the tracker now.
    #[error("the relay is not up, and the direct path is not to be used (--force-relay)")]
    NoRelay,
}

/// A node's session endpoint: listens, dials, and keeps the pool.
pub struct Endpoint {
    quic: quinn::Endpoint,
    identity: Arc<Identity>,
    inbox: Arc<dyn Inbox>,
    transport: Arc<quinn::TransportConfig>,
    pool: pool::Pool,
    /// Handshakes this endpoint completed as the listener.
    accepted: std::sync::atomic::AtomicUsize,
    /// What answers request and push streams (the tracker's API); none: they are refused.
    service: std::sync::OnceLock<Arc<dyn Service>>,
    /// The tracker's relay, answering relay streams; none: they are refused.
    switch: std::sync::OnceLock<Arc<Switch>>,
    /// A peer's way to reach keys through its tracker (its socket is a [`relay::RelaySocket`]).
    relay: Option<RelayPort>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("key", &self.identity.public_key())
            .field("addr", &self.quic.local_addr().ok())
            .finish()
    }
}

/// The limits an endpoint runs with; [`Config::default`] is the named constants above. A tracker may hold
/// more connections than a peer; tests shorten the idle timeout.
#[derive(Debug, Clone)]
pub struct Config {
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// Send a QUIC PING this often on a quiet connection (none by default). A peer's session with its tracker
    /// uses it with a short idle timeout, so a tracker that died is noticed in seconds, not at a request's deadline.
    pub keep_alive: Option<Duration>,
    /// Bidirectional streams the other side may have open at once ([`MAX_STREAMS`] by default). The tracker grants
    /// more: each request is a stream, and a peer depositing for 50 members at once must not queue behind 8.
    pub max_streams: u32,
    /// Run on a [`relay::RelaySocket`]: sessions with other keys may go through the tracker (a peer's endpoint).
    pub relay: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            idle_timeout: IDLE_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            keep_alive: None,
            max_streams: MAX_STREAMS,
            relay: false,
        }
    }
}

fn transport(config: &Config) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(config.max_streams))
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(0))
        .max_idle_timeout(Some(
            config
                .idle_timeout
                .try_into()
                .expect("the idle timeout fits QUIC's"),
        ))
        .keep_alive_interval(config.keep_alive);
    Arc::new(t)
}

impl Endpoint {
    /// Listens on UDP `addr` (port 0: any) and serves every authenticated connection with `inbox`. Needs a
    /// Tokio runtime; the accept loop ends when the endpoint is closed or dropped.
    pub fn bind(
        addr: SocketAddr,
        identity: Arc<Identity>,
        inbox: Arc<dyn Inbox>,
    ) -> Result<Arc<Endpoint>, LinkError> {
        Endpoint::bind_with(addr, identity, inbox, Config::default())
    }

    /// [`Endpoint::bind`] with other limits.
    pub fn bind_with(
        addr: SocketAddr,
        identity: Arc<Identity>,
        inbox: Arc<dyn Inbox>,
        config: Config,
    ) -> Result<Arc<Endpoint>, LinkError> {
        let tls = quinn::crypto::rustls::QuicServerConfig::try_from(tls::server_config(&identity)?)
            .map_err(|e| LinkError::Tls(rustls::Error::General(e.to_string())))?;
        let transport = transport(&config);
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(tls));
        server.transport_config(transport.clone());
        server.max_incoming(MAX_HANDSHAKES);
        let (quic, relay) = if config.relay {
            let (quic, port) = bind_relayable(addr, server).map_err(LinkError::Bind)?;
            (quic, Some(port))
        } else {
            (bind_plain(addr, server).map_err(LinkError::Bind)?, None)
        };
        let endpoint = Arc::new(Endpoint {
            quic: quic.clone(),
            identity,
            inbox,
            transport,
            pool: pool::Pool::new(config.max_connections),
            accepted: Default::default(),
            service: Default::default(),
            switch: Default::default(),
            relay,
        });
        tokio::spawn(accept_loop(quic, Arc::downgrade(&endpoint)));
        Ok(endpoint)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.quic
            .local_addr()
            .expect("a bound socket has an address")
    }

    pub fn public_key(&self) -> PublicKey {
        self.identity.public_key()
    }

    /// The pooled link to `expected`, or a new one dialled at `addr`. Fails unless the node there proves
    /// `expected`: then nothing at all has been sent to it.
    pub async fn link(
        self: &Arc<Self>,
        addr: SocketAddr,
        expected: PublicKey,
    ) -> Result<Arc<Link>, LinkError> {
        if let Some(link) = self.pool.get(&expected) {
            return Ok(link);
        }
        let slot = self.pool.slot(expected);
        let _dialling = slot.dialling.lock().await;
        if let Some(link) = self.pool.get(&expected) {
            return Ok(link);
        }
        let result = self.dial(addr, expected).await;
        match result {
            Ok(link) => Ok(self.pool.offer(link)),
            Err(e) => {
                drop(_dialling);
                self.pool.forget_slot_if_empty(&expected);
                Err(e)
            }
        }
    }

    /// Sends one message to `expected` at `addr` over the pooled link, waiting for its ack.
    pub async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        expected: PublicKey,
        msg: &ChatMessage,
    ) -> Result<(), SendError> {
        self.link(addr, expected).await?.send(msg).await
    }

    /// Answers request and push streams with `service` from now on (once: a second call is ignored).
    pub fn serve_requests(&self, service: Arc<dyn Service>) {
        let _ = self.service.set(service);
    }

    /// Answers relay streams with `switch` from now on (the tracker; once: a second call is ignored).
    pub fn serve_relay(&self, switch: Arc<Switch>) {
        let _ = self.switch.set(switch);
    }

    /// Each time the session kept for a key moves to the relay (`true`) or off it (`false`).
    pub fn path_changes(&self) -> tokio::sync::broadcast::Receiver<(PublicKey, bool)> {
        self.pool.path_changes()
    }

    /// This endpoint's relay, if it runs on a relay socket (a peer's).
    pub fn relay(&self) -> Option<&RelayPort> {
        self.relay.as_ref()
    }

    /// The pooled link to `expected`, or a new one: dialled at `direct`, and, if that has not answered within
    /// [`relay::RELAY_HEADSTART`] (or fails) and the relay is up, also through the relay; the first session up
    /// wins. A direct session that comes up later replaces a relayed one in the pool; if the direct dial fails, it
    /// is tried again now and then ([`relay::DIRECT_RETRY_FIRST`], doubling to [`relay::DIRECT_RETRY_MAX`]) for as
    /// long as the relayed session is the one pooled. Either way the session proves `expected`.
    pub async fn link_via(
        self: &Arc<Self>,
        direct: SocketAddr,
        expected: PublicKey,
    ) -> Result<Arc<Link>, LinkError> {
        if let Some(link) = self.pool.get(&expected) {
            return Ok(link);
        }
        if self
            .relay
            .as_ref()
            .is_some_and(|r| r.forced() && !r.is_up())
        {
            return Err(LinkError::NoRelay);
        }
        let relayed = self
            .relay
            .as_ref()
            .filter(|r| r.is_up())
            .and_then(|r| r.mapped(expected));
        let Some(relayed) = relayed else {
            return self.link(direct, expected).await;
        };
        let slot = self.pool.slot(expected);
        let _dialling = slot.dialling.lock().await;
        if let Some(link) = self.pool.get(&expected) {
            return Ok(link);
        }
        let result = self.race(direct, relayed, expected).await;
        if result.is_err() {
            drop(_dialling);
            self.pool.forget_slot_if_empty(&expected);
        }
        result
    }

    async fn race(
        self: &Arc<Self>,
        direct: SocketAddr,
        relayed: SocketAddr,
        expected: PublicKey,
    ) -> Result<Arc<Link>, LinkError> {
        use futures_util::FutureExt;
        let forced = self.relay.as_ref().is_some_and(|r| r.forced());
        // The direct dial runs on its own, so a relayed session that wins does not cancel it: if it comes up
        // later, it replaces the relayed one in the pool.
        let direct_dial = {
            let endpoint = self.clone();
            async move {
                if forced {
                    return Direct::Failed;
                }
                match endpoint.dial(direct, expected).await {
                    Ok(link) => {
                        endpoint.pool.offer(link);
                        Direct::Up
                    }
                    // Another node answers at the address: not a path problem, and not one the relay should paper
                    // over (the caller reports it, as without a relay).
                    Err(LinkError::WrongKey { found, .. }) => Direct::WrongKey(found),
                    Err(e) => {
                        tracing::debug!("direct session with {direct} failed: {e}");
                        if let Some(r) = &endpoint.relay {
                            r.direct_failed();
                        }
                        Direct::Failed
                    }
                }
            }
        };
        let direct_up = tokio::spawn(direct_dial)
            .map(|r| r.unwrap_or(Direct::Failed))
            .shared();
        let wrong_key = |found| LinkError::WrongKey {
            addr: direct,
            expected,
            found,
        };
        if !forced {
            match tokio::time::timeout(relay::RELAY_HEADSTART, direct_up.clone()).await {
                Ok(Direct::Up) => {
                    if let Some(link) = self.pool.get(&expected) {
                        return Ok(link);
                    }
                }
                Ok(Direct::WrongKey(found)) => return Err(wrong_key(found)),
                _ => {}
            }
        }
        let via_relay = self.dial(relayed, expected);
        tokio::pin!(via_relay);
        let mut direct_pending = !forced;
        let mut relay_failed = None;
        loop {
            tokio::select! {
                up = direct_up.clone(), if direct_pending => {
                    direct_pending = false;
                    match up {
                        Direct::Up => {
                            if let Some(link) = self.pool.get(&expected) {
                                return Ok(link);
                            }
                        }
                        Direct::WrongKey(found) => return Err(wrong_key(found)),
                        Direct::Failed => {}
                    }
                    if let Some(e) = relay_failed.take() {
                        return Err(e);
                    }
                }
                r = &mut via_relay, if relay_failed.is_none() => match r {
                    Ok(link) => {
                        let link = self.pool.offer(link);
                        if !forced {
                            tokio::spawn(upgrade(Arc::downgrade(self), link.clone(), direct, direct_up));
                        }
                        return Ok(link);
                    }
                    // The direct dial may still come up: wait for it.
                    Err(e) if direct_pending => relay_failed = Some(e),
                    Err(e) => return Err(e),
                },
            }
        }
    }

    /// A new connection to `addr`, not pooled (the pool offers it; tests use it directly).
    pub async fn dial(
        self: &Arc<Self>,
        addr: SocketAddr,
        expected: PublicKey,
    ) -> Result<Arc<Link>, LinkError> {
        self.dial_checked(addr, Some(expected), self.transport.clone())
            .await
    }

    /// A new connection to whatever key answers at `addr` (first contact, before a key is pinned: the caller
    /// pins [`Link::remote_key`] or compares it). Not pooled.
    pub async fn dial_any(self: &Arc<Self>, addr: SocketAddr) -> Result<Arc<Link>, LinkError> {
        self.dial_checked(addr, None, self.transport.clone()).await
    }

    /// [`Endpoint::dial_any`] with this connection's own limits (idle timeout, keep-alive, streams) instead of the
    /// endpoint's: a peer's session with its tracker, dialled from the endpoint it takes sessions on, pings every
    /// second and gives up after 3 s, while its sessions with peers do not.
    pub async fn dial_any_with(
        self: &Arc<Self>,
        addr: SocketAddr,
        limits: &Config,
    ) -> Result<Arc<Link>, LinkError> {
        self.dial_checked(addr, None, transport(limits)).await
    }

    async fn dial_checked(
        self: &Arc<Self>,
        addr: SocketAddr,
        wanted: Option<PublicKey>,
        transport: Arc<quinn::TransportConfig>,
    ) -> Result<Arc<Link>, LinkError> {
        let (tls, seen) = tls::client_config(&self.identity, wanted)?;
        let tls = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls))
            .map_err(|e| LinkError::Tls(rustls::Error::General(e.to_string())))?;
        let mut config = quinn::ClientConfig::new(Arc::new(tls));
        config.transport_config(transport);
        let connecting = self
            .quic
            .connect_with(config, addr, SERVER_NAME)
            .map_err(|e| LinkError::Connect(addr, e))?;
        let wrong_key = |found| LinkError::WrongKey {
            addr,
            expected: wanted.expect("only a dial for one key fails on a wrong key"),
            found,
        };
        let conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting).await {
            Err(_) => return Err(LinkError::Timeout(addr)),
            Ok(Err(e)) => {
                return Err(match (seen.get(), wanted) {
                    (Some(found), Some(expected)) if *found != expected => wrong_key(Some(*found)),
                    _ => LinkError::Handshake(addr, e),
                });
            }
            Ok(Ok(conn)) => conn,
        };
        // The verifier accepted only `expected`; checked again here so no later change can loosen it silently.
        let found = tls::peer_key(&conn);
        let remote = match (found, wanted) {
            (Some(found), None) => found,
            (Some(found), Some(expected)) if found == expected => found,
            (None, None) => {
                conn.close(CLOSE_NORMAL, b"no key");
                return Err(LinkError::Handshake(
                    addr,
                    quinn::ConnectionError::LocallyClosed,
                ));
            }
            _ => {
                conn.close(CLOSE_NORMAL, b"wrong key");
                return Err(wrong_key(found));
            }
        };
        let link = Arc::new(Link::new(conn, remote, self.public_key()));
        tokio::spawn(serve_connection(link.clone(), Arc::downgrade(self)));
        Ok(link)
    }

    /// Links in the pool now.
    pub fn pooled(&self) -> usize {
        self.pool.len()
    }

    /// The pooled link to `key`, if there is a live one.
    pub fn pooled_link(&self, key: &PublicKey) -> Option<Arc<Link>> {
        self.pool.get(key)
    }

    /// Sessions this endpoint accepted (handshakes completed with it as the listener), ever.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// QUIC connections open on this endpoint, pooled or not (a replaced one lingers until idle).
    pub fn open_connections(&self) -> usize {
        self.quic.open_connections()
    }

    /// Closes every connection and stops listening.
    pub fn close(&self) {
        self.quic.close(CLOSE_NORMAL, b"closing");
    }

    /// Closes every connection and waits (at most [`CLOSE_WAIT`]) until they have drained, so the UDP port is
    /// free again soon after the last handle is dropped: a node restarted in the same process at the same port
    /// (a tracker's restart, tests) can bind it.
    pub async fn close_and_wait(&self) {
        self.close();
        let _ = tokio::time::timeout(CLOSE_WAIT, self.quic.wait_idle()).await;
    }
}

/// The longest a closing endpoint waits for its connections to drain.
pub const CLOSE_WAIT: Duration = Duration::from_secs(2);

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.quic.close(CLOSE_NORMAL, b"closing");
    }
}

async fn accept_loop(quic: quinn::Endpoint, endpoint: std::sync::Weak<Endpoint>) {
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    while let Some(incoming) = quic.accept().await {
        let Some(endpoint) = endpoint.upgrade() else {
            break;
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            incoming.refuse();
            continue;
        };
        tokio::spawn(async move {
            let addr = incoming.remote_address();
            let conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, async { incoming.await }).await
            {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => return tracing::debug!("session from {addr} refused: {e}"),
                Err(_) => return tracing::debug!("session from {addr}: handshake timed out"),
            };
            drop(permit);
            let Some(remote) = tls::peer_key(&conn) else {
                return conn.close(CLOSE_NORMAL, b"no key");
            };
            // A session that came through the relay must be with the key the tracker relayed it from: a relay that
            // lies about the source gets nothing (the key is proved, so this only catches a dishonest tracker).
            if let Some(port) = &endpoint.relay
                && relay::is_relayed(addr)
                && port.key_of(addr) != Some(remote)
            {
                return conn.close(CLOSE_NORMAL, b"relayed from another key");
            }
            endpoint
                .accepted
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let link = Arc::new(Link::new(conn, remote, remote));
            endpoint.pool.offer(link.clone());
            serve_connection(link, Arc::downgrade(&endpoint)).await;
        });
    }
}

/// Serves the streams the other side opens on `link` until the connection ends, then drops it from the pool.
async fn serve_connection(link: Arc<Link>, endpoint: std::sync::Weak<Endpoint>) {
    let inbox = match endpoint.upgrade() {
        Some(e) => e.inbox.clone(),
        None => return,
    };
    while let Ok((send, recv)) = link.conn.accept_bi().await {
        link.touch();
        let (service, switch) = match endpoint.upgrade() {
            Some(e) => (e.service.get().cloned(), e.switch.get().cloned()),
            None => (None, None),
        };
        tokio::spawn(dispatch(
            send,
            recv,
            link.clone(),
            inbox.clone(),
            service,
            switch,
        ));
    }
    if let Some(e) = endpoint.upgrade() {
        e.pool.forget(&link);
    }
}

/// Serves one stream the other side opened, by the type of its first frame: REQUEST and SUBSCRIBE go to the
/// service (if this endpoint has one), anything else is a message stream.
async fn dispatch(
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    link: Arc<Link>,
    inbox: Arc<dyn Inbox>,
    service: Option<Arc<dyn Service>>,
    switch: Option<Arc<Switch>>,
) {
    let mut first = Vec::new();
    while first.len() < frame::HEADER_LEN {
        match recv.read_chunk(usize::MAX, true).await {
            Ok(Some(chunk)) => first.extend_from_slice(&chunk.bytes),
            _ => return,
        }
    }
    let caller = Caller {
        key: link.remote_key(),
        addr: link.remote_address(),
        local_ip: link.conn.local_ip(),
    };
    if let (relay::TYPE_RELAY_OPEN, Some(switch)) = (first[4], switch) {
        return relay::serve_relay(send, recv, first, link.remote_key(), switch).await;
    }
    match (first[4], service) {
        (request::TYPE_REQUEST, Some(s)) => {
            request::serve_request(send, recv, first, caller, &*s).await
        }
        (request::TYPE_SUBSCRIBE, Some(s)) => {
            request::serve_subscription(send, recv, first, caller, &*s).await
        }
        _ => session::serve_stream(send, recv, link.remote_key(), inbox, first).await,
    }
}

/// A UDP socket bound to `addr` with [`SOCKET_BUFFER`] asked for both ways (a smaller grant is not an error).
fn session_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use rustix::net::sockopt;
    let socket = std::net::UdpSocket::bind(addr)?;
    if let Err(e) = sockopt::set_socket_recv_buffer_size(&socket, SOCKET_BUFFER) {
        tracing::debug!("session socket: receive buffer left as it was: {e}");
    }
    if let Err(e) = sockopt::set_socket_send_buffer_size(&socket, SOCKET_BUFFER) {
        tracing::debug!("session socket: send buffer left as it was: {e}");
    }
    tracing::debug!(
        receive = ?sockopt::socket_recv_buffer_size(&socket),
        send = ?sockopt::socket_send_buffer_size(&socket),
        "session socket buffers"
    );
    Ok(socket)
}

fn runtime() -> std::io::Result<Arc<dyn quinn::Runtime>> {
    quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("no async runtime to run sessions on"))
}

/// Listens on `addr` (what `quinn::Endpoint::server` does, on a [`session_socket`]).
fn bind_plain(addr: SocketAddr, server: quinn::ServerConfig) -> std::io::Result<quinn::Endpoint> {
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        session_socket(addr)?,
        runtime()?,
    )
}

/// Binds `addr` on a [`relay::RelaySocket`] (what [`bind_plain`] does, with the socket wrapped).
fn bind_relayable(
    addr: SocketAddr,
    server: quinn::ServerConfig,
) -> std::io::Result<(quinn::Endpoint, RelayPort)> {
    let runtime = runtime()?;
    let socket = runtime.wrap_udp_socket(session_socket(addr)?)?;
    let (socket, port) = relay::RelaySocket::wrap(socket)?;
    let quic = quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        runtime,
    )?;
    Ok((quic, port))
}

/// How the direct dial of [`Endpoint::link_via`] ended.
#[derive(Debug, Clone, Copy)]
enum Direct {
    Up,
    WrongKey(Option<PublicKey>),
    Failed,
}

/// Moves a relayed session to the direct path: waits for the first direct dial (`first`), then, while `relayed`
/// is still the session pooled for its key, dials `direct` again after a back-off that doubles each time.
async fn upgrade(
    endpoint: std::sync::Weak<Endpoint>,
    relayed: Arc<Link>,
    direct: SocketAddr,
    first: impl std::future::Future<Output = Direct>,
) {
    if matches!(first.await, Direct::Up) {
        return;
    }
    let key = relayed.remote_key();
    let mut wait = relay::DIRECT_RETRY_FIRST;
    loop {
        tokio::time::sleep(wait).await;
        let Some(e) = endpoint.upgrade() else { return };
        let pooled = e.pool.get(&key);
        if relayed.is_closed() || !pooled.is_some_and(|l| Arc::ptr_eq(&l, &relayed)) {
            return;
        }
        match e.dial(direct, key).await {
            Ok(link) => {
                tracing::info!(%direct, "a relayed session moved to the direct path");
                e.pool.offer(link);
                return;
            }
            Err(err) => {
                tracing::debug!("direct path to {direct} still fails: {err}");
                if let Some(r) = &e.relay {
                    r.direct_failed();
                }
            }
        }
        wait = (wait * 2).min(relay::DIRECT_RETRY_MAX);
    }
}

/// An inbox that refuses every message (`wrong_recipient`) and knows no names: for an endpoint that carries only
/// requests and pushes (the tracker's, and a peer's endpoint for its tracker).
pub struct NoInbox;

impl Inbox for NoInbox {
    fn key_of<'a>(
        &'a self,
        _: &'a crate::proto::PeerName,
    ) -> futures_util::future::BoxFuture<'a, Option<PublicKey>> {
        Box::pin(async { None })
    }
    fn deliver(
        &self,
        _: PublicKey,
        batch: Vec<ChatMessage>,
    ) -> futures_util::future::BoxFuture<'_, Vec<Result<(), ErrorBody>>> {
        let n = batch.len();
        Box::pin(async move {
            vec![
                Err(ErrorBody::new(
                    crate::proto::ErrorCode::WrongRecipient,
                    "this endpoint takes no chat messages",
                ));
                n
            ]
        })
    }
}
