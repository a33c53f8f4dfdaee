//! The benchmark's HTTP/1.1 client: one kept-alive connection per [`HttpConn`], straight on hyper so the client
//! costs as little as possible, and the load generator built on it ([`hammer`], [`spread`]). The same code drives
//! our tracker, our peers' local API and nginx, so a ratio compares servers, not clients.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::{JoinHandle, JoinSet};

use super::{BenchError, Result};
use crate::bench::stats::Throughput;

/// Most requests one load run sends, whatever its duration (every load loop is bounded in count and time).
pub(crate) const MAX_LOAD_REQUESTS: u64 = 50_000_000;
/// How long one request may take before the run is abandoned.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One kept-alive HTTP/1.1 connection. Its driver task ends when the connection is dropped.
pub(crate) struct HttpConn {
    send: http1::SendRequest<Full<Bytes>>,
    host: String,
    driver: JoinHandle<()>,
}

impl Drop for HttpConn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl HttpConn {
    pub(crate) async fn connect(addr: SocketAddr) -> Result<HttpConn> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(BenchError::io(format!("connecting to {addr}")))?;
        let _ = tcp.set_nodelay(true);
        let (send, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| BenchError::Protocol(format!("HTTP handshake with {addr}: {e}")))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(HttpConn {
            send,
            host: addr.to_string(),
            driver,
        })
    }

    /// A request to this connection's server; `body` makes it a JSON POST.
    pub(crate) fn build(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Request<Full<Bytes>> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.host);
        if body.is_some() {
            b = b.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        b.body(Full::new(body.unwrap_or_default()))
            .expect("a request from a valid path and method builds")
    }

    /// Sends a request and waits for its head; the body is left to the caller (a stream stays open).
    pub(crate) async fn open(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<hyper::Response<Incoming>> {
        let what = format!("{} {}", req.method(), req.uri());
        let fut = async {
            self.send
                .ready()
                .await
                .map_err(|e| BenchError::Protocol(format!("{what}: {e}")))?;
            self.send
                .send_request(req)
                .await
                .map_err(|e| BenchError::Protocol(format!("{what}: {e}")))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, fut)
            .await
            .map_err(|_| BenchError::Timeout {
                what,
                secs: REQUEST_TIMEOUT.as_secs(),
            })?
    }

    /// Sends a request and reads the whole answer.
    pub(crate) async fn call(&mut self, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes)> {
        let what = format!("{} {}", req.method(), req.uri());
        let resp = self.open(req).await?;
        let status = resp.status();
        let body = tokio::time::timeout(REQUEST_TIMEOUT, resp.into_body().collect())
            .await
            .map_err(|_| BenchError::Timeout {
                what: what.clone(),
                secs: REQUEST_TIMEOUT.as_secs(),
            })?
            .map_err(|e| BenchError::Protocol(format!("{what}: {e}")))?
            .to_bytes();
        Ok((status, body))
    }

    /// Like [`HttpConn::call`], but anything other than a 2xx is an error that quotes the answer.
    pub(crate) async fn call_ok(&mut self, req: Request<Full<Bytes>>) -> Result<Bytes> {
        let what = format!("{} {}", req.method(), req.uri());
        let (status, body) = self.call(req).await?;
        if !status.is_success() {
            return Err(BenchError::Protocol(format!(
                "{what} answered {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        Ok(body)
    }
}

/// One set-up request: method, path, optional JSON body, optional `Hchat-Auth` header.
pub(crate) type SetUp = (Method, String, Option<Bytes>, Option<String>);

/// Runs `requests` over `connections` kept-alive connections, as fast as the server answers, and fails on the
/// first refusal. Used to set up state (registrations, joins).
pub(crate) async fn spread(
    addr: SocketAddr,
    connections: usize,
    requests: Vec<SetUp>,
) -> Result<()> {
    let connections = connections.clamp(1, requests.len().max(1));
    let mut lanes: Vec<Vec<_>> = (0..connections).map(|_| Vec::new()).collect();
    for (i, r) in requests.into_iter().enumerate() {
        lanes[i % connections].push(r);
    }
    let mut tasks = JoinSet::new();
    for lane in lanes {
        tasks.spawn(async move {
            let mut conn = HttpConn::connect(addr).await?;
            for (method, path, body, auth) in lane {
                let mut req = conn.build(method, &path, body);
                if let Some(auth) = auth {
                    let value = hyper::header::HeaderValue::from_str(&auth).map_err(|e| {
                        BenchError::Setup(format!("an Hchat-Auth header that is not one: {e}"))
                    })?;
                    req.headers_mut()
                        .insert(crate::identity::AUTH_HEADER, value);
                }
                conn.call_ok(req).await?;
            }
            Ok::<_, BenchError>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| BenchError::Setup(format!("a set-up task failed: {e}")))??;
    }
    Ok(())
}

/// The load generator: `connections` kept-alive connections, each sending request after request (request `k` of
/// connection `c` is `make(c, k)`) for `duration`, and the answers per second over the whole.
pub(crate) async fn hammer<F>(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    make: F,
) -> Result<Throughput>
where
    F: Fn(usize, u64) -> (Method, String, Option<Bytes>) + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let body_bytes = Arc::new(AtomicU64::new(0));
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(HttpConn::connect(addr).await?);
    }
    let start = Instant::now();
    let end = start + duration;
    let mut tasks = JoinSet::new();
    for (c, mut conn) in conns.into_iter().enumerate() {
        let (make, ok, errors, body_bytes) =
            (make.clone(), ok.clone(), errors.clone(), body_bytes.clone());
        tasks.spawn(async move {
            let mut k = 0u64;
            while Instant::now() < end && ok.load(Ordering::Relaxed) < MAX_LOAD_REQUESTS {
                let (method, path, body) = make(c, k);
                let req = conn.build(method, &path, body);
                let (status, body) = conn.call(req).await?;
                if status.is_success() {
                    ok.fetch_add(1, Ordering::Relaxed);
                    body_bytes.store(body.len() as u64, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                k += 1;
            }
            Ok::<_, BenchError>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| BenchError::Setup(format!("a load task failed: {e}")))??;
    }
    let secs = start.elapsed().as_secs_f64();
    let requests = ok.load(Ordering::Relaxed);
    Ok(Throughput {
        requests_per_s: requests as f64 / secs,
        requests,
        errors: errors.load(Ordering::Relaxed),
        connections,
        secs,
        body_bytes: body_bytes.load(Ordering::Relaxed) as usize,
    })
}
