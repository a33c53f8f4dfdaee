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
            if let Event::Presence { channel, members } = &s.event
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
