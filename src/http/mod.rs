//! HTTP plumbing shared by the tracker and the peer: one error type that renders the documented JSON body, JSON
//! and query extractors whose rejections use that same body, and a server loop with the limits every node needs
//! (connection caps in all and per client, a per-client rate limit, header, idle and request timeouts, body
//! limit, graceful shutdown).
//!
//! Both roles serve through [`serve`], so a limit fixed here is fixed for every endpoint of the system.

mod answer;
mod connections;
mod error;
mod extract;
pub mod over_session;
pub(crate) mod rate_limit;
mod server;

pub use answer::JsonBytes;
pub use error::{ApiError, fallback_not_found, method_not_allowed};
pub use extract::{ApiJson, ApiQuery, parse_json, read_body};
pub use over_session::{RouterOverSession, SessionKey};
pub use rate_limit::{DEFAULT_RATE_LIMIT, RateLimit};
pub use server::{
    Bound, ClientOrigin, MAX_CONNECTIONS_PER_CLIENT, ServerLimits, bind_with_fallback, serve,
    with_limits,
};
pub(crate) use server::{rate_limited, serve_sharing};

/// How long our HTTP clients keep an idle pooled connection: shorter than the servers' idle timeout (10 s), so a
/// client never reuses one the server is closing.
pub const CLIENT_IDLE: std::time::Duration = std::time::Duration::from_secs(8);
