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

pub fn hchat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hchat"))
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
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command) -> Proc {
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
        }
    }

    /// `hchat tracker --port 0` with extra arguments.
    pub fn tracker(extra: &[&str]) -> Proc {
        let mut cmd = hchat();
        cmd.args(["tracker", "--port", "0"]).args(extra);
        if !extra.contains(&"--ip") {
            cmd.args(["--ip", "127.0.0.1"]);
        }
        Proc::spawn("tracker", cmd)
    }

    /// `hchat tracker` on a given port (to restart one where peers expect it).
    pub fn tracker_on(port: u16, extra: &[&str]) -> Proc {
        let mut cmd = hchat();
        cmd.args(["tracker", "--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(extra);
        Proc::spawn("tracker", cmd)
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
        Proc::spawn(name, cmd)
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

/// Runs `cmd` to the end and returns its output; kills it and panics if it has not exited within `deadline`.
pub fn output_within(mut cmd: Command, deadline: Duration) -> std::process::Output {
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
