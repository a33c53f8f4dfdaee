//! hchat's integration tests, one binary (linking one test binary instead of fifteen saves most of the rebuild time
//! after a change). Each module is one behaviour, told as what users do and what they see. `common` starts real
//! `hchat` processes on port 0 where a process is the point (the CLI, exit codes, kill -9, restarts, the browser),
//! nodes in this process where only a request's answer is (`common::in_process`), and waits on conditions with
//! deadlines. The fuzz test is the other binary
//! (`tests/fuzz.rs`): it keeps both cores busy for minutes and would skew the timing-sensitive tests here.

mod common;

mod access;
mod attack_descriptors;
mod attack_environment;
mod attack_message_identity;
mod attack_puppets;
mod attack_quotas;
mod attack_terminal;
mod bad_input;
mod bench_smoke;
mod browser;
mod catch_up_sessions;
mod cli_usage;
mod discovery;
mod durability;
mod hardening;
mod identity;
mod ipv6;
mod joining;
mod limits;
mod link;
mod loss;
mod messaging;
mod missed;
mod netlan;
mod pinned_mail;
mod presence_pushes;
mod privacy;
mod quick_start;
mod receipts;
mod relay_lan;
mod relayed_sessions;
mod roaming;
mod sealed_mail;
mod search;
mod sender_order;
mod sessions_peer;
mod sessions_tracker;
mod store_and_forward;
mod tracker_restart;
mod typed_ahead;
mod unread;
mod web_api;
mod web_login;
