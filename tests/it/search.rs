//! Search over the whole history (issue 15): `GET /api/search` and the CLI's `/search`, each result with its
//! conversation and time; whatever is typed is words, never query syntax, and bad requests get a code.

use crate::common;

use common::*;
use serde_json::json;

fn search(p: &Proc, query: &str) -> (u16, serde_json::Value) {
    let url = reqwest::Url::parse_with_params(&p.url("/api/search"), [("q", query)]).unwrap();
    try_get_json(url.as_str()).expect("an answer")
}

#[test]
fn a_word_is_found_in_any_conversation_with_its_time_and_place_and_no_input_breaks_the_query() {
    let tracker = Proc::tracker(&[]);
    let alice = Proc::peer("alice", tracker.addr, &["--join", "general"]);
    let mut bob = Proc::peer("bob", tracker.addr, &["--join", "general"]);
    joined(&alice, "general");
    joined(&bob, "general");
    for (body, line) in [
        (
            json!({"channel": "general", "text": "lunch at noon?"}),
            "[#general] alice: lunch at noon?",
        ),
        (
            json!({"to": "bob", "text": "Lunchtime, bob"}),
            "[@alice] alice: Lunchtime, bob",
        ),
        (
            json!({"channel": "general", "text": "the release is out"}),
            "[#general] alice: the release is out",
        ),
    ] {
        assert_eq!(post_json(&alice.url("/api/send"), &body).0, 200);
        bob.out.wait_line(line);
    }
    let (status, r) = search(&bob, "lunch");
    assert_eq!(status, 200, "{r}");
    let found: Vec<_> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["with"].clone(), h["text"].clone()))
        .collect();
    assert_eq!(
        found,
        [
            (json!("@alice"), json!("Lunchtime, bob")),
            (json!("#general"), json!("lunch at noon?"))
        ],
        "newest first, as prefixes, any case"
    );
    assert!(r["results"][0]["ts"].as_u64().unwrap() > 0 && r["results"][0]["id"].is_string());
    let url = reqwest::Url::parse_with_params(
        &bob.url("/api/search"),
        [("q", "lunch"), ("in", "#general")],
    )
    .unwrap();
    let (_, r) = try_get_json(url.as_str()).unwrap();
    assert_eq!(
        r["results"].as_array().unwrap().len(),
        1,
        "only in #general: {r}"
    );

    bob.type_line("/search lunch @alice");
    let line = bob.out.wait_for("a search result", SOON, |l| {
        l.starts_with("* ") && l.ends_with("[@alice] alice: Lunchtime, bob")
    });
    assert!(
        line.starts_with("* 20") && line.as_bytes()[6] == b'-' && line.as_bytes()[9] == b'-',
        "with its date and time: {line}"
    );
    bob.out
        .wait_line("* search \"lunch\" in @alice: 1 result(s), newest first");

    // Query syntax is text: nothing fails, nothing widens.
    for hostile in [
        r#"lunch" OR "release"#,
        "NEAR(lunch release)",
        "*",
        "-lunch",
        "lunch AND",
        "\"",
        "col:lunch",
        "^lunch",
    ] {
        let (status, r) = search(&bob, hostile);
        assert_eq!(status, 200, "{hostile:?}: {r}");
        // Every result has each word of the query (its letters and digits) as the start of one of its words;
        // a query with no word finds nothing.
        let words: Vec<String> = hostile
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        for hit in r["results"].as_array().unwrap() {
            let text = hit["text"].as_str().unwrap().to_lowercase();
            let has = |w: &String| {
                text.split(|c: char| !c.is_alphanumeric())
                    .any(|t| t.starts_with(w.as_str()))
            };
            assert!(
                !words.is_empty() && words.iter().all(has),
                "{hostile:?} matched {text:?}"
            );
        }
    }
    for (query, why) in [
        ("", "empty"),
        ("   ", "blank"),
        (&"x".repeat(300)[..], "too long"),
    ] {
        let (status, r) = search(&bob, query);
        assert_eq!((status, code(&r)), (400, "bad_query"), "{why}: {r}");
    }
    let url = reqwest::Url::parse_with_params(
        &bob.url("/api/search"),
        [("q", "lunch"), ("in", "not a place")],
    )
    .unwrap();
    let (status, r) = try_get_json(url.as_str()).unwrap();
    assert_eq!((status, code(&r)), (400, "bad_query"), "{r}");
}
