//! Bad input on every endpoint, tracker and peer: malformed JSON, wrong shapes, missing and mistyped fields,
//! invalid names, IPs and ports, unknown peers and channels, oversize bodies, garbage on the socket. Each gets a
//! 4xx with a JSON error body; nothing of it reaches a chat window; the node serves on.
//!
//! In-process (`common::in_process`): what is checked is each request's answer, so no process is started; the
//! peer's router answers without a socket. Garbage is still sent to each node's real socket, where it arrives.

use crate::common;
use std::io::{Read, Write};

use common::in_process::InTracker;
use common::*;
use serde_json::json;

/// Asserts a refusal: the status, and a JSON error body with the code and a message.
fn refused(
    what: &str,
    (status, body): (u16, serde_json::Value),
    want_status: u16,
    want_code: &str,
) {
    assert_eq!(status, want_status, "{what}: {body}");
    assert_eq!(body["error"]["code"], want_code, "{what}: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
}

/// The malformed bodies every JSON endpoint must refuse, with the status and code each gets.
fn malformed() -> Vec<(&'static str, String, u16, &'static str)> {
    vec![
        ("truncated JSON", r#"{"name":"#.into(), 400, "bad_json"),
        ("not JSON at all", "hello there".into(), 400, "bad_json"),
        ("an empty body", String::new(), 400, "bad_json"),
        ("an array", "[1,2,3]".into(), 422, "invalid_field"),
        ("a string", r#""alice""#.into(), 422, "invalid_field"),
        ("an empty object", "{}".into(), 422, "invalid_field"),
        (
            "numbers where text belongs",
            r#"{"name":5,"channel":5,"to":5,"ip":"127.0.0.1","port":1,"text":5}"#.into(),
            422,
            "invalid_field",
        ),
        (
            "a body over 64 KiB",
            format!(r#"{{"name":"{}"}}"#, "a".repeat(70_000)),
            413,
            "body_too_large",
        ),
    ]
}

/// Sends raw bytes and returns what came back.
fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn garbage_is_refused_and_the_node_serves_on(name: &str, addr: std::net::SocketAddr) {
    let answer = raw(addr, b"\x00\xff\x13garbage\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert!(answer.contains(r#""code":"not_http""#), "{answer:?}");
    let answer = raw(addr, b"GET / HTTP/9.9 nonsense\r\n\x01\x02\r\n\r\n");
    assert!(
        answer.starts_with("HTTP/1.1 4"),
        "a request line that is not HTTP/1.x: {answer:?}"
    );
    assert_eq!(
        get_json(&format!("http://{addr}/health"), 200)["ok"],
        true,
        "{name} still serves"
    );
}

#[test]
fn the_tracker_refuses_bad_input_on_every_endpoint_and_serves_on() {
    let tracker = InTracker::start();
    let t = &tracker.endpoint;
    for path in [
        "/submit-info",
        "/unregister",
        "/add-list",
        "/leave",
        "/broadcast-peer",
        "/connect-peer",
        "/mailbox/deposit",
        "/mailbox/fetch",
        "/mailbox/ack",
        "/channel/mode",
        "/channel/invite",
        "/channel/remove",
        "/channel/ban",
        "/channel/unban",
        "/channel/role",
        "/presence",
    ] {
        for (what, body, status, code) in malformed() {
            refused(
                &format!("POST {path} with {what}"),
                t.post_raw(path, body),
                status,
                code,
            );
        }
    }

    // Fields with the right type but a value that is not allowed.
    let reg = |name: &str, ip: &str, port: serde_json::Value| json!({"name": name, "ip": ip, "port": port});
    for (what, body) in [
        (
            "a name with a space",
            reg("al ice", "127.0.0.1", json!(8000)),
        ),
        (
            "a name too long",
            reg(&"a".repeat(33), "127.0.0.1", json!(8000)),
        ),
        (
            "an IP that is not one",
            reg("alice", "999.1.1.1", json!(8000)),
        ),
        (
            "an IP that is a name",
            reg("alice", "localhost", json!(8000)),
        ),
        ("the unspecified IP", reg("alice", "0.0.0.0", json!(8000))),
        ("port 0", reg("alice", "127.0.0.1", json!(0))),
        ("port 70000", reg("alice", "127.0.0.1", json!(70000))),
        ("a negative port", reg("alice", "127.0.0.1", json!(-1))),
        ("a port as text", reg("alice", "127.0.0.1", json!("8000"))),
    ] {
        refused(
            &format!("register with {what}"),
            t.post_json("/submit-info", &body),
            422,
            "invalid_field",
        );
    }
    refused(
        "a bad channel name",
        t.post_json("/add-list", &json!({"name": "a", "channel": "no spaces"})),
        422,
        "invalid_field",
    );
    refused(
        "a registration without an identity",
        t.post_json(
            "/submit-info",
            &json!({"name": "alice", "ip": "127.0.0.1", "port": 8000}),
        ),
        400,
        "missing_identity",
    );

    // Names that are not (or no longer) online. A name bound to a key but without a lease acts nowhere.
    let ghost = Signer::new("ghost");
    tracker.register(&ghost, 7999);
    let (s, _) = t.post_as(&ghost, "/unregister", &json!({"name": "ghost"}));
    assert_eq!(s, 200);
    let in_general = json!({"name": "ghost", "channel": "general"});
    for (what, path) in [
        ("join", "/add-list"),
        ("leave", "/leave"),
        ("fan out", "/broadcast-peer"),
    ] {
        refused(
            &format!("{what} as a peer that is not online"),
            t.post_as(&ghost, path, &in_general),
            404,
            "unknown_peer",
        );
        refused(
            &format!("{what} unsigned"),
            t.post_json(path, &in_general),
            401,
            "unauthenticated",
        );
    }
    refused(
        "look up a peer that is not online",
        t.post_as(&ghost, "/connect-peer", &json!({"name": "ghost"})),
        404,
        "unknown_peer",
    );
    refused(
        "unregister a peer that is not online",
        t.post_as(&ghost, "/unregister", &json!({"name": "ghost"})),
        404,
        "unknown_peer",
    );
    refused(
        "act as a name no key is bound to",
        t.post_as(
            &Signer::new("nobody"),
            "/connect-peer",
            &json!({"name": "ghost"}),
        ),
        401,
        "unknown_identity",
    );
    let (status, _) = t.post_with_auth("/add-list", "name=ghost; ts=1", in_general.to_string());
    assert_eq!(status, 400, "a malformed Hchat-Auth header");
    let get = |p: &str| t.get(p);
    refused(
        "list an unknown channel",
        get("/get-list?channel=nowhere"),
        404,
        "unknown_channel",
    );
    refused("list without a channel", get("/get-list"), 400, "bad_query");
    refused(
        "list a bad channel name",
        get("/get-list?channel=a%20b"),
        400,
        "bad_query",
    );
    refused("an unknown path", get("/nope"), 404, "no_such_endpoint");
    refused(
        "the wrong method",
        get("/submit-info"),
        405,
        "method_not_allowed",
    );

    // A real peer, then requests it is not allowed to make.
    let alice = Signer::new("alice");
    tracker.register(&alice, 8000);
    refused(
        "take a live name from another address",
        t.post_json("/submit-info", &alice.registration("127.0.0.1", 8001)),
        409,
        "name_taken",
    );
    refused(
        "take a name bound to another key",
        t.post_json(
            "/submit-info",
            &Signer::new("alice").registration("127.0.0.1", 8000),
        ),
        409,
        "name_taken",
    );
    refused(
        "fan out to an unknown channel",
        t.post_as(
            &alice,
            "/broadcast-peer",
            &json!({"name": "alice", "channel": "x"}),
        ),
        404,
        "unknown_channel",
    );
    let bob = Signer::new("bob");
    tracker.register(&bob, 8002);
    let (s, _) = t.post_as(&bob, "/add-list", &json!({"name": "bob", "channel": "x"}));
    assert_eq!(s, 200);
    refused(
        "fan out to a channel one is not in",
        t.post_as(
            &alice,
            "/broadcast-peer",
            &json!({"name": "alice", "channel": "x"}),
        ),
        403,
        "not_member",
    );
    refused(
        "leave a channel one is not in",
        t.post_as(&alice, "/leave", &json!({"name": "alice", "channel": "x"})),
        403,
        "not_member",
    );
    refused(
        "act as another peer",
        t.post_as(&alice, "/leave", &json!({"name": "bob", "channel": "x"})),
        403,
        "not_you",
    );

    garbage_is_refused_and_the_node_serves_on("the tracker", tracker.addr);
    // Nothing of it corrupted the state: exactly the two real peers, bob alone in #x.
    assert_eq!(names(&t.get_json("/peers", 200)), ["alice", "bob"]);
    assert_eq!(names(&t.get_json("/get-list?channel=x", 200)), ["bob"]);
    assert_eq!(
        t.get_json("/channels", 200)["channels"],
        json!([{"name": "x", "members": 1, "mode": "open"}])
    );
}

#[test]
fn a_peer_refuses_bad_messages_shows_none_of_them_and_serves_on() {
    let tracker = InTracker::start();
    // Both in #general once started.
    let bob = tracker.peer("bob", &["general"]);
    let _alice = tracker.peer("alice", &["general"]);
    let b = &bob.endpoint;
    let receive = "/p2p/receive";
    // carol speaks by hand, with a key of her own the tracker binds her name to, as a member of #general (so the
    // channel's rules let her post).
    let carol = Signer::new("carol");
    tracker.register(&carol, 7001);
    let (status, body) = tracker.endpoint.post_as(
        &carol,
        "/add-list",
        &json!({"name": "carol", "channel": "general"}),
    );
    assert_eq!(status, 200, "carol joins #general: {body}");
    for (what, body, status, code) in malformed() {
        refused(
            &format!("receive {what}"),
            b.post_raw(receive, body),
            status,
            code,
        );
    }
    let msg = |from: &str, dest: serde_json::Value, text: &str| {
        let mut m = json!({"id": uuid_v7(), "from": from, "text": text, "ts": 1});
        m.as_object_mut()
            .unwrap()
            .extend(dest.as_object().unwrap().clone());
        m
    };
    let general = json!({"channel": "general"});
    for (what, body, status, code) in [
        (
            "no destination",
            json!({"id": uuid_v7(), "from": "alice", "text": "x", "ts": 1}),
            422,
            "invalid_field",
        ),
        (
            "an id that is not a UUID",
            json!({"id": "42", "from": "alice", "channel": "general", "text": "x", "ts": 1}),
            422,
            "invalid_field",
        ),
        (
            "a negative timestamp",
            json!({"id": uuid_v7(), "from": "alice", "channel": "general", "text": "x", "ts": -1}),
            422,
            "invalid_field",
        ),
        (
            "empty text",
            msg("alice", general.clone(), " "),
            422,
            "invalid_field",
        ),
        (
            "a channel bob is not in",
            msg("alice", json!({"channel": "secret"}), "x"),
            403,
            "not_joined",
        ),
        (
            "a DM for someone else",
            msg("alice", json!({"to": "carol"}), "x"),
            404,
            "wrong_recipient",
        ),
        (
            "a sender the tracker does not know",
            Signer::new("mallory").message(general.clone(), "x"),
            401,
            "unknown_identity",
        ),
        (
            "an unsigned message",
            msg("carol", general.clone(), "x"),
            401,
            "bad_signature",
        ),
        (
            "bob's own name as sender",
            msg("bob", general.clone(), "x"),
            403,
            "unknown_sender",
        ),
    ] {
        refused(
            &format!("receive {what}"),
            b.post_json(receive, &body),
            status,
            code,
        );
    }
    let text_too_long = msg("alice", general.clone(), &"x".repeat(17 * 1024));
    refused(
        "receive a text over 16 KiB",
        b.post_json(receive, &text_too_long),
        422,
        "invalid_field",
    );

    // The local API refuses bad input the same way.
    for path in ["/send-peer", "/api/send", "/api/join", "/api/leave"] {
        for (what, body, status, code) in malformed() {
            refused(
                &format!("POST {path} with {what}"),
                b.post_raw(path, body),
                status,
                code,
            );
        }
    }
    refused(
        "send to a channel bob is not in",
        b.post_json("/send-peer", &json!({"channel": "secret", "text": "x"})),
        403,
        "not_joined",
    );
    refused(
        "send to a peer the tracker has never seen",
        b.post_json("/send-peer", &json!({"to": "ghost", "text": "x"})),
        404,
        "unknown_recipient",
    );
    refused(
        "send to oneself",
        b.post_json("/send-peer", &json!({"to": "bob", "text": "x"})),
        422,
        "invalid_field",
    );
    refused(
        "history of a bad name",
        b.get("/api/history?with=%40a%20b"),
        400,
        "bad_query",
    );
    garbage_is_refused_and_the_node_serves_on("bob", bob.addr);

    // A good message still goes through, once, even when it arrives twice.
    let good = carol.message(general, "the only line");
    for duplicate in [false, true] {
        let (status, mut answer) = b.post_json(receive, &good);
        // The receipt (bob's signature of what he did) is checked in tests/it/attack_puppets.rs.
        let receipt = answer.as_object_mut().unwrap().remove("receipt").unwrap();
        assert_eq!(receipt.as_str().unwrap().len(), 86, "{receipt}");
        assert_eq!(
            (status, answer),
            (200, json!({"ok": true, "duplicate": duplicate}))
        );
    }
    // What bob's chat window shows of others' messages, line for line; events keep their order, so every line
    // the bad input could have caused is in before this one.
    bob.wait_shown("[#general] carol: the only line");
    let shown = bob.shown();
    assert_eq!(
        shown,
        ["[#general] carol: the only line"],
        "nothing else reached bob's chat window"
    );
}

fn uuid_v7() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[test]
fn mailbox_batch_and_catch_up_endpoints_refuse_bad_input_and_serve_on() {
    let tracker = InTracker::start();
    let t = &tracker.endpoint;
    let bob = tracker.peer("bob", &["general"]);
    let carol = Signer::new("carol");
    tracker.register(&carol, 7001);
    let ghost = Signer::new("ghost");
    tracker.register(&ghost, 7002);
    assert_eq!(
        t.post_as(&ghost, "/unregister", &json!({"name": "ghost"}))
            .0,
        200
    );
    // Sealed to the sender's own key: every one of these is refused before anyone could try to open it.
    let letter = |from: &Signer, to: &str| {
        let m = from.message(json!({"to": to}), "x");
        json!({"from": from.name, "to": to, "entries": [sealed_entry(&m, to, &from.key())]})
    };
    let deposit = "/mailbox/deposit";
    refused(
        "deposit from a peer that is not online",
        t.post_as(&ghost, deposit, &letter(&ghost, "bob")),
        404,
        "unknown_peer",
    );
    refused(
        "deposit for a name never seen",
        t.post_as(&carol, deposit, &letter(&carol, "nobody")),
        404,
        "unknown_recipient",
    );
    refused(
        "deposit for oneself",
        t.post_as(&carol, deposit, &letter(&carol, "carol")),
        422,
        "invalid_field",
    );
    refused(
        "deposit with no entries",
        t.post_as(
            &carol,
            deposit,
            &json!({"from": "carol", "to": "bob", "entries": []}),
        ),
        422,
        "invalid_field",
    );
    refused(
        "an envelope id that is not a UUID",
        t.post_as(
            &carol,
            deposit,
            &json!({"from": "carol", "to": "bob", "entries": [{"id": "7", "envelope": {}}]}),
        ),
        422,
        "invalid_field",
    );
    refused(
        "an envelope that is not a message",
        t.post_as(&carol, deposit,
            &json!({"from": "carol", "to": "bob", "entries": [{"id": uuid_v7(), "envelope": {"n": 1}}]}),
        ),
        422,
        "invalid_field",
    );
    // Held mail is sealed: a plaintext letter (as a peer from before sealing deposits it) is not kept, nor is a
    // sealed one whose outside is malformed or disagrees with the deposit.
    let plain = carol.message(json!({"to": "bob"}), "in plaintext");
    refused(
        "a letter in plaintext",
        t.post_as(&carol, deposit,
            &json!({"from": "carol", "to": "bob", "entries": [{"id": plain["id"], "envelope": plain}]})),
        422,
        "not_sealed",
    );
    let sealed = sealed_entry(&plain, "bob", &carol.key());
    let with = |field: &str, value: serde_json::Value| {
        let mut e = sealed.clone();
        e["envelope"][field] = value;
        json!({"from": "carol", "to": "bob", "entries": [e]})
    };
    for (what, body, status, code) in [
        (
            "a seal not known",
            with("seal", json!("rot13")),
            422,
            "bad_seal",
        ),
        (
            "a box not base64url",
            with("sealed", json!("a b c")),
            422,
            "bad_seal",
        ),
        (
            "a box too short to be sealed",
            with("sealed", json!("AAAA")),
            422,
            "bad_seal",
        ),
        (
            "another recipient outside",
            with("to", json!("carol")),
            422,
            "invalid_field",
        ),
        (
            "another id outside",
            with("id", json!(uuid_v7())),
            422,
            "invalid_field",
        ),
        (
            "another sender outside",
            with("from", json!("bob")),
            403,
            "not_you",
        ),
        (
            "a ts from the future outside",
            with("ts", json!(hchat::proto::now_ms() + 3_600_000)),
            422,
            "future_message",
        ),
    ] {
        refused(what, t.post_as(&carol, deposit, &body), status, code);
    }
    refused(
        "fetch for a peer that is not online",
        t.post_as(&ghost, "/mailbox/fetch", &json!({"name": "ghost"})),
        404,
        "unknown_peer",
    );
    refused(
        "fetch zero entries",
        t.post_as(
            &carol,
            "/mailbox/fetch",
            &json!({"name": "carol", "limit": 0}),
        ),
        422,
        "invalid_field",
    );
    refused(
        "ack nothing",
        t.post_as(&carol, "/mailbox/ack", &json!({"name": "carol", "ids": []})),
        422,
        "invalid_field",
    );
    refused(
        "fetch another's mail",
        t.post_as(&carol, "/mailbox/fetch", &json!({"name": "bob"})),
        403,
        "not_you",
    );
    let (status, answer) = t.post_as(&carol, "/mailbox/fetch", &json!({"name": "carol"}));
    assert_eq!(
        (status, answer["entries"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{answer}"
    );

    for (what, body, status, code) in malformed() {
        refused(
            &format!("receive-batch {what}"),
            bob.endpoint.post_raw("/p2p/receive-batch", body),
            status,
            code,
        );
    }
    refused(
        "an empty batch",
        bob.endpoint
            .post_json("/p2p/receive-batch", &json!({"messages": []})),
        422,
        "invalid_field",
    );
    let h = |q: &str| bob.endpoint.get(&format!("/p2p/history{q}"));
    refused("history with no query", h(""), 400, "bad_query");
    refused(
        "history of a bad channel",
        h("?channel=a%20b&name=x"),
        400,
        "bad_query",
    );
    refused(
        "history with a bad id",
        h("?channel=general&name=x&after=7"),
        400,
        "bad_query",
    );
    refused(
        "history of a channel bob is not in",
        h("?channel=secret&name=bob"),
        403,
        "not_joined",
    );
    refused(
        "history for a non-member",
        h("?channel=general&name=ghost"),
        403,
        "not_member",
    );
    refused(
        "history pages over 500",
        h("?channel=general&name=bob&limit=501"),
        400,
        "bad_query",
    );
    garbage_is_refused_and_the_node_serves_on("the tracker", tracker.addr);
    garbage_is_refused_and_the_node_serves_on("bob", bob.addr);
}
