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
// `seq` it saw (`?since=`), so nothing is missed; messages are handed out
// once each (duplicates dropped by id).

const BACKOFF_MIN_MS = 500;
/** Lobby lines said while its socket is (re)connecting, sent once it opens. */
const LOBBY_PENDING_MAX = 100;
const BACKOFF_MAX_MS = 10_000;

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
      this.#setState("online");
      for (const frame of this.outbox.splice(0)) socket.send(JSON.stringify(frame));
    };
    socket.onmessage = (event) => this.#receive(JSON.parse(event.data));
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.#setState("offline");
      // Sends that went out but were never acked: the server may or may not
      // have stored them. Say so; the user decides to send again.
      for (const [id, { reject }] of this.pending) reject(new Error("connection lost before the ack"));
      this.pending.clear();
      if (this.stopped) return;
      const delay = this.backoff * (0.75 + Math.random() / 2);
      this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
      setTimeout(() => this.#open(), delay);
    };
  }

  #advance(seq) {
    if (typeof seq === "number" && seq > this.cursor) {
      this.cursor = seq;
      localStorage.setItem(this.cursorKey, String(seq));
    }
  }

  #receive(frame) {
    switch (frame.type) {
      case "message":
        this.#advance(frame.seq);
        if (this.seen.has(frame.id)) return;
        this.seen.add(frame.id);
        this.dispatchEvent(new CustomEvent("message", { detail: frame }));
        return;
      case "ack": {
        this.#advance(frame.message.seq);
        this.seen.add(frame.message.id);
        const waiting = this.pending.get(frame.id);
        this.pending.delete(frame.id);
        waiting?.resolve(frame.message);
        return;
      }
      case "error": {
        const waiting = frame.id && this.pending.get(frame.id);
        if (waiting) {
          this.pending.delete(frame.id);
          waiting.reject(Object.assign(new Error(frame.message), { code: frame.code }));
        } else {
          this.dispatchEvent(new CustomEvent("error", { detail: frame }));
        }
        return;
      }
      case "synced":
        if (frame.more) this.#frame({ type: "sync", since: frame.until });
        return;
      case undefined:
        // A seed frame, {sender, receiver, message}: shown as a message.
        this.dispatchEvent(new CustomEvent("seed", { detail: frame }));
        return;
      default:
        // unread, receipt, typing, presence, joined, left
        this.dispatchEvent(new CustomEvent(frame.type, { detail: frame }));
    }
  }

  #frame(frame) {
    if (this.state === "online") this.socket.send(JSON.stringify(frame));
    else this.outbox.push(frame);
  }

  /** Sends a direct message (`to`) with a `body` and/or an uploaded `media` id; resolves with the stored message. */
  send({ to, body = "", media = null }) {
    const id = `c${Date.now().toString(36)}${(this.nextId++).toString(36)}`;
    const frame = { type: "send", id, to };
    if (body) frame.body = body;
    if (media) frame.media = { id: media };
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.#frame(frame);
    });
  }

  /** Marks the conversation with `peer` read up to message `upTo`. */
  read(peer, upTo) {
    this.#frame({ type: "read", peer, up_to: upTo });
  }

  /** Tells `to` this user is typing. */
  typing(to) {
    if (this.state === "online") this.#frame({ type: "typing", to });
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
