//! Parsing one input line of the interactive CLI into a [`Command`]. Pure, so every rule of the table of input
//! lines (docs/PROTOCOL.md, "The interactive CLI") is unit-tested; a line that is not right becomes a
//! [`ParseError`] telling the user how to write it.

use crate::proto::{
    ChannelAction, ChannelMode, ChannelName, Destination, GivenRole, MAX_AWAY_LEN, PeerName,
    parse_conversation,
};

/// Default number of messages `/history` shows.
pub(crate) const DEFAULT_HISTORY: usize = 20;
/// Most messages one `/history` shows.
pub(crate) const MAX_HISTORY: usize = 1000;

/// What a line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// `#name`: join and make current.
    Join(ChannelName),
    /// `#name key`: join a channel that has a key.
    JoinWithKey(ChannelName, String),
    /// `/mode [#c] open|invite|key <key>` (no channel: the current one).
    Mode(Option<ChannelName>, ChannelMode, Option<String>),
    /// `/invite`, `/remove`, `/ban`, `/unban [#c] peer`.
    Act(ChannelAction, Option<ChannelName>, PeerName),
    /// `/visitor [#c] peer`, `/member [#c] peer`.
    Role(GivenRole, Option<ChannelName>, PeerName),
    /// `/info [#c]`: owner, mode, members with roles and status.
    Info(Option<ChannelName>),
    /// `/away [message]`.
    Away(Option<String>),
    /// `/back`: online again.
    Back,
    /// `/invisible`: shown as offline, still receiving.
    Invisible,
    /// `/web`: a fresh link that logs a browser in to the web chat.
    Web,
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
    /// `/whois peer`: the key pinned for a peer (and since when), and the one the tracker vouches for.
    Whois(PeerName),
    /// `/forget-key peer`: forget the key pinned for a peer, to take the one the tracker vouches for now.
    ForgetKey(PeerName),
    /// `/unread`: the conversations with unread messages, and how many.
    Unread,
    /// `/search words [#channel|@peer]`.
    Search(String, Option<Destination>),
    Quit,
    Help,
    /// An empty line.
    Nothing,
}

/// A line that cannot be carried out, with how to write it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ParseError(pub String);

fn err<T>(s: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(s.into()))
}

/// The `/help` text, one line per command.
pub(crate) const HELP: &[&str] = &[
    "#name                         join channel name (created if new, then you own it) and make it current",
    "#name key                     join a channel protected by a key",
    "text                          send to the current channel",
    "@peer text                    direct message to peer",
    "/peers [#channel]             who is online (in the channel)",
    "/channels                     channels known to the tracker, with member counts",
    "/history [#channel|@peer] [N] the last N messages (default 20)",
    "/leave #name                  leave a channel",
    "/unread                       conversations with unread messages (/history marks one read)",
    "/search words [#channel|@peer] messages with all the words, newest first, with time and conversation",
    "/info [#channel]              owner, mode, members with roles and status",
    "/mode [#channel] open|invite|key <key>   how your channel admits newcomers (owner only)",
    "/invite [#channel] peer       let peer join your invite-only or key channel (owner only)",
    "/remove [#channel] peer       take peer out of your channel (owner only)",
    "/ban [#channel] peer          remove peer and keep it out; /unban [#channel] peer lets it back",
    "/visitor [#channel] peer      peer may read but not post; /member [#channel] peer undoes it",
    "/away [message]               show others you are away (with a message)",
    "/back                         online again",
    "/invisible                    shown as offline to others; you still receive",
    "/web                          a fresh link that logs a browser in to your web chat",
    "/whois peer                   peer's key fingerprint, to compare with them out of band",
    "/forget-key peer              forget peer's pinned key (only once you have checked the new one)",
    "/quit                         deregister and exit (EOF does the same)",
    "/help                         this list",
];

/// Parses one line.
pub(crate) fn parse(line: &str) -> Result<Command, ParseError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Ok(Command::Nothing);
    }
    if let Some(rest) = trimmed.strip_prefix('#') {
        let words: Vec<&str> = rest.split_whitespace().collect();
        if words.len() > 2 || rest.starts_with(char::is_whitespace) {
            return err(
                "a channel line is #name, or #name key for a channel with a key; join first, then type your text on its own line",
            );
        }
        let name = ChannelName::new(words.first().copied().unwrap_or(""))
            .map_err(|e| ParseError(format!("#{rest}: {e}")))?;
        return Ok(match words.get(1) {
            Some(key) => Command::JoinWithKey(name, key.to_string()),
            None => Command::Join(name),
        });
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
            ("info", []) => Ok(Command::Info(None)),
            ("info", [c]) if c.starts_with('#') => channel(c).map(|c| Command::Info(Some(c))),
            ("info", _) => err("usage: /info or /info #channel"),
            ("mode", args) => mode(args),
            ("invite", args) => act(ChannelAction::Invite, "invite", args),
            ("remove", args) => act(ChannelAction::Remove, "remove", args),
            ("ban", args) => act(ChannelAction::Ban, "ban", args),
            ("unban", args) => act(ChannelAction::Unban, "unban", args),
            ("visitor", args) => role(GivenRole::Visitor, "visitor", args),
            ("member", args) => role(GivenRole::Member, "member", args),
            ("away", []) => Ok(Command::Away(None)),
            ("away", _) => {
                let msg = rest["away".len()..].trim();
                if msg.len() > MAX_AWAY_LEN {
                    return err(format!(
                        "an away message is at most {MAX_AWAY_LEN} bytes; shorten it"
                    ));
                }
                Ok(Command::Away(Some(msg.to_string())))
            }
            ("back", []) => Ok(Command::Back),
            ("back", _) => err("usage: /back (it takes no arguments)"),
            ("invisible", []) => Ok(Command::Invisible),
            ("invisible", _) => err("usage: /invisible (it takes no arguments); /back undoes it"),
            ("whois", [p]) => peer(p, "usage: /whois peer").map(Command::Whois),
            ("whois", _) => err("usage: /whois peer"),
            ("forget-key", [p]) => peer(p, "usage: /forget-key peer").map(Command::ForgetKey),
            ("forget-key", _) => err("usage: /forget-key peer"),
            ("search", []) => err("usage: /search words [#channel|@peer]"),
            ("search", words) => search(words),
            ("unread", []) => Ok(Command::Unread),
            ("unread", _) => err("usage: /unread (it takes no arguments)"),
            ("web", []) => Ok(Command::Web),
            ("web", _) => err("usage: /web (it takes no arguments)"),
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

/// A peer's name, with or without its `@`.
fn peer(p: &str, usage: &str) -> Result<PeerName, ParseError> {
    let p = p.strip_prefix('@').unwrap_or(p);
    PeerName::new(p).map_err(|e| ParseError(format!("{p}: {e}; {usage}")))
}

/// `[#channel] peer`: the channel (or none: the current one) and the peer.
fn channel_and_peer(
    args: &[&str],
    usage: &str,
) -> Result<(Option<ChannelName>, PeerName), ParseError> {
    let (c, p) = match args {
        [p] if !p.starts_with('#') => (None, *p),
        [c, p] if c.starts_with('#') => (Some(channel(c)?), *p),
        _ => return err(usage),
    };
    let p = p.strip_prefix('@').unwrap_or(p);
    let peer = PeerName::new(p).map_err(|e| ParseError(format!("{p}: {e}; {usage}")))?;
    Ok((c, peer))
}

fn act(action: ChannelAction, cmd: &str, args: &[&str]) -> Result<Command, ParseError> {
    let (c, p) = channel_and_peer(args, &format!("usage: /{cmd} #channel peer"))?;
    Ok(Command::Act(action, c, p))
}

fn role(role: GivenRole, cmd: &str, args: &[&str]) -> Result<Command, ParseError> {
    let (c, p) = channel_and_peer(args, &format!("usage: /{cmd} #channel peer"))?;
    Ok(Command::Role(role, c, p))
}

fn mode(args: &[&str]) -> Result<Command, ParseError> {
    let usage = "usage: /mode #channel open, /mode #channel invite, or /mode #channel key <key>";
    let (c, rest) = match args.split_first() {
        Some((c, rest)) if c.starts_with('#') => (Some(channel(c)?), rest),
        _ => (None, args),
    };
    match rest {
        ["key"] => err("mode key needs the key: /mode #channel key <key>"),
        ["key", _, _, ..] => err("a key is one word, without spaces: /mode #channel key <key>"),
        ["key", k] => Ok(Command::Mode(c, ChannelMode::Key, Some(k.to_string()))),
        [m] => match ChannelMode::parse(m) {
            Some(ChannelMode::Key) | None => err(usage),
            Some(m) => Ok(Command::Mode(c, m, None)),
        },
        _ => err(usage),
    }
}

fn search(words: &[&str]) -> Result<Command, ParseError> {
    let (scope, words) = match words.split_last() {
        Some((last, rest))
            if (last.starts_with('#') || last.starts_with('@')) && !rest.is_empty() =>
        {
            let conv = parse_conversation(last).map_err(|e| ParseError(format!("{last}: {e}")))?;
            (Some(conv), rest)
        }
        _ => (None, words),
    };
    Ok(Command::Search(words.join(" "), scope))
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
            .filter(|n| (1..=MAX_HISTORY).contains(n))
            .ok_or_else(|| {
                ParseError(format!(
                    "{n} is not a count from 1 to {MAX_HISTORY}; {usage}"
                ))
            })?,
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
        assert_eq!(parse("/web"), Ok(Command::Web));
        assert_eq!(parse("/unread"), Ok(Command::Unread));
        assert_eq!(
            parse("/search lunch at noon #general"),
            Ok(Command::Search(
                "lunch at noon".into(),
                Some(Destination::Channel(ch("general")))
            ))
        );
        assert_eq!(
            parse("/search #general"),
            Ok(Command::Search("#general".into(), None))
        );
        assert_eq!(parse("   "), Ok(Command::Nothing));
    }

    #[test]
    fn the_access_commands_parse() {
        let bob = PeerName::new("bob").unwrap();
        assert_eq!(
            parse("#secret pw"),
            Ok(Command::JoinWithKey(ch("secret"), "pw".into()))
        );
        assert_eq!(
            parse("/mode #c key pw"),
            Ok(Command::Mode(
                Some(ch("c")),
                ChannelMode::Key,
                Some("pw".into())
            ))
        );
        assert_eq!(
            parse("/mode invite"),
            Ok(Command::Mode(None, ChannelMode::Invite, None))
        );
        assert_eq!(
            parse("/invite #c bob"),
            Ok(Command::Act(
                ChannelAction::Invite,
                Some(ch("c")),
                bob.clone()
            ))
        );
        assert_eq!(
            parse("/unban @bob"),
            Ok(Command::Act(ChannelAction::Unban, None, bob.clone()))
        );
        assert_eq!(
            parse("/visitor #c bob"),
            Ok(Command::Role(GivenRole::Visitor, Some(ch("c")), bob))
        );
        assert_eq!(parse("/info"), Ok(Command::Info(None)));
        assert_eq!(
            parse("/away  out for lunch "),
            Ok(Command::Away(Some("out for lunch".into())))
        );
        assert_eq!(parse("/away"), Ok(Command::Away(None)));
        assert_eq!(parse("/back"), Ok(Command::Back));
        assert_eq!(parse("/invisible"), Ok(Command::Invisible));
        let bob = PeerName::new("bob").unwrap();
        assert_eq!(parse("/whois bob"), Ok(Command::Whois(bob.clone())));
        assert_eq!(parse("/whois @bob"), Ok(Command::Whois(bob.clone())));
        assert_eq!(parse("/forget-key bob"), Ok(Command::ForgetKey(bob)));
        assert!(parse("/whois").is_err());
        assert!(parse("/forget-key a b").is_err());
    }

    #[test]
    fn mistakes_say_how_to_do_it_right() {
        for (line, hint) in [
            ("/frobnicate", "/help"),
            ("@bob", "@bob followed by"),
            ("#gen eral here", "join first"),
            ("/mode #c key", "needs the key"),
            ("/mode #c key two words", "one word"),
            ("/mode #c shut", "/mode #channel open"),
            ("/invite", "/invite #channel peer"),
            ("/ban #c", "/ban #channel peer"),
            ("/visitor #c b c", "/visitor #channel peer"),
            ("/back now", "no arguments"),
            ("/web please", "no arguments"),
            ("/info bob", "/info #channel"),
            ("/leave", "/leave #channel"),
            ("/history #g zero", "count"),
            ("/peers bob", "/peers #channel"),
            ("/search", "/search words"),
            ("#", "empty"),
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.0.contains(hint), "{line:?} gave {e:?}");
        }
    }
}
