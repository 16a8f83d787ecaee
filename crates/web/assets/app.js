// The chat page: rendering and interaction. The protocol lives in client.js.
// Every piece of text from the network goes into the page as text
// (textContent), never as HTML.
import { ChatClient, Lobby, tokenUser } from "/client.js";

const $ = (id) => document.getElementById(id);
const LOBBY = "";
const TYPING_SHOWN_MS = 3000;

const page = {
  client: null,
  lobby: null,
  /** My user id, as the server names me (messages' `from`). */
  me: "",
  /** How I am shown. */
  myName: "",
  current: LOBBY,
  lobbyLines: [],
  /** peer → { messages: Map(id → message), unread, online, nextBefore, loaded } */
  conversations: new Map(),
  /** peer → id of the last of my messages they read */
  receipts: new Map(),
  /** user id → how that user is shown (their display name, or the name I typed) */
  names: new Map(),
};

/** How to show user `id`. */
function shown(id) {
  return page.names.get(id) || id;
}

function conversation(peer) {
  if (!page.conversations.has(peer)) {
    page.conversations.set(peer, { messages: new Map(), unread: 0, online: false, nextBefore: null, loaded: false });
    page.client?.watch([peer]);
  }
  return page.conversations.get(peer);
}

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

// ---- sign-in ---------------------------------------------------------------

$("signin").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token").value.trim();
  const nick = $("nick").value.trim();
  const user = token ? tokenUser(token) : nick;
  if (!user) {
    $("signin-error").textContent = "Choose a nickname (in any script: 张三, Алиса, Zoë…), or paste a token.";
    return;
  }
  start(user, token || null);
});

async function start(user, token) {
  const client = new ChatClient({ user, token });
  let me;
  try {
    // The server says who I am: the id it routes by (`Bob` is `bob`), and
    // how I am shown.
    me = await client.whoami();
  } catch (e) {
    $("signin-error").textContent = e.message;
    return;
  }
  page.me = me.user;
  page.myName = me.name || user;
  page.names.set(page.me, page.myName);
  page.client = client;
  page.lobby = new Lobby({ token });
  wire(page.client, page.lobby);
  page.client.connect();
  page.lobby.connect();
  $("me").textContent = page.myName;
  $("signin").hidden = true;
  $("app").hidden = false;
  $("text").focus();
  render();
}

// ---- events from the server -----------------------------------------------

function wire(client, lobby) {
  client.addEventListener("state", (e) => {
    $("state").textContent = e.detail;
    $("state").dataset.state = e.detail;
  });
  client.addEventListener("message", (e) => {
    const m = e.detail;
    if (m.room) return;
    if (m.from_name && m.from !== page.me) page.names.set(m.from, m.from_name);
    const peer = m.from === page.me ? m.to : m.from;
    conversation(peer).messages.set(m.id, m);
    if (page.current === peer) markRead(peer);
    render();
  });
  client.addEventListener("seed", (e) => {
    const s = e.detail;
    const peer = s.sender === page.me ? s.receiver : s.sender;
    const id = `seed-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
    const isText = typeof s.message === "string";
    const media = !isText && s.message && s.message.url && s.message.kind ? s.message : null;
    conversation(peer).messages.set(id, {
      id, from: s.sender, to: s.receiver, ts: Date.now(),
      body: isText ? s.message : media ? "" : JSON.stringify(s.message), media,
    });
    render();
  });
  client.addEventListener("unread", (e) => {
    for (const [sender, count] of Object.entries(e.detail.counts)) {
      conversation(sender).unread = page.current === sender ? 0 : count;
    }
    if (Object.keys(e.detail.counts).length === 0) for (const c of page.conversations.values()) c.unread = 0;
    renderList();
  });
  client.addEventListener("receipt", (e) => {
    page.receipts.set(e.detail.from, e.detail.up_to);
    if (page.current === e.detail.from) renderMessages();
  });
  client.addEventListener("presence", (e) => {
    conversation(e.detail.user).online = e.detail.online;
    renderList();
  });
  client.addEventListener("typing", (e) => {
    if (page.current !== e.detail.from) return;
    $("typing").textContent = `${shown(e.detail.from)} is typing…`;
    clearTimeout(page.typingTimer);
    page.typingTimer = setTimeout(() => ($("typing").textContent = ""), TYPING_SHOWN_MS);
  });
  client.addEventListener("error", (e) => notice(`${e.detail.code}: ${e.detail.message}`));
  lobby.addEventListener("text", (e) => {
    page.lobbyLines.push({ text: e.detail, ts: Date.now() });
    if (page.current === LOBBY) renderMessages();
  });
}

function markRead(peer) {
  const c = conversation(peer);
  const theirs = [...c.messages.values()].filter((m) => m.from === peer && !m.id.startsWith("seed-"));
  const last = theirs.sort((a, b) => (a.id < b.id ? -1 : 1)).pop();
  if (last && c.lastRead !== last.id) {
    c.lastRead = last.id;
    page.client.read(peer, last.id);
  }
  c.unread = 0;
}

function notice(text) {
  $("messages").append(el("li", { className: "msg notice", textContent: text }));
}

// ---- rendering -------------------------------------------------------------

function render() {
  renderList();
  renderMessages();
}

function renderList() {
  const list = $("conversations");
  const lobbyItem = list.firstElementChild;
  list.replaceChildren(lobbyItem);
  lobbyItem.querySelector("button").setAttribute("aria-current", String(page.current === LOBBY));
  for (const [peer, c] of page.conversations) {
    const button = el(
      "button",
      { className: "conversation", type: "button" },
      el("span", { className: `dot${c.online ? " online" : ""}`, title: c.online ? "online" : "offline" }),
      el("span", { className: "name", textContent: shown(peer) }),
      el("span", { className: "badge", textContent: c.unread ? String(c.unread) : "" }),
    );
    button.dataset.peer = peer;
    button.setAttribute("aria-current", String(page.current === peer));
    list.append(el("li", {}, button));
  }
}

function mediaView(media) {
  switch (media.kind) {
    case "image": {
      const img = el("img", { src: media.thumbnail_url || media.url, alt: "image", loading: "lazy" });
      img.addEventListener("click", () => window.open(media.url, "_blank", "noopener"));
      return img;
    }
    case "audio":
      return el("audio", { src: media.url, controls: true, preload: "metadata" });
    case "video":
      return el("video", { src: media.url, controls: true, preload: "metadata" });
    default:
      return el("a", { href: media.url, download: media.id, textContent: `⬇ file (${media.size} bytes)` });
  }
}

function renderMessages() {
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  if (page.current === LOBBY) {
    $("title").textContent = "Lobby";
    list.replaceChildren(...page.lobbyLines.map((l) => el("li", { className: "msg", textContent: l.text })));
  } else {
    const peer = page.current;
    $("title").textContent = shown(peer);
    const readUpTo = page.receipts.get(peer) || "";
    const messages = [...conversation(peer).messages.values()].sort((a, b) => (a.ts - b.ts) || (a.id < b.id ? -1 : 1));
    list.replaceChildren(
      ...messages.map((m) => {
        const mine = m.from === page.me;
        const item = el("li", { className: `msg${mine ? " mine" : ""}` });
        item.dataset.id = m.id;
        const time = new Date(m.ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
        const meta = el("span", { className: "meta", textContent: `${m.from_name || shown(m.from)} · ${time}` });
        if (mine) {
          const read = !m.id.startsWith("seed-") && readUpTo >= m.id;
          meta.append(el("span", { className: `ticks${read ? " read" : ""}`, textContent: read ? "✓✓" : "✓", title: read ? "read" : "delivered" }));
        }
        item.append(meta);
        if (m.body) item.append(el("span", { className: "body", textContent: m.body }));
        if (m.media) item.append(mediaView(m.media));
        return item;
      }),
    );
  }
  if (atBottom) list.scrollTop = list.scrollHeight;
}

// ---- interaction -----------------------------------------------------------

async function open(peer) {
  page.current = peer;
  $("sidebar").classList.remove("open");
  $("typing").textContent = "";
  if (peer !== LOBBY) {
    const c = conversation(peer);
    if (!c.loaded) {
      c.loaded = true;
      await loadOlder(peer);
    }
    markRead(peer);
  }
  render();
  $("messages").scrollTop = $("messages").scrollHeight;
  $("text").focus();
}

async function loadOlder(peer) {
  const c = conversation(peer);
  try {
    const page_ = await page.client.history(peer, c.nextBefore);
    for (const m of page_.messages) if (!c.messages.has(m.id)) c.messages.set(m.id, m);
    c.nextBefore = page_.next_before || null;
    c.exhausted = !page_.next_before;
  } catch (e) {
    notice(e.message);
  }
}

$("conversations").addEventListener("click", (event) => {
  const button = event.target.closest("button.conversation");
  if (button) open(button.dataset.peer);
});

$("new-conversation").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("peer").value.trim();
  if (!name) return;
  let peer;
  try {
    // Conversations are keyed by user id: `Алиса` and `алиса` are one.
    peer = (await page.client.lookup(name)).user;
  } catch (e) {
    notice(e.message);
    return;
  }
  $("peer").value = "";
  if (!page.names.has(peer)) page.names.set(peer, name);
  conversation(peer);
  open(peer);
});

$("menu").addEventListener("click", () => $("sidebar").classList.toggle("open"));

$("messages").addEventListener("scroll", async () => {
  const peer = page.current;
  const c = peer === LOBBY ? null : conversation(peer);
  if (!c || c.exhausted || c.paging || $("messages").scrollTop > 30) return;
  c.paging = true;
  const before = $("messages").scrollHeight;
  await loadOlder(peer);
  renderMessages();
  $("messages").scrollTop = $("messages").scrollHeight - before;
  c.paging = false;
});

$("composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (!text.trim()) return;
  $("text").value = "";
  if (page.current === LOBBY) {
    page.lobby.say(`${page.myName}: ${text}`);
    return;
  }
  await deliver({ to: page.current, body: text });
});

async function deliver(message) {
  try {
    const stored = await page.client.send(message);
    conversation(message.to).messages.set(stored.id, stored);
    renderMessages();
  } catch (e) {
    notice(`not sent: ${e.message}`);
  }
}

let lastTyping = 0;
$("text").addEventListener("input", () => {
  if (page.current === LOBBY || Date.now() - lastTyping < 2000) return;
  lastTyping = Date.now();
  page.client.typing(page.current);
});

async function attach(file) {
  if (page.current === LOBBY) {
    notice("attachments go in conversations, not the lobby");
    return;
  }
  const bar = $("progress");
  bar.hidden = false;
  bar.firstElementChild.style.width = "0%";
  try {
    const media = await page.client.upload(file, (p) => {
      const percent = Math.round(p * 100);
      bar.firstElementChild.style.width = `${percent}%`;
      bar.dataset.percent = String(percent);
    });
    await deliver({ to: page.current, media: media.id, body: $("text").value });
    $("text").value = "";
  } catch (e) {
    notice(e.message);
  } finally {
    bar.hidden = true;
  }
}

$("file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  event.target.value = "";
  if (file) attach(file);
});

const composer = $("composer");
composer.addEventListener("dragover", (event) => {
  event.preventDefault();
  composer.classList.add("drop");
});
composer.addEventListener("dragleave", () => composer.classList.remove("drop"));
composer.addEventListener("drop", (event) => {
  event.preventDefault();
  composer.classList.remove("drop");
  const file = event.dataTransfer.files[0];
  if (file) attach(file);
});
