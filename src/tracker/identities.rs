//! Which key each name belongs to. The first key to register a name owns it for good: the binding is recorded in
//! the tracker's store and restored on restart, so nobody can take a name over by waiting for its lease to lapse
//! or for the tracker to restart. Pure state, unit-tested here.

use std::collections::HashMap;

use crate::identity::PublicKey;
use crate::proto::PeerName;

/// Most names bound at once (as many as the registry holds peers).
pub const MAX_IDENTITIES: usize = super::registry::MAX_PEERS;

/// Why a binding is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    #[error(
        "name {0} belongs to another identity; start with its data dir (its identity.key) or pick another name"
    )]
    NameTaken(PeerName),
    #[error("the tracker is full: too many identities")]
    Full,
}

/// Names and the keys they are bound to (32 bytes a key).
#[derive(Debug, Default, Clone)]
pub struct Identities {
    keys: HashMap<PeerName, PublicKey>,
}

impl Identities {
    /// The key `name` is bound to.
    pub fn key_of(&self, name: &PeerName) -> Option<PublicKey> {
        self.keys.get(name).copied()
    }

    /// May `key` act as `name`? `Ok(true)` when the name is free and [`Identities::bind`] must be called (and
    /// recorded) once the registration is accepted; `Ok(false)` when it is already `key`'s.
    pub fn check(&self, name: &PeerName, key: PublicKey) -> Result<bool, BindError> {
        match self.keys.get(name) {
            Some(k) if *k == key => Ok(false),
            Some(_) => Err(BindError::NameTaken(name.clone())),
            None if self.keys.len() >= MAX_IDENTITIES => Err(BindError::Full),
            None => Ok(true),
        }
    }

    /// Binds a free name to `key` (after [`Identities::check`]), or puts back a binding as a store saved it.
    pub fn bind(&mut self, name: PeerName, key: PublicKey) {
        self.keys.entry(name).or_insert(key);
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    #[test]
    fn given_a_bound_name_when_another_key_claims_it_then_it_is_refused_and_the_owner_keeps_it() {
        let mut ids = Identities::default();
        let alice = PeerName::new("alice").unwrap();
        let (k1, k2) = (
            Identity::ephemeral().public_key(),
            Identity::ephemeral().public_key(),
        );
        assert_eq!(ids.check(&alice, k1), Ok(true));
        ids.bind(alice.clone(), k1);
        assert_eq!(ids.check(&alice, k1), Ok(false));
        assert_eq!(
            ids.check(&alice, k2),
            Err(BindError::NameTaken(alice.clone()))
        );
        ids.bind(alice.clone(), k2);
        assert_eq!(
            ids.key_of(&alice),
            Some(k1),
            "a bound name is never rebound"
        );
    }
}
