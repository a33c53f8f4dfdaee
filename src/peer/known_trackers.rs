//! The tracker keys this peer trusts: pinned on first contact in `<data-dir>/known_trackers` (like SSH's
//! `known_hosts`), or given with `--tracker-key`. A tracker that presents another key is refused with one line
//! saying what happened and what to do (docs/PROTOCOL.md, "Sessions with the tracker").
//!
//! File format, one tracker a line: `<ip>:<port> <key, 43 base64url characters> <YYYY-MM-DD>`, the address being
//! the tracker's HTTP address as given to the peer (`--tracker-ip:--tracker-port`), the date the day the key was
//! pinned (UTC). Blank lines and lines starting with `#` are ignored; a line that does not parse is kept as it is
//! and ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::identity::{FINGERPRINT_HEX, PublicKey};

/// The file in a peer's data dir.
pub const KNOWN_TRACKERS_FILE: &str = "known_trackers";

/// What `--tracker-key` gave: the key itself, or its fingerprint (as `hchat tracker` prints it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackerKey {
    Key(PublicKey),
    /// The 32 hex digits of a fingerprint, lower case, without spaces.
    Fingerprint(String),
    /// A fingerprint (as above) that a tracker's mDNS announcement claimed, not the user: the tracker must prove
    /// it, and a key pinned before for that address still wins (docs/PROTOCOL.md, "Finding a tracker on the LAN").
    Announced(String),
}

impl std::str::FromStr for TrackerKey {
    type Err = String;
    fn from_str(s: &str) -> Result<TrackerKey, String> {
        let s = s.trim();
        if let Ok(key) = s.parse::<PublicKey>() {
            return Ok(TrackerKey::Key(key));
        }
        let hex: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        if hex.len() == FINGERPRINT_HEX && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(TrackerKey::Fingerprint(hex.to_ascii_lowercase()));
        }
        Err(format!(
            "not a tracker key: give the 43-character key or the {FINGERPRINT_HEX}-hex-digit fingerprint that `hchat tracker` prints"
        ))
    }
}

impl TrackerKey {
    pub fn matches(&self, key: &PublicKey) -> bool {
        match self {
            TrackerKey::Key(k) => k == key,
            TrackerKey::Fingerprint(f) | TrackerKey::Announced(f) => {
                key.fingerprint().replace(' ', "") == *f
            }
        }
    }

    fn shown(&self) -> String {
        match self {
            TrackerKey::Key(k) => k.to_string(),
            TrackerKey::Fingerprint(f) => format!("fingerprint {f}"),
            TrackerKey::Announced(f) => format!("fingerprint {f} (its mDNS announcement)"),
        }
    }
}

/// A pinned key and the day it was pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pin {
    pub key: PublicKey,
    pub since: String,
}

/// Where pins are kept (a file, or this process's memory) and the `--tracker-key` override.
#[derive(Debug)]
pub(crate) struct KnownTrackers {
    file: Option<PathBuf>,
    given: Option<TrackerKey>,
    memory: Mutex<Option<Pin>>,
}

impl KnownTrackers {
    pub(crate) fn new(data_dir: Option<&Path>, given: Option<TrackerKey>) -> KnownTrackers {
        KnownTrackers {
            file: data_dir.map(|d| d.join(KNOWN_TRACKERS_FILE)),
            given,
            memory: Mutex::new(None),
        }
    }

    /// The pin for `tracker`, if any (the file's, else one made earlier by this process).
    pub(crate) fn pinned(&self, tracker: SocketAddr) -> Option<Pin> {
        if let Some(path) = &self.file {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            return parse(&text, tracker);
        }
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether a session may go on with a tracker that presented `found`; pins it if nothing was pinned. `Err`
    /// is the one line to show the user.
    pub(crate) fn check(&self, tracker: SocketAddr, found: &PublicKey) -> Result<(), String> {
        if let Some(TrackerKey::Announced(fp)) = &self.given
            && !self.given.as_ref().is_some_and(|g| g.matches(found))
        {
            return Err(format!(
                "tracker {tracker} announced fingerprint {fp} on the LAN (mDNS) but proved key {found} (fingerprint {}): refused, something on the LAN claims to be a tracker it is not; pass --tracker-ip and --tracker-key of the tracker you trust",
                found.fingerprint()
            ));
        }
        if let Some(given) = self
            .given
            .as_ref()
            .filter(|g| !matches!(g, TrackerKey::Announced(_)))
        {
            if given.matches(found) {
                if self.pinned(tracker).is_none_or(|p| p.key != *found) {
                    self.pin(tracker, found);
                }
                return Ok(());
            }
            return Err(format!(
                "tracker {tracker} presented key {found} (fingerprint {}), but --tracker-key says {}; check the key the tracker printed at start, or pass the right --tracker-key",
                found.fingerprint(),
                given.shown()
            ));
        }
        match self.pinned(tracker) {
            Some(pin) if pin.key == *found => Ok(()),
            Some(pin) => Err(format!(
                "tracker {tracker} presented key {found}, but this peer pinned {} on {}; if the tracker was reinstalled, remove the line in {} or pass --tracker-key",
                pin.key,
                pin.since,
                self.where_()
            )),
            None => {
                self.pin(tracker, found);
                Ok(())
            }
        }
    }

    /// Whether a pin (or `--tracker-key`) makes a session mandatory with `tracker`: then no plain HTTP.
    pub(crate) fn requires_session(&self, tracker: SocketAddr) -> Option<String> {
        if let Some(given) = &self.given {
            return Some(format!("--tracker-key says {}", given.shown()));
        }
        self.pinned(tracker).map(|p| {
            format!(
                "this peer pinned {} on {} (in {})",
                p.key,
                p.since,
                self.where_()
            )
        })
    }

    fn where_(&self) -> String {
        match &self.file {
            Some(p) => p.display().to_string(),
            None => "this peer's memory (it keeps nothing on disk; restart it)".into(),
        }
    }

    fn pin(&self, tracker: SocketAddr, key: &PublicKey) {
        let pin = Pin {
            key: *key,
            since: today(),
        };
        tracing::info!(%tracker, "pinned the tracker's key {key} (fingerprint {})", key.fingerprint());
        let Some(path) = &self.file else {
            *self.memory.lock().unwrap_or_else(|p| p.into_inner()) = Some(pin);
            return;
        };
        let old = std::fs::read_to_string(path).unwrap_or_default();
        let mut lines: Vec<String> = old
            .lines()
            .filter(|l| parse_line(l).is_none_or(|(addr, _)| addr != tracker))
            .map(str::to_string)
            .collect();
        lines.push(format!("{tracker} {} {}", pin.key, pin.since));
        let text = lines.join("\n") + "\n";
        let tmp = path.with_extension("tmp");
        let written = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::warn!("cannot record the tracker's key in {}: {e}", path.display());
        }
    }
}

/// The key pinned for `tracker` in the known-trackers file of the data dir `data_dir`, if any: a peer that finds
/// several trackers on the LAN takes one it pinned before.
pub fn pinned_key(data_dir: &Path, tracker: SocketAddr) -> Option<PublicKey> {
    KnownTrackers::new(Some(data_dir), None)
        .pinned(tracker)
        .map(|p| p.key)
}

fn parse_line(line: &str) -> Option<(SocketAddr, Pin)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut parts = line.split_whitespace();
    let addr = parts.next()?.parse().ok()?;
    let key = parts.next()?.parse().ok()?;
    let since = parts.next().unwrap_or("an unknown day").to_string();
    Some((addr, Pin { key, since }))
}

fn parse(text: &str, tracker: SocketAddr) -> Option<Pin> {
    text.lines()
        .filter_map(parse_line)
        .find(|(addr, _)| *addr == tracker)
        .map(|(_, pin)| pin)
}

/// Today's date (UTC) as `YYYY-MM-DD`.
fn today() -> String {
    crate::proto::utc_date(crate::proto::now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    #[test]
    fn a_pin_is_written_read_back_and_a_changed_key_refused_with_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let tracker: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        let other: SocketAddr = "127.0.0.1:9002".parse().unwrap();
        let (k1, k2) = (
            Identity::ephemeral().public_key(),
            Identity::ephemeral().public_key(),
        );
        let known = KnownTrackers::new(Some(dir.path()), None);
        assert_eq!(known.requires_session(tracker), None);
        known.check(tracker, &k1).unwrap();
        known.check(other, &k2).unwrap();
        known.check(tracker, &k1).unwrap();
        let text = std::fs::read_to_string(dir.path().join(KNOWN_TRACKERS_FILE)).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.starts_with(&format!("127.0.0.1:9001 {k1} 20")),
            "{text}"
        );
        let line = known.check(tracker, &k2).unwrap_err();
        assert!(!line.contains('\n'));
        assert!(
            line.contains(&format!(
                "presented key {k2}, but this peer pinned {k1} on 20"
            )),
            "{line}"
        );
        assert!(line.contains(KNOWN_TRACKERS_FILE), "{line}");
        // --tracker-key wins over the file, by key or by fingerprint, and re-pins.
        let fp: TrackerKey = k2.fingerprint().parse().unwrap();
        let given = KnownTrackers::new(Some(dir.path()), Some(fp));
        given.check(tracker, &k2).unwrap();
        assert!(
            given
                .check(tracker, &k1)
                .unwrap_err()
                .contains("--tracker-key says")
        );
        assert_eq!(known.pinned(tracker).unwrap().key, k2);
    }

    #[test]
    fn an_announced_fingerprint_must_be_proved_and_never_replaces_a_pin() {
        let dir = tempfile::tempdir().unwrap();
        let tracker: SocketAddr = "10.77.0.10:9001".parse().unwrap();
        let (k1, k2) = (
            Identity::ephemeral().public_key(),
            Identity::ephemeral().public_key(),
        );
        let announced = |k: &PublicKey| TrackerKey::Announced(k.fingerprint().replace(' ', ""));
        // A tracker that proves another key than it announced is refused, and nothing is pinned.
        let lying = KnownTrackers::new(Some(dir.path()), Some(announced(&k1)));
        assert!(lying.requires_session(tracker).is_some());
        let line = lying.check(tracker, &k2).unwrap_err();
        assert!(line.contains("announced fingerprint"), "{line}");
        assert!(!line.contains('\n'));
        assert_eq!(pinned_key(dir.path(), tracker), None);
        // One that proves what it announced is pinned.
        lying.check(tracker, &k1).unwrap();
        assert_eq!(pinned_key(dir.path(), tracker), Some(k1));
        // Another tracker announcing its own, true key at that address does not replace the pin.
        let other = KnownTrackers::new(Some(dir.path()), Some(announced(&k2)));
        let line = other.check(tracker, &k2).unwrap_err();
        assert!(line.contains("but this peer pinned"), "{line}");
        assert_eq!(pinned_key(dir.path(), tracker), Some(k1));
    }

    #[test]
    fn a_link_local_tracker_is_pinned_with_its_scope() {
        let dir = tempfile::tempdir().unwrap();
        let tracker: SocketAddr = "[fe80::77:10%2]:9001".parse().unwrap();
        let key = Identity::ephemeral().public_key();
        KnownTrackers::new(Some(dir.path()), None)
            .check(tracker, &key)
            .unwrap();
        assert_eq!(pinned_key(dir.path(), tracker), Some(key));
        let other_scope: SocketAddr = "[fe80::77:10%3]:9001".parse().unwrap();
        assert_eq!(pinned_key(dir.path(), other_scope), None);
    }

    #[test]
    fn today_is_a_date() {
        let d = today();
        assert_eq!(d.len(), 10);
        assert!(d.starts_with("20"), "{d}");
        assert!("not a key".parse::<TrackerKey>().is_err());
    }
}
