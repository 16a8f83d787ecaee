// The reference client: the page's protocol layer, kept apart from rendering.
// Documented in proto/CLIENT.md. Plain ES module, no dependencies.
//
//   const client = new ChatClient({ user: "alice" });          // open mode
//   const client = new ChatClient({ token });                   // jwt mode
//   client.addEventListener("message", (e) => show(e.detail));
//   client.connect();
//   const stored = await client.send({ to: "bob", body: "hi" });
//
// What it guarantees: one connection per client, reconnected with backoff
// after any drop; on every (re)connect it asks for what came after the last
// `seq` it saw (`?since=` for the inbox, `sync {room, since}` for each room
// it has a cursor for), so nothing is missed; messages and room entries are
// handed out once each (duplicates dropped by id). A message that changes
// (edited, deleted, reacted to) comes again as an `update` event carrying
// its whole current state: replace the message with the same id.

const BACKOFF_MIN_MS = 500;
/** Lobby lines said while its socket is (re)connecting, sent once it opens. */
const LOBBY_PENDING_MAX = 100;
const BACKOFF_MAX_MS = 10_000;
/** Close code: the application's server removed the user (proto/README.md). */
const CLOSE_REMOVED = 4403;

/** The user a JWT names (its `sub`), without verifying it: the server does. */
export function tokenUser(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).sub;
  } catch {
    return null;
  }
}

/** Query string naming the caller: `token=` in jwt mode, `user=` in open mode. */
export function credentials({ user, token }) {
  return token ? `token=${encodeURIComponent(token)}` : `user=${encodeURIComponent(user)}`;
}

export class ChatClient extends EventTarget {
  constructor({ user, token, origin = location.origin }) {
    super();
    this.token = token || null;
    this.user = token ? tokenUser(token) : user;
    this.http = origin;
    this.ws = origin.replace(/^http/, "ws");
    this.state = "offline";
    this.seen = new Set();
    this.pending = new Map();
    this.outbox = [];
    this.nextId = 1;
    this.backoff = BACKOFF_MIN_MS;
    this.cursorKey = `chat.cursor.${this.user}`;
    this.cursor = Number(localStorage.getItem(this.cursorKey) || 0);
    /** Rooms whose catch-up `sync` is under way: their entries are flagged
     *  `catchUp`, and only `synced.until` moves their cursor (a live entry
     *  overtaking the replay must not make the next catch-up skip the rest). */
    this.syncing = new Set();
    /** id of a room `sync` in flight → its room, to end it on an `error`. */
    this.syncs = new Map();
    /** The connection has not had its first `unread` yet (it says which
     *  rooms to catch up). */
    this.awaitingUnread = false;
    this.stopped = false;
  }

  /** Opens (and keeps reopening) the connection. */
  connect() {
    this.stopped = false;
    this.#open();
  }

  /** Closes for good. */
  close() {
    this.stopped = true;
    this.socket?.close(1000);
  }

  #setState(state) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }

  #open() {
    this.#setState("connecting");
    const auth = this.token ? `&token=${encodeURIComponent(this.token)}` : "";
    const socket = new WebSocket(`${this.ws}/ws/${encodeURIComponent(this.user)}/?since=${this.cursor}${auth}`);
    this.socket = socket;
    socket.onopen = () => {
      this.backoff = BACKOFF_MIN_MS;
      this.awaitingUnread = true;
      this.#setState("online");
      for (const frame of this.outbox.splice(0)) socket.send(JSON.stringify(frame));
    };
    socket.onmessage = (event) => this.#receive(JSON.parse(event.data));
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      // 4403: the application's server removed this user; reconnecting
      // on our own would undo it.
      if (event.code === CLOSE_REMOVED) this.stopped = true;
      this.#setState(event.code === CLOSE_REMOVED ? "removed" : "offline");
      // Sends that went out but were never acked: the server may or may not
      // have stored them. Say so; the user decides to send again.
      for (const { reject, lost } of this.pending.values()) reject(new Error(lost));
      this.pending.clear();
      // The next connection catches every room up afresh.
      this.syncing.clear();
      this.syncs.clear();
      if (this.stopped) return;
      const delay = this.backoff * (0.75 + Math.random() / 2);
      this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
      setTimeout(() => this.#open(), delay);
    };
  }

  /** Moves the inbox cursor: only direct messages (and their acks) carry an inbox `seq`. */
  #advance(seq) {
    if (typeof seq === "number" && seq > this.cursor) {
      this.cursor = seq;
      localStorage.setItem(this.cursorKey, String(seq));
    }
  }

  /** Where room cursors live: one key per user and room ("/" never survives encoding, so keys cannot collide). */
  #roomKey(room) {
    return `chat.room-cursor.${encodeURIComponent(this.user)}/${encodeURIComponent(room)}`;
  }

  /** The highest `seq` of `room` seen on this device, or null for a room never seen here. */
  roomCursor(room) {
    const stored = localStorage.getItem(this.#roomKey(room));
    return stored === null ? null : Number(stored);
  }

  /** Moves a room's cursor forward (kept in localStorage, so a reload catches up too). */
  #advanceRoom(room, seq, { bySync = false } = {}) {
    if (typeof seq !== "number" || (this.syncing.has(room) && !bySync)) return;
    const cursor = this.roomCursor(room);
    if (cursor === null || seq > cursor) localStorage.setItem(this.#roomKey(room), String(seq));
  }

  /** Asks for the room's entries after `since`; the answer ends with `synced {room}`. */
  #syncRoom(room, since) {
    const id = this.#newId("s");
    this.syncing.add(room);
    this.syncs.set(id, room);
    this.#frame({ type: "sync", id, room, since });
  }

  /** A `message`, `member_joined` or `member_left`: handed out once, by id. */
  #entry(frame) {
    // Set before the cursor moves: a room's entries during its catch-up are
    // already in the `unread.rooms` count the page got.
    const catchUp = Boolean(frame.room) && this.syncing.has(frame.room);
    if (frame.room) this.#advanceRoom(frame.room, frame.seq);
    else this.#advance(frame.seq);
    if (this.seen.has(frame.id)) return;
    this.seen.add(frame.id);
    this.#emit(frame.type, frame, { catchUp });
  }

  /** Dispatches `detail` as event `type`; `extra` goes on the event itself, beside the frame. */
  #emit(type, detail, extra = {}) {
    this.dispatchEvent(Object.assign(new CustomEvent(type, { detail }), extra));
  }

  #receive(frame) {
    switch (frame.type) {
      case "message":
      case "member_joined":
      case "member_left":
        this.#entry(frame);
        return;
      case "update": {
        // A change to a message this user sees: an entry of the inbox or
        // room like a message (it moves the cursor), never unread.
        const message = frame.message;
        const catchUp = Boolean(message.room) && this.syncing.has(message.room);
        if (message.room) this.#advanceRoom(message.room, frame.seq);
        else this.#advance(frame.seq);
        this.#emit("update", message, { catchUp });
        return;
      }
      case "ack": {
        const message = frame.message;
        if (message.room) this.#advanceRoom(message.room, message.seq);
        else this.#advance(message.seq);
        this.seen.add(message.id);
        const waiting = this.pending.get(frame.id);
        this.pending.delete(frame.id);
        waiting?.resolve(message);
        return;
      }
      case "error": {
        const waiting = frame.id && this.pending.get(frame.id);
        if (waiting) {
          this.pending.delete(frame.id);
          waiting.reject(Object.assign(new Error(frame.message), { code: frame.code }));
          return;
        }
        const syncing = frame.id && this.syncs.get(frame.id);
        if (syncing) {
          // Refused (no member any more): stop waiting for its `synced`.
          this.syncs.delete(frame.id);
          this.syncing.delete(syncing);
        }
        this.#emit("error", frame);
        return;
      }
      case "unread":
        this.#emit("unread", frame);
        if (this.awaitingUnread) {
          // The first `unread` of a connection lists every room of the user:
          // catch up the ones this device has a cursor for. A room new to
          // this device is not replayed from 0; its history is paged over
          // HTTP when it is opened.
          this.awaitingUnread = false;
          for (const room of Object.keys(frame.rooms || {})) {
            const cursor = this.roomCursor(room);
            if (cursor !== null) this.#syncRoom(room, cursor);
          }
        }
        return;
      case "synced":
        if (frame.room) {
          this.syncs.delete(frame.id);
          this.#advanceRoom(frame.room, frame.until, { bySync: true });
          if (frame.more) this.#syncRoom(frame.room, frame.until);
          else this.syncing.delete(frame.room);
        } else if (frame.more) {
          this.#frame({ type: "sync", since: frame.until });
        }
        return;
      case "joined":
      case "left": {
        if (frame.type === "left") {
          // A membership that ended: a later one starts afresh.
          localStorage.removeItem(this.#roomKey(frame.room));
          this.syncing.delete(frame.room);
        }
        const waiting = frame.id && this.pending.get(frame.id);
        if (waiting) {
          this.pending.delete(frame.id);
          waiting.resolve(frame);
        }
        this.#emit(frame.type, frame);
        return;
      }
      case undefined:
        // A seed frame, {sender, receiver, message}: shown as a message.
        this.#emit("seed", frame);
        return;
      default:
        // receipt, typing, presence (each may name a `room`)
        this.#emit(frame.type, frame);
    }
  }

  #newId(prefix) {
    return `${prefix}${Date.now().toString(36)}${(this.nextId++).toString(36)}`;
  }

  /** Sends `frame` with a fresh id; resolves with what answers that id
   *  (rejects on its `error`, or with `lost` when the connection drops first). */
  #ask(frame, prefix, lost) {
    const id = this.#newId(prefix);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, lost });
      this.#frame({ ...frame, id });
    });
  }

  /** A call to the HTTP API as this user; rejects with the server's `message` and `code`. */
  async #api(method, path, body) {
    const init = body === undefined ? { method } : { method, headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
    const response = await fetch(`${this.http}${path}${path.includes("?") ? "&" : "?"}${credentials(this)}`, init);
    if (response.status === 204) return null;
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw Object.assign(new Error(answer.message || `${method} ${path}: ${response.status}`), { code: answer.error, status: response.status });
    }
    return answer;
  }

  #frame(frame) {
    if (this.state === "online") this.socket.send(JSON.stringify(frame));
    else this.outbox.push(frame);
  }

  /** Sends a direct message (`to`) or a room message (`room`) with a `body`
   *  and/or an uploaded `media` id, optionally answering message `replyTo`
   *  (an id of the same conversation); resolves with the stored message. */
  send({ to, room, body = "", media = null, replyTo = null }) {
    const frame = room ? { type: "send", room } : { type: "send", to };
    if (body) frame.body = body;
    if (media) frame.media = { id: media };
    if (replyTo) frame.reply_to = replyTo;
    return this.#ask(frame, "c", "connection lost before the ack");
  }

  /** A change (`edit`, `delete`, `react`, `unreact`) to `message` of the
   *  conversation with `peer` or of `room`; resolves with the message as it
   *  now is, rejects with the `error` (`forbidden`, `not_found`, …). */
  #change(type, { peer, room, message }, fields) {
    const where = room ? { room } : { peer };
    return this.#ask({ type, ...where, message, ...fields }, "m", "connection lost before the answer");
  }

  /** Replaces the text of one of this user's messages. */
  edit({ peer, room, message, body }) {
    return this.#change("edit", { peer, room, message }, { body });
  }

  /** Deletes a message for everyone (this user's own; in a room, any, for its admins). */
  deleteMessage({ peer, room, message }) {
    return this.#change("delete", { peer, room, message }, {});
  }

  /** Adds this user's reaction `emoji` (one emoji) to a message. */
  react({ peer, room, message, emoji }) {
    return this.#change("react", { peer, room, message }, { emoji });
  }

  /** Takes back this user's reaction `emoji`. */
  unreact({ peer, room, message, emoji }) {
    return this.#change("unreact", { peer, room, message }, { emoji });
  }

  /** Marks the conversation with `peer` read up to message `upTo`. */
  read(peer, upTo) {
    this.#frame({ type: "read", peer, up_to: upTo });
  }

  /** Marks `room` read up to entry `upTo` (a message or membership entry). */
  readRoom(room, upTo) {
    this.#frame({ type: "read", room, up_to: upTo });
  }

  /** Tells `to` this user is typing. */
  typing(to) {
    if (this.state === "online") this.#frame({ type: "typing", to });
  }

  /** Tells the other members of `room` this user is typing. */
  typingIn(room) {
    if (this.state === "online") this.#frame({ type: "typing", room });
  }

  /** Joins `room` (a public room that does not exist is created, this user
   *  its owner); resolves with the `joined` frame, whose `room` is the id the
   *  name stands for. Rejects with the `error` (`forbidden` for a private room). */
  join(room) {
    return this.#ask({ type: "join", room }, "j", "connection lost before the answer");
  }

  /** Leaves `room`; resolves with the `left` frame. */
  leave(room) {
    return this.#ask({ type: "leave", room }, "l", "connection lost before the answer");
  }

  /** Follows users' online state. */
  watch(users) {
    if (users.length) this.#frame({ type: "watch", users });
  }

  /** Who this client is, as the server names it: `{user, name?}` (`user`
   *  is the id messages' `from` carries; `name` how to show it). */
  async whoami() {
    const response = await fetch(`${this.http}/api/v1/me?${credentials(this)}`);
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.message || `who am I: ${response.status}`);
    return body;
  }

  /** The user id a name stands for (`Bob` is `bob` in open mode), and
   *  whether that user is online: `{user, online}`. */
  async lookup(name) {
    const response = await fetch(`${this.http}/api/v1/presence/${encodeURIComponent(name)}?${credentials(this)}`);
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.message || `${name}: ${response.status}`);
    return body;
  }

  /** A page of the conversation with `peer`, newest first. */
  async history(peer, before) {
    const page = before ? `&before=${encodeURIComponent(before)}` : "";
    const response = await fetch(`${this.http}/api/v1/conversations/${encodeURIComponent(peer)}/messages?limit=30&${credentials(this)}${page}`);
    if (!response.ok) throw new Error(`history: ${response.status}`);
    return response.json();
  }

  /** This user's rooms: `[{room, private, role, unread, last?}]`. */
  async rooms() {
    return (await this.#api("GET", "/api/v1/rooms")).rooms;
  }

  /** A room and its members: `{room, private, owner, last_seq, members: [{user, role}]}`. */
  room(room) {
    return this.#api("GET", `/api/v1/rooms/${encodeURIComponent(room)}`);
  }

  /** Creates a room owned by this user, with `members` added (those that
   *  could not be are listed in the answer's `not_added`). */
  createRoom({ name, private: isPrivate = false, members = [] }) {
    return this.#api("POST", "/api/v1/rooms", { name, private: isPrivate, members });
  }

  /** Adds `user` to `room` (`role` `member`, or `admin` by the owner): `{user, added}`. */
  addMember(room, user, role) {
    return this.#api("POST", `/api/v1/rooms/${encodeURIComponent(room)}/members`, role ? { user, role } : { user });
  }

  /** Removes `user` from `room` (this user's own name: leaves it). */
  removeMember(room, user) {
    return this.#api("DELETE", `/api/v1/rooms/${encodeURIComponent(room)}/members/${encodeURIComponent(user)}`);
  }

  /** A page of `room`'s entries (messages and membership changes), newest
   *  first: `{messages, next_before?}`; pass `next_before` as `before` for
   *  older ones. The room's cursor moves past what it hands out. */
  async roomHistory(room, before) {
    const page = before != null ? `&before=${encodeURIComponent(before)}` : "";
    const answer = await this.#api("GET", `/api/v1/rooms/${encodeURIComponent(room)}/messages?limit=30${page}`);
    for (const entry of answer.messages) this.#advanceRoom(room, entry.seq);
    return answer;
  }

  /** The server's Web Push key (VAPID, base64url) for
   *  `pushManager.subscribe`; null when Web Push is off there. */
  async pushKey() {
    try {
      return (await this.#api("GET", "/api/v1/push/vapid-public-key")).key;
    } catch (e) {
      if (e.status === 501) return null;
      throw e;
    }
  }

  /** Keeps a browser's `PushSubscription` for this user: a message for
   *  them while they have no connection is pushed to it. */
  subscribePush(subscription) {
    return this.#api("POST", "/api/v1/push/subscriptions", subscription.toJSON());
  }

  /** This user's kept subscriptions: `[{endpoint, created_at}]`. */
  async pushSubscriptions() {
    return (await this.#api("GET", "/api/v1/push/subscriptions")).subscriptions;
  }

  /** Forgets the subscription at `endpoint`. */
  unsubscribePush(endpoint) {
    return this.#api("DELETE", `/api/v1/push/subscriptions?endpoint=${encodeURIComponent(endpoint)}`);
  }

  /** This user's push settings: `{quiet, muted: {users, rooms}}`. */
  pushSettings() {
    return this.#api("GET", "/api/v1/push/settings");
  }

  /** The quiet preview on or off (notifications without the message's text). */
  setQuietPush(quiet) {
    return this.#api("PUT", "/api/v1/push/settings", { quiet });
  }

  /** Mutes (or unmutes) the conversation with `peer`, or `room`. */
  mutePush({ peer, room }, muted = true) {
    const path = room ? `rooms/${encodeURIComponent(room)}` : `users/${encodeURIComponent(peer)}`;
    return this.#api(muted ? "PUT" : "DELETE", `/api/v1/push/muted/${path}`);
  }

  /** Uploads a file, reporting progress (0..1); resolves with the media metadata. */
  upload(file, onProgress = () => {}) {
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      request.open("POST", `${this.http}/api/v1/media?${credentials(this)}`);
      request.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
      request.onload = () => {
        if (request.status === 201) resolve(JSON.parse(request.responseText));
        else reject(new Error(`upload refused (${request.status}): ${request.responseText}`));
      };
      request.onerror = () => reject(new Error("upload failed: network error"));
      const form = new FormData();
      form.append("file", file);
      request.send(form);
    });
  }
}

/** The public lobby: raw text to and from everyone, reconnected like the client. */
export class Lobby extends EventTarget {
  constructor({ token, origin = location.origin }) {
    super();
    this.url = `${origin.replace(/^http/, "ws")}/ws/${token ? `?token=${encodeURIComponent(token)}` : ""}`;
    this.backoff = BACKOFF_MIN_MS;
    this.pending = [];
  }

  connect() {
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.onopen = () => {
      this.backoff = BACKOFF_MIN_MS;
      for (const text of this.pending.splice(0)) socket.send(text);
    };
    socket.onmessage = (e) => this.dispatchEvent(new CustomEvent("text", { detail: e.data }));
    socket.onclose = () => {
      if (this.closed) return;
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    };
  }

  /** Sends a line; while the socket is not open yet (or reconnecting) the
   *  line waits and goes out when it opens, instead of being dropped. */
  say(text) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(text);
    else if (this.pending.length < LOBBY_PENDING_MAX) this.pending.push(text);
  }

  close() {
    this.closed = true;
    this.socket?.close(1000);
  }
}
