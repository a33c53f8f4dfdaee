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

/// The arguments of a peer that joins #general and keeps its state in `dir` (to restart it on the same data).
pub fn in_general_on(dir: &tempfile::TempDir) -> [&str; 4] {
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

/// The lines a child process printed on one stream, collected by a reader thread; and whether the stream has
/// ended (the reader has taken every line there was).
#[derive(Clone, Default)]
pub struct Lines(
    Arc<(Mutex<Vec<String>>, Condvar)>,
    Arc<(Mutex<bool>, Condvar)>,
);

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
            let (ended, cv) = &*l.1;
            *ended.lock().unwrap() = true;
            cv.notify_all();
        });
        lines
    }

    /// Waits until the stream has ended (the process closed it, usually by exiting), so every line it printed is
    /// here.
    pub fn wait_ended(&self, deadline: Duration) {
        let (ended, cv) = &*self.1;
        let (guard, timeout) = cv
            .wait_timeout_while(ended.lock().unwrap(), deadline, |e| !*e)
            .unwrap();
        assert!(
            *guard || !timeout.timed_out(),
            "the stream did not end within {deadline:?}"
        );
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

    /// Adds a line (for collectors other than a child's output).
    pub fn push(&self, line: String) {
        let (m, cv) = &*self.0;
        m.lock().unwrap().push(line);
        cv.notify_all();
    }

    /// Waits up to `deadline` for more than `seen` lines; returns how many there are.
    pub fn wait_more(&self, seen: usize, deadline: Duration) -> usize {
        let (m, cv) = &*self.0;
        let lines = m.lock().unwrap();
        let (lines, _) = cv
            .wait_timeout_while(lines, deadline, |l| l.len() <= seen)
            .unwrap();
        lines.len()
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

/// Starts `cmd` with its stdin, stdout and stderr on pipes, collecting each output stream's lines (echoed as
/// `name:out|` and `name:err|` with `HCHAT_TEST_ECHO` set).
fn spawn_piped(name: &str, mut cmd: Command) -> (Child, Option<ChildStdin>, Lines, Lines) {
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

    /// This peer's own identity, read from its data dir: to speak the protocol by hand as this very peer.
    pub fn signer(&self) -> Signer {
        let dir = self
            ._data
            .as_ref()
            .expect("a peer started with a test data dir (not --in-memory or its own --data-dir)");
        Signer::from_data_dir(&self.name, dir.path())
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

/// A blocking HTTP client whose connections come from `local` (any 127.x.y.z is this host on Linux), so a test
/// can play several client hosts at once.
pub fn http_from(local: std::net::IpAddr) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .local_address(local)
        .no_proxy()
        .build()
        .unwrap()
}

/// `n` TCP connections to `to`, each bound to `local` first (std cannot bind before connecting; tokio can).
pub fn connect_from(
    local: std::net::IpAddr,
    to: SocketAddr,
    n: usize,
) -> std::io::Result<Vec<std::net::TcpStream>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(local, 0))?;
            let stream = socket.connect(to).await?.into_std()?;
            stream.set_nonblocking(false)?;
            out.push(stream);
        }
        Ok(out)
    })
}

/// GETs a JSON answer, asserting its status.
pub fn get_json(url: &str, status: u16) -> serde_json::Value {
    let r = http().get(url).send().unwrap();
    assert_eq!(r.status().as_u16(), status, "GET {url}");
    r.json().unwrap()
}

/// The status of an answer and its body, which must be JSON (`what url` names the request in the failure).
pub fn status_and_json(
    what: &str,
    url: &str,
    r: reqwest::blocking::Response,
) -> (u16, serde_json::Value) {
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{what} {url}: answer is not JSON: {text:?}"));
    (status, json)
}

/// POSTs a raw body and returns status and JSON answer.
pub fn post_raw(url: &str, body: impl Into<reqwest::blocking::Body>) -> (u16, serde_json::Value) {
    let r = http()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap();
    status_and_json("POST", url, r)
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

/// The web chat's address with the token, as a peer prints it at start (`* web chat: http://…/chat?token=…`).
pub fn chat_url(peer: &Proc) -> String {
    peer.out
        .wait_for("the web chat's address", SOON, |l| {
            l.starts_with("* web chat: ")
        })
        .trim_start_matches("* web chat: ")
        .to_string()
}

/// What a browser test needs, or why it cannot run: Node.js, `npm ci` in tests/browser, Debian's chromium.
/// `Ok(None)` when the user asked to skip browser tests (`HCHAT_SKIP_BROWSER=1`, refused under `CI=true`).
pub fn browser_tools() -> Result<Option<std::path::PathBuf>, String> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let skip = std::env::var("HCHAT_SKIP_BROWSER").is_ok_and(|v| v == "1");
    if skip && !ci {
        eprintln!("SKIPPED: browser test (HCHAT_SKIP_BROWSER=1)");
        return Ok(None);
    }
    let missing = |what: String| {
        if ci {
            format!("{what} (CI=true: the browser test cannot be skipped)")
        } else {
            format!("{what}; set HCHAT_SKIP_BROWSER=1 to skip it")
        }
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Err(missing(
            "the browser test needs Node.js: apt-get install nodejs npm (or run .ci/run)".into(),
        ));
    }
    if !dir.join("node_modules/playwright-core").is_dir() {
        return Err(missing(format!(
            "the browser test needs playwright-core: run `npm ci` in {} (or .ci/run)",
            dir.display()
        )));
    }
    let chromium = std::env::var("HCHAT_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !std::path::Path::new(&chromium).exists() {
        return Err(missing(format!(
            "the browser test needs Debian's chromium at {chromium}: apt-get install chromium (or run .ci/run)"
        )));
    }
    Ok(Some(dir))
}

/// A helper program (a browser script) driven over its stdin/stdout, killed when dropped.
pub struct Driver {
    child: Child,
    stdin: Option<ChildStdin>,
    pub out: Lines,
    pub err: Lines,
}

impl Driver {
    pub fn spawn(name: &str, cmd: Command) -> Driver {
        let (child, stdin, out, err) = spawn_piped(name, cmd);
        Driver {
            child,
            stdin,
            out,
            err,
        }
    }

    /// Sends a line to the program.
    pub fn answer(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").expect("the program reads its stdin");
        stdin.flush().unwrap();
    }

    /// The exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Everything it printed, for a failure message.
    pub fn transcript(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.out.all().join("\n"),
            self.err.all().join("\n")
        )
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client of a peer's `GET /api/events` over a plain socket (HTTP/1.0, so the stream is the raw body). Each
/// event becomes one line `ID|JSON` (`-|JSON` for an event without id) in `events`; dropping it closes the
/// connection, as a browser losing its stream would.
pub struct EventStream {
    pub events: Lines,
    socket: std::net::TcpStream,
}

impl EventStream {
    /// Opens `path_and_query` on `addr` with extra request headers.
    pub fn open(addr: SocketAddr, path_and_query: &str, headers: &[(&str, &str)]) -> EventStream {
        let mut socket = std::net::TcpStream::connect(addr).expect("the node accepts");
        let mut req = format!("GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        socket.write_all(req.as_bytes()).unwrap();
        let events = Lines::default();
        let sink = events.clone();
        let reader = socket.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(reader).lines();
            let status = lines.next().and_then(Result::ok).unwrap_or_default();
            sink.push(format!("status {status}"));
            for line in lines.by_ref() {
                match line {
                    Ok(l) if l.is_empty() => break,
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
            let (mut id, mut data) = (String::from("-"), String::new());
            for line in lines {
                let Ok(line) = line else { return };
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = v.to_string();
                } else if line.is_empty() && !data.is_empty() {
                    sink.push(format!("{id}|{data}"));
                    (id, data) = (String::from("-"), String::new());
                } else if line.is_empty() {
                    id = String::from("-");
                }
            }
        });
        EventStream { events, socket }
    }

    /// The events so far as (id, JSON), in order, without the status line.
    pub fn parsed(&self) -> Vec<(Option<u64>, serde_json::Value)> {
        self.events
            .all()
            .into_iter()
            .filter(|l| !l.starts_with("status "))
            .map(|l| {
                let (id, json) = l.split_once('|').unwrap();
                (id.parse().ok(), serde_json::from_str(json).unwrap())
            })
            .collect()
    }

    /// Waits for an event whose JSON contains `needle`.
    pub fn wait_for(&self, needle: &str) {
        self.events
            .wait_for(&format!("an event with {needle}"), SOON, |l| {
                l.contains(needle)
            });
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

/// A second host on a LAN of our own: a network namespace joined to this one by a veth pair, so a test can call a
/// node from a non-loopback address without sending a packet anywhere but this machine. Needs root and
/// iproute2 (`ip`) and curl; removed again on drop.
pub struct LanHost {
    ns: String,
    /// The address the nodes of the test (in this namespace) are reached at from the LAN host.
    pub node_ip: std::net::Ipv4Addr,
    /// The LAN host's own address: the source of its requests.
    pub own_ip: std::net::Ipv4Addr,
}

impl LanHost {
    /// Creates the namespace, or says why it cannot.
    pub fn create() -> Result<LanHost, String> {
        let id = std::process::id();
        let ns = format!("hchat-lan-{id}");
        let (a, b) = (((id >> 8) % 250) as u8 + 1, (id % 64) as u8 * 4);
        let node_ip = std::net::Ipv4Addr::new(10, 213, a, b + 1);
        let own_ip = std::net::Ipv4Addr::new(10, 213, a, b + 2);
        let host_if = format!("hl{id}");
        let lan = LanHost {
            ns,
            node_ip,
            own_ip,
        };
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), lan.ns.clone()],
            vec![
                "link".into(),
                "add".into(),
                host_if.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                "eth0".into(),
                "netns".into(),
                lan.ns.clone(),
            ],
            vec![
                "addr".into(),
                "add".into(),
                format!("{node_ip}/30"),
                "dev".into(),
                host_if.clone(),
            ],
            vec!["link".into(), "set".into(), host_if.clone(), "up".into()],
            vec![
                "-n".into(),
                lan.ns.clone(),
                "addr".into(),
                "add".into(),
                format!("{own_ip}/30"),
                "dev".into(),
                "eth0".into(),
            ],
            vec![
                "-n".into(),
                lan.ns.clone(),
                "link".into(),
                "set".into(),
                "eth0".into(),
                "up".into(),
            ],
            vec![
                "-n".into(),
                lan.ns.clone(),
                "link".into(),
                "set".into(),
                "lo".into(),
                "up".into(),
            ],
        ];
        for args in steps {
            let out = Command::new("ip")
                .args(&args)
                .output()
                .map_err(|e| format!("cannot run `ip` (apt-get install iproute2): {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "`ip {}` failed (needs root): {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(lan)
    }

    /// One HTTP request from the LAN host, with curl inside the namespace: the status and the body (for an
    /// event stream, which never ends, the status alone).
    pub fn request(
        &self,
        method: &str,
        url: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        let body_file = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.ns,
            "curl",
            "-s",
            "--noproxy",
            "*",
            "-m",
            "3",
            "-X",
            method,
        ]);
        cmd.args([
            "-o",
            body_file.path().to_str().unwrap(),
            "-w",
            "%{http_code}",
        ]);
        for (k, v) in headers {
            cmd.args(["-H", &format!("{k}: {v}")]);
        }
        if let Some(b) = body {
            cmd.args(["--data-binary", b]);
        }
        cmd.arg(url);
        let out = cmd
            .output()
            .expect("curl runs in the LAN namespace (apt-get install curl)");
        let status: u16 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| {
                panic!(
                    "no HTTP status from curl for {method} {url}: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        (
            status,
            std::fs::read_to_string(body_file.path()).unwrap_or_default(),
        )
    }
}

impl Drop for LanHost {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth pair, and with it ours.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// A test acting as a peer over raw HTTP, with its own identity: it signs its registration, its tracker requests
/// (`Hchat-Auth`) and its messages with the library's own code, as a real peer does, so a test can speak the
/// protocol by hand and can also break it on purpose (sign as one name, claim another).
pub struct Signer {
    pub name: String,
    identity: hchat::identity::Identity,
}

impl Signer {
    pub fn new(name: &str) -> Signer {
        Signer {
            name: name.to_string(),
            identity: hchat::identity::Identity::ephemeral(),
        }
    }

    /// The identity a peer process keeps in `dir` (its `identity.key`): to act as that very peer.
    pub fn from_data_dir(name: &str, dir: &std::path::Path) -> Signer {
        Signer {
            name: name.to_string(),
            identity: hchat::identity::Identity::load_or_create(dir)
                .expect("a readable identity.key"),
        }
    }

    fn peer_name(&self) -> hchat::proto::PeerName {
        hchat::proto::PeerName::new(self.name.as_str()).expect("a valid test name")
    }

    /// The public key, as the wire carries it.
    pub fn key(&self) -> String {
        self.identity.public_key().to_string()
    }

    /// A registration body for `ip:port`, stamped now, with a fresh nonce, signed.
    pub fn registration(&self, ip: &str, port: u16) -> serde_json::Value {
        let req = self
            .identity
            .register_request(&self.peer_name(), ip.parse().unwrap(), port);
        serde_json::to_value(req).unwrap()
    }

    /// Registers at the tracker as `127.0.0.1:port`, asserting it is accepted.
    pub fn register(&self, tracker: &Proc, port: u16) {
        let (status, body) = post_json(
            &tracker.url("/submit-info"),
            &self.registration("127.0.0.1", port),
        );
        assert_eq!(status, 200, "{} registers: {body}", self.name);
    }

    /// The `Hchat-Auth` value for `method url` with `body`, signed as this peer.
    pub fn auth(&self, method: &str, url: &str, body: &[u8]) -> String {
        let url = reqwest::Url::parse(url).unwrap();
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        self.identity
            .auth_header(&self.peer_name(), method, &target, body)
    }

    /// POSTs a raw body signed as this peer; returns status and JSON answer.
    pub fn post_raw(&self, url: &str, body: String) -> (u16, serde_json::Value) {
        let auth = self.auth("POST", url, body.as_bytes());
        let r = http()
            .post(url)
            .header("content-type", "application/json")
            .header("hchat-auth", auth)
            .body(body)
            .send()
            .unwrap();
        status_and_json("POST", url, r)
    }

    /// GETs `url` signed as this peer (for answers that depend on who asks); returns status and JSON answer.
    pub fn get(&self, url: &str) -> (u16, serde_json::Value) {
        let r = http()
            .get(url)
            .header("hchat-auth", self.auth("GET", url, b""))
            .send()
            .unwrap();
        status_and_json("GET", url, r)
    }

    /// POSTs JSON signed as this peer.
    pub fn post(&self, url: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        self.post_raw(url, body.to_string())
    }

    /// Sets `sig` on a message given as JSON, whatever its `from` says (to forge one, sign another's).
    pub fn sign(&self, msg: serde_json::Value) -> serde_json::Value {
        let mut m: hchat::proto::ChatMessage = serde_json::from_value(msg).unwrap();
        self.identity.sign_message(&mut m);
        serde_json::to_value(m).unwrap()
    }

    /// A new message from this signer to `dest` (`{"channel":..}` or `{"to":..}`), signed.
    pub fn message(&self, dest: serde_json::Value, text: &str) -> serde_json::Value {
        let mut m = serde_json::json!({
            "id": uuid::Uuid::now_v7(), "from": self.name, "text": text, "ts": hchat::proto::now_ms()
        });
        m.as_object_mut()
            .unwrap()
            .extend(dest.as_object().unwrap().clone());
        self.sign(m)
    }
}

/// A plain TCP listener on loopback that answers every request with 200 and `body` (JSON), whatever was asked:
/// what a dishonest member's node serves (a canned catch-up page, say). Returns its port.
pub fn canned_json_server(body: serde_json::Value) -> u16 {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = body.to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 8192];
            let _ = stream.read(&mut request);
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    port
}

impl Signer {
    /// POSTs JSON signed as this peer from the client address `local` (another host to a tracker on 127.0.0.1).
    pub fn post_from(
        &self,
        local: std::net::IpAddr,
        url: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let body = body.to_string();
        let r = http_from(local)
            .post(url)
            .header("content-type", "application/json")
            .header("hchat-auth", self.auth("POST", url, body.as_bytes()))
            .body(body)
            .send()
            .unwrap();
        status_and_json("POST", url, r)
    }

    /// Registers from the client address `local`, advertising it; returns status and answer.
    pub fn register_from(
        &self,
        local: std::net::IpAddr,
        tracker: &Proc,
        port: u16,
    ) -> (u16, serde_json::Value) {
        let url = tracker.url("/submit-info");
        let r = http_from(local)
            .post(&url)
            .json(&self.registration(&local.to_string(), port))
            .send()
            .unwrap();
        status_and_json("POST", &url, r)
    }
}

/// Starts any command that runs an `hchat` node (under a wrapper such as `prlimit`, say) as a [`Proc`], once it
/// prints where it listens.
pub fn spawn_node(name: &str, cmd: Command) -> Proc {
    Proc::spawn(name, cmd, None)
}
