//! Validated names: a peer's name and a channel's name share one rule, so that both can be typed in a CLI line
//! (`@bob`, `#general`) and put in a URL without escaping.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::MAX_NAME_CHARS;

/// Why a string is not a valid name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a name cannot be empty")]
    Empty,
    #[error("a name has at most {MAX_NAME_CHARS} characters")]
    TooLong,
    #[error(
        "a name may use only letters, digits, '-', '_' and '.', and starts with a letter or digit"
    )]
    BadCharacter,
}

/// The form two names share when a reader could take one for the other: lower case, with the letters and digits
/// that look alike in common fonts folded together (`I`, `l`, `i`, `1` → `l`; `O`, `0` → `o`; `rn` → `m`;
/// `vv` → `w`). Names are ASCII (see [`check`]), so no other script can pass for Latin. Two names with one
/// skeleton cannot both be bound: `aIice` is refused while `alice` is.
pub fn skeleton(s: &str) -> String {
    let folded: String = s
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            'i' | '1' => 'l',
            '0' => 'o',
            c => c,
        })
        .collect();
    folded.replace("rn", "m").replace("vv", "w")
}

fn check(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.chars().count() > MAX_NAME_CHARS {
        return Err(NameError::TooLong);
    }
    let mut chars = s.chars();
    let first = chars.next().unwrap_or('-');
    if !first.is_ascii_alphanumeric()
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(NameError::BadCharacter);
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        impl $ty {
            pub fn new(s: impl Into<String>) -> Result<Self, NameError> {
                let s = s.into();
                check(&s)?;
                Ok(Self(s))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
            /// The form this name shares with every name that looks like it (see [`skeleton`]).
            pub fn skeleton(&self) -> String {
                skeleton(&self.0)
            }
        }
        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                Self::new(s)
            }
        }
        impl From<$ty> for String {
            fn from(n: $ty) -> String {
                n.0
            }
        }
        impl std::str::FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A peer's user name, unique among the live peers of a tracker.
    PeerName
);
name_type!(
    /// A channel's name, written without the leading `#` on the wire (`general`), with it in the CLI (`#general`).
    /// A leading `#` is accepted and dropped when parsing, since users type it.
    ChannelName
);

impl ChannelName {
    /// Parses a channel as a user writes it, with or without its `#`.
    pub fn parse_user(s: &str) -> Result<Self, NameError> {
        Self::new(s.strip_prefix('#').unwrap_or(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["alice", "Bob_2", "a", "x.y-z", "0cool"] {
            assert!(PeerName::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_names_that_cannot_be_typed_or_routed() {
        assert_eq!(PeerName::new(""), Err(NameError::Empty));
        assert_eq!(PeerName::new("a".repeat(33)), Err(NameError::TooLong));
        for bad in ["-x", "al ice", "bob/..", "é", "#general", "a\n"] {
            assert_eq!(PeerName::new(bad), Err(NameError::BadCharacter), "{bad:?}");
        }
    }

    #[test]
    fn channel_names_drop_the_hash_users_type() {
        assert_eq!(
            ChannelName::parse_user("#general").unwrap().as_str(),
            "general"
        );
        assert_eq!(
            ChannelName::parse_user("general").unwrap().as_str(),
            "general"
        );
        assert!(ChannelName::parse_user("##x").is_err());
    }

    #[test]
    fn lookalikes_share_a_skeleton_and_others_do_not() {
        let alice = PeerName::new("alice").unwrap().skeleton();
        for like in ["aIice", "Alice", "ALICE", "a1ice", "alIce"] {
            assert_eq!(PeerName::new(like).unwrap().skeleton(), alice, "{like}");
        }
        assert_eq!(skeleton("rnoO"), skeleton("moo"));
        assert_eq!(skeleton("vvill"), skeleton("will"));
        for other in ["alicee", "alise", "bob", "al-ice"] {
            assert_ne!(skeleton(other), alice, "{other}");
        }
    }

    #[test]
    fn serde_validates_on_the_way_in() {
        assert!(serde_json::from_str::<PeerName>("\"ok\"").is_ok());
        assert!(serde_json::from_str::<PeerName>("\"not ok\"").is_err());
    }
}
