//! The fuzz targets in `fuzz/` (cargo-fuzz, one per parser of network input):
//! - every committed seed passes its target's checks, run in this process on the stable toolchain;
//! - every target is built and fuzzed for `HCHAT_FUZZ_SECONDS` (default 60) seconds, two at a time, and a finding
//!   fails the test (libFuzzer leaves the input in `fuzz/artifacts/<target>/`).
//!
//! The fuzz build uses `--sanitizer none`: hchat forbids `unsafe`, so AddressSanitizer has little to find, and
//! without it cargo-fuzz passes no nightly flag, so the stable toolchain builds the targets (libFuzzer's coverage
//! instrumentation is a stable codegen option); CI machines need not have nightly. It builds with `--dev` (the
//! fuzz package's dev profile is `opt-level = 1`): half the release build's time on the CI machine, since the
//! whole of hchat's dependencies are built again, instrumented, and fast enough for a minute per target to mean
//! something (see fuzz/Cargo.toml). Without cargo-fuzz the test fails under `CI=true`; elsewhere it says how
//! to install it and skips the runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Every target, as named in fuzz/Cargo.toml.
const TARGETS: [&str; 7] = [
    "names",
    "signatures",
    "messages",
    "tracker_answers",
    "tracker_api",
    "peer_api",
    "frames",
];
/// Targets fuzzed at once: one per core of the CI machine.
const AT_ONCE: usize = 2;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn entry(target: &str) -> fn(&[u8]) {
    match target {
        "names" => hchat::fuzzing::names,
        "signatures" => hchat::fuzzing::signatures,
        "messages" => hchat::fuzzing::messages,
        "tracker_answers" => hchat::fuzzing::tracker_answers,
        "tracker_api" => hchat::fuzzing::tracker_api,
        "peer_api" => hchat::fuzzing::peer_api,
        "frames" => hchat::fuzzing::frames,
        other => panic!("no entry point for {other}"),
    }
}

#[test]
fn every_target_is_declared_and_has_a_seed_corpus_that_passes_it() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for target in TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "{target} in fuzz/Cargo.toml"
        );
        let corpus = fuzz_dir().join("corpus").join(target);
        let seeds: Vec<PathBuf> = std::fs::read_dir(&corpus)
            .unwrap_or_else(|e| panic!("{}: {e}", corpus.display()))
            .map(|e| e.unwrap().path())
            .collect();
        assert!(!seeds.is_empty(), "{target} has seeds");
        let run = entry(target);
        for seed in seeds {
            run(&std::fs::read(&seed).unwrap());
        }
    }
}

/// How to run cargo-fuzz here, or why it cannot run.
fn cargo_fuzz() -> Result<Command, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let found = Command::new(&cargo)
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        return Err(
            "cargo-fuzz is not installed: `cargo install cargo-fuzz --locked` (or run .ci/run)"
                .into(),
        );
    }
    let mut cmd = Command::new(cargo);
    cmd.arg("fuzz").current_dir(fuzz_dir());
    Ok(cmd)
}

#[test]
fn every_target_is_fuzzed_without_a_finding() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let mut base = match cargo_fuzz() {
        Ok(cmd) => cmd,
        Err(why) if ci => panic!("{why} (CI=true: the fuzz runs cannot be skipped)"),
        Err(why) => {
            eprintln!("SKIPPED: the fuzz runs: {why}");
            return;
        }
    };
    let seconds: u64 = std::env::var("HCHAT_FUZZ_SECONDS")
        .ok()
        .map(|s| {
            s.parse()
                .expect("HCHAT_FUZZ_SECONDS is a number of seconds")
        })
        .unwrap_or(60);
    let started = Instant::now();
    let build = base
        .args(["build", "--dev", "--sanitizer", "none"])
        .output()
        .expect("cargo fuzz runs");
    assert!(
        build.status.success(),
        "cargo fuzz build failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let built = started.elapsed();
    eprintln!("fuzz targets built in {built:?}");

    let scratch = tempfile::tempdir().unwrap();
    for group in TARGETS.chunks(AT_ONCE) {
        let runs: Vec<_> = group
            .iter()
            .map(|target| {
                // New inputs go to a scratch folder; the committed seeds are read only.
                let found = scratch.path().join(target);
                std::fs::create_dir_all(&found).unwrap();
                let seeds = fuzz_dir().join("corpus").join(target);
                let child = cargo_fuzz()
                    .unwrap()
                    .args(["run", "--dev", "--sanitizer", "none", target])
                    .arg(&found)
                    .arg(&seeds)
                    .args([
                        "--",
                        &format!("-max_total_time={seconds}"),
                        "-timeout=10",
                        "-rss_limit_mb=2048",
                        "-print_final_stats=1",
                    ])
                    // To files, not pipes: a pipe nobody drains while the other run is awaited would stall
                    // libFuzzer's progress output, and with it the target.
                    .stdout(std::process::Stdio::null())
                    .stderr(
                        std::fs::File::create(scratch.path().join(format!("{target}.log")))
                            .unwrap(),
                    )
                    .spawn()
                    .expect("cargo fuzz run starts");
                (*target, child)
            })
            .collect();
        for (target, child) in runs {
            let mut child = child;
            let status = child.wait().unwrap();
            let log = std::fs::read_to_string(scratch.path().join(format!("{target}.log")))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            assert!(
                status.success(),
                "fuzz target {target} found a failure (the input is in fuzz/artifacts/{target}/; reproduce with \
                 `cargo fuzz run --dev --sanitizer none {target} <that file>` in fuzz/):\n{}",
                tail.join("\n")
            );
            let runs = log
                .lines()
                .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
                .map(str::trim)
                .unwrap_or("?");
            eprintln!("fuzz target {target}: {runs} inputs in {seconds} s, no finding");
        }
    }
    let total = started.elapsed();
    eprintln!(
        "fuzzing took {total:?} ({built:?} building, {:?} running)",
        total - built
    );
    assert!(
        total < built + Duration::from_secs(seconds * (TARGETS.len() as u64).div_ceil(2) + 120),
        "the runs are bounded"
    );
}
