// Issue 14 in the page: a conversation whose session goes through the tracker's relay is tagged "via relay", in
// the list of direct conversations and on the member, live and after a reload, and the tag goes when the session
// moves to the direct path.
//   node relay.mjs <alice chat URL> <screenshot dir>
// Started by tests/it/relayed_sessions.rs, which sends alice's DM to bob (whom she cannot reach directly) when
// asked "dm bob", and lifts the cut when asked "lift the cut". Prints "PASS" at the end.
import { mkdirSync } from "node:fs";
import { ask, done, launch, SOON, check } from "./lib.mjs";

const [aliceUrl, shots] = process.argv.slice(2);
if (!aliceUrl || !shots) {
  console.error("usage: node relay.mjs <alice chat URL> <screenshot dir>");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });


const browser = await launch();
try {
  const context = await browser.newContext({ viewport: { width: 1100, height: 680 } });
  const alice = await context.newPage();
  alice.on("pageerror", (e) => console.log("page error: " + e.message));
  await alice.goto(aliceUrl);
  await alice.locator('#conn[data-state="live"]').waitFor({ timeout: SOON });

  await ask("dm bob");
  const listed = alice.locator('#directs li[data-key="@bob"] .via-relay');
  await listed.waitFor({ timeout: SOON });
  check(await listed.textContent() === "via relay", "the DM with bob is tagged 'via relay' in the list");
  await alice.locator('#directs li[data-key="@bob"] button.open-conv').click();
  await alice.locator('#members li[data-name="bob"] .via-relay').waitFor({ timeout: SOON });
  check(await alice.locator('#members li[data-name="alice"] .via-relay').count() === 0,
    "bob is tagged among the members, alice herself is not");

  await alice.reload();
  await alice.locator('#conn[data-state="live"]').waitFor({ timeout: SOON });
  await alice.locator('#directs li[data-key="@bob"] .via-relay').waitFor({ timeout: SOON });
  console.log("ok - still tagged after a reload");
  await alice.screenshot({ path: `${shots}/alice-via-relay.png` });

  await ask("lift the cut");
  await alice.locator('#directs li[data-key="@bob"] .via-relay').waitFor({ state: "detached", timeout: 20_000 });
  console.log("ok - the tag goes when the session moves to the direct path");
  console.log("PASS");
} finally {
  done();
  await browser.close();
}
