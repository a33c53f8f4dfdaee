//! ngircd, the IRC anchor: started with flood penalties off (a client sending fast is not throttled), and a
//! minimal IRC client: register, join, PRIVMSG, and read PRIVMSG texts (answering PINGs on the way).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::{ServerProc, free_port, temp_dir, write};
use crate::bench::{BenchError, Result};

/// How long registration or a join may take.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Longest line the client accepts (IRC's limit is 512 bytes; ngircd's own notices stay well below this).
const MAX_LINE: usize = 4096;

/// Starts ngircd on a free loopback port.
pub(crate) async fn start(bin: &Path) -> Result<ServerProc> {
    let port = free_port()?;
    let dir = temp_dir("ngircd")?;
    let conf = format!(
        "[Global]\n\tName = bench.local\n\tInfo = anchor for hchat benchmarks\n\tListen = 127.0.0.1\n\tPorts = {port}\n\
         \tPidFile = {pid}\n\tMotdPhrase = bench\n\
         [Limits]\n\tMaxConnections = 0\n\tMaxConnectionsIP = 0\n\tMaxJoins = 0\n\tMaxPenaltyTime = 0\n\
         \tPingTimeout = 600\n\tPongTimeout = 60\n\
         [Options]\n\tDNS = no\n\tIdent = no\n\tPAM = no\n",
        pid = dir.path().join("ngircd.pid").display()
    );
    let conf = write(dir.path(), "ngircd.conf", conf)?;
    let conf = conf.to_string_lossy().into_owned();
    ServerProc::start("ngircd", bin, &["-n", "-f", &conf], port, dir).await
}

/// One IRC connection.
pub(crate) struct IrcClient {
    reader: BufReader<OwnedReadHalf>,
    writer: BufWriter<OwnedWriteHalf>,
    line: Vec<u8>,
}

impl IrcClient {
    /// Connects and registers as `nick`; returns once the server has welcomed us (001).
    pub(crate) async fn connect(addr: SocketAddr, nick: &str) -> Result<IrcClient> {
        let (reader, writer) = super::connect_buffered(addr, "ngircd").await?;
        let mut c = IrcClient {
            reader,
            writer,
            line: Vec::new(),
        };
        c.write(&format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n"))
            .await?;
        c.flush().await?;
        c.until_numeric("001").await?;
        Ok(c)
    }

    pub(crate) async fn join(&mut self, channel: &str) -> Result<()> {
        self.write(&format!("JOIN {channel}\r\n")).await?;
        self.flush().await?;
        self.until_numeric("366").await
    }

    /// Queues a PRIVMSG; [`IrcClient::flush`] sends what is queued.
    pub(crate) async fn privmsg(&mut self, target: &str, text: &str) -> Result<()> {
        self.write(&format!("PRIVMSG {target} :{text}\r\n")).await
    }

    async fn write(&mut self, s: &str) -> Result<()> {
        self.writer
            .write_all(s.as_bytes())
            .await
            .map_err(BenchError::io("writing to ngircd"))
    }

    pub(crate) async fn flush(&mut self) -> Result<()> {
        self.writer
            .flush()
            .await
            .map_err(BenchError::io("writing to ngircd"))
    }

    /// The next line, without its line ending; `None` when the server closed the connection.
    async fn read_line(&mut self) -> Result<Option<&[u8]>> {
        self.line.clear();
        let n = (&mut self.reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut self.line)
            .await
            .map_err(BenchError::io("reading from ngircd"))?;
        if n == 0 {
            return Ok(None);
        }
        while matches!(self.line.last(), Some(b'\n' | b'\r')) {
            self.line.pop();
        }
        Ok(Some(&self.line))
    }

    async fn until_numeric(&mut self, code: &str) -> Result<()> {
        let wait = async {
            loop {
                let Some(line) = self.read_line().await? else {
                    return Err(BenchError::Protocol(format!(
                        "ngircd closed the connection while we waited for {code}"
                    )));
                };
                if let Some(pong) = pong_for(line) {
                    self.write(&pong).await?;
                    self.flush().await?;
                    continue;
                }
                let text = String::from_utf8_lossy(line);
                let mut words = text.split(' ');
                let _prefix = words.next();
                match words.next() {
                    Some(c) if c == code => return Ok(()),
                    Some(c) if c.starts_with('4') || c.starts_with('5') => {
                        return Err(BenchError::Protocol(format!("ngircd refused: {text}")));
                    }
                    _ => {}
                }
            }
        };
        tokio::time::timeout(HANDSHAKE, wait)
            .await
            .map_err(|_| BenchError::Timeout {
                what: format!("ngircd's {code}"),
                secs: HANDSHAKE.as_secs(),
            })?
    }

    /// The text of the next PRIVMSG; `None` when the connection closed.
    pub(crate) async fn next_privmsg(&mut self) -> Result<Option<String>> {
        loop {
            let Some(line) = self.read_line().await? else {
                return Ok(None);
            };
            if let Some(pong) = pong_for(line) {
                self.write(&pong).await?;
                self.flush().await?;
                continue;
            }
            if let Some(text) = privmsg_text(line) {
                return Ok(Some(text));
            }
        }
    }
}

fn pong_for(line: &[u8]) -> Option<String> {
    line.strip_prefix(b"PING")
        .map(|rest| format!("PONG{}\r\n", String::from_utf8_lossy(rest)))
}

/// `:nick!user@host PRIVMSG target :text` → `text`.
fn privmsg_text(line: &[u8]) -> Option<String> {
    let line = std::str::from_utf8(line).ok()?;
    let at = line.find(" PRIVMSG ")?;
    let rest = &line[at + " PRIVMSG ".len()..];
    let colon = rest.find(" :")?;
    Some(rest[colon + 2..].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_privmsg_line_gives_its_text_and_a_ping_its_pong() {
        assert_eq!(
            privmsg_text(b":a!a@h PRIVMSG #bench :1 2 pad text").as_deref(),
            Some("1 2 pad text")
        );
        assert_eq!(privmsg_text(b":bench.local 001 a :Welcome"), None);
        assert_eq!(pong_for(b"PING :x").as_deref(), Some("PONG :x\r\n"));
    }
}
