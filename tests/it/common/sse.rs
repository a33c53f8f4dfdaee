//! A client of a peer's event stream (`GET /api/events`) over a plain socket.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;

use super::{Lines, SOON};

/// A client of a peer's `GET /api/events` over a plain socket (HTTP/1.0, so the stream is the raw body). Each
/// event becomes one line `ID|JSON` (`-|JSON` for an event without id) in `events`; dropping it closes the
/// connection, as a browser losing its stream would.
pub(crate) struct EventStream {
    pub events: Lines,
    socket: std::net::TcpStream,
}

impl EventStream {
    /// Opens `path_and_query` on `addr` with extra request headers.
    pub(crate) fn open(
        addr: SocketAddr,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> EventStream {
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
    pub(crate) fn parsed(&self) -> Vec<(Option<u64>, serde_json::Value)> {
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
    pub(crate) fn wait_for(&self, needle: &str) {
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
