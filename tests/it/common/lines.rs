//! Waiting on conditions with deadlines (never a bare sleep), and the lines a child process prints, collected as
//! they come.

use std::io::{BufRead, BufReader};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The default deadline for something that should happen "at once".
pub(crate) const SOON: Duration = Duration::from_secs(10);

/// Waits until `cond` holds, checking every 20 ms, or panics after `deadline` saying what was awaited.
pub(crate) fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The lines a child process printed on one stream, collected by a reader thread; and whether the stream has
/// ended (the reader has taken every line there was).
#[derive(Clone, Default)]
pub(crate) struct Lines(
    Arc<(Mutex<Vec<String>>, Condvar)>,
    Arc<(Mutex<bool>, Condvar)>,
);

impl Lines {
    pub(crate) fn collect(
        stream: impl std::io::Read + Send + 'static,
        echo: &'static str,
    ) -> Lines {
        let lines = Lines::default();
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("HCHAT_TEST_ECHO").is_some() {
                    eprintln!("{echo}| {line}");
                }
                let (m, cv) = &*l.0;
                m.lock().unwrap().push(line);
                cv.notify_all();
            }
            let (ended, cv) = &*l.1;
            *ended.lock().unwrap() = true;
            cv.notify_all();
        });
        lines
    }

    /// Waits until the stream has ended (the process closed it, usually by exiting), so every line it printed is
    /// here.
    pub(crate) fn wait_ended(&self, deadline: Duration) {
        let (ended, cv) = &*self.1;
        let (guard, timeout) = cv
            .wait_timeout_while(ended.lock().unwrap(), deadline, |e| !*e)
            .unwrap();
        assert!(
            *guard || !timeout.timed_out(),
            "the stream did not end within {deadline:?}"
        );
    }

    pub(crate) fn all(&self) -> Vec<String> {
        self.0.0.lock().unwrap().clone()
    }

    /// Waits for a line matching `pred` and returns it.
    pub(crate) fn wait_for(
        &self,
        what: &str,
        deadline: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let end = Instant::now() + deadline;
        let (m, cv) = &*self.0;
        let mut lines = m.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().find(|l| pred(l)) {
                return l.clone();
            }
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out after {deadline:?} waiting for {what}; lines so far:\n{}",
                lines.join("\n")
            );
            lines = cv.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Like [`Lines::wait_for`], but `None` instead of a panic at the deadline.
    pub(crate) fn find_within(
        &self,
        deadline: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let end = Instant::now() + deadline;
        let (m, cv) = &*self.0;
        let mut lines = m.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().find(|l| pred(l)) {
                return Some(l.clone());
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            lines = cv.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Waits for a line equal to `line`.
    pub(crate) fn wait_line(&self, line: &str) -> String {
        self.wait_for(&format!("the line {line:?}"), SOON, |l| l == line)
    }

    /// Adds a line (for collectors other than a child's output).
    pub(crate) fn push(&self, line: String) {
        let (m, cv) = &*self.0;
        m.lock().unwrap().push(line);
        cv.notify_all();
    }

    /// Waits up to `deadline` for more than `seen` lines; returns how many there are.
    pub(crate) fn wait_more(&self, seen: usize, deadline: Duration) -> usize {
        let (m, cv) = &*self.0;
        let lines = m.lock().unwrap();
        let (lines, _) = cv
            .wait_timeout_while(lines, deadline, |l| l.len() <= seen)
            .unwrap();
        lines.len()
    }

    pub(crate) fn count(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.0.0.lock().unwrap().iter().filter(|l| pred(l)).count()
    }
}
