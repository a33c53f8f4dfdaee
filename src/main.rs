//! The `hchat` binary: parses the command line, sets up logging, and hands over to the library.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use hchat::http::{RateLimit, ServerLimits};
use hchat::peer::{Node, PeerConfig};
use hchat::proto::{ChannelName, PeerName};
use hchat::storage::Storage;
use hchat::tracker::{Tracker, TrackerConfig, quota};

/// mimalloc instead of glibc's malloc: measured on `hchat bench` (docs/BENCHMARKS.md), DM p50 −13 %, fan-out +12–22 %,
/// the tracker's bytes per peer 880 → 777.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A hybrid peer-to-peer chat: a tracker knows who is online; peers carry every message straight to each other.
#[derive(Parser)]
#[command(name = "hchat", version)]
struct Cli {
    /// Log filter (e.g. info, debug, hchat=trace). Logs go to stderr.
    #[arg(long, env = "HCHAT_LOG", global = true)]
    log: Option<String>,
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand)]
enum Role {
    /// Run the tracker: the registry of who is online, where, and in which channels.
    Tracker(TrackerArgs),
    /// Run a peer: one user's node, with an interactive CLI on stdin/stdout.
    Peer(PeerArgs),
    /// Try it out: a tracker and three peers (alice, bob, carol) in one process; you are alice.
    Demo,
    /// Measure what a user sees on this machine (DM latency, channel fan-out, tracker load and scale), optionally
    /// beside ngircd, mosquitto and nginx.
    Bench(BenchArgs),
}

#[derive(Args)]
struct TrackerArgs {
    /// Address to bind. If it is not an address of this host, 0.0.0.0 is bound instead (with a warning).
    #[arg(long, env = "HCHAT_IP", default_value = "127.0.0.1")]
    ip: IpAddr,
    /// Port to bind; 0 picks a free one (printed as `listening on IP:PORT`).
    #[arg(long, env = "HCHAT_PORT", default_value_t = 9001)]
    port: u16,
    /// UDP port for peers' sessions (QUIC) [default: the same number as --port]; 0 picks a free one (printed as
    /// `sessions on IP:PORT/udp`).
    #[arg(long, env = "HCHAT_QUIC_PORT")]
    quic_port: Option<u16>,
    /// Seconds after its last heartbeat that a peer disappears from every list.
    #[arg(long, env = "HCHAT_PEER_TTL", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    peer_ttl: u64,
    /// Messages the tracker holds for one offline peer; a sender is refused with 507 when it is full.
    #[arg(long, env = "HCHAT_MAILBOX_LIMIT", default_value_t = hchat::tracker::mailbox::DEFAULT_MAILBOX_LIMIT, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    mailbox_limit: u64,
    /// Do not announce this tracker on the LAN by mDNS (`_hchat._udp.local.`). A tracker bound to loopback is
    /// never announced.
    #[arg(long, env = "HCHAT_NO_MDNS")]
    no_mdns: bool,
    #[command(flatten)]
    quotas: QuotaArgs,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    data: DataArgs,
}

/// What one identity and one client address may hold at the tracker (docs/SECURITY.md says what each protects).
/// The per-address quotas do not apply to clients on the tracker's own host.
#[derive(Args)]
struct QuotaArgs {
    /// Channels one identity may have created that still exist; more get 429 channel_quota.
    #[arg(long, env = "HCHAT_CHANNELS_PER_IDENTITY", default_value_t = quota::DEFAULT_CHANNELS_PER_IDENTITY as u32, value_parser = clap::value_parser!(u32).range(1..))]
    channels_per_identity: u32,
    /// Channels created from one client address that still exist; more get 429 channel_quota.
    #[arg(long, env = "HCHAT_CHANNELS_PER_ADDRESS", default_value_t = quota::DEFAULT_CHANNELS_PER_ADDRESS as u32, value_parser = clap::value_parser!(u32).range(1..))]
    channels_per_address: u32,
    /// New names one client address may register per hour; more get 429 name_quota.
    #[arg(long, env = "HCHAT_NAMES_PER_ADDRESS", default_value_t = quota::DEFAULT_NAMES_PER_ADDRESS_PER_HOUR as u32, value_parser = clap::value_parser!(u32).range(1..))]
    names_per_address: u32,
    /// Bytes of held mail one sender may have at the tracker; more get 429 mail_quota.
    #[arg(long, env = "HCHAT_MAIL_BYTES_PER_SENDER", default_value_t = quota::DEFAULT_MAIL_BYTES_PER_DEPOSITOR as u32, value_parser = clap::value_parser!(u32).range(1..))]
    mail_bytes_per_sender: u32,
    /// Bytes of held mail deposited from one client address; more get 429 mail_quota.
    #[arg(long, env = "HCHAT_MAIL_BYTES_PER_ADDRESS", default_value_t = quota::DEFAULT_MAIL_BYTES_PER_ADDRESS as u32, value_parser = clap::value_parser!(u32).range(1..))]
    mail_bytes_per_address: u32,
    /// Bytes of held mail one recipient's mailbox may hold; more get 429 recipient_quota.
    #[arg(long, env = "HCHAT_MAIL_BYTES_PER_RECIPIENT", default_value_t = quota::DEFAULT_MAIL_BYTES_PER_RECIPIENT as u32, value_parser = clap::value_parser!(u32).range(1..))]
    mail_bytes_per_recipient: u32,
    /// Days held mail is kept unfetched before it is dropped.
    #[arg(long, env = "HCHAT_MAIL_HOLD_DAYS", default_value_t = 14, value_parser = clap::value_parser!(u64).range(1..=3650))]
    mail_hold_days: u64,
    /// Days a name registered once and never used again stays bound.
    #[arg(long, env = "HCHAT_UNUSED_NAME_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u64).range(2..=3650))]
    unused_name_days: u64,
    /// Hours an empty channel with no rules is kept (an owner's mode and lists are kept --ruled-channel-days).
    #[arg(long, env = "HCHAT_EMPTY_CHANNEL_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=87_600))]
    empty_channel_hours: u64,
    /// Days an empty channel whose owner set rules (a mode, invited, banned or visitor names) keeps them.
    #[arg(long, env = "HCHAT_RULED_CHANNEL_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3650))]
    ruled_channel_days: u64,
}

impl QuotaArgs {
    fn quotas(&self) -> quota::Quotas {
        const HOUR: u64 = 3600;
        quota::Quotas {
            channels_per_identity: self.channels_per_identity as usize,
            channels_per_address: self.channels_per_address as usize,
            names_per_address_per_hour: self.names_per_address as usize,
            mail_bytes_per_depositor: self.mail_bytes_per_sender as usize,
            mail_bytes_per_address: self.mail_bytes_per_address as usize,
            mail_bytes_per_recipient: self.mail_bytes_per_recipient as usize,
            mail_hold: Duration::from_secs(self.mail_hold_days * 24 * HOUR),
            unused_name_expiry: Duration::from_secs(self.unused_name_days * 24 * HOUR),
            empty_channel_expiry: Duration::from_secs(self.empty_channel_hours * HOUR),
            ruled_channel_expiry: Duration::from_secs(self.ruled_channel_days * 24 * HOUR),
        }
    }
}

/// How much one client may ask of a node.
#[derive(Args)]
struct LimitArgs {
    /// Requests a second one client address may make, in bursts of as many; more get 429 rate_limited. 0 turns
    /// the limit off. Clients on the node's own address (this host) are never limited.
    #[arg(long, env = "HCHAT_RATE_LIMIT", value_name = "REQ_PER_SEC", default_value_t = hchat::http::DEFAULT_RATE_LIMIT)]
    rate_limit: u32,
}

impl LimitArgs {
    fn server_limits(&self) -> ServerLimits {
        ServerLimits {
            rate_limit: RateLimit {
                per_second: self.rate_limit,
            },
            ..ServerLimits::default()
        }
    }
}

/// Where a node keeps its state.
#[derive(Args)]
struct DataArgs {
    /// Folder for this node's database [default: $XDG_DATA_HOME/hchat/<name> or ~/.local/share/hchat/<name>;
    /// the tracker's is .../hchat/tracker].
    #[arg(long, env = "HCHAT_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Keep nothing on disk: all state is gone when the process ends.
    #[arg(long, env = "HCHAT_IN_MEMORY", conflicts_with = "data_dir")]
    in_memory: bool,
}

impl DataArgs {
    fn storage(self, leaf: &str) -> Storage {
        if self.in_memory {
            Storage::Memory
        } else {
            Storage::dir_or_default(self.data_dir, leaf)
        }
    }
}

#[derive(Args)]
struct PeerArgs {
    /// Your name in the chat: letters, digits, '-', '_', '.'; at most 32 characters.
    #[arg(long, env = "HCHAT_NAME")]
    name: PeerName,
    /// Address to bind and to advertise to other peers. If it is not an address of this host, 0.0.0.0 is bound
    /// instead (with a warning) and this address is still advertised.
    #[arg(long, env = "HCHAT_IP", default_value = "127.0.0.1")]
    ip: IpAddr,
    /// Port to bind; 0 picks a free one (printed as `listening on IP:PORT`).
    #[arg(long, env = "HCHAT_PORT", default_value_t = 0)]
    port: u16,
    /// Address other peers should use to reach this one, when it differs from --ip (NAT, port forwarding, 0.0.0.0).
    #[arg(long, env = "HCHAT_ADVERTISE_IP")]
    advertise_ip: Option<IpAddr>,
    /// UDP port for encrypted peer-to-peer sessions: 0 picks a free one, `off` sends and receives over HTTP only.
    /// Default: the number of the HTTP port (any free one if that UDP port is taken).
    #[arg(long, env = "HCHAT_QUIC_PORT", value_name = "PORT|off")]
    quic_port: Option<hchat::peer::QuicPort>,
    /// Reach other peers only through the tracker's relay, never directly (for trying the relay out; without it,
    /// the relay is used only when a direct session cannot be had).
    #[arg(long, env = "HCHAT_FORCE_RELAY")]
    force_relay: bool,
    #[command(flatten)]
    tracker: TrackerChoice,
    /// Channel to join at start and talk in (like typing #name first).
    #[arg(long, env = "HCHAT_JOIN")]
    join: Option<ChannelName>,
    /// Secret that lets callers on other hosts act as you through the local API; random if not given.
    #[arg(long, env = "HCHAT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Seconds a printed web chat link logs a browser in (`/web` prints a fresh one); after, it does nothing.
    #[arg(long, env = "HCHAT_WEB_LINK_TTL", value_name = "SECS", default_value_t = hchat::web::login::DEFAULT_LINK_TTL.as_secs(), value_parser = clap::value_parser!(u64).range(1..=86_400))]
    web_link_ttl: u64,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    data: DataArgs,
}

/// An IP address with, for a link-local IPv6 one, the interface it is on: `fe80::1%eth0` or `fe80::1%2` (a scope
/// means something on this host only: the interface's name or index here).
#[derive(Clone, Copy, Debug)]
struct ScopedIp {
    ip: IpAddr,
    scope_id: u32,
}

impl std::str::FromStr for ScopedIp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, scope) = match s.split_once('%') {
            Some((ip, scope)) => (ip, Some(scope)),
            None => (s, None),
        };
        let ip: IpAddr = ip
            .parse()
            .map_err(|e| format!("{ip} is not an IP address: {e}"))?;
        let scope_id = match scope {
            None => 0,
            Some(_) if !ip.is_ipv6() => {
                return Err(format!("{s}: only an IPv6 address takes a %interface"));
            }
            Some(index) if index.parse::<u32>().is_ok() => index.parse().unwrap_or(0),
            Some(name) => interface_index(name)?,
        };
        Ok(ScopedIp { ip, scope_id })
    }
}

impl ScopedIp {
    fn with_port(self, port: u16) -> SocketAddr {
        match self.ip {
            IpAddr::V6(v6) => {
                SocketAddr::V6(std::net::SocketAddrV6::new(v6, port, 0, self.scope_id))
            }
            IpAddr::V4(_) => SocketAddr::new(self.ip, port),
        }
    }
}

/// The index of network interface `name` (Linux: `/sys/class/net/NAME/ifindex`).
fn interface_index(name: &str) -> Result<u32, String> {
    let bad =
        || format!("no network interface {name:?} on this host (give its index instead, e.g. %2)");
    if name.is_empty() || name.contains('/') || name.contains("..") {
        return Err(bad());
    }
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(bad)
}

/// Which tracker a peer registers with: given, or found on the LAN.
#[derive(Args)]
struct TrackerChoice {
    /// The tracker's address. Without it (and without --tracker-port), the peer looks for a tracker on the LAN by
    /// mDNS for up to 3 s, and falls back to 127.0.0.1 if it finds none.
    /// A link-local IPv6 address takes its interface: `fe80::1%eth0` (or `%2`).
    #[arg(long, env = "HCHAT_TRACKER_IP", value_name = "IP[%IFACE]")]
    tracker_ip: Option<ScopedIp>,
    /// The tracker's port [default: 9001].
    #[arg(long, env = "HCHAT_TRACKER_PORT")]
    tracker_port: Option<u16>,
    /// Do not look for a tracker on the LAN by mDNS: without --tracker-ip, use 127.0.0.1.
    #[arg(long, env = "HCHAT_NO_MDNS")]
    no_mdns: bool,
    /// The tracker's key (43 characters) or fingerprint (32 hex digits), as `hchat tracker` prints it at start;
    /// a tracker that proves another key is refused. Without it, the key is pinned on first contact (in the data
    /// dir's known_trackers).
    #[arg(
        long,
        env = "HCHAT_TRACKER_KEY",
        value_name = "KEY_OR_FINGERPRINT",
        allow_hyphen_values = true
    )]
    tracker_key: Option<hchat::peer::known_trackers::TrackerKey>,
}

#[derive(Args)]
struct BenchArgs {
    /// Also run the anchors (ngircd, mosquitto, nginx from Debian's packages) on loopback and print each figure's
    /// ratio to theirs. Under CI=true a missing anchor fails the run.
    #[arg(long, env = "HCHAT_BENCH_COMPARE")]
    compare: bool,
    /// Print the report as JSON on stdout instead of the table (progress still goes to stderr).
    #[arg(long, env = "HCHAT_BENCH_JSON")]
    json: bool,
    /// Also draw the latency CDFs, ours against the anchors, into this SVG file.
    #[arg(long, env = "HCHAT_BENCH_PLOT", value_name = "FILE.svg", value_parser = svg_path)]
    plot: Option<std::path::PathBuf>,
    /// Run one figure alone (to profile it): dm, fanout, tracker or scale.
    #[arg(long, env = "HCHAT_BENCH_ONLY", value_enum)]
    only: Option<OnlyFigure>,
    /// Tiny counts (a few seconds), for a smoke test; the options below still override them.
    #[arg(long, env = "HCHAT_BENCH_QUICK")]
    quick: bool,
    /// Figure 1: direct messages to send [default: 5000].
    #[arg(long, env = "HCHAT_BENCH_DM_COUNT", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    dm_count: Option<u64>,
    /// Figure 1: their steady rate, per second [default: 2000].
    #[arg(long, env = "HCHAT_BENCH_DM_RATE", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    dm_rate: Option<u32>,
    /// Figure 2: channel members besides the sender [default: 100].
    #[arg(long, env = "HCHAT_BENCH_MEMBERS", value_parser = clap::value_parser!(u64).range(1..=1_000))]
    members: Option<u64>,
    /// Figure 2: messages the sender sends [default: 1000].
    #[arg(long, env = "HCHAT_BENCH_FANOUT_COUNT", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    fanout_count: Option<u64>,
    /// Figure 3: peers registered with the tracker under load [default: 10000].
    #[arg(long, env = "HCHAT_BENCH_REGISTERED", value_parser = clap::value_parser!(u64).range(101..=1_000_000))]
    registered: Option<u64>,
    /// Figures 3 and 4: kept-alive connections of the load generator [default: 64].
    #[arg(long, env = "HCHAT_BENCH_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..=1_000))]
    connections: Option<u64>,
    /// Figure 3: seconds of load per figure [default: 10].
    #[arg(long, env = "HCHAT_BENCH_LOAD_SECS", value_parser = clap::value_parser!(u64).range(1..=600))]
    load_secs: Option<u64>,
    /// Figure 4: peers registered [default: 100000].
    #[arg(long, env = "HCHAT_BENCH_SCALE_PEERS", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    scale_peers: Option<u64>,
    /// Figure 4: channels they are spread over [default: 1000].
    #[arg(long, env = "HCHAT_BENCH_SCALE_CHANNELS", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    scale_channels: Option<u64>,
    /// Figure 4: the lease TTL, in seconds, of the tracker whose peers are left to expire [default: 60].
    #[arg(long, env = "HCHAT_BENCH_SCALE_TTL", value_parser = clap::value_parser!(u64).range(1..=3_600))]
    scale_ttl: Option<u64>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OnlyFigure {
    Dm,
    Fanout,
    Tracker,
    Scale,
}

fn svg_path(s: &str) -> Result<std::path::PathBuf, String> {
    if s.ends_with(".svg") {
        Ok(s.into())
    } else {
        Err(format!(
            "{s} is not an .svg file name; write e.g. --plot docs/bench.svg"
        ))
    }
}

/// Parses the command line. A usage mistake is one line on stderr saying what is wrong and where help is, and
/// exit code 2, which scripts rely on (docs/PROTOCOL.md, "Command line"; clap's own report spans several lines).
fn parse_args() -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            Err(ExitCode::from(2))
        }
        Err(e) => {
            let text = e.render().to_string();
            let what: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let what = what.join(" ");
            let what = what.strip_prefix("error: ").unwrap_or(&what);
            let role = std::env::args()
                .nth(1)
                .filter(|a| ["tracker", "peer", "demo", "bench"].contains(&a.as_str()));
            let help = role
                .map(|r| format!("hchat {r} --help"))
                .unwrap_or_else(|| "hchat --help".into());
            eprintln!("hchat: {what} (see '{help}')");
            Err(ExitCode::from(2))
        }
    }
}

fn main() -> ExitCode {
    let cli = match parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let default_level = match cli.role {
        Role::Tracker(_) => "info",
        _ => "warn",
    };
    let filter = cli.log.clone().unwrap_or_else(|| default_level.to_string());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    raise_open_files_limit();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hchat: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.role {
            Role::Tracker(a) => run_tracker(a).await,
            Role::Peer(a) => run_peer(a).await,
            Role::Demo => hchat::demo::run().await,
            Role::Bench(a) => run_bench(a).await,
        }
    });
    // Do not wait for a blocked stdin reader.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hchat: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft limit on open files to the hard one. Every connection is a descriptor; under a common default
/// soft limit (1,024) a flood of connections took the last ones, and the node could then neither accept nor reach
/// its tracker, though the hard limit allowed many more.
fn raise_open_files_limit() {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        if limit.current == limit.maximum {
            return;
        }
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => tracing::debug!(
                "raised the limit on open files from {:?} to {:?}",
                limit.current,
                limit.maximum
            ),
            Err(e) => tracing::warn!(
                "cannot raise the limit on open files from {:?} to {:?}: {e}",
                limit.current,
                limit.maximum
            ),
        }
    }
}

async fn run_tracker(a: TrackerArgs) -> anyhow::Result<()> {
    let mut config = TrackerConfig {
        ip: a.ip,
        port: a.port,
        peer_ttl: Duration::from_secs(a.peer_ttl),
        mailbox_limit: a.mailbox_limit as usize,
        quotas: a.quotas.quotas(),
        storage: a.data.storage("tracker"),
        quic_port: a.quic_port,
        ..TrackerConfig::default()
    };
    config.limits = a.limits.server_limits();
    let tracker = Tracker::start(config)
        .await
        .with_context(|| format!("the tracker could not start on {}:{}", a.ip, a.port))?;
    let _announcement = announce_tracker(a.no_mdns, &tracker);
    let key = tracker.public_key();
    // One write of all three lines, and no panic if it fails: a parent that reads up to `listening on` and then
    // closes the pipe (the benchmark does) must not kill the tracker (`print!` writes piece by piece and panics).
    let start = format!(
        "listening on {}\nsessions on {}/udp\ntracker key {key} fingerprint {}\n",
        tracker.local_addr(),
        tracker.session_addr(),
        key.fingerprint()
    );
    let mut out = std::io::stdout().lock();
    let _ = std::io::Write::write_all(&mut out, start.as_bytes())
        .and_then(|()| std::io::Write::flush(&mut out));
    drop(out);
    let token = tracker.shutdown_token();
    tokio::select! {
        _ = hchat::shutdown_signal() => tracing::info!("stopping"),
        _ = token.cancelled() => {}
    }
    tracker.shutdown().await;
    Ok(())
}

/// Announces the tracker on the LAN by mDNS (docs/PROTOCOL.md, "Finding a tracker on the LAN"), unless told not
/// to or bound to loopback, where no other host could reach it anyway. Withdrawn when dropped.
fn announce_tracker(no_mdns: bool, tracker: &Tracker) -> Option<hchat::discovery::Announcement> {
    let http = tracker.local_addr();
    if no_mdns {
        tracing::info!("not announced on the LAN (--no-mdns)");
        return None;
    }
    if http.ip().is_loopback() {
        tracing::info!(
            "not announced on the LAN: bound to loopback {http} (--ip of a LAN interface, or 0.0.0.0, announces it)"
        );
        return None;
    }
    let quic_port = tracker.session_addr().port();
    match hchat::discovery::announce(http, quic_port, &tracker.public_key()) {
        Ok(a) => {
            tracing::info!(
                "announced on the LAN as {} (mDNS)",
                hchat::discovery::SERVICE_TYPE
            );
            Some(a)
        }
        Err(e) => {
            tracing::warn!("cannot announce on the LAN: {e}");
            None
        }
    }
}

/// The address the tracker is at when none is given and none is found.
const DEFAULT_TRACKER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9001);

/// The tracker to register with and the key it must prove: the one given (`--tracker-ip`/`--tracker-port`: no
/// browsing), else one found on the LAN by mDNS (pinned to the fingerprint it announced), else 127.0.0.1:9001.
/// Prints one line saying what was found.
async fn find_tracker(
    a: &TrackerChoice,
    storage: &Storage,
) -> anyhow::Result<(SocketAddr, Option<hchat::peer::known_trackers::TrackerKey>)> {
    use hchat::discovery::{self, Found};
    use hchat::peer::known_trackers::{TrackerKey, pinned_key};
    if a.tracker_ip.is_some() || a.tracker_port.is_some() || a.no_mdns {
        let port = a.tracker_port.unwrap_or(DEFAULT_TRACKER.port());
        let addr = match a.tracker_ip {
            Some(ip) => ip.with_port(port),
            None => SocketAddr::new(DEFAULT_TRACKER.ip(), port),
        };
        return Ok((addr, a.tracker_key.clone()));
    }
    let wanted = a.tracker_key.as_ref().map(|k| match k {
        TrackerKey::Key(k) => discovery::fingerprint_hex(k),
        TrackerKey::Fingerprint(f) | TrackerKey::Announced(f) => f.clone(),
    });
    let browsed = discovery::browse(
        discovery::BROWSE_FOR,
        discovery::MORE_WITHIN,
        wanted.as_deref(),
    );
    let found = match browsed.await {
        Ok(found) => found,
        Err(e) => {
            hchat::cli::print_line(&format!(
                "* cannot look for a tracker on the LAN ({e}); trying {DEFAULT_TRACKER}"
            ))?;
            return Ok((DEFAULT_TRACKER, a.tracker_key.clone()));
        }
    };
    let pinned = |f: &Found| match storage {
        Storage::Dir(dir) => {
            pinned_key(dir, f.addr).is_some_and(|k| discovery::fingerprint_hex(&k) == f.fingerprint)
        }
        Storage::Memory => false,
    };
    match discovery::choose(&found, wanted.as_deref(), pinned) {
        Err(line) => anyhow::bail!(line),
        Ok(None) => {
            hchat::cli::print_line(&format!(
                "* no tracker found on the LAN in {} s (mDNS); trying {DEFAULT_TRACKER} (--tracker-ip gives one)",
                discovery::BROWSE_FOR.as_secs()
            ))?;
            Ok((DEFAULT_TRACKER, a.tracker_key.clone()))
        }
        Ok(Some(taken)) => {
            hchat::cli::print_line(&discovery::taken_line(&found, taken))?;
            let key = a
                .tracker_key
                .clone()
                .unwrap_or_else(|| TrackerKey::Announced(taken.fingerprint.clone()));
            Ok((taken.addr, Some(key)))
        }
    }
}

async fn run_peer(a: PeerArgs) -> anyhow::Result<()> {
    let storage = a.data.storage(a.name.as_str());
    let (tracker, tracker_key) = find_tracker(&a.tracker, &storage).await?;
    let key_file = match &storage {
        Storage::Dir(dir) => dir.join(hchat::identity::KEY_FILE).display().to_string(),
        Storage::Memory => "memory only: a new one at each start".to_string(),
    };
    let web = hchat::web::start(
        PeerConfig {
            name: a.name.clone(),
            ip: a.ip,
            port: a.port,
            advertise_ip: a.advertise_ip,
            tracker,
            token: a.token,
            limits: a.limits.server_limits(),
            storage,
            identity: None,
            tracker_key,
            quic_port: a.quic_port.unwrap_or_default(),
            force_relay: a.force_relay,
        },
        Duration::from_secs(a.web_link_ttl),
    )
    .await
    .with_context(|| format!("{} could not start", a.name))?;
    let node = web.node().clone();
    say(&node, &format!("* listening on {}", node.local_addr())).await?;

    say(&node, &format!("* web chat: {}", web.chat_url())).await?;
    say(&node, &format!("* {}", hchat::cli::web_link_note(&web))).await?;
    let identity = format!("* identity {} (key: {key_file})", node.public_key());
    say(&node, &identity).await?;
    if let Some(at) = node.session_addr() {
        say(&node, &format!("* sessions on udp {at}")).await?;
    }
    if node.local_addr().ip() == IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        || !node.local_addr().ip().is_loopback()
    {
        let token = format!(
            "* others on your network act as you only with the token: {}",
            node.token()
        );
        say(&node, &token).await?;
    }
    let mut current = None;
    if let Some(c) = a.join {
        match node.join(&c).await {
            Ok(n) => {
                say(&node, &format!("* joined #{c} ({n} online)")).await?;
                current = Some(c);
            }
            Err(e) => say(&node, &format!("* cannot join #{c}: {e}")).await?,
        }
    }
    let rejoined = node.joined();
    if current.is_none()
        && let Some(first) = rejoined.first()
    {
        let list: Vec<String> = rejoined.iter().map(|c| format!("#{c}")).collect();
        let back = format!(
            "* back in {} from last time; you are talking in #{first}",
            list.join(", ")
        );
        say(&node, &back).await?;
        current = Some(first.clone());
    }
    hchat::cli::run(web, current).await
}

/// Prints a line of the peer's start-up; if stdout cannot be written, stops the node (nobody would see it).
async fn say(node: &Node, line: &str) -> anyhow::Result<()> {
    if let Err(e) = hchat::cli::print_line(line) {
        node.shutdown().await;
        anyhow::bail!("cannot write to stdout ({e}); the peer stopped");
    }
    Ok(())
}

async fn run_bench(a: BenchArgs) -> anyhow::Result<()> {
    use hchat::bench::{Figure, Options, Settings};
    let mut s = if a.quick {
        Settings::quick()
    } else {
        Settings::full()
    };
    let set = |v: Option<u64>, into: &mut usize| {
        if let Some(v) = v {
            *into = v as usize;
        }
    };
    set(a.dm_count, &mut s.dm_count);
    set(a.members, &mut s.fanout_members);
    set(a.fanout_count, &mut s.fanout_count);
    set(a.registered, &mut s.registered_peers);
    set(a.connections, &mut s.load_connections);
    set(a.scale_peers, &mut s.scale_peers);
    set(a.scale_channels, &mut s.scale_channels);
    s.dm_rate = a.dm_rate.unwrap_or(s.dm_rate);
    s.load_secs = a.load_secs.map_or(s.load_secs, |v| v as f64);
    s.scale_ttl_secs = a.scale_ttl.unwrap_or(s.scale_ttl_secs);
    let opts = Options {
        settings: s,
        compare: a.compare,
        strict: std::env::var("CI").is_ok_and(|v| v == "true"),
        only: a.only.map(|f| match f {
            OnlyFigure::Dm => Figure::Dm,
            OnlyFigure::Fanout => Figure::Fanout,
            OnlyFigure::Tracker => Figure::Tracker,
            OnlyFigure::Scale => Figure::Scale,
        }),
    };
    // Ctrl-C drops the run, and with it every server and node it started (each is stopped when dropped).
    let report = tokio::select! {
        r = hchat::bench::run(opts) => r?,
        _ = hchat::shutdown_signal() => anyhow::bail!("interrupted; every server the benchmark started is stopped"),
    };
    if let Some(path) = &a.plot {
        report.plot(path)?;
        eprintln!("bench: wrote {}", path.display());
    }
    if a.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
