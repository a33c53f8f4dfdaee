//! The real `hchat` binary as a tracker or a peer on port 0, each in a temp data dir: its stdin, its stdout and
//! stderr over pipes, its address, killed when dropped. For what only a process shows: the CLI, exit codes,
//! kill -9 and restarts.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{Lines, SOON, Signer};

/// The `hchat` binary. A process started without `--data-dir` keeps its state in a fresh folder under the build's
/// scratch space, never in the user's home.
pub(crate) fn hchat() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hchat"));
    let home = tempfile::Builder::new()
        .prefix("hchat-data-home")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a scratch folder")
        .keep();
    cmd.env("XDG_DATA_HOME", home);
    cmd
}

/// A folder for a node's data, deleted when dropped.
pub(crate) fn data_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hchat-test")
        .tempdir()
        .expect("a temp dir")
}

/// The arguments of a peer that joins #general and keeps its state in `dir` (to restart it on the same data).
pub(crate) fn in_general_on(dir: &tempfile::TempDir) -> [&str; 4] {
    [
        "--join",
        "general",
        "--data-dir",
        dir.path().to_str().expect("a UTF-8 temp path"),
    ]
}

/// Adds `--data-dir` with a fresh temp folder unless `extra` names one; the folder lives as long as the process.
fn with_data_dir(cmd: &mut Command, extra: &[&str]) -> Option<tempfile::TempDir> {
    if extra.contains(&"--data-dir") || extra.contains(&"--in-memory") {
        return None;
    }
    let dir = data_dir();
    cmd.arg("--data-dir").arg(dir.path());
    Some(dir)
}

/// The key file of the last tracker started on each port (see [`Proc::tracker_on`]).
fn lock_keys() -> std::sync::MutexGuard<'static, std::collections::HashMap<u16, Vec<u8>>> {
    static KEYS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<u16, Vec<u8>>>> =
        std::sync::OnceLock::new();
    KEYS.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

fn remember_tracker_key(p: &Proc, extra: &[&str]) {
    let dir = match extra.iter().position(|a| *a == "--data-dir") {
        Some(i) => std::path::PathBuf::from(extra[i + 1]),
        None => match &p._data {
            Some(d) => d.path().to_path_buf(),
            None => return,
        },
    };
    if let Ok(key) = std::fs::read(dir.join("identity.key")) {
        lock_keys().insert(p.addr.port(), key);
    }
}

/// A running `hchat` process, killed when dropped.
pub(crate) struct Proc {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    pub out: Lines,
    pub err: Lines,
    pub addr: SocketAddr,
    _data: Option<tempfile::TempDir>,
}

/// Starts `cmd` with its stdin, stdout and stderr on pipes, collecting each output stream's lines (echoed as
/// `name:out|` and `name:err|` with `HCHAT_TEST_ECHO` set).
pub(super) fn spawn_piped(
    name: &str,
    mut cmd: Command,
) -> (Child, Option<ChildStdin>, Lines, Lines) {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{name} starts: {e}"));
    let out = Lines::collect(
        child.stdout.take().unwrap(),
        Box::leak(format!("{name}:out").into_boxed_str()),
    );
    let err = Lines::collect(
        child.stderr.take().unwrap(),
        Box::leak(format!("{name}:err").into_boxed_str()),
    );
    let stdin = child.stdin.take();
    (child, stdin, out, err)
}

impl Proc {
    fn spawn(name: &str, cmd: Command, data: Option<tempfile::TempDir>) -> Proc {
        let (mut child, stdin, out, err) = spawn_piped(name, cmd);
        let end = Instant::now() + SOON;
        let line = loop {
            if let Some(l) =
                out.find_within(Duration::from_millis(50), |l| l.contains("listening on "))
            {
                break l;
            }
            if let Some(status) = child.try_wait().unwrap() {
                out.wait_ended(SOON);
                err.wait_ended(SOON);
                panic!(
                    "{name} exited ({status}) before listening; stderr:\n{}",
                    err.all().join("\n")
                );
            }
            assert!(
                Instant::now() < end,
                "{name} did not print where it listens within {SOON:?}"
            );
        };
        let addr = line
            .rsplit("listening on ")
            .next()
            .unwrap()
            .trim()
            .parse()
            .expect("an IP:PORT after 'listening on'");
        Proc {
            name: name.to_string(),
            child,
            stdin,
            out,
            err,
            addr,
            _data: data,
        }
    }

    /// `hchat tracker --port 0` with extra arguments.
    pub(crate) fn tracker(extra: &[&str]) -> Proc {
        let mut cmd = hchat();
        cmd.args(["tracker", "--port", "0"]).args(extra);
        if !extra.contains(&"--ip") {
            cmd.args(["--ip", "127.0.0.1"]);
        }
        let data = with_data_dir(&mut cmd, extra);
        let p = Proc::spawn("tracker", cmd, data);
        remember_tracker_key(&p, extra);
        p
    }

    /// `hchat tracker` on a given port (to restart one where peers expect it). Without `--data-dir` (a tracker
    /// that lost its database), the fresh data dir gets the key of the last tracker started on this port: the
    /// same tracker, restarted, which its peers pinned. A test that wants a new key passes its own `--data-dir`.
    pub(crate) fn tracker_on(port: u16, extra: &[&str]) -> Proc {
        let mut cmd = hchat();
        cmd.args(["tracker", "--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(extra);
        let data = with_data_dir(&mut cmd, extra);
        if let (Some(dir), Some(key)) = (&data, lock_keys().get(&port).cloned()) {
            std::fs::write(dir.path().join("identity.key"), key).unwrap();
        }
        let p = Proc::spawn("tracker", cmd, data);
        remember_tracker_key(&p, extra);
        p
    }

    /// `hchat peer --name NAME --port 0` registered with `tracker`, with extra arguments.
    pub(crate) fn peer(name: &str, tracker: SocketAddr, extra: &[&str]) -> Proc {
        let mut cmd = hchat();
        cmd.args(["peer", "--name", name, "--port", "0"])
            .args([
                "--tracker-ip",
                &tracker.ip().to_string(),
                "--tracker-port",
                &tracker.port().to_string(),
            ])
            .args(extra);
        if !extra.contains(&"--ip") {
            cmd.args(["--ip", "127.0.0.1"]);
        }
        let data = with_data_dir(&mut cmd, extra);
        Proc::spawn(name, cmd, data)
    }

    /// This peer's own identity, read from its data dir: to speak the protocol by hand as this very peer.
    pub(crate) fn signer(&self) -> Signer {
        let dir = self
            ._data
            .as_ref()
            .expect("a peer started with a test data dir (not --in-memory or its own --data-dir)");
        Signer::from_data_dir(&self.name, dir.path())
    }

    /// Types a line into the process's stdin.
    pub(crate) fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").expect("the process reads its stdin");
        stdin.flush().unwrap();
    }

    /// Closes stdin (EOF).
    pub(crate) fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no goodbye to anyone.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself.
    pub(crate) fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < end,
                "{} did not exit within {deadline:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` to the end and returns its output; kills it and panics if it has not exited within `deadline`.
pub(crate) fn output_within(mut cmd: Command, deadline: Duration) -> std::process::Output {
    use std::io::Read;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the hchat binary starts");
    let drain = |mut s: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = s.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let end = Instant::now() + deadline;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            let err = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
            panic!("still running after {deadline:?}; killed. stderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Starts any command that runs an `hchat` node (under a wrapper such as `prlimit`, say) as a [`Proc`], once it
/// prints where it listens.
pub(crate) fn spawn_node(name: &str, cmd: Command) -> Proc {
    Proc::spawn(name, cmd, None)
}

/// Starts `cmd` (an `hchat` node) inside a host of a namespaced LAN ([`super::netlan`]), with a fresh test data dir
/// unless `extra` names one.
pub(crate) fn spawn_in(
    host: &super::netlan::Host,
    name: &str,
    mut cmd: Command,
    extra: &[&str],
) -> Proc {
    let data = with_data_dir(&mut cmd, extra);
    Proc::spawn(name, host.command(&cmd), data)
}

/// The soft and hard limits on open files of process `pid`.
pub(crate) fn open_files_limit(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1])
}

/// Waits until the peer's CLI says it joined `#channel`.
pub(crate) fn joined(p: &Proc, channel: &str) {
    p.out
        .wait_for(&format!("{} to join #{channel}", p.name), SOON, |l| {
            l.starts_with(&format!("* joined #{channel}"))
        });
}
