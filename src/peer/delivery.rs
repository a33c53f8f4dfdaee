//! Pushing messages to another peer over one kept-alive HTTP client: one message as `POST /p2p/receive`, several
//! (an outbox draining after an outage) as one `POST /p2p/receive-batch`, so a backlog costs one request and one
//! commit on the receiver per batch rather than per message. What to push, and what to do when it fails, is the
//! outbox's business ([`super::outbox`]).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::tracker_client::root_cause;
use crate::identity::{PublicKey, ReceiptVerdict, Signature, receipt_bytes};
use crate::proto::{
    ChatMessage, ErrorBody, ErrorCode, ErrorDetail, MAX_BODY_BYTES, MessageId, PeerName, ReceiveAck,
};

/// How long one push may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most messages in one `POST /p2p/receive-batch`.
pub(crate) const MAX_PUSH_BATCH: usize = 500;

/// Why a push did not get an answer about each message: worth retrying later.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum DeliveryError {
    #[error("unreachable ({0})")]
    Unreachable(String),
    #[error("not accepted now: {message} ({code})")]
    Unavailable { code: ErrorCode, message: String },
    /// What answered is not the peer the message is for (no valid receipt signed with its key): a puppet's
    /// address, or a peer that moved away. Nothing counts as delivered, and the address is backed off.
    #[error("the address did not answer as the recipient: {0}")]
    BadAnswer(String),
}

/// The receiver's verdict on one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Stored durably (or held already): delivered.
    Stored,
    /// Refused for good (not for this peer, not in the channel, ...): retrying will not help.
    Refused { code: ErrorCode, message: String },
}

/// `POST /p2p/receive-batch` body.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct BatchRequest {
    pub messages: Vec<ChatMessage>,
}

/// One message's result in a batch answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BatchResult {
    pub id: MessageId,
    pub ok: bool,
    #[serde(default)]
    pub duplicate: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// `POST /p2p/receive-batch` answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct BatchResponse {
    pub ok: bool,
    pub results: Vec<BatchResult>,
    /// The receiver's signature over its verdicts ([`crate::identity::receipt_bytes`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Signature>,
}

/// The longest prefix of `msgs` that fits one request body (at least one message).
pub(crate) fn fitting(msgs: &[ChatMessage], max: usize) -> usize {
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
pub(crate) struct Courier {
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
    /// Pushes `msgs` (in order) to `to`, reached at `addr`, and returns its verdict on each. The answer must carry
    /// a receipt signed with `key`, the key the tracker binds to `to`; anything else is
    /// [`DeliveryError::BadAnswer`]: whatever answered there is not `to`, and nothing counts as delivered.
    pub(crate) async fn push(
        &self,
        addr: SocketAddr,
        to: &PeerName,
        key: Option<PublicKey>,
        msgs: &[ChatMessage],
    ) -> Result<Vec<Pushed>, DeliveryError> {
        let key = key.ok_or_else(|| bad(format!("the tracker vouches for no key for {to}")))?;
        if let [one] = msgs {
            let url = format!("http://{addr}/p2p/receive");
            let bytes = match self.post(&url, one).await? {
                Ok(bytes) => bytes,
                Err(refused) => return Ok(vec![refused]),
            };
            let ack: ReceiveAck = serde_json::from_slice(&bytes)
                .map_err(|e| bad(format!("not an answer to a push: {e}")))?;
            let verdict = match ack.duplicate {
                true => ReceiptVerdict::Duplicate,
                false => ReceiptVerdict::Stored,
            };
            check_receipt(to, &key, msgs, std::slice::from_ref(&verdict), ack.receipt)?;
            return Ok(vec![Pushed::Stored]);
        }
        let url = format!("http://{addr}/p2p/receive-batch");
        let body = BatchRequest {
            messages: msgs.to_vec(),
        };
        let bytes = match self.post(&url, &body).await? {
            Ok(bytes) => bytes,
            // A refusal of the whole batch is a refusal of each message in it.
            Err(refused) => return Ok(vec![refused; msgs.len()]),
        };
        let answer: BatchResponse = serde_json::from_slice(&bytes)
            .map_err(|e| bad(format!("not an answer to a batch: {e}")))?;
        // One result per message, in order: what the receipt signs.
        if answer.results.len() != msgs.len()
            || answer.results.iter().zip(msgs).any(|(r, m)| r.id != m.id)
        {
            return Err(bad("its results do not match the messages pushed".into()));
        }
        let verdicts: Vec<ReceiptVerdict> = answer
            .results
            .iter()
            .map(|r| match (r.ok, r.duplicate) {
                (true, true) => ReceiptVerdict::Duplicate,
                (true, false) => ReceiptVerdict::Stored,
                (false, _) => ReceiptVerdict::Refused(
                    r.error
                        .as_ref()
                        .map_or_else(|| "refused".into(), |e| e.code.clone()),
                ),
            })
            .collect();
        check_receipt(to, &key, msgs, &verdicts, answer.receipt)?;
        Ok(answer
            .results
            .into_iter()
            .map(|r| match r.ok {
                true => Pushed::Stored,
                false => {
                    // The code is read only now: the receipt above signed it as the receiver wrote it.
                    let (code, message) = match r.error {
                        Some(e) => (ErrorCode::parse(&e.code), e.message),
                        None => (ErrorCode::Unknown, "refused".into()),
                    };
                    Pushed::Refused { code, message }
                }
            })
            .collect())
    }

    /// One request, retried once at once when a kept-alive connection turned out to be closed. `Ok(Ok(body))` on
    /// 2xx, `Ok(Err(refusal))` on a 4xx with an error body, `Err` when worth retrying later (no answer, 5xx, 429)
    /// or when the answer is not one a peer gives (an error that is not the documented JSON).
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
                    let Ok(ErrorBody { error }) = serde_json::from_slice::<ErrorBody>(&bytes)
                    else {
                        return Err(bad(format!("status {status} without an hchat error")));
                    };
                    if status.is_server_error() || status.as_u16() == 429 {
                        return Err(DeliveryError::Unavailable {
                            code: ErrorCode::parse(&error.code),
                            message: error.message,
                        });
                    }
                    return Ok(Err(Pushed::Refused {
                        code: ErrorCode::parse(&error.code),
                        message: error.message,
                    }));
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

fn bad(why: String) -> DeliveryError {
    DeliveryError::BadAnswer(why)
}

/// Checks that `receipt` is `to`'s signature over `verdicts` on `msgs`.
fn check_receipt(
    to: &PeerName,
    key: &PublicKey,
    msgs: &[ChatMessage],
    verdicts: &[ReceiptVerdict],
    receipt: Option<Signature>,
) -> Result<(), DeliveryError> {
    let receipt = receipt.ok_or_else(|| bad("no receipt".into()))?;
    let sender = &msgs[0].from;
    let entries = msgs.iter().zip(verdicts).map(|(m, v)| (&m.from, &m.id, v));
    key.verify(&receipt_bytes(to, sender, entries), &receipt)
        .map_err(|_| bad(format!("its receipt is not signed by {to}'s key")))
}
