// The chat page in a real browser: two people, alice and bob.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { join } from "node:path";
import { launchBrowser, openConversation, say, shots, signIn, startChatd, freePort } from "./harness.mjs";

let server;
let browser;

before(async () => {
  server = await startChatd({ port: await freePort() });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test("a lobby message reaches both; a DM shows an unread badge that reading clears, and the sender sees the receipt", async () => {
  const alice = await signIn(browser, server.url, "alice");
  const bob = await signIn(browser, server.url, "bob");

  await say(alice, "hello lobby");
  for (const page of [alice, bob]) {
    await page.locator("#messages li", { hasText: "alice: hello lobby" }).waitFor();
  }

  await openConversation(alice, "bob");
  await say(alice, "hi bob, are you there?");
  const mine = alice.locator("#messages li.mine", { hasText: "hi bob, are you there?" });
  await mine.locator(".ticks", { hasText: "✓" }).waitFor();

  const badge = bob.locator('button.conversation[data-peer="alice"] .badge');
  await badge.filter({ hasText: "1" }).waitFor();
  await bob.screenshot({ path: join(shots, "unread-badge.png") });

  await bob.click('button.conversation[data-peer="alice"]');
  await bob.locator("#messages li", { hasText: "hi bob, are you there?" }).waitFor();
  assert.equal(await badge.textContent(), "", "the badge clears when bob reads");

  await mine.locator(".ticks.read", { hasText: "✓✓" }).waitFor();
  await alice.screenshot({ path: join(shots, "read-receipt.png") });
  await alice.context().close();
  await bob.context().close();
});

test("a message that looks like HTML is shown as text", async () => {
  const alice = await signIn(browser, server.url, "alice2");
  const bob = await signIn(browser, server.url, "bob2");
  const attack = "<img src=x onerror=alert(1)>";
  await openConversation(alice, "bob2");
  await say(alice, attack);
  await bob.click('button.conversation[data-peer="alice2"]');
  const body = bob.locator("#messages li .body").filter({ hasText: attack });
  await body.waitFor();
  assert.equal(await body.textContent(), attack);
  assert.equal(await bob.locator("#messages img").count(), 0, "no element was injected");
  await bob.screenshot({ path: join(shots, "html-as-text.png") });
  await alice.context().close();
  await bob.context().close();
});

test("an attached picture goes up with a progress bar and bob sees its thumbnail", async () => {
  const alice = await signIn(browser, server.url, "alice3");
  const bob = await signIn(browser, server.url, "bob3");
  await openConversation(alice, "bob3");
  // A 600×400 PNG drawn by the browser itself.
  const png = await alice.evaluate(async () => {
    const canvas = new OffscreenCanvas(600, 400);
    const g = canvas.getContext("2d");
    g.fillStyle = "#0969da";
    g.fillRect(0, 0, 600, 400);
    g.fillStyle = "#fff";
    g.fillRect(150, 100, 300, 200);
    const blob = await canvas.convertToBlob({ type: "image/png" });
    return Array.from(new Uint8Array(await blob.arrayBuffer()));
  });
  await alice.setInputFiles("#file", { name: "picture.png", mimeType: "image/png", buffer: Buffer.from(png) });
  await alice.locator('#progress[data-percent="100"]').waitFor({ state: "attached" });

  await bob.click('button.conversation[data-peer="alice3"]');
  const img = bob.locator("#messages li img");
  await img.waitFor();
  await bob.waitForFunction(() => document.querySelector("#messages li img")?.naturalWidth > 0);
  const size = await img.evaluate((i) => [i.naturalWidth, i.naturalHeight]);
  assert.deepEqual(size, [320, 213], "the 320-pixel thumbnail");
  assert.match(await img.getAttribute("src"), /\/media\/[0-9A-Z]{26}\/thumbnail\?exp=\d+&sig=[0-9a-f]+$/);
  await bob.screenshot({ path: join(shots, "picture.png") });
  await alice.context().close();
  await bob.context().close();
});

test("after a server restart the page reconnects by itself and shows a message sent meanwhile exactly once", async () => {
  const alice = await signIn(browser, server.url, "alice4");
  const bob = await signIn(browser, server.url, "bob4");
  await openConversation(alice, "bob4");
  await say(alice, "before the restart");
  await bob.click('button.conversation[data-peer="alice4"]');
  await bob.locator("#messages li", { hasText: "before the restart" }).waitFor();

  await server.stop();
  await bob.locator('#state[data-state="online"]').waitFor({ state: "detached" });
  server = await startChatd({ port: server.port, dataDir: server.dataDir });

  // alice's page reconnects too; her message goes out once she is back.
  await alice.locator('#state[data-state="online"]').waitFor();
  await say(alice, "sent while bob was away");
  await bob.locator('#state[data-state="online"]').waitFor();
  const arrived = bob.locator("#messages li", { hasText: "sent while bob was away" });
  await arrived.waitFor();
  assert.equal(await arrived.count(), 1, "exactly once");
  assert.equal(await bob.locator("#messages li", { hasText: "before the restart" }).count(), 1, "no duplicate of the old one");
  await bob.screenshot({ path: join(shots, "after-restart.png") });
  await alice.context().close();
  await bob.context().close();
});
