//! The anchor servers: ngircd (IRC), mosquitto (MQTT) and nginx (static HTTP), from Debian's packages. Each is
//! started by the benchmark on a free loopback port with a config written to a temporary directory, and stopped
//! by its process id when its [`ServerProc`] is dropped: at the end of its figure, on an error, or on Ctrl-C.
//!
//! One file per server holds its config and the client the benchmark drives it with.

pub(crate) mod mosquitto;
pub(crate) mod nginx;
pub(crate) mod ngircd;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::{BenchError, Result};

/// How long a server may take to listen after it is started.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// How long a stopped server may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The servers hchat is set beside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    Ngircd,
    Mosquitto,
    Nginx,
}

impl Anchor {
    pub const ALL: [Anchor; 3] = [Anchor::Ngircd, Anchor::Mosquitto, Anchor::Nginx];

    pub fn name(self) -> &'static str {
        match self {
            Anchor::Ngircd => "ngircd",
            Anchor::Mosquitto => "mosquitto",
            Anchor::Nginx => "nginx",
        }
    }

    /// The Debian package that provides it.
    pub fn package(self) -> &'static str {
        match self {
            Anchor::Ngircd => "ngircd",
            Anchor::Mosquitto => "mosquitto",
            Anchor::Nginx => "nginx-light",
        }
    }
}

/// Whether an anchor's binary is installed.
#[derive(Debug, Clone)]
pub enum Availability {
    Found(PathBuf),
    Missing(String),
}

/// Looks for every anchor's binary on PATH and in the sbin directories (where Debian puts all three, and which a
/// non-root PATH often lacks).
pub(crate) fn locate_all() -> Vec<(Anchor, Availability)> {
    Anchor::ALL
        .iter()
        .map(|&a| {
            let found = which(a.name());
            let availability = match found {
                Some(p) => Availability::Found(p),
                None => Availability::Missing(format!(
                    "no `{}` on PATH or in /usr/sbin; apt-get install {}",
                    a.name(),
                    a.package()
                )),
            };
            (a, availability)
        })
        .collect()
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A free loopback port (bound and released at once; the server is started on it right after).
pub(crate) fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(BenchError::io("looking for a free port"))?;
    Ok(l.local_addr()
        .map_err(BenchError::io("looking for a free port"))?
        .port())
}

/// A server process the benchmark started, stopped (SIGTERM, then SIGKILL) when dropped.
pub(crate) struct ServerProc {
    pub addr: SocketAddr,
    child: Child,
    /// Its config and files; removed after the process is stopped.
    pub dir: tempfile::TempDir,
}

impl ServerProc {
    /// Starts `bin args` (a server that stays in the foreground) and waits until it accepts on `port`.
    pub(crate) async fn start(
        name: &'static str,
        bin: &Path,
        args: &[&str],
        port: u16,
        dir: tempfile::TempDir,
    ) -> Result<ServerProc> {
        let log = std::fs::File::create(dir.path().join("server.log"))
            .map_err(BenchError::io(format!("creating {name}'s log")))?;
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(BenchError::io(format!("{name}'s log")))?,
            )
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(BenchError::io(format!("starting {}", bin.display())))?;
        let mut server = ServerProc {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            child,
            dir,
        };
        let end = Instant::now() + START_DEADLINE;
        loop {
            if tokio::net::TcpStream::connect(server.addr).await.is_ok() {
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(BenchError::Setup(format!(
                    "{name} exited ({status}) before listening: {}",
                    server.log_tail()
                )));
            }
            if Instant::now() > end {
                return Err(BenchError::Setup(format!(
                    "{name} did not listen on {} within {} s: {}",
                    server.addr,
                    START_DEADLINE.as_secs(),
                    server.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().rev().take(5).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    /// Asks the server to stop (SIGTERM, which also lets nginx's master stop its workers), then kills it.
    pub(crate) async fn stop(mut self) {
        terminate(self.child.id());
        if tokio::time::timeout(STOP_GRACE, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        // Dropped without `stop` (an error or Ctrl-C): SIGTERM now; tokio's kill_on_drop sends SIGKILL too, but
        // nginx's workers would outlive a SIGKILLed master, so the polite signal goes first.
        if let Ok(None) = self.child.try_wait() {
            terminate(self.child.id());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Sends SIGTERM to `pid` (by its id, through kill(1): this crate forbids unsafe code).
pub(crate) fn terminate(pid: Option<u32>) {
    if let Some(pid) = pid {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A fresh temporary directory that other users can read (nginx's workers run as `nobody` when started by root).
pub(crate) fn temp_dir(name: &str) -> Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix(&format!("hchat-bench-{name}-"))
        .tempdir()
        .map_err(BenchError::io("creating a temporary directory"))?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(BenchError::io("opening up a temporary directory"))?;
    Ok(dir)
}

/// Writes `text` to `dir/name`.
pub(crate) fn write(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, text).map_err(BenchError::io(format!("writing {}", p.display())))?;
    Ok(p)
}

/// A TCP connection to an anchor on loopback with Nagle off (as the anchors' own configs set on their side),
/// split into a buffered reader and writer: what the IRC and MQTT clients are built on.
pub(crate) async fn connect_buffered(
    addr: std::net::SocketAddr,
    server: &str,
) -> Result<(
    tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    tokio::io::BufWriter<tokio::net::tcp::OwnedWriteHalf>,
)> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(BenchError::io(format!("connecting to {server} at {addr}")))?;
    let _ = tcp.set_nodelay(true);
    let (r, w) = tcp.into_split();
    Ok((tokio::io::BufReader::new(r), tokio::io::BufWriter::new(w)))
}
