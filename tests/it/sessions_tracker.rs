//! Issue 13, peers ↔ tracker over sessions: the API runs over the session (counted at both ends), the tracker's
//! key is pinned and a changed one refused with one line, `--tracker-key` is checked, presence is pushed (no
//! per-second polling), and what a hostile client sends on a session gets a frame-level error.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hchat::identity::Identity;
use hchat::link::{Endpoint, Request, RequestError};
use hchat::tracker::{Tracker, TrackerConfig};

fn health(p: &Proc) -> serde_json::Value {
    get_json(&p.url("/health"), 200)
}

fn session_requests(tracker: &Proc) -> u64 {
    health(tracker)["session"]["requests"].as_u64().unwrap()
}

/// (over the session, over plain HTTP) sent by a peer to its tracker.
fn peer_requests(peer: &Proc) -> (u64, u64) {
    let h = health(peer);
    (
        h["tracker_requests"]["session"].as_u64().unwrap(),
        h["tracker_requests"]["http"].as_u64().unwrap(),
    )
}

fn key_line(tracker: &Proc) -> (String, String) {
    let line = tracker
        .out
        .wait_for("the key line", SOON, |l| l.starts_with("tracker key "));
    let rest = line.strip_prefix("tracker key ").unwrap();
    let (key, fp) = rest.split_once(" fingerprint ").unwrap();
    (key.to_string(), fp.to_string())
}

#[test]
fn register_join_lists_and_mailbox_go_over_the_session_and_the_key_is_pinned() {
    let tracker = Proc::tracker(&[]);
    let (key, fp) = key_line(&tracker);
    assert_eq!(key.len(), 43, "{key}");
    assert_eq!(fp.len(), 39, "8 groups of 4 hex digits: {fp}");
    assert_eq!(health(&tracker)["session"]["key"], key.as_str());
    let (alice_dir, bob_dir) = (data_dir(), data_dir());
    let mut bob = Proc::peer("bob", tracker.addr, &in_general_on(&bob_dir));
    joined(&bob, "general");
    bob.type_line("/quit");
    bob.wait_exit(SOON);
    let before = session_requests(&tracker);
    let mut alice = Proc::peer("alice", tracker.addr, &in_general_on(&alice_dir));
    joined(&alice, "general");
    alice.type_line("@bob held for you");
    alice.out.wait_for("the DM to be held", SOON, |l| {
        l.contains("the tracker holds")
    });
    let bob = Proc::peer("bob", tracker.addr, &in_general_on(&bob_dir));
    bob.out.wait_line("[@alice] alice: held for you");
    alice.type_line("/who");
    // Registration, join, fan-out lists, deposit, fetch and ack all went over the session: none over HTTP.
    let (session, http) = peer_requests(&alice);
    assert!(session >= 3, "{session}");
    assert_eq!(
        http, 0,
        "alice sent {http} tracker requests over plain HTTP"
    );
    assert_eq!(peer_requests(&bob).1, 0);
    assert!(session_requests(&tracker) >= before + 6);
    let pinned = std::fs::read_to_string(alice_dir.path().join("known_trackers")).unwrap();
    assert!(
        pinned.starts_with(&format!("{} {key} 20", tracker.addr)),
        "{pinned}"
    );
}

#[test]
fn a_tracker_whose_key_changed_is_refused_with_one_line_and_tracker_key_is_checked() {
    let mut tracker = Proc::tracker(&[]);
    let port = tracker.addr.port();
    let (old_key, _) = key_line(&tracker);
    let alice_dir = data_dir();
    let dir = alice_dir.path().to_str().unwrap().to_string();
    let mut alice = Proc::peer("alice", tracker.addr, &["--data-dir", &dir]);
    alice.type_line("/quit");
    alice.wait_exit(SOON);
    tracker.kill();
    // Reinstalled: a fresh data dir, so a new key, at the same address.
    let fresh_dir = data_dir();
    let tracker = Proc::tracker_on(port, &["--data-dir", fresh_dir.path().to_str().unwrap()]);
    let (new_key, new_fp) = key_line(&tracker);
    assert_ne!(old_key, new_key);
    let run = |extra: &[&str]| {
        let mut cmd = hchat();
        cmd.args(["peer", "--name", "alice", "--port", "0", "--data-dir", &dir])
            .args([
                "--tracker-ip",
                "127.0.0.1",
                "--tracker-port",
                &port.to_string(),
            ])
            .args(extra);
        output_within(cmd, SOON)
    };
    let out = run(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("presented key"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    let line = lines[0];
    for part in [
        format!(
            "tracker {} presented key {new_key}, but this peer pinned {old_key} on 20",
            tracker.addr
        ),
        "known_trackers or pass --tracker-key".to_string(),
    ] {
        assert!(line.contains(&part), "{line}");
    }
    // Nothing was asked of it as alice: it never heard of her.
    let (status, _) = try_get_json(&tracker.url("/identity?name=alice")).unwrap();
    assert_eq!(status, 404);

    // A wrong --tracker-key is refused too; the right one (as a fingerprint) is taken and re-pins.
    let wrong = Identity::ephemeral().public_key().to_string();
    let out = run(&["--tracker-key", &wrong]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tracker-key says"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut alice = Proc::peer(
        "alice",
        tracker.addr,
        &["--data-dir", &dir, "--tracker-key", &new_fp],
    );
    alice.type_line("/quit");
    alice.wait_exit(SOON);
    let pinned = std::fs::read_to_string(alice_dir.path().join("known_trackers")).unwrap();
    assert!(pinned.contains(&new_key), "{pinned}");
    assert!(!pinned.contains(&old_key), "{pinned}");
}

#[test]
fn presence_is_pushed_within_a_second_and_an_open_page_costs_few_tracker_requests() {
    let tracker = Proc::tracker(&[]);
    let alice = Proc::peer("alice", tracker.addr, &["--join", "general"]);
    let mut bob = Proc::peer("bob", tracker.addr, &["--join", "general"]);
    joined(&alice, "general");
    joined(&bob, "general");
    let page = EventStream::open(alice.addr, "/api/events", &[]);
    page.wait_for("\"name\":\"bob\",\"online\":true");
    wait_until("alice to subscribe", SOON, || {
        health(&tracker)["session"]["subscribers"] == 1
    });

    // A join reaches alice's page within a second.
    let carol = Proc::peer("carol", tracker.addr, &["--join", "general"]);
    carol.out.wait_for("carol to join", SOON, |l| {
        l.starts_with("* joined #general")
    });
    let joined_at = Instant::now();
    wait_until("carol in alice's page", Duration::from_secs(1), || {
        page.events
            .all()
            .iter()
            .any(|l| l.contains("\"name\":\"carol\",\"online\":true"))
    });
    eprintln!(
        "carol's join reached alice's page {:?} after carol saw it",
        joined_at.elapsed()
    );
    // So does a peer going away.
    bob.type_line("/quit");
    bob.wait_exit(SOON);
    let gone = Instant::now();
    wait_until(
        "bob offline in alice's page",
        Duration::from_secs(1),
        || {
            page.events
                .all()
                .iter()
                .any(|l| l.contains("\"name\":\"bob\",\"online\":false"))
        },
    );
    eprintln!(
        "bob's quit reached alice's page {:?} after he exited",
        gone.elapsed()
    );

    // Ten idle seconds with the page open: a lease renewal or two, no polling (it was one list a second).
    let (s0, h0) = peer_requests(&alice);
    let window = Instant::now() + Duration::from_secs(10);
    wait_until("the window to pass", Duration::from_secs(11), || {
        Instant::now() >= window
    });
    let (s1, h1) = peer_requests(&alice);
    let sent = (s1 - s0) + (h1 - h0);
    eprintln!("alice sent {sent} tracker requests in 10 idle seconds with a page open");
    assert!(sent <= 3, "{sent} requests in 10 idle seconds");
    drop(page);
}

/// A tracker in this process and a session to it from a client of our own, speaking frames by hand.
/// The endpoint is returned too: dropping it closes the session.
async fn session_to(tracker: &Tracker, from: &str) -> (Arc<Endpoint>, Arc<hchat::link::Link>) {
    session_as(tracker, from, Arc::new(Identity::ephemeral())).await
}

async fn session_as(
    tracker: &Tracker,
    from: &str,
    id: Arc<Identity>,
) -> (Arc<Endpoint>, Arc<hchat::link::Link>) {
    let me = Endpoint::bind(
        format!("{from}:0").parse().unwrap(),
        id,
        Arc::new(hchat::link::NoInbox),
    )
    .unwrap();
    let link = me
        .dial(tracker.session_addr(), tracker.public_key())
        .await
        .unwrap();
    (me, link)
}

fn get(path: &str) -> Request {
    Request {
        method: "GET".into(),
        path: path.into(),
        headers: Default::default(),
        body: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_or_malformed_request_gets_a_frame_error_and_the_tracker_keeps_serving() {
    let tracker = Tracker::start(TrackerConfig::default()).await.unwrap();
    let (_me, link) = session_to(&tracker, "127.0.0.1").await;
    let post = |size: usize| Request {
        method: "POST".into(),
        path: "/add-list".into(),
        headers: Default::default(),
        body: vec![b' '; size],
    };
    // Past what a session takes for a request: an ERROR frame, and that stream is closed.
    let too_big = hchat::link::request::MAX_REQUEST_BODY + hchat::link::request::MAX_HEAD + 100;
    match link.request(&post(too_big)).await {
        Err(RequestError::Refused(e)) => assert_eq!(e.code, "frame_too_large", "{e:?}"),
        other => panic!("{other:?}"),
    }
    // Just past the body limit: the router's own limit answers, as over HTTP.
    let resp = link
        .request(&post(hchat::link::request::MAX_REQUEST_BODY + 1))
        .await
        .unwrap();
    assert_eq!(resp.status, 413);
    let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(body["error"]["code"], "body_too_large");
    // A head that is no HTTP request: a 400 with a code, on the same session.
    let resp = link.request(&get("not a path")).await.unwrap();
    assert_eq!(resp.status, 400, "{}", String::from_utf8_lossy(&resp.body));
    // A signed request with a header that does not verify: the router's own 401.
    let mut forged = get("/get-list?channel=general");
    forged.headers.insert(
        "hchat-auth".into(),
        "hchat-v1 name=eve,ts=1,nonce=x,sig=y".into(),
    );
    let resp = link.request(&forged).await.unwrap();
    assert!((400..500).contains(&resp.status), "{}", resp.status);
    // A subscription for a name this key does not hold is refused.
    let mut sub = link.subscribe(br#"{"name":"alice"}"#).await.unwrap();
    match sub.next().await {
        Err(RequestError::Refused(e)) => assert_eq!(e.code, "unknown_identity", "{e:?}"),
        other => panic!("{other:?}"),
    }
    // A SUBSCRIBE payload of the wrong shape (`changes` is a boolean) is a frame error, not a subscription.
    for payload in [
        &br#"{"name":"alice","changes":"yes"}"#[..],
        br#"{"changes":true}"#,
        b"not json",
    ] {
        let mut sub = link.subscribe(payload).await.unwrap();
        match sub.next().await {
            Err(RequestError::Refused(e)) => assert_eq!(e.code, "bad_frame", "{e:?}"),
            other => panic!("{}: {other:?}", String::from_utf8_lossy(payload)),
        }
    }
    let resp = link.request(&get("/health")).await.unwrap();
    assert_eq!(resp.status, 200);
    let h: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert!(h["session"]["requests"].as_u64().unwrap() >= 3, "{h}");
    tracker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_is_charged_to_the_sessions_address_with_one_budget_for_http_and_session() {
    // The tracker listens on 127.0.0.1; a session from 127.0.0.2 is another host to it (as in attack_quotas.rs).
    let tracker = Tracker::start(TrackerConfig {
        limits: hchat::http::ServerLimits {
            rate_limit: hchat::http::RateLimit { per_second: 5 },
            ..Default::default()
        },
        ..TrackerConfig::default()
    })
    .await
    .unwrap();
    let (_far, far) = session_to(&tracker, "127.0.0.2").await;
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(far.request(&get("/health")).await.unwrap().status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    let throttled = far.request(&get("/health")).await.unwrap();
    assert_eq!(throttled.status, 429);
    assert!(
        throttled.headers.contains_key("retry-after"),
        "{throttled:?}"
    );
    // The same address over HTTP shares the budget: it is throttled too.
    let http = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .unwrap();
    let url = format!("http://{}/health", tracker.local_addr());
    assert_eq!(http.get(&url).send().await.unwrap().status(), 429);
    // This host (127.0.0.1, the address it listens on) is not limited, over the session either.
    let (_near, near) = session_to(&tracker, "127.0.0.1").await;
    for _ in 0..20 {
        assert_eq!(near.request(&get("/health")).await.unwrap().status, 200);
    }
    tracker.shutdown().await;
}

fn register(name: &str, ip: &str) -> Request {
    let req = Identity::ephemeral().register_request(
        &hchat::proto::PeerName::new(name).unwrap(),
        ip.parse().unwrap(),
        7000,
    );
    Request {
        method: "POST".into(),
        path: "/submit-info".into(),
        headers: [("content-type".to_string(), "application/json".to_string())].into(),
        body: serde_json::to_vec(&req).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_name_quota_is_charged_to_the_sessions_address_and_not_to_this_host() {
    let quotas = hchat::tracker::quota::Quotas {
        names_per_address_per_hour: 3,
        ..Default::default()
    };
    let tracker = Tracker::start(TrackerConfig {
        quotas,
        ..TrackerConfig::default()
    })
    .await
    .unwrap();
    let (_far, far) = session_to(&tracker, "127.0.0.2").await;
    for i in 0..3 {
        let resp = far
            .request(&register(&format!("far{i}"), "127.0.0.2"))
            .await
            .unwrap();
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    }
    let resp = far.request(&register("far3", "127.0.0.2")).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!((resp.status, code(&body)), (429, "name_quota"), "{body}");
    // Another address (127.0.0.3) has its own share; this host (127.0.0.1) has no quota at all.
    let (_other, other) = session_to(&tracker, "127.0.0.3").await;
    let resp = other
        .request(&register("other0", "127.0.0.3"))
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let (_near, near) = session_to(&tracker, "127.0.0.1").await;
    for i in 0..5 {
        let resp = near
            .request(&register(&format!("near{i}"), "127.0.0.1"))
            .await
            .unwrap();
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    }
    tracker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_acts_only_as_the_name_its_key_holds() {
    let tracker = Tracker::start(TrackerConfig::default()).await.unwrap();
    let yan = Arc::new(Identity::ephemeral());
    let name = hchat::proto::PeerName::new("yan").unwrap();
    let (_own, own) = session_as(&tracker, "127.0.0.1", yan.clone()).await;
    let mut reg = register("yan", "127.0.0.1");
    reg.body = serde_json::to_vec(&yan.register_request(&name, "127.0.0.1".parse().unwrap(), 7000))
        .unwrap();
    assert_eq!(own.request(&reg).await.unwrap().status, 200);
    // yan's signed request, relayed over somebody else's session: refused, though the signature holds.
    let presence = |who: &Identity| {
        let body = serde_json::to_vec(
            &serde_json::json!({"name": "yan", "status": "away", "away": "lunch"}),
        )
        .unwrap();
        Request {
            method: "POST".into(),
            path: "/presence".into(),
            headers: [
                (
                    "hchat-auth".to_string(),
                    who.auth_header(&name, "POST", "/presence", &body),
                ),
                ("content-type".to_string(), "application/json".to_string()),
            ]
            .into(),
            body,
        }
    };
    let (_eve, eve) = session_to(&tracker, "127.0.0.1").await;
    let resp = eve.request(&presence(&yan)).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!((resp.status, code(&body)), (403, "forged_sender"), "{body}");
    // On yan's own session it is taken.
    let resp = own.request(&presence(&yan)).await.unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    // Unsigned, a body naming its acting peer is taken on that peer's own session only (the handshake proved the
    // key): on eve's it is refused, and a name bound to no key is unknown.
    let unsigned = |name: &str, away: &str| {
        let mut req = presence(&yan);
        req.headers.remove("hchat-auth");
        req.body = serde_json::to_vec(
            &serde_json::json!({"name": name, "status": "away", "message": away}),
        )
        .unwrap();
        req
    };
    let resp = eve.request(&unsigned("yan", "by eve")).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!((resp.status, code(&body)), (403, "forged_sender"), "{body}");
    let resp = eve.request(&unsigned("nobody", "by eve")).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(
        (resp.status, code(&body)),
        (401, "unknown_identity"),
        "{body}"
    );
    let resp = own.request(&unsigned("yan", "tea")).await.unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let peers: serde_json::Value =
        serde_json::from_slice(&own.request(&get("/peers")).await.unwrap().body).unwrap();
    assert_eq!(peers["peers"][0]["away"], "tea", "{peers}");
    // A body that names no acting peer still needs the header, session or not.
    let lookup = Request {
        method: "POST".into(),
        path: "/connect-peer".into(),
        headers: [("content-type".to_string(), "application/json".to_string())].into(),
        body: br#"{"name":"yan"}"#.to_vec(),
    };
    let resp = own.request(&lookup).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(
        (resp.status, code(&body)),
        (401, "unauthenticated"),
        "{body}"
    );
    tracker.shutdown().await;
}

/// The local ports of the UDP sockets process `pid` holds (from `/proc`: its socket fds, matched by inode with the
/// UDP tables of its network namespace).
fn udp_ports_of(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["udp", "udp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if inodes.iter().any(|i| i == cols[9]) {
                let port = cols[1].rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

#[test]
fn a_peer_talks_to_its_tracker_from_the_one_udp_port_it_takes_sessions_on() {
    let tracker = Proc::tracker(&[]);
    let mut alice = Proc::peer("alice", tracker.addr, &["--join", "general"]);
    joined(&alice, "general");
    wait_until("alice's requests to go over the session", SOON, || {
        peer_requests(&alice).0 > 0
    });
    let quic_port = health(&alice)["quic_port"].as_u64().unwrap() as u16;
    assert_eq!(
        udp_ports_of(alice.pid()),
        [quic_port],
        "one UDP socket, the session port alice advertises"
    );
    alice.type_line("/quit");
    alice.wait_exit(SOON);
}
