//! The per-client request rate limit every node applies: one token bucket per client IP, refilled at
//! `per_second` tokens a second up to a burst of the same size. A request takes a token; a client with none left is
//! answered 429 `rate_limited` with `Retry-After` (see [`super::server`]), so one flooding host cannot take the
//! node's time from everyone else.
//!
//! The map of buckets is bounded by [`MAX_TRACKED_CLIENTS`]. A bucket that has refilled completely carries no
//! information (a new bucket starts full), so sweeping those away forgets nothing; the sweep runs when the map is
//! full, at most once per [`SWEEP_EVERY`]. Should the map still be full of clients that are all busy, a new client is
//! let through untracked (and a warning logged): refusing every newcomer would let a flood of addresses lock out
//! the whole network.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most client addresses whose buckets are remembered at once.
pub(crate) const MAX_TRACKED_CLIENTS: usize = 65_536;
/// The sweep of refilled buckets runs at most this often.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Requests a second each client may make, and its burst: see `--rate-limit` in docs/PROTOCOL.md for the choice.
pub const DEFAULT_RATE_LIMIT: u32 = 200;

/// What one client may do: `per_second` requests a second, in bursts of as many; 0 turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
}

impl RateLimit {
    pub const OFF: RateLimit = RateLimit { per_second: 0 };

    pub fn is_off(self) -> bool {
        self.per_second == 0
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: DEFAULT_RATE_LIMIT,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
    /// Refused since it was last full: the first refusal of a flood is logged, not every one.
    refusing: bool,
}

/// A refused request: how long until a token is back, and whether it is the first refusal since the client was
/// last within its limit (worth one line in the log).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Throttled {
    pub wait: Duration,
    pub first: bool,
}

/// The buckets of every client seen lately.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limit: RateLimit,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    buckets: HashMap<IpAddr, Bucket>,
    swept_at: Option<Instant>,
    warned_full: bool,
}

impl RateLimiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            state: Mutex::new(State {
                buckets: HashMap::new(),
                swept_at: None,
                warned_full: false,
            }),
        }
    }

    /// Takes a token for one request from `client` at `now`: `Ok` to serve it, or why not.
    pub(crate) fn check(&self, client: IpAddr, now: Instant) -> Result<(), Throttled> {
        if self.limit.is_off() {
            return Ok(());
        }
        let rate = f64::from(self.limit.per_second);
        let burst = rate;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !state.buckets.contains_key(&client) && state.buckets.len() >= MAX_TRACKED_CLIENTS {
            state.sweep(now, rate, burst);
            if state.buckets.len() >= MAX_TRACKED_CLIENTS {
                if !state.warned_full {
                    tracing::warn!(
                        "{MAX_TRACKED_CLIENTS} clients are rate-limited at once; newer ones go unmetered until some calm down"
                    );
                    state.warned_full = true;
                }
                return Ok(());
            }
        }
        let bucket = state.buckets.entry(client).or_insert(Bucket {
            tokens: burst,
            refilled_at: now,
            refusing: false,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled_at);
        bucket.tokens = (bucket.tokens + elapsed.as_secs_f64() * rate).min(burst);
        bucket.refilled_at = now;
        if bucket.tokens >= burst {
            bucket.refusing = false;
        }
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let first = !bucket.refusing;
            bucket.refusing = true;
            Err(Throttled {
                wait: Duration::from_secs_f64((1.0 - bucket.tokens) / rate),
                first,
            })
        }
    }

    /// How many clients are remembered now.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .buckets
            .len()
    }
}

impl State {
    /// Forgets every bucket that is full again by `now`: forgetting it changes nothing.
    fn sweep(&mut self, now: Instant, rate: f64, burst: f64) {
        if self
            .swept_at
            .is_some_and(|at| now.saturating_duration_since(at) < SWEEP_EVERY)
        {
            return;
        }
        self.swept_at = Some(now);
        self.buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.refilled_at).as_secs_f64() * rate < burst
        });
        if self.buckets.len() < MAX_TRACKED_CLIENTS {
            self.warned_full = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn given_a_full_bucket_when_a_client_floods_then_the_burst_passes_and_the_rest_waits() {
        let limiter = RateLimiter::new(RateLimit { per_second: 10 });
        let t0 = Instant::now();
        let verdicts: Vec<_> = (0..100).map(|_| limiter.check(ip(1), t0)).collect();
        assert_eq!(verdicts.iter().filter(|v| v.is_ok()).count(), 10);
        let firsts = verdicts
            .iter()
            .filter(|v| v.is_err_and(|t| t.first))
            .count();
        assert_eq!(firsts, 1, "the first refusal of a flood is the one logged");
        let refused = limiter.check(ip(1), t0).unwrap_err();
        assert!(
            refused.wait > Duration::from_millis(90) && refused.wait <= Duration::from_millis(100),
            "{refused:?}"
        );
        assert!(!limiter.check(ip(1), t0).unwrap_err().first);
        // Another client has its own bucket.
        assert!(limiter.check(ip(2), t0).is_ok());
        // A tenth of a second later there is one token again, and only one.
        let t1 = t0 + Duration::from_millis(100);
        assert!(limiter.check(ip(1), t1).is_ok());
        assert!(!limiter.check(ip(1), t1).unwrap_err().first);
        // Once the bucket has been full again, a new flood is a new first refusal.
        let t2 = t0 + Duration::from_secs(5);
        let refusals: Vec<bool> = (0..12)
            .filter_map(|_| limiter.check(ip(1), t2).err().map(|t| t.first))
            .collect();
        assert_eq!(refusals, [true, false]);
    }

    #[test]
    fn given_a_steady_client_below_the_rate_then_it_is_never_refused() {
        let limiter = RateLimiter::new(RateLimit { per_second: 100 });
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let at = t0 + Duration::from_millis(u64::from(i) * 11);
            assert!(limiter.check(ip(1), at).is_ok(), "request {i}");
        }
    }

    #[test]
    fn given_the_limit_is_off_then_nothing_is_refused_or_remembered() {
        let limiter = RateLimiter::new(RateLimit::OFF);
        let t0 = Instant::now();
        assert!((0..10_000).all(|_| limiter.check(ip(1), t0).is_ok()));
        assert_eq!(limiter.tracked(), 0);
    }

    #[test]
    fn given_the_map_is_full_when_clients_have_calmed_down_then_they_are_swept_and_the_bound_holds()
    {
        let limiter = RateLimiter::new(RateLimit { per_second: 1 });
        let t0 = Instant::now();
        for n in 0..MAX_TRACKED_CLIENTS as u32 {
            limiter.check(ip(n), t0).unwrap();
        }
        assert_eq!(limiter.tracked(), MAX_TRACKED_CLIENTS);
        // Everyone is busy: a newcomer is served untracked, the bound holds.
        let newcomer = ip(MAX_TRACKED_CLIENTS as u32 + 1);
        assert!(limiter.check(newcomer, t0).is_ok());
        assert_eq!(limiter.tracked(), MAX_TRACKED_CLIENTS);
        // Two seconds on every bucket is full again: the sweep forgets them all and the newcomer is tracked.
        let later = t0 + Duration::from_secs(2);
        assert!(limiter.check(newcomer, later).is_ok());
        assert_eq!(limiter.tracked(), 1);
        assert!(limiter.check(newcomer, later).is_err());
    }
}
