//! Search over the whole history: SQLite's FTS5 index of every message's text (the store's `messages_fts`).
//! It is filled in batches, not as each message is stored (FTS5 flushes its index at every commit, which cost a
//! third of each stored message): by [`Node::index_for_search`] every `INDEX_EVERY`, and with whatever is left
//! before each search, so a search always sees every message stored before it. What a user types is never handed to FTS5 as a query: each word becomes a
//! quoted prefix term (`"wor"*`), all of them required, so quotes, `AND`, `NEAR`, `*` or `-` in it are just text
//! and no input can make a query fail or widen.

use serde::Serialize;

use super::store::INDEX_EVERY;
use super::{Node, NodeError};
use crate::proto::{ChatMessage, Destination};

/// Results one search returns at most.
pub const MAX_SEARCH_RESULTS: usize = 200;
/// Results when the caller does not say.
pub const DEFAULT_SEARCH_RESULTS: usize = 50;
/// Words of a query used at most (more are ignored).
pub const MAX_SEARCH_WORDS: usize = 8;
/// Longest query, in bytes.
pub const MAX_QUERY_BYTES: usize = 256;

/// Why a search was not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error("nothing to search for: give at least one word")]
    Empty,
    #[error("a search is at most {MAX_QUERY_BYTES} bytes")]
    TooLong,
}

/// One result: the message and the conversation it is in.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    #[serde(flatten)]
    pub message: ChatMessage,
    /// `#channel` or `@peer`.
    pub with: String,
}

/// The FTS5 query for what the user typed: each word a quoted prefix term, all required.
pub fn fts_query(typed: &str) -> Result<String, SearchError> {
    if typed.len() > MAX_QUERY_BYTES {
        return Err(SearchError::TooLong);
    }
    let terms: Vec<String> = typed
        .split_whitespace()
        .take(MAX_SEARCH_WORDS)
        .map(|w| format!("\"{}\"*", w.replace('"', "\"\"")))
        .collect();
    match terms.is_empty() {
        true => Err(SearchError::Empty),
        false => Ok(terms.join(" ")),
    }
}

impl Node {
    /// Indexes what was stored since the last pass, every [`INDEX_EVERY`] (a task of the node).
    pub(super) async fn index_for_search(self) {
        let stop = self.inner.shutdown.clone();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(INDEX_EVERY) => {}
                _ = stop.cancelled() => return,
            }
            if let Err(e) = self.inner.store.index_for_search().await {
                tracing::warn!(peer = %self.name(), "cannot index messages for search: {e}");
            }
        }
    }

    /// The newest messages with every word of `typed` (as prefixes), in `within` or everywhere, newest first.
    pub async fn search(
        &self,
        typed: &str,
        within: Option<&Destination>,
        limit: usize,
    ) -> Result<Vec<Hit>, NodeError> {
        let query = fts_query(typed).map_err(|e| NodeError::BadSearch(e.to_string()))?;
        let hits = self
            .inner
            .store
            .search(
                query,
                within.map(Destination::label),
                limit.min(MAX_SEARCH_RESULTS),
            )
            .await?;
        Ok(hits
            .into_iter()
            .map(|(message, with)| Hit { message, with })
            .collect())
    }
}

/// For `examples/search_bench.rs`: stores `messages` channel messages in a store in `dir` (one of which has the
/// word `needle`; each has three of ten common words such as `lunch`), then times `runs` searches for `word` the
/// way `GET /api/search` runs them (the store's query, newest 50, without HTTP). Returns each search's time and
/// how many results the last one had.
pub async fn bench_search(
    dir: &std::path::Path,
    messages: usize,
    runs: usize,
    word: &str,
) -> Result<(Vec<std::time::Duration>, usize), NodeError> {
    use crate::proto::{ChannelName, PeerName};
    let storage = crate::storage::Storage::Dir(dir.to_path_buf());
    let me = PeerName::new("bench").map_err(|e| NodeError::Identity(e.to_string()))?;
    let (store, _thread) = super::store::PeerStore::open(&storage, me)?;
    let alice = PeerName::new("alice").map_err(|e| NodeError::Identity(e.to_string()))?;
    let ch = Destination::Channel(
        ChannelName::new("general").map_err(|e| NodeError::Identity(e.to_string()))?,
    );
    const WORDS: &[&str] = &[
        "hello", "lunch", "meeting", "release", "coffee", "deploy", "review", "ticket", "weekend",
        "build",
    ];
    for chunk in (0..messages).collect::<Vec<_>>().chunks(10_000) {
        let batch = chunk
            .iter()
            .map(|&i| {
                let text = match i == messages / 2 {
                    true => "where is the needle in this haystack".to_string(),
                    false => format!(
                        "message {i}: {} {} {}",
                        WORDS[i % WORDS.len()],
                        WORDS[(i / 7) % WORDS.len()],
                        WORDS[(i / 13) % WORDS.len()]
                    ),
                };
                ChatMessage::new(alice.clone(), ch.clone(), text)
            })
            .collect::<Result<Vec<_>, _>>()?;
        store.save_received(batch).await?;
    }
    let query = fts_query(word).map_err(|e| NodeError::BadSearch(e.to_string()))?;
    let mut times = Vec::with_capacity(runs);
    let mut found = 0;
    for _ in 0..runs {
        let t = std::time::Instant::now();
        found = store
            .search(query.clone(), None, DEFAULT_SEARCH_RESULTS)
            .await?
            .len();
        times.push(t.elapsed());
    }
    Ok((times, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_words_become_required_quoted_prefix_terms_and_nothing_else() {
        assert_eq!(
            fts_query("  lunch  at noon "),
            Ok(r#""lunch"* "at"* "noon"*"#.into())
        );
        assert_eq!(
            fts_query(r#"say "hi" OR NEAR(x)"#),
            Ok(r#""say"* """hi"""* "OR"* "NEAR(x)"*"#.into())
        );
        assert_eq!(fts_query("   "), Err(SearchError::Empty));
        assert_eq!(
            fts_query(&"a".repeat(MAX_QUERY_BYTES + 1)),
            Err(SearchError::TooLong)
        );
        assert_eq!(
            fts_query(&"w ".repeat(20)).unwrap().matches('*').count(),
            MAX_SEARCH_WORDS
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_word_is_found_in_the_whole_history_by_prefix_and_in_one_conversation() {
        let dir = tempfile::tempdir().unwrap();
        let (times, found) = bench_search(dir.path(), 2_000, 3, "needle").await.unwrap();
        assert_eq!(
            (times.len(), found),
            (3, 1),
            "the needle is found once, each time"
        );
        let storage = crate::storage::Storage::Dir(dir.path().to_path_buf());
        let (store, _t) = super::super::store::PeerStore::open(
            &storage,
            crate::proto::PeerName::new("bench").unwrap(),
        )
        .unwrap();
        let hits = store
            .search(fts_query("need hay").unwrap(), Some("#general".into()), 10)
            .await
            .unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].0.text, "where is the needle in this haystack");
        assert!(
            store
                .search(fts_query("needle").unwrap(), Some("@alice".into()), 10)
                .await
                .unwrap()
                .is_empty()
        );
        let lunch = store
            .search(fts_query("lunch").unwrap(), None, 200)
            .await
            .unwrap();
        assert!(!lunch.is_empty() && lunch.iter().all(|(m, _)| m.text.contains("lunch")));
    }
}
