// The chat page in a real browser: two people, alice and bob.
import assert from "node:assert/strict";
import { test } from "node:test";
import { join } from "node:path";
import {
  assertNoProblems,
  expectProblems,
  joinRoom,
  openConversation,
  say,
  shots,
  signIn,
  signInWith,
  startChatd,
  suite,
} from "./harness.mjs";

const running = suite();

test("a lobby message reaches both; a DM shows an unread badge that reading clears, and the sender sees the receipt", async () => {
  const alice = await signIn(running.browser, running.server.url, "alice");
  const bob = await signIn(running.browser, running.server.url, "bob");

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

test("张三 and Алиса talk in their own scripts, each shown as they typed their name", async () => {
  const zhang = await signIn(running.browser, running.server.url, "张三");
  const alisa = await signIn(running.browser, running.server.url, "Алиса");
  assert.equal(await alisa.locator("#me").textContent(), "Алиса", "shown as typed");

  await openConversation(zhang, "Алиса");
  await say(zhang, "你好，Алиса！");
  // Routed by id (алиса), shown by name (Алиса as she typed it, 张三 as he did).
  const fromZhang = alisa.locator('button.conversation[data-peer="张三"]');
  await fromZhang.locator(".badge", { hasText: "1" }).waitFor();
  await fromZhang.click();
  const greeting = alisa.locator("#messages li", { hasText: "你好，Алиса！" });
  await greeting.waitFor();
  assert.match(await greeting.locator(".meta").textContent(), /^张三 · /);

  await say(alisa, "Привет, 张三!");
  const reply = zhang.locator("#messages li", { hasText: "Привет, 张三!" });
  await reply.waitFor();
  assert.match(await reply.locator(".meta").textContent(), /^Алиса · /, "her name as she typed it");
  assert.equal(await zhang.locator('button.conversation[data-peer="алиса"]').count(), 1, "one conversation, keyed by id");
  await zhang.screenshot({ path: join(shots, "unicode-names.png") });
  await zhang.context().close();
  await alisa.context().close();
});

test("a nickname that breaks a naming rule is refused at sign-in with the rule", async () => {
  expectProblems(/^HTTP 400: GET .*\/api\/v1\/me/, /^console error: Failed to load resource: the server responded with a status of 400/);
  const context = await running.browser.newContext();
  const page = await context.newPage();
  await page.goto(running.server.url);
  await page.fill("#nick", "ali\u200bce");
  await page.click("button[type=submit]");
  const error = page.locator("#signin-error");
  await error.filter({ hasText: "U+200B" }).waitFor();
  assert.equal(await page.locator("#app").isHidden(), true, "not signed in");
  await context.close();
});

test("a message that looks like HTML is shown as text", async () => {
  const alice = await signIn(running.browser, running.server.url, "alice2");
  const bob = await signIn(running.browser, running.server.url, "bob2");
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

test("a message cut in the middle of an emoji arrives with the replacement character in place of the half", async () => {
  const alice = await signIn(running.browser, running.server.url, "alice7");
  const bob = await signIn(running.browser, running.server.url, "bob7");
  await openConversation(alice, "bob7");
  // A text cut to a length in UTF-16 code units: its last code unit is half of 😀.
  const text = alice.locator("#text");
  await text.evaluate((input) => (input.value = "cut here 😀".slice(0, -1)));
  assert.equal(await text.evaluate((input) => input.value.isWellFormed()), false, "a lone surrogate goes out");
  await alice.press("#text", "Enter");
  await bob.click('button.conversation[data-peer="alice7"]');
  const body = bob.locator("#messages li .body", { hasText: "cut here" });
  await body.waitFor();
  assert.equal(await body.textContent(), "cut here \uFFFD");
  await alice.locator("#messages li.mine .ticks", { hasText: "✓" }).waitFor();
  await alice.context().close();
  await bob.context().close();
});

test("an attached picture goes up with a progress bar and bob sees its thumbnail", async () => {
  const alice = await signIn(running.browser, running.server.url, "alice3");
  const bob = await signIn(running.browser, running.server.url, "bob3");
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
  const alice = await signIn(running.browser, running.server.url, "alice4");
  const bob = await signIn(running.browser, running.server.url, "bob4");
  await openConversation(alice, "bob4");
  await say(alice, "before the restart");
  await bob.click('button.conversation[data-peer="alice4"]');
  await bob.locator("#messages li", { hasText: "before the restart" }).waitFor();

  // While the server is down the pages' reconnection attempts are refused.
  const refused = "Error in connection establishment: net::ERR_CONNECTION_REFUSED";
  expectProblems(new RegExp(`^(console error: WebSocket connection to 'ws://[^']+' failed|WebSocket ws://\\S+): ${refused}`));
  await running.server.stop();
  await bob.locator('#state[data-state="online"]').waitFor({ state: "detached" });
  running.server = await startChatd({ port: running.server.port, dataDir: running.server.dataDir });

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

test("an attached WAV and WebM play in their players, with a known duration", async () => {
  const alice = await signIn(running.browser, running.server.url, "alice5");
  const bob = await signIn(running.browser, running.server.url, "bob5");
  await openConversation(alice, "bob5");
  // One second of 8 kHz mono silence, and a second of video recorded by the browser.
  const { wav, webm } = await alice.evaluate(async () => {
    const samples = 8000;
    const wav = new DataView(new ArrayBuffer(44 + samples));
    const text = (offset, s) => [...s].forEach((c, i) => wav.setUint8(offset + i, c.charCodeAt(0)));
    text(0, "RIFF"); wav.setUint32(4, 36 + samples, true); text(8, "WAVEfmt ");
    wav.setUint32(16, 16, true); wav.setUint16(20, 1, true); wav.setUint16(22, 1, true);
    wav.setUint32(24, 8000, true); wav.setUint32(28, 8000, true); wav.setUint16(32, 1, true);
    wav.setUint16(34, 8, true); text(36, "data"); wav.setUint32(40, samples, true);
    for (let i = 0; i < samples; i++) wav.setUint8(44 + i, 128);

    const canvas = document.createElement("canvas");
    canvas.width = 160;
    canvas.height = 120;
    const g = canvas.getContext("2d");
    let frame = 0;
    const draw = setInterval(() => {
      g.fillStyle = `hsl(${(frame++ * 12) % 360} 70% 50%)`;
      g.fillRect(0, 0, 160, 120);
    }, 40);
    const recorder = new MediaRecorder(canvas.captureStream(25), { mimeType: "video/webm" });
    const chunks = [];
    recorder.ondataavailable = (e) => chunks.push(e.data);
    const stopped = new Promise((resolve) => (recorder.onstop = resolve));
    recorder.start(100);
    await new Promise((resolve) => setTimeout(resolve, 1200));
    recorder.stop();
    await stopped;
    clearInterval(draw);
    const webm = new Uint8Array(await new Blob(chunks, { type: "video/webm" }).arrayBuffer());
    return { wav: Array.from(new Uint8Array(wav.buffer)), webm: Array.from(webm) };
  });
  await alice.setInputFiles("#file", { name: "voice.wav", mimeType: "audio/wav", buffer: Buffer.from(wav) });
  await alice.locator("#messages li.mine audio").waitFor();
  await alice.setInputFiles("#file", { name: "clip.webm", mimeType: "video/webm", buffer: Buffer.from(webm) });
  await alice.locator("#messages li.mine video").waitFor();

  await bob.click('button.conversation[data-peer="alice5"]');
  await bob.locator("#messages li audio").waitFor();
  await bob.locator("#messages li video").waitFor();
  const audio = await bob.locator("#messages li audio").evaluate(async (a) => {
    if (a.readyState < 1) await new Promise((resolve) => a.addEventListener("loadedmetadata", resolve, { once: true }));
    return a.duration;
  });
  assert.ok(Math.abs(audio - 1) < 0.01, `the WAV lasts one second, the player says ${audio}`);
  const video = await bob.locator("#messages li video").evaluate(async (v) => {
    if (v.readyState < 1) await new Promise((resolve) => v.addEventListener("loadedmetadata", resolve, { once: true }));
    if (!Number.isFinite(v.duration)) {
      // Recorded WebM carries no duration: seeking to the end (a range
      // request) makes the player find it.
      const known = new Promise((resolve) => v.addEventListener("durationchange", () => Number.isFinite(v.duration) && resolve(), { once: false }));
      v.currentTime = 1e6;
      await known;
    }
    return v.duration;
  });
  assert.ok(video > 0.5 && video < 5, `the WebM lasts about a second, the player says ${video}`);
  await bob.screenshot({ path: join(shots, "audio-video.png") });
  await alice.context().close();
  await bob.context().close();
});

test("a room conversation: bob, away while alice writes, comes back to the room's badge and each message once, in order; members, joins, typing and reads show", async () => {
  const alice = await signIn(running.browser, running.server.url, "alice8");
  let bob = await signIn(running.browser, running.server.url, "bob8");
  await joinRoom(alice, "ops");
  await joinRoom(bob, "ops");
  await alice.locator("#messages li.notice", { hasText: "bob8 joined" }).waitFor();
  await bob.locator("#messages li.notice", { hasText: "bob8 joined" }).waitFor();
  for (const page of [alice, bob]) {
    for (const member of ["alice8", "bob8"]) await page.locator("#members li", { hasText: member }).waitFor();
  }

  // bob's page remembers how far into the room it has seen, then he goes away.
  const cursorKey = "chat.room-cursor.bob8/ops";
  const seen = Number(await bob.evaluate((key) => localStorage.getItem(key), cursorKey));
  assert.ok(seen > 0, "bob's page keeps a cursor for the room");
  const context = bob.context();
  await bob.close();

  const said = ["deploy at five", "rolled back", "all green"];
  for (const text of said) {
    await say(alice, text);
    await alice.locator("#messages li.mine", { hasText: text }).waitFor();
  }

  // Back: the count comes with the connection, the three messages with the
  // room's catch-up (which must not count them a second time).
  bob = await signInWith(context, running.server.url, "bob8");
  await bob.waitForFunction(([key, until]) => Number(localStorage.getItem(key)) >= until, [cursorKey, seen + said.length]);
  const badge = bob.locator('button.conversation[data-room="ops"] .badge');
  assert.equal(await badge.textContent(), "3", "alice's three messages, counted once");

  await bob.click('button.conversation[data-room="ops"]');
  await bob.locator("#messages li", { hasText: "all green" }).waitFor();
  assert.deepEqual(await bob.locator("#messages li .body").allTextContents(), said, "each once, in order");
  assert.equal(await badge.textContent(), "", "the badge clears when bob opens the room");
  for (const member of ["alice8", "bob8"]) await bob.locator("#members li", { hasText: member }).waitFor();

  // Bob read them (alice sees it), and is writing.
  await alice.locator("#messages li.mine", { hasText: "all green" }).locator(".ticks.read").waitFor();
  await bob.fill("#text", "on it");
  await alice.locator("#typing", { hasText: "bob8 is typing…" }).waitFor();
  await alice.screenshot({ path: join(shots, "rooms.png") });
  await alice.context().close();
  await context.close();
});

test("a private room: alice creates it with bob in it, and carol cannot join it", async () => {
  const alice = await signIn(running.browser, running.server.url, "alice9");
  const bob = await signIn(running.browser, running.server.url, "bob9");
  const carol = await signIn(running.browser, running.server.url, "carol9");

  await alice.click(".new-room summary");
  await alice.fill("#room-name", "secret");
  await alice.fill("#room-members", "bob9");
  await alice.check("#room-private");
  await alice.click("#new-room button[type=submit]");
  await alice.locator("#title", { hasText: "#secret" }).waitFor();
  await alice.locator("#members li", { hasText: "bob9" }).waitFor();

  // bob was added: his page is told, without asking.
  const secret = bob.locator('button.conversation[data-room="secret"]');
  await secret.click();
  await bob.locator("#messages li.notice", { hasText: "bob9 was added by alice9" }).waitFor();

  await carol.fill("#peer", "#secret");
  await carol.press("#peer", "Enter");
  await carol.locator("#side-error", { hasText: "forbidden" }).waitFor();
  assert.equal(await carol.locator('button.conversation[data-room="secret"]').count(), 0, "not in carol's list");
  for (const page of [alice, bob, carol]) await page.context().close();
});

test("on a phone-sized screen the conversations open from the menu, and the keyboard alone can switch conversations", async () => {
  const context = await running.browser.newContext({ viewport: { width: 390, height: 740 }, isMobile: true, hasTouch: true });
  const phone = await context.newPage();
  await phone.goto(running.server.url);
  await phone.fill("#nick", "carol6");
  await phone.press("#nick", "Enter");
  await phone.locator('#state[data-state="online"]').waitFor();
  const sidebar = phone.locator("#sidebar");
  assert.equal(await sidebar.isVisible(), false, "the list folds away on a narrow screen");
  await phone.click("#menu");
  await sidebar.waitFor({ state: "visible" });
  await phone.fill("#peer", "dave6");
  await phone.press("#peer", "Enter");
  await phone.locator("#title", { hasText: "dave6" }).waitFor();
  assert.equal(await sidebar.isVisible(), false, "choosing a conversation folds the list again");
  await phone.screenshot({ path: join(shots, "phone.png") });

  // Keyboard: focus the Lobby entry and press Enter.
  await phone.click("#menu");
  await phone.focus('button.conversation[data-peer=""]');
  await phone.keyboard.press("Enter");
  await phone.locator("#title", { hasText: "Lobby" }).waitFor();
  await context.close();
});

test("a browser looking for /favicon.ico, unasked, gets the page's icon", async () => {
  const context = await running.browser.newContext();
  const page = await context.newPage();
  const response = await page.goto(`${running.server.url}/favicon.ico`);
  assert.equal(response.status(), 200);
  assert.equal(response.headers()["content-type"], "image/svg+xml");
  const icon = await page.goto(`${running.server.url}/`).then(() => page.locator('link[rel="icon"]').getAttribute("href"));
  assert.equal((await page.request.get(`${running.server.url}${icon}`)).status(), 200, `the icon the page names, ${icon}`);
  await context.close();
});

test("the check after each test notices a console error, a missing file and an uncaught exception", async () => {
  const context = await running.browser.newContext();
  const page = await context.newPage();
  await page.goto(running.server.url);
  await Promise.all([
    page.waitForEvent("console", (m) => m.text() === "probe"),
    page.waitForEvent("pageerror"),
    page.waitForEvent("response", (r) => r.status() === 404),
    page.evaluate(() => {
      console.error("probe");
      setTimeout(() => {
        throw new Error("uncaught probe");
      });
      return fetch("/no-such-file");
    }),
  ]);
  await context.close();
  assert.throws(assertNoProblems, (e) =>
    ["console error: probe", "uncaught Error: uncaught probe", "HTTP 404: GET"].every((part) => e.message.includes(part)),
  );
});
