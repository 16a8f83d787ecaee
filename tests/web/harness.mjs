// Starts the real chatd and a real headless Chromium for the page's tests.
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { after, afterEach, before } from "node:test";
import { chromium } from "playwright-core";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const shots = join(root, "target", "web-screenshots");
mkdirSync(shots, { recursive: true });

/** A free port on loopback. */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

/** Runs chatd (the debug build the test script made) until stop(), with
 *  `settings` added to its environment. */
export async function startChatd({ port, dataDir, settings = {} } = {}) {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), "chat-web-"));
  const listen = `127.0.0.1:${port ?? 0}`;
  const env = { ...process.env, CHAT_LISTEN: listen, CHAT_DATA_DIR: dir, CHAT_LOG_FORMAT: "json", RUST_LOG: "info", ...settings };
  delete env.REDIS_URL; // the embedded engines: chatd as a person runs it
  // The debug build scripts/test made (CARGO_TARGET_DIR moves it).
  const target = process.env.CARGO_TARGET_DIR || join(root, "target");
  const child = spawn(join(target, "debug", "chatd"), [], {
    env,
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout });
  const address = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("chatd did not start in time")), 15_000);
    child.on("exit", (code) => reject(new Error(`chatd exited with ${code}`)));
    child.on("error", (e) => reject(new Error(`cannot start chatd: ${e.message} (run cargo build --bins first)`)));
    lines.on("line", (line) => {
      try {
        const message = JSON.parse(line)?.fields?.message ?? "";
        if (message.startsWith("listening on http://")) {
          clearTimeout(timer);
          resolve(message.slice("listening on http://".length));
        }
      } catch {
        // not a log line of ours
      }
    });
  });
  return {
    url: `http://${address}`,
    port: Number(address.split(":").pop()),
    dataDir: dir,
    async stop() {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/**
 * What went wrong in any page since the last check: console errors and
 * warnings, uncaught exceptions, failed requests, HTTP errors. A clean
 * session has none; `assertNoProblems` (run after every test) fails the test
 * on any that the test did not expect.
 */
const problems = [];
/** Patterns of problems the running test expects (a server it stopped, say). */
let expected = [];

function noteProblem(problem) {
  if (!expected.some((pattern) => pattern.test(problem))) problems.push(problem);
}

/**
 * Watches one page for problems, from before its first navigation, until
 * its context starts closing (what a test's own ending cuts short, such as
 * a player's pending range request, is not the page's problem).
 */
function watch(page, closing) {
  const note = (problem) => closing() || noteProblem(problem);
  page.on("console", (message) => {
    if (message.type() === "error" || message.type() === "warning") {
      const { url, lineNumber } = message.location();
      note(`console ${message.type()}: ${message.text()} (${url || page.url()}${url ? `:${lineNumber + 1}` : ""})`);
    }
  });
  page.on("pageerror", (error) => note(`uncaught ${error.name}: ${error.message}`));
  page.on("requestfailed", (request) => {
    const error = request.failure()?.errorText;
    // A player drops the rest of a response it no longer needs (it seeks,
    // or has its metadata) and asks for another range: its own choice.
    if (request.resourceType() === "media" && error === "net::ERR_ABORTED") return;
    note(`request failed: ${request.method()} ${request.url()}: ${error}`);
  });
  page.on("response", (response) => {
    if (response.status() >= 400) note(`HTTP ${response.status()}: ${response.request().method()} ${response.url()}`);
  });
  page.on("websocket", (socket) => socket.on("socketerror", (error) => note(`WebSocket ${socket.url()}: ${error}`)));
}

/**
 * Lets the running test meet problems matching these patterns (only until
 * the next check), e.g. the refused reconnections while it has stopped the
 * server on purpose.
 */
export function expectProblems(...patterns) {
  expected.push(...patterns);
}

/** Fails with every unexpected problem seen since the last check, then starts afresh. */
export function assertNoProblems() {
  const seen = problems.splice(0);
  expected = [];
  if (seen.length) throw new Error(`the pages had ${seen.length} problem(s):\n  ${seen.join("\n  ")}`);
}

/**
 * Debian's Chromium, headless, with nothing reaching out to the network.
 * Every page of every context it opens is watched for problems.
 */
export async function launchBrowser() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--autoplay-policy=no-user-gesture-required",
    ],
  });
  const newContext = browser.newContext.bind(browser);
  browser.newContext = async (options) => {
    const context = await newContext(options);
    let closing = false;
    const close = context.close.bind(context);
    context.close = (...args) => {
      closing = true;
      return close(...args);
    };
    context.on("page", (page) => watch(page, () => closing));
    return context;
  };
  return browser;
}

/**
 * The usual suite: one chatd and one Chromium for the file's tests (hooks
 * registered with node:test), every test checked for page problems after
 * it. Answers `{server, browser}`, filled in once the suite starts.
 */
export function suite() {
  const running = { server: null, browser: null };
  before(async () => {
    running.server = await startChatd({ port: await freePort() });
    running.browser = await launchBrowser();
  });
  // A clean session logs no console error or warning and has no failed request.
  afterEach(assertNoProblems);
  after(async () => {
    await running.browser?.close();
    await running.server?.stop();
  });
  return running;
}

/** A signed-in page for `nick`, failing the test on any script dialog. */
export async function signIn(browser, base, nick) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  return signInWith(context, base, nick);
}

/**
 * A new signed-in page for `nick` in `context`: what earlier pages of the
 * context stored (the client's cursors, in localStorage) is still there,
 * as when someone comes back to the page.
 */
export async function signInWith(context, base, nick) {
  const page = await context.newPage();
  page.on("dialog", (dialog) => {
    throw new Error(`a dialog opened: ${dialog.message()}`);
  });
  await page.goto(base);
  await page.fill("#nick", nick);
  await page.click("button[type=submit]");
  await page.locator('#state[data-state="online"]').waitFor();
  return page;
}

/** Opens (creating if needed) the conversation with `peer`. */
export async function openConversation(page, peer) {
  const existing = page.locator(`button.conversation[data-peer="${peer}"]`);
  if (await existing.count()) {
    await existing.click();
  } else {
    await page.fill("#peer", peer);
    await page.press("#peer", "Enter");
  }
  await page.locator("#title", { hasText: peer }).waitFor();
}

/** Joins (creating if new) the public room `name` with `#name` in the "message someone" box, and opens it. */
export async function joinRoom(page, name) {
  await page.fill("#peer", `#${name}`);
  await page.press("#peer", "Enter");
  await page.locator("#title", { hasText: `#${name}` }).waitFor();
}

export async function say(page, text) {
  await page.fill("#text", text);
  await page.press("#text", "Enter");
}
