//! Shared by the integration tests, one module per harness:
//! - `lines`: waiting on conditions with deadlines, and a process's output as lines;
//! - `process`: the real `hchat` binary as a tracker or a peer on port 0 ([`Proc`]);
//! - `http`: blocking requests and their JSON answers;
//! - `sse`: a peer's event stream read over a plain socket;
//! - `lan`: a second host in a network namespace;
//! - `browser`: the browser test's tools and driver;
//! - `signer`: speaking the protocol by hand, signed;
//! - `in_process`: a tracker and peers in this process; a peer's router answers without a socket.

pub mod browser;
pub mod http;
pub mod in_process;
pub mod lan;
pub mod lines;
pub mod process;
pub mod signer;
pub mod sse;

pub use browser::*;
pub use http::*;
pub use lan::*;
pub use lines::*;
pub use process::*;
pub use signer::*;
pub use sse::*;
