//! What a session costs against today's HTTP path, on loopback, with the same work on both sides: a signed chat
//! message goes from alice to bob, bob parses it and "stores" it (pushes it onto a list: no disk, no signature
//! check on either path), and alice waits for bob's answer.
//!
//! ```text
//! cargo run --release --example link_bench [-- MESSAGES]
//! ```
//! Printed, for a session (`hchat::link`) and for HTTP/1.1 keep-alive (`POST /p2p/receive` through reqwest and
//! axum, as the peers talk today):
//! - round trip: one message at a time, each waiting for its ack: p50 and p99 over MESSAGES (default 5,000);
//! - one way: MESSAGES × 10 sent with up to 1,024 in flight; messages per second (a session coalesces frames
//!   and acks; HTTP runs 64 requests at once over a pool of connections).
//!
//! Also the encoding's share: a MESSAGE frame encoded and decoded, and one Ed25519 verification, per message.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use hchat::identity::{Identity, PublicKey};
use hchat::link::{Endpoint, ErrorBody, Inbox, frame};
use hchat::proto::{ChatMessage, Destination, PeerName, ReceiveAck};

#[derive(Default)]
struct Sink {
    keys: HashMap<PeerName, PublicKey>,
    stored: Mutex<Vec<ChatMessage>>,
}

impl Inbox for Sink {
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

fn messages(alice: &Identity, n: usize) -> Vec<ChatMessage> {
    (0..n)
        .map(|i| {
            let mut m = ChatMessage::new(
                PeerName::new("alice").unwrap(),
                Destination::Direct(PeerName::new("bob").unwrap()),
                format!("message {i}: the quick brown fox jumps over the lazy dog"),
            )
            .unwrap();
            alice.sign_message(&mut m);
            m
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

struct Figures {
    p50_us: f64,
    p99_us: f64,
    per_s: f64,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "round trip p50 {:>6.0} µs, p99 {:>6.0} µs | one way {:>8.0} messages/s",
            self.p50_us, self.p99_us, self.per_s
        )
    }
}

async fn session(n: usize) -> anyhow::Result<Figures> {
    let alice = Arc::new(Identity::ephemeral());
    let mut sink = Sink::default();
    sink.keys
        .insert(PeerName::new("alice")?, alice.public_key());
    let sink = Arc::new(sink);
    let lo: SocketAddr = "127.0.0.1:0".parse()?;
    let bob = Endpoint::bind(lo, Arc::new(Identity::ephemeral()), sink.clone())?;
    let a = Endpoint::bind(lo, alice.clone(), Arc::new(Sink::default()))?;
    let link = a.link(bob.local_addr(), bob.public_key()).await?;

    let msgs = messages(&alice, n + 500);
    let mut rtts = Vec::with_capacity(n);
    for (i, m) in msgs.iter().enumerate() {
        let t = Instant::now();
        link.send(m).await?;
        if i >= 500 {
            rtts.push(t.elapsed());
        }
    }
    rtts.sort();

    let many = messages(&alice, n * 10);
    let t = Instant::now();
    let sends = futures_util::stream::iter(many.iter().map(|m| link.send(m)))
        .buffer_unordered(hchat::link::MAX_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    let per_s = many.len() as f64 / t.elapsed().as_secs_f64();
    anyhow::ensure!(sends.iter().all(|r| r.is_ok()), "a send failed");
    anyhow::ensure!(sink.stored.lock().unwrap().len() == msgs.len() + many.len());
    Ok(Figures {
        p50_us: percentile(&rtts, 0.5),
        p99_us: percentile(&rtts, 0.99),
        per_s,
    })
}

async fn http(n: usize) -> anyhow::Result<Figures> {
    let stored = Arc::new(Mutex::new(Vec::<ChatMessage>::new()));
    let kept = stored.clone();
    let app = axum::Router::new().route(
        "/p2p/receive",
        axum::routing::post(move |axum::Json(m): axum::Json<ChatMessage>| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push(m);
                // No receipt: like the session side, this measures the transport, not the signing.
                axum::Json(ReceiveAck {
                    ok: true,
                    duplicate: false,
                    receipt: None,
                })
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/p2p/receive", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let post = |m: &ChatMessage| {
        let req = client.post(&url).json(m);
        async move {
            let ack: ReceiveAck = req.send().await?.error_for_status()?.json().await?;
            anyhow::ensure!(ack.ok);
            anyhow::Ok(())
        }
    };

    let alice = Identity::ephemeral();
    let msgs = messages(&alice, n + 500);
    let mut rtts = Vec::with_capacity(n);
    for (i, m) in msgs.iter().enumerate() {
        let t = Instant::now();
        post(m).await?;
        if i >= 500 {
            rtts.push(t.elapsed());
        }
    }
    rtts.sort();

    let many = messages(&alice, n * 10);
    let t = Instant::now();
    let sends = futures_util::stream::iter(many.iter().map(post))
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    let per_s = many.len() as f64 / t.elapsed().as_secs_f64();
    anyhow::ensure!(sends.iter().all(|r| r.is_ok()), "a post failed");
    anyhow::ensure!(stored.lock().unwrap().len() == msgs.len() + many.len());
    Ok(Figures {
        p50_us: percentile(&rtts, 0.5),
        p99_us: percentile(&rtts, 0.99),
        per_s,
    })
}

fn encoding() -> (f64, f64) {
    let alice = Identity::ephemeral();
    let msgs = messages(&alice, 20_000);
    let t = Instant::now();
    let mut buf = Vec::new();
    for m in &msgs {
        buf.clear();
        frame::encode_message(m, &mut buf).unwrap();
        std::hint::black_box(frame::decode(&buf).unwrap());
    }
    let codec = t.elapsed().as_secs_f64() * 1e6 / msgs.len() as f64;
    let key = alice.public_key();
    let t = Instant::now();
    for m in &msgs[..5_000] {
        hchat::identity::verify_message(m, &key).unwrap();
    }
    (codec, t.elapsed().as_secs_f64() * 1e6 / 5_000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(5_000);
    let (codec, verify) = encoding();
    println!(
        "per message: MESSAGE frame (JSON) encode + decode {codec:.2} µs; one Ed25519 verification {verify:.1} µs"
    );
    println!("session (QUIC, raw public keys): {}", session(n).await?);
    println!("HTTP/1.1 keep-alive (reqwest → axum): {}", http(n).await?);
    Ok(())
}
