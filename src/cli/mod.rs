//! The interactive CLI: a peer's stdin and stdout. On a terminal it uses rustyline, and incoming messages are
//! printed through its external printer so they never garble the line being typed; on a pipe it is plain line in,
//! line out, so scripts can drive it. A message is exactly one line, `[#general] alice: Hello!` (scripts parse
//! it); everything else starts with `* ` (docs/PROTOCOL.md, "The interactive CLI").
//! Every line is printed through [`visible`], so nothing a peer sends can act on the terminal or span two lines.
//!
//! stdout is where the user (or the script driving the peer) sees anything at all: once it cannot be written (a
//! closed pipe, a full disk), the CLI stops, the node shuts down, and the process exits 1 saying why on stderr,
//! rather than serving on with nobody to show anything to.

mod access;
pub(crate) mod command;
pub(crate) mod visible;

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::peer::Node;
use crate::peer::events::Event;
use crate::proto::{ChannelName, Destination};
use crate::sync::lock;
use crate::web::Web;
use command::{Command, HELP, parse};
pub use visible::visible;

/// Messages typed but not yet handed to the courier, before the prompt waits.
const SEND_QUEUE: usize = 256;
/// How long `/quit` waits for messages already typed to go out.
const QUIT_DRAIN: Duration = Duration::from_secs(10);
/// How often a piped stdout is checked for its reader having gone away (well under a second).
const STDOUT_CHECK: Duration = Duration::from_millis(250);

/// Prints one line on stdout, made [`visible`]. An error means stdout cannot be written any more.
pub fn print_line(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", visible(line))?;
    out.flush()
}

/// Where the CLI's lines go: rustyline's printer on a terminal, stdout on a pipe. The first write that fails
/// cancels `broken`, with the reason kept for the exit message; nothing more is written after it.
#[derive(Clone)]
struct Out {
    printer: Arc<Mutex<Option<Box<dyn rustyline::ExternalPrinter + Send>>>>,
    broken: CancellationToken,
    why: Arc<Mutex<Option<String>>>,
}

impl Out {
    fn new(printer: Option<Box<dyn rustyline::ExternalPrinter + Send>>) -> Out {
        Out {
            printer: Arc::new(Mutex::new(printer)),
            broken: CancellationToken::new(),
            why: Arc::default(),
        }
    }

    fn line(&self, s: impl AsRef<str>) {
        if self.broken.is_cancelled() {
            return;
        }
        let written = match lock(&self.printer).as_mut() {
            Some(p) => p
                .print(format!("{}\n", visible(s.as_ref())))
                .map_err(|e| e.to_string()),
            None => print_line(s.as_ref()).map_err(|e| e.to_string()),
        };
        if let Err(e) = written {
            self.fail(e);
        }
    }

    fn status(&self, s: impl AsRef<str>) {
        self.line(format!("* {}", s.as_ref()))
    }

    /// stdout is gone: say so once, and stop the CLI.
    fn fail(&self, why: String) {
        lock(&self.why).get_or_insert(why);
        self.broken.cancel();
    }

    /// Why stdout could not be written, once it could not.
    fn failure(&self) -> Option<String> {
        lock(&self.why).clone()
    }
}

/// Cancels `out` as soon as the reader of a piped stdout goes away, without waiting for a line to write: a peer
/// whose driving script died would otherwise serve on unseen. (A terminal that goes away hangs the process up.)
/// Watches until the returned guard is dropped.
fn watch_stdout(out: &Out) -> Option<tokio_util::sync::DropGuard> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    if std::io::stdout().is_terminal() {
        return None;
    }
    let stop = CancellationToken::new();
    let (out, stopped) = (out.clone(), stop.clone());
    std::thread::Builder::new()
        .name("stdout-watch".into())
        .spawn(move || {
            let stdout = std::io::stdout();
            let every = Timespec {
                tv_sec: 0,
                tv_nsec: STDOUT_CHECK.as_nanos() as _,
            };
            while !stopped.is_cancelled() && !out.broken.is_cancelled() {
                // No events asked for: poll still reports an error (the pipe's reader is gone) or a hang-up.
                let mut fds = [PollFd::new(&stdout, PollFlags::empty())];
                match poll(&mut fds, Some(&every)) {
                    Ok(_)
                        if fds[0]
                            .revents()
                            .intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL) =>
                    {
                        out.fail("its reader went away".into());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!("stdout is not watched: {e}");
                        return;
                    }
                }
            }
        })
        .ok()?;
    Some(stop.drop_guard())
}

/// One typed line, and (on a terminal) the signal that lets the editor prompt again once the line is handled.
struct Typed {
    line: String,
    next: Option<oneshot::Sender<()>>,
}

/// Runs the CLI for the node of `web` until `/quit`, end of input or a termination signal, then deregisters the
/// node. (`/web` prints a login link of `web`.)
pub async fn run(web: Web, mut current: Option<ChannelName>) -> anyhow::Result<()> {
    let node = web.node().clone();
    let prompt = Arc::new(Mutex::new(prompt_for(&current)));
    let (typed_tx, mut typed) = mpsc::channel::<Typed>(16);
    let out = if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        start_editor(typed_tx, prompt.clone())?
    } else {
        start_pipe_reader(typed_tx);
        Out::new(None)
    };
    let _watching_stdout = watch_stdout(&out);
    let (send_tx, send_rx) = mpsc::channel::<(Destination, String)>(SEND_QUEUE);
    let sender = tokio::spawn(send_in_order(node.clone(), send_rx, out.clone()));
    // From the node's first event: what arrived while it started (its mailbox, catch-up) is shown too.
    let resumed = node.resume_events(0);
    let me = node.name().clone();
    if resumed.gap {
        out.status(
            "more messages arrived while starting than can be shown here; /history has them all",
        );
    }
    for stamped in &resumed.missed {
        show(&stamped.event, &me, &out);
    }
    let mut events = resumed.live;
    let stop = crate::shutdown_signal();
    tokio::pin!(stop);

    loop {
        tokio::select! {
            t = typed.recv() => {
                let Some(Typed { line, next }) = t else { break };
                let keep_going = match parse(&line) {
                    Ok(cmd) => handle(&web, cmd, &mut current, &send_tx, &out).await,
                    Err(e) => { out.status(e.to_string()); true }
                };
                *lock(&prompt) = prompt_for(&current);
                if !keep_going { break }
                if let Some(next) = next { let _ = next.send(()); }
            }
            ev = events.recv() => match ev.as_deref().map(|s| &s.event) {
                Ok(event) => show(event, &me, &out),
                Err(broadcast::error::RecvError::Lagged(n)) => out.status(format!("{n} events were not shown (too many at once); /history has them")),
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = &mut stop => break,
            _ = out.broken.cancelled() => break,
        }
    }
    drop(send_tx);
    if let Some(why) = out.failure() {
        // Nobody sees this node any more: stop at once (what was typed stays in the outbox for the next start).
        node.shutdown().await;
        anyhow::bail!("cannot write to stdout ({why}); the peer stopped");
    }
    if tokio::time::timeout(QUIT_DRAIN, sender).await.is_err() {
        out.status("some messages were still being sent when you quit");
    }
    node.shutdown().await;
    out.status("bye");
    Ok(())
}

/// Prints what the CLI shows of an event: others' messages, and notices.
fn show(event: &Event, me: &crate::proto::PeerName, out: &Out) {
    match event {
        Event::Message {
            message,
            own: false,
            ..
        } => out.line(message.cli_line(me)),
        Event::Receipt { peer, count, last } => out.status(match count {
            1 => format!("{peer} got your message \"{}\"", excerpt(last)),
            n => format!(
                "{peer} got your {n} held messages (the last: \"{}\")",
                excerpt(last)
            ),
        }),
        Event::Notice { text } => out.status(text.as_str()),
        Event::Missed {
            with,
            count,
            messages,
        } => {
            let plural = if *count == 1 { "message" } else { "messages" };
            out.status(format!(
                "--- {count} {plural} in {with} while you were away ---"
            ));
            if messages.len() < *count {
                out.status(format!(
                    "(the latest {}; /history {with} {} shows more)",
                    messages.len(),
                    (*count).min(command::MAX_HISTORY)
                ));
            }
            for m in messages {
                out.line(m.cli_line(me));
            }
        }
        Event::Path {
            peer,
            relayed: true,
        } => out.status(format!(
            "@{peer}: via relay (no direct path; the tracker relays the session, encrypted end to end)"
        )),
        Event::Path {
            peer,
            relayed: false,
        } => out.status(format!("@{peer}: direct")),
        _ => {}
    }
}

/// Most characters of a message a receipt line quotes.
const EXCERPT_CHARS: usize = 40;

/// The start of a message's text, on one line, for a status line that quotes it.
fn excerpt(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

fn prompt_for(current: &Option<ChannelName>) -> String {
    match current {
        Some(c) => format!("#{c}> "),
        None => "> ".to_string(),
    }
}

/// Reports awaited at once: a line typed beyond this many waits for the oldest report (each waits at most a few
/// seconds, [`crate::peer::SEND_REPORT_WAIT`]).
const REPORTS_IN_FLIGHT: usize = 64;

/// Sends typed messages one after another, so they are stored and leave in the order they were typed, and reports
/// failures. A line does not wait for the one before it to be delivered (to a peer that cannot be reached that is
/// seconds): only for it to be in the store.
async fn send_in_order(node: Node, mut rx: mpsc::Receiver<(Destination, String)>, out: Out) {
    let mut reports = tokio::task::JoinSet::new();
    while let Some((dest, text)) = rx.recv().await {
        while reports.try_join_next().is_some() {}
        if reports.len() >= REPORTS_IN_FLIGHT {
            reports.join_next().await;
        }
        match node.send_then_report(dest.clone(), text).await {
            Ok(report) => {
                let out = out.clone();
                reports.spawn(async move { tell(report.await, &dest, &out) });
            }
            Err(e) => out.status(format!("not sent to {}: {e}", dest.label())),
        }
    }
    // Input ended (the user quit): the reports still due are told if they come while the CLI ends.
    while reports.join_next().await.is_some() {}
}

/// Prints what became of one sent message, if it needs saying.
fn tell(
    report: Result<crate::peer::SendReport, crate::peer::NodeError>,
    dest: &Destination,
    out: &Out,
) {
    match report {
        Ok(report) => {
            for f in &report.failed {
                out.status(format!("not delivered to {}: {}", f.peer, f.error));
            }
            for p in &report.held {
                out.status(format!(
                    "{p} is offline; the tracker holds the message until {p} is back"
                ));
            }
            for q in &report.queued {
                out.status(format!(
                    "{} cannot be reached now ({}); the message waits in your outbox and is retried",
                    q.peer, q.error
                ));
            }
            if report.delivered.is_empty()
                && report.failed.is_empty()
                && report.held.is_empty()
                && report.queued.is_empty()
            {
                out.status(format!(
                    "nobody else is in {} yet; the message is in your history",
                    dest.label()
                ));
            }
        }
        Err(e) => out.status(format!("not sent to {}: {e}", dest.label())),
    }
}

/// Carries out one command; false means quit.
async fn handle(
    web: &Web,
    cmd: Command,
    current: &mut Option<ChannelName>,
    send: &mpsc::Sender<(Destination, String)>,
    out: &Out,
) -> bool {
    let node = web.node();
    match cmd {
        Command::Nothing => {}
        Command::Quit => return false,
        Command::Help => HELP.iter().for_each(|l| out.status(l)),
        Command::Web => {
            out.status(format!("web chat: {}", web.chat_url()));
            out.status(web_link_note(web));
        }
        Command::Join(c) => match node.join(&c).await {
            Ok(n) => {
                out.status(format!(
                    "joined #{c} ({n} online); you are now talking in #{c}"
                ));
                *current = Some(c);
            }
            Err(e) => out.status(format!("cannot join #{c}: {e}")),
        },
        Command::Say(text) => match current {
            Some(c) => {
                let _ = send.send((Destination::Channel(c.clone()), text)).await;
            }
            None => out.status(
                "no current channel: type #name to join one, or @peer text for a direct message",
            ),
        },
        Command::Direct(peer, text) => {
            let _ = send.send((Destination::Direct(peer), text)).await;
        }
        Command::Leave(c) => match node.leave(&c).await {
            Ok(()) => {
                if current.as_ref() == Some(&c) {
                    *current = node.joined().into_iter().next();
                }
                let now = current
                    .as_ref()
                    .map(|c| format!("; you are now talking in #{c}"))
                    .unwrap_or_default();
                out.status(format!("left #{c}{now}"));
            }
            Err(e) => out.status(format!("cannot leave #{c}: {e}")),
        },
        Command::Peers(channel) => match node.peers(channel.as_ref()).await {
            Ok(peers) => {
                let names: Vec<String> = peers
                    .iter()
                    .map(|p| match &p.away {
                        Some(a) => format!("{} (away: {a})", p.name),
                        None if p.status == crate::proto::PeerStatus::Away => {
                            format!("{} (away)", p.name)
                        }
                        None => p.name.to_string(),
                    })
                    .collect();
                let scope = channel
                    .map(|c| format!("in #{c}"))
                    .unwrap_or_else(|| "online".into());
                out.status(format!("{scope} ({}): {}", names.len(), names.join(", ")));
            }
            Err(e) => out.status(format!("cannot list peers: {e}")),
        },
        Command::Whois(p) => {
            let w = node.whois(&p).await;
            let vouched = w.vouched.as_deref().unwrap_or("none");
            out.status(match &w.pinned {
                Some((fp, since)) if Some(fp.as_str()) == w.vouched.as_deref() || w.vouched.is_none() => format!(
                    "{p}: key {fp}, pinned since {}; compare it with {p} out of band",
                    crate::proto::utc_minute(*since)
                ),
                Some((fp, since)) => format!(
                    "{p}: key {fp}, pinned since {}; but the tracker now vouches for {vouched}: compare with {p} out of band, then /forget-key {p} if the new one is right",
                    crate::proto::utc_minute(*since)
                ),
                None => format!(
                    "{p}: not pinned yet (you have not talked); the tracker vouches for key {vouched}"
                ),
            });
        }
        Command::ForgetKey(p) => match node.forget_key(&p).await {
            Ok(true) => out.status(format!(
                "forgot {p}'s pinned key; the next key the tracker vouches for is pinned"
            )),
            Ok(false) => out.status(format!("no key was pinned for {p}")),
            Err(e) => out.status(format!("cannot forget {p}'s key: {e}")),
        },
        Command::Channels => match node.channels().await {
            Ok(list) if list.is_empty() => out.status("no channels yet; type #name to create one"),
            Ok(list) => {
                let items: Vec<String> = list
                    .iter()
                    .map(|c| match c.mode {
                        crate::proto::ChannelMode::Open => format!("#{} ({})", c.name, c.members),
                        m => format!("#{} ({}, {})", c.name, c.members, m.as_str()),
                    })
                    .collect();
                out.status(format!("channels: {}", items.join(", ")));
            }
            Err(e) => out.status(format!("cannot list channels: {e}")),
        },
        Command::History(conv, n) => {
            let Some(conv) = conv.or_else(|| current.clone().map(Destination::Channel)) else {
                out.status("no current channel: write /history #channel or /history @peer");
                return true;
            };
            let messages = node.history(&conv, n);
            if messages.is_empty() {
                out.status(format!("no messages in {} yet", conv.label()));
            }
            for m in messages {
                out.status(format!("{} {}", clock(m.ts), m.cli_line(node.name())));
            }
            // Shown: read, for the page too.
            if let Err(e) = node.mark_read(&conv).await {
                tracing::warn!("cannot keep the read marker: {e}");
            }
        }
        Command::Search(words, scope) => {
            match node
                .search(
                    &words,
                    scope.as_ref(),
                    crate::peer::search::DEFAULT_SEARCH_RESULTS,
                )
                .await
            {
                Ok(hits) => {
                    let place = scope
                        .map(|s| format!(" in {}", s.label()))
                        .unwrap_or_default();
                    out.status(format!(
                        "search \"{words}\"{place}: {} result(s), newest first",
                        hits.len()
                    ));
                    for h in hits {
                        out.status(format!(
                            "{} {}",
                            date_time(h.message.ts),
                            h.message.cli_line(node.name())
                        ));
                    }
                }
                Err(e) => out.status(format!("cannot search: {e}")),
            }
        }
        Command::Unread => match node.unread().await {
            Ok(list) if list.is_empty() => out.status("nothing unread"),
            Ok(list) => {
                let items: Vec<String> = list.iter().map(|(w, n)| format!("{w} {n}")).collect();
                out.status(format!("unread: {}", items.join(", ")));
            }
            Err(e) => out.status(format!("cannot count unread messages: {e}")),
        },
        access_or_presence => access::handle(node, access_or_presence, current, out).await,
    }
    true
}

/// What the CLI says under a printed web chat link.
pub fn web_link_note(web: &Web) -> String {
    format!(
        "the link logs a browser in within {}; /web prints a fresh one",
        crate::web::login::spoken(web.login().ttl())
    )
}

/// `HH:MM:SS` (UTC) of a Unix-ms timestamp.
fn clock(ts_ms: u64) -> String {
    let s = ts_ms / 1000;
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

/// `YYYY-MM-DD HH:MM` (UTC) of a Unix-ms timestamp.
fn date_time(ts_ms: u64) -> String {
    crate::proto::utc_date_time(ts_ms)
}

/// Reads lines from a pipe.
fn start_pipe_reader(tx: mpsc::Sender<Typed>) {
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(Typed { line, next: None }).await.is_err() {
                break;
            }
        }
    });
}

/// The lines of what the editor returned: one line as typed, or each line of a multi-line paste (CR LF or LF).
fn pasted_lines(typed: &str) -> Vec<String> {
    if !typed.contains('\n') {
        return vec![typed.to_string()];
    }
    typed
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Runs rustyline on its own thread. It prompts again only once the previous line is handled, so a `/quit` never
/// leaves the terminal in raw mode and a `#join` shows in the next prompt.
fn start_editor(tx: mpsc::Sender<Typed>, prompt: Arc<Mutex<String>>) -> anyhow::Result<Out> {
    let mut editor = rustyline::DefaultEditor::new()?;
    let printer = editor.create_external_printer()?;
    std::thread::Builder::new()
        .name("readline".into())
        .spawn(move || {
            loop {
                let p = lock(&prompt).clone();
                let typed = match editor.readline(&p) {
                    Ok(typed) => typed,
                    // Ctrl-C and Ctrl-D both quit, like /quit.
                    Err(_) => break,
                };
                // A paste of several lines arrives as one string (bracketed paste): each line is its own
                // command, as it would be on a pipe.
                for line in pasted_lines(&typed) {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    let (next, handled) = oneshot::channel();
                    if tx
                        .blocking_send(Typed {
                            line,
                            next: Some(next),
                        })
                        .is_err()
                        || handled.blocking_recv().is_err()
                    {
                        return;
                    }
                }
            }
        })?;
    Ok(Out::new(Some(Box::new(printer))))
}

#[cfg(test)]
mod tests {
    use super::pasted_lines;

    #[test]
    fn search_results_carry_a_utc_date() {
        assert_eq!(super::date_time(0), "1970-01-01 00:00");
        assert_eq!(super::date_time(1_795_767_000_000), "2026-11-27 08:10");
        assert_eq!(super::date_time(951_782_400_000), "2000-02-29 00:00");
    }

    #[test]
    fn a_multi_line_paste_becomes_one_command_per_line() {
        assert_eq!(pasted_lines("hello"), ["hello"]);
        assert_eq!(pasted_lines(""), [""]);
        assert_eq!(
            pasted_lines("#general\r\nHello!\n\n@bob hi\n"),
            ["#general", "Hello!", "@bob hi"]
        );
    }
}
