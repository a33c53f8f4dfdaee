//! The `hchat` binary: parses the command line, sets up logging, and hands over to the library.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use hchat::peer::{Node, PeerConfig};
use hchat::proto::{ChannelName, PeerName};
use hchat::storage::Storage;
use hchat::tracker::{Tracker, TrackerConfig};

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
}

#[derive(Args)]
struct TrackerArgs {
    /// Address to bind. If it is not an address of this host, 0.0.0.0 is bound instead (with a warning).
    #[arg(long, env = "HCHAT_IP", default_value = "127.0.0.1")]
    ip: IpAddr,
    /// Port to bind; 0 picks a free one (printed as `listening on IP:PORT`).
    #[arg(long, env = "HCHAT_PORT", default_value_t = 9001)]
    port: u16,
    /// Seconds after its last heartbeat that a peer disappears from every list.
    #[arg(long, env = "HCHAT_PEER_TTL", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    peer_ttl: u64,
    /// Messages the tracker holds for one offline peer; a sender is refused with 507 when it is full.
    #[arg(long, env = "HCHAT_MAILBOX_LIMIT", default_value_t = hchat::tracker::mailbox::DEFAULT_MAILBOX_LIMIT, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    mailbox_limit: u64,
    #[command(flatten)]
    data: DataArgs,
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
    /// The tracker's address.
    #[arg(long, env = "HCHAT_TRACKER_IP", default_value = "127.0.0.1")]
    tracker_ip: IpAddr,
    /// The tracker's port.
    #[arg(long, env = "HCHAT_TRACKER_PORT", default_value_t = 9001)]
    tracker_port: u16,
    /// Channel to join at start and talk in (like typing #name first).
    #[arg(long, env = "HCHAT_JOIN")]
    join: Option<ChannelName>,
    /// Secret that lets callers on other hosts act as you through the local API; random if not given.
    #[arg(long, env = "HCHAT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    data: DataArgs,
}

/// Parses the command line. A usage mistake is one line on stderr saying what is wrong and where help is, and
/// exit code 2, as CONTRACT.md fixes (clap's own report spans several lines).
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
                .filter(|a| ["tracker", "peer", "demo"].contains(&a.as_str()));
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

async fn run_tracker(a: TrackerArgs) -> anyhow::Result<()> {
    let config = TrackerConfig {
        ip: a.ip,
        port: a.port,
        peer_ttl: Duration::from_secs(a.peer_ttl),
        mailbox_limit: a.mailbox_limit as usize,
        storage: a.data.storage("tracker"),
        ..TrackerConfig::default()
    };
    let tracker = Tracker::start(config)
        .await
        .with_context(|| format!("the tracker could not start on {}:{}", a.ip, a.port))?;
    println!("listening on {}", tracker.local_addr());
    let token = tracker.shutdown_token();
    tokio::select! {
        _ = hchat::shutdown_signal() => tracing::info!("stopping"),
        _ = token.cancelled() => {}
    }
    tracker.shutdown().await;
    Ok(())
}

async fn run_peer(a: PeerArgs) -> anyhow::Result<()> {
    let tracker = SocketAddr::new(a.tracker_ip, a.tracker_port);
    let node = Node::start(PeerConfig {
        name: a.name.clone(),
        ip: a.ip,
        port: a.port,
        advertise_ip: a.advertise_ip,
        tracker,
        token: a.token,
        limits: Default::default(),
        storage: a.data.storage(a.name.as_str()),
    })
    .await
    .with_context(|| format!("{} could not start", a.name))?;
    println!("* listening on {}", node.local_addr());
    println!("* web chat: {}", node.chat_url());
    if node.local_addr().ip() == IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        || !node.local_addr().ip().is_loopback()
    {
        println!(
            "* others on your network act as you only with the token: {}",
            node.token()
        );
    }
    let mut current = None;
    if let Some(c) = a.join {
        match node.join(&c).await {
            Ok(n) => {
                println!("* joined #{c} ({n} online)");
                current = Some(c);
            }
            Err(e) => println!("* cannot join #{c}: {e}"),
        }
    }
    let rejoined = node.joined();
    if current.is_none()
        && let Some(first) = rejoined.first()
    {
        let list: Vec<String> = rejoined.iter().map(|c| format!("#{c}")).collect();
        println!(
            "* back in {} from last time; you are talking in #{first}",
            list.join(", ")
        );
        current = Some(first.clone());
    }
    hchat::cli::run(node, current).await
}
