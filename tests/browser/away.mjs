// What users expect of a chat client (issue 15), in a real browser against real nodes started by
// tests/it/browser.rs:   node away.mjs <alice chat URL> <bob chat URL> <screenshot dir>
// A notification for a DM while bob's tab is hidden; unread counts kept across a reload; alice's held DM turning
// delivered when bob is back; everything bob missed while dead shown in his open page without a reload, under a
// divider; a search result that jumps to its message. Prints "PASS" at the end.
import { mkdirSync } from "node:fs";
import { ask, done, launch, SOON, check } from "./lib.mjs";

const [aliceUrl, bobUrl, shots] = process.argv.slice(2);
if (!aliceUrl || !bobUrl || !shots) {
  console.error("usage: node away.mjs <alice chat URL> <bob chat URL> <screenshot dir>");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const SENT = 200;

const step = (what) => console.log("# " + what);

// Records every notification the page makes (headless chromium shows none), and lets the test hide the tab.
function spy() {
  const Real = window.Notification;
  window.__notes = [];
  class Spy {
    constructor(title, options) { window.__notes.push({ title, body: options && options.body }); }
    close() {}
    static get permission() { return Real ? Real.permission : "denied"; }
    static requestPermission() { return Real.requestPermission(); }
  }
  window.Notification = Spy;
  window.__hidden = false;
  Object.defineProperty(document, "hidden", { get: () => window.__hidden });
  Object.defineProperty(document, "visibilityState", { get: () => (window.__hidden ? "hidden" : "visible") });
}

async function open(browser, url, viewport = { width: 1100, height: 680 }) {
  const context = await browser.newContext({ viewport });
  await context.grantPermissions(["notifications"], { origin: new URL(url).origin });
  await context.addInitScript(spy);
  const page = await context.newPage();
  page.on("pageerror", (e) => console.log("page error: " + e.message));
  await page.goto(url);
  await page.locator('#conn[data-state="live"]').waitFor({ timeout: SOON });
  await page.evaluate(() => { window.__sameLoad = true; });
  return page;
}

async function setHidden(page, hidden) {
  await page.evaluate((h) => { window.__hidden = h; document.dispatchEvent(new Event("visibilitychange")); }, hidden);
}

const badge = (page, key) => page.locator(`.convs li[data-key="${key}"] .badge`);
const texts = (page) => page.locator("#messages li .text").allTextContents();
const sameLoad = (page) => page.evaluate(() => window.__sameLoad === true);

async function openConv(page, key) {
  await page.locator(`.convs li[data-key="${key}"] .open-conv`).click();
  const title = key[0] === "#" ? key : "Direct messages with " + key.slice(1);
  await page.locator("#conv-title", { hasText: title }).waitFor({ timeout: SOON });
}

const browser = await launch();
try {
  let bob = await open(browser, bobUrl);
  const alice = await open(browser, aliceUrl);
  await bob.locator("#conv-title", { hasText: "#general" }).waitFor({ timeout: SOON });

  step("notifications: asked for on a click only; with permission, a DM to a hidden tab makes one");
  check(await bob.evaluate(() => Notification.permission) === "granted", "playwright granted the permission");
  check(await bob.locator("#notify").isHidden(), "nothing to ask once it is granted (and nothing was asked on load)");
  await setHidden(bob, true);
  await ask("alice says: @bob ping while you look away");
  await bob.waitForFunction(() => window.__notes.length === 1, null, { timeout: SOON });
  const [note] = await bob.evaluate(() => window.__notes);
  check(note.title === "alice" && note.body === "ping while you look away", "a notification for the DM: " + JSON.stringify(note));
  await ask("alice says: a channel message for everyone");
  await ask("alice says: bob, can you look at this?");
  await bob.waitForFunction(() => window.__notes.length === 2, null, { timeout: SOON });
  const notes = await bob.evaluate(() => window.__notes);
  check(notes[1].title === "alice in #general" && notes[1].body === "bob, can you look at this?",
    "the mention makes one, the plain channel message none: " + JSON.stringify(notes));
  await setHidden(bob, false);
  await bob.locator("#messages li.mention", { hasText: "can you look at this" }).waitFor({ timeout: SOON });
  check(await bob.locator("#messages li.mention").count() === 1, "the mention of bob's name is highlighted, only it");

  step("unread counts are the node's: a reload keeps them");
  await ask("alice says: @bob one more while you read #general");
  await badge(bob, "@alice").filter({ hasText: "2" }).waitFor({ timeout: SOON });
  await bob.reload();
  await bob.locator('#conn[data-state="live"]').waitFor({ timeout: SOON });
  await badge(bob, "@alice").filter({ hasText: "2" }).waitFor({ timeout: SOON });
  check(await badge(bob, "#general").count() === 0, "after a reload: @alice still has 2 unread, #general (shown) none");
  await openConv(bob, "@alice");
  await badge(bob, "@alice").waitFor({ state: "detached", timeout: SOON });
  await bob.waitForFunction(async () => Object.keys((await (await fetch("/api/unread")).json()).unread).length === 0,
    null, { timeout: SOON });
  await bob.reload();
  await bob.locator('#conn[data-state="live"]').waitFor({ timeout: SOON });
  await bob.locator("#conv-title", { hasText: "Direct messages with alice" }).waitFor({ timeout: SOON });
  check(await bob.locator(".convs .badge").count() === 0, "read in the page, read after a reload too");
  await openConv(bob, "#general");
  await bob.evaluate(() => { window.__sameLoad = true; });

  step("alice's DM to a dead bob is held, then delivered when he is back; he sees all he missed in place");
  await openConv(alice, "@bob");
  await ask("kill bob");
  const box = alice.getByLabel("Message", { exact: true });
  await box.fill("are you back?");
  await box.press("Enter");
  await alice.locator('#messages li.own[data-state="held"]', { hasText: "are you back?" }).waitFor({ timeout: 30_000 });
  await ask("flood");
  await ask("restart bob");
  const back = Date.now();
  await alice.locator('#messages li.own[data-state="delivered"]', { hasText: "are you back?" }).waitFor({ timeout: SOON });
  const receiptMs = Date.now() - back;
  console.log(`receipt: held -> delivered in alice's page ${receiptMs} ms after bob's return`);
  check(receiptMs <= 2000, "held turned delivered within 2 s of bob's return");
  await bob.locator("#messages li .text", { hasText: `ch ${SENT - 1}` }).waitFor({ timeout: 30_000 });
  const general = (await texts(bob)).filter((t) => /^ch \d+$/.test(t));
  check(JSON.stringify(general) === JSON.stringify(Array.from({ length: SENT }, (_, i) => `ch ${i}`)),
    `bob's page shows each of the ${SENT} channel messages once, in order (${general.length})`);
  check(await sameLoad(bob), "without a reload");
  const divider = bob.locator("#messages li.divider");
  check(await divider.count() === 1 && /new since you were away/.test(await divider.textContent()), "under one divider");
  await badge(bob, "@alice").filter({ hasText: /^201$/ }).waitFor({ timeout: SOON });
  check(true, "@alice's badge counts the 201 DMs bob missed, once each");
  check(await bob.evaluate(() => {
    const d = document.querySelector("#messages li.divider");
    return d.nextElementSibling.querySelector(".text").textContent === "ch 0";
  }), "the divider sits right above the first message bob missed");
  await bob.evaluate(() => { document.getElementById("notice").hidden = true; });
  await bob.screenshot({ path: shots + "/away-divider.png" });
  await openConv(bob, "@alice");
  await bob.locator("#messages li .text", { hasText: `dm ${SENT - 1}` }).waitFor({ timeout: SOON });
  const dms = (await texts(bob)).filter((t) => /^dm \d+$/.test(t));
  const all = await texts(bob);
  check(!all.includes("ping while you look away") || all.indexOf("are you back?") === all.indexOf("dm 0") - 1,
    "no hole: an older message is shown only with everything since: " + all.slice(0, 3).join(", "));
  check(JSON.stringify(dms) === JSON.stringify(Array.from({ length: SENT }, (_, i) => `dm ${i}`)),
    `and each of the ${SENT} DMs once, in order (${dms.length})`);

  step("a search result jumps to its message");
  await openConv(bob, "#general");
  await bob.getByLabel("Search messages").fill("ping while");
  await bob.getByLabel("Search messages").press("Enter");
  const hit = bob.locator("#search-results button", { hasText: "ping while you look away" });
  await hit.waitFor({ timeout: SOON });
  check(/@alice/.test(await hit.locator(".where").textContent()), "the result says where it was said, and when");
  await hit.click();
  await bob.locator("#conv-title", { hasText: "Direct messages with alice" }).waitFor({ timeout: SOON });
  await bob.locator("#messages li.found", { hasText: "ping while you look away" }).waitFor({ timeout: SOON });
  const around = await texts(bob);
  check(around.indexOf("ping while you look away") < around.indexOf("are you back?") &&
    around.indexOf("are you back?") === around.indexOf("dm 0") - 1, "the older history loaded around it, in order, no hole");
  check(true, "a click opened the conversation at the message, highlighted");
  await bob.evaluate(() => { document.getElementById("notice").hidden = true; });
  await bob.screenshot({ path: shots + "/search.png" });
  console.log("PASS");
} finally {
  await browser.close();
  done();
}
