//! The accept loop every node runs: a capped number of connections, HTTP/1.1 keep-alive (and HTTP/2 for clients
//! that ask for it), a deadline on reading headers and on each request, and a graceful stop.
//!
//! It is written against hyper directly rather than `axum::serve` because the latter exposes neither the header
//! read timeout nor a connection cap, and a slow or idle client must not be able to hold a node.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::ApiError;
use crate::proto::MAX_BODY_BYTES;

/// The limits of one server; [`Default`] is what the binaries use.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Connections served at once; further clients wait in the kernel's backlog.
    pub max_connections: usize,
    /// A client must send a request's headers within this long.
    pub header_timeout: Duration,
    /// A request (reading its body included) must be answered within this long.
    pub request_timeout: Duration,
    /// How long a stop waits for open requests before cutting them.
    pub drain_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(3),
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
/// instead and logs one warning, as CONTRACT.md asks (LAN setups behind port forwarding rely on it).
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

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets open requests finish for
/// [`ServerLimits::drain_timeout`]. Handlers see the client's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    limits: ServerLimits,
) {
    let request_timeout = limits.request_timeout;
    let app = app
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| deadline(req, next, request_timeout),
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
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

    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = shutdown.cancelled() => break,
        };
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let wait = limits.header_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let Some(stream) = screen(stream, wait).await else {
                return;
            };
            let service =
                hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(remote));
                    app.clone().oneshot(req.map(axum::body::Body::new))
                });
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::trace!(%remote, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.drain_timeout) => tracing::debug!("drain timeout; cutting open connections"),
    }
}

/// Looks at the first byte of a new connection. Bytes that cannot begin an HTTP request (a method is upper-case
/// letters; HTTP/2 starts with `PRI`) are answered with the same JSON 400 as every other refusal, since the HTTP
/// layer would send a bare 400 with no body. `None` means the connection was answered or gave up.
async fn screen(stream: TcpStream, wait: Duration) -> Option<TcpStream> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(wait, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0].is_ascii_uppercase() => Some(stream),
        Ok(Ok(1)) => {
            let body = r#"{"error":{"code":"not_http","message":"this port speaks HTTP/1.1 (see docs/PROTOCOL.md)"}}"#;
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

async fn deadline(req: Request, next: Next, limit: Duration) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!("the request was not completed within {} s", limit.as_secs()),
        )
        .into_response(),
    }
}
