//! What checking a page of signed messages costs, one by one against all at once (issue 13: batch verification
//! where many arrive together: a mailbox page, a catch-up page, `POST /p2p/receive-batch`).
//!
//! ```text
//! cargo run --release --example verify_bench [-- RUNS]
//! ```
//! For pages of 1 to 500 messages from 5 senders, checks every signature with `verify_message` (strict, one at a
//! time, as before) and with `verify_messages` (one batch), RUNS times each (default 50), and prints the
//! median per message and the ratio.

use std::time::Instant;

use hchat::identity::{Identity, verify_message, verify_messages};
use hchat::proto::{ChannelName, ChatMessage, Destination, PeerName};

fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(50);
    let senders: Vec<(PeerName, Identity)> = (0..5)
        .map(|i| Ok((PeerName::new(format!("sender{i}"))?, Identity::ephemeral())))
        .collect::<anyhow::Result<_>>()?;
    let channel = ChannelName::new("general")?;
    println!("| messages | one by one, per message | batch, per message | batch ÷ one by one |");
    println!("| ---: | ---: | ---: | ---: |");
    for n in [1usize, 2, 4, 8, 16, 32, 64, 128, 500] {
        let msgs: Vec<(ChatMessage, hchat::identity::PublicKey)> = (0..n)
            .map(|i| {
                let (name, id) = &senders[i % senders.len()];
                let mut m = ChatMessage::new(
                    name.clone(),
                    Destination::Channel(channel.clone()),
                    format!("message {i} of a page, about as long as a chat line is"),
                )?;
                id.sign_message(&mut m);
                Ok((m, id.public_key()))
            })
            .collect::<anyhow::Result<_>>()?;
        let pairs: Vec<(&ChatMessage, hchat::identity::PublicKey)> =
            msgs.iter().map(|(m, k)| (m, *k)).collect();
        let mut single = Vec::with_capacity(runs);
        let mut batch = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            for (m, k) in &msgs {
                verify_message(m, k)?;
            }
            single.push(t.elapsed().as_secs_f64() * 1e6 / n as f64);
            let t = Instant::now();
            verify_messages(&pairs)?;
            batch.push(t.elapsed().as_secs_f64() * 1e6 / n as f64);
        }
        let (s, b) = (median(&mut single), median(&mut batch));
        println!("| {n} | {s:.1} µs | {b:.1} µs | ×{:.2} |", b / s);
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
