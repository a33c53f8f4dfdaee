// Makes the README's picture of the web chat (not a test): a tracker and four peers on loopback, a short
// conversation, one peer gone offline, unread messages elsewhere; bob's page is photographed.
//   node tests/browser/screenshot.mjs [path/to/hchat] [out.png]   (default: target/release/hchat docs/chat.png)
import { launch, startNodes, stopNodes, SOON } from "./lib.mjs";

const hchat = process.argv[2] || "target/release/hchat";
const out = process.argv[3] || "docs/chat.png";

let browser;
try {
  const nodes = await startNodes(hchat, ["--peer-ttl", "2"]);
  const peers = {};
  for (const name of ["alice", "bob", "carol", "dave"]) peers[name] = await nodes.peer(name);
  const api = (name, path, body) => fetch(new URL(path, peers[name].url), {
    method: body ? "POST" : "GET", body: body && JSON.stringify(body),
  }).then((r) => r.json());
  const say = (name, text) => api(name, "/api/send", { channel: "general", text });

  browser = await launch();
  const page = await (await browser.newContext({ viewport: { width: 1100, height: 620 } })).newPage();
  await page.goto(peers.bob.url);
  await page.locator("#conv-title", { hasText: "#general" }).waitFor({ timeout: SOON });
  const seen = (text) => page.locator("#messages li .text", { hasText: text }).first().waitFor({ timeout: SOON });

  await say("alice", "Morning! Is the build green?");
  await seen("build green");
  await say("carol", "Green since 9:40, and the flaky tracker test is fixed.");
  await seen("flaky");
  const box = page.getByLabel("Message", { exact: true });
  await box.fill("Nice. I'll cut the release after lunch.");
  await box.press("Enter");
  await seen("after lunch");
  await say("dave", "Release notes are in the wiki:\n- the web chat\n- live presence");
  await seen("presence");
  await say("alice", "Ship it!");
  await seen("Ship it");
  stopNodes(1); // dave's laptop lid closes
  await api("carol", "/api/join", { channel: "random" });
  await page.getByLabel("Join a channel").fill("random");
  await page.getByLabel("Join a channel").press("Enter");
  await page.locator("#conv-title", { hasText: "#random" }).waitFor({ timeout: SOON });
  await page.locator('#channels li[data-key="#general"] button.open-conv').click();
  await api("carol", "/api/send", { channel: "random", text: "lunch at 12:30?" });
  await api("alice", "/api/send", { to: "bob", text: "Can you review my PR when you have a minute?" });
  await page.locator('#directs li[data-key="@alice"] .badge').waitFor({ timeout: SOON });
  await page.locator('#channels li[data-key="#random"] .badge').waitFor({ timeout: SOON });
  await page.locator('#members li[data-name="dave"][data-online="false"]').waitFor({ timeout: SOON });
  await page.getByLabel("Message", { exact: true }).fill("On it");
  await page.screenshot({ path: out });
  console.log("saved " + out);
} finally {
  await browser?.close();
  stopNodes();
}
