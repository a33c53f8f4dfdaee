//! A tracker and peers started in this process, for tests that only check what a request is answered (input
//! validation): no `hchat` process to spawn and wait for. A peer's router is called with
//! `tower::ServiceExt::oneshot`, without a socket (axum's `examples/testing`), as if from loopback; the tracker is
//! called over loopback on the port it bound, the one the peers register at.
//!
//! Each node still binds a port (a peer registers where it listens, and the tracker is what peers call), so a test
//! can also send raw bytes to [`InTracker::addr`] or [`InPeer::addr`] where the socket is the point.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use hchat::http::{ClientOrigin, ServerLimits};
use hchat::peer::PeerConfig;
use hchat::peer::events::Event;
use hchat::proto::{ChannelName, PeerName};
use hchat::tracker::{Tracker, TrackerConfig};
use hchat::web::Web;
use tower::ServiceExt;

use super::Signer;

/// How long a printed web chat link logs a browser in (the peer's default).
const LINK_TTL: Duration = Duration::from_secs(600);

/// Where the in-process calls of a test come from: a client on this host.
const CALLER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 50_000);

/// One request as a test makes it.
struct Call<'a> {
    method: &'a str,
    path: &'a str,
    body: Vec<u8>,
    headers: Vec<(&'a str, String)>,
}

/// How a node is called: its router in-process, or its socket.
enum Target {
    Router(axum::Router),
    Socket(SocketAddr),
}

impl Target {
    /// Sends `call`; returns the answer's status, headers and body.
    fn send(&self, rt: &tokio::runtime::Runtime, call: Call<'_>) -> Answer {
        let what = format!("{} {}", call.method, call.path);
        match self {
            Target::Router(app) => {
                let mut req = axum::http::Request::builder()
                    .method(call.method)
                    .uri(call.path)
                    .header("content-type", "application/json");
                for (k, v) in &call.headers {
                    req = req.header(*k, v);
                }
                let mut req = req.body(Body::from(call.body)).expect("a valid request");
                req.extensions_mut().insert(ConnectInfo(CALLER));
                req.extensions_mut().insert(ClientOrigin {
                    addr: CALLER,
                    this_host: true,
                });
                let app =
                    hchat::http::with_limits(app.clone(), ServerLimits::default().request_timeout);
                rt.block_on(async {
                    let resp = app.oneshot(req).await.expect("a router always answers");
                    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
                    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                        .await
                        .expect("the body arrives");
                    (status, headers, body.to_vec())
                })
            }
            Target::Socket(addr) => rt.block_on(async {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .no_proxy()
                    .build()
                    .unwrap();
                let method: reqwest::Method = call.method.parse().unwrap();
                let mut req = client
                    .request(method, format!("http://{addr}{}", call.path))
                    .header("content-type", "application/json")
                    .body(call.body);
                for (k, v) in &call.headers {
                    req = req.header(*k, v);
                }
                let resp = req.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
                let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
                let body = resp.bytes().await.expect("the body arrives").to_vec();
                (status, headers, body)
            }),
        }
    }
}

/// An answer: its status, headers and body.
pub(crate) type Answer = (u16, axum::http::HeaderMap, Vec<u8>);

/// The status and JSON body of an answer (`what` names the request in the failure).
fn json_answer(what: &str, (status, _, bytes): Answer) -> (u16, serde_json::Value) {
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!(
            "{what}: answer is not JSON: {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, json)
}

/// What both kinds of node offer a test: requests and their JSON answers.
pub(crate) struct Endpoint {
    target: Target,
    rt: Arc<tokio::runtime::Runtime>,
}

impl Endpoint {
    /// POSTs a raw body; returns status and JSON answer.
    pub(crate) fn post_raw(
        &self,
        path: &str,
        body: impl Into<Vec<u8>>,
    ) -> (u16, serde_json::Value) {
        self.call("POST", path, body.into(), vec![])
    }

    /// POSTs JSON; returns status and JSON answer.
    pub(crate) fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.post_raw(path, body.to_string())
    }

    /// POSTs JSON signed (`Hchat-Auth`) as `signer`.
    pub(crate) fn post_as(
        &self,
        signer: &Signer,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let body = body.to_string().into_bytes();
        let auth = signer.auth("POST", &format!("http://in-process{path}"), &body);
        self.call("POST", path, body, vec![("hchat-auth", auth)])
    }

    /// POSTs a body with a given `Hchat-Auth` value (a malformed one, or one replayed); returns status and JSON
    /// answer.
    pub(crate) fn post_with_auth(
        &self,
        path: &str,
        auth: &str,
        body: impl Into<Vec<u8>>,
    ) -> (u16, serde_json::Value) {
        self.call(
            "POST",
            path,
            body.into(),
            vec![("hchat-auth", auth.to_string())],
        )
    }

    /// GETs `path`; returns status and JSON answer.
    pub(crate) fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.call("GET", path, Vec::new(), vec![])
    }

    /// GETs `path` with extra request headers; returns status, headers and body, whatever the body is.
    pub(crate) fn get_raw(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let headers = headers.iter().map(|(k, v)| (*k, v.to_string())).collect();
        self.send("GET", path, Vec::new(), headers)
    }

    /// GETs `path`, asserting the status; returns the JSON answer.
    pub(crate) fn get_json(&self, path: &str, status: u16) -> serde_json::Value {
        let (got, body) = self.get(path);
        assert_eq!(got, status, "GET {path}: {body}");
        body
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        headers: Vec<(&str, String)>,
    ) -> (u16, serde_json::Value) {
        json_answer(
            &format!("{method} {path}"),
            self.send(method, path, body, headers),
        )
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        headers: Vec<(&str, String)>,
    ) -> Answer {
        self.target.send(
            &self.rt,
            Call {
                method,
                path,
                body,
                headers,
            },
        )
    }
}

/// A tracker in this process, keeping nothing on disk.
pub(crate) struct InTracker {
    pub endpoint: Endpoint,
    pub addr: SocketAddr,
    tracker: Option<Tracker>,
    rt: Arc<tokio::runtime::Runtime>,
}

impl InTracker {
    pub(crate) fn start() -> InTracker {
        let rt = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime"),
        );
        let tracker = rt
            .block_on(Tracker::start(TrackerConfig::default()))
            .expect("a tracker on 127.0.0.1");
        let addr = tracker.local_addr();
        InTracker {
            // Over loopback for now: the tracker's router cannot yet be had apart from its server. With
            // `Tracker::router_in_memory` this becomes `Target::Router`, and every tracker case runs without a socket.
            endpoint: Endpoint {
                target: Target::Socket(addr),
                rt: rt.clone(),
            },
            addr,
            tracker: Some(tracker),
            rt,
        }
    }

    /// Registers `signer` as `127.0.0.1:port`, asserting it is accepted.
    pub(crate) fn register(&self, signer: &Signer, port: u16) {
        let (status, body) = self
            .endpoint
            .post_json("/submit-info", &signer.registration("127.0.0.1", port));
        assert_eq!(status, 200, "{} registers: {body}", signer.name);
    }

    /// A peer in this process registered with this tracker, keeping nothing on disk, joined to `channels`.
    pub(crate) fn peer(&self, name: &str, channels: &[&str]) -> InPeer {
        let name = PeerName::new(name).expect("a valid test name");
        let web = self
            .rt
            .block_on(hchat::web::start(
                PeerConfig::on_loopback(name, self.addr),
                LINK_TTL,
            ))
            .expect("a peer on 127.0.0.1");
        let node = web.node().clone();
        let shown = Arc::new(Mutex::new(Vec::new()));
        let mut events = node.subscribe();
        let (me, lines) = (node.name().clone(), shown.clone());
        // What the CLI shows of others' messages, line for line (`cli::show`).
        self.rt.spawn(async move {
            while let Ok(e) = events.recv().await {
                match &e.event {
                    Event::Message {
                        message,
                        own: false,
                        ..
                    } => lines.lock().unwrap().push(message.cli_line(&me)),
                    // What came back while it was away, in place.
                    Event::Missed { messages, .. } => lines
                        .lock()
                        .unwrap()
                        .extend(messages.iter().map(|m| m.cli_line(&me))),
                    _ => {}
                }
            }
        });
        for c in channels {
            let channel = ChannelName::new(*c).expect("a valid channel name");
            self.rt
                .block_on(node.join(&channel))
                .unwrap_or_else(|e| panic!("joins #{c}: {e}"));
        }
        InPeer {
            endpoint: Endpoint {
                target: Target::Router(web.router()),
                rt: self.rt.clone(),
            },
            addr: node.local_addr(),
            web,
            shown,
            rt: self.rt.clone(),
        }
    }
}

impl Drop for InTracker {
    fn drop(&mut self) {
        if let Some(t) = self.tracker.take() {
            self.rt.block_on(t.shutdown());
        }
    }
}

/// A peer in this process; its router is called without a socket.
pub(crate) struct InPeer {
    pub endpoint: Endpoint,
    pub addr: SocketAddr,
    web: Web,
    shown: Arc<Mutex<Vec<String>>>,
    rt: Arc<tokio::runtime::Runtime>,
}

impl InPeer {
    /// A fresh link that logs a browser in to the web chat, as the peer prints it at start.
    pub(crate) fn chat_url(&self) -> String {
        self.web.chat_url()
    }

    /// The lines the chat window shows of others' messages, so far.
    pub(crate) fn shown(&self) -> Vec<String> {
        self.shown.lock().unwrap().clone()
    }

    /// Waits until the chat window shows `line`.
    pub(crate) fn wait_shown(&self, line: &str) {
        super::wait_until(&format!("the line {line:?}"), super::SOON, || {
            self.shown().iter().any(|l| l == line)
        });
    }
}

impl Drop for InPeer {
    fn drop(&mut self) {
        self.rt.block_on(self.web.node().shutdown());
    }
}

/// A peer in this process on loopback acting with `id` (so a test knows its key, and it keeps its name across a
/// restart), taking sessions as `quic_port` says.
pub(crate) async fn keyed_node(
    name: &str,
    tracker: &Tracker,
    id: &Arc<hchat::identity::Identity>,
    quic_port: hchat::peer::QuicPort,
) -> hchat::peer::Node {
    hchat::peer::Node::start(PeerConfig {
        identity: Some(id.clone()),
        quic_port,
        ..PeerConfig::on_loopback(PeerName::new(name).unwrap(), tracker.local_addr())
    })
    .await
    .unwrap()
}
