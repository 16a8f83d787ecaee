// Notifications on the page: the service worker registers at sign-in, the
// button asks for permission only when clicked, subscribes with the
// server's key and hands the subscription to the server; a message for the
// user once the page is closed is pushed, encrypted for that browser.
//
// The real push services are out of reach here, so the browser's
// `pushManager.subscribe` answers with a subscription on a stand-in push
// service on loopback, whose keys this test holds: it decrypts what the
// server pushes (RFC 8291, with node:crypto).
import assert from "node:assert/strict";
import { createDecipheriv, createECDH, hkdfSync, randomBytes } from "node:crypto";
import { createServer } from "node:http";
import { after, afterEach, before, test } from "node:test";
import { join } from "node:path";
import {
  assertNoProblems,
  freePort,
  launchBrowser,
  openConversation,
  say,
  shots,
  signIn,
  signInWith,
  startChatd,
} from "./harness.mjs";

/** A push service on loopback, and one browser's keys for it. */
async function standIn() {
  const ecdh = createECDH("prime256v1");
  ecdh.generateKeys();
  const auth = randomBytes(16);
  const pushes = [];
  const waiting = [];
  const server = createServer((request, response) => {
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => {
      let notification;
      try {
        notification = JSON.parse(decrypt(Buffer.concat(chunks), ecdh, auth));
      } catch (e) {
        // Recorded, so the test fails on it rather than the process.
        notification = { undecryptable: e.message };
      }
      pushes.push({ headers: request.headers, notification });
      waiting.splice(0).forEach((resolve) => resolve());
      response.writeHead(201).end();
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const endpoint = `http://127.0.0.1:${server.address().port}/push/browser-1`;
  return {
    subscription: {
      endpoint,
      expirationTime: null,
      keys: { p256dh: ecdh.getPublicKey().toString("base64url"), auth: auth.toString("base64url") },
    },
    pushes,
    /** Resolves with the pushes once there are `n`; rejects after 10 s. */
    async next(n) {
      const deadline = Date.now() + 10_000;
      while (pushes.length < n) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`${pushes.length} of ${n} pushes after 10 s`);
        await new Promise((resolve) => {
          waiting.push(resolve);
          setTimeout(resolve, left);
        });
      }
      return pushes;
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** The plaintext of an `aes128gcm` body (RFC 8188) for the browser holding `ecdh` and `auth` (RFC 8291). */
function decrypt(body, ecdh, auth) {
  const salt = body.subarray(0, 16);
  const idlen = body[20];
  const serverKey = body.subarray(21, 21 + idlen);
  const record = body.subarray(21 + idlen);
  const shared = ecdh.computeSecret(serverKey);
  const info = Buffer.concat([Buffer.from("WebPush: info\0"), ecdh.getPublicKey(), serverKey]);
  const ikm = Buffer.from(hkdfSync("sha256", shared, auth, info, 32));
  const key = Buffer.from(hkdfSync("sha256", ikm, salt, Buffer.from("Content-Encoding: aes128gcm\0"), 16));
  const nonce = Buffer.from(hkdfSync("sha256", ikm, salt, Buffer.from("Content-Encoding: nonce\0"), 12));
  const decipher = createDecipheriv("aes-128-gcm", key, nonce);
  decipher.setAuthTag(record.subarray(record.length - 16));
  let plain = Buffer.concat([decipher.update(record.subarray(0, record.length - 16)), decipher.final()]);
  let end = plain.length;
  while (end > 0 && plain[end - 1] === 0) end -= 1;
  assert.equal(plain[end - 1], 2, "the last record's delimiter");
  return plain.subarray(0, end - 1).toString("utf8");
}

let service, server, browser;

before(async () => {
  service = await standIn();
  server = await startChatd({
    port: await freePort(),
    settings: { CHAT_PUSH_SERVICES: "127.0.0.1", CHAT_VAPID_SUBJECT: "mailto:ops@example.com" },
  });
  browser = await launchBrowser();
});
afterEach(assertNoProblems);
after(async () => {
  await browser?.close();
  await server?.stop();
  await service?.close();
});

test("the notifications button subscribes this browser, and a message while the page is closed is pushed to it", async () => {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  await context.grantPermissions(["notifications"], { origin: server.url });
  // The browser's push service is the stand-in; permission requests are counted.
  await context.addInitScript((subscription) => {
    window.permissionAsked = 0;
    const ask = Notification.requestPermission.bind(Notification);
    Notification.requestPermission = () => {
      window.permissionAsked += 1;
      return ask();
    };
    PushManager.prototype.subscribe = async function (options) {
      const key = new Uint8Array(options.applicationServerKey);
      window.subscribedWith = { userVisibleOnly: options.userVisibleOnly, key: btoa(String.fromCharCode(...key)) };
      return { endpoint: subscription.endpoint, toJSON: () => subscription, unsubscribe: async () => true };
    };
  }, service.subscription);
  const bob = await signInWith(context, server.url, "bob21");

  const worker = await bob.evaluate(async () => (await navigator.serviceWorker.ready).active.scriptURL);
  assert.equal(worker, `${server.url}/sw.js`, "the service worker registers at sign-in");
  const button = bob.locator("#notify");
  await button.waitFor();
  assert.equal(await bob.evaluate(() => window.permissionAsked), 0, "no permission asked before the click");
  await bob.screenshot({ path: join(shots, "push-button.png") });

  await button.click();
  await bob.locator('#notify[aria-pressed="true"]').waitFor();
  assert.equal(await bob.evaluate(() => window.permissionAsked), 1);
  const { key } = await (await fetch(`${server.url}/api/v1/push/vapid-public-key`)).json();
  const subscribedWith = await bob.evaluate(() => window.subscribedWith);
  assert.equal(subscribedWith.userVisibleOnly, true);
  assert.equal(Buffer.from(subscribedWith.key, "base64").toString("base64url"), key, "subscribed with the server's key");
  const kept = await (await fetch(`${server.url}/api/v1/push/subscriptions?user=bob21`)).json();
  assert.deepEqual(kept.subscriptions.map((s) => s.endpoint), [service.subscription.endpoint]);

  // bob closes the page; alice writes to him.
  await context.close();
  const alice = await signIn(browser, server.url, "alice21");
  await openConversation(alice, "bob21");
  await say(alice, "are you coming tonight?");
  const [push] = await service.next(1);
  assert.equal(push.headers["content-encoding"], "aes128gcm");
  assert.match(push.headers.authorization, /^vapid t=[\w-]+\.[\w-]+\.[\w-]+, k=[\w-]+$/);
  assert.deepEqual(
    { from: push.notification.from, text: push.notification.text, peer: push.notification.peer, unread: push.notification.unread },
    { from: "alice21", text: "are you coming tonight?", peer: "alice21", unread: 1 },
  );
  await alice.context().close();
});
