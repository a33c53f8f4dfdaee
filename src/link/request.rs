//! Requests and pushes over a session (docs/SESSIONS.md, sections 10 and 11): how a peer talks to its tracker.
//!
//! - **Request streams.** The dialler opens a bidirectional stream, writes one REQUEST frame (method, path, the
//!   headers that matter, the start of the body) and BODY frames for the rest of the body, and finishes its side.
//!   The listener's [`Service`] answers with one RESPONSE frame (status, headers, start of the body), BODY frames
//!   for the rest, and finishes. One request per stream: QUIC's stream limit ([`super::MAX_STREAMS`]) is the
//!   bound on requests in flight per session, and a slow answer holds up nothing else.
//! - **Push streams.** The dialler opens a stream with one SUBSCRIBE frame; the service answers with PUSH frames
//!   for as long as both want (or one ERROR frame if it refuses). The service decides what is pushed and bounds
//!   what it queues per subscriber.
//!
//! The first frame of a stream decides its kind; message streams (`session`) are untouched by this module.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::STREAM_CLOSED_FRAME_TOO_LARGE;
use super::frame::{self, ErrorBody, HEADER_LEN, MAX_PAYLOAD, TYPE_ERROR, TooLarge};
use crate::identity::PublicKey;
use crate::proto::ErrorCode;

/// A request: its head, then the body's first bytes (docs/SESSIONS.md, 10).
pub const TYPE_REQUEST: u8 = 0x10;
/// An answer: status, head, then the body's first bytes.
pub const TYPE_RESPONSE: u8 = 0x11;
/// More body bytes of the request or answer before it on the same stream.
pub const TYPE_BODY: u8 = 0x12;
/// Opens a push stream.
pub const TYPE_SUBSCRIBE: u8 = 0x13;
/// One pushed item (UTF-8 JSON, defined by the service).
pub const TYPE_PUSH: u8 = 0x14;

/// The largest request body a listener takes (the HTTP API's limit); more is refused with `frame_too_large`.
pub const MAX_REQUEST_BODY: usize = crate::proto::MAX_BODY_BYTES;
/// The largest answer body a dialler takes (a big `/peers` list fits many times over); more ends the request.
pub const MAX_RESPONSE_BODY: usize = 32 * 1024 * 1024;
/// A dialler gives up on an answer after this long; a listener gives up on reading a request after it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a head (method, path, headers) may be.
pub const MAX_HEAD: usize = 8 * 1024;

/// A request as the service sees it. Header names are lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Path and query, as in HTTP (`/get-list?channel=x`).
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// An answer. Header names are lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// Who is asking, from the handshake and the connection (never from the request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The key the dialler proved.
    pub key: PublicKey,
    /// The dialler's UDP address.
    pub addr: SocketAddr,
    /// The address the dialler reached us at, when the platform says.
    pub local_ip: Option<IpAddr>,
}

/// What a listener does with request and push streams. An endpoint without one refuses them
/// (`unknown_frame_type`).
pub trait Service: Send + Sync + 'static {
    fn request(&self, caller: Caller, req: Request) -> BoxFuture<'_, Response>;
    /// A subscription with this SUBSCRIBE payload: the items to push (each one PUSH frame) until the receiver
    /// ends, or a refusal (sent as an ERROR frame).
    fn subscribe(
        &self,
        caller: Caller,
        payload: Vec<u8>,
    ) -> BoxFuture<'_, Result<mpsc::Receiver<Vec<u8>>, ErrorBody>>;
}

/// Why a request or subscription over a session got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RequestError {
    #[error("the request cannot be sent: {0}")]
    TooLarge(#[from] TooLarge),
    /// The listener answered with an ERROR frame.
    #[error("refused on the session: {} ({})", .0.code, .0.message)]
    Refused(ErrorBody),
    #[error("the session ended before the answer")]
    Lost,
    #[error("no answer within {REQUEST_TIMEOUT:?}")]
    Timeout,
    #[error("an answer that does not parse: {0}")]
    BadAnswer(String),
}

#[derive(Serialize, Deserialize)]
struct RequestHead {
    method: String,
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Default)]
struct ResponseHead {
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// A whole frame, unparsed: bytes used (header included), type, payload.
pub(crate) type RawFrame<'a> = (usize, u8, &'a [u8]);

/// The frame at the front of `buf`, or `None` if not whole yet.
pub(crate) fn split(buf: &[u8]) -> Result<Option<RawFrame<'_>>, TooLarge> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    if len > MAX_PAYLOAD {
        return Err(TooLarge(len));
    }
    Ok(buf
        .get(HEADER_LEN..HEADER_LEN + len)
        .map(|p| (HEADER_LEN + len, header[4], p)))
}

/// Appends a first frame (`prefix` + as much of `body` as fits) and BODY frames for the rest.
fn encode_with_body(
    kind: u8,
    prefix: &[u8],
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), TooLarge> {
    if prefix.len() > MAX_PAYLOAD {
        return Err(TooLarge(prefix.len()));
    }
    let first = body.len().min(MAX_PAYLOAD - prefix.len());
    let mut payload = Vec::with_capacity(prefix.len() + first);
    payload.extend_from_slice(prefix);
    payload.extend_from_slice(&body[..first]);
    frame::encode_raw(kind, &payload, out)?;
    for chunk in body[first..].chunks(MAX_PAYLOAD) {
        frame::encode_raw(TYPE_BODY, chunk, out)?;
    }
    Ok(())
}

fn with_head_len(lead: &[u8], head: &[u8]) -> Result<Vec<u8>, TooLarge> {
    if head.len() > MAX_HEAD {
        return Err(TooLarge(head.len()));
    }
    let mut p = lead.to_vec();
    p.extend_from_slice(&(head.len() as u16).to_be_bytes());
    p.extend_from_slice(head);
    Ok(p)
}

/// Appends a request's frames.
pub fn encode_request(req: &Request, out: &mut Vec<u8>) -> Result<(), TooLarge> {
    let head = serde_json::to_vec(&RequestHead {
        method: req.method.clone(),
        path: req.path.clone(),
        headers: req.headers.clone(),
    })
    .expect("serializes");
    encode_with_body(TYPE_REQUEST, &with_head_len(&[], &head)?, &req.body, out)
}

/// Appends an answer's frames.
pub fn encode_response(resp: &Response, out: &mut Vec<u8>) -> Result<(), TooLarge> {
    let head = serde_json::to_vec(&ResponseHead {
        headers: resp.headers.clone(),
    })
    .expect("serializes");
    let prefix = with_head_len(&resp.status.to_be_bytes(), &head)?;
    encode_with_body(TYPE_RESPONSE, &prefix, &resp.body, out)
}

/// `head_len:u16 | head | rest` → (head, rest).
fn take_head(p: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u16::from_be_bytes(p.get(..2)?.try_into().ok()?) as usize;
    Some((p.get(2..2 + len)?, &p[2 + len..]))
}

fn bad(what: &str) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::BadFrame,
        format!("a {what} frame that does not parse"),
    )
}

/// Reads whole frames from `recv` (after `buf`) into `out` until the stream ends, or more than `limit` payload
/// bytes have come (`Err(TooLarge)`), or a frame's length is over the limit.
async fn read_all(
    recv: &mut quinn::RecvStream,
    buf: &mut Vec<u8>,
    limit: usize,
    out: &mut Vec<(u8, Vec<u8>)>,
) -> Result<bool, TooLarge> {
    let mut total = 0;
    loop {
        while let Some((n, kind, payload)) = split(buf)? {
            total += payload.len();
            if total > limit {
                return Err(TooLarge(total));
            }
            out.push((kind, payload.to_vec()));
            buf.drain(..n);
        }
        match recv.read_chunk(usize::MAX, true).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
            Ok(None) => return Ok(buf.is_empty()),
            Err(_) => return Ok(false),
        }
    }
}

/// Serves a request stream whose first bytes (`buf`, at least a frame header, of type REQUEST) were read already.
pub(super) async fn serve_request(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    mut buf: Vec<u8>,
    caller: Caller,
    service: &dyn Service,
) {
    let mut frames = Vec::new();
    let limit = MAX_REQUEST_BODY + MAX_HEAD + 2;
    let read = tokio::time::timeout(
        REQUEST_TIMEOUT,
        read_all(&mut recv, &mut buf, limit, &mut frames),
    )
    .await;
    let refuse = |e: ErrorBody| {
        let mut out = Vec::new();
        frame::encode_error(&e, &mut out);
        out
    };
    let req = match read {
        Err(_) => return, // a stalled request: drop the stream
        Ok(Err(TooLarge(n))) => {
            let out = refuse(ErrorBody::new(
                ErrorCode::FrameTooLarge,
                format!(
                    "a request of more than {n} bytes; the body limit is {MAX_REQUEST_BODY} bytes"
                ),
            ));
            let _ = send.write_all(&out).await;
            let _ = send.finish();
            let _ = recv.stop(STREAM_CLOSED_FRAME_TOO_LARGE);
            return;
        }
        Ok(Ok(false)) => return, // ended mid-frame or reset: nobody to answer
        Ok(Ok(true)) => parse_request(frames),
    };
    let out = match req {
        Err(e) => refuse(e),
        Ok(req) => {
            let resp = service.request(caller, req).await;
            let mut out = Vec::new();
            if let Err(e) = encode_response(&resp, &mut out) {
                refuse(ErrorBody::new(ErrorCode::Internal, e.to_string()))
            } else {
                out
            }
        }
    };
    let _ = send.write_all(&out).await;
    let _ = send.finish();
}

pub(crate) fn parse_request(frames: Vec<(u8, Vec<u8>)>) -> Result<Request, ErrorBody> {
    let mut frames = frames.into_iter();
    let (_, first) = frames.next().ok_or_else(|| bad("REQUEST"))?;
    let (head, start) = take_head(&first).ok_or_else(|| bad("REQUEST"))?;
    if head.len() > MAX_HEAD {
        return Err(ErrorBody::new(
            ErrorCode::FrameTooLarge,
            format!(
                "a request head of {} bytes; the limit is {MAX_HEAD} bytes",
                head.len()
            ),
        ));
    }
    let head: RequestHead = serde_json::from_slice(head).map_err(|_| bad("REQUEST"))?;
    let mut body = start.to_vec();
    for (kind, p) in frames {
        if kind != TYPE_BODY {
            return Err(ErrorBody::new(
                ErrorCode::UnknownFrameType,
                format!("frame type 0x{kind:02x} after a REQUEST; only BODY frames may follow it"),
            ));
        }
        body.extend_from_slice(&p);
    }
    Ok(Request {
        method: head.method,
        path: head.path,
        headers: head
            .headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
        body,
    })
}

/// Serves a push stream whose first bytes (`buf`, of type SUBSCRIBE) were read already.
pub(super) async fn serve_subscription(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    mut buf: Vec<u8>,
    caller: Caller,
    service: &dyn Service,
) {
    // The SUBSCRIBE frame itself; nothing is read after it (the stream's only other use is to be closed).
    let payload = loop {
        match split(&buf) {
            Ok(Some((_, _, p))) => break p.to_vec(),
            Ok(None) => {}
            Err(_) => return,
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, recv.read_chunk(usize::MAX, true)).await {
            Ok(Ok(Some(chunk))) => buf.extend_from_slice(&chunk.bytes),
            _ => return,
        }
    };
    let mut items = match service.subscribe(caller, payload).await {
        Ok(rx) => rx,
        Err(e) => {
            let mut out = Vec::new();
            frame::encode_error(&e, &mut out);
            let _ = send.write_all(&out).await;
            let _ = send.finish();
            return;
        }
    };
    let mut out = Vec::new();
    loop {
        tokio::select! {
            item = items.recv() => {
                let Some(item) = item else { break };
                out.clear();
                if frame::encode_raw(TYPE_PUSH, &item, &mut out).is_err() {
                    tracing::warn!("a push item of {} bytes does not fit a frame; skipped", item.len());
                    continue;
                }
                // Whatever else is ready goes in the same write.
                while let Ok(more) = items.try_recv() {
                    let _ = frame::encode_raw(TYPE_PUSH, &more, &mut out);
                }
                if send.write_all(&out).await.is_err() {
                    return;
                }
            }
            // The subscriber finished or reset its side: it wants no more.
            r = recv.read_chunk(usize::MAX, true) => match r {
                Ok(Some(_)) => {}
                _ => break,
            },
        }
    }
    let _ = send.finish();
}

impl super::Link {
    /// Sends `req` on a new stream and waits (at most [`REQUEST_TIMEOUT`]) for the answer.
    pub async fn request(&self, req: &Request) -> Result<Response, RequestError> {
        let mut out = Vec::new();
        encode_request(req, &mut out)?;
        self.touch();
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            let (mut send, mut recv) = self.conn.open_bi().await.map_err(|_| RequestError::Lost)?;
            // A write cut short (the listener stopped reading a request too large) still has its answer to read.
            if send.write_all(&out).await.is_ok() {
                let _ = send.finish();
            }
            let mut frames = Vec::new();
            let mut buf = Vec::new();
            match read_all(
                &mut recv,
                &mut buf,
                MAX_RESPONSE_BODY + MAX_HEAD + 4,
                &mut frames,
            )
            .await
            {
                Err(_) => Err(RequestError::BadAnswer(
                    "an answer over the size limit".into(),
                )),
                Ok(true) => parse_response(frames),
                // The stream ended mid-answer: only an ERROR frame is whole on its own.
                Ok(false) => match frames.first() {
                    Some((TYPE_ERROR, _)) => parse_response(frames),
                    _ => Err(RequestError::Lost),
                },
            }
        })
        .await
        .map_err(|_| RequestError::Timeout)?
    }

    /// Opens a push stream with this SUBSCRIBE payload.
    pub async fn subscribe(&self, payload: &[u8]) -> Result<PushStream, RequestError> {
        let mut out = Vec::new();
        frame::encode_raw(TYPE_SUBSCRIBE, payload, &mut out)?;
        self.touch();
        let (mut send, recv) = self.conn.open_bi().await.map_err(|_| RequestError::Lost)?;
        send.write_all(&out).await.map_err(|_| RequestError::Lost)?;
        Ok(PushStream {
            _send: send,
            recv,
            buf: Vec::new(),
        })
    }
}

pub(crate) fn parse_response(frames: Vec<(u8, Vec<u8>)>) -> Result<Response, RequestError> {
    let mut frames = frames.into_iter();
    let Some((kind, first)) = frames.next() else {
        return Err(RequestError::Lost);
    };
    if kind == TYPE_ERROR {
        return Err(match serde_json::from_slice(&first) {
            Ok(e) => RequestError::Refused(e),
            Err(e) => RequestError::BadAnswer(format!("an ERROR frame: {e}")),
        });
    }
    let malformed = || RequestError::BadAnswer("a RESPONSE frame that does not parse".into());
    if kind != TYPE_RESPONSE || first.len() < 2 {
        return Err(malformed());
    }
    let status = u16::from_be_bytes([first[0], first[1]]);
    let (head, start) = take_head(&first[2..]).ok_or_else(malformed)?;
    if head.len() > MAX_HEAD {
        return Err(malformed());
    }
    let head: ResponseHead = serde_json::from_slice(head).map_err(|_| malformed())?;
    let mut body = start.to_vec();
    for (kind, p) in frames {
        if kind != TYPE_BODY {
            return Err(malformed());
        }
        body.extend_from_slice(&p);
    }
    Ok(Response {
        status,
        headers: head.headers,
        body,
    })
}

/// The subscriber's end of a push stream. Dropping it ends the subscription.
pub struct PushStream {
    _send: quinn::SendStream,
    recv: quinn::RecvStream,
    buf: Vec<u8>,
}

impl PushStream {
    /// The next pushed item; `Ok(None)` when the stream ended (the connection closed, or the service stopped).
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, RequestError> {
        loop {
            match split(&self.buf) {
                Err(_) => {
                    return Err(RequestError::BadAnswer(
                        "a frame over the size limit".into(),
                    ));
                }
                Ok(Some((n, kind, payload))) => {
                    let item = payload.to_vec();
                    self.buf.drain(..n);
                    match kind {
                        TYPE_PUSH => return Ok(Some(item)),
                        TYPE_ERROR => {
                            return Err(match serde_json::from_slice(&item) {
                                Ok(e) => RequestError::Refused(e),
                                Err(e) => RequestError::BadAnswer(e.to_string()),
                            });
                        }
                        other => {
                            tracing::debug!("frame type 0x{other:02x} on a push stream, ignored")
                        }
                    }
                    continue;
                }
                Ok(None) => {}
            }
            match self.recv.read_chunk(usize::MAX, true).await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk.bytes),
                Ok(None) | Err(_) => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_and_an_answer_round_trip_big_bodies_included() {
        for size in [
            0usize,
            10,
            MAX_PAYLOAD - 40,
            MAX_PAYLOAD,
            3 * MAX_PAYLOAD + 7,
        ] {
            let req = Request {
                method: "POST".into(),
                path: "/add-list".into(),
                headers: [("hchat-auth".to_string(), "x".to_string())].into(),
                body: vec![b'a'; size],
            };
            let mut out = Vec::new();
            encode_request(&req, &mut out).unwrap();
            let mut frames = Vec::new();
            let mut at = 0;
            while let Some((n, kind, p)) = split(&out[at..]).unwrap() {
                frames.push((kind, p.to_vec()));
                at += n;
            }
            assert_eq!(at, out.len());
            assert_eq!(parse_request(frames).unwrap(), req);
            let resp = Response {
                status: 429,
                headers: [("retry-after".to_string(), "1".to_string())].into(),
                body: vec![b'b'; size],
            };
            let mut out = Vec::new();
            encode_response(&resp, &mut out).unwrap();
            let mut frames = Vec::new();
            let mut at = 0;
            while let Some((n, kind, p)) = split(&out[at..]).unwrap() {
                frames.push((kind, p.to_vec()));
                at += n;
            }
            assert_eq!(parse_response(frames).unwrap(), resp);
        }
    }

    #[test]
    fn a_request_frame_without_a_head_is_a_bad_frame() {
        for payload in [&b""[..], &[0, 9, b'{'], &[0, 1, b'x']] {
            let e = parse_request(vec![(TYPE_REQUEST, payload.to_vec())]).unwrap_err();
            assert_eq!(e.code, "bad_frame");
        }
        let mut ok = Vec::new();
        encode_request(
            &Request {
                method: "GET".into(),
                path: "/health".into(),
                headers: BTreeMap::new(),
                body: vec![],
            },
            &mut ok,
        )
        .unwrap();
        let first = split(&ok).unwrap().unwrap().2.to_vec();
        let e = parse_request(vec![(TYPE_REQUEST, first), (TYPE_PUSH, vec![])]).unwrap_err();
        assert_eq!(e.code, "unknown_frame_type");
    }

    #[test]
    fn a_head_over_the_limit_is_refused_by_either_side() {
        // What a sender cannot encode, a receiver does not take (the head length field allows 64 KiB).
        let head = |len: usize| {
            let mut p = (len as u16).to_be_bytes().to_vec();
            p.extend_from_slice(br#"{"method":"GET","path":"/"#);
            p.resize(2 + len - 15, b'x');
            p.extend_from_slice(br#"","headers":{}}"#);
            p
        };
        let at_limit = parse_request(vec![(TYPE_REQUEST, head(MAX_HEAD))]).unwrap();
        let mut out = Vec::new();
        encode_request(&at_limit, &mut out).unwrap();
        assert_eq!(out.len(), HEADER_LEN + 2 + MAX_HEAD);
        let e = parse_request(vec![(TYPE_REQUEST, head(MAX_HEAD + 1))]).unwrap_err();
        assert_eq!(e.code, "frame_too_large");
        let request = Request {
            path: "/".to_string() + &"x".repeat(MAX_HEAD),
            ..at_limit
        };
        assert!(encode_request(&request, &mut out).is_err());

        let answer = |len: usize| {
            let mut p = 200u16.to_be_bytes().to_vec();
            p.extend_from_slice(&(len as u16).to_be_bytes());
            p.extend_from_slice(br#"{"headers":{"x":""#);
            p.resize(4 + len - 3, b'x');
            p.extend_from_slice(br#""}}"#);
            p
        };
        assert!(parse_response(vec![(TYPE_RESPONSE, answer(MAX_HEAD))]).is_ok());
        assert!(matches!(
            parse_response(vec![(TYPE_RESPONSE, answer(MAX_HEAD + 1))]),
            Err(RequestError::BadAnswer(_))
        ));
    }
}
