//! Shared by the integration tests: start the real `hchat` binary as a tracker or a peer on port 0, talk to its
//! stdin/stdout over pipes and to its HTTP API, and wait on conditions with deadlines (never a bare sleep).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The default deadline for something that should happen "at once".
pub const SOON: Duration = Duration::from_secs(10);

/// The `hchat` binary. A process started without `--data-dir` keeps its state in a fresh folder under the build's
/// scratch space, never in the user's home.
pub fn hchat() -> Command {
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
pub fn data_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hchat-test")
        .tempdir()
        .expect("a temp dir")
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

/// Waits until `cond` holds, checking every 20 ms, or panics after `deadline` saying what was awaited.
pub fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The lines a child process printed on one stream, collected by a reader thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Lines {
    fn collect(stream: impl std::io::Read + Send + 'static, echo: &'static str) -> Lines {
        let lines = Lines::default();
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("HCHAT_TEST_ECHO").is_some() {
                    eprintln!("{echo}| {line}");
                }
                let (m, cv) = &*l.0;
                m.lock().unwrap().push(line);
                cv.notify_all();
            }
        });
        lines
    }

    pub fn all(&self) -> Vec<String> {
        self.0.0.lock().unwrap().clone()
    }

    /// Waits for a line matching `pred` and returns it.
    pub fn wait_for(&self, what: &str, deadline: Duration, pred: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + deadline;
        let (m, cv) = &*self.0;
        let mut lines = m.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().find(|l| pred(l)) {
                return l.clone();
            }
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out after {deadline:?} waiting for {what}; lines so far:\n{}",
                lines.join("\n")
            );
            lines = cv.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Like [`Lines::wait_for`], but `None` instead of a panic at the deadline.
    pub fn find_within(&self, deadline: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let end = Instant::now() + deadline;
        let (m, cv) = &*self.0;
        let mut lines = m.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().find(|l| pred(l)) {
                return Some(l.clone());
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            lines = cv.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Waits for a line equal to `line`.
    pub fn wait_line(&self, line: &str) -> String {
        self.wait_for(&format!("the line {line:?}"), SOON, |l| l == line)
    }

    pub fn count(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.0.0.lock().unwrap().iter().filter(|l| pred(l)).count()
    }
}

/// A running `hchat` process, killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    pub out: Lines,
    pub err: Lines,
    pub addr: SocketAddr,
    _data: Option<tempfile::TempDir>,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, data: Option<tempfile::TempDir>) -> Proc {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("the hchat binary starts");
        let out = Lines::collect(
            child.stdout.take().unwrap(),
            Box::leak(format!("{name}:out").into_boxed_str()),
        );
        let err = Lines::collect(
            child.stderr.take().unwrap(),
            Box::leak(format!("{name}:err").into_boxed_str()),
        );
        let stdin = child.stdin.take();
        let end = Instant::now() + SOON;
        let line = loop {
            if let Some(l) =
                out.find_within(Duration::from_millis(50), |l| l.contains("listening on "))
            {
                break l;
            }
            if let Some(status) = child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50)); // let the reader threads take the last lines
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
    pub fn tracker(extra: &[&str]) -> Proc {
        let mut cmd = hchat();
        cmd.args(["tracker", "--port", "0"]).args(extra);
        if !extra.contains(&"--ip") {
            cmd.args(["--ip", "127.0.0.1"]);
        }
        let data = with_data_dir(&mut cmd, extra);
        Proc::spawn("tracker", cmd, data)
    }

    /// `hchat tracker` on a given port (to restart one where peers expect it).
    pub fn tracker_on(port: u16, extra: &[&str]) -> Proc {
        let mut cmd = hchat();
        cmd.args(["tracker", "--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(extra);
        let data = with_data_dir(&mut cmd, extra);
        Proc::spawn("tracker", cmd, data)
    }

    /// `hchat peer --name NAME --port 0` registered with `tracker`, with extra arguments.
    pub fn peer(name: &str, tracker: SocketAddr, extra: &[&str]) -> Proc {
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

    /// Types a line into the process's stdin.
    pub fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").expect("the process reads its stdin");
        stdin.flush().unwrap();
    }

    /// Closes stdin (EOF).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no goodbye to anyone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
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

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking HTTP client for the tests.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .unwrap()
}

/// GETs a JSON answer, asserting its status.
pub fn get_json(url: &str, status: u16) -> serde_json::Value {
    let r = http().get(url).send().unwrap();
    assert_eq!(r.status().as_u16(), status, "GET {url}");
    r.json().unwrap()
}

/// POSTs a raw body and returns status and JSON answer.
pub fn post_raw(url: &str, body: impl Into<reqwest::blocking::Body>) -> (u16, serde_json::Value) {
    let r = http()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("POST {url}: answer is not JSON: {text:?}"));
    (status, json)
}

/// POSTs JSON and returns status and JSON answer.
pub fn post_json(url: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    post_raw(url, body.to_string())
}

/// The names in a `{"peers":[{"name"..}]}` answer, sorted.
pub fn names(v: &serde_json::Value) -> Vec<String> {
    let mut n: Vec<String> = v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

/// GETs a JSON answer whatever its status; `None` if nothing answered.
pub fn try_get_json(url: &str) -> Option<(u16, serde_json::Value)> {
    let r = http().get(url).send().ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().ok()?))
}

/// The live members of a channel as a tracker lists them (empty while the channel is unknown).
pub fn members(tracker: &Proc, channel: &str) -> Vec<String> {
    match try_get_json(&tracker.url(&format!("/get-list?channel={channel}"))) {
        Some((200, v)) => names(&v),
        _ => Vec::new(),
    }
}
