//! mosquitto, the MQTT anchor: started with TCP_NODELAY on (no small write waits for the next one), and a
//! minimal MQTT 3.1.1 client for QoS 0: CONNECT, SUBSCRIBE, PUBLISH and reading PUBLISH payloads. A crate
//! (rumqttc) would bring its own event loop and queues between us and the socket; these few packets keep the
//! client as thin as the IRC one.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::{ServerProc, free_port, temp_dir, write};
use crate::bench::{BenchError, Result};

/// How long CONNACK or SUBACK may take.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Largest packet the client accepts.
const MAX_PACKET: usize = 64 * 1024;
/// Keep-alive announced in CONNECT, in seconds: longer than any run, so no PINGREQ is needed.
const KEEP_ALIVE_SECS: u16 = 600;

/// Starts mosquitto on a free loopback port.
pub(crate) async fn start(bin: &Path) -> Result<ServerProc> {
    let port = free_port()?;
    let dir = temp_dir("mosquitto")?;
    let conf = format!(
        "listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\nset_tcp_nodelay true\n\
         persistence false\nlog_dest stderr\n"
    );
    let conf = write(dir.path(), "mosquitto.conf", conf)?;
    let conf = conf.to_string_lossy().into_owned();
    ServerProc::start("mosquitto", bin, &["-c", &conf], port, dir).await
}

fn varint(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let b = (n % 128) as u8;
        n /= 128;
        out.push(if n > 0 { b | 0x80 } else { b });
        if n == 0 {
            return;
        }
    }
}

fn string(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

fn packet(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![kind];
    varint(body.len(), &mut p);
    p.extend_from_slice(body);
    p
}

/// One MQTT connection.
pub(crate) struct MqttClient {
    reader: BufReader<OwnedReadHalf>,
    writer: BufWriter<OwnedWriteHalf>,
}

impl MqttClient {
    /// Connects with a clean session as `client_id` and waits for CONNACK.
    pub(crate) async fn connect(addr: SocketAddr, client_id: &str) -> Result<MqttClient> {
        let (reader, writer) = super::connect_buffered(addr, "mosquitto").await?;
        let mut c = MqttClient { reader, writer };
        let mut body = Vec::new();
        string(b"MQTT", &mut body);
        body.extend_from_slice(&[4, 0x02]); // protocol level 4 (3.1.1), clean session
        body.extend_from_slice(&KEEP_ALIVE_SECS.to_be_bytes());
        string(client_id.as_bytes(), &mut body);
        c.send(&packet(0x10, &body)).await?;
        c.flush().await?;
        let (kind, ack) = c.expect_within("CONNACK").await?;
        if kind >> 4 != 2 || ack.get(1) != Some(&0) {
            return Err(BenchError::Protocol(format!(
                "mosquitto refused the connection: {ack:?}"
            )));
        }
        Ok(c)
    }

    /// Subscribes to `topic` at QoS 0 and waits for SUBACK.
    pub(crate) async fn subscribe(&mut self, topic: &str) -> Result<()> {
        let mut body = 1u16.to_be_bytes().to_vec();
        string(topic.as_bytes(), &mut body);
        body.push(0);
        self.send(&packet(0x82, &body)).await?;
        self.flush().await?;
        let (kind, ack) = self.expect_within("SUBACK").await?;
        if kind >> 4 != 9 || ack.get(2) == Some(&0x80) {
            return Err(BenchError::Protocol(format!(
                "mosquitto refused the subscription: {ack:?}"
            )));
        }
        Ok(())
    }

    /// Queues a QoS 0 PUBLISH; [`MqttClient::flush`] sends what is queued.
    pub(crate) async fn publish(&mut self, topic: &str, payload: &[u8]) -> Result<()> {
        let mut body = Vec::with_capacity(2 + topic.len() + payload.len());
        string(topic.as_bytes(), &mut body);
        body.extend_from_slice(payload);
        self.send(&packet(0x30, &body)).await
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer
            .write_all(bytes)
            .await
            .map_err(BenchError::io("writing to mosquitto"))
    }

    pub(crate) async fn flush(&mut self) -> Result<()> {
        self.writer
            .flush()
            .await
            .map_err(BenchError::io("writing to mosquitto"))
    }

    async fn expect_within(&mut self, what: &str) -> Result<(u8, Vec<u8>)> {
        match tokio::time::timeout(HANDSHAKE, self.read_packet()).await {
            Ok(Ok(Some(p))) => Ok(p),
            Ok(Ok(None)) => Err(BenchError::Protocol(format!(
                "mosquitto closed the connection while we waited for {what}"
            ))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(BenchError::Timeout {
                what: format!("mosquitto's {what}"),
                secs: HANDSHAKE.as_secs(),
            }),
        }
    }

    /// The next packet's first byte and body; `None` when the connection closed.
    async fn read_packet(&mut self) -> Result<Option<(u8, Vec<u8>)>> {
        let io = BenchError::io("reading from mosquitto");
        let kind = match self.reader.read_u8().await {
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let (mut len, mut mult) = (0usize, 1usize);
        for _ in 0..4 {
            let b = self
                .reader
                .read_u8()
                .await
                .map_err(BenchError::io("reading from mosquitto"))?;
            len += (b & 0x7f) as usize * mult;
            mult *= 128;
            if b & 0x80 == 0 {
                break;
            }
        }
        if len > MAX_PACKET {
            return Err(BenchError::Protocol(format!(
                "mosquitto sent a {len}-byte packet"
            )));
        }
        let mut body = vec![0; len];
        self.reader
            .read_exact(&mut body)
            .await
            .map_err(BenchError::io("reading from mosquitto"))?;
        Ok(Some((kind, body)))
    }

    /// The payload of the next PUBLISH; `None` when the connection closed.
    pub(crate) async fn next_publish(&mut self) -> Result<Option<String>> {
        loop {
            let Some((kind, body)) = self.read_packet().await? else {
                return Ok(None);
            };
            if kind >> 4 != 3 || body.len() < 2 {
                continue;
            }
            let topic_len = u16::from_be_bytes([body[0], body[1]]) as usize;
            // QoS 0 has no packet id after the topic.
            let payload = body.get(2 + topic_len..).unwrap_or_default();
            return Ok(Some(String::from_utf8_lossy(payload).into_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_length_is_mqtts_variable_integer() {
        for (n, bytes) in [
            (0usize, vec![0u8]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (16_383, vec![0xff, 0x7f]),
            (16_384, vec![0x80, 0x80, 0x01]),
        ] {
            let mut out = Vec::new();
            varint(n, &mut out);
            assert_eq!(out, bytes, "{n}");
        }
        assert_eq!(packet(0x30, b"ab"), vec![0x30, 2, b'a', b'b']);
    }
}
