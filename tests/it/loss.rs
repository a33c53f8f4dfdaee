//! Issue 14, "Done when" 3, on the namespaced LAN (tests/it/common/netlan.rs): with 5 % of the packets on one
//! host's link dropped both ways (nftables `numgen random mod 100 < 5 drop`), 1,000 channel messages typed there
//! reach every other member once each, in the order they were typed. Sessions are QUIC: a lost packet is sent
//! again by the transport, and the outbox keeps the order per recipient. The time it took is printed
//! (`--nocapture`).

use crate::common;

use std::time::{Duration, Instant};

use common::netlan::Lan;
use common::*;

/// Messages alice types.
const COUNT: usize = 1000;
/// Packets dropped on alice's link, in each direction, in percent.
const LOSS: u32 = 5;
/// Longest the whole burst may take to arrive everywhere.
const DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn with_five_percent_loss_on_one_link_a_thousand_channel_messages_reach_every_member_once_in_order()
{
    let Some(lan) = Lan::new(4) else { return };
    let tracker = lan.host(0).tracker(&[]);
    // No rate limit: the test types a thousand lines at once, a flood by design; the limits are tested elsewhere.
    let peer = |i: usize, name: &str| {
        lan.host(i).peer(
            name,
            Some(tracker.addr),
            &["--join", "general", "--rate-limit", "0"],
        )
    };
    let mut alice = peer(1, "alice");
    let bob = peer(2, "bob");
    let carol = peer(3, "carol");
    for p in [&alice, &bob, &carol] {
        joined(p, "general");
    }
    // Everyone is in the channel before the burst (alice's fan-out list comes from the tracker).
    alice.type_line("warm-up");
    for p in [&bob, &carol] {
        p.out.wait_line("[#general] alice: warm-up");
    }
    lan.host(1).loss(LOSS);

    let t0 = Instant::now();
    for i in 0..COUNT {
        alice.type_line(&format!("lossy {i:04}"));
    }
    let last = format!("[#general] alice: lossy {:04}", COUNT - 1);
    for p in [&bob, &carol] {
        p.out
            .wait_for(&format!("{}: the last message", p.name), DEADLINE, |l| {
                l == last
            });
    }
    let took = t0.elapsed();
    lan.host(1).loss(0);

    for p in [&bob, &carol] {
        let got: Vec<String> = p
            .out
            .all()
            .into_iter()
            .filter(|l| l.starts_with("[#general] alice: lossy "))
            .collect();
        let want: Vec<String> = (0..COUNT)
            .map(|i| format!("[#general] alice: lossy {i:04}"))
            .collect();
        assert_eq!(got.len(), COUNT, "{}: every message once", p.name);
        assert_eq!(got, want, "{}: in the order typed", p.name);
    }
    eprintln!(
        "{COUNT} channel messages with {LOSS} % loss on alice's link reached bob and carol once each, in order, in {:.2} s",
        took.as_secs_f64()
    );
}
