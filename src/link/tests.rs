//! Raw frames on a real session: what a receiver answers to frames no well-behaved sender writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;

use super::SendError;
use super::frame::{self, Decoded, ErrorBody, Frame};
use super::{Endpoint, Inbox};
use crate::identity::{Identity, PublicKey};
use crate::proto::{ChatMessage, Destination, ErrorCode, PeerName};

#[derive(Default)]
struct Book {
    keys: HashMap<PeerName, PublicKey>,
    stored: Mutex<Vec<ChatMessage>>,
}

impl Book {
    /// The texts of the messages stored so far, in the order stored.
    fn texts(&self) -> Vec<String> {
        self.stored
            .lock()
            .unwrap()
            .iter()
            .map(|m| m.text.clone())
            .collect()
    }
}

impl Inbox for Book {
    fn key_of<'a>(&'a self, name: &'a PeerName) -> BoxFuture<'a, Option<PublicKey>> {
        Box::pin(async move { self.keys.get(name).copied() })
    }
    fn deliver(
        &self,
        _from: PublicKey,
        batch: Vec<ChatMessage>,
    ) -> BoxFuture<'_, Vec<Result<(), ErrorBody>>> {
        Box::pin(async move {
            let n = batch.len();
            self.stored.lock().unwrap().extend(batch);
            vec![Ok(()); n]
        })
    }
}

fn name(s: &str) -> PeerName {
    PeerName::new(s).unwrap()
}

/// Reads frames until `n` have arrived (or the stream ends).
async fn read_frames(recv: &mut quinn::RecvStream, n: usize) -> Vec<Frame> {
    let (mut buf, mut frames) = (Vec::new(), Vec::new());
    while frames.len() < n {
        match recv.read_chunk(usize::MAX, true).await.unwrap() {
            Some(c) => buf.extend_from_slice(&c.bytes),
            None => break,
        }
        while let Ok(Decoded::Frame(len, f)) = frame::decode(&buf) {
            frames.push(f.unwrap());
            buf.drain(..len);
        }
    }
    frames
}

fn codes(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| match f {
            Frame::Error(e) => e.code.clone(),
            Frame::Ack(ids) => format!("ack×{}", ids.len()),
            Frame::Message(_) => "message".into(),
        })
        .collect()
}

#[tokio::test]
async fn malformed_frames_get_errors_in_step_and_oversize_closes_only_that_stream() {
    let alice = Arc::new(Identity::ephemeral());
    let lo = "127.0.0.1:0".parse().unwrap();
    let mut bobs_book = Book::default();
    bobs_book.keys.insert(name("alice"), alice.public_key());
    let bobs_book = Arc::new(bobs_book);
    let bob = Endpoint::bind(lo, Arc::new(Identity::ephemeral()), bobs_book.clone()).unwrap();
    let a = Endpoint::bind(lo, alice.clone(), Arc::new(Book::default())).unwrap();
    let link = a.dial(bob.local_addr(), bob.public_key()).await.unwrap();
    let good = |text: &str| {
        let mut m =
            ChatMessage::new(name("alice"), Destination::Direct(name("bob")), text.into()).unwrap();
        alice.sign_message(&mut m);
        m
    };

    // Not JSON, an ACK the wrong way, an unknown type, then a good message: three errors and its ack, in order.
    let (mut send, mut recv) = link.conn.open_bi().await.unwrap();
    let mut out = Vec::new();
    frame::encode_raw(frame::TYPE_MESSAGE, b"{\"id\":", &mut out).unwrap();
    frame::encode_ack(&[uuid::Uuid::now_v7()], &mut out);
    frame::encode_raw(0x42, b"from the future", &mut out).unwrap();
    let first = good("after the junk");
    frame::encode_message(&first, &mut out).unwrap();
    send.write_all(&out).await.unwrap();
    let got = read_frames(&mut recv, 4).await;
    assert_eq!(
        codes(&got),
        [
            "bad_frame",
            "unknown_frame_type",
            "unknown_frame_type",
            "ack×1"
        ]
    );
    assert_eq!(got[3], Frame::Ack(vec![first.id]));

    // A length past the limit: the error, then the receiver ends this stream.
    let mut out = ((frame::MAX_PAYLOAD + 1) as u32).to_be_bytes().to_vec();
    out.push(frame::TYPE_MESSAGE);
    send.write_all(&out).await.unwrap();
    let got = read_frames(&mut recv, 2).await;
    assert_eq!(codes(&got), ["frame_too_large"], "then the stream ends");
    assert!(send.stopped().await.unwrap().is_some(), "and stops reading");

    // The connection goes on serving: a new stream works, and so does the link's own.
    let (mut send2, mut recv2) = link.conn.open_bi().await.unwrap();
    let second = good("on a new stream");
    let mut out = Vec::new();
    frame::encode_message(&second, &mut out).unwrap();
    send2.write_all(&out).await.unwrap();
    assert_eq!(
        read_frames(&mut recv2, 1).await,
        [Frame::Ack(vec![second.id])]
    );
    link.send(&good("through the api")).await.unwrap();
    let stored = bobs_book.texts();
    assert_eq!(
        stored,
        ["after the junk", "on a new stream", "through the api"]
    );
}

#[tokio::test]
async fn many_messages_are_acked_in_few_frames_and_stored_in_order() {
    let alice = Arc::new(Identity::ephemeral());
    let lo = "127.0.0.1:0".parse().unwrap();
    let mut book = Book::default();
    book.keys.insert(name("alice"), alice.public_key());
    let book = Arc::new(book);
    let bob = Endpoint::bind(lo, Arc::new(Identity::ephemeral()), book.clone()).unwrap();
    let a = Endpoint::bind(lo, alice.clone(), Arc::new(Book::default())).unwrap();
    let link = a.dial(bob.local_addr(), bob.public_key()).await.unwrap();
    let (mut send, mut recv) = link.conn.open_bi().await.unwrap();
    let mut out = Vec::new();
    let mut ids = Vec::new();
    for m in texts(&alice, 0..500) {
        ids.push(m.id);
        frame::encode_message(&m, &mut out).unwrap();
    }
    send.write_all(&out).await.unwrap();
    send.finish().unwrap();
    let frames = read_frames(&mut recv, usize::MAX).await;
    let acked: Vec<_> = frames
        .iter()
        .flat_map(|f| match f {
            Frame::Ack(ids) => ids.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(acked, ids);
    assert!(
        frames.len() < 500,
        "{} ack frames for 500 messages",
        frames.len()
    );
    let stored: Vec<_> = book.stored.lock().unwrap().iter().map(|m| m.id).collect();
    assert_eq!(stored, ids);
}

#[tokio::test]
async fn a_dialler_that_presents_no_key_gets_no_session() {
    let lo = "127.0.0.1:0".parse().unwrap();
    let bob = Endpoint::bind(
        lo,
        Arc::new(Identity::ephemeral()),
        Arc::new(Book::default()),
    )
    .unwrap();
    let tls = super::tls::client_config_without_key(bob.public_key());
    let tls = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls)).unwrap();
    let client = quinn::Endpoint::client(lo).unwrap();
    let connecting = client
        .connect_with(
            quinn::ClientConfig::new(Arc::new(tls)),
            bob.local_addr(),
            super::SERVER_NAME,
        )
        .unwrap();
    // TLS 1.3 lets the client finish first; the listener then refuses the missing key and closes.
    if let Ok(conn) = connecting.await {
        let closed = tokio::time::timeout(std::time::Duration::from_secs(5), conn.closed()).await;
        assert!(
            matches!(closed, Ok(quinn::ConnectionError::TransportError(_))),
            "{closed:?}"
        );
    }
    assert_eq!((bob.accepted(), bob.pooled()), (0, 0));
}

/// An inbox that refuses the message with text `refuse` for now (`store_failed`) the first time it sees it, and,
/// as [`Inbox::deliver`] requires, stores nothing after that refusal in the same batch.
struct Flaky {
    alice: PublicKey,
    refuse: &'static str,
    refused_once: Mutex<bool>,
    stored: Mutex<Vec<String>>,
}

impl Flaky {
    fn new(alice: PublicKey, refuse: &'static str) -> Flaky {
        Flaky {
            alice,
            refuse,
            refused_once: Mutex::new(false),
            stored: Mutex::new(Vec::new()),
        }
    }
    fn stored(&self) -> Vec<String> {
        self.stored.lock().unwrap().clone()
    }
}

impl Inbox for Flaky {
    fn key_of<'a>(&'a self, _name: &'a PeerName) -> BoxFuture<'a, Option<PublicKey>> {
        Box::pin(async move { Some(self.alice) })
    }
    fn deliver(
        &self,
        _from: PublicKey,
        batch: Vec<ChatMessage>,
    ) -> BoxFuture<'_, Vec<Result<(), ErrorBody>>> {
        Box::pin(async move {
            let mut halted = false;
            let mut results = Vec::new();
            for m in batch {
                let mut once = self.refused_once.lock().unwrap();
                if halted {
                    results.push(Err(ErrorBody::new(ErrorCode::StreamHalted, "halted")));
                } else if m.text == self.refuse && !*once {
                    *once = true;
                    halted = true;
                    results.push(Err(ErrorBody::new(ErrorCode::StoreFailed, "disk full")));
                } else {
                    self.stored.lock().unwrap().push(m.text.clone());
                    results.push(Ok(()));
                }
            }
            results
        })
    }
}

fn texts(alice: &Identity, range: std::ops::Range<usize>) -> Vec<ChatMessage> {
    range
        .map(|i| {
            let mut m = ChatMessage::new(
                name("alice"),
                Destination::Direct(name("bob")),
                format!("m{i}"),
            )
            .unwrap();
            alice.sign_message(&mut m);
            m
        })
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// alice's link to a bob whose inbox is [`Flaky`] about `refuse`; `_ends` keeps both endpoints open.
async fn to_flaky(
    refuse: &'static str,
) -> (
    Arc<Identity>,
    Arc<Flaky>,
    Arc<super::Link>,
    [Arc<Endpoint>; 2],
) {
    let lo = "127.0.0.1:0".parse().unwrap();
    let alice = Arc::new(Identity::ephemeral());
    let inbox = Arc::new(Flaky::new(alice.public_key(), refuse));
    let bob = Endpoint::bind(lo, Arc::new(Identity::ephemeral()), inbox.clone()).unwrap();
    let a = Endpoint::bind(lo, alice.clone(), Arc::new(Book::default())).unwrap();
    let link = a.dial(bob.local_addr(), bob.public_key()).await.unwrap();
    (alice, inbox, link, [a, bob])
}

/// A refusal for now halts the stream at the receiver: a message sent on it later is refused `stream_halted`
/// and not stored, so it cannot be stored ahead of the refused one, which the sender sends again on a new stream.
#[tokio::test]
async fn after_a_refusal_for_now_the_receiver_stores_nothing_more_from_that_stream() {
    let (alice, inbox, link, _ends) = to_flaky("m2").await;
    let msgs = texts(&alice, 0..5);
    let encode = |ms: &[ChatMessage]| {
        let mut out = Vec::new();
        for m in ms {
            frame::encode_message(m, &mut out).unwrap();
        }
        out
    };

    let (mut send, mut recv) = link.conn.open_bi().await.unwrap();
    send.write_all(&encode(&msgs[..4])).await.unwrap();
    let mut answered = Vec::new();
    while answered.len() < 4 {
        for f in read_frames(&mut recv, 1).await {
            match f {
                Frame::Ack(ids) => {
                    answered.extend(ids.into_iter().map(|id| (id, "ack".to_string())))
                }
                Frame::Error(e) => answered.push((e.id.unwrap(), e.code)),
                other => panic!("{other:?}"),
            }
        }
    }
    answered.sort_by_key(|(id, _)| msgs.iter().position(|m| m.id == *id));
    let verdicts: Vec<&str> = answered.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(verdicts, ["ack", "ack", "store_failed", "stream_halted"]);
    // Sent on the halted stream after the refusal came back: refused, not stored.
    send.write_all(&encode(&msgs[4..])).await.unwrap();
    let late = read_frames(&mut recv, 1).await;
    assert!(
        matches!(&late[..], [Frame::Error(e)] if e.code == "stream_halted" && e.id == Some(msgs[4].id)),
        "{late:?}"
    );
    assert_eq!(inbox.stored(), strings(&["m0", "m1"]));

    // Again, in order, on a new stream: all stored, in the order sent.
    let (mut send, mut recv) = link.conn.open_bi().await.unwrap();
    send.write_all(&encode(&msgs[2..])).await.unwrap();
    send.finish().unwrap();
    let frames = read_frames(&mut recv, usize::MAX).await;
    assert_eq!(codes(&frames), ["ack×3"]);
    assert_eq!(inbox.stored(), strings(&["m0", "m1", "m2", "m3", "m4"]));
}

/// A sender's lane ends at a refusal for now: sends bound to it fail unwritten, and the next lane is a new stream
/// that carries the rest in order (the outbox's pipeline binds its batches to the lane that proved the route).
#[tokio::test]
async fn sends_bound_to_a_halted_lane_are_not_written_and_the_next_lane_keeps_order() {
    let (alice, inbox, link, _ends) = to_flaky("m1").await;
    let msgs = texts(&alice, 0..5);

    let lane = link.lane();
    let results =
        futures_util::future::join_all(msgs[..4].iter().map(|m| link.send_on(lane, m))).await;
    assert!(results[0].is_ok(), "{results:?}");
    assert!(
        matches!(&results[1], Err(SendError::Refused(e)) if e.code == "store_failed"),
        "{results:?}"
    );
    for r in &results[2..] {
        assert!(
            matches!(r, Err(SendError::StreamEnded))
                || matches!(r, Err(SendError::Refused(e)) if e.code == "stream_halted"),
            "{results:?}"
        );
    }
    // The pipeline's next batch, bound to the halted lane: not written at all.
    let late = link.send_on(lane, &msgs[4]).await;
    assert!(matches!(late, Err(SendError::StreamEnded)), "{late:?}");
    assert_eq!(inbox.stored(), strings(&["m0"]));

    let next = link.lane();
    assert_ne!(next, lane);
    let results =
        futures_util::future::join_all(msgs[1..].iter().map(|m| link.send_on(next, m))).await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(inbox.stored(), strings(&["m0", "m1", "m2", "m3", "m4"]));
}

/// A lane belongs to one connection: once that connection is replaced, sends bound to it are not written on the
/// new one (a receiver that restarted must not get a pipeline's later batches before the ones lost with it).
#[tokio::test]
async fn a_lane_of_a_closed_connection_is_not_carried_over_to_a_new_one() {
    let lo = "127.0.0.1:0".parse().unwrap();
    let alice = Arc::new(Identity::ephemeral());
    let mut book = Book::default();
    book.keys.insert(name("alice"), alice.public_key());
    let book = Arc::new(book);
    let bob = Endpoint::bind(lo, Arc::new(Identity::ephemeral()), book.clone()).unwrap();
    let a = Endpoint::bind(lo, alice.clone(), Arc::new(Book::default())).unwrap();
    let msgs = texts(&alice, 0..2);
    let first = a.dial(bob.local_addr(), bob.public_key()).await.unwrap();
    let lane = first.lane();
    first.send_on(lane, &msgs[0]).await.unwrap();
    first.close();
    let second = a.dial(bob.local_addr(), bob.public_key()).await.unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
    let r = second.send_on(lane, &msgs[1]).await;
    assert!(matches!(r, Err(SendError::StreamEnded)), "{r:?}");
    assert_eq!(book.texts(), strings(&["m0"]));
}

/// The session socket gets the buffers it asks for, as far as the kernel allows (`net.core.rmem_max` and
/// `wmem_max` cap them; Linux grants twice the value asked): the default of 208 KiB dropped datagrams under a
/// channel burst.
#[test]
fn a_session_socket_asks_for_large_buffers_within_the_kernels_cap() {
    use rustix::net::sockopt;
    let cap = |file: &str| -> usize {
        std::fs::read_to_string(format!("/proc/sys/net/core/{file}"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let socket = super::session_socket("127.0.0.1:0".parse().unwrap()).unwrap();
    let recv = sockopt::socket_recv_buffer_size(&socket).unwrap();
    let send = sockopt::socket_send_buffer_size(&socket).unwrap();
    let plain = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    assert!(
        recv >= 2 * super::SOCKET_BUFFER.min(cap("rmem_max")),
        "receive buffer {recv} B (a plain socket has {:?})",
        sockopt::socket_recv_buffer_size(&plain)
    );
    assert!(
        send >= 2 * super::SOCKET_BUFFER.min(cap("wmem_max")),
        "send buffer {send} B (a plain socket has {:?})",
        sockopt::socket_send_buffer_size(&plain)
    );
}
