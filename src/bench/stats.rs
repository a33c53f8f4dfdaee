//! Summaries of what was measured: latency percentiles (kept with their sorted samples for the plot) and the
//! figures of a fan-out and of a load.

use serde::Serialize;

/// A latency distribution in microseconds. Percentiles are the nearest-rank ones the anchor scripts use.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Samples (messages or deliveries) measured.
    pub n: usize,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// Every sample, sorted, for the CDF plot; not in the JSON.
    #[serde(skip)]
    pub sorted_us: Vec<f64>,
}

impl Latency {
    pub fn from_ns(samples_ns: impl IntoIterator<Item = u64>) -> Latency {
        let mut us: Vec<f64> = samples_ns.into_iter().map(|ns| ns as f64 / 1e3).collect();
        us.sort_by(f64::total_cmp);
        let pct = |p: f64| -> f64 {
            if us.is_empty() {
                return 0.0;
            }
            us[((us.len() as f64 * p) as usize).min(us.len() - 1)]
        };
        Latency {
            n: us.len(),
            p50_us: pct(0.50),
            p90_us: pct(0.90),
            p99_us: pct(0.99),
            max_us: us.last().copied().unwrap_or(0.0),
            sorted_us: us,
        }
    }
}

/// Figure 1 for one system: messages sent one way at a steady rate.
#[derive(Debug, Clone, Serialize)]
pub struct DmFigure {
    pub sent: usize,
    pub received: usize,
    pub rate_per_s: u32,
    pub latency: Latency,
}

/// Figure 2 for one system: one sender, a burst to every member.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutFigure {
    pub members: usize,
    pub sent: usize,
    pub expected: usize,
    pub delivered: usize,
    /// From the first send until every member has every message.
    pub completion_s: f64,
    pub deliveries_per_s: f64,
    pub latency: Latency,
}

/// Figure 3 for one server and one request: requests answered per second by a load of kept-alive connections.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub requests_per_s: f64,
    pub requests: u64,
    /// Requests that did not get a 2xx (they are not counted above).
    pub errors: u64,
    pub connections: usize,
    pub secs: f64,
    /// Size of one answer's body.
    pub body_bytes: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_over_sorted_samples() {
        let l = Latency::from_ns((1..=100).rev().map(|i| i * 1000));
        assert_eq!(l.n, 100);
        assert_eq!(l.p50_us, 51.0);
        assert_eq!(l.p90_us, 91.0);
        assert_eq!(l.p99_us, 100.0);
        assert_eq!(l.max_us, 100.0);
        assert_eq!(l.sorted_us.first(), Some(&1.0));
        assert_eq!(Latency::from_ns([]).p99_us, 0.0);
    }
}
