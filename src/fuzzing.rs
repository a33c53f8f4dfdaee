//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz), one per parser of what arrives from the network.
//! They live here, in the library, so that they compile and are linted with it (and `tests/fuzz.rs` can run the
//! committed corpus through them on the stable toolchain); the targets themselves are one line each.
//!
//! Two kinds:
//! - parsers called directly, fast: [`names`], [`messages`], [`tracker_answers`], [`frames`] (a session stream's
//!   frames, requests and answers);
//! - whole endpoints, through a real in-process node over loopback HTTP, so that a body or query string meets the
//!   same extractor, validation and handler it would in production: [`tracker_api`] (every tracker request type
//!   and `get-list`'s query string) and [`peer_api`] (`/p2p/receive`, `/p2p/receive-batch`, `/p2p/history`'s
//!   query, the event stream's `Last-Event-ID` and query, the local API's query strings).
//!
//! Each checks more than "does not crash": what is accepted must be what the protocol says (names round-trip,
//! messages meet their rules), and every refusal must be a 4xx with the documented JSON error body. A 5xx is a
//! finding unless it is one that the protocol documents for load (503, 507).
//!
//! Not fuzzed here: the first-byte check of a new connection (`not_http`) reads a single byte, so its unit test
//! covers all 256 values.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use crate::http::ApiError;
use crate::peer::delivery::BatchRequest;
use crate::peer::{Node, PeerConfig};
use crate::proto::*;
use crate::tracker::{Tracker, TrackerConfig};

/// Peer and channel names as they arrive in bodies, query strings and typed lines.
pub fn names(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let peer = PeerName::new(s);
    if let Ok(name) = &peer {
        assert!(
            (1..=MAX_NAME_CHARS).contains(&name.as_str().chars().count()),
            "{s:?}"
        );
        assert!(
            name.as_str()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')),
            "{s:?} accepted with a character outside the rule"
        );
        assert!(
            name.as_str()
                .starts_with(|c: char| c.is_ascii_alphanumeric())
        );
        assert_eq!(name.to_string(), s);
    }
    // On the wire a name is a JSON string: the same verdict as the constructor.
    let json = serde_json::to_string(s).expect("a string serializes");
    assert_eq!(
        serde_json::from_str::<PeerName>(&json).ok(),
        peer.clone().ok()
    );
    let channel = ChannelName::new(s);
    assert_eq!(channel.is_ok(), peer.is_ok(), "one rule for both kinds");
    if let Ok(c) = ChannelName::parse_user(s) {
        assert_eq!(format!("#{c}").trim_start_matches('#'), c.as_str());
    }
    match crate::proto::parse_conversation(s) {
        Ok(Destination::Direct(p)) => assert_eq!(format!("@{p}"), s),
        Ok(Destination::Channel(c)) => assert!(s.ends_with(c.as_str())),
        Err(_) => {}
    }
}

/// Message envelopes as a peer's `/p2p/receive` and `/p2p/receive-batch` parse them, with the rules every
/// receiver applies. An accepted message survives a round trip unchanged.
pub fn messages(data: &[u8]) {
    let (batch, body) = match data.split_first() {
        Some((b, rest)) => (b & 1 == 1, rest),
        None => return,
    };
    if batch {
        if let Ok(req) = crate::http::parse_json::<BatchRequest>(body) {
            for m in &req.messages {
                accepted_message(m);
            }
        }
    } else {
        match crate::http::parse_json::<ChatMessage>(body) {
            Ok(m) => accepted_message(&m),
            Err(e) => assert_refusal(&e),
        }
    }
}

fn accepted_message(m: &ChatMessage) {
    let again: ChatMessage =
        serde_json::from_str(&serde_json::to_string(m).expect("a message serializes"))
            .expect("what was parsed parses again");
    assert_eq!(&again, m);
    if m.check().is_ok() {
        assert!(!m.text.trim().is_empty() && m.text.len() <= MAX_TEXT_BYTES);
    }
}

fn assert_refusal(e: &ApiError) {
    assert!(e.status.is_client_error(), "{e}");
    assert!(
        e.code != ErrorCode::Unknown && !e.message.is_empty(),
        "{e:?}"
    );
}

/// The tracker's answers as a peer parses them (a tracker is trusted to route, not to be well-formed): the
/// first byte picks the answer type. For a mailbox page, every envelope goes through what the drain does with it.
pub fn tracker_answers(data: &[u8]) {
    let Some((kind, body)) = data.split_first() else {
        return;
    };
    match kind % 7 {
        0 => {
            if let Ok(page) = serde_json::from_slice::<FetchResponse>(body) {
                let me = crate::identity::Identity::from_seed([7; 32]);
                let name = crate::proto::PeerName::new("bob").expect("a valid name");
                for e in &page.entries {
                    if let Ok(sealed) =
                        serde_json::from_str::<crate::identity::SealedMail>(e.envelope.get())
                        && let Ok(m) = sealed.open(&me, &name)
                        && m.id == e.id
                    {
                        accepted_message(&m);
                    }
                    if let Ok(m) = serde_json::from_str::<ChatMessage>(e.envelope.get())
                        && m.id == e.id
                    {
                        accepted_message(&m);
                    }
                }
            }
        }
        1 => drop(serde_json::from_slice::<RegisterResponse>(body)),
        2 => drop(serde_json::from_slice::<PeerList>(body)),
        3 => drop(serde_json::from_slice::<ChannelPeers>(body)),
        4 => drop(serde_json::from_slice::<MembershipResponse>(body)),
        5 => {
            if let Ok(found) = serde_json::from_slice::<PeerFound>(body) {
                // What the peer then connects to.
                let _ = found.peer.addr();
            }
        }
        _ => drop(serde_json::from_slice::<ErrorBody>(body)),
    }
}

/// A tracker and a peer in this process, on loopback, keeping nothing on disk, with a client to call them.
struct Nodes {
    runtime: tokio::runtime::Runtime,
    tracker: SocketAddr,
    peer: SocketAddr,
    http: reqwest::Client,
    _tracker: Tracker,
    _node: Node,
}

fn nodes() -> &'static Nodes {
    static NODES: OnceLock<Nodes> = OnceLock::new();
    NODES.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let (tracker, node) = runtime.block_on(async {
            let tracker = Tracker::start(TrackerConfig::default())
                .await
                .expect("a tracker on 127.0.0.1");
            let name = PeerName::new("fuzz").expect("a valid name");
            let config = PeerConfig::on_loopback(name, tracker.local_addr());
            // With its local API: the fuzz targets post to `/api/*` too.
            let node = crate::web::start(config, crate::web::login::DEFAULT_LINK_TTL)
                .await
                .expect("a peer on 127.0.0.1")
                .node()
                .clone();
            node.join(&ChannelName::new("general").expect("a valid name"))
                .await
                .expect("joins #general");
            (tracker, node)
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
            .expect("a client");
        Nodes {
            runtime,
            tracker: tracker.local_addr(),
            peer: node.local_addr(),
            http,
            _tracker: tracker,
            _node: node,
        }
    })
}

/// Sends one request and checks the answer: a 2xx with a JSON body (or an event stream), or a refusal with the
/// documented error body.
fn call(req: reqwest::RequestBuilder) {
    let nodes = nodes();
    nodes.runtime.block_on(async {
        let resp = req.send().await.expect("the node answers within 5 s");
        let status = resp.status();
        let event_stream = resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if event_stream {
            assert!(status.is_success());
            return;
        }
        let body = resp.bytes().await.expect("the body arrives");
        if status.is_success() {
            serde_json::from_slice::<serde_json::Value>(&body).expect("a 2xx answer is JSON");
            return;
        }
        assert!(
            status.is_client_error() || matches!(status.as_u16(), 503 | 507),
            "a {status} answer: {}",
            String::from_utf8_lossy(&body)
        );
        let e: ErrorBody = serde_json::from_slice(&body).unwrap_or_else(|_| {
            panic!(
                "a {status} refusal without the JSON error body: {}",
                String::from_utf8_lossy(&body)
            )
        });
        assert!(
            ErrorCode::parse(&e.error.code) != ErrorCode::Unknown && !e.error.message.is_empty(),
            "a refusal with a code not in the protocol: {e:?}"
        );
    });
}

/// The tracker's endpoints. The first byte picks one; the rest is its JSON body, or `get-list`'s query string.
pub fn tracker_api(data: &[u8]) {
    const POSTS: [&str; 9] = [
        "/submit-info",
        "/unregister",
        "/add-list",
        "/leave",
        "/broadcast-peer",
        "/connect-peer",
        "/mailbox/deposit",
        "/mailbox/fetch",
        "/mailbox/ack",
    ];
    let Some((pick, rest)) = data.split_first() else {
        return;
    };
    let nodes = nodes();
    let base = format!("http://{}", nodes.tracker);
    match POSTS.get(usize::from(*pick) % (POSTS.len() + 1)) {
        Some(path) => call(nodes.http.post(format!("{base}{path}")).body(rest.to_vec())),
        None => {
            let mut url = reqwest::Url::parse(&format!("{base}/get-list")).expect("a URL");
            url.set_query(Some(&String::from_utf8_lossy(rest)));
            call(nodes.http.get(url));
        }
    }
}

/// The peer's endpoints. The first byte picks one: `/p2p/receive` and `/p2p/receive-batch` take the rest as the
/// body; `/p2p/history`, `/api/events`, `/api/history`, `/api/members` and `/api/peers` take it as the query
/// string; and the event stream once more with the rest as its `Last-Event-ID` header.
pub fn peer_api(data: &[u8]) {
    const QUERIES: [&str; 5] = [
        "/p2p/history",
        "/api/events",
        "/api/history",
        "/api/members",
        "/api/peers",
    ];
    let Some((pick, rest)) = data.split_first() else {
        return;
    };
    let nodes = nodes();
    let base = format!("http://{}", nodes.peer);
    match usize::from(*pick) % (QUERIES.len() + 3) {
        0 => call(
            nodes
                .http
                .post(format!("{base}/p2p/receive"))
                .body(rest.to_vec()),
        ),
        1 => call(
            nodes
                .http
                .post(format!("{base}/p2p/receive-batch"))
                .body(rest.to_vec()),
        ),
        2 => {
            // A header value is visible ASCII; anything else never reaches the node.
            let Ok(value) = reqwest::header::HeaderValue::from_bytes(rest) else {
                return;
            };
            call(
                nodes
                    .http
                    .get(format!("{base}/api/events"))
                    .header("last-event-id", value),
            );
        }
        n => {
            let mut url = reqwest::Url::parse(&format!("{base}{}", QUERIES[n - 3])).expect("a URL");
            url.set_query(Some(&String::from_utf8_lossy(rest)));
            call(nodes.http.get(url));
        }
    }
}

/// The identity parsers: the `Hchat-Auth` header, keys, nonces and signatures in their base64url form, signed
/// registrations and signed messages. What parses must print back to the same value; nothing the fuzzer writes
/// may verify against a key it does not hold; and a message this harness signs must verify, and stop verifying
/// once its text changes.
pub fn signatures(data: &[u8]) {
    use crate::identity::{
        AuthHeader, Identity, Nonce, PublicKey, Signature, verify_message, verify_registration,
    };
    static HARNESS: OnceLock<Identity> = OnceLock::new();
    let me = HARNESS.get_or_init(|| Identity::from_seed([7; 32]));
    let key = me.public_key();

    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(h) = s.parse::<AuthHeader>() {
            let again: AuthHeader = h.to_string().parse().expect("a printed header parses");
            assert_eq!(again, h);
            assert!(
                h.verify(&key, "POST", "/add-list", data, h.ts).is_err(),
                "a header the fuzzer wrote verified against the harness key"
            );
        }
        if let Ok(k) = s.parse::<PublicKey>() {
            assert_eq!(k.to_string().parse::<PublicKey>().ok(), Some(k));
        }
        if let Ok(n) = s.parse::<Nonce>() {
            assert_eq!(n.to_string().parse::<Nonce>().ok(), Some(n));
        }
        if let Ok(sig) = s.parse::<Signature>() {
            assert_eq!(sig.to_string().parse::<Signature>().ok(), Some(sig));
        }
    }
    if let Ok(req) = serde_json::from_slice::<RegisterRequest>(data) {
        let now = req.ts.unwrap_or(0);
        if let Ok((k, _, _)) = verify_registration(&req, now) {
            assert_ne!(
                k, key,
                "a registration the fuzzer wrote verified as the harness key"
            );
        }
    }
    if let Ok(mut msg) = serde_json::from_slice::<ChatMessage>(data) {
        assert!(
            verify_message(&msg, &key).is_err(),
            "a message the fuzzer wrote verified against the harness key"
        );
        me.sign_message(&mut msg);
        assert!(verify_message(&msg, &key).is_ok(), "own signature");
        msg.text.push('!');
        assert!(verify_message(&msg, &key).is_err(), "a changed text");
    }
}

/// A session stream's bytes (src/link, docs/SESSIONS.md, "Frames" and section 10), as the stream loops cut and
/// parse them: frame after frame until one is partial or its length is over the limit. Both cutters (`decode`,
/// which parses the message-stream types, and request streams' `split`) must agree on every length. A frame that
/// decodes encodes again to the same frame: an ACK to the very same bytes, a MESSAGE or ERROR (JSON) to a
/// canonical form that decodes to the same value and encodes to itself. A refusal is an ERROR frame that can be
/// sent back, with the code the protocol gives it. Then the whole frames, taken as a request stream and as an
/// answer stream: what parses encodes again (heads and bodies included) to frames that parse to the same value.
pub fn frames(data: &[u8]) {
    use crate::link::frame::{self, Decoded, Frame, HEADER_LEN, MAX_PAYLOAD, TooLarge};
    use crate::link::request;

    let mut whole = Vec::new();
    let mut buf = data;
    loop {
        let cut = request::split(buf);
        match frame::decode(buf) {
            Err(TooLarge(n)) => {
                assert!(n > MAX_PAYLOAD);
                assert_eq!(
                    n as u32,
                    u32::from_be_bytes(buf[..4].try_into().expect("4"))
                );
                assert_eq!(cut, Err(TooLarge(n)));
                break;
            }
            Ok(Decoded::Partial) => {
                assert!(cut.expect("the same verdict").is_none());
                break;
            }
            Ok(Decoded::Frame(n, parsed)) => {
                let (m, kind, payload) = cut.expect("the same verdict").expect("whole");
                assert_eq!((m, kind), (n, buf[4]));
                assert_eq!(n, HEADER_LEN + payload.len());
                let bytes = &buf[..n];
                match parsed {
                    Ok(Frame::Ack(ids)) => {
                        let mut out = Vec::new();
                        frame::encode_ack(&ids, &mut out);
                        assert_eq!(out, bytes, "an ACK encodes to the bytes it came from");
                    }
                    Ok(f @ (Frame::Message(_) | Frame::Error(_))) => {
                        let mut out = Vec::new();
                        match &f {
                            Frame::Message(m) => frame::encode_message(m, &mut out)
                                .expect("a decoded message fits a frame again"),
                            Frame::Error(e) => frame::encode_error(e, &mut out),
                            Frame::Ack(_) => unreachable!(),
                        }
                        assert_eq!(
                            frame::decode(&out),
                            Ok(Decoded::Frame(out.len(), Ok(f.clone()))),
                            "a decoded frame encodes to one that decodes to it"
                        );
                        let mut again = Vec::new();
                        match &f {
                            Frame::Message(m) => {
                                frame::encode_message(m, &mut again).expect("fits")
                            }
                            Frame::Error(e) => frame::encode_error(e, &mut again),
                            Frame::Ack(_) => unreachable!(),
                        }
                        assert_eq!(again, out, "one encoding per frame");
                    }
                    Err(refusal) => {
                        let expected = match kind {
                            frame::TYPE_MESSAGE | frame::TYPE_ACK | frame::TYPE_ERROR => {
                                frame::code::BAD_FRAME
                            }
                            _ => frame::code::UNKNOWN_FRAME_TYPE,
                        };
                        assert_eq!(refusal.code, expected.as_str());
                        sendable_refusal(&refusal);
                    }
                }
                whole.push((kind, payload.to_vec()));
                buf = &buf[n..];
            }
        }
    }
    request_stream(&whole);
    answer_stream(&whole);
}

/// A refusal a node sends back as an ERROR frame: a documented code, a message, and it arrives as it was sent.
fn sendable_refusal(e: &crate::link::ErrorBody) {
    use crate::link::frame::{self, Decoded, Frame};
    assert!(
        ErrorCode::parse(&e.code) != ErrorCode::Unknown && !e.message.is_empty(),
        "{e:?}"
    );
    let mut out = Vec::new();
    frame::encode_error(e, &mut out);
    assert_eq!(
        frame::decode(&out),
        Ok(Decoded::Frame(out.len(), Ok(Frame::Error(e.clone()))))
    );
}

/// Every whole frame at the front of `bytes`.
fn split_all(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while let Some((n, kind, payload)) =
        crate::link::request::split(bytes).expect("within the limit")
    {
        frames.push((kind, payload.to_vec()));
        bytes = &bytes[n..];
    }
    assert!(bytes.is_empty(), "encoding leaves no partial frame");
    frames
}

/// The most a head that was taken grows when encoded again: the `,"headers":{}` a sender may leave out (escapes
/// only shrink, unknown fields and repeated header names are dropped, names are lower-cased in place).
const HEAD_GAIN: usize = r#","headers":{}"#.len();

/// The head length at the front of a REQUEST payload (or of a RESPONSE payload after its status).
fn head_len(payload: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([payload[0], payload[1]]))
}

/// `frames` as what a listener read of a request stream (it parses one that starts with a REQUEST and stays within
/// the limit; `serve_request`).
fn request_stream(frames: &[(u8, Vec<u8>)]) {
    use crate::link::frame::TooLarge;
    use crate::link::request::{self, MAX_HEAD, MAX_REQUEST_BODY, TYPE_REQUEST};
    let total: usize = frames.iter().map(|(_, p)| p.len()).sum();
    if frames.first().is_none_or(|(kind, _)| *kind != TYPE_REQUEST)
        || total > MAX_REQUEST_BODY + MAX_HEAD + 2
    {
        return;
    }
    match request::parse_request(frames.to_vec()) {
        Ok(req) => {
            assert!(
                req.headers
                    .keys()
                    .all(|k| !k.chars().any(|c| c.is_ascii_uppercase()))
            );
            let head = head_len(&frames[0].1);
            assert!(head <= MAX_HEAD, "a head of {head} bytes was taken");
            let mut out = Vec::new();
            if let Err(TooLarge(n)) = request::encode_request(&req, &mut out) {
                assert!(
                    n <= head + HEAD_GAIN,
                    "a head of {head} bytes encodes to {n}"
                );
                return;
            }
            assert_eq!(request::parse_request(split_all(&out)), Ok(req.clone()));
            let mut again = Vec::new();
            request::encode_request(&req, &mut again).expect("fits");
            assert_eq!(again, out, "one encoding per request");
        }
        Err(refusal) => {
            assert!(
                ["bad_frame", "unknown_frame_type", "frame_too_large"]
                    .contains(&refusal.code.as_str()),
                "{refusal:?}"
            );
            sendable_refusal(&refusal);
        }
    }
}

/// `frames` as what a dialler read of an answer stream (`Link::request`).
fn answer_stream(frames: &[(u8, Vec<u8>)]) {
    use crate::link::RequestError;
    use crate::link::frame::TooLarge;
    use crate::link::request::{self, MAX_HEAD};
    match request::parse_response(frames.to_vec()) {
        Ok(resp) => {
            let head = head_len(&frames[0].1[2..]);
            assert!(head <= MAX_HEAD, "a head of {head} bytes was taken");
            let mut out = Vec::new();
            if let Err(TooLarge(n)) = request::encode_response(&resp, &mut out) {
                assert!(
                    n <= head + HEAD_GAIN,
                    "a head of {head} bytes encodes to {n}"
                );
                return;
            }
            let again = request::parse_response(split_all(&out)).expect("parses again");
            assert_eq!(again, resp);
        }
        Err(RequestError::Lost) => assert!(frames.is_empty()),
        Err(RequestError::Refused(e)) => {
            assert_eq!(frames[0].0, crate::link::frame::TYPE_ERROR, "{e:?}")
        }
        Err(RequestError::BadAnswer(why)) => assert!(!why.is_empty()),
        Err(e @ (RequestError::TooLarge(_) | RequestError::Timeout)) => panic!("{e}"),
    }
}
