//! A test that speaks the protocol by hand as a peer, with its own key.

use super::{Proc, http, http_from, post_json, status_and_json};

/// A test acting as a peer over raw HTTP, with its own identity: it signs its registration, its tracker requests
/// (`Hchat-Auth`) and its messages with the library's own code, as a real peer does, so a test can speak the
/// protocol by hand and can also break it on purpose (sign as one name, claim another).
pub(crate) struct Signer {
    pub name: String,
    identity: hchat::identity::Identity,
}

impl Signer {
    pub(crate) fn new(name: &str) -> Signer {
        Signer {
            name: name.to_string(),
            identity: hchat::identity::Identity::ephemeral(),
        }
    }

    /// The identity a peer process keeps in `dir` (its `identity.key`): to act as that very peer.
    pub(crate) fn from_data_dir(name: &str, dir: &std::path::Path) -> Signer {
        Signer {
            name: name.to_string(),
            identity: hchat::identity::Identity::load_or_create(dir)
                .expect("a readable identity.key"),
        }
    }

    fn peer_name(&self) -> hchat::proto::PeerName {
        hchat::proto::PeerName::new(self.name.as_str()).expect("a valid test name")
    }

    /// A delivered notice (`POST /p2p/delivered`) from `from` to `to` for `ids`, signed with this signer's key.
    pub(crate) fn delivered_notice(&self, from: &str, to: &str, ids: &[&str]) -> serde_json::Value {
        let (from, to) = (
            hchat::proto::PeerName::new(from).unwrap(),
            hchat::proto::PeerName::new(to).unwrap(),
        );
        let ids: Vec<hchat::proto::MessageId> = ids.iter().map(|i| i.parse().unwrap()).collect();
        let sig = self
            .identity
            .sign(&hchat::peer::receipts::notice_bytes(&from, &to, &ids));
        serde_json::json!({"from": from, "to": to, "ids": ids, "sig": sig})
    }

    /// The public key, as the wire carries it.
    pub(crate) fn key(&self) -> String {
        self.identity.public_key().to_string()
    }

    /// A registration body for `ip:port`, stamped now, with a fresh nonce, signed.
    pub(crate) fn registration(&self, ip: &str, port: u16) -> serde_json::Value {
        let req = self
            .identity
            .register_request(&self.peer_name(), ip.parse().unwrap(), port);
        serde_json::to_value(req).unwrap()
    }

    /// Registers at the tracker as `127.0.0.1:port`, asserting it is accepted.
    pub(crate) fn register(&self, tracker: &Proc, port: u16) {
        let (status, body) = post_json(
            &tracker.url("/submit-info"),
            &self.registration("127.0.0.1", port),
        );
        assert_eq!(status, 200, "{} registers: {body}", self.name);
    }

    /// The `Hchat-Auth` value for `method url` with `body`, signed as this peer.
    pub(crate) fn auth(&self, method: &str, url: &str, body: &[u8]) -> String {
        let url = reqwest::Url::parse(url).unwrap();
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        self.identity
            .auth_header(&self.peer_name(), method, &target, body)
    }

    /// POSTs a raw body signed as this peer; returns status and JSON answer.
    pub(crate) fn post_raw(&self, url: &str, body: String) -> (u16, serde_json::Value) {
        let auth = self.auth("POST", url, body.as_bytes());
        let r = http()
            .post(url)
            .header("content-type", "application/json")
            .header("hchat-auth", auth)
            .body(body)
            .send()
            .unwrap();
        status_and_json("POST", url, r)
    }

    /// GETs `url` signed as this peer (for answers that depend on who asks); returns status and JSON answer.
    pub(crate) fn get(&self, url: &str) -> (u16, serde_json::Value) {
        let r = http()
            .get(url)
            .header("hchat-auth", self.auth("GET", url, b""))
            .send()
            .unwrap();
        status_and_json("GET", url, r)
    }

    /// POSTs JSON signed as this peer.
    pub(crate) fn post(&self, url: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        self.post_raw(url, body.to_string())
    }

    /// Sets `sig` on a message given as JSON, whatever its `from` says (to forge one, sign another's).
    pub(crate) fn sign(&self, msg: serde_json::Value) -> serde_json::Value {
        let mut m: hchat::proto::ChatMessage = serde_json::from_value(msg).unwrap();
        self.identity.sign_message(&mut m);
        serde_json::to_value(m).unwrap()
    }

    /// A new message from this signer to `dest` (`{"channel":..}` or `{"to":..}`), signed.
    pub(crate) fn message(&self, dest: serde_json::Value, text: &str) -> serde_json::Value {
        let mut m = serde_json::json!({
            "id": uuid::Uuid::now_v7(), "from": self.name, "text": text, "ts": hchat::proto::now_ms()
        });
        m.as_object_mut()
            .unwrap()
            .extend(dest.as_object().unwrap().clone());
        self.sign(m)
    }
}

/// A message (JSON) sealed for `to`, whose key is `key` (base64url, as `GET /identity` answers it): a mailbox
/// entry `{"id","envelope"}` as a peer deposits it.
pub(crate) fn sealed_entry(msg: &serde_json::Value, to: &str, key: &str) -> serde_json::Value {
    let m: hchat::proto::ChatMessage = serde_json::from_value(msg.clone()).unwrap();
    let key: hchat::identity::PublicKey = key.parse().unwrap();
    let to = hchat::proto::PeerName::new(to).expect("a valid test name");
    let sealed = hchat::identity::SealedMail::seal(&m, &to, &key);
    serde_json::json!({"id": m.id, "envelope": sealed})
}

/// The key the tracker at `tracker` binds `name` to (`GET /identity`), as the wire carries it.
pub(crate) fn identity_key(tracker: &Proc, name: &str) -> String {
    let v = super::get_json(&tracker.url(&format!("/identity?name={name}")), 200);
    v["public_key"].as_str().unwrap().to_string()
}

impl Signer {
    /// POSTs JSON signed as this peer from the client address `local` (another host to a tracker on 127.0.0.1).
    pub(crate) fn post_from(
        &self,
        local: std::net::IpAddr,
        url: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let body = body.to_string();
        let r = http_from(local)
            .post(url)
            .header("content-type", "application/json")
            .header("hchat-auth", self.auth("POST", url, body.as_bytes()))
            .body(body)
            .send()
            .unwrap();
        status_and_json("POST", url, r)
    }

    /// Registers from the client address `local`, advertising it; returns status and answer.
    pub(crate) fn register_from(
        &self,
        local: std::net::IpAddr,
        tracker: &Proc,
        port: u16,
    ) -> (u16, serde_json::Value) {
        let url = tracker.url("/submit-info");
        let r = http_from(local)
            .post(&url)
            .json(&self.registration(&local.to_string(), port))
            .send()
            .unwrap();
        status_and_json("POST", &url, r)
    }
}
