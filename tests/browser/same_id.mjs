// Issue 11, attack 1 in bob's page: a member reuses the id of alice's message; bob's page shows both messages,
// live and after a reload, because the page knows a message by its sender and id (not by its id alone).
//   node same_id.mjs <bob chat URL> <screenshot dir>
// Started by tests/it/attack_message_identity.rs, which sends the two messages when asked ("reuse an id").
// Prints "PASS" at the end.
import { mkdirSync } from "node:fs";
import { ask, done, launch, SOON, check } from "./lib.mjs";

const [bobUrl, shots] = process.argv.slice(2);
if (!bobUrl || !shots) {
  console.error("usage: node same_id.mjs <bob chat URL> <screenshot dir>");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });


const texts = (page) => page.locator("#messages li .text").allTextContents();

const browser = await launch();
try {
  const context = await browser.newContext({ viewport: { width: 1100, height: 680 } });
  const bob = await context.newPage();
  bob.on("pageerror", (e) => console.log("page error: " + e.message));
  await bob.goto(bobUrl);
  await bob.locator('#conn[data-state="live"]').waitFor({ timeout: SOON });
  await bob.locator('#channels li[data-key="#general"] button.open-conv').click();
  await bob.locator("#conv-title", { hasText: "#general" }).waitFor({ timeout: SOON });

  await ask("reuse an id");
  const shown = bob.locator("#messages li .text", { hasText: "alice's real words" });
  await shown.waitFor({ timeout: SOON });
  await bob.locator("#messages li .text", { hasText: "after the reuse" }).waitFor({ timeout: SOON });
  let seen = await texts(bob);
  check(seen.includes("mallory got here first") && seen.filter((t) => t === "alice's real words").length === 1,
    "bob's page shows alice's message beside mallory's under the same id, live, once: " + JSON.stringify(seen));
  check(await bob.locator('#messages li:not(.own) .from', { hasText: "alice" }).count() === 2,
    "alice's messages are under her name");

  await bob.reload();
  await bob.locator('#conn[data-state="live"]').waitFor({ timeout: SOON });
  await bob.locator('#channels li[data-key="#general"] button.open-conv').click();
  await bob.locator("#messages li .text", { hasText: "after the reuse" }).waitFor({ timeout: SOON });
  seen = await texts(bob);
  check(JSON.stringify(seen) === JSON.stringify(["alice's real words", "mallory got here first", "after the reuse"]),
    "after a reload, the history shows both, each once: " + JSON.stringify(seen));
  await bob.screenshot({ path: `${shots}/bob-same-id.png` });
  console.log("PASS");
} finally {
  done();
  await browser.close();
}
