//! The CLI's channel-access and presence commands (`/mode`, `/invite`, `/remove`, `/ban`, `/unban`, `/visitor`,
//! `/member`, `/info`, `/away`, `/back`, `/invisible`): each calls the node and answers in one `* ` line.

use super::Out;
use super::command::Command;
use crate::peer::Node;
use crate::proto::{ChannelAction, ChannelInfo, ChannelName, GivenRole, PeerStatus};

/// The channel a command is about: the one named, or the current one.
fn target(
    named: Option<ChannelName>,
    current: &Option<ChannelName>,
    out: &Out,
) -> Option<ChannelName> {
    let c = named.or_else(|| current.clone());
    if c.is_none() {
        out.status("no current channel: name one, e.g. /info #general");
    }
    c
}

/// One line describing a channel.
pub(super) fn describe(info: &ChannelInfo) -> String {
    let members: Vec<String> = info
        .members
        .iter()
        .map(|m| {
            let mut s = format!("{} ({}, {}", m.name, m.role.as_str(), m.status.as_str());
            if let Some(a) = &m.away {
                s.push_str(&format!(": {a}"));
            }
            s.push(')');
            s
        })
        .collect();
    let mut line = format!(
        "#{}: owner {}, mode {}; members: {}",
        info.channel,
        info.owner.as_ref().map_or("nobody", |o| o.as_str()),
        info.mode.as_str(),
        members.join(", ")
    );
    if !info.invited.is_empty() {
        let names: Vec<&str> = info.invited.iter().map(|n| n.as_str()).collect();
        line.push_str(&format!("; invited: {}", names.join(", ")));
    }
    if !info.banned.is_empty() {
        let names: Vec<&str> = info.banned.iter().map(|n| n.as_str()).collect();
        line.push_str(&format!("; banned: {}", names.join(", ")));
    }
    line
}

/// Carries out an access or presence command (any other command is not handled here).
pub(super) async fn handle(
    node: &Node,
    cmd: Command,
    current: &mut Option<ChannelName>,
    out: &Out,
) {
    match cmd {
        Command::JoinWithKey(c, key) => match node.join_with_key(&c, Some(&key)).await {
            Ok(n) => {
                out.status(format!(
                    "joined #{c} ({n} online); you are now talking in #{c}"
                ));
                *current = Some(c);
            }
            Err(e) => out.status(format!("cannot join #{c}: {e}")),
        },
        Command::Info(c) => {
            let Some(c) = target(c, current, out) else {
                return;
            };
            match node.channel_info(&c).await {
                Ok(info) => out.status(describe(&info)),
                Err(e) => out.status(format!("cannot show #{c}: {e}")),
            }
        }
        Command::Mode(c, mode, key) => {
            let Some(c) = target(c, current, out) else {
                return;
            };
            match node.set_mode(&c, mode, key).await {
                Ok(_) => out.status(format!(
                    "#{c} is now {}",
                    match mode {
                        crate::proto::ChannelMode::Open => "open: anyone not banned may join",
                        crate::proto::ChannelMode::Invite => "invite-only: /invite lets someone in",
                        crate::proto::ChannelMode::Key =>
                            "protected by the key you gave: join with #name <key>",
                    }
                )),
                Err(e) => out.status(format!("cannot set the mode of #{c}: {e}")),
            }
        }
        Command::Act(action, c, peer) => {
            let Some(c) = target(c, current, out) else {
                return;
            };
            match node.channel_act(action, &c, &peer).await {
                Ok(_) => out.status(match action {
                    ChannelAction::Invite => format!("invited {peer} to #{c}; they join with #{c}"),
                    ChannelAction::Remove => format!("removed {peer} from #{c}"),
                    ChannelAction::Ban => {
                        format!("banned {peer} from #{c}; /unban #{c} {peer} lets them back")
                    }
                    ChannelAction::Unban => format!("{peer} may join #{c} again"),
                }),
                Err(e) => out.status(format!("cannot {} {peer} in #{c}: {e}", action.as_str())),
            }
        }
        Command::Role(role, c, peer) => {
            let Some(c) = target(c, current, out) else {
                return;
            };
            match node.set_role(&c, &peer, role).await {
                Ok(_) => out.status(match role {
                    GivenRole::Visitor => {
                        format!("{peer} is now a visitor in #{c}: reads, cannot post")
                    }
                    GivenRole::Member => format!("{peer} is now a member of #{c} and may post"),
                }),
                Err(e) => out.status(format!("cannot change the role of {peer} in #{c}: {e}")),
            }
        }
        Command::Away(msg) => match node.set_presence(PeerStatus::Away, msg.clone()).await {
            Ok(()) => out.status(match msg {
                Some(m) => format!("you are away: {m}; /back when you return"),
                None => "you are away; /back when you return".to_string(),
            }),
            Err(e) => out.status(format!("cannot set away: {e}")),
        },
        Command::Back => match node.set_presence(PeerStatus::Online, None).await {
            Ok(()) => out.status("you are online"),
            Err(e) => out.status(format!("cannot set online: {e}")),
        },
        Command::Invisible => match node.set_presence(PeerStatus::Invisible, None).await {
            Ok(()) => out.status(
                "you are invisible: shown as offline, still receiving; /back to show again",
            ),
            Err(e) => out.status(format!("cannot set invisible: {e}")),
        },
        other => tracing::debug!("not an access command: {other:?}"),
    }
}
