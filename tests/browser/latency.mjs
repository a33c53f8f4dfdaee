// Benchmark (not a test): send-to-visible latency between two web pages. Starts its own tracker and two peers
// (alice, bob, both in #general) on loopback, opens both pages in headless chromium, and for each message measures
// from alice's Enter key to the message's element appearing in bob's page (and to bob's next frame).
//   node tests/browser/latency.mjs [path/to/hchat] [count]      (default: target/release/hchat 200)
import { launch, percentile, startNodes, stopNodes } from "./lib.mjs";

const hchat = process.argv[2] || "target/release/hchat";
const count = Number(process.argv[3] || 200);
const WARMUP = 10;

let browser;
try {
  const nodes = await startNodes(hchat);
  const [a, b] = [await nodes.peer("alice"), await nodes.peer("bob")];

  browser = await launch();
  const open = async (url) => {
    const page = await (await browser.newContext()).newPage();
    await page.goto(url);
    await page.locator("#conv-title", { hasText: "#general" }).waitFor({ timeout: 10_000 });
    await page.locator('#conn[data-state="live"]').waitFor({ timeout: 10_000 });
    return page;
  };
  const alice = await open(a.url);
  const bob = await open(b.url);

  await bob.evaluate(() => {
    window.__seen = new Map();
    new MutationObserver((records) => {
      const dom = performance.timeOrigin + performance.now();
      for (const r of records) for (const n of r.addedNodes) {
        const text = n.querySelector?.(".text")?.textContent;
        if (text && text.startsWith("lat ")) {
          const entry = { dom };
          window.__seen.set(text, entry);
          requestAnimationFrame(() => { entry.frame = performance.timeOrigin + performance.now(); });
        }
      }
    }).observe(document.getElementById("messages"), { childList: true });
  });

  const dom = [], frame = [];
  for (let i = 0; i < WARMUP + count; i++) {
    const text = `lat ${i}`;
    const sent = await alice.evaluate((text) => {
      const box = document.getElementById("text");
      box.value = text;
      const t = performance.timeOrigin + performance.now();
      box.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true, cancelable: true }));
      return t;
    }, text);
    await bob.waitForFunction((text) => window.__seen.get(text)?.frame, text, { polling: "raf", timeout: 10_000 });
    const seen = await bob.evaluate((text) => window.__seen.get(text), text);
    if (i >= WARMUP) { dom.push(seen.dom - sent); frame.push(seen.frame - sent); }
  }
  const line = (name, xs) => {
    xs.sort((x, y) => x - y);
    const f = (p) => percentile(xs, p).toFixed(2);
    return `${name}: p50 ${f(50)} ms, p90 ${f(90)} ms, p99 ${f(99)} ms, max ${xs[xs.length - 1].toFixed(2)} ms`;
  };
  // The same path without a browser: alice's API to bob's event stream, read by this script. What the two pages
  // add on top of it is the browser's own share.
  const stream = await fetch(new URL("/api/events", b.url));
  const reader = stream.body.getReader();
  const decoder = new TextDecoder();
  const waiting = new Map();
  let buffer = "";
  (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const m = buffer.slice(0, end).match(/"text":"(api \d+)"/);
        buffer = buffer.slice(end + 2);
        if (m) waiting.get(m[1])?.(performance.now());
      }
    }
  })();
  const apiOnly = [];
  for (let i = 0; i < WARMUP + count; i++) {
    const text = `api ${i}`;
    const seen = new Promise((resolve) => waiting.set(text, resolve));
    const t = performance.now();
    await fetch(new URL("/api/send", a.url), { method: "POST", body: JSON.stringify({ channel: "general", text }) });
    const at = await seen;
    if (i >= WARMUP) apiOnly.push(at - t);
  }
  await reader.cancel();

  console.log(`send-to-visible over ${count} messages (alice's Enter in her page -> bob's page), loopback:`);
  console.log("  " + line("in bob's DOM     ", dom));
  console.log("  " + line("bob's next frame ", frame));
  console.log("  " + line("API to stream, no browser", apiOnly));
} finally {
  await browser?.close();
  stopNodes();
}
