//! The accept loop every node runs: a capped number of connections (in all, and per client address), HTTP/1.1
//! keep-alive (and HTTP/2 for clients that ask for it), a per-client request rate limit, deadlines on reading
//! headers, on idling and on each request, and a graceful stop.
//!
//! It is written against hyper directly rather than `axum::serve` because the latter exposes neither the header
//! read timeout nor a connection cap, and a slow or idle client must not be able to hold a node.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::ApiError;
use super::connections::{Activity, Busy, ClientConnections};
use super::rate_limit::{RateLimit, RateLimiter};
use crate::proto::{ErrorBody, ErrorCode, ErrorDetail, MAX_BODY_BYTES};

/// The limits of one server; [`Default`] is what the binaries use.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Connections served at once; further clients wait in the kernel's backlog.
    pub max_connections: usize,
    /// Connections one client address may have open at once; more are answered 429 `too_many_connections` and
    /// closed at once.
    pub max_connections_per_client: usize,
    /// A client must send a request's headers within this long (a total deadline, however slowly they trickle in).
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed: one that never sends a request, one that
    /// idles between requests.
    pub idle_timeout: Duration,
    /// A request (reading its body included) must be answered within this long.
    pub request_timeout: Duration,
    /// How long a stop waits for open requests before cutting them.
    pub drain_timeout: Duration,
    /// Requests a second per client address ([`RateLimit::OFF`] for none).
    pub rate_limit: RateLimit,
}

/// The default of [`ServerLimits::max_connections_per_client`]: far above what one peer opens (a few pooled
/// connections to each node it talks to), far below the global cap, so one host cannot hold every slot.
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 256;

/// After an idle connection is told to close, how long it gets to finish before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_client: MAX_CONNECTIONS_PER_CLIENT,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(3),
            rate_limit: RateLimit::default(),
        }
    }
}

/// A bound listener and what to tell others about it.
#[derive(Debug)]
pub struct Bound {
    pub listener: TcpListener,
    /// The address the socket is bound to (after a fallback, the wildcard address).
    pub local_addr: SocketAddr,
    /// True when the asked IP is not on this host and the wildcard address was bound instead.
    pub fell_back: bool,
}

/// Binds `ip:port`; when `ip` is not an address of this host, binds the wildcard address of the same family
/// instead and logs one warning; the node keeps advertising `ip` (LAN setups behind port forwarding rely on it:
/// docs/PROTOCOL.md, `--ip`).
pub async fn bind_with_fallback(ip: IpAddr, port: u16) -> io::Result<Bound> {
    match TcpListener::bind((ip, port)).await {
        Ok(listener) => {
            let local_addr = listener.local_addr()?;
            Ok(Bound {
                listener,
                local_addr,
                fell_back: false,
            })
        }
        Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {
            let any: IpAddr = if ip.is_ipv4() {
                Ipv4Addr::UNSPECIFIED.into()
            } else {
                Ipv6Addr::UNSPECIFIED.into()
            };
            let listener = TcpListener::bind((any, port)).await?;
            let local_addr = listener.local_addr()?;
            tracing::warn!(
                "{ip} is not an address of this host; listening on {local_addr} and still advertising {ip}"
            );
            Ok(Bound {
                listener,
                local_addr,
                fell_back: true,
            })
        }
        Err(e) => Err(e),
    }
}

/// What every node's router is served with, socket or not: the request deadline and the body limit. [`serve`]
/// adds them; a test that calls a router in-process (`oneshot`) adds them the same way.
pub fn with_limits(app: Router, request_timeout: Duration) -> Router {
    app.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| deadline(req, next, request_timeout),
    ))
    .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets open requests finish for
/// [`ServerLimits::drain_timeout`] and cuts the rest. Handlers see the client's address as
/// `ConnectInfo<SocketAddr>`.
///
/// Every limit but the global connection cap is per client address, and none applies to a client whose address is
/// the one it reached the node at: that is this host itself (the user's own page and scripts, which may act as the
/// user anyway, and the other nodes run beside this one). See docs/SECURITY.md.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    limits: ServerLimits,
) {
    let limiter = Arc::new(RateLimiter::new(limits.rate_limit));
    serve_sharing(listener, app, shutdown, limits, limiter).await
}

/// [`serve`] with a rate limiter shared with another way in to the same router (the tracker's sessions), so a
/// client address has one budget however it asks.
pub(crate) async fn serve_sharing(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    limits: ServerLimits,
    limiter: Arc<RateLimiter>,
) {
    let app = with_limits(app, limits.request_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_client = ClientConnections::new(limits.max_connections_per_client);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    let mut connections = JoinSet::new();
    let mut accept_failures = AcceptFailures::default();

    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = shutdown.cancelled() => break,
        };
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning, and say so once per run
                    // of failures rather than once per failure.
                    let pause = accept_failures.failed(&e);
                    drop(permit);
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        accept_failures.accepted();
        while connections.try_join_next().is_some() {}
        let accepted = Instant::now();
        let _ = stream.set_nodelay(true);
        let client = remote.ip().to_canonical();
        let this_host = stream
            .local_addr()
            .is_ok_and(|local| local.ip().to_canonical() == client);
        let slot = if this_host {
            None
        } else {
            match per_client.admit(client) {
                Some(slot) => Some(slot),
                None => {
                    refuse_connection(&stream, limits.max_connections_per_client);
                    continue;
                }
            }
        };
        let conn = Connection {
            remote,
            app: app.clone(),
            builder: builder.clone(),
            limiter: (!this_host).then(|| limiter.clone()),
            limits: limits.clone(),
            stopping: shutdown.clone(),
            accepted,
        };
        connections.spawn(async move {
            let _held = (permit, slot);
            conn.serve(stream).await;
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!("drain timeout; cutting open connections");
    }
    connections.abort_all();
}

/// Where a request came from, as the handlers see it (a request extension): the client's address, and whether
/// that is this host itself (the address the client reached the node at), which the per-address limits leave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOrigin {
    pub addr: SocketAddr,
    pub this_host: bool,
}

/// First pause after a failed accept; it doubles with each failure in a row, up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause between accepts while they keep failing.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A run of failed accepts (out of file descriptors, mostly): one warning when it starts, one line when it ends.
#[derive(Default)]
struct AcceptFailures {
    count: u64,
    since: Option<Instant>,
    pause: Duration,
}

impl AcceptFailures {
    /// Counts a failure; returns how long to pause before the next accept.
    fn failed(&mut self, e: &io::Error) -> Duration {
        self.count += 1;
        if self.since.is_none() {
            self.since = Some(Instant::now());
            self.pause = ACCEPT_BACKOFF_MIN;
            tracing::warn!(
                "accept failed: {e}; backing off (up to {ACCEPT_BACKOFF_MAX:?} between tries) until it works again"
            );
        } else {
            self.pause = (self.pause * 2).min(ACCEPT_BACKOFF_MAX);
        }
        self.pause
    }

    /// An accept worked: ends the run of failures, if there was one.
    fn accepted(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::warn!(
                "accepting again after {} failed accept(s) over {:?}",
                self.count,
                since.elapsed()
            );
            self.count = 0;
        }
    }
}

/// One accepted connection and what serving it needs.
struct Connection {
    remote: SocketAddr,
    app: Router,
    builder: auto::Builder<TokioExecutor>,
    /// `None` for a client on this host.
    limiter: Option<Arc<RateLimiter>>,
    limits: ServerLimits,
    stopping: CancellationToken,
    accepted: Instant,
}

impl Connection {
    /// Serves requests until the client closes, the connection has been idle for
    /// [`ServerLimits::idle_timeout`] (counted from the accept, so a client that never completes its first
    /// request is cut at that deadline whatever stage it stalls in), or the server stops.
    async fn serve(self, stream: TcpStream) {
        let Connection {
            remote,
            app,
            builder,
            limiter,
            limits,
            stopping,
            accepted,
        } = self;
        let Some(stream) = screen(stream, limits.idle_timeout).await else {
            return;
        };
        let activity = Activity::since(accepted);
        let requests = activity.clone();
        let per_second = limits.rate_limit.per_second;
        let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            let busy = requests.begin();
            let verdict = match &limiter {
                Some(l) => l.check(remote.ip().to_canonical(), std::time::Instant::now()),
                None => Ok(()),
            };
            req.extensions_mut().insert(ConnectInfo(remote));
            req.extensions_mut().insert(ClientOrigin {
                addr: remote,
                this_host: limiter.is_none(),
            });
            let app = app.clone();
            async move {
                let resp = match verdict {
                    Ok(()) => app.oneshot(req.map(axum::body::Body::new)).await?,
                    Err(throttled) => {
                        if throttled.first {
                            tracing::warn!(client = %remote.ip(), "more than {per_second} requests a second; refusing with 429 until it slows down");
                        }
                        rate_limited(remote, per_second, throttled.wait)
                    }
                };
                Ok::<_, std::convert::Infallible>(resp.map(|body| Tracked { body, _busy: busy }))
            }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let mut conn = std::pin::pin!(conn);
        let grace = tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::trace!(%remote, "connection ended: {e}");
                }
                return;
            }
            _ = activity.idle_for(limits.idle_timeout) => {
                tracing::trace!(%remote, "idle for {:?}; closing", limits.idle_timeout);
                CLOSE_GRACE
            }
            _ = stopping.cancelled() => limits.drain_timeout,
        };
        conn.as_mut().graceful_shutdown();
        // A connection still reading its first bytes notices only at its next read: give it a moment, then cut.
        let _ = tokio::time::timeout(grace, conn).await;
    }
}

/// A response body that keeps its request counted as in flight until it has been sent (or dropped): a stream of
/// events is a request in flight for as long as it is open.
struct Tracked {
    body: axum::body::Body,
    _busy: Busy,
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// 429 `rate_limited`, with `Retry-After` in whole seconds (at least 1).
pub(crate) fn rate_limited(remote: SocketAddr, per_second: u32, wait: Duration) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut resp = ApiError::of(
        ErrorCode::RateLimited,
        format!(
            "more than {per_second} requests a second from {}; try again in {secs} s",
            remote.ip()
        ),
    )
    .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

/// Answers a connection over its client's cap with 429 `too_many_connections` (written without waiting: a fresh
/// socket's buffer takes it) and closes it.
fn refuse_connection(stream: &TcpStream, cap: usize) {
    let body = error_json(
        ErrorCode::TooManyConnections,
        format!(
            "your address has {cap} connections open to this node already; close some or reuse them (keep-alive)"
        ),
    );
    let reply = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(reply.as_bytes());
}

/// The documented error body, for the answers written on a raw socket before HTTP is spoken.
fn error_json(code: ErrorCode, message: String) -> String {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.as_str().to_string(),
            message,
        },
    };
    serde_json::to_string(&body).expect("an error body serializes")
}

/// Looks at the first byte of a new connection. Bytes that cannot begin an HTTP request (a method is upper-case
/// letters; HTTP/2 starts with `PRI`) are answered with the same JSON 400 as every other refusal, since the HTTP
/// layer would send a bare 400 with no body. `None` means the connection was answered or gave up.
async fn screen(stream: TcpStream, wait: Duration) -> Option<TcpStream> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(wait, stream.peek(&mut first)).await {
        Ok(Ok(1)) if may_begin_http(first[0]) => Some(stream),
        Ok(Ok(1)) => {
            let body = error_json(
                ErrorCode::NotHttp,
                "this port speaks HTTP/1.1 (see docs/PROTOCOL.md)".into(),
            );
            let reply = format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let mut stream = stream;
            let _ = tokio::time::timeout(wait, stream.write_all(reply.as_bytes())).await;
            let _ = stream.shutdown().await;
            None
        }
        _ => None,
    }
}

/// Whether a connection's first byte can begin a request: a method is upper-case letters, and HTTP/2's preface
/// begins with `PRI`.
fn may_begin_http(first: u8) -> bool {
    first.is_ascii_uppercase()
}

async fn deadline(req: Request, next: Next, limit: Duration) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::of(
            ErrorCode::Timeout,
            format!("the request was not completed within {} s", limit.as_secs()),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_first_byte_but_an_upper_case_letter_is_not_http() {
        // One byte has 256 values: all of them, rather than a fuzz target.
        let passed: Vec<u8> = (0..=255u8).filter(|b| may_begin_http(*b)).collect();
        assert_eq!(passed, (b'A'..=b'Z').collect::<Vec<u8>>());
        for method in [
            "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "PRI",
        ] {
            assert!(may_begin_http(method.as_bytes()[0]));
        }
    }
}
