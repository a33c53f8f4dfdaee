//! Pushing messages to another peer over one kept-alive HTTP client: one message as `POST /p2p/receive`, several
//! (an outbox draining after an outage) as one `POST /p2p/receive-batch`, so a backlog costs one request and one
//! commit on the receiver per batch rather than per message. What to push, and what to do when it fails, is the
//! outbox's business ([`super::outbox`]).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::tracker_client::root_cause;
use crate::proto::{ChatMessage, ErrorBody, ErrorDetail, MAX_BODY_BYTES, MessageId};

/// How long one push may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most messages in one `POST /p2p/receive-batch`.
pub const MAX_PUSH_BATCH: usize = 500;

/// Why a push did not get an answer about each message: worth retrying later.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryError {
    #[error("unreachable ({0})")]
    Unreachable(String),
    #[error("not accepted now: {message} ({code})")]
    Unavailable { code: String, message: String },
}

/// The receiver's verdict on one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Stored durably (or held already): delivered.
    Stored,
    /// Refused for good (not for this peer, not in the channel, ...): retrying will not help.
    Refused { code: String, message: String },
}

/// `POST /p2p/receive-batch` body.
#[derive(Debug, Serialize, Deserialize)]
pub struct BatchRequest {
    pub messages: Vec<ChatMessage>,
}

/// One message's result in a batch answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchResult {
    pub id: MessageId,
    pub ok: bool,
    #[serde(default)]
    pub duplicate: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// `POST /p2p/receive-batch` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct BatchResponse {
    pub ok: bool,
    pub results: Vec<BatchResult>,
}

/// The longest prefix of `msgs` that fits one request body (at least one message).
pub fn fitting(msgs: &[ChatMessage], max: usize) -> usize {
    let budget = MAX_BODY_BYTES - 1024;
    let mut used = 0;
    for (i, m) in msgs.iter().enumerate().take(max) {
        // The envelope, plus what wraps it in a deposit (its id, quotes, commas).
        used += serde_json::to_string(m).map_or(budget, |s| s.len() + 64);
        if used > budget {
            return i.max(1);
        }
    }
    msgs.len().min(max)
}

/// Pushes messages to peers.
#[derive(Clone)]
pub struct Courier {
    http: reqwest::Client,
}

impl Default for Courier {
    fn default() -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(ATTEMPT_TIMEOUT)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(4)
            .pool_idle_timeout(crate::http::CLIENT_IDLE)
            .no_proxy()
            .build()
            .expect("a plain HTTP client always builds");
        Self { http }
    }
}

impl Courier {
    /// Pushes `msgs` (in order) to the peer at `addr` and returns its verdict on each.
    pub async fn push(
        &self,
        addr: SocketAddr,
        msgs: &[ChatMessage],
    ) -> Result<Vec<Pushed>, DeliveryError> {
        if let [one] = msgs {
            let url = format!("http://{addr}/p2p/receive");
            return match self.post(&url, one).await? {
                Ok(_) => Ok(vec![Pushed::Stored]),
                Err(e) => Ok(vec![e]),
            };
        }
        let url = format!("http://{addr}/p2p/receive-batch");
        let body = BatchRequest {
            messages: msgs.to_vec(),
        };
        match self.post(&url, &body).await? {
            Ok(bytes) => {
                let answer: BatchResponse =
                    serde_json::from_slice(&bytes).map_err(|e| DeliveryError::Unavailable {
                        code: "bad_answer".into(),
                        message: e.to_string(),
                    })?;
                Ok(msgs
                    .iter()
                    .map(|m| match answer.results.iter().find(|r| r.id == m.id) {
                        Some(r) if r.ok => Pushed::Stored,
                        Some(r) => {
                            let e = r.error.clone().unwrap_or(ErrorDetail {
                                code: "refused".into(),
                                message: "refused".into(),
                            });
                            Pushed::Refused {
                                code: e.code,
                                message: e.message,
                            }
                        }
                        None => Pushed::Refused {
                            code: "no_answer".into(),
                            message: "the receiver said nothing about this message".into(),
                        },
                    })
                    .collect())
            }
            // A refusal of the whole batch is a refusal of each message in it.
            Err(e) => Ok(vec![e; msgs.len()]),
        }
    }

    /// One request, retried once at once when a kept-alive connection turned out to be closed. `Ok(Ok(body))` on
    /// 2xx, `Ok(Err(refusal))` on a 4xx, `Err` when worth retrying later (no answer, 5xx, 503).
    async fn post<B: Serialize>(
        &self,
        url: &str,
        body: &B,
    ) -> Result<Result<bytes::Bytes, Pushed>, DeliveryError> {
        let mut last = String::new();
        for _ in 0..2 {
            match self.http.post(url).json(body).send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let bytes = resp
                        .bytes()
                        .await
                        .map_err(|e| DeliveryError::Unreachable(root_cause(&e)))?;
                    if status.is_success() {
                        return Ok(Ok(bytes));
                    }
                    let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
                        Ok(b) => (b.error.code, b.error.message),
                        Err(_) => ("unknown".into(), format!("status {status}")),
                    };
                    if status.is_server_error() || status.as_u16() == 429 {
                        return Err(DeliveryError::Unavailable { code, message });
                    }
                    return Ok(Err(Pushed::Refused { code, message }));
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
