// The chat page: rendering and interaction. The protocol lives in client.js.
// Every piece of text from the network goes into the page as text
// (textContent), never as HTML.
import { ChatClient, Lobby, tokenUser } from "/client.js";

const $ = (id) => document.getElementById(id);
const LOBBY = "";
const TYPING_SHOWN_MS = 3000;
/** The reaction picker's choices (any single emoji is accepted by the server). */
const REACTIONS = ["👍", "❤️", "😂", "😮", "😢", "🎉"];
/** How a quote of a message with no text but a file shows the file. */
const FILE_KINDS = { image: "📷 photo", audio: "🎤 audio", video: "🎬 video", file: "📎 file" };

const page = {
  client: null,
  lobby: null,
  /** My user id, as the server names me (messages' `from`). */
  me: "",
  /** How I am shown. */
  myName: "",
  /** The open direct conversation (a peer id), the lobby, or null while a room is open. */
  current: LOBBY,
  /** The open room, or null. */
  room: null,
  lobbyLines: [],
  /** peer → { messages: Map(id → message), unread, online, nextBefore, loaded } */
  conversations: new Map(),
  /** room → { entries: Map(id → message or membership entry), unread, private,
   *  members: [{user, role}], readers: Map(user → up_to), nextBefore, loaded } */
  rooms: new Map(),
  /** Rooms left in this session: an entry of theirs arriving late (the
   *  leaver's own `member_left` after `left`) must not bring them back. */
  left: new Set(),
  /** peer → id of the last of my messages they read */
  receipts: new Map(),
  /** user id → how that user is shown (their display name, or the name I typed) */
  names: new Map(),
  /** What the composer is doing besides writing anew: `{mode: "reply" | "edit", message}`, or null. */
  compose: null,
  /** The message whose reaction picker is open, and the one whose delete
   *  awaits its confirming second click (ids, or null). */
  picker: null,
  confirming: null,
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

function room(name) {
  if (!page.rooms.has(name)) {
    page.rooms.set(name, { entries: new Map(), unread: 0, private: false, members: [], readers: new Map(), nextBefore: null, loaded: false });
  }
  return page.rooms.get(name);
}

const isMembership = (entry) => entry.type === "member_joined" || entry.type === "member_left";

/** Whether a room entry came from someone else (it counts as unread for me). */
function fromSomeoneElse(entry) {
  return isMembership(entry) ? entry.user !== page.me && entry.by !== page.me : entry.from !== page.me;
}

/** "carol joined", "dave was removed by alice". */
function membershipText(entry) {
  const who = shown(entry.user);
  if (entry.type === "member_joined") return entry.by ? `${who} was added by ${shown(entry.by)}` : `${who} joined`;
  return entry.by ? `${who} was removed by ${shown(entry.by)}` : `${who} left`;
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
  $("me").textContent = page.myName;
  $("signin").hidden = true;
  $("app").hidden = false;
  $("text").focus();
  page.lobby.connect();
  // My rooms before the connection opens, so its `unread` frame (the
  // newer counts) lands on them last.
  await listRooms();
  page.client.connect();
  render();
  openFrom(location.hash);
  setUpNotifications();
}

async function listRooms() {
  try {
    for (const summary of await page.client.rooms()) {
      Object.assign(room(summary.room), { private: summary.private, unread: summary.unread });
    }
  } catch (e) {
    notice(`rooms: ${e.message}`);
  }
}

// ---- events from the server -----------------------------------------------

function wire(client, lobby) {
  client.addEventListener("state", (e) => {
    $("state").textContent = e.detail;
    $("state").dataset.state = e.detail;
  });
  client.addEventListener("message", (e) => {
    const m = e.detail;
    if (m.room) {
      roomEntry(m, e.catchUp);
      return;
    }
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
  client.addEventListener("update", (e) => changed(e.detail));
  client.addEventListener("member_joined", (e) => roomEntry(e.detail, e.catchUp));
  client.addEventListener("member_left", (e) => roomEntry(e.detail, e.catchUp));
  client.addEventListener("unread", (e) => {
    for (const [sender, count] of Object.entries(e.detail.counts)) {
      conversation(sender).unread = page.current === sender ? 0 : count;
    }
    if (Object.keys(e.detail.counts).length === 0) for (const c of page.conversations.values()) c.unread = 0;
    // On connect every room of mine; after a room read, that room.
    for (const [name, count] of Object.entries(e.detail.rooms || {})) {
      page.left.delete(name);
      if (page.room === name && count) markRoomRead(name);
      room(name).unread = page.room === name ? 0 : count;
    }
    renderList();
  });
  client.addEventListener("receipt", (e) => {
    const { from, up_to: upTo, room: where } = e.detail;
    if (where) {
      page.rooms.get(where)?.readers.set(from, upTo);
      if (page.room === where) renderMessages();
      return;
    }
    page.receipts.set(from, upTo);
    if (page.current === from) renderMessages();
  });
  client.addEventListener("presence", (e) => {
    conversation(e.detail.user).online = e.detail.online;
    renderList();
  });
  client.addEventListener("typing", (e) => {
    const { from, room: where } = e.detail;
    const here = where ? page.room === where && from !== page.me : page.current === from;
    if (!here) return;
    $("typing").textContent = `${shown(from)} is typing…`;
    clearTimeout(page.typingTimer);
    page.typingTimer = setTimeout(() => ($("typing").textContent = ""), TYPING_SHOWN_MS);
  });
  // Joined or left here (answering join/leave), on another device, or added
  // or removed by a member.
  client.addEventListener("joined", (e) => {
    page.left.delete(e.detail.room);
    room(e.detail.room);
    renderList();
  });
  client.addEventListener("left", (e) => {
    const name = e.detail.room;
    page.rooms.delete(name);
    page.left.add(name);
    if (page.room === name) {
      open(LOBBY);
      if (!e.detail.id) notice(`you are no longer in #${name}`);
    }
    renderList();
  });
  client.addEventListener("error", (e) => notice(`${e.detail.code}: ${e.detail.message}`));
  lobby.addEventListener("text", (e) => {
    page.lobbyLines.push({ text: e.detail, ts: Date.now() });
    if (page.current === LOBBY) renderMessages();
  });
}

/** A room's message or membership entry, live or from a catch-up (whose
 *  entries the `unread` count on connect has counted already). */
function roomEntry(entry, catchUp) {
  if (page.left.has(entry.room)) return;
  if (entry.from_name && entry.from !== page.me) page.names.set(entry.from, entry.from_name);
  const r = room(entry.room);
  r.entries.set(entry.id, entry);
  // My own leaving or removal: the room is mine no more (`left` follows),
  // so nothing to mark read or look up.
  const gone = entry.type === "member_left" && entry.user === page.me;
  if (page.room === entry.room && !gone) {
    markRoomRead(entry.room);
    if (isMembership(entry)) refreshMembers(entry.room);
  } else if (!catchUp && fromSomeoneElse(entry)) {
    r.unread += 1;
  }
  render();
}

/** A message as it now is (edited, deleted, reacted to): from an `update`,
 *  or from the answer to my own change. Replaces the one with its id. */
function changed(m) {
  if (m.room) {
    if (page.left.has(m.room)) return;
    const r = room(m.room);
    const was = r.entries.get(m.id);
    r.entries.set(m.id, m);
    // A deleted message leaves the room's unread count if it was in it; the
    // server's derived count says whether it was.
    if (m.deleted && !was?.deleted && page.room !== m.room && r.unread > 0 && m.from !== page.me) refreshRoomCounts();
  } else {
    conversation(m.from === page.me ? m.to : m.from).messages.set(m.id, m);
  }
  if (m.deleted && page.compose?.message.id === m.id) setCompose(null);
  renderMessages();
}

/** Asks the server for my rooms' unread counts again (the open room's stays 0). */
async function refreshRoomCounts() {
  const asked = (page.countsAsked = (page.countsAsked || 0) + 1);
  let summaries;
  try {
    summaries = await page.client.rooms();
  } catch (e) {
    notice(`rooms: ${e.message}`);
    return;
  }
  // An older answer overtaking a newer one would bring back stale counts.
  if (asked !== page.countsAsked) return;
  for (const summary of summaries) {
    if (page.rooms.has(summary.room) && page.room !== summary.room) page.rooms.get(summary.room).unread = summary.unread;
  }
  renderList();
}

/** The room's latest entry, by `seq`. */
function lastEntry(r) {
  let last = null;
  for (const entry of r.entries.values()) if (!last || entry.seq > last.seq) last = entry;
  return last;
}

function markRoomRead(name) {
  const r = room(name);
  const last = lastEntry(r);
  if (last && r.lastRead !== last.id) {
    r.lastRead = last.id;
    page.client.readRoom(name, last.id);
  }
  r.unread = 0;
}

/** Fetches the open room's members (again after each membership entry). */
async function refreshMembers(name) {
  const r = room(name);
  const asked = (r.membersAsked = (r.membersAsked || 0) + 1);
  let view;
  try {
    view = await page.client.room(name);
  } catch (e) {
    notice(`${name}: ${e.message}`);
    return;
  }
  // An older answer overtaking a newer one would show a stale list.
  if (asked !== r.membersAsked) return;
  r.members = view.members;
  r.private = view.private;
  if (page.room === name) renderRoomBar();
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
  renderRoomBar();
  renderMessages();
}

function renderList() {
  const list = $("conversations");
  const lobbyItem = list.firstElementChild;
  list.replaceChildren(lobbyItem);
  lobbyItem.querySelector("button").setAttribute("aria-current", String(page.current === LOBBY));
  for (const [name, r] of page.rooms) {
    const button = el(
      "button",
      { className: "conversation room", type: "button" },
      el("span", { className: "hash", textContent: "#", title: r.private ? "private room" : "room" }),
      el("span", { className: "name", textContent: name }),
      r.private ? el("span", { className: "private", textContent: "private", title: "only members add members" }) : "",
      el("span", { className: "badge", textContent: r.unread ? String(r.unread) : "" }),
    );
    button.dataset.room = name;
    button.setAttribute("aria-current", String(page.room === name));
    list.append(el("li", {}, button));
  }
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

/** The conversation message `m` belongs to, as the client's changes name it. */
function whereOf(m) {
  return m.room ? { room: m.room } : { peer: m.from === page.me ? m.to : m.from };
}

/** The messages of the conversation `m` belongs to (id → message). */
function siblings(m) {
  return m.room ? room(m.room).entries : conversation(whereOf(m).peer).messages;
}

/** Whether I may delete `m`: my own, or any in a room I administer. */
function mayDelete(m) {
  if (m.from === page.me) return true;
  if (!m.room) return false;
  const role = room(m.room).members.find((member) => member.user === page.me)?.role;
  return role === "owner" || role === "admin";
}

/** The quote a reply shows: who wrote the original and its first words
 *  (or its file's kind); blank once the original is deleted. */
function quoteView(m) {
  const q = m.reply_to;
  // The server empties the quote in place; an `update` seen here says it first.
  const deleted = q.deleted || siblings(m).get(q.id)?.deleted;
  const text = deleted ? "deleted message" : q.excerpt || FILE_KINDS[q.media_kind] || "";
  const quote = el(
    "blockquote",
    { className: `quote${deleted ? " deleted" : ""}`, title: "show the original" },
    el("span", { className: "quote-from", textContent: deleted ? "" : shown(q.from) }),
    el("span", { className: "excerpt", textContent: text }),
  );
  quote.dataset.quotes = q.id;
  return quote;
}

/** The reactions under `m`, each a button that adds or takes back mine. */
function reactionsView(m) {
  const chips = Object.entries(m.reactions || {}).map(([emoji, { count, users }]) => {
    const chosen = users.includes(page.me);
    const chip = el("button", {
      type: "button",
      className: `reaction${chosen ? " chosen" : ""}`,
      textContent: `${emoji} ${count}`,
      title: users.map(shown).join(", "),
    });
    chip.dataset.emoji = emoji;
    chip.dataset.action = chosen ? "unreact" : "react";
    chip.setAttribute("aria-pressed", String(chosen));
    return chip;
  });
  return el("div", { className: "reactions" }, ...chips);
}

/** The buttons on a message: reply, react (a picker), edit (mine), delete (mine, or as a room admin). */
function actionsView(m) {
  const button = (action, textContent, label) => {
    const b = el("button", { type: "button", className: action, textContent, title: label });
    b.setAttribute("aria-label", label);
    b.dataset.action = action;
    return b;
  };
  const actions = el("div", { className: "actions" }, button("reply", "↩", "Reply"), button("pick", "☺", "React"));
  if (m.from === page.me) actions.append(button("edit", "✎", "Edit"));
  if (mayDelete(m)) {
    actions.append(page.confirming === m.id ? button("delete", "Delete for everyone?", "Delete for everyone") : button("confirm", "🗑", "Delete"));
  }
  if (page.picker === m.id) {
    const picker = el("div", { className: "picker", role: "group" });
    picker.setAttribute("aria-label", "Reactions");
    for (const emoji of REACTIONS) {
      const choice = button("react", emoji, `React with ${emoji}`);
      choice.dataset.emoji = emoji;
      picker.append(choice);
    }
    actions.append(picker);
  }
  return actions;
}

/** One message; `readBy` (for mine) is who has read it: "read", or the room members' names. */
function messageItem(m, readBy) {
  const mine = m.from === page.me;
  const item = el("li", { className: `msg${mine ? " mine" : ""}${m.deleted ? " deleted" : ""}` });
  item.dataset.id = m.id;
  const time = new Date(m.ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const meta = el("span", { className: "meta", textContent: `${m.from_name || shown(m.from)} · ${time}` });
  if (m.edited_at && !m.deleted) meta.append(el("span", { className: "edited", textContent: " · edited", title: new Date(m.edited_at).toLocaleString() }));
  if (mine) {
    const read = Boolean(readBy);
    meta.append(el("span", { className: `ticks${read ? " read" : ""}`, textContent: read ? "✓✓" : "✓", title: read ? readBy : "delivered" }));
  }
  item.append(meta);
  if (m.deleted) {
    item.append(el("span", { className: "body tombstone", textContent: "message deleted" }));
    return item;
  }
  if (m.reply_to) item.append(quoteView(m));
  if (m.body) item.append(el("span", { className: "body", textContent: m.body }));
  if (m.media) item.append(mediaView(m.media));
  if (m.reactions && Object.keys(m.reactions).length) item.append(reactionsView(m));
  // Seed frames (the tutorial's shape) are not stored: nothing to change.
  if (!m.id.startsWith("seed-")) item.append(actionsView(m));
  return item;
}

function renderMessages() {
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  if (page.room) {
    const r = room(page.room);
    $("title").textContent = `#${page.room}${r.private ? " · private" : ""}`;
    const entries = [...r.entries.values()].sort((a, b) => a.seq - b.seq);
    const readers = [...r.readers].filter(([user]) => user !== page.me);
    list.replaceChildren(
      ...entries.map((entry) => {
        if (isMembership(entry)) {
          const item = el("li", { className: "msg notice membership", textContent: membershipText(entry) });
          item.dataset.id = entry.id;
          return item;
        }
        const readBy = readers.filter(([, upTo]) => upTo >= entry.id).map(([user]) => shown(user));
        return messageItem(entry, readBy.length ? `read by ${readBy.join(", ")}` : "");
      }),
    );
  } else if (page.current === LOBBY) {
    $("title").textContent = "Lobby";
    list.replaceChildren(...page.lobbyLines.map((l) => el("li", { className: "msg", textContent: l.text })));
  } else {
    const peer = page.current;
    $("title").textContent = shown(peer);
    const readUpTo = page.receipts.get(peer) || "";
    const messages = [...conversation(peer).messages.values()].sort((a, b) => (a.ts - b.ts) || (a.id < b.id ? -1 : 1));
    list.replaceChildren(...messages.map((m) => messageItem(m, !m.id.startsWith("seed-") && readUpTo >= m.id ? "read" : "")));
  }
  if (atBottom) list.scrollTop = list.scrollHeight;
}

/** The open room's members (with a remove button where my role allows it), or nothing. */
function renderRoomBar() {
  const bar = $("room-bar");
  bar.hidden = !page.room;
  if (!page.room) return;
  const r = room(page.room);
  const myRole = r.members.find((m) => m.user === page.me)?.role;
  $("members").replaceChildren(
    ...r.members.map((m) => {
      const item = el("li", {}, el("span", { className: "name", textContent: shown(m.user) }));
      item.dataset.user = m.user;
      if (m.role !== "member") item.append(el("span", { className: "role", textContent: m.role }));
      const mayRemove = m.user !== page.me && (myRole === "owner" || (myRole === "admin" && m.role === "member"));
      if (mayRemove) {
        const remove = el("button", { type: "button", className: "remove", textContent: "×", title: `remove ${shown(m.user)}` });
        remove.setAttribute("aria-label", `remove ${shown(m.user)}`);
        remove.dataset.user = m.user;
        item.append(remove);
      }
      return item;
    }),
  );
}

// ---- interaction -----------------------------------------------------------

/** Another conversation opens: a reply or edit under way in this one ends. */
function leaveCompose() {
  if (page.compose?.mode === "edit") $("text").value = "";
  setCompose(null);
  page.picker = null;
  page.confirming = null;
}

async function open(peer) {
  page.current = peer;
  page.room = null;
  leaveCompose();
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

async function openRoom(name) {
  page.room = name;
  page.current = null;
  leaveCompose();
  $("sidebar").classList.remove("open");
  $("typing").textContent = "";
  const r = room(name);
  r.unread = 0;
  render();
  refreshMembers(name);
  if (!r.loaded) {
    r.loaded = true;
    await loadOlderRoom(name);
  }
  if (page.room !== name) return;
  markRoomRead(name);
  render();
  $("messages").scrollTop = $("messages").scrollHeight;
  $("text").focus();
}

async function loadOlderRoom(name) {
  const r = room(name);
  try {
    const older = await page.client.roomHistory(name, r.nextBefore);
    for (const entry of older.messages) if (!r.entries.has(entry.id)) r.entries.set(entry.id, entry);
    r.nextBefore = older.next_before ?? null;
    r.exhausted = older.next_before == null;
  } catch (e) {
    notice(e.message);
  }
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
  if (!button) return;
  if (button.dataset.room !== undefined) openRoom(button.dataset.room);
  else open(button.dataset.peer);
});

/** Errors of the sidebar's forms (joining, creating), kept apart from the
 *  conversation so the next render does not wipe them. */
function sideError(e) {
  $("side-error").textContent = e ? (e.code ? `${e.code}: ${e.message}` : e.message) : "";
}

$("new-conversation").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("peer").value.trim();
  if (!name) return;
  sideError(null);
  if (name.startsWith("#")) {
    // `#name` joins a public room (created if it does not exist).
    try {
      const joined = await page.client.join(name.slice(1).trim());
      $("peer").value = "";
      room(joined.room);
      openRoom(joined.room);
    } catch (e) {
      sideError(e);
    }
    return;
  }
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

$("new-room").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("room-name").value.trim().replace(/^#/, "");
  if (!name) return;
  sideError(null);
  const members = $("room-members").value.split(/[\s,]+/).filter(Boolean);
  try {
    const created = await page.client.createRoom({ name, private: $("room-private").checked, members });
    $("new-room").reset();
    page.left.delete(created.room);
    Object.assign(room(created.room), { private: created.private, members: created.members });
    if (created.not_added?.length) {
      $("side-error").textContent = `not added: ${created.not_added.map((n) => `${n.user} (${n.error})`).join(", ")}`;
    }
    openRoom(created.room);
  } catch (e) {
    sideError(e);
  }
});

$("leave").addEventListener("click", async () => {
  const name = page.room;
  if (!name) return;
  try {
    await page.client.leave(name);
  } catch (e) {
    notice(`not left: ${e.message}`);
  }
});

$("add-member").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = page.room;
  const user = $("member-name").value.trim();
  if (!name || !user) return;
  try {
    await page.client.addMember(name, user);
    $("member-name").value = "";
  } catch (e) {
    notice(`not added: ${e.code ? `${e.code}: ` : ""}${e.message}`);
  }
});

$("members").addEventListener("click", async (event) => {
  const button = event.target.closest("button.remove");
  if (!button || !page.room) return;
  try {
    await page.client.removeMember(page.room, button.dataset.user);
  } catch (e) {
    notice(`not removed: ${e.code ? `${e.code}: ` : ""}${e.message}`);
  }
});

$("menu").addEventListener("click", () => $("sidebar").classList.toggle("open"));

$("messages").addEventListener("scroll", async () => {
  const peer = page.current;
  const c = page.room ? room(page.room) : peer === LOBBY ? null : conversation(peer);
  if (!c || c.exhausted || c.paging || $("messages").scrollTop > 30) return;
  c.paging = true;
  const before = $("messages").scrollHeight;
  await (page.room ? loadOlderRoom(page.room) : loadOlder(peer));
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
  const compose = page.compose;
  setCompose(null);
  if (compose?.mode === "edit") {
    await change("edit", compose.message, { body: text });
    return;
  }
  await deliver({ ...target(), body: text, replyTo: compose?.message.id });
});

/** What the composer does with its text: reply to or edit `message` (null: a new message). */
function setCompose(compose) {
  page.compose = compose;
  const bar = $("compose-context");
  bar.hidden = !compose;
  if (!compose) return;
  const m = compose.message;
  const what = compose.mode === "edit" ? "Editing your message" : `Replying to ${m.from_name || shown(m.from)}`;
  const excerpt = m.body || FILE_KINDS[m.media?.kind] || "";
  $("compose-what").textContent = what;
  $("compose-excerpt").textContent = excerpt.length > 80 ? `${excerpt.slice(0, 80)}…` : excerpt;
  if (compose.mode === "edit") $("text").value = m.body || "";
  $("text").focus();
}

$("compose-cancel").addEventListener("click", () => {
  if (page.compose?.mode === "edit") $("text").value = "";
  setCompose(null);
});
$("text").addEventListener("keydown", (event) => {
  if (event.key === "Escape" && page.compose) $("compose-cancel").click();
});

/** Sends a change of `m` (`edit`, `delete`, `react`, `unreact`). What it
 *  made of the message comes back as an `update`, in order with everyone
 *  else's changes (applying the answer itself could overwrite a newer one). */
async function change(type, m, fields = {}) {
  const request = { ...whereOf(m), message: m.id, ...fields };
  const call = { edit: "edit", delete: "deleteMessage", react: "react", unreact: "unreact" }[type];
  try {
    await page.client[call](request);
  } catch (e) {
    notice(`not ${type === "delete" ? "deleted" : `${type}ed`}: ${e.code ? `${e.code}: ` : ""}${e.message}`);
  }
}

// The buttons on messages: one listener for them all.
$("messages").addEventListener("click", (event) => {
  const item = event.target.closest("li.msg[data-id]");
  if (!item) return;
  const m = (page.room ? room(page.room).entries : conversation(page.current).messages).get(item.dataset.id);
  if (!m) return;
  const quote = event.target.closest("blockquote.quote");
  if (quote) {
    const original = $("messages").querySelector(`li[data-id="${CSS.escape(quote.dataset.quotes)}"]`);
    original?.scrollIntoView({ block: "center" });
    original?.classList.add("flash");
    setTimeout(() => original?.classList.remove("flash"), 1200);
    return;
  }
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const action = button.dataset.action;
  // Any click but the delete's own confirming one takes the question back.
  if (action !== "delete") page.confirming = null;
  if (action !== "pick") page.picker = null;
  switch (action) {
    case "reply":
    case "edit":
      setCompose({ mode: action, message: m });
      break;
    case "pick":
      page.picker = page.picker === m.id ? null : m.id;
      break;
    case "confirm":
      page.confirming = m.id;
      break;
    case "delete":
      page.confirming = null;
      change("delete", m);
      break;
    case "react":
    case "unreact":
      change(action, m, { emoji: button.dataset.emoji });
      break;
  }
  renderMessages();
});

/** Where the composer writes: the open room, or the open conversation's peer. */
function target() {
  return page.room ? { room: page.room } : { to: page.current };
}

async function deliver(message) {
  try {
    const stored = await page.client.send(message);
    if (stored.room) {
      if (!page.left.has(stored.room)) room(stored.room).entries.set(stored.id, stored);
    } else conversation(message.to).messages.set(stored.id, stored);
    renderMessages();
  } catch (e) {
    notice(`not sent: ${e.message}`);
  }
}

let lastTyping = 0;
$("text").addEventListener("input", () => {
  if (page.current === LOBBY || Date.now() - lastTyping < 2000) return;
  lastTyping = Date.now();
  if (page.room) page.client.typingIn(page.room);
  else page.client.typing(page.current);
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
    // A file can answer a message too; an edit changes text only.
    const replyTo = page.compose?.mode === "reply" ? page.compose.message.id : null;
    await deliver({ ...target(), media: media.id, body: page.compose?.mode === "edit" ? "" : $("text").value, replyTo });
    if (page.compose?.mode !== "edit") {
      $("text").value = "";
      setCompose(null);
    }
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

// ---- notifications (Web Push) ----------------------------------------------

/** The service worker showing notifications (/sw.js), once registered. */
let worker = null;
/** The server's Web Push key, when Web Push is on there. */
let pushKey = null;

/** Opens the conversation a notification's link names: `#peer=bob`, `#room=ops`. */
function openFrom(hash) {
  const found = /^#(peer|room)=(.+)$/.exec(hash || "");
  if (!found) return;
  const name = decodeURIComponent(found[2]);
  history.replaceState(null, "", location.pathname + location.search);
  if (found[1] === "room") openRoom(name);
  else open(name);
}

function setNotify(on) {
  const button = $("notify");
  button.setAttribute("aria-pressed", String(on));
  button.textContent = on ? "🔔 On" : "🔔 Notify me";
  button.title = on
    ? "Notifications are on for when this page is closed; click to turn them off"
    : "Get a notification for messages while this page is closed";
}

/** Registers the service worker, and shows the button when the server
 *  pushes. Permission is asked only when the button is clicked. */
async function setUpNotifications() {
  if (!("serviceWorker" in navigator) || !("PushManager" in window)) return;
  try {
    worker = await navigator.serviceWorker.register("/sw.js");
    pushKey = await page.client.pushKey();
  } catch (e) {
    notice(`notifications: ${e.message}`);
    return;
  }
  if (!pushKey) return;
  const subscription = await worker.pushManager.getSubscription();
  let mine = false;
  if (subscription && Notification.permission === "granted") {
    const kept = await page.client.pushSubscriptions().catch(() => []);
    mine = kept.some((s) => s.endpoint === subscription.endpoint);
  }
  setNotify(mine);
  $("notify").hidden = false;
}

/** base64url → bytes (the key `pushManager.subscribe` takes). */
function bytes(base64url) {
  const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

$("notify").addEventListener("click", async () => {
  try {
    if ($("notify").getAttribute("aria-pressed") === "true") {
      const subscription = await worker.pushManager.getSubscription();
      if (subscription) {
        await page.client.unsubscribePush(subscription.endpoint).catch(() => {});
        await subscription.unsubscribe();
      }
      setNotify(false);
      return;
    }
    if ((await Notification.requestPermission()) !== "granted") {
      notice("Notifications are blocked for this page in the browser's settings.");
      return;
    }
    const subscription = await worker.pushManager.subscribe({
      userVisibleOnly: true,
      applicationServerKey: bytes(pushKey),
    });
    await page.client.subscribePush(subscription);
    setNotify(true);
  } catch (e) {
    notice(`notifications: ${e.message}`);
  }
});

// A click on a notification while this page is open brings it here.
navigator.serviceWorker?.addEventListener("message", (event) => {
  if (event.data?.type === "open" && page.client) openFrom(new URL(event.data.url).hash);
});
