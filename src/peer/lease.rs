//! The node's lease at the tracker: how long it lasts, and the rule that no registration lands after the node's
//! goodbye. Registering holds [`Lease::registering`]; a stopping node calls [`Lease::leave`], which marks it
//! leaving and waits for a registration under way, so a background renewal cannot bring the dead node back.
//! The node's verbs that keep the lease (register, renew, join again what the tracker forgot) are here too.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::MutexGuard;

use super::Node;
use super::tracker_client::TrackerError;
use crate::proto::{ChannelName, ErrorCode};
use crate::sync::lock;

/// The lease assumed until the tracker's first answer says how long it is.
const FIRST_TTL: Duration = Duration::from_secs(30);
/// Renewals come at least this far apart, however short the lease.
const RENEW_MIN: Duration = Duration::from_millis(200);

pub(super) struct Lease {
    ttl: Mutex<Duration>,
    /// Held while registering.
    renewing: tokio::sync::Mutex<()>,
    leaving: AtomicBool,
}

impl Default for Lease {
    fn default() -> Self {
        Lease {
            ttl: Mutex::new(FIRST_TTL),
            renewing: tokio::sync::Mutex::new(()),
            leaving: AtomicBool::new(false),
        }
    }
}

impl Lease {
    /// The right to register, held until the guard drops; `None` once the node is leaving.
    pub(super) async fn registering(&self) -> Option<MutexGuard<'_, ()>> {
        let guard = self.renewing.lock().await;
        (!self.is_leaving()).then_some(guard)
    }

    /// Waits until a registration under way (if any) is done.
    pub(super) async fn settled(&self) {
        drop(self.renewing.lock().await);
    }

    /// The tracker granted a lease of `ttl_secs`.
    pub(super) fn granted(&self, ttl_secs: u64) {
        *lock(&self.ttl) = Duration::from_secs(ttl_secs.max(1));
    }

    /// How often to renew: a few times per lease.
    pub(super) fn renew_every(&self) -> Duration {
        (*lock(&self.ttl) / 3).max(RENEW_MIN)
    }

    /// Marks the node leaving and waits for a registration under way: none can start after this returns.
    pub(super) async fn leave(&self) {
        self.leaving.store(true, Ordering::SeqCst);
        self.settled().await;
    }

    pub(super) fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::SeqCst)
    }
}

impl Node {
    /// Registers (or renews), and joins again any channel the tracker has forgotten.
    pub(super) async fn renew(&self) -> Result<(), TrackerError> {
        let Some(_registering) = self.inner.lease.registering().await else {
            return Err(TrackerError::Unreachable(
                self.inner.tracker.base().into(),
                "this node is stopping".into(),
            ));
        };
        let quic_port = self.session_addr().map(|a| a.port());
        let answer = self
            .inner
            .tracker
            .register(self.advertised(), quic_port)
            .await?;
        self.inner.lease.granted(answer.ttl_secs);
        if answer.mailbox > 0 {
            self.want_recovery(true, vec![]);
        }
        let known: BTreeSet<ChannelName> = answer.channels.into_iter().collect();
        let missing: Vec<ChannelName> = self
            .inner
            .joined
            .settled()
            .into_iter()
            .filter(|c| !known.contains(c))
            .collect();
        if answer.created && !missing.is_empty() {
            tracing::info!(peer = %self.name(), "the tracker had forgotten this peer; registered and re-joining {} channel(s)", missing.len());
        }
        for channel in &missing {
            self.rejoin(channel, answer.created).await?;
        }
        if answer.created {
            if let Err(e) = self.restore_presence().await {
                tracing::warn!(peer = %self.name(), "could not restore presence: {e}");
            }
            // The tracker had forgotten us (we were away): channel messages sent meanwhile did not list us.
            let mut marks = Vec::new();
            for c in self.joined() {
                if let Ok(Some(mark)) = self.catch_up_mark(&c, None).await {
                    marks.push((c, mark));
                }
            }
            self.want_recovery(false, marks);
        }
        Ok(())
    }

    /// A joined channel the tracker does not list this peer in. After the tracker forgot the peer (`created`) it
    /// joins again; otherwise the owner removed it, unless a join raced the renewal (the tracker is asked).
    /// Either way a refusal by the channel's rules (ban, invitation, key) means it is out.
    async fn rejoin(&self, channel: &ChannelName, created: bool) -> Result<(), TrackerError> {
        if !created {
            match self.inner.tracker.channel_info(channel).await {
                Ok(info) if info.members.iter().any(|m| &m.name == self.name()) => return Ok(()),
                Ok(_) => {
                    self.removed_from(channel, "removed by its owner").await;
                    return Ok(());
                }
                Err(TrackerError::Refused {
                    code: ErrorCode::MembersOnly | ErrorCode::UnknownChannel,
                    message,
                    ..
                }) => {
                    self.removed_from(channel, &message).await;
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        match self.inner.tracker.join(&self.inner.me, channel, None).await {
            Ok(_) => Ok(()),
            Err(TrackerError::Refused {
                status: 403,
                message,
                ..
            }) => {
                self.removed_from(channel, &message).await;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Renews the lease a few times per TTL. While the tracker is unreachable it tries every second, so chat
    /// resumes soon after a tracker restart.
    pub(super) async fn keep_lease(self) {
        let mut tracker_lost = false;
        loop {
            let every = if tracker_lost {
                Duration::from_secs(1)
            } else {
                self.inner.lease.renew_every()
            };
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = self.inner.shutdown.cancelled() => return,
            }
            match self.renew().await {
                Ok(()) if tracker_lost => {
                    tracker_lost = false;
                    self.inner.outboxes.tracker_back();
                    self.notice("the tracker is back; registered again".into());
                }
                Ok(()) => {}
                Err(e) => {
                    if !tracker_lost {
                        tracing::warn!(peer = %self.name(), "lease renewal failed: {e}");
                        self.notice(format!("lost the tracker ({e}); retrying every second"));
                    }
                    tracker_lost = true;
                }
            }
        }
    }
}
