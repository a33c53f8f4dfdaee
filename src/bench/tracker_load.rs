//! Figure 3, the tracker under load: with `registered` peers holding leases and 100 of them in one channel, how
//! many `GET /get-list` (that channel's member list) and how many lease renewals (`POST /submit-info` again) it
//! answers per second to a load generator of kept-alive connections. The anchor is nginx answering the same bytes
//! (the member list as a static file; the renewal answer as a fixed body) to the same load generator.
//!
//! The tracker runs as a child process (this binary's `tracker` role), like nginx, so the load generator never
//! shares a runtime with the server it measures.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::anchors::{nginx, terminate};
use super::http::{HttpConn, hammer, spread};
use super::stats::Throughput;
use super::{BenchError, Result, progress};
use crate::identity::Identity;
use crate::proto::PeerName;

/// Members of the channel whose list is asked for.
pub(crate) const CHANNEL_MEMBERS: usize = 100;
/// Lease TTL of the tracker under load: longer than any run, so no lease lapses while it is measured.
const LOAD_TTL_SECS: u64 = 600;
/// How long the child tracker may take to print where it listens.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// A tracker started as a child process of this binary, stopped (SIGTERM, then SIGKILL) when dropped.
pub(crate) struct TrackerProc {
    pub addr: SocketAddr,
    child: Child,
}

impl TrackerProc {
    /// Starts `hchat tracker --port 0 --in-memory --rate-limit 0 --peer-ttl ttl_secs` and waits for its
    /// `listening on` line. In memory, so the figures are the registry's and HTTP's (and a benchmark never writes
    /// to a user's data dir); with no rate limit, since the load generator is one client flooding on purpose.
    pub(crate) async fn start(ttl_secs: u64) -> Result<TrackerProc> {
        let exe = std::env::current_exe().map_err(BenchError::io("finding this program"))?;
        let mut child = Command::new(&exe)
            .args([
                "tracker",
                "--ip",
                "127.0.0.1",
                "--port",
                "0",
                "--in-memory",
                "--rate-limit",
                "0",
                "--peer-ttl",
            ])
            .arg(ttl_secs.to_string())
            .env("HCHAT_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(BenchError::io(format!(
                "starting {} tracker",
                exe.display()
            )))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(START_DEADLINE, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(a) = line.strip_prefix("listening on ") {
                    return a.trim().parse::<SocketAddr>().ok();
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| {
            BenchError::Setup("the tracker child did not say where it listens".into())
        })?;
        Ok(TrackerProc { addr, child })
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The process's resident memory, from `/proc/<pid>/status` (VmRSS), in KiB.
    pub(crate) fn rss_kib(&self) -> Result<u64> {
        let pid = self
            .pid()
            .ok_or_else(|| BenchError::Setup("the tracker child has exited".into()))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(BenchError::io(format!("reading /proc/{pid}/status")))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| BenchError::Setup(format!("no VmRSS in /proc/{pid}/status")))
    }

    pub(crate) async fn stop(mut self) {
        terminate(self.child.id());
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// The name of registered peer `i`.
pub(crate) fn peer_name(i: usize) -> String {
    format!("p{i:06}")
}

/// The identity of registered peer `i`: made from a seed that is `i`, so a renewal can sign as the same peer
/// without keeping a million keys around. Fine for a benchmark, never for a user.
pub(crate) fn identity(i: usize) -> Identity {
    let mut seed = *b"hchat-bench-identity-seed-\0\0\0\0\0\0";
    seed[24..].copy_from_slice(&(i as u64).to_le_bytes());
    Identity::from_seed(seed)
}

/// The registration (and renewal) body of peer `i`: signed, stamped now, with a fresh nonce, as a peer sends it.
pub(crate) fn register_body(i: usize) -> Bytes {
    register_body_as(&identity(i), i)
}

/// [`register_body`] with peer `i`'s identity already made (making it costs as much as signing).
pub(crate) fn register_body_as(id: &Identity, i: usize) -> Bytes {
    let name = PeerName::new(peer_name(i)).expect("a valid bench name");
    let req = id.register_request(
        &name,
        std::net::Ipv4Addr::LOCALHOST.into(),
        1024 + (i % 60_000) as u16,
    );
    Bytes::from(serde_json::to_vec(&req).expect("a registration always serializes"))
}

/// Registers peers `0..n` and puts peer `i` in channel `channel_of(i)`, over `connections` connections. Returns
/// when the last registration was answered: no lease is renewed after that.
pub(crate) async fn populate(
    addr: SocketAddr,
    n: usize,
    connections: usize,
    channel_of: impl Fn(usize) -> Option<String>,
) -> Result<Instant> {
    let registrations = (0..n)
        .map(|i| {
            (
                Method::POST,
                "/submit-info".to_string(),
                Some(register_body(i)),
                None,
            )
        })
        .collect();
    spread(addr, connections, registrations).await?;
    let registered = Instant::now();
    let joins = (0..n)
        .filter_map(|i| {
            channel_of(i).map(|c| {
                let name = peer_name(i);
                let body = format!(r#"{{"name":"{name}","channel":"{c}"}}"#);
                let auth = identity(i).auth_header(
                    &PeerName::new(name).expect("a valid bench name"),
                    "POST",
                    "/add-list",
                    body.as_bytes(),
                );
                (
                    Method::POST,
                    "/add-list".to_string(),
                    Some(Bytes::from(body)),
                    Some(auth),
                )
            })
        })
        .collect();
    spread(addr, connections, joins).await?;
    Ok(registered)
}

/// The tracker's figures, and the answers nginx is to serve.
pub(crate) struct TrackerFigures {
    pub get_list: Throughput,
    pub renew: Throughput,
    pub answers: Answers,
}

/// One `GET /get-list` answer and one renewal answer, byte for byte.
pub(crate) struct Answers {
    pub get_list: Bytes,
    pub renew: Bytes,
}

/// nginx's figures for the same answers.
pub(crate) struct NginxFigures {
    pub get_list: Throughput,
    pub renew: Throughput,
}

pub(crate) async fn hchat(
    registered: usize,
    connections: usize,
    duration: Duration,
) -> Result<TrackerFigures> {
    let registered = registered.max(CHANNEL_MEMBERS + 1);
    let tracker = TrackerProc::start(LOAD_TTL_SECS).await?;
    let addr = tracker.addr;
    populate(addr, registered, connections, |i| {
        (i < CHANNEL_MEMBERS).then(|| "bench".to_string())
    })
    .await?;
    let mut probe = HttpConn::connect(addr).await?;
    let get_list = probe
        .call_ok(probe.build(Method::GET, "/get-list?channel=bench", None))
        .await?;
    let renew = probe
        .call_ok(probe.build(
            Method::POST,
            "/submit-info",
            Some(register_body(registered - 1)),
        ))
        .await?;
    drop(probe);

    let list = hammer(addr, connections, duration, |_, _| {
        (Method::GET, "/get-list?channel=bench".to_string(), None)
    })
    .await?;
    progress(format!(
        "  tracker get-list: {:.0} requests/s ({} bytes each)",
        list.requests_per_s, list.body_bytes
    ));
    // Each renewal is signed afresh, as a peer's heartbeat is; the keys are made once, as a peer's are.
    let ids: std::sync::Arc<Vec<Identity>> =
        std::sync::Arc::new((0..registered).map(identity).collect());
    let renewals = hammer(addr, connections, duration, move |c, k| {
        let i = (c + k as usize * connections) % registered;
        (
            Method::POST,
            "/submit-info".to_string(),
            Some(register_body_as(&ids[i], i)),
        )
    })
    .await?;
    progress(format!(
        "  tracker renewals: {:.0} requests/s",
        renewals.requests_per_s
    ));
    tracker.stop().await;
    Ok(TrackerFigures {
        get_list: list,
        renew: renewals,
        answers: Answers { get_list, renew },
    })
}

pub(crate) async fn nginx(
    bin: &Path,
    answers: &Answers,
    connections: usize,
    duration: Duration,
) -> Result<NginxFigures> {
    let server = nginx::start(
        bin,
        &nginx::Answers {
            get_list: &answers.get_list,
            renew: &answers.renew,
        },
    )
    .await?;
    let addr = server.addr;
    let list = hammer(addr, connections, duration, |_, _| {
        (Method::GET, "/get-list?channel=bench".to_string(), None)
    })
    .await?;
    progress(format!(
        "  nginx get-list: {:.0} requests/s ({} bytes each)",
        list.requests_per_s, list.body_bytes
    ));
    let renew = hammer(addr, connections, duration, |c, k| {
        (
            Method::POST,
            "/submit-info".to_string(),
            Some(register_body(c + k as usize)),
        )
    })
    .await?;
    progress(format!(
        "  nginx fixed answer to POST: {:.0} requests/s",
        renew.requests_per_s
    ));
    server.stop().await;
    if list.body_bytes != answers.get_list.len() {
        return Err(BenchError::Protocol(format!(
            "nginx served {} bytes for the {}-byte member list",
            list.body_bytes,
            answers.get_list.len()
        )));
    }
    Ok(NginxFigures {
        get_list: list,
        renew,
    })
}
