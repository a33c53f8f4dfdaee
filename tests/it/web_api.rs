//! The local API the web page uses, against real nodes: who may act as the user (a LAN caller needs the token; a
//! loopback one does not, unless a page of another site is behind it), the event stream's resume promise (exactly
//! the missed events, or `resync`), presence, and the page's files (in-process: only the answers matter there).

use crate::common;
use common::in_process::InTracker;
use common::*;
use serde_json::json;

const TOKEN: &str = "a-token-for-the-tests-0123456789";

/// Every route that acts as the user, with a request that succeeds when allowed.
fn acting_as_user() -> Vec<(&'static str, &'static str, Option<serde_json::Value>)> {
    vec![
        ("POST", "/api/join", Some(json!({"channel": "general"}))),
        (
            "POST",
            "/send-peer",
            Some(json!({"channel": "general", "text": "via send-peer"})),
        ),
        (
            "POST",
            "/api/send",
            Some(json!({"channel": "general", "text": "via api/send"})),
        ),
        ("GET", "/api/me", None),
        ("GET", "/api/history?with=%23general", None),
        ("GET", "/api/peers", None),
        ("GET", "/api/channels", None),
        ("GET", "/api/members?channel=general", None),
        ("GET", "/api/conversations", None),
        ("GET", "/api/events", None),
        ("POST", "/api/leave", Some(json!({"channel": "general"}))),
    ]
}

/// Where a request comes from: this host (loopback), or the LAN host of a network namespace.
enum Caller<'a> {
    Host(String),
    Lan(&'a LanHost, String),
}

/// Status and `error.code` (if any) of one request; an event stream is judged by its status line alone.
fn call(
    from: &Caller,
    method: &str,
    path: &str,
    body: &Option<serde_json::Value>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let (status, text) = match from {
        Caller::Lan(lan, base) => {
            let body = body.as_ref().map(|b| b.to_string());
            lan.request(method, &format!("{base}{path}"), body.as_deref(), headers)
        }
        Caller::Host(base) => {
            let client = http();
            let mut req = match method {
                "GET" => client.get(format!("{base}{path}")),
                _ => client.post(format!("{base}{path}")),
            };
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if let Some(b) = body {
                req = req.body(b.to_string());
            }
            let resp = req.send().unwrap();
            let status = resp.status().as_u16();
            if path.starts_with("/api/events") && status == 200 {
                let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
                assert_eq!(ct, "text/event-stream", "{path}");
                return (status, String::new());
            }
            (status, resp.text().unwrap())
        }
    };
    if path.starts_with("/api/events") && status == 200 {
        return (status, String::new());
    }
    let v: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
    (
        status,
        v["error"]["code"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn the_user_acting_api_answers_a_lan_caller_only_with_the_token() {
    // A caller on the LAN: a network namespace of our own, joined to this host by a veth pair.
    let lan = match LanHost::create() {
        Ok(lan) => lan,
        Err(why) => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            assert!(!ci, "cannot make a LAN host to call from: {why}");
            eprintln!(
                "SKIPPED: cannot make a LAN host to call from ({why}); src/web/auth.rs unit-tests the rule"
            );
            return;
        }
    };
    let tracker = Proc::tracker(&[]);
    let alice = Proc::peer(
        "alice",
        tracker.addr,
        &[
            "--ip",
            "0.0.0.0",
            "--advertise-ip",
            "127.0.0.1",
            "--token",
            TOKEN,
        ],
    );
    let mut bob = Proc::peer("bob", tracker.addr, &["--join", "general"]);
    joined_at_start(&bob);
    let from_lan = Caller::Lan(
        &lan,
        format!("http://{}:{}", lan.node_ip, alice.addr.port()),
    );
    let from_host = Caller::Host(format!("http://127.0.0.1:{}", alice.addr.port()));
    let lan_ip = lan.own_ip;
    let bearer = format!("Bearer {TOKEN}");
    let query = format!("token={TOKEN}");

    // A successful /api/leave is undone at once, so every later request still finds alice in #general.
    let rejoin_after = |path: &str, from: &Caller, headers: &[(&str, &str)]| {
        if path == "/api/leave" {
            let (status, code) = call(
                from,
                "POST",
                "/api/join",
                &Some(json!({"channel": "general"})),
                headers,
            );
            assert_eq!(status, 200, "re-joining after a leave: {code}");
        }
    };
    for (method, path, body) in acting_as_user() {
        let (status, code) = call(&from_lan, method, path, &body, &[]);
        assert_eq!(
            (status, code.as_str()),
            (403, "forbidden"),
            "{method} {path} from {lan_ip} without the token"
        );
        let (status, _) = call(
            &from_lan,
            method,
            path,
            &body,
            &[("x-hchat-token", "not-the-token")],
        );
        assert_eq!(status, 403, "{method} {path} with a wrong token");
        for shown in [
            vec![("authorization", bearer.as_str())],
            vec![("x-hchat-token", TOKEN)],
        ] {
            let (status, code) = call(&from_lan, method, path, &body, &shown);
            assert_eq!(status, 200, "{method} {path} with {shown:?}: {code}");
            rejoin_after(path, &from_lan, &shown);
        }
        let sep = if path.contains('?') { '&' } else { '?' };
        let (status, code) = call(
            &from_lan,
            method,
            &format!("{path}{sep}{query}"),
            &body,
            &[],
        );
        assert_eq!(status, 200, "{method} {path} with ?token=: {code}");
        rejoin_after(path, &from_host, &[]);
        // The same host needs no token...
        let (status, code) = call(&from_host, method, path, &body, &[]);
        assert_eq!(status, 200, "{method} {path} from loopback: {code}");
        rejoin_after(path, &from_host, &[]);
        // ...unless a page of another site, or a name that is not this host's address, is behind the request.
        let (status, _) = call(
            &from_host,
            method,
            path,
            &body,
            &[("origin", "http://evil.example")],
        );
        assert_eq!(status, 403, "{method} {path} from a page of another site");
        let (status, _) = call(&from_host, method, path, &body, &[("host", "evil.example")]);
        assert_eq!(status, 403, "{method} {path} under a rebound name");
    }

    // What a refused caller asked for did not happen: bob saw the allowed messages only.
    let (status, _) = call(
        &from_lan,
        "POST",
        "/api/send",
        &Some(json!({"channel": "general", "text": "forged"})),
        &[],
    );
    assert_eq!(status, 403);
    let (status, _) = call(
        &from_lan,
        "POST",
        "/api/send",
        &Some(json!({"channel": "general", "text": "the last word"})),
        &[("x-hchat-token", TOKEN)],
    );
    assert_eq!(status, 200);
    bob.out.wait_line("[#general] alice: the last word");
    assert_eq!(bob.out.count(|l| l.contains("forged")), 0);

    // Open to anyone: the page itself (it holds no secret), the health check, and peer-to-peer delivery.
    for path in ["/chat", "/chat/app.js", "/chat/app.css", "/health"] {
        let Caller::Lan(_, base) = &from_lan else {
            unreachable!()
        };
        let (status, _) = lan.request("GET", &format!("{base}{path}"), None, &[]);
        assert_eq!(status, 200, "GET {path} from {lan_ip}");
    }
    bob.type_line("/quit");
    bob.wait_exit(SOON);
}

#[test]
fn the_page_is_built_in_and_may_load_nothing_from_elsewhere() {
    // Only the answers matter: alice runs in this process and her router answers without a socket.
    let tracker = InTracker::start();
    let alice = tracker.peer("alice", &[]);
    let a = &alice.endpoint;
    let url = alice.chat_url();
    assert!(
        url.starts_with(&format!("http://{}/chat?login=", alice.addr)),
        "{url}"
    );
    // Opened as a browser opens it, following where the link leads.
    let mut target = url
        .trim_start_matches(&format!("http://{}", alice.addr))
        .to_string();
    let (status, headers, html) = loop {
        let (status, headers, body) = a.get_raw(&target, &[]);
        match (300..400).contains(&status) {
            true => target = headers["location"].to_str().unwrap().to_string(),
            false => break (status, headers, body),
        }
    };
    assert_eq!(status, 200);
    let csp = headers["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = String::from_utf8(html).unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page links nothing outside"
    );
    for (path, kind) in [
        ("/chat/app.js", "text/javascript"),
        ("/chat/app.css", "text/css"),
    ] {
        let (status, headers, _) = a.get_raw(path, &[]);
        assert_eq!(status, 200, "{path}");
        assert!(
            headers["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
    }
    // The page's own calls, refused cleanly when wrong.
    let (status, v) = a.get("/api/members?channel=general");
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("not_joined"))
    );
    let (status, v) = a.get("/api/members");
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("bad_query"))
    );
    let (status, v) = a.get("/api/members?channel=a%20b");
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("bad_query"))
    );
    let (status, v) = a.post_json(
        "/api/send",
        &json!({"to": "bob", "text": "x", "id": "not-a-uuid"}),
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("invalid_field"))
    );
    let (status, _, body) = a.get_raw("/api/events", &[("last-event-id", "twelve")]);
    assert_eq!(status, 400);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "bad_last_event_id");
    let (status, _) = a.get("/api/events?since=-1");
    assert_eq!(status, 400);
    // `changes` is a boolean: anything else is a bad query, not a stream of whole lists.
    let (status, v) = a.get("/api/events?changes=maybe");
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("bad_query"))
    );
}

/// Waits until a peer started with `--join general` is in the channel.
fn joined_at_start(peer: &Proc) {
    peer.out.wait_for("the --join at start", SOON, |l| {
        l.starts_with("* joined #general")
    });
}

fn send(peer: &Proc, channel: &str, text: &str) {
    let (status, v) = post_json(
        &peer.url("/api/send"),
        &json!({"channel": channel, "text": text}),
    );
    assert_eq!(status, 200, "{v}");
}

/// The fingerprint of the key a peer printed at start (`* identity KEY (key: …)`).
fn fingerprint(peer: &Proc) -> String {
    let line = peer
        .out
        .wait_for("the identity line", SOON, |l| l.starts_with("* identity "));
    let key = line.split_whitespace().nth(2).unwrap();
    key.parse::<hchat::identity::PublicKey>()
        .unwrap()
        .fingerprint()
}

/// The texts of the message events, in order.
fn texts(events: &[(Option<u64>, serde_json::Value)]) -> Vec<String> {
    events
        .iter()
        .filter(|(_, e)| e["type"] == "message")
        .map(|(_, e)| e["message"]["text"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_stream_resumes_with_exactly_the_missed_events_or_says_resync() {
    let tracker = Proc::tracker(&["--peer-ttl", "2"]);
    let alice = Proc::peer("alice", tracker.addr, &["--join", "general"]);
    joined_at_start(&alice);

    let first = EventStream::open(alice.addr, "/api/events", &[]);
    first
        .events
        .wait_for("the status line", SOON, |l| l.starts_with("status "));
    assert!(
        first.events.all()[0].contains(" 200 "),
        "{:?}",
        first.events.all()
    );
    first.wait_for(r#""type":"hello""#);
    let hello = &first.parsed()[0];
    assert_eq!((hello.0, &hello.1["name"]), (None, &json!("alice")));
    let boot = hello.1["boot"].as_str().unwrap().to_string();
    assert_eq!(boot.len(), 16);
    for i in 1..=5 {
        send(&alice, "general", &format!("seen {i}"));
    }
    first.wait_for("seen 5");
    let seen = first.parsed();
    assert_eq!(
        texts(&seen),
        ["seen 1", "seen 2", "seen 3", "seen 4", "seen 5"]
    );
    let ids: Vec<u64> = seen.iter().filter_map(|(id, _)| *id).collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "numbers follow on: {ids:?}"
    );
    let last = *ids.last().unwrap();
    drop(first);

    for i in 1..=5 {
        send(&alice, "general", &format!("missed {i}"));
    }
    let expect_missed = ["missed 1", "missed 2", "missed 3", "missed 4", "missed 5"];
    // Resuming by header, and by query: the missed events exactly, numbered on from the last one seen.
    let by_header = EventStream::open(
        alice.addr,
        "/api/events",
        &[("last-event-id", &last.to_string())],
    );
    let by_query = EventStream::open(
        alice.addr,
        &format!("/api/events?since={last}&boot={boot}"),
        &[],
    );
    for stream in [&by_header, &by_query] {
        stream.wait_for("missed 5");
        let got = stream.parsed();
        assert_eq!(got[0].1["type"], "hello");
        assert_eq!(got[0].1["seq"], last);
        assert_eq!(texts(&got), expect_missed);
        let ids: Vec<u64> = got.iter().filter_map(|(id, _)| *id).collect();
        assert_eq!(ids[0], last + 1, "no gap");
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
        assert!(!got.iter().any(|(_, e)| e["type"] == "resync"));
    }
    // Both keep following live.
    send(&alice, "general", "live again");
    by_header.wait_for("live again");
    by_query.wait_for("live again");

    // Presence: bob joining shows up on the stream as a member, online; bob dying shows him offline.
    // Each member comes with the fingerprint of the key the tracker binds its name to.
    let mut bob = Proc::peer("bob", tracker.addr, &["--join", "general"]);
    let (alice_fp, bob_fp) = (fingerprint(&alice), fingerprint(&bob));
    by_header.wait_for(&format!(
        r#"{{"name":"bob","online":true,"role":"member","status":"online","fingerprint":"{bob_fp}"}}"#
    ));
    bob.kill();
    by_header.wait_for(&format!(
        r#"{{"name":"bob","online":false,"role":"member","status":"offline","fingerprint":"{bob_fp}"}}"#
    ));
    let members = get_json(&alice.url("/api/members?channel=general"), 200);
    assert_eq!(
        members["members"],
        json!([
            {"name": "alice", "online": true, "role": "owner", "status": "online", "fingerprint": alice_fp},
            {"name": "bob", "online": false, "role": "member", "status": "offline", "fingerprint": bob_fp}
        ])
    );
    let me = get_json(&alice.url("/api/me"), 200);
    assert_eq!(me["fingerprint"], alice_fp);
    // A member that leaves the channel (and stays online) is no longer listed at all.
    let carol = Proc::peer("carol", tracker.addr, &["--join", "general"]);
    let carol_fp = fingerprint(&carol);
    by_header.wait_for(&format!(
        r#"{{"name":"carol","online":true,"role":"member","status":"online","fingerprint":"{carol_fp}"}}"#
    ));
    let before_leave = by_header.events.all().len();
    let (status, _) = post_json(&carol.url("/api/leave"), &json!({"channel": "general"}));
    assert_eq!(status, 200);
    wait_until("a presence event without carol", SOON, || {
        by_header.events.all()[before_leave..]
            .iter()
            .any(|l| l.contains(r#""type":"presence""#) && !l.contains("carol"))
    });
    drop((by_header, by_query));

    // Numbers from another start of the node: resync, then follow from now.
    let other = EventStream::open(
        alice.addr,
        &format!("/api/events?since={last}&boot=0000000000000000"),
        &[],
    );
    other.wait_for(r#""type":"resync""#);
    send(&alice, "general", "after the resync");
    other.wait_for("after the resync");
    assert_eq!(
        texts(&other.parsed()),
        ["after the resync"],
        "nothing replayed from another start"
    );
    drop(other);

    // Further behind than the node keeps: resync, then what is still kept.
    let before = get_json(&alice.url("/api/history?with=general&limit=1"), 200);
    assert_eq!(before["messages"][0]["text"], "after the resync");
    for i in 0..1100 {
        send(&alice, "general", &format!("flood {i}"));
    }
    let behind = EventStream::open(
        alice.addr,
        &format!("/api/events?since={last}&boot={boot}"),
        &[],
    );
    behind.wait_for("flood 1099");
    let got = behind.parsed();
    assert_eq!(got[1].1["type"], "resync", "{:?}", got[1]);
    let kept = texts(&got);
    assert_eq!(kept.last().unwrap(), "flood 1099");
    assert!(
        kept.len() < 1100 && kept.len() > 900,
        "the ring's worth: {}",
        kept.len()
    );
    let ids: Vec<u64> = got.iter().filter_map(|(id, _)| *id).collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "what is kept comes without holes"
    );
}
