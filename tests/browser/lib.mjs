// Shared by the browser scripts: launch Debian's chromium through playwright-core (never a downloaded browser),
// and talk to the Rust test that started the nodes (ASK lines on stdout, DONE lines on stdin).
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { spawn } from "node:child_process";

/** How long a script waits for something the page should show soon. */
export const SOON = 10_000;

/** Prints an "ok" line for a check that holds, and fails the script on one that does not. */
export function check(cond, what) {
  if (!cond) throw new Error("expected: " + what);
  console.log("ok - " + what);
}

export const CHROMIUM = process.env.HCHAT_CHROMIUM || "/usr/bin/chromium";

/** Launches chromium; `extraArgs` are more command-line switches (e.g. a host name mapped to 127.0.0.1). */
export async function launch(extraArgs = []) {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      ...extraArgs,
      ...(process.env.HCHAT_CHROMIUM_ARGS || "").split(" ").filter(Boolean),
    ],
  });
}

const answers = [];
const waiting = [];
let stdin = null;

/** Asks the Rust side to do something (start or kill a peer...) and waits for its answer line. */
export async function ask(what) {
  if (!stdin) {
    stdin = createInterface({ input: process.stdin });
    stdin.on("line", (line) => {
      const w = waiting.shift();
      if (w) w(line); else answers.push(line);
    });
  }
  console.log("ASK " + what);
  const line = answers.length ? answers.shift() : await new Promise((r) => waiting.push(r));
  if (line !== "DONE " + what) throw new Error(`asked "${what}", got "${line}"`);
}

export function done() {
  stdin?.close();
}

/** Percentile of sorted numbers. */
export function percentile(sorted, p) {
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, i)];
}

const children = [];

/** Runs `hchat ARGS` until every pattern of `wanted` has matched a line of its stdout; resolves to the matches. */
function start(hchat, args, wanted) {
  return new Promise((resolve, reject) => {
    const child = spawn(hchat, args, { stdio: ["pipe", "pipe", "ignore"] });
    children.push(child);
    const found = {};
    const timer = setTimeout(() => reject(new Error(`${args.join(" ")}: no ${Object.keys(wanted)} within 10 s`)), 10_000);
    child.on("error", reject);
    createInterface({ input: child.stdout }).on("line", (line) => {
      for (const [key, re] of Object.entries(wanted)) {
        const m = line.match(re);
        if (m) found[key] = m[1];
      }
      if (Object.keys(wanted).every((k) => k in found)) { clearTimeout(timer); resolve(found); }
    });
  });
}

/** For the stand-alone scripts (benchmark, screenshot): a tracker, and `peer(name)` to start peers in #general. */
export async function startNodes(hchat, trackerArgs = []) {
  const { addr } = await start(hchat, ["tracker", "--port", "0", ...trackerArgs], { addr: /listening on (\S+)/ });
  const tport = addr.split(":").pop();
  return {
    peer: (name) => start(hchat, ["peer", "--name", name, "--tracker-port", tport, "--join", "general"],
      { url: /^\* web chat: (\S+)/, joined: /^\* (joined) / }),
  };
}

/** Kills every node started by this script, and the last one alone when asked (`stopNodes(1)`). */
export function stopNodes(last) {
  const which = last ? children.splice(-last) : children.splice(0);
  for (const c of which) c.kill("SIGKILL");
}
