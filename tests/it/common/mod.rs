//! Shared by the integration tests, one module per harness:
//! - `lines`: waiting on conditions with deadlines, and a process's output as lines;
//! - `process`: the real `hchat` binary as a tracker or a peer on port 0 ([`Proc`]);
//! - `http`: blocking requests and their JSON answers;
//! - `sse`: a peer's event stream read over a plain socket;
//! - `lan`: a second host in a network namespace;
//! - `netlan`: a LAN of N namespaced hosts on a bridge: cut links, loss, changing addresses, IPv6;
//! - `relay`: a recording relay between nodes on loopback, to see every byte they send each other;
//! - `browser`: the browser test's tools and driver;
//! - `signer`: speaking the protocol by hand, signed;
//! - `in_process`: a tracker and peers in this process; a peer's router answers without a socket.

pub(crate) mod browser;
pub(crate) mod http;
pub(crate) mod in_process;
pub(crate) mod lan;
pub(crate) mod lines;
pub(crate) mod netlan;
pub(crate) mod process;
pub(crate) mod relay;
pub(crate) mod signer;
pub(crate) mod sse;

pub(crate) use browser::*;
pub(crate) use http::*;
pub(crate) use lan::*;
pub(crate) use lines::*;
pub(crate) use process::*;
pub(crate) use signer::*;
pub(crate) use sse::*;
