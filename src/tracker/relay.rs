//! The tracker's side of the relay (docs/SESSIONS.md, 12): who may use it, and its counts in `GET /health`. The
//! forwarding itself is [`crate::link::relay::Switch`]: it carries packets it cannot read between two relay
//! streams. Only a key bound to a name with a live lease may open one or be relayed to: the relay is no open
//! proxy for strangers, and a peer that unregisters or lapses loses it within [`crate::link::relay::RELAY_RECHECK`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use super::Shared;
use crate::identity::PublicKey;
use crate::link::Endpoint;
use crate::link::relay::{RelayLimits, Switch};
use crate::proto::{RelayHealth, now_ms};

/// Starts relaying on `endpoint` for the peers `shared` knows.
pub(crate) fn serve(shared: &Arc<Shared>, endpoint: &Endpoint, limits: RelayLimits) {
    let weak: Weak<Shared> = Arc::downgrade(shared);
    let policy = move |key: &PublicKey| weak.upgrade().is_some_and(|s| may_relay(&s, key));
    let switch = Arc::new(Switch::new(Box::new(policy), limits));
    let _ = shared.relay.set(switch.clone());
    endpoint.serve_relay(switch);
}

/// A key may use the relay while a name bound to it holds a live lease.
fn may_relay(shared: &Shared, key: &PublicKey) -> bool {
    let now = now_ms();
    shared.read(|st| {
        st.identities
            .names_of(key)
            .iter()
            .any(|name| st.registry.live_addr(name, now).is_some())
    })
}

/// The relay's part of `GET /health`.
pub(crate) fn health(shared: &Shared) -> Option<RelayHealth> {
    let s = &shared.relay.get()?.stats;
    Some(RelayHealth {
        streams: s.streams.load(Ordering::Relaxed),
        packets: s.packets.load(Ordering::Relaxed),
        bytes: s.bytes.load(Ordering::Relaxed),
        dropped: s.dropped.load(Ordering::Relaxed),
        refused: s.refused.load(Ordering::Relaxed),
    })
}
