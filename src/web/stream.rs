//! `GET /api/events`: the node's events as Server-Sent Events, the live feed of the web page (and of any program
//! that wants one).
//!
//! Each event is `id: <seq>` and one `data: <json>` line, the JSON being [`Event`](crate::peer::events::Event)
//! with its `"type"` tag. A stream first sends `hello` (no id). A client that reconnects with the last id it saw
//! (`Last-Event-ID`, or `?since=`) gets exactly the events it missed from the node's replay ring, then the live
//! ones: no gap, no duplicate. If what it missed is no longer kept, or its numbers are from an earlier start of
//! the node (`?boot=`), it gets `resync` first and should reload what it shows. A client that asks for changes
//! (`?changes=true`, as the page does) gets a channel's member list once, then only what changed in it
//! (`members_changed`), where others get the whole list (`presence`) at every change.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::http::{ApiError, ApiQuery};
use crate::peer::Node;
use crate::peer::events::{Event, Member, Stamped};
use crate::peer::presence::PresenceWatch;
use crate::proto::ErrorCode;
use crate::proto::{ChannelName, PeerName};

/// A comment line is sent this often on an idle stream, so proxies and browsers keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
pub(super) struct EventsQuery {
    /// Resume after this event number (the `Last-Event-ID` header wins if both are given).
    since: Option<u64>,
    /// The `boot` of the `hello` the client saw before; another value means the node restarted.
    boot: Option<String>,
    /// `members_changed` events instead of whole `presence` lists after the first (docs/PROTOCOL.md).
    #[serde(default)]
    changes: bool,
}

/// A presence event as a stream that asked for changes gets it.
#[derive(Serialize)]
struct MembersChanged<'a> {
    r#type: &'static str,
    channel: &'a ChannelName,
    members: &'a [Arc<Member>],
    gone: &'a [PeerName],
}

/// What a stream says about itself (never numbered: not part of the node's sequence).
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Control {
    /// First on every stream: who this node is, which start of it, and the number the stream continues after.
    Hello {
        name: PeerName,
        boot: String,
        seq: u64,
    },
    /// Some events the client has not seen are gone: reload history and lists, then keep following.
    Resync { reason: &'static str },
}

fn control(c: &Control) -> SseEvent {
    SseEvent::default()
        .json_data(c)
        .expect("a control event always serializes")
}

fn numbered(s: &Stamped, changes: bool) -> SseEvent {
    let e = SseEvent::default().id(s.seq.to_string());
    let e = match &s.event {
        Event::Presence {
            channel,
            change: Some(change),
            ..
        } if changes => e.json_data(MembersChanged {
            r#type: "members_changed",
            channel,
            members: &change.members,
            gone: &change.gone,
        }),
        event => e.json_data(event),
    };
    e.expect("an event always serializes")
}

struct Follow {
    node: Node,
    ahead: VecDeque<SseEvent>,
    missed: VecDeque<Arc<Stamped>>,
    live: broadcast::Receiver<Arc<Stamped>>,
    last: u64,
    /// The client asked for `members_changed` events.
    changes: bool,
    _watch: PresenceWatch,
}

impl Follow {
    /// The next event to send, or `None` when the node stops.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(e) = self.ahead.pop_front() {
                return Some(e);
            }
            if let Some(s) = self.missed.pop_front() {
                self.last = s.seq;
                return Some(numbered(&s, self.changes));
            }
            match self.live.recv().await {
                Ok(s) if s.seq <= self.last => {}
                Ok(s) => {
                    self.last = s.seq;
                    return Some(numbered(&s, self.changes));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Too slow for the live feed: catch up from the ring like a reconnecting client would.
                    let r = self.node.resume_events(self.last);
                    if r.gap {
                        self.ahead.push_back(control(&Control::Resync {
                            reason: "this stream fell too far behind",
                        }));
                    }
                    self.missed = r.missed.into();
                    self.live = r.live;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

pub(super) async fn events_stream(
    State(node): State<Node>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::of(
                        ErrorCode::BadLastEventId,
                        "Last-Event-ID must be an event number this node sent",
                    )
                })?,
        ),
    };
    let boot = format!("{:016x}", node.boot_id());
    let other_start = q.boot.as_ref().is_some_and(|b| *b != boot);
    let since = match last_event_id.or(q.since) {
        Some(n) if !other_start => n,
        // A fresh client, or one whose numbers are from an earlier start: follow from now.
        _ => node.last_event_seq(),
    };
    let resumed = node.resume_events(since);
    let mut ahead = VecDeque::from([control(&Control::Hello {
        name: node.name().clone(),
        boot,
        seq: resumed.after,
    })]);
    if other_start || resumed.gap {
        ahead.push_back(control(&Control::Resync {
            reason: if other_start {
                "the node has restarted since this client's last event"
            } else {
                "some events since this client's last one are no longer kept"
            },
        }));
    }
    let follow = Follow {
        _watch: node.watch_presence(),
        node: node.clone(),
        ahead,
        missed: resumed.missed.into(),
        live: resumed.live,
        last: resumed.after,
        changes: q.changes,
    };
    let stream =
        futures_util::stream::unfold(
            follow,
            |mut f| async move { f.next().await.map(|e| (Ok(e), f)) },
        )
        .take_until(node.stopped().cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}
