//! Channel access control at this node: the owner's actions (mode, invite, remove, ban, roles) and this user's
//! presence, sent to the tracker; and the receiving side's rule that a channel message is accepted only from a
//! member the tracker says may post.
//!
//! Roles come from `GET /channel/info` (every member, online or not, so mail and catch-up from a member who is
//! offline now are judged too) and are cached per channel: a sender allowed to post is trusted for [`ROLES_FRESH`];
//! a sender the cache would refuse (missing, or a visitor) is checked with the tracker again at once, so a member
//! just invited or promoted is never refused on an old answer. While the tracker is unreachable the last answer is
//! used. (A member demoted or banned can still be accepted by a receiver for up to [`ROLES_FRESH`]; the tracker
//! refuses its fan-out at once.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::events::Event;
use super::tracker_client::TrackerError;
use super::{Node, NodeError};
use crate::http::ApiError;
use crate::proto::*;
use crate::sync::lock;

/// How long the roles of a channel's members are trusted before the tracker is asked again.
pub(crate) const ROLES_FRESH: Duration = Duration::from_secs(3);
/// Channels whose roles are cached (a node is in at most this many anyway: the tracker's per-peer limit).
pub(crate) const ROLES_CACHED_CHANNELS: usize = 256;
/// Members whose roles are kept per channel; the rest are asked for again when they post.
pub(crate) const ROLES_CACHED_MEMBERS: usize = 10_000;

/// One channel's roles as the tracker last said.
#[derive(Debug, Clone)]
pub(super) struct Roles {
    at: Instant,
    /// False when the tracker no longer lists this node as a member (removed, banned).
    me_member: bool,
    roles: HashMap<PeerName, Role>,
}

/// The roles of each joined channel as the tracker last said, bounded by [`ROLES_CACHED_CHANNELS`] (the oldest
/// answer goes first).
#[derive(Default)]
pub(super) struct RolesCache(Mutex<HashMap<ChannelName, Arc<Roles>>>);

impl RolesCache {
    pub(super) fn get(&self, channel: &ChannelName) -> Option<Arc<Roles>> {
        lock(&self.0).get(channel).cloned()
    }

    pub(super) fn forget(&self, channel: &ChannelName) {
        lock(&self.0).remove(channel);
    }

    /// Keeps `roles` as `channel`'s latest answer; returns it, shared.
    fn keep(&self, channel: &ChannelName, roles: Roles) -> Arc<Roles> {
        let mut cache = lock(&self.0);
        if cache.len() >= ROLES_CACHED_CHANNELS && !cache.contains_key(channel) {
            let oldest = cache
                .iter()
                .min_by_key(|(_, r)| r.at)
                .map(|(c, _)| c.clone());
            if let Some(c) = oldest {
                cache.remove(&c);
            }
        }
        let roles = Arc::new(roles);
        cache.insert(channel.clone(), roles.clone());
        roles
    }
}

/// This user's presence, as last told to the tracker (sent again when the tracker had forgotten the peer).
#[derive(Debug, Clone, Default)]
pub(super) struct MyPresence {
    pub status: PeerStatus,
    pub away: Option<String>,
}

fn not_allowed(msg: String) -> ApiError {
    ApiError::of(ErrorCode::NotAllowed, msg)
}

impl Roles {
    /// True when this answer settles a message from `from` without asking the tracker: it is fresh and lets the
    /// sender post. Anything it would refuse is asked about again, so a new member is never refused on old news.
    fn settles(&self, from: &PeerName) -> bool {
        self.at.elapsed() < ROLES_FRESH
            && self.me_member
            && self.roles.get(from).is_some_and(|role| role.may_post())
    }

    /// The verdict on a channel message from `from`, as this answer says.
    fn verdict(
        &self,
        me: &PeerName,
        channel: &ChannelName,
        from: &PeerName,
    ) -> Result<(), ApiError> {
        if !self.me_member {
            return Err(not_allowed(format!(
                "{me} is no longer a member of #{channel}"
            )));
        }
        match self.roles.get(from) {
            Some(role) if role.may_post() => Ok(()),
            Some(_) => Err(not_allowed(format!(
                "{from} is a visitor in #{channel} and cannot post"
            ))),
            None => Err(not_allowed(format!("{from} is not a member of #{channel}"))),
        }
    }
}

impl Node {
    /// Joins a channel, bringing its key when it has one; returns its live member count.
    pub async fn join_with_key(
        &self,
        channel: &ChannelName,
        key: Option<&str>,
    ) -> Result<usize, NodeError> {
        self.join_inner(channel, key).await
    }

    /// A channel's owner, mode and members with roles and status.
    pub async fn channel_info(&self, channel: &ChannelName) -> Result<ChannelInfo, NodeError> {
        Ok(self.inner.tracker.channel_info(channel).await?)
    }

    /// Sets a channel's mode (this user must own it).
    pub async fn set_mode(
        &self,
        channel: &ChannelName,
        mode: ChannelMode,
        key: Option<String>,
    ) -> Result<ChannelInfo, NodeError> {
        let req = ChannelModeRequest {
            name: self.name().clone(),
            channel: channel.clone(),
            mode,
            key,
        };
        let t = &self.inner.tracker;
        let info = self.tracked(|| t.set_mode(&req)).await?;
        self.forget_roles(channel);
        Ok(info)
    }

    /// Invites, removes, bans or unbans `peer` (this user must own the channel).
    pub async fn channel_act(
        &self,
        action: ChannelAction,
        channel: &ChannelName,
        peer: &PeerName,
    ) -> Result<ChannelInfo, NodeError> {
        let req = ChannelPeerRequest {
            name: self.name().clone(),
            channel: channel.clone(),
            peer: peer.clone(),
        };
        let t = &self.inner.tracker;
        let info = self.tracked(|| t.channel_act(action, &req)).await?;
        self.forget_roles(channel);
        Ok(info)
    }

    /// Makes `peer` a visitor (read-only) or a member again (this user must own the channel).
    pub async fn set_role(
        &self,
        channel: &ChannelName,
        peer: &PeerName,
        role: GivenRole,
    ) -> Result<ChannelInfo, NodeError> {
        let req = ChannelRoleRequest {
            name: self.name().clone(),
            channel: channel.clone(),
            peer: peer.clone(),
            role,
        };
        let t = &self.inner.tracker;
        let info = self.tracked(|| t.set_role(&req)).await?;
        self.forget_roles(channel);
        Ok(info)
    }

    /// Sets how others see this user: online, away (with a message) or invisible.
    pub async fn set_presence(
        &self,
        status: PeerStatus,
        away: Option<String>,
    ) -> Result<(), NodeError> {
        let req = PresenceRequest {
            name: self.name().clone(),
            status,
            message: away.clone(),
        };
        let t = &self.inner.tracker;
        self.tracked(|| t.set_presence(&req)).await?;
        *lock(&self.inner.my_presence) = MyPresence {
            status,
            away: away.clone(),
        };
        self.inner.events.publish(Event::Status { status, away });
        Ok(())
    }

    /// This user's presence as last set.
    pub fn presence_status(&self) -> (PeerStatus, Option<String>) {
        let p = lock(&self.inner.my_presence);
        (p.status, p.away.clone())
    }

    /// Tells a tracker that had forgotten this peer its presence again (a renewal keeps it otherwise).
    pub(super) async fn restore_presence(&self) -> Result<(), TrackerError> {
        let p = lock(&self.inner.my_presence).clone();
        if p.status == PeerStatus::Online {
            return Ok(());
        }
        self.inner
            .tracker
            .set_presence(&PresenceRequest {
                name: self.name().clone(),
                status: p.status,
                message: p.away,
            })
            .await
            .map(|_| ())
    }

    pub(super) fn forget_roles(&self, channel: &ChannelName) {
        self.inner.roles.forget(channel);
    }

    /// Asks the tracker for a channel's roles and caches them.
    async fn fetch_roles(&self, channel: &ChannelName) -> Result<Arc<Roles>, TrackerError> {
        let roles = match self.inner.tracker.channel_info(channel).await {
            Ok(info) => Roles {
                at: Instant::now(),
                me_member: info.members.iter().any(|m| &m.name == self.name()),
                roles: info
                    .members
                    .into_iter()
                    .take(ROLES_CACHED_MEMBERS)
                    .map(|m| (m.name, m.role))
                    .collect(),
            },
            Err(TrackerError::Refused {
                code: ErrorCode::MembersOnly | ErrorCode::UnknownChannel,
                ..
            }) => Roles {
                at: Instant::now(),
                me_member: false,
                roles: HashMap::new(),
            },
            Err(e) => return Err(e),
        };
        Ok(self.inner.roles.keep(channel, roles))
    }

    /// May `from` post in `channel`, as the tracker says? Refused with 403 `not_allowed` when not, or when this
    /// node is no longer a member itself.
    pub(super) async fn check_may_post(
        &self,
        channel: &ChannelName,
        from: &PeerName,
    ) -> Result<(), ApiError> {
        // Shared, not copied: a channel's roles may list thousands of members.
        let cached = self.inner.roles.get(channel);
        let usable = cached.as_ref().filter(|r| r.settles(from));
        let roles = match usable {
            Some(r) => r.clone(),
            None => match self.fetch_roles(channel).await {
                Ok(r) => r,
                // The tracker is down: its last word stands, however old.
                Err(TrackerError::Unreachable(..)) if cached.is_some() => cached.expect("checked"),
                Err(e) => {
                    return Err(ApiError::of(
                        ErrorCode::CannotVerifySender,
                        format!("who may post in #{channel} cannot be checked now: {e}"),
                    ));
                }
            },
        };
        roles.verdict(self.name(), channel, from)
    }

    /// The tracker no longer has this node in `channel` (removed or banned by its owner): stop showing it.
    pub(super) async fn removed_from(&self, channel: &ChannelName, why: &str) {
        if !self.is_joined(channel) {
            return;
        }
        if let Err(e) = self.inner.store.set_joined(channel, None).await {
            tracing::error!(peer = %self.name(), "cannot save leaving #{channel}: {e}");
        }
        self.inner.joined.remove(channel);
        self.inner.directory.forget_channel(channel);
        self.forget_members(channel);
        self.forget_roles(channel);
        tracing::info!(peer = %self.name(), %channel, "no longer a member: {why}");
        self.inner.events.publish(Event::Left {
            channel: channel.clone(),
        });
        self.notice(format!("you are no longer in #{channel}: {why}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> PeerName {
        PeerName::new(s).unwrap()
    }

    fn roles(me_member: bool, list: &[(&str, Role)], age: Duration) -> Roles {
        Roles {
            at: Instant::now() - age,
            me_member,
            roles: list.iter().map(|(p, r)| (n(p), *r)).collect(),
        }
    }

    #[test]
    fn given_fresh_roles_then_only_posters_are_settled_without_asking() {
        let r = roles(
            true,
            &[("alice", Role::Owner), ("bob", Role::Visitor)],
            Duration::ZERO,
        );
        assert!(r.settles(&n("alice")));
        assert!(!r.settles(&n("bob")), "a refusal is always checked again");
        assert!(!r.settles(&n("carol")), "so is a stranger");
        let old = roles(true, &[("alice", Role::Owner)], ROLES_FRESH);
        assert!(!old.settles(&n("alice")), "old news is asked again");
    }

    #[test]
    fn the_verdict_refuses_visitors_strangers_and_a_node_that_is_out() {
        let c = ChannelName::new("c").unwrap();
        let r = roles(
            true,
            &[("alice", Role::Member), ("bob", Role::Visitor)],
            Duration::ZERO,
        );
        assert!(r.verdict(&n("me"), &c, &n("alice")).is_ok());
        for from in ["bob", "carol"] {
            let e = r.verdict(&n("me"), &c, &n(from)).unwrap_err();
            assert_eq!((e.status.as_u16(), e.code.as_ref()), (403, "not_allowed"));
        }
        let out = roles(false, &[("alice", Role::Member)], Duration::ZERO);
        assert!(out.verdict(&n("me"), &c, &n("alice")).is_err());
    }
}
