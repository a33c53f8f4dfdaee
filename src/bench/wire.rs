//! The clients a user would run, one pair per system: an [`Outbox`] (what the sending user's client does) and an
//! [`Inbox`] (what the receiving user's client reads). For hchat these are the node's local API (`POST /api/send`)
//! and its event stream (`GET /api/events`, the stream the web page reads); for the anchors, an IRC or MQTT
//! connection. [`collect`] timestamps every message an inbox yields on the one [`clock`](super::clock).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;
use hyper::body::Incoming;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::anchors::mosquitto::MqttClient;
use super::anchors::ngircd::IrcClient;
use super::clock::{now_ns, parse_stamp, stamp};
use super::http::HttpConn;
use super::{BenchError, Result};

/// Messages a sending client may have queued for its connections before the sender waits.
const API_QUEUE: usize = 256;
/// Longest SSE event the client accepts.
const MAX_EVENT_BYTES: usize = 256 * 1024;

/// The sending user's client.
pub(crate) enum Outbox {
    /// `POST /api/send` over `connections` kept-alive connections to the sending node, each sending one message
    /// at a time (the API answers once the message is delivered, so more than one connection keeps the pace).
    Api {
        /// Taken (closed) by [`Outbox::finish`].
        queue: Option<mpsc::Sender<u64>>,
        workers: JoinSet<Result<()>>,
    },
    Irc {
        client: IrcClient,
        target: String,
    },
    Mqtt {
        client: MqttClient,
        topic: String,
    },
}

impl Outbox {
    /// A client of the node at `node` that sends every message to `dest` (`{"to":..}` or `{"channel":..}`).
    pub(crate) async fn api(
        node: SocketAddr,
        dest: serde_json::Value,
        connections: usize,
    ) -> Result<Outbox> {
        let (queue, rx) = mpsc::channel::<u64>(API_QUEUE);
        let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
        let mut workers = JoinSet::new();
        for _ in 0..connections.max(1) {
            let mut conn = HttpConn::connect(node).await?;
            let (rx, dest) = (rx.clone(), dest.clone());
            workers.spawn(async move {
                loop {
                    let Some(seq) = rx.lock().await.recv().await else {
                        return Ok(());
                    };
                    let mut body = dest.clone();
                    body["text"] = stamp(seq).into();
                    let req = conn.build(
                        Method::POST,
                        "/api/send",
                        Some(Bytes::from(body.to_string())),
                    );
                    let answer = conn.call_ok(req).await?;
                    let report: SendAnswer = serde_json::from_slice(&answer).map_err(|e| {
                        BenchError::Protocol(format!("POST /api/send answered something else: {e}"))
                    })?;
                    if !report.failed.is_empty() {
                        return Err(BenchError::Protocol(format!(
                            "message {seq} was not delivered to {} recipient(s): {}",
                            report.failed.len(),
                            report.failed[0]
                        )));
                    }
                }
            });
        }
        Ok(Outbox::Api {
            queue: Some(queue),
            workers,
        })
    }

    /// Sends message `seq`, stamped with the clock as it leaves. With `flush` false an IRC or MQTT client may hold
    /// it in its buffer (a burst); [`Outbox::finish`] sends the rest.
    pub(crate) async fn send(&mut self, seq: u64, flush: bool) -> Result<()> {
        match self {
            Outbox::Api { queue, .. } => match queue {
                Some(q) => q
                    .send(seq)
                    .await
                    .map_err(|_| BenchError::Protocol("every API sender stopped".into())),
                None => Err(BenchError::Protocol("sending after finish".into())),
            },
            Outbox::Irc { client, target } => {
                client.privmsg(target, &stamp(seq)).await?;
                if flush { client.flush().await } else { Ok(()) }
            }
            Outbox::Mqtt { client, topic } => {
                client.publish(topic, stamp(seq).as_bytes()).await?;
                if flush { client.flush().await } else { Ok(()) }
            }
        }
    }

    /// Sends whatever is still queued and waits until the sending client is done. The connection stays open
    /// until the outbox is dropped: a server may drop what it has read but not yet relayed when its sender goes.
    pub(crate) async fn finish(&mut self) -> Result<()> {
        match self {
            Outbox::Api { queue, workers } => {
                queue.take();
                while let Some(r) = workers.join_next().await {
                    r.map_err(|e| BenchError::Setup(format!("an API sender failed: {e}")))??;
                }
                Ok(())
            }
            Outbox::Irc { client, .. } => client.flush().await,
            Outbox::Mqtt { client, .. } => client.flush().await,
        }
    }
}

#[derive(Deserialize)]
struct SendAnswer {
    #[serde(default)]
    failed: Vec<serde_json::Value>,
}

/// The receiving user's client.
pub(crate) enum Inbox {
    /// The node's Server-Sent Events stream, as the web page reads it.
    Events {
        _conn: HttpConn,
        body: Incoming,
        buf: Vec<u8>,
    },
    Irc(IrcClient),
    Mqtt(MqttClient),
}

/// Where hchat's receiving clients read messages from, as the report says it.
pub(crate) const FROM_EVENTS: &str =
    "event stream (GET /api/events, Server-Sent Events), as the web page does";

#[derive(Deserialize)]
struct StreamEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    own: bool,
    message: Option<StreamMessage>,
}

#[derive(Deserialize)]
struct StreamMessage {
    text: String,
}

impl Inbox {
    /// Opens the event stream of the node at `node` (from loopback, which needs no token).
    pub(crate) async fn events(node: SocketAddr) -> Result<Inbox> {
        let mut conn = HttpConn::connect(node).await?;
        let mut req = conn.build(Method::GET, "/api/events", None);
        req.headers_mut().insert(
            hyper::header::ACCEPT,
            hyper::header::HeaderValue::from_static("text/event-stream"),
        );
        let resp = conn.open(req).await?;
        if !resp.status().is_success() {
            return Err(BenchError::Protocol(format!(
                "GET /api/events answered {}",
                resp.status()
            )));
        }
        Ok(Inbox::Events {
            _conn: conn,
            body: resp.into_body(),
            buf: Vec::new(),
        })
    }

    /// The text of the next message from someone else; `None` when the stream ended.
    pub(crate) async fn next_text(&mut self) -> Result<Option<String>> {
        match self {
            Inbox::Events { body, buf, .. } => loop {
                if let Some(text) = next_sse_message(buf)? {
                    return Ok(Some(text));
                }
                match body.frame().await {
                    None => return Ok(None),
                    Some(Err(e)) => {
                        return Err(BenchError::Protocol(format!("the event stream broke: {e}")));
                    }
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            buf.extend_from_slice(&data);
                        }
                        if buf.len() > MAX_EVENT_BYTES {
                            return Err(BenchError::Protocol(
                                "an event on the stream is too long".into(),
                            ));
                        }
                    }
                }
            },
            Inbox::Irc(c) => c.next_privmsg().await,
            Inbox::Mqtt(c) => c.next_publish().await,
        }
    }
}

/// Takes complete events off the front of `buf` until one is a message from someone else; returns its text.
fn next_sse_message(buf: &mut Vec<u8>) -> Result<Option<String>> {
    loop {
        let Some(end) = buf.windows(2).position(|w| w == b"\n\n") else {
            return Ok(None);
        };
        let event: Vec<u8> = buf.drain(..end + 2).collect();
        let event = String::from_utf8_lossy(&event);
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if data.is_empty() {
            continue;
        }
        let parsed: StreamEvent = serde_json::from_str(&data.join("\n")).map_err(|e| {
            BenchError::Protocol(format!("an event on the stream is not JSON: {e}"))
        })?;
        if let (true, false, Some(m)) = (parsed.kind == "message", parsed.own, parsed.message) {
            return Ok(Some(m.text));
        }
    }
}

/// One message as a receiver saw it: its sequence number, and the clock when it was sent and when it arrived.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub seq: u64,
    pub sent_ns: u64,
    pub recv_ns: u64,
}

/// Reads `inbox` until `expect` stamped messages have arrived, the stream ends, or `deadline` passes; `seen`
/// counts arrivals as they happen (for progress, and to know when a warm-up has gone through).
pub(crate) async fn collect(
    mut inbox: Inbox,
    expect: usize,
    deadline: Duration,
    seen: Arc<AtomicUsize>,
) -> Result<Vec<Sample>> {
    let mut got = Vec::with_capacity(expect);
    let reading = async {
        while got.len() < expect {
            let Some(text) = inbox.next_text().await? else {
                break;
            };
            let recv_ns = now_ns();
            if let Some((seq, sent_ns)) = parse_stamp(&text) {
                got.push(Sample {
                    seq,
                    sent_ns,
                    recv_ns,
                });
                seen.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok::<_, BenchError>(())
    };
    // At the deadline, what arrived in time is the result; the caller reports what is missing.
    if let Ok(r) = tokio::time::timeout(deadline, reading).await {
        r?;
    }
    Ok(got)
}

/// Waits until `seen` reaches `target` (the warm-up went through), or fails after `deadline`.
pub(crate) async fn wait_seen(
    seen: &AtomicUsize,
    target: usize,
    deadline: Duration,
    what: &str,
) -> Result<()> {
    let end = std::time::Instant::now() + deadline;
    while seen.load(Ordering::Relaxed) < target {
        if std::time::Instant::now() > end {
            return Err(BenchError::Timeout {
                what: format!(
                    "{what} ({} of {target} arrived)",
                    seen.load(Ordering::Relaxed)
                ),
                secs: deadline.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_parser_keeps_only_messages_from_others() {
        let mut buf = b"id: 1\ndata: {\"type\":\"joined\",\"channel\":\"g\"}\n\n\
            : keep-alive\n\n\
            id: 2\ndata: {\"type\":\"message\",\"message\":{\"text\":\"mine\"},\"own\":true}\n\n\
            id: 3\ndata: {\"type\":\"message\",\"message\":{\"id\":\"x\",\"text\":\"7 99 pad\"},\"own\":false}\n\n\
            id: 4\ndata: {\"type\""
            .to_vec();
        assert_eq!(
            next_sse_message(&mut buf).unwrap().as_deref(),
            Some("7 99 pad")
        );
        assert_eq!(next_sse_message(&mut buf).unwrap(), None);
        assert!(
            buf.starts_with(b"id: 4"),
            "an incomplete event waits for more bytes"
        );
    }
}
