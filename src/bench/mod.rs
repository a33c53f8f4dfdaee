//! `hchat bench`: what a user sees, measured on loopback, optionally beside the servers people would otherwise use
//! (ngircd for chat, mosquitto for pub/sub, nginx for raw HTTP), all in one run and driven by the same client code.
//!
//! One file per figure: [`dm`] (1, direct-message latency), [`fanout`] (2, a channel of 100), [`tracker_load`]
//! (3, tracker requests/s) and [`scale`] (4, tracker memory and expiry). What they share: [`clock`] (one clock
//! for send and receive), [`stats`], [`http`] (a lean HTTP/1.1 client and the load generator), [`wire`] (the
//! sending and receiving clients of each system), [`anchors`] (starting and stopping the anchor servers) and
//! [`report`] (table, JSON, SVG plot).

pub(crate) mod anchors;
pub(crate) mod clock;
pub(crate) mod dm;
pub(crate) mod fanout;
pub(crate) mod http;
pub(crate) mod report;
pub(crate) mod scale;
pub(crate) mod stats;
pub(crate) mod tracker_load;
pub(crate) mod wire;

use std::time::Duration;

use anchors::{Anchor, Availability};
use report::Report;

/// Why a benchmark could not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{what}: {error}")]
    Io {
        what: String,
        #[source]
        error: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
    #[error("{0} is not installed ({1}); --compare under CI=true needs every anchor")]
    AnchorMissing(&'static str, String),
    #[error("{what} did not finish within {secs} s")]
    Timeout { what: String, secs: u64 },
    #[error("{0}")]
    Protocol(String),
}

impl BenchError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
        let what = what.into();
        move |error| BenchError::Io { what, error }
    }
}

pub type Result<T, E = BenchError> = std::result::Result<T, E>;

/// The sizes of a run. [`Settings::full`] is the issue's; [`Settings::quick`] is the smoke test's.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Settings {
    /// Figure 1: direct messages sent, and at what steady rate (per second).
    pub dm_count: usize,
    pub dm_rate: u32,
    /// Figure 2: channel members besides the sender, and messages sent.
    pub fanout_members: usize,
    pub fanout_count: usize,
    /// Figure 3: peers registered before the load, kept-alive connections of the load generator, seconds per load.
    pub registered_peers: usize,
    pub load_connections: usize,
    pub load_secs: f64,
    /// Figure 4: peers registered, channels they are spread over, and the lease TTL the tracker is started with.
    pub scale_peers: usize,
    pub scale_channels: usize,
    pub scale_ttl_secs: u64,
}

impl Settings {
    pub fn full() -> Self {
        Self {
            dm_count: 5_000,
            dm_rate: 2_000,
            fanout_members: 100,
            fanout_count: 1_000,
            registered_peers: 10_000,
            load_connections: 64,
            load_secs: 10.0,
            scale_peers: 100_000,
            scale_channels: 1_000,
            scale_ttl_secs: 60,
        }
    }

    pub fn quick() -> Self {
        Self {
            dm_count: 200,
            dm_rate: 2_000,
            fanout_members: 10,
            fanout_count: 50,
            registered_peers: 300,
            load_connections: 8,
            load_secs: 0.5,
            scale_peers: 500,
            scale_channels: 10,
            scale_ttl_secs: 3,
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub settings: Settings,
    /// Run the anchors too.
    pub compare: bool,
    /// A missing anchor fails the run instead of being reported (CI).
    pub strict: bool,
    /// Run this figure alone (to profile it); every figure when `None`.
    pub only: Option<Figure>,
}

/// The four figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    Dm,
    Fanout,
    Tracker,
    Scale,
}

/// Prints one progress line on stderr: runs take a while and the table comes only at the end.
pub fn progress(line: impl AsRef<str>) {
    eprintln!("bench: {}", line.as_ref());
}

/// Runs every figure (and, with `compare`, every anchor that is installed) and returns the report.
pub async fn run(opts: Options) -> Result<Report> {
    let s = &opts.settings;
    let mut report = Report::new(s.clone());
    let anchors = if opts.compare {
        let found = anchors::locate_all();
        for (anchor, availability) in &found {
            if let (true, Availability::Missing(why)) = (opts.strict, availability) {
                return Err(BenchError::AnchorMissing(anchor.name(), why.clone()));
            }
            if let Availability::Missing(why) = availability {
                progress(format!(
                    "{} is missing ({why}); its figures are left out",
                    anchor.name()
                ));
            }
        }
        found
    } else {
        Vec::new()
    };
    report.set_anchors(opts.compare, &anchors);
    let available = |a: Anchor| {
        anchors
            .iter()
            .find(|(x, _)| *x == a)
            .and_then(|(_, av)| match av {
                Availability::Found(path) => Some(path.clone()),
                Availability::Missing(_) => None,
            })
    };

    progress(
        "rate limits are off on every node the benchmark starts (--rate-limit 0): its load runs flood on purpose",
    );
    let wants = |f: Figure| opts.only.is_none_or(|o| o == f);
    if wants(Figure::Dm) {
        progress(format!(
            "1/4 direct messages: {} at {}/s",
            s.dm_count, s.dm_rate
        ));
        let (dm, source) = dm::hchat(s.dm_count, s.dm_rate).await?;
        report.event_source = source;
        report.dm.hchat = Some(dm);
        report.dm_durable = Some(dm::hchat_durable(s.dm_count, s.dm_rate).await?);
        if let Some(bin) = available(Anchor::Ngircd) {
            report.dm.ngircd = Some(dm::ngircd(&bin, s.dm_count, s.dm_rate).await?);
        }
        if let Some(bin) = available(Anchor::Mosquitto) {
            report.dm.mosquitto = Some(dm::mosquitto(&bin, s.dm_count, s.dm_rate).await?);
        }
        progress(
            "1/4 direct messages again, through the tracker's relay (--force-relay on both nodes)",
        );
        report.relay.dm = Some(dm::hchat_relayed(s.dm_count, s.dm_rate).await?);
    }
    if wants(Figure::Fanout) {
        progress(format!(
            "2/4 channel fan-out: {} members, {} messages",
            s.fanout_members, s.fanout_count
        ));
        report.fanout.hchat = Some(fanout::hchat(s.fanout_members, s.fanout_count).await?);
        if let Some(bin) = available(Anchor::Ngircd) {
            report.fanout.ngircd =
                Some(fanout::ngircd(&bin, s.fanout_members, s.fanout_count).await?);
        }
        if let Some(bin) = available(Anchor::Mosquitto) {
            report.fanout.mosquitto =
                Some(fanout::mosquitto(&bin, s.fanout_members, s.fanout_count).await?);
        }
        progress(
            "2/4 channel fan-out again, through the tracker's relay (--force-relay on every node)",
        );
        report.relay.fanout = Some(fanout::hchat_relayed(s.fanout_members, s.fanout_count).await?);
    }
    if wants(Figure::Tracker) {
        progress(format!(
            "3/4 tracker load: {} registered peers, {} connections, {} s per figure",
            s.registered_peers, s.load_connections, s.load_secs
        ));
        let load = Duration::from_secs_f64(s.load_secs);
        let tracker = tracker_load::hchat(s.registered_peers, s.load_connections, load).await?;
        if let Some(bin) = available(Anchor::Nginx) {
            let nginx =
                tracker_load::nginx(&bin, &tracker.answers, s.load_connections, load).await?;
            report.get_list.nginx = Some(nginx.get_list);
            report.renew.nginx = Some(nginx.renew);
        }
        report.get_list.hchat = Some(tracker.get_list);
        report.renew.hchat = Some(tracker.renew);
    }
    if wants(Figure::Scale) {
        progress(format!(
            "4/4 tracker scale: {} peers in {} channels, lease TTL {} s",
            s.scale_peers, s.scale_channels, s.scale_ttl_secs
        ));
        report.scale = Some(
            scale::hchat(
                s.scale_peers,
                s.scale_channels,
                s.load_connections,
                Duration::from_secs(s.scale_ttl_secs),
            )
            .await?,
        );
    }
    report.judge();
    Ok(report)
}
