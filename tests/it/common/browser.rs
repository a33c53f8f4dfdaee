//! What the browser tests need: the web chat's address, the tools (Node.js, playwright, chromium), and a driver for
//! the browser script over its stdin/stdout.

use std::io::Write;
use std::process::{Child, ChildStdin, Command, ExitStatus};

use super::process::spawn_piped;
use super::{Lines, Proc, SOON};

/// The web chat's address with the token, as a peer prints it at start (`* web chat: http://…/chat?token=…`).
pub(crate) fn chat_url(peer: &Proc) -> String {
    peer.out
        .wait_for("the web chat's address", SOON, |l| {
            l.starts_with("* web chat: ")
        })
        .trim_start_matches("* web chat: ")
        .to_string()
}

/// What a browser test needs, or why it cannot run: Node.js, `npm ci` in tests/browser, Debian's chromium.
/// `Ok(None)` when the user asked to skip browser tests (`HCHAT_SKIP_BROWSER=1`, refused under `CI=true`).
pub(crate) fn browser_tools() -> Result<Option<std::path::PathBuf>, String> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let skip = std::env::var("HCHAT_SKIP_BROWSER").is_ok_and(|v| v == "1");
    if skip && !ci {
        eprintln!("SKIPPED: browser test (HCHAT_SKIP_BROWSER=1)");
        return Ok(None);
    }
    let missing = |what: String| {
        if ci {
            format!("{what} (CI=true: the browser test cannot be skipped)")
        } else {
            format!("{what}; set HCHAT_SKIP_BROWSER=1 to skip it")
        }
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Err(missing(
            "the browser test needs Node.js: apt-get install nodejs npm (or run .ci/run)".into(),
        ));
    }
    if !dir.join("node_modules/playwright-core").is_dir() {
        return Err(missing(format!(
            "the browser test needs playwright-core: run `npm ci` in {} (or .ci/run)",
            dir.display()
        )));
    }
    let chromium = std::env::var("HCHAT_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !std::path::Path::new(&chromium).exists() {
        return Err(missing(format!(
            "the browser test needs Debian's chromium at {chromium}: apt-get install chromium (or run .ci/run)"
        )));
    }
    Ok(Some(dir))
}

/// A helper program (a browser script) driven over its stdin/stdout, killed when dropped.
pub(crate) struct Driver {
    child: Child,
    stdin: Option<ChildStdin>,
    pub out: Lines,
    pub err: Lines,
}

impl Driver {
    pub(crate) fn spawn(name: &str, cmd: Command) -> Driver {
        let (child, stdin, out, err) = spawn_piped(name, cmd);
        Driver {
            child,
            stdin,
            out,
            err,
        }
    }

    /// Sends a line to the program.
    pub(crate) fn answer(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").expect("the program reads its stdin");
        stdin.flush().unwrap();
    }

    /// The exit status, if it has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Everything it printed, for a failure message.
    pub(crate) fn transcript(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.out.all().join("\n"),
            self.err.all().join("\n")
        )
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
