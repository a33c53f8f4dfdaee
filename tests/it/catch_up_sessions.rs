//! Catch-up over sessions (issue 13): a member's history is answered over a session to the name bound to the
//! session's key, never over plain HTTP to a member that takes sessions. Real tracker and nodes on port 0 in this
//! process; the askers are `hchat::link` endpoints holding bob's key, or mallory's.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::common::in_process::keyed_node;
use futures_util::future::BoxFuture;
use hchat::identity::{Identity, PublicKey};
use hchat::link::{Endpoint, ErrorBody, Inbox, Request, RequestError, Response};
use hchat::peer::Node;
use hchat::proto::{ChannelName, ChatMessage, Destination, PeerName};
use hchat::tracker::{Tracker, TrackerConfig};

const SECRET: &str = "only for members: the gate code is 4471";

async fn node(name: &str, tracker: &Tracker) -> (Node, Arc<Identity>) {
    let id = Arc::new(Identity::ephemeral());
    let node = keyed_node(name, tracker, &id, Default::default()).await;
    (node, id)
}

/// An endpoint that takes no messages: the asker's side of a session.
struct Deaf;

impl Inbox for Deaf {
    fn key_of<'a>(&'a self, _name: &'a PeerName) -> BoxFuture<'a, Option<PublicKey>> {
        Box::pin(async { None })
    }
    fn deliver(
        &self,
        _from: PublicKey,
        batch: Vec<ChatMessage>,
    ) -> BoxFuture<'_, Vec<Result<(), ErrorBody>>> {
        let n = batch.len();
        Box::pin(async move {
            vec![Err(ErrorBody::new(hchat::proto::ErrorCode::NotAllowed, "deaf")); n]
        })
    }
}

/// `GET path` asked of `to` over a session holding `id`.
async fn ask(id: Arc<Identity>, to: &Node, to_key: PublicKey, path: &str) -> Response {
    let ep = Endpoint::bind("127.0.0.1:0".parse().unwrap(), id, Arc::new(Deaf)).unwrap();
    let link = ep.link(to.session_addr().unwrap(), to_key).await.unwrap();
    link.request(&Request {
        method: "GET".into(),
        path: path.into(),
        headers: BTreeMap::new(),
        body: Vec::new(),
    })
    .await
    .unwrap()
}

fn json(r: &Response) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {:?}", r.body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_served_over_a_session_to_the_member_whose_key_it_is_and_never_in_the_clear() {
    let tracker = Tracker::start(TrackerConfig::default()).await.unwrap();
    let (alice, alice_id) = node("alice", &tracker).await;
    let (bob, bob_id) = node("bob", &tracker).await;
    let (mallory, mallory_id) = node("mallory", &tracker).await;
    let general = ChannelName::new("general").unwrap();
    for p in [&alice, &bob, &mallory] {
        p.join(&general).await.unwrap();
    }
    alice
        .send(Destination::Channel(general.clone()), SECRET.into())
        .await
        .unwrap();
    let alice_key = alice_id.public_key();
    let query = "/p2p/history?channel=general&name=bob";

    // Over plain HTTP, even from bob's own host: bob takes sessions, so his history is not served in the clear.
    let resp = reqwest::get(format!("http://{}{query}", alice.local_addr()))
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("\"use_session\""), "{text}");
    assert!(!text.contains(SECRET), "{text}");

    // Over a session with bob's key, asking as bob: served.
    let r = ask(bob_id.clone(), &alice, alice_key, query).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let page = json(&r);
    assert_eq!(page["messages"][0]["text"], SECRET, "{page}");

    // mallory is a member too, and proves her own key; asking as bob she gets nothing of it.
    let r = ask(mallory_id.clone(), &alice, alice_key, query).await;
    assert_eq!(
        (r.status, json(&r)["error"]["code"].as_str()),
        (403, Some("forged_sender")),
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(!String::from_utf8_lossy(&r.body).contains(SECRET));
    // As herself she is served: the session's key, not the query, is what was checked.
    let r = ask(
        mallory_id.clone(),
        &alice,
        alice_key,
        "/p2p/history?channel=general&name=mallory",
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));

    // A key no name is bound to, asking as bob: nothing either.
    let stranger = Arc::new(Identity::ephemeral());
    let r = ask(stranger.clone(), &alice, alice_key, query).await;
    assert_eq!(r.status, 403, "{:?}", String::from_utf8_lossy(&r.body));
    assert!(!String::from_utf8_lossy(&r.body).contains(SECRET));

    // A session reaches the peer-to-peer routes only: not `/health`, not a path outside `/p2p/`.
    for path in ["/health", "/api/history?with=%23general", "/p2p/../health"] {
        let r = ask(bob_id.clone(), &alice, alice_key, path).await;
        assert_eq!(
            r.status,
            404,
            "{path}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
    }
    // And a peer takes no subscriptions.
    let ep = Endpoint::bind("127.0.0.1:0".parse().unwrap(), bob_id, Arc::new(Deaf)).unwrap();
    let link = ep
        .link(alice.session_addr().unwrap(), alice_key)
        .await
        .unwrap();
    let refused = match link.subscribe(b"{\"name\":\"bob\"}").await {
        Err(e) => Some(e),
        Ok(mut s) => s.next().await.err(),
    };
    assert!(
        matches!(&refused, Some(RequestError::Refused(b)) if b.code == "unknown_frame_type"),
        "{refused:?}"
    );

    for p in [alice, bob, mallory] {
        p.shutdown().await;
    }
    tracker.shutdown().await;
}
