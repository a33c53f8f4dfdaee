//! Carrying messages to other peers: one ordered queue and one worker per recipient, all sharing a kept-alive
//! HTTP client. A channel message is a concurrent fan-out (each recipient's worker sends at once), while each
//! recipient still receives this node's messages in the order they were sent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::tracker_client::root_cause;
use crate::proto::{ChatMessage, ErrorBody, PeerName};

/// Messages that may wait for one recipient before senders are held back.
pub const PER_RECIPIENT_QUEUE: usize = 1024;
/// A recipient's worker stops after this long with nothing to send.
const WORKER_IDLE: Duration = Duration::from_secs(60);
/// How long one delivery attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a delivery failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryError {
    #[error("unreachable ({0})")]
    Unreachable(String),
    #[error("refused: {message} ({code})")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("this node is stopping")]
    Stopping,
}

struct Job {
    msg: Arc<ChatMessage>,
    addr: SocketAddr,
    done: oneshot::Sender<Result<(), DeliveryError>>,
}

/// Delivers messages to peers.
#[derive(Clone)]
pub struct Courier {
    http: reqwest::Client,
    queues: Arc<Mutex<HashMap<PeerName, mpsc::Sender<Job>>>>,
    shutdown: CancellationToken,
}

impl Courier {
    pub fn new(shutdown: CancellationToken) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(ATTEMPT_TIMEOUT)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(4)
            .pool_idle_timeout(crate::http::CLIENT_IDLE)
            .no_proxy()
            .build()
            .expect("a plain HTTP client always builds");
        Self {
            http,
            queues: Arc::default(),
            shutdown,
        }
    }

    /// Queues `msg` for `to` at `addr` and waits until it is delivered or has failed.
    pub async fn deliver(
        &self,
        to: &PeerName,
        addr: SocketAddr,
        msg: Arc<ChatMessage>,
    ) -> Result<(), DeliveryError> {
        let (done, result) = oneshot::channel();
        let mut job = Job { msg, addr, done };
        // A worker that went idle between taking its sender and sending is replaced once.
        for _ in 0..2 {
            let tx = self.queue_for(to);
            match tx.send(job).await {
                Ok(()) => return result.await.unwrap_or(Err(DeliveryError::Stopping)),
                Err(mpsc::error::SendError(j)) => {
                    job = j;
                    self.queues
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(to);
                }
            }
        }
        Err(DeliveryError::Stopping)
    }

    fn queue_for(&self, to: &PeerName) -> mpsc::Sender<Job> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = queues.get(to).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(PER_RECIPIENT_QUEUE);
        queues.insert(to.clone(), tx.clone());
        tokio::spawn(self.clone().work(to.clone(), rx));
        tx
    }

    async fn work(self, to: PeerName, mut rx: mpsc::Receiver<Job>) {
        loop {
            let job = tokio::select! {
                j = tokio::time::timeout(WORKER_IDLE, rx.recv()) => j,
                _ = self.shutdown.cancelled() => break,
            };
            match job {
                Ok(Some(job)) => {
                    let result = tokio::select! {
                        r = self.send(job.addr, &job.msg) => r,
                        _ = self.shutdown.cancelled() => Err(DeliveryError::Stopping),
                    };
                    if let Err(e) = &result {
                        tracing::debug!(peer = %to, id = %job.msg.id, "delivery failed: {e}");
                    }
                    let _ = job.done.send(result);
                }
                Ok(None) => break,
                Err(_idle) => {
                    let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
                    if rx.is_empty() {
                        queues.remove(&to);
                        break;
                    }
                }
            }
        }
        rx.close();
        while let Ok(job) = rx.try_recv() {
            let _ = job.done.send(Err(DeliveryError::Stopping));
        }
    }

    /// One delivery, retried once at once when a kept-alive connection turned out to be closed.
    async fn send(&self, addr: SocketAddr, msg: &ChatMessage) -> Result<(), DeliveryError> {
        let url = format!("http://{addr}/p2p/receive");
        let mut last = String::new();
        for _ in 0..2 {
            match self.http.post(&url).json(msg).send().await {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let body = resp.bytes().await.unwrap_or_default();
                    return Err(match serde_json::from_slice::<ErrorBody>(&body) {
                        Ok(b) => DeliveryError::Refused {
                            status,
                            code: b.error.code,
                            message: b.error.message,
                        },
                        Err(_) => DeliveryError::Refused {
                            status,
                            code: "unknown".into(),
                            message: format!("status {status}"),
                        },
                    });
                }
                Err(e) if e.is_timeout() => {
                    return Err(DeliveryError::Unreachable("timed out".into()));
                }
                Err(e) => last = root_cause(&e),
            }
        }
        Err(DeliveryError::Unreachable(last))
    }
}
