// The page's service worker: shows the notifications the server pushes
// (Web Push) while the page is closed, and opens the conversation on a
// click. The push's payload is the server's notification JSON
// (crates/push/src/notification.rs): {id, from, from_name, text?, quiet?,
// peer | room, unread}.

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let n = {};
  try {
    n = event.data ? event.data.json() : {};
  } catch {
    // Not ours: show nothing special.
  }
  const who = n.from_name || n.from || "Someone";
  const title = n.room ? `${who} in #${n.room}` : who;
  const body = n.quiet || !n.text ? "New message" : n.text;
  const where = n.room ? `room=${encodeURIComponent(n.room)}` : `peer=${encodeURIComponent(n.peer || n.from || "")}`;
  event.waitUntil(
    (async () => {
      // One notification per conversation: a newer one takes its place.
      await self.registration.showNotification(title, {
        body,
        tag: where,
        renotify: true,
        icon: "/favicon.svg",
        data: { url: `/#${where}` },
      });
      if (self.navigator.setAppBadge && Number.isInteger(n.unread)) {
        await self.navigator.setAppBadge(n.unread).catch(() => {});
      }
    })(),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = new URL(event.notification.data?.url || "/", self.location.origin).href;
  event.waitUntil(
    (async () => {
      const open = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      const mine = open.find((w) => new URL(w.url).origin === self.location.origin);
      if (mine) {
        await mine.focus();
        mine.postMessage({ type: "open", url });
      } else {
        await self.clients.openWindow(url);
      }
    })(),
  );
});
