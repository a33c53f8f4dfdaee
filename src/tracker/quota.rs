//! What one identity and one client address may hold at the tracker, and how long unused things are kept.
//!
//! Every table the tracker keeps had a cap for everyone together; a cap alone lets one host fill it and lock out
//! everybody else (issue 11: 100,000 channels in 95 s, the 256 MiB of mail in 27 s). The quotas here are checked
//! before the shared caps, per identity (a name's key) *and* per client address (many throwaway identities from
//! one host share their address's quota), and the expiries make room again by themselves: held mail, names that
//! were never used, and empty channels are forgotten after a documented time. docs/SECURITY.md lists each quota
//! and what it protects.
//!
//! A request from the tracker's own host (the address it was reached at) is not held to the *per-address* quotas,
//! as it is not to the rate limit: that is the operator's own machine (the demo, benchmarks and tests run every
//! peer there), and a process on it could fill the tracker's disk directly anyway. The per-identity quotas hold for
//! everyone.

use std::net::IpAddr;
use std::time::Duration;

const HOUR_MS: u64 = 60 * 60 * 1000;
const DAY_MS: u64 = 24 * HOUR_MS;

/// Channels one identity may have created that still exist.
pub const DEFAULT_CHANNELS_PER_IDENTITY: usize = 64;
/// Channels created from one client address that still exist.
pub const DEFAULT_CHANNELS_PER_ADDRESS: usize = 256;
/// New names one client address may bind per [`NAME_WINDOW`]: at least 10 (a lab machine's users, a test's
/// peers) and few enough that squatting a namespace takes weeks.
pub const DEFAULT_NAMES_PER_ADDRESS_PER_HOUR: usize = 20;
/// The window [`DEFAULT_NAMES_PER_ADDRESS_PER_HOUR`] counts over.
pub const NAME_WINDOW: Duration = Duration::from_millis(HOUR_MS);
/// Bytes of held mail one depositor (identity) may have in all mailboxes together.
pub const DEFAULT_MAIL_BYTES_PER_DEPOSITOR: usize = 8 * 1024 * 1024;
/// Bytes of held mail deposited from one client address, all its identities together.
pub const DEFAULT_MAIL_BYTES_PER_ADDRESS: usize = 32 * 1024 * 1024;
/// Bytes of held mail one recipient's mailbox may hold.
pub const DEFAULT_MAIL_BYTES_PER_RECIPIENT: usize = 16 * 1024 * 1024;
/// How long a deposited message is held before it is dropped unfetched.
pub const DEFAULT_MAIL_HOLD: Duration = Duration::from_millis(14 * DAY_MS);
/// How long a name bound and never used again stays bound (see [`NAME_USED_AFTER`]).
pub const DEFAULT_UNUSED_NAME_EXPIRY: Duration = Duration::from_millis(7 * DAY_MS);
/// A name counts as used once it has registered this long after it was bound (it came back another day, or stayed
/// on): used names stay bound for good.
pub const NAME_USED_AFTER: Duration = Duration::from_millis(DAY_MS);
/// How long a channel with no members is kept when it has no rules (open, no lists).
pub const DEFAULT_EMPTY_CHANNEL_EXPIRY: Duration = Duration::from_millis(DAY_MS);
/// How long an empty channel whose owner set rules (a mode other than open, or any invited, banned or visitor
/// name) keeps them.
pub const DEFAULT_RULED_CHANNEL_EXPIRY: Duration = Duration::from_millis(30 * DAY_MS);

/// The quotas and expiries a tracker applies (flags on `hchat tracker`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quotas {
    pub channels_per_identity: usize,
    pub channels_per_address: usize,
    pub names_per_address_per_hour: usize,
    pub mail_bytes_per_depositor: usize,
    pub mail_bytes_per_address: usize,
    pub mail_bytes_per_recipient: usize,
    pub mail_hold: Duration,
    pub unused_name_expiry: Duration,
    pub empty_channel_expiry: Duration,
    pub ruled_channel_expiry: Duration,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            channels_per_identity: DEFAULT_CHANNELS_PER_IDENTITY,
            channels_per_address: DEFAULT_CHANNELS_PER_ADDRESS,
            names_per_address_per_hour: DEFAULT_NAMES_PER_ADDRESS_PER_HOUR,
            mail_bytes_per_depositor: DEFAULT_MAIL_BYTES_PER_DEPOSITOR,
            mail_bytes_per_address: DEFAULT_MAIL_BYTES_PER_ADDRESS,
            mail_bytes_per_recipient: DEFAULT_MAIL_BYTES_PER_RECIPIENT,
            mail_hold: DEFAULT_MAIL_HOLD,
            unused_name_expiry: DEFAULT_UNUSED_NAME_EXPIRY,
            empty_channel_expiry: DEFAULT_EMPTY_CHANNEL_EXPIRY,
            ruled_channel_expiry: DEFAULT_RULED_CHANNEL_EXPIRY,
        }
    }
}

/// Who asks, as the quotas see it: the client address, or `None` for the tracker's own host (not held to the
/// per-address quotas).
pub type Origin = Option<IpAddr>;

/// A quota a request would pass. Each variant is answered 429 with its own code (see `errors.rs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    #[error(
        "{who} has created {limit} channels that still exist (the most allowed); leave or reuse one of them: an empty channel is forgotten after a while"
    )]
    Channels { who: String, limit: usize },
    #[error(
        "{limit} new names were registered from {addr} within the last hour (the most allowed); use a name you already have, or try again in {retry_mins} min"
    )]
    Names {
        addr: IpAddr,
        limit: usize,
        retry_mins: u64,
    },
    #[error(
        "{who} already has {held} bytes of mail held at the tracker (at most {limit}); it is freed as recipients fetch it or it expires; your outbox keeps the rest and retries"
    )]
    Mail {
        who: String,
        held: usize,
        limit: usize,
    },
    #[error(
        "{name}'s mailbox holds {held} bytes (at most {limit}); it empties when {name} comes back or the mail expires"
    )]
    RecipientMail {
        name: String,
        held: usize,
        limit: usize,
    },
}

/// Milliseconds of a duration, as the pure cores count time.
pub fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}
