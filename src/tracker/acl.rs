//! Channel access control as pure rules: who owns a channel, how it admits (open, by invitation, by key), who
//! may post (owner and members; visitors only read) and who is banned. The [`Registry`](super::registry::Registry)
//! holds one [`Acl`] per channel and asks it before every join, fan-out and change; nothing here does I/O.
//!
//! A key is never kept: only a random salt and SHA-256(salt ‖ key), compared in constant time.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::proto::{ChannelMode, PeerName, Role};

/// Longest key a channel accepts (bytes); a key is typed by people.
pub(crate) const MAX_KEY_LEN: usize = 128;
/// Most names one channel keeps invited or banned (bound every table).
pub(crate) const MAX_ACL_NAMES: usize = 10_000;

/// Why the access rules refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("only the owner of #{channel} ({owner}) may change it")]
    NotOwner { channel: String, owner: String },
    #[error("{peer} is banned from #{channel}")]
    Banned { peer: PeerName, channel: String },
    #[error("#{0} is invite-only; ask its owner to /invite you")]
    InviteOnly(String),
    #[error("#{0} needs its key: join with #{0} <key>")]
    KeyRequired(String),
    #[error("that is not the key of #{0}")]
    BadKey(String),
    #[error("{peer} is a visitor in #{channel}: visitors read, they cannot post")]
    ReadOnly { peer: PeerName, channel: String },
    #[error("#{0} shows its members only to its members")]
    MembersOnly(String),
    #[error("key: {0}")]
    InvalidKey(&'static str),
    #[error("the owner of #{0} cannot be removed, banned or made a visitor")]
    IsOwner(String),
    #[error("#{0} has too many invited or banned names")]
    TooMany(String),
}

/// A salted SHA-256 of a channel key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHash {
    pub salt: [u8; 16],
    pub hash: [u8; 32],
}

impl KeyHash {
    /// Hashes `key` with a fresh random salt. Refuses an empty or over-long key.
    pub fn new(key: &str) -> Result<KeyHash, AclError> {
        check_key(key)?;
        let salt: [u8; 16] = rand::random();
        Ok(KeyHash {
            salt,
            hash: digest(&salt, key),
        })
    }

    /// True when `key` is the key this hash was made from (constant time in the hash).
    pub fn matches(&self, key: &str) -> bool {
        let other = digest(&self.salt, key);
        self.hash
            .iter()
            .zip(other.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

fn check_key(key: &str) -> Result<(), AclError> {
    if key.is_empty() {
        return Err(AclError::InvalidKey("a key channel needs a non-empty key"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(AclError::InvalidKey("at most 128 bytes"));
    }
    // One word, so it can be typed after the channel name in the CLI (`#name key`).
    if key.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(AclError::InvalidKey(
            "one word: no spaces or control characters",
        ));
    }
    Ok(())
}

fn digest(salt: &[u8; 16], key: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(key.as_bytes());
    h.finalize().into()
}

/// The named lists an owner keeps on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AclList {
    /// May join an invite or key channel without the key (invited by the owner, or admitted once with the key).
    Invited,
    Banned,
    /// Read-only members.
    Visitor,
}

impl AclList {
    pub fn as_str(self) -> &'static str {
        match self {
            AclList::Invited => "invited",
            AclList::Banned => "banned",
            AclList::Visitor => "visitor",
        }
    }
    pub fn parse(s: &str) -> Option<AclList> {
        match s {
            "invited" => Some(AclList::Invited),
            "banned" => Some(AclList::Banned),
            "visitor" => Some(AclList::Visitor),
            _ => None,
        }
    }
}

/// One channel's access rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Acl {
    /// The peer whose join created the channel. `None` for a channel made before channels had owners: it stays
    /// open and nobody can change it.
    pub owner: Option<PeerName>,
    pub mode: ChannelMode,
    pub key: Option<KeyHash>,
    pub invited: BTreeSet<PeerName>,
    pub banned: BTreeSet<PeerName>,
    pub visitors: BTreeSet<PeerName>,
}

impl Acl {
    /// The rules of a channel `owner` has just created: open, nobody invited or banned.
    pub(crate) fn owned_by(owner: PeerName) -> Acl {
        Acl {
            owner: Some(owner),
            ..Acl::default()
        }
    }

    /// The role a member has (`None` never: every member has one; the owner's is `Owner`).
    pub(crate) fn role(&self, name: &PeerName) -> Role {
        if self.owner.as_ref() == Some(name) {
            Role::Owner
        } else if self.visitors.contains(name) {
            Role::Visitor
        } else {
            Role::Member
        }
    }

    pub(crate) fn check_not_banned(&self, name: &PeerName, channel: &str) -> Result<(), AclError> {
        if self.banned.contains(name) {
            return Err(AclError::Banned {
                peer: name.clone(),
                channel: channel.to_string(),
            });
        }
        Ok(())
    }

    /// May `name` join, carrying `key`? Returns true when the join admits the name for good (a right key), so
    /// a later re-join (after its lease lapsed) needs no key.
    pub(crate) fn admit(
        &self,
        name: &PeerName,
        key: Option<&str>,
        channel: &str,
    ) -> Result<bool, AclError> {
        self.check_not_banned(name, channel)?;
        if self.owner.as_ref() == Some(name) || self.invited.contains(name) {
            return Ok(false);
        }
        match self.mode {
            ChannelMode::Open => Ok(false),
            ChannelMode::Invite => Err(AclError::InviteOnly(channel.to_string())),
            ChannelMode::Key => match (key, &self.key) {
                (None, _) => Err(AclError::KeyRequired(channel.to_string())),
                (Some(k), Some(h)) if h.matches(k) => Ok(true),
                _ => Err(AclError::BadKey(channel.to_string())),
            },
        }
    }

    /// May member `name` post?
    pub(crate) fn may_post(&self, name: &PeerName, channel: &str) -> Result<(), AclError> {
        self.check_not_banned(name, channel)?;
        if self.role(name) == Role::Visitor {
            return Err(AclError::ReadOnly {
                peer: name.clone(),
                channel: channel.to_string(),
            });
        }
        Ok(())
    }

    /// Only the owner changes a channel.
    pub(crate) fn check_owner(&self, actor: &PeerName, channel: &str) -> Result<(), AclError> {
        if self.owner.as_ref() != Some(actor) {
            return Err(AclError::NotOwner {
                channel: channel.to_string(),
                owner: self
                    .owner
                    .as_ref()
                    .map_or("nobody".to_string(), |o| o.to_string()),
            });
        }
        Ok(())
    }

    /// The owner cannot be the target of remove, ban or visitor.
    pub(crate) fn check_not_owner_target(
        &self,
        target: &PeerName,
        channel: &str,
    ) -> Result<(), AclError> {
        if self.owner.as_ref() == Some(target) {
            return Err(AclError::IsOwner(channel.to_string()));
        }
        Ok(())
    }

    /// Sets the mode; a key mode needs a key, which is hashed. Returns the new key hash (for the store).
    pub(crate) fn set_mode(
        &mut self,
        mode: ChannelMode,
        key: Option<&str>,
    ) -> Result<(), AclError> {
        self.key = match (mode, key) {
            (ChannelMode::Key, Some(k)) => Some(KeyHash::new(k)?),
            (ChannelMode::Key, None) => {
                return Err(AclError::InvalidKey("a key channel needs a non-empty key"));
            }
            (_, Some(_)) => {
                return Err(AclError::InvalidKey("only mode key takes a key"));
            }
            (_, None) => None,
        };
        self.mode = mode;
        Ok(())
    }

    /// Adds or takes a name off one of the lists; refuses to grow a list past [`MAX_ACL_NAMES`].
    /// Returns whether anything changed.
    pub(crate) fn set_listed(
        &mut self,
        list: AclList,
        name: &PeerName,
        on: bool,
        channel: &str,
    ) -> Result<bool, AclError> {
        let set = match list {
            AclList::Invited => &mut self.invited,
            AclList::Banned => &mut self.banned,
            AclList::Visitor => &mut self.visitors,
        };
        if on {
            if !set.contains(name) && set.len() >= MAX_ACL_NAMES {
                return Err(AclError::TooMany(channel.to_string()));
            }
            Ok(set.insert(name.clone()))
        } else {
            Ok(set.remove(name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> PeerName {
        PeerName::new(s).unwrap()
    }

    #[test]
    fn given_a_key_hash_then_only_the_same_key_matches_and_the_salt_differs_each_time() {
        let a = KeyHash::new("s3cret").unwrap();
        let b = KeyHash::new("s3cret").unwrap();
        assert!(a.matches("s3cret"));
        assert!(!a.matches("s3cret "));
        assert!(!a.matches(""));
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.hash, b.hash, "a salted hash does not reveal equal keys");
        assert!(KeyHash::new("").is_err());
        assert!(KeyHash::new("two words").is_err());
        assert!(KeyHash::new(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
    }

    #[test]
    fn given_an_open_channel_then_anyone_but_the_banned_joins() {
        let mut acl = Acl::owned_by(n("alice"));
        assert_eq!(acl.admit(&n("bob"), None, "c"), Ok(false));
        acl.set_listed(AclList::Banned, &n("bob"), true, "c")
            .unwrap();
        assert!(matches!(
            acl.admit(&n("bob"), None, "c"),
            Err(AclError::Banned { .. })
        ));
    }

    #[test]
    fn given_an_invite_channel_then_only_the_owner_and_the_invited_join() {
        let mut acl = Acl::owned_by(n("alice"));
        acl.set_mode(ChannelMode::Invite, None).unwrap();
        assert_eq!(acl.admit(&n("alice"), None, "c"), Ok(false));
        assert_eq!(
            acl.admit(&n("bob"), None, "c"),
            Err(AclError::InviteOnly("c".into()))
        );
        acl.set_listed(AclList::Invited, &n("bob"), true, "c")
            .unwrap();
        assert_eq!(acl.admit(&n("bob"), None, "c"), Ok(false));
    }

    #[test]
    fn given_a_key_channel_then_the_right_key_admits_for_good_and_others_are_refused() {
        let mut acl = Acl::owned_by(n("alice"));
        assert!(acl.set_mode(ChannelMode::Key, None).is_err());
        acl.set_mode(ChannelMode::Key, Some("pw")).unwrap();
        assert_eq!(
            acl.admit(&n("bob"), None, "c"),
            Err(AclError::KeyRequired("c".into()))
        );
        assert_eq!(
            acl.admit(&n("bob"), Some("nope"), "c"),
            Err(AclError::BadKey("c".into()))
        );
        assert_eq!(acl.admit(&n("bob"), Some("pw"), "c"), Ok(true));
        acl.set_mode(ChannelMode::Open, None).unwrap();
        assert_eq!(acl.key, None, "an open channel keeps no key");
    }

    #[test]
    fn given_a_visitor_then_it_cannot_post_and_the_owner_alone_changes_things() {
        let mut acl = Acl::owned_by(n("alice"));
        acl.set_listed(AclList::Visitor, &n("bob"), true, "c")
            .unwrap();
        assert_eq!(acl.role(&n("bob")), Role::Visitor);
        assert_eq!(acl.role(&n("alice")), Role::Owner);
        assert_eq!(acl.role(&n("carol")), Role::Member);
        assert!(matches!(
            acl.may_post(&n("bob"), "c"),
            Err(AclError::ReadOnly { .. })
        ));
        assert!(acl.may_post(&n("carol"), "c").is_ok());
        assert!(acl.check_owner(&n("alice"), "c").is_ok());
        assert!(matches!(
            acl.check_owner(&n("bob"), "c"),
            Err(AclError::NotOwner { .. })
        ));
        assert!(acl.check_not_owner_target(&n("alice"), "c").is_err());
        let legacy = Acl::default();
        assert!(legacy.check_owner(&n("alice"), "c").is_err());
    }
}
