//! Blocking HTTP helpers: requests to a node and its JSON answers, clients bound to another loopback address (to
//! play another host), and a canned server that answers anything with the same JSON.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use super::Proc;

/// A blocking HTTP client for the tests.
pub(crate) fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .unwrap()
}

/// A blocking HTTP client whose connections come from `local` (any 127.x.y.z is this host on Linux), so a test
/// can play several client hosts at once.
pub(crate) fn http_from(local: std::net::IpAddr) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .local_address(local)
        .no_proxy()
        .build()
        .unwrap()
}

/// `n` TCP connections to `to`, each bound to `local` first (std cannot bind before connecting; tokio can).
pub(crate) fn connect_from(
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
pub(crate) fn get_json(url: &str, status: u16) -> serde_json::Value {
    let r = http().get(url).send().unwrap();
    assert_eq!(r.status().as_u16(), status, "GET {url}");
    r.json().unwrap()
}

/// The status of an answer and its body, which must be JSON (`what url` names the request in the failure).
pub(crate) fn status_and_json(
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
pub(crate) fn post_raw(
    url: &str,
    body: impl Into<reqwest::blocking::Body>,
) -> (u16, serde_json::Value) {
    let r = http()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap();
    status_and_json("POST", url, r)
}

/// POSTs JSON and returns status and JSON answer.
pub(crate) fn post_json(url: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    post_raw(url, body.to_string())
}

/// The names in a `{"peers":[{"name"..}]}` answer, sorted.
pub(crate) fn names(v: &serde_json::Value) -> Vec<String> {
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
pub(crate) fn try_get_json(url: &str) -> Option<(u16, serde_json::Value)> {
    let r = http().get(url).send().ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().ok()?))
}

/// The live members of a channel as a tracker lists them (empty while the channel is unknown).
pub(crate) fn members(tracker: &Proc, channel: &str) -> Vec<String> {
    match try_get_json(&tracker.url(&format!("/get-list?channel={channel}"))) {
        Some((200, v)) => names(&v),
        _ => Vec::new(),
    }
}

/// A plain TCP listener on loopback that answers every request with 200 and `body` (JSON), whatever was asked:
/// what a dishonest member's node serves (a canned catch-up page, say). Returns its port.
pub(crate) fn canned_json_server(body: serde_json::Value) -> u16 {
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

/// The error code of a JSON answer (`""` when it has none).
pub(crate) fn code(answer: &serde_json::Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or("")
}
