//! hchat: a hybrid peer-to-peer chat. A central tracker knows who is online, where, and in which channels; the
//! peers carry every message straight to each other, and the tracker holds what could not be carried (an opaque
//! envelope in the recipient's mailbox) until the recipient is back. Both keep their state in SQLite.
//!
//! # Layout
//! Layers that point one way, each using only those above it: `proto → identity → http, storage → tracker | peer
//! → web → cli → demo, bench → main`; the tracker and the peer never use each other. docs/ARCHITECTURE.md draws
//! it, names the two edges at the bottom that still point back, and follows one message through the files.
//! - [`proto`]: wire types only: validated names, the message envelope and `parse_conversation`, tracker requests
//!   and answers, [`proto::ErrorCode`] (every error code with its HTTP status), the limits.
//! - [`identity`]: Ed25519 keys and the key file, what each signature covers, the `Hchat-Auth` header, the replay
//!   guard; no HTTP.
//! - [`http`]: what every node's HTTP side shares: the JSON error type, extractors, the server loop with its limits.
//! - [`storage`]: SQLite plumbing both roles share: data dirs, crash-safe settings, migrations, the one
//!   group-commit loop and the store thread.
//! - [`tracker`]: the registry (pure state: leases, channels), the mailboxes, the name bindings, the quotas per
//!   identity and per address that bound them, [`tracker::TrackerState`] over them, each domain error mapped to
//!   its answer once, their stores (memory, SQLite), its routes and the running handle.
//! - [`peer`]: a user's node: tracker client, the directory of peers and keys, the lease, durable store, outbox
//!   and delivery, inbox checks, recovery (mailbox, catch-up), events hub, its own routes (`/p2p/*`, `/health`).
//! - [`web`]: [`web::start`], a node with, on top of the peer's routes, the local API the page and scripts act
//!   through, its event stream, and the web chat page.
//! - [`cli`]: the interactive front end on stdin/stdout.
//! - [`demo`]: a tracker and three peers in one process.
//! - [`discovery`]: finding a tracker on the LAN by mDNS (`_hchat._udp.local.`): the tracker's announcement and
//!   the peer's bounded browse; used by the binary only.
//! - [`bench`](mod@bench): `hchat bench`, what a user sees measured on loopback, beside ngircd, mosquitto and nginx.
//! - [`link`]: identity-bound QUIC sessions between nodes (issue 13), not wired into the peer or the tracker yet.
//! - `sync` (private): the one lock helper, used by the peer, the web front end and the CLI.
//! - `fuzzing` (hidden): the entry points of the fuzz targets in `fuzz/`, one per parser of network input.

#[cfg(feature = "front-ends")]
pub mod bench;
#[cfg(feature = "front-ends")]
pub mod cli;
#[cfg(feature = "front-ends")]
pub mod demo;
#[cfg(feature = "front-ends")]
pub mod discovery;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod identity;
pub mod link;
pub mod peer;
pub mod proto;
pub mod storage;
mod sync;
pub mod tracker;
pub mod web;

/// Resolves when the process is asked to stop (Ctrl-C, or SIGTERM on Unix).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
