//! How fast a search finds a word in a long history (issue 15: a word among 100,000 messages in under 50 ms).
//!
//! ```text
//! cargo run --release --example search_bench [-- MESSAGES [RUNS [WORD]]]
//! ```
//! Fills a peer store on disk with MESSAGES channel messages (default 100,000), one of which has the word
//! `needle` (and each three of ten common words, e.g. `lunch`, in about 27% of them), then runs the search
//! `GET /api/search` runs (SQLite FTS5, the newest 50) for WORD (default `needle`) RUNS times (default 200) and
//! prints p50, p99 and the slowest. The store's query alone: the local API adds one loopback HTTP round trip.

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let messages: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let runs: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    let word = args.next().unwrap_or_else(|| "needle".into());
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Runtime::new()?;
    let filled = std::time::Instant::now();
    let (mut times, found) = rt.block_on(hchat::peer::search::bench_search(
        dir.path(),
        messages,
        runs,
        &word,
    ))?;
    eprintln!(
        "{messages} messages stored and searched in {:?}",
        filled.elapsed()
    );
    times.sort();
    let at = |p: f64| times[((p * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1];
    println!(
        "search for {word:?} among {messages} messages ({found} results), {runs} runs: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        times.last().unwrap().as_secs_f64() * 1e3
    );
    Ok(())
}
