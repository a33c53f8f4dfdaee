//! hchat: a hybrid peer-to-peer chat. A central tracker knows who is online, where, and in which channels; the
//! peers carry every message straight to each other, and the tracker holds what could not be carried (an opaque
//! envelope in the recipient's mailbox) until the recipient is back. Both keep their state in SQLite.
//!
//! # Layout
//! - [`proto`]: wire types only (validated names, the message envelope, tracker requests and answers, limits).
//! - [`identity`]: Ed25519 keys, what each signature covers, the `Hchat-Auth` header, the replay guard.
//! - [`http`]: what every node's HTTP side shares: the JSON error type, extractors, the server loop with its limits.
//! - [`tracker`]: the registry (pure state: leases, channels), the mailboxes, the name bindings, the quotas per
//!   identity and per address that bound them, their stores (memory, SQLite), its routes and the running handle.
//! - [`peer`]: a user's node: tracker client, durable store, outbox and delivery, inbox checks, recovery (mailbox,
//!   catch-up), events hub, routes.
//! - [`storage`]: SQLite plumbing both roles share: data dirs, crash-safe settings, migrations, the store thread.
//! - [`web`]: the local API the page and scripts act through, its event stream, and the web chat page.
//! - [`cli`]: the interactive front end on stdin/stdout.
//! - [`demo`]: a tracker and three peers in one process.
//! - [`bench`]: `hchat bench`, what a user sees measured on loopback, beside ngircd, mosquitto and nginx.
//! - `fuzzing` (hidden): the entry points of the fuzz targets in `fuzz/`, one per parser of network input.

pub mod bench;
pub mod cli;
pub mod demo;
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
