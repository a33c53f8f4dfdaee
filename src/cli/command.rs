//! Parsing one input line of the interactive CLI into a [`Command`]. Pure, so every rule of CONTRACT.md's table
//! is unit-tested; a line that is not right becomes a [`ParseError`] telling the user how to write it.

use crate::peer::routes::parse_conversation;
use crate::proto::{ChannelName, Destination, PeerName};

/// Default number of messages `/history` shows.
pub const DEFAULT_HISTORY: usize = 20;

/// What a line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `#name`: join and make current.
    Join(ChannelName),
    /// Plain text: to the current channel.
    Say(String),
    /// `@bob text`.
    Direct(PeerName, String),
    /// `/peers [#channel]`.
    Peers(Option<ChannelName>),
    /// `/channels`.
    Channels,
    /// `/history [#channel|@peer] [N]`.
    History(Option<Destination>, usize),
    /// `/leave #name`.
    Leave(ChannelName),
    Quit,
    Help,
    /// An empty line.
    Nothing,
}

/// A line that cannot be carried out, with how to write it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn err<T>(s: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(s.into()))
}

/// The `/help` text, one line per command.
pub const HELP: &[&str] = &[
    "#name                         join channel name (created if new) and make it current",
    "text                          send to the current channel",
    "@peer text                    direct message to peer",
    "/peers [#channel]             who is online (in the channel)",
    "/channels                     channels known to the tracker, with member counts",
    "/history [#channel|@peer] [N] the last N messages (default 20)",
    "/leave #name                  leave a channel",
    "/quit                         deregister and exit (EOF does the same)",
    "/help                         this list",
];

/// Parses one line.
pub fn parse(line: &str) -> Result<Command, ParseError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Ok(Command::Nothing);
    }
    if let Some(rest) = trimmed.strip_prefix('#') {
        if rest.contains(char::is_whitespace) {
            return err(
                "a channel line is just #name; join first, then type your text on its own line",
            );
        }
        return ChannelName::new(rest)
            .map(Command::Join)
            .map_err(|e| ParseError(format!("#{rest}: {e}")));
    }
    if let Some(rest) = trimmed.strip_prefix('@') {
        let (name, text) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let peer = PeerName::new(name).map_err(|e| ParseError(format!("@{name}: {e}")))?;
        if text.trim().is_empty() {
            return err(format!(
                "nothing to send: write @{peer} followed by your message"
            ));
        }
        return Ok(Command::Direct(peer, text.trim().to_string()));
    }
    if let Some(rest) = trimmed.strip_prefix('/') {
        let mut words = rest.split_whitespace();
        let cmd = words.next().unwrap_or("");
        let args: Vec<&str> = words.collect();
        return match (cmd, args.as_slice()) {
            ("peers", []) => Ok(Command::Peers(None)),
            ("peers", [c]) if c.starts_with('#') => channel(c).map(|c| Command::Peers(Some(c))),
            ("peers", _) => err("usage: /peers or /peers #channel"),
            ("channels", []) => Ok(Command::Channels),
            ("channels", _) => err("usage: /channels (it takes no arguments)"),
            ("history", args) => history(args),
            ("leave", [c]) => channel(c).map(Command::Leave),
            ("leave", _) => err("usage: /leave #channel"),
            ("quit" | "exit", []) => Ok(Command::Quit),
            ("help", _) => Ok(Command::Help),
            _ => err(format!("unknown command /{cmd}; type /help for the list")),
        };
    }
    // Plain text keeps its inner spacing; only the line ending goes.
    Ok(Command::Say(line.trim().to_string()))
}

fn channel(s: &str) -> Result<ChannelName, ParseError> {
    ChannelName::parse_user(s).map_err(|e| ParseError(format!("{s}: {e}")))
}

fn history(args: &[&str]) -> Result<Command, ParseError> {
    let usage = "usage: /history [#channel|@peer] [N]";
    let (conv, n) = match args {
        [] => (None, None),
        [x] if x.parse::<usize>().is_ok() => (None, Some(*x)),
        [c] => (Some(*c), None),
        [c, n] => (Some(*c), Some(*n)),
        _ => return err(usage),
    };
    let conv = match conv {
        Some(c) if c.starts_with('#') || c.starts_with('@') => {
            Some(parse_conversation(c).map_err(|e| ParseError(format!("{c}: {e}")))?)
        }
        Some(_) => return err(usage),
        None => None,
    };
    let n = match n {
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ParseError(format!("{n} is not a count from 1 to 1000; {usage}")))?,
        None => DEFAULT_HISTORY,
    };
    Ok(Command::History(conv, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(s: &str) -> ChannelName {
        ChannelName::new(s).unwrap()
    }

    #[test]
    fn the_contract_table_parses() {
        assert_eq!(parse("#general"), Ok(Command::Join(ch("general"))));
        assert_eq!(parse("Hello!"), Ok(Command::Say("Hello!".into())));
        assert_eq!(
            parse("@bob some text"),
            Ok(Command::Direct(
                PeerName::new("bob").unwrap(),
                "some text".into()
            ))
        );
        assert_eq!(parse("/peers"), Ok(Command::Peers(None)));
        assert_eq!(
            parse("/peers #general"),
            Ok(Command::Peers(Some(ch("general"))))
        );
        assert_eq!(parse("/channels"), Ok(Command::Channels));
        assert_eq!(parse("/history"), Ok(Command::History(None, 20)));
        assert_eq!(
            parse("/history #general 5"),
            Ok(Command::History(
                Some(Destination::Channel(ch("general"))),
                5
            ))
        );
        assert_eq!(
            parse("/history @bob"),
            Ok(Command::History(
                Some(Destination::Direct(PeerName::new("bob").unwrap())),
                20
            ))
        );
        assert_eq!(parse("/history 7"), Ok(Command::History(None, 7)));
        assert_eq!(parse("/leave #general"), Ok(Command::Leave(ch("general"))));
        assert_eq!(parse("/quit"), Ok(Command::Quit));
        assert_eq!(parse("/help"), Ok(Command::Help));
        assert_eq!(parse("   "), Ok(Command::Nothing));
    }

    #[test]
    fn mistakes_say_how_to_do_it_right() {
        for (line, hint) in [
            ("/frobnicate", "/help"),
            ("@bob", "@bob followed by"),
            ("#gen eral", "join first"),
            ("/leave", "/leave #channel"),
            ("/history #g zero", "count"),
            ("/peers bob", "/peers #channel"),
            ("#", "empty"),
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.0.contains(hint), "{line:?} gave {e:?}");
        }
    }
}
