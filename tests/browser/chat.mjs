// The web chat in a real browser, against real nodes started by tests/it/browser.rs:
//   node chat.mjs <alice chat URL> <bob chat URL> <screenshot dir>
// Each step waits for what a user would see, with a deadline; a failed expectation throws (exit status 1).
// Prints "PASS" at the end.
import { mkdirSync } from "node:fs";
import { ask, done, launch, SOON, check } from "./lib.mjs";

const [aliceUrl, bobUrl, shots] = process.argv.slice(2);
if (!aliceUrl || !bobUrl || !shots) {
  console.error("usage: node chat.mjs <alice chat URL> <bob chat URL> <screenshot dir>");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });


const step = (what) => console.log("# " + what);

async function open(browser, url) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 680 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.log("page error: " + e.message));
  await page.goto(url);
  await page.locator('#conn[data-state="live"]').waitFor({ timeout: SOON });
  // Set once: still there later means the page was never reloaded.
  await page.evaluate(() => { window.__sameLoad = true; });
  return page;
}

const texts = (page) => page.locator("#messages li .text").allTextContents();
const sameLoad = (page) => page.evaluate(() => window.__sameLoad === true);

async function join(page, channel) {
  await page.getByLabel("Join a channel").fill(channel);
  await page.getByLabel("Join a channel").press("Enter");
  await page.locator("#conv-title", { hasText: "#" + channel }).waitFor({ timeout: SOON });
}

async function say(page, text) {
  const box = page.getByLabel("Message", { exact: true });
  await box.fill(text);
  await box.press("Enter");
}

async function seeMessage(page, text) {
  await page.locator("#messages li .text", { hasText: text }).first().waitFor({ timeout: SOON });
}

// A name for this host, as a browser on another machine would reach alice by: there, loopback lets nothing in.
const NAMED_HOST = "alice-laptop.test";
const browser = await launch([`--host-resolver-rules=MAP ${NAMED_HOST} 127.0.0.1`]);
try {
  const alice = await open(browser, aliceUrl);
  const bob = await open(browser, bobUrl);
  check(await alice.locator("#me").textContent() === "alice", "alice's page says who she is");

  step("the printed link logs the browser in with a cookie the page cannot read, and leaves a clean address");
  const at = new URL(alice.url());
  check(at.pathname === "/chat" && at.search === "", "the address bar holds /chat, no secret: " + alice.url());
  const cookies = await alice.context().cookies();
  const session = cookies.find((c) => c.name === "hchat-" + new URL(aliceUrl).port);
  check(session && session.httpOnly && session.sameSite === "Strict",
    "the session cookie is HttpOnly and SameSite=Strict: " + JSON.stringify(cookies));
  check(await alice.evaluate(() => document.cookie) === "", "the page's script cannot read it");
  const elsewhere = await browser.newContext();
  const remote = await elsewhere.newPage();
  await remote.goto(`http://${NAMED_HOST}:${new URL(aliceUrl).port}/chat`);
  await remote.locator("#fatal").waitFor({ state: "visible", timeout: SOON });
  check(/\/web/.test(await remote.locator("#fatal").textContent()),
    "reached by name and not logged in, the page acts as nobody and says to type /web");
  await remote.goto(aliceUrl.replace("127.0.0.1", NAMED_HOST));
  await remote.locator('#conn[data-state="live"]').waitFor({ timeout: SOON });
  check(new URL(remote.url()).search === "" && await remote.locator("#me").textContent() === "alice" &&
    await remote.locator("#fatal").isHidden(), "the same link, in another browser within its time, logs it in as alice");
  await elsewhere.close();

  step("alice and bob join #general from their pages; alice says hello");
  await join(bob, "general");
  await join(alice, "general");
  await say(alice, "Hello from alice");
  await seeMessage(bob, "Hello from alice");
  check(await sameLoad(bob), "the message appeared in bob's page without a reload");
  const own = alice.locator("#messages li.own", { hasText: "Hello from alice" });
  await own.locator('xpath=self::*[@data-state="sent"]').waitFor({ timeout: SOON });
  check(await own.locator(".from").textContent() === "you", "alice's own message is set apart as hers");
  check(await bob.locator("#messages li:not(.own) .from", { hasText: "alice" }).count() === 1,
    "bob sees it under alice's name");

  step("Shift+Enter makes a new line, Enter sends");
  const box = alice.getByLabel("Message", { exact: true });
  await box.fill("line one");
  await box.press("Shift+Enter");
  await box.pressSequentially("line two");
  await box.press("Enter");
  await seeMessage(bob, "line two");
  check((await texts(bob)).includes("line one\nline two"), "a two-line message arrives as one message");

  step("bidi overrides and zero-width characters are shown, not applied");
  await say(alice, "abc\u202edef zero\u200bwidth");
  await seeMessage(bob, "width");
  const odd = bob.locator("#messages li .text", { hasText: "width" }).last();
  const marks = await odd.locator(".invisible-char").allTextContents();
  check(JSON.stringify(marks) === JSON.stringify(["U+202E", "U+200B"]), "both are shown as marks: " + marks);
  const [d, f] = await odd.evaluate((el) => {
    const node = [...el.childNodes].find((n) => n.nodeType === Node.TEXT_NODE && n.textContent.startsWith("def"));
    const left = (i) => {
      const r = document.createRange();
      r.setStart(node, i);
      r.setEnd(node, i + 1);
      return r.getBoundingClientRect().left;
    };
    return [left(0), left(2)];
  });
  check(d < f, `the override does not reverse what follows it (d at ${d}, f at ${f})`);

  step("hovering a member shows the fingerprint of the key their name is bound to");
  const bobInList = alice.locator('#members li[data-name="bob"] button');
  await bobInList.hover();
  const bobFingerprint = await bob.evaluate(async () => (await (await fetch("/api/me")).json()).fingerprint);
  check(/^[0-9a-f]{4}( [0-9a-f]{4}){7}$/.test(bobFingerprint), "a fingerprint is 8 groups of 4 hex digits");
  const hover = await bobInList.getAttribute("title");
  check(hover.includes("Key fingerprint: " + bobFingerprint), "alice sees bob's fingerprint on hover: " + hover);

  step("bob clicks alice in the member list and sends her a direct message");
  await bob.locator('#members li[data-name="alice"] button').click();
  await bob.locator("#conv-title", { hasText: "Direct messages with alice" }).waitFor({ timeout: SOON });
  await say(bob, "psst, alice");
  const dmEntry = alice.locator('#directs li[data-key="@bob"]');
  await dmEntry.waitFor({ timeout: SOON });
  check(await dmEntry.locator(".badge").textContent() === "1", "alice's page shows one unread direct message from bob");
  check(!(await texts(alice)).some((t) => t.includes("psst")), "the DM is not shown in alice's #general");
  await dmEntry.locator("button.open-conv").click();
  await seeMessage(alice, "psst, alice");
  check((await texts(alice)).length === 1, "alice's direct conversation with bob holds just that message");
  await alice.locator('#channels li[data-key="#general"] button.open-conv').click();
  await seeMessage(alice, "Hello from alice");
  check(!(await texts(alice)).some((t) => t.includes("psst")), "switching back, #general still has no DM in it");
  await bob.locator('#channels li[data-key="#general"] button.open-conv').click();
  await seeMessage(bob, "Hello from alice");
  check(!(await texts(bob)).some((t) => t.includes("psst")), "nor has bob's #general");

  step("carol comes online and shows up in the member list; killed, she shows offline");
  await ask("start carol");
  await alice.locator('#members li[data-name="carol"][data-online="true"]').waitFor({ timeout: SOON });
  check(await sameLoad(alice), "carol appeared in alice's member list without a reload");
  await bob.locator('#members li[data-name="carol"][data-online="true"]').waitFor({ timeout: SOON });
  await alice.screenshot({ path: `${shots}/alice.png` });
  await bob.screenshot({ path: `${shots}/bob.png` });
  await ask("kill carol");
  await alice.locator('#members li[data-name="carol"][data-online="false"]').waitFor({ timeout: 20_000 });
  check(await sameLoad(alice), "carol went offline in alice's page without a reload");

  step("bob's stream drops while alice sends; it catches up with no gap and no duplicate");
  await bob.evaluate(() => window.hchat.dropStream());
  const burst = Array.from({ length: 12 }, (_, i) => `while you were away ${i}`);
  for (const t of burst) {
    await say(alice, t);
    await alice.locator("#messages li.own[data-state=sent] .text", { hasText: t }).waitFor({ timeout: SOON });
  }
  check(!(await texts(bob)).some((t) => t.startsWith("while you were away")), "bob's page saw none while cut off");
  await bob.evaluate(() => window.hchat.resumeStream());
  await seeMessage(bob, burst[burst.length - 1]);
  const got = (await texts(bob)).filter((t) => t.startsWith("while you were away"));
  check(JSON.stringify(got) === JSON.stringify(burst), "bob has every message once, in order");
  const stats = await bob.evaluate(() => window.hchat.stats);
  check(stats.duplicateEvents === 0 && stats.gaps === 0 && stats.resyncs === 0 && stats.connects === 2,
    "the stream replayed exactly the missed events: " + JSON.stringify(stats));

  step("a DM to carol while she is offline is held by the tracker; she gets it, once, when she is back");
  await alice.locator('#members li[data-name="carol"] button').click();
  await alice.locator("#conv-title", { hasText: "Direct messages with carol" }).waitFor({ timeout: SOON });
  await say(alice, "are you there, carol?");
  const held = alice.locator('#messages li.own[data-state="held"]', { hasText: "are you there" });
  await held.waitFor({ timeout: SOON });
  const heldSays = await held.locator(".state").textContent();
  check(/held for carol/.test(heldSays), "the message says it is held for carol: " + heldSays);
  check(await alice.locator("#send-error").isHidden(), "a held message is not an error");
  await ask("start carol");
  await ask("carol got one DM");

  step("with the tracker down, a message nobody can be found for fails clearly; Retry sends it once it is back");
  await alice.getByLabel("Join a channel").fill("side");
  await alice.getByLabel("Join a channel").press("Enter");
  await alice.locator("#conv-title", { hasText: "#side" }).waitFor({ timeout: SOON });
  await ask("kill tracker");
  await say(alice, "anyone on side?");
  await alice.locator("#send-error").waitFor({ state: "visible", timeout: SOON });
  const err = await alice.locator("#send-error-text").textContent();
  check(/tracker/.test(err), "the error says the tracker cannot be reached: " + err);
  await alice.locator('#messages li.own[data-state="failed"]').waitFor({ timeout: SOON });
  await ask("start tracker");
  await alice.getByRole("button", { name: "Retry" }).click();
  await alice.locator('#messages li.own[data-state="sent"]', { hasText: "anyone on side?" }).waitFor({ timeout: SOON });
  check(await alice.locator("#send-error").isHidden(), "the error goes away once the retry went out");
  check((await texts(alice)).filter((t) => t === "anyone on side?").length === 1,
    "the retried message is shown once");

  await alice.screenshot({ path: `${shots}/alice-retried.png` });
  await alice.locator('#channels li[data-key="#general"] button.open-conv').click();

  step("bob reloads his page: it opens with the history the node holds, in each conversation");
  await bob.reload();
  await bob.locator('#conn[data-state="live"]').waitFor({ timeout: SOON });
  await bob.locator("#conv-title", { hasText: "#general" }).waitFor({ timeout: SOON });
  await seeMessage(bob, burst[burst.length - 1]);
  const reloaded = await texts(bob);
  check(reloaded.includes("Hello from alice") && reloaded.filter((t) => t.startsWith("while you were away")).length === burst.length,
    "#general's history is back after a reload, each message once");
  await bob.locator('#directs li[data-key="@alice"] button.open-conv').click();
  await seeMessage(bob, "psst, alice");
  check((await texts(bob)).length === 1, "the direct conversation's history holds its one message");
  await bob.locator('#channels li[data-key="#general"] button.open-conv').click();

  step("bob's node is killed and starts again on its data dir: his open page comes back with the same history");
  const resyncsBefore = await bob.evaluate(() => window.hchat.stats.resyncs);
  await ask("restart bob");
  // The page notices the new start of the node (another boot id), says resync, and reloads what it shows.
  await bob.waitForFunction((n) => window.hchat.stats.resyncs > n, resyncsBefore, { timeout: SOON });
  await bob.locator('#conn[data-state="live"]').waitFor({ timeout: SOON });
  await seeMessage(bob, burst[burst.length - 1]);
  const restarted = await texts(bob);
  check(restarted.includes("Hello from alice") && restarted.filter((t) => t.startsWith("while you were away")).length === burst.length,
    "#general's history survived the restart, each message once: " + JSON.stringify(restarted));
  await bob.locator('#directs li[data-key="@alice"] button.open-conv').click();
  await seeMessage(bob, "psst, alice");
  await bob.locator('#channels li[data-key="#general"] button.open-conv').click();
  await say(alice, "welcome back, bob");
  await seeMessage(bob, "welcome back, bob");

  step("keyboard: focus stays on a conversation while messages arrive, Enter opens it");
  await alice.locator('#directs li[data-key="@bob"] button.open-conv').focus();
  await say(bob, "the list redraws now");
  await seeMessage(alice, "the list redraws now");
  check(await alice.evaluate(() => document.activeElement?.closest("li")?.dataset.key) === "@bob",
    "the focused conversation keeps the focus when the list is redrawn");
  await alice.keyboard.press("Enter");
  await alice.locator("#conv-title", { hasText: "Direct messages with bob" }).waitFor({ timeout: SOON });
  await alice.locator('#channels li[data-key="#general"] button.open-conv').click();

  step("alice makes #club invite-only in its settings, invites bob, then makes him a visitor: his composer says why it is off");
  await join(alice, "club");
  await alice.locator("#settings").waitFor({ state: "visible", timeout: SOON });
  await alice.getByLabel("Mode").selectOption("invite");
  await alice.locator("#mode-form button[type=submit]").click();
  await alice.locator("#settings-summary", { hasText: "invite-only" }).waitFor({ timeout: SOON });
  await bob.getByLabel("Join a channel").fill("club");
  await bob.getByLabel("Join a channel").press("Enter");
  await bob.locator("#join-error", { hasText: "invite" }).waitFor({ timeout: SOON });
  check(true, "bob, not invited, is told #club is invite-only");
  await alice.getByLabel("Invite").fill("bob");
  await alice.getByLabel("Invite").press("Enter");
  await alice.locator("#settings-summary", { hasText: "Invited: bob" }).waitFor({ timeout: SOON });
  await join(bob, "club");
  await alice.getByRole("button", { name: "Make bob a visitor" }).click({ timeout: SOON });
  await bob.locator("#text[disabled]").waitFor({ timeout: SOON });
  await bob.locator("#composer-reason", { hasText: "visitor" }).waitFor({ timeout: SOON });
  check(await bob.locator("#send").isDisabled(), "bob, a visitor, cannot send in #club and is told why");
  await say(alice, "visitors still read this");
  await seeMessage(bob, "visitors still read this");
  await alice.getByRole("button", { name: "Let bob post" }).click({ timeout: SOON });
  await bob.locator("#text:not([disabled])").waitFor({ timeout: SOON });
  check(true, "made a member again, bob's composer is back");

  step("a key channel: bob's page asks for the key, and the right one lets him in");
  await join(alice, "vault");
  await alice.getByLabel("Mode").selectOption("key");
  await alice.getByLabel("New key").fill("open-sesame");
  await alice.locator("#mode-form button[type=submit]").click();
  await alice.locator("#settings-summary", { hasText: "protected by a key" }).waitFor({ timeout: SOON });
  await bob.getByLabel("Join a channel").fill("vault");
  await bob.getByLabel("Join a channel").press("Enter");
  await bob.locator("#join-key-row").waitFor({ state: "visible", timeout: SOON });
  await bob.getByLabel("Channel key").fill("open-sesame");
  await bob.getByLabel("Join a channel").press("Enter");
  await bob.locator("#conv-title", { hasText: "#vault" }).waitFor({ timeout: SOON });
  check(true, "bob joined #vault with its key");

  step("bob sets himself away with a message: alice sees it beside his name");
  // Alice's own entry is marked: a change of bob's must not draw the members who did not change again.
  await alice.locator('#members li[data-name="alice"]').evaluate((li) => { li.keptAcrossChanges = true; });
  await bob.getByLabel("Your status").selectOption("away");
  await bob.getByLabel("Away message").fill("back in five");
  await bob.getByLabel("Away message").press("Enter");
  await alice.locator('#members li[data-name="bob"] .away', { hasText: "back in five" }).waitFor({ timeout: SOON });
  check(true, "alice's page shows bob away, with his message, without a reload");
  check(await alice.locator('#members li[data-name="bob"][data-status="away"] .dot').evaluate(
    (dot) => getComputedStyle(dot).backgroundColor) === "rgb(212, 161, 6)",
    "bob's dot in alice's member panel turns amber while he is away");
  check(await alice.locator('#members li[data-name="alice"]').evaluate((li) => li.keptAcrossChanges === true),
    "bob's change redrew his entry only: alice's own entry is the same element as before");
  await bob.getByLabel("Your status").selectOption("online");
  await alice.locator('#members li[data-name="bob"] .away').waitFor({ state: "detached", timeout: SOON });
  check(await alice.locator('#members li[data-name="bob"][data-status="online"] .dot').evaluate(
    (dot) => getComputedStyle(dot).backgroundColor) === "rgb(31, 157, 85)",
    "and green again once he is back");
  await alice.locator('#channels li[data-key="#general"] button.open-conv').click();
  await bob.locator('#channels li[data-key="#general"] button.open-conv').click();

  step("a narrow window: one column, panels behind buttons, keyboard works");
  await bob.setViewportSize({ width: 400, height: 700 });
  check(await bob.locator("#sidebar").isHidden(), "the conversation list folds away in a narrow window");
  await bob.getByRole("button", { name: "Conversations" }).click();
  await bob.locator("#sidebar").waitFor({ state: "visible", timeout: SOON });
  await bob.keyboard.press("Escape");
  await bob.locator("#sidebar").waitFor({ state: "hidden", timeout: SOON });
  await bob.getByLabel("Message", { exact: true }).focus();
  await say(bob, "typed in a narrow window");
  await seeMessage(alice, "typed in a narrow window");
  await bob.screenshot({ path: `${shots}/bob-narrow.png` });

  console.log("PASS");
} finally {
  await browser.close();
  done();
}
