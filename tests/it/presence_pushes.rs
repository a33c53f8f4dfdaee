//! Presence in a big channel over the tracker's pushes: a member who joins costs every watching member one entry,
//! not the whole list again (a join in a channel of n watched members was n whole lists: O(n²) bytes for n joins).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hchat::peer::events::Event;
use hchat::peer::{Node, PeerConfig};
use hchat::proto::{ChannelName, PeerName};
use hchat::tracker::{Tracker, TrackerConfig};

/// Members watching the channel before the last one joins.
const WATCHERS: usize = 40;
const DEADLINE: Duration = Duration::from_secs(30);

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A node in memory that joined `channel` and keeps, from its own event stream, who it shows online there.
async fn watching(
    name: &str,
    tracker: &Tracker,
    channel: &ChannelName,
) -> (Node, Arc<Mutex<BTreeSet<String>>>) {
    let node = Node::start(PeerConfig::on_loopback(
        PeerName::new(name).unwrap(),
        tracker.local_addr(),
    ))
    .await
    .unwrap();
    let shown = Arc::new(Mutex::new(BTreeSet::new()));
    let mut live = node.resume_events(node.last_event_seq()).live;
    let watch = node.watch_presence();
    let (into, ch) = (shown.clone(), channel.clone());
    tokio::spawn(async move {
        let _watch = watch;
        while let Ok(s) = live.recv().await {
            if let Event::Presence {
                channel, members, ..
            } = &s.event
                && *channel == ch
            {
                *into.lock().unwrap() = members
                    .iter()
                    .filter(|m| m.online)
                    .map(|m| m.name.to_string())
                    .collect();
            }
        }
    });
    node.join(channel).await.unwrap();
    (node, shown)
}

/// A tracker and a channel `big` of [`WATCHERS`] watching members, each showing every other online.
async fn big_channel() -> (
    Tracker,
    ChannelName,
    Vec<(Node, Arc<Mutex<BTreeSet<String>>>)>,
) {
    let tracker = Tracker::start(TrackerConfig::default()).await.unwrap();
    let channel = ChannelName::new("big").unwrap();
    let mut nodes = Vec::new();
    for i in 0..WATCHERS {
        nodes.push(watching(&format!("m{i:02}"), &tracker, &channel).await);
    }
    let all: BTreeSet<String> = (0..WATCHERS).map(|i| format!("m{i:02}")).collect();
    wait_until("every member to show every member online", || {
        nodes.iter().all(|(_, shown)| *shown.lock().unwrap() == all)
    })
    .await;
    (tracker, channel, nodes)
}

async fn pushed_bytes(tracker: &Tracker) -> u64 {
    let health: serde_json::Value = reqwest::get(format!("http://{}/health", tracker.local_addr()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    health["session"]["pushed_bytes"]
        .as_u64()
        .expect("the tracker reports pushed_bytes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_in_a_big_channel_pushes_each_watching_member_one_entry_not_the_whole_list() {
    let (tracker, channel, nodes) = big_channel().await;
    let before = pushed_bytes(&tracker).await;

    let (late, _) = watching("late", &tracker, &channel).await;
    wait_until("every member to show the late one online", || {
        nodes
            .iter()
            .all(|(_, shown)| shown.lock().unwrap().contains("late"))
    })
    .await;
    // The late one's own first list is whole (41 entries); each of the 40 others gets one entry.
    let one_join = pushed_bytes(&tracker).await - before;
    let whole_list = 41 * 150;
    eprintln!("one join in a channel of {WATCHERS} watched members pushed {one_join} bytes");
    assert!(
        one_join < (WATCHERS as u64) * 600 + 2 * whole_list,
        "one join pushed {one_join} bytes: about a whole list to each of {WATCHERS} members"
    );

    // A member leaving reaches everyone as a name gone.
    late.leave(&channel).await.unwrap();
    wait_until("every member to show the late one gone", || {
        nodes
            .iter()
            .all(|(_, shown)| !shown.lock().unwrap().contains("late"))
    })
    .await;
    late.shutdown().await;
    for (n, _) in nodes {
        n.shutdown().await;
    }
}

/// The events of `stream` (`ID|JSON` lines) of type `kind` for `channel`, with their numbers.
fn presence_events(
    stream: &crate::common::EventStream,
    kind: &str,
    channel: &str,
) -> Vec<(u64, String, serde_json::Value)> {
    stream
        .events
        .all()
        .into_iter()
        .filter_map(|l| {
            let (id, json) = l.split_once('|')?;
            let v: serde_json::Value = serde_json::from_str(json).ok()?;
            (v["type"] == kind && v["channel"] == channel)
                .then(|| (id.parse().ok(), json.to_string(), v))
                .and_then(|(id, json, v)| Some((id?, json, v)))
        })
        .collect()
}

/// A member list (`[{"name",…}]`) after a `members_changed` event's `members` and `gone`.
fn apply_change(list: &[serde_json::Value], change: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut by_name: std::collections::BTreeMap<String, serde_json::Value> = list
        .iter()
        .map(|m| (m["name"].as_str().unwrap().to_string(), m.clone()))
        .collect();
    for gone in change["gone"].as_array().unwrap() {
        by_name.remove(gone.as_str().unwrap());
    }
    for m in change["members"].as_array().unwrap() {
        by_name.insert(m["name"].as_str().unwrap().to_string(), m.clone());
    }
    by_name.into_values().collect()
}

/// A page that asks for changes (`/api/events?changes=true`, as the web chat does) gets a join in a big channel
/// as the one new entry and a leave as a name gone, not the whole list again; applied to the list it held, each
/// gives exactly the whole list a stream that did not ask gets at the same event number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_asks_for_changes_gets_a_join_as_one_entry_and_keeps_the_whole_list() {
    let (tracker, channel, nodes) = big_channel().await;
    // The node whose page watches: one serving the local API, as `hchat peer` does.
    let page = hchat::web::start(
        PeerConfig::on_loopback(PeerName::new("page").unwrap(), tracker.local_addr()),
        Duration::from_secs(600),
    )
    .await
    .unwrap();
    page.node().join(&channel).await.unwrap();
    let addr = page.node().local_addr();
    let changes = crate::common::EventStream::open(addr, "/api/events?changes=true", &[]);
    let whole = crate::common::EventStream::open(addr, "/api/events", &[]);
    let held: serde_json::Value = reqwest::get(format!("http://{addr}/api/members?channel=big"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut list = held["members"]
        .as_array()
        .unwrap_or_else(|| panic!("{held}"))
        .clone();
    assert_eq!(list.len(), WATCHERS + 1);

    let (late, _) = watching("late", &tracker, &channel).await;
    let has_late = |v: &serde_json::Value| {
        v["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "late" && m["online"] == true)
    };
    wait_until("both streams to show the late one", || {
        presence_events(&changes, "members_changed", "big")
            .iter()
            .any(|(_, _, v)| has_late(v))
            && presence_events(&whole, "presence", "big")
                .iter()
                .any(|(_, _, v)| has_late(v))
    })
    .await;
    let changed = presence_events(&changes, "members_changed", "big");
    let whole_lists = presence_events(&whole, "presence", "big");
    let (seq, change_json, change) = changed.last().unwrap().clone();
    let (whole_seq, whole_json, whole_list) = whole_lists.last().unwrap().clone();
    assert_eq!(seq, whole_seq, "the same event, told two ways");
    eprintln!(
        "a join in a channel of {} members: {} bytes as a change, {} as a whole list",
        WATCHERS + 1,
        change_json.len(),
        whole_json.len()
    );
    assert_eq!(change["members"].as_array().unwrap().len(), 1, "{change}");
    assert_eq!(change["gone"], serde_json::json!([]));
    assert!(change_json.len() * 10 < whole_json.len(), "{change_json}");
    for (_, _, c) in &changed {
        list = apply_change(&list, c);
    }
    assert_eq!(list, *whole_list["members"].as_array().unwrap());

    late.leave(&channel).await.unwrap();
    let gone = |v: &serde_json::Value| v["gone"] == serde_json::json!(["late"]);
    wait_until("the page to hear the late one is gone", || {
        presence_events(&changes, "members_changed", "big")
            .iter()
            .any(|(_, _, v)| gone(v))
    })
    .await;
    let after = presence_events(&changes, "members_changed", "big");
    let (left_seq, _, left) = after.iter().find(|(_, _, v)| gone(v)).unwrap().clone();
    assert_eq!(left["members"], serde_json::json!([]));
    list = apply_change(&list, &left);
    wait_until("the whole-list stream to hear it too", || {
        presence_events(&whole, "presence", "big")
            .iter()
            .any(|(s, _, _)| *s == left_seq)
    })
    .await;
    let whole_after = presence_events(&whole, "presence", "big");
    let (_, _, whole_left) = whole_after.iter().find(|(s, _, _)| *s == left_seq).unwrap();
    assert_eq!(list, *whole_left["members"].as_array().unwrap());
    assert_eq!(list.len(), WATCHERS + 1);
    late.shutdown().await;
    page.node().shutdown().await;
    for (n, _) in nodes {
        n.shutdown().await;
    }
}
