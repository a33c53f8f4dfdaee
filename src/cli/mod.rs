//! The interactive CLI: a peer's stdin and stdout. On a terminal it uses rustyline, and incoming messages are
//! printed through its external printer so they never garble the line being typed; on a pipe it is plain line in,
//! line out, so scripts can drive it. Message lines are exactly CONTRACT.md's; everything else starts with `* `.

mod access;
pub mod command;

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::peer::Node;
use crate::peer::events::Event;
use crate::proto::{ChannelName, Destination};
use command::{Command, HELP, parse};

/// Messages typed but not yet handed to the courier, before the prompt waits.
const SEND_QUEUE: usize = 256;
/// How long `/quit` waits for messages already typed to go out.
const QUIT_DRAIN: Duration = Duration::from_secs(10);

/// Where the CLI's lines go.
#[derive(Clone)]
struct Out(Arc<Mutex<Option<Box<dyn rustyline::ExternalPrinter + Send>>>>);

impl Out {
    fn line(&self, s: impl Into<String>) {
        let s = s.into();
        match self.0.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            Some(p) => {
                let _ = p.print(format!("{s}\n"));
            }
            None => println!("{s}"),
        }
    }
    fn status(&self, s: impl AsRef<str>) {
        self.line(format!("* {}", s.as_ref()))
    }
}

/// One typed line, and (on a terminal) the signal that lets the editor prompt again once the line is handled.
struct Typed {
    line: String,
    next: Option<oneshot::Sender<()>>,
}

/// Runs the CLI for `node` until `/quit`, end of input or a termination signal, then deregisters the node.
pub async fn run(node: Node, mut current: Option<ChannelName>) -> anyhow::Result<()> {
    let prompt = Arc::new(Mutex::new(prompt_for(&current)));
    let (typed_tx, mut typed) = mpsc::channel::<Typed>(16);
    let out = if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        start_editor(typed_tx, prompt.clone())?
    } else {
        start_pipe_reader(typed_tx);
        Out(Arc::new(Mutex::new(None)))
    };
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
                    Ok(cmd) => handle(&node, cmd, &mut current, &send_tx, &out).await,
                    Err(e) => { out.status(e.to_string()); true }
                };
                *prompt.lock().unwrap_or_else(|p| p.into_inner()) = prompt_for(&current);
                if !keep_going { break }
                if let Some(next) = next { let _ = next.send(()); }
            }
            ev = events.recv() => match ev.as_deref().map(|s| &s.event) {
                Ok(event) => show(event, &me, &out),
                Err(broadcast::error::RecvError::Lagged(n)) => out.status(format!("{n} events were not shown (too many at once); /history has them")),
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = &mut stop => break,
        }
    }
    drop(send_tx);
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
        } => out.line(message.cli_line(me)),
        Event::Notice { text } => out.status(text.as_str()),
        _ => {}
    }
}

fn prompt_for(current: &Option<ChannelName>) -> String {
    match current {
        Some(c) => format!("#{c}> "),
        None => "> ".to_string(),
    }
}

/// Sends typed messages one after another, so they leave in the order they were typed, and reports failures.
async fn send_in_order(node: Node, mut rx: mpsc::Receiver<(Destination, String)>, out: Out) {
    while let Some((dest, text)) = rx.recv().await {
        match node.send(dest.clone(), text).await {
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
}

/// Carries out one command; false means quit.
async fn handle(
    node: &Node,
    cmd: Command,
    current: &mut Option<ChannelName>,
    send: &mpsc::Sender<(Destination, String)>,
    out: &Out,
) -> bool {
    match cmd {
        Command::Nothing => {}
        Command::Quit => return false,
        Command::Help => HELP.iter().for_each(|l| out.status(l)),
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
        }
        access_or_presence => access::handle(node, access_or_presence, current, out).await,
    }
    true
}

/// `HH:MM:SS` (UTC) of a Unix-ms timestamp.
fn clock(ts_ms: u64) -> String {
    let s = ts_ms / 1000;
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
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
                let p = prompt.lock().unwrap_or_else(|p| p.into_inner()).clone();
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
    Ok(Out(Arc::new(Mutex::new(Some(Box::new(printer))))))
}

#[cfg(test)]
mod tests {
    use super::pasted_lines;

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
