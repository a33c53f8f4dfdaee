//! The fuzz targets in `fuzz/` (cargo-fuzz targets, one per parser of network input):
//! - every committed seed passes its target's checks, run in this process on the stable toolchain;
//! - every target is built and fuzzed for `HCHAT_FUZZ_SECONDS` (default 60) seconds, two at a time, and a finding
//!   fails the test (libFuzzer leaves the input in `fuzz/artifacts/<target>/`).
//!
//! The targets are built by `fuzz/build`: cargo with libFuzzer's coverage instrumentation in hchat's code and the
//! targets only (`cargo fuzz build` instruments every dependency too, and took twice as long to build), on the
//! stable toolchain without a sanitizer (hchat forbids `unsafe`, so AddressSanitizer has little to find), into
//! the test build's target dir, whose dependencies it reuses (fuzz/ is a member of the workspace; hchat's code and
//! the targets are lightly optimized, libFuzzer fully). The binaries are libFuzzer's, run here as `cargo fuzz run`
//! would run them. Building needs a C++ compiler (libFuzzer itself); without one the test fails under `CI=true`,
//! and elsewhere says so and skips the runs. `.ci/run` starts the same build once the tests run, on the cores
//! `it` leaves idle; this test then finds it done.

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

/// Why the targets cannot be built here, if they cannot.
fn missing_tool() -> Option<String> {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let found = Command::new(&cxx)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    (!found).then(|| {
        format!(
            "no C++ compiler ({cxx}) to build libFuzzer: `apt-get install g++` (or run .ci/run)"
        )
    })
}

#[test]
fn every_target_is_fuzzed_without_a_finding() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if let Some(why) = missing_tool() {
        assert!(!ci, "{why} (CI=true: the fuzz runs cannot be skipped)");
        eprintln!("SKIPPED: the fuzz runs: {why}");
        return;
    }
    let seconds: u64 = std::env::var("HCHAT_FUZZ_SECONDS")
        .ok()
        .map(|s| {
            s.parse()
                .expect("HCHAT_FUZZ_SECONDS is a number of seconds")
        })
        .unwrap_or(60);
    let started = Instant::now();
    let build = Command::new(fuzz_dir().join("build"))
        .output()
        .expect("fuzz/build runs");
    assert!(
        build.status.success(),
        "fuzz/build failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let built = started.elapsed();
    eprintln!("fuzz targets built in {built:?}");

    let scratch = tempfile::tempdir().unwrap();
    let (ended, exits) = std::sync::mpsc::channel();
    let mut waiting = TARGETS.iter();
    let mut running = 0;
    loop {
        // One run per core: the next starts whenever one ends.
        while running < AT_ONCE
            && let Some(&target) = waiting.next()
        {
            let mut child = start(target, seconds, scratch.path());
            let ended = ended.clone();
            std::thread::spawn(move || ended.send((target, child.wait())));
            running += 1;
        }
        if running == 0 {
            break;
        }
        let (target, status) = exits.recv().unwrap();
        running -= 1;
        let status = status.unwrap();
        let log = std::fs::read_to_string(scratch.path().join(format!("{target}.log")))
            .unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        assert!(
            status.success(),
            "fuzz target {target} found a failure (the input is in fuzz/artifacts/{target}/; reproduce with \
             `fuzz/build && target/debug/{target} <that file>`):\n{}",
            tail.join("\n")
        );
        let runs = log
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .map(str::trim)
            .unwrap_or("?");
        eprintln!("fuzz target {target}: {runs} inputs in {seconds} s, no finding");
    }
    let total = started.elapsed();
    eprintln!(
        "fuzzing took {total:?} ({built:?} building, {:?} running)",
        total - built
    );
    let rounds = (TARGETS.len() as u64).div_ceil(AT_ONCE as u64);
    assert!(
        total < built + Duration::from_secs(seconds * rounds + 120),
        "the runs are bounded"
    );
}

/// Where fuzz/build leaves `target`: beside this test binary's folder, in the workspace's target dir (fuzz/ is a
/// member of it), e.g. target/debug/names.
fn built(target: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("this test's path");
    // target/debug/deps/libfuzzer-… → target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("a test binary lives in <target dir>/<profile>/deps")
        .join(target)
}

/// Starts libFuzzer on `target` for `seconds`, as `cargo fuzz run` does: new inputs go to a scratch folder (the
/// committed seeds are read only), a finding to fuzz/artifacts/<target>/.
fn start(target: &str, seconds: u64, scratch: &Path) -> std::process::Child {
    let found = scratch.join(target);
    std::fs::create_dir_all(&found).unwrap();
    let artifacts = fuzz_dir().join("artifacts").join(target);
    std::fs::create_dir_all(&artifacts).unwrap();
    Command::new(built(target))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .args([
            &format!("-max_total_time={seconds}"),
            "-timeout=10",
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
        ])
        .arg(&found)
        .arg(fuzz_dir().join("corpus").join(target))
        // To a file, not a pipe: a pipe nobody drains while the other run is awaited would stall libFuzzer's
        // progress output, and with it the target.
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(scratch.join(format!("{target}.log"))).unwrap())
        .spawn()
        .expect("the fuzz target starts")
}
