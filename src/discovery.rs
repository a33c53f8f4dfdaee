//! Finding a tracker on the LAN with no address typed: the tracker announces itself by mDNS / DNS-SD (RFC 6762,
//! RFC 6763) as `_hchat._udp.local.`, and a peer started without a tracker address browses for it for a bounded
//! time. docs/PROTOCOL.md, "Finding a tracker on the LAN", is the rule; this module is its one implementation,
//! used by the binary only (`hchat tracker` announces, `hchat peer` browses), so the library's other users and the
//! fuzz build do without `mdns-sd`.
//!
//! What an announcement says is a claim by whoever sent it: anyone on the LAN can announce. So the fingerprint it
//! carries is never trusted on its own: the peer demands a session in which the tracker proves that very key
//! (`TrackerKey::Announced`), and a tracker it pinned before must still prove the pinned key.

use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::time::Duration;

use mdns_sd::{ResolvedService, ScopedIp, ServiceDaemon, ServiceEvent, ServiceInfo};

use crate::identity::{FINGERPRINT_HEX, PublicKey};

/// The DNS-SD service type a tracker announces (its sessions are QUIC, on UDP).
pub const SERVICE_TYPE: &str = "_hchat._udp.local.";

/// The version of the TXT record's keys; an announcement with another `v` is ignored.
pub const TXT_VERSION: &str = "1";

/// How long a peer browses when no tracker answers: then it falls back to the old default address.
pub const BROWSE_FOR: Duration = Duration::from_secs(3);

/// How long a peer keeps listening after the first tracker answered, to see whether there are several (and say
/// so). A tracker answers a query within ~0.1 s on a LAN (RFC 6762 lets it delay up to 0.5 s); a busy host may
/// take longer to read it: with 1 s, a loaded CI machine heard only one of two trackers (tests/it/discovery.rs).
pub const MORE_WITHIN: Duration = Duration::from_secs(2);

/// Trackers a browse keeps at most: a hostile host announcing thousands must not grow the peer's memory.
pub const MAX_FOUND: usize = 16;

/// Why announcing or browsing failed (multicast not possible here, say).
#[derive(Debug, thiserror::Error)]
#[error("mDNS: {0}")]
pub struct DiscoveryError(String);

impl From<mdns_sd::Error> for DiscoveryError {
    fn from(e: mdns_sd::Error) -> Self {
        DiscoveryError(e.to_string())
    }
}

/// A tracker's announcement, withdrawn (a goodbye packet) when dropped.
pub struct Announcement {
    daemon: ServiceDaemon,
    fullname: String,
}

impl Drop for Announcement {
    fn drop(&mut self) {
        let _ = self.daemon.unregister(&self.fullname);
        let _ = self.daemon.shutdown();
    }
}

/// The fingerprint of `key` as the TXT record carries it: 32 lower-case hex digits, no spaces.
pub fn fingerprint_hex(key: &PublicKey) -> String {
    key.fingerprint().replace(' ', "")
}

/// Announces the tracker whose HTTP API is at `http` (its address: a specific one is announced as it is;
/// 0.0.0.0 or :: announces the host's addresses, kept up to date as they change), whose sessions are on UDP
/// `quic_port`, and whose key is `key`.
pub fn announce(
    http: SocketAddr,
    quic_port: u16,
    key: &PublicKey,
) -> Result<Announcement, DiscoveryError> {
    let daemon = ServiceDaemon::new()?;
    let fp = fingerprint_hex(key);
    let instance = format!("hchat tracker {}", &fp[..8]);
    let host = format!("hchat-{}.local.", &fp[..16]);
    let http_port = http.port().to_string();
    let quic = quic_port.to_string();
    let txt = [
        ("v", TXT_VERSION),
        ("http", http_port.as_str()),
        ("quic", quic.as_str()),
        ("fp", fp.as_str()),
    ];
    let info = if http.ip().is_unspecified() {
        ServiceInfo::new(SERVICE_TYPE, &instance, &host, "", quic_port, &txt[..])?
            .enable_addr_auto()
    } else {
        ServiceInfo::new(
            SERVICE_TYPE,
            &instance,
            &host,
            http.ip(),
            quic_port,
            &txt[..],
        )?
    };
    // No probing for the name first (RFC 6762, 8.1): it is made of the key's fingerprint, so only this very
    // tracker could hold it, and a tracker is found at once instead of ~0.75 s after it starts.
    let mut info = info;
    info.set_requires_probe(false);
    let fullname = info.get_fullname().to_string();
    daemon.register(info)?;
    Ok(Announcement { daemon, fullname })
}

/// A tracker found on the LAN, as its announcement describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its HTTP address (what `--tracker-ip`/`--tracker-port` give); a link-local IPv6 one with its scope.
    pub addr: SocketAddr,
    /// Its UDP port for sessions.
    pub quic_port: u16,
    /// The fingerprint it claims: 32 lower-case hex digits.
    pub fingerprint: String,
}

impl Found {
    /// The announcement as a [`Found`], or `None` for one that does not follow the rule (ignored).
    fn from_resolved(info: &ResolvedService) -> Option<Found> {
        let txt = |k: &str| info.get_property_val_str(k);
        if txt("v") != Some(TXT_VERSION) {
            return None;
        }
        let port = |k: &str| txt(k)?.parse::<u16>().ok().filter(|p| *p != 0);
        let fingerprint = txt("fp")?.to_string();
        if fingerprint.len() != FINGERPRINT_HEX
            || !fingerprint
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        let ip = best_address(info.get_addresses())?;
        Some(Found {
            addr: with_port(ip, port("http")?),
            quic_port: port("quic")?,
            fingerprint,
        })
    }

    /// The address as `IP:PORT` for `--tracker-ip`'s user, with a link-local scope written `%index`.
    pub fn shown(&self) -> String {
        self.addr.to_string()
    }
}

fn with_port(ip: ScopedIp, port: u16) -> SocketAddr {
    match ip {
        ScopedIp::V6(v6) if v6.addr().is_unicast_link_local() => {
            SocketAddr::V6(SocketAddrV6::new(*v6.addr(), port, 0, v6.scope_id().index))
        }
        other => SocketAddr::new(other.to_ip_addr(), port),
    }
}

/// Which announced address to dial: IPv4 first (the tracker's `--ip` most often), then a global or ULA IPv6 one,
/// then a link-local one (it needs the interface it was heard on). Loopback and unspecified ones are no use to
/// another host.
fn best_address(addrs: &std::collections::HashSet<ScopedIp>) -> Option<ScopedIp> {
    let rank = |ip: &ScopedIp| match ip.to_ip_addr() {
        IpAddr::V4(v4) if !v4.is_loopback() && !v4.is_unspecified() => Some(0),
        IpAddr::V6(v6) if v6.is_loopback() || v6.is_unspecified() => None,
        IpAddr::V6(v6) if v6.is_unicast_link_local() => Some(2),
        IpAddr::V6(_) => Some(1),
        IpAddr::V4(_) => None,
    };
    let mut usable: Vec<(u8, String, &ScopedIp)> = addrs
        .iter()
        .filter_map(|ip| rank(ip).map(|r| (r, ip.to_ip_addr().to_string(), ip)))
        .collect();
    // The same choice whatever order the set iterates in.
    usable.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    usable.first().map(|(_, _, ip)| (*ip).clone())
}

/// Browses for trackers: until `within` has passed with none found, or `more_within` after the first one; when a
/// `wanted` fingerprint is given, until that one answers (or `within` has passed). In the order they answered,
/// each fingerprint once, at most [`MAX_FOUND`].
pub async fn browse(
    within: Duration,
    more_within: Duration,
    wanted: Option<&str>,
) -> Result<Vec<Found>, DiscoveryError> {
    let daemon = ServiceDaemon::new()?;
    let events = daemon.browse(SERVICE_TYPE)?;
    let mut found: Vec<Found> = Vec::new();
    let mut until = tokio::time::Instant::now() + within;
    while found.len() < MAX_FOUND {
        let event = match tokio::time::timeout_at(until, events.recv_async()).await {
            Ok(Ok(event)) => event,
            Ok(Err(_)) | Err(_) => break,
        };
        let ServiceEvent::ServiceResolved(info) = event else {
            continue;
        };
        match Found::from_resolved(&info) {
            Some(f) if !found.iter().any(|g| g.fingerprint == f.fingerprint) => {
                tracing::debug!(fullname = %info.get_fullname(), ?f, "found a tracker");
                let done = wanted == Some(f.fingerprint.as_str());
                found.push(f);
                if done {
                    break;
                }
                if wanted.is_none() {
                    until = until.min(tokio::time::Instant::now() + more_within);
                }
            }
            Some(_) => {}
            None => tracing::debug!(
                fullname = %info.get_fullname(),
                "ignored an announcement that does not follow the rule"
            ),
        }
    }
    let _ = daemon.shutdown();
    Ok(found)
}

/// Which of the trackers found to take: the one whose fingerprint is `wanted` (`--tracker-key`) if given, else
/// the first that `pinned` says this peer pinned before, else the first to answer. `Err` is the line to show when
/// `wanted` matches none.
pub fn choose<'a>(
    found: &'a [Found],
    wanted: Option<&str>,
    pinned: impl Fn(&Found) -> bool,
) -> Result<Option<&'a Found>, String> {
    if let Some(fp) = wanted {
        return match found.iter().find(|f| f.fingerprint == fp) {
            Some(f) => Ok(Some(f)),
            None => Err(format!(
                "none of the {} tracker(s) found on the LAN has fingerprint {fp}{}; pass --tracker-ip to reach it by address",
                found.len(),
                others(found, None)
            )),
        };
    }
    Ok(found.iter().find(|f| pinned(f)).or(found.first()))
}

/// ` (found: ADDR fingerprint FP, ...)` for the trackers other than `taken`.
fn others(found: &[Found], taken: Option<&Found>) -> String {
    let list: Vec<String> = found
        .iter()
        .filter(|f| Some(*f) != taken)
        .map(|f| format!("{} fingerprint {}", f.shown(), f.fingerprint))
        .collect();
    if list.is_empty() {
        String::new()
    } else {
        format!(" (found: {})", list.join(", "))
    }
}

/// The one line a peer prints about the tracker it took.
pub fn taken_line(found: &[Found], taken: &Found) -> String {
    if found.len() == 1 {
        return format!(
            "* found tracker {} on the LAN (mDNS), fingerprint {}",
            taken.shown(),
            taken.fingerprint
        );
    }
    format!(
        "* found {} trackers on the LAN (mDNS); took {} fingerprint {}; to choose another, pass --tracker-ip and --tracker-port, or --tracker-key with its fingerprint{}",
        found.len(),
        taken.shown(),
        taken.fingerprint,
        others(found, Some(taken))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(n: u8) -> Found {
        Found {
            addr: SocketAddr::from(([10, 0, 0, n], 9001)),
            quic_port: 9001,
            fingerprint: format!("{:032x}", n),
        }
    }

    #[test]
    fn given_a_wanted_fingerprint_when_choosing_then_only_that_tracker_is_taken() {
        let all = [found(1), found(2)];
        let fp2 = found(2).fingerprint;
        assert_eq!(choose(&all, Some(&fp2), |_| false), Ok(Some(&all[1])));
        let err = choose(&all, Some(&found(3).fingerprint), |_| true).unwrap_err();
        assert!(err.contains("none of the 2 tracker(s)"), "{err}");
        assert!(err.contains("10.0.0.1:9001"), "{err}");
    }

    #[test]
    fn given_a_pinned_tracker_when_choosing_then_it_wins_over_the_first_to_answer() {
        let all = [found(1), found(2)];
        assert_eq!(
            choose(&all, None, |f| f.addr.ip() == all[1].addr.ip()),
            Ok(Some(&all[1]))
        );
        assert_eq!(choose(&all, None, |_| false), Ok(Some(&all[0])));
        assert_eq!(choose(&[], None, |_| false), Ok(None));
    }

    #[test]
    fn given_several_trackers_the_line_says_which_was_taken_and_how_to_choose() {
        let all = [found(1), found(2)];
        let line = taken_line(&all, &all[0]);
        assert!(line.starts_with("* found 2 trackers on the LAN"), "{line}");
        assert!(line.contains("took 10.0.0.1:9001"), "{line}");
        assert!(line.contains("--tracker-key"), "{line}");
        assert!(line.contains("10.0.0.2:9001 fingerprint"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn link_local_addresses_keep_their_scope_and_rank_last() {
        let v4: ScopedIp = IpAddr::from([10, 0, 0, 1]).into();
        let ula: ScopedIp = "fd77::1".parse::<IpAddr>().unwrap().into();
        let lo: ScopedIp = IpAddr::from([127, 0, 0, 1]).into();
        let set = |v: Vec<ScopedIp>| v.into_iter().collect::<std::collections::HashSet<_>>();
        assert_eq!(best_address(&set(vec![ula.clone(), v4.clone()])), Some(v4));
        assert_eq!(best_address(&set(vec![ula.clone(), lo.clone()])), Some(ula));
        assert_eq!(best_address(&set(vec![lo])), None);
    }
}
