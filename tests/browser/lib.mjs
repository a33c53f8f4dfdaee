// Shared by the browser scripts: launch Debian's chromium through playwright-core (never a downloaded browser),
// and talk to the Rust test that started the nodes (ASK lines on stdout, DONE lines on stdin).
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

export const CHROMIUM = process.env.HCHAT_CHROMIUM || "/usr/bin/chromium";

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
}

const answers = [];
const waiting = [];
const stdin = createInterface({ input: process.stdin });
stdin.on("line", (line) => {
  const w = waiting.shift();
  if (w) w(line); else answers.push(line);
});

/** Asks the Rust side to do something (start or kill a peer...) and waits for its answer line. */
export async function ask(what) {
  console.log("ASK " + what);
  const line = answers.length ? answers.shift() : await new Promise((r) => waiting.push(r));
  if (line !== "DONE " + what) throw new Error(`asked "${what}", got "${line}"`);
}

export function done() {
  stdin.close();
}

/** Percentile of sorted numbers. */
export function percentile(sorted, p) {
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, i)];
}
