//! The in-process presence engine, for `chatd`: one process holds every
//! connection, so who is online is a map in memory, and announcements go
//! through the in-process broker.
//!
//! Its limit: one node. When the process stops, all of its connections end
//! with it; after a restart nobody is online and last-seen times start
//! over. Last-seen times are kept for the most recent [`LAST_SEEN_KEPT`]
//! users to go offline; older ones are forgotten (answered as never seen).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use chat_broker::{Broker, channel, envelope};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::{OwnedRwLockReadGuard, RwLock};

use crate::presence::{ConnId, Presence, PresenceNode, PresenceState};
use crate::{StoreError, frames, now_millis};

/// Users whose last-seen time is remembered, at most.
pub const LAST_SEEN_KEPT: usize = 100_000;

#[derive(Default)]
struct State {
    /// Open connections per user.
    online: HashMap<String, HashSet<ConnId>>,
    /// When each user's last connection closed (ms).
    last_seen: HashMap<String, u64>,
    /// Users in the order they went offline, to forget the oldest.
    seen_order: VecDeque<(String, u64)>,
}

/// Presence in one process. Cloning shares it.
#[derive(Clone)]
pub struct MemoryPresence {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    broker: Arc<dyn Broker>,
    /// Where `user.online` / `user.offline` webhook events go, once asked.
    events: std::sync::OnceLock<Arc<dyn crate::WebhookQueue>>,
    /// Held alone (written) while a count changes and is announced, and
    /// shared (read) by a store from deciding whether a receiver is online
    /// to publishing: so a message is seen by a connection or kept offline,
    /// never neither. Shared, so a batch being published does not stop the
    /// next from being decided.
    gate: Arc<RwLock<()>>,
}

impl MemoryPresence {
    /// Presence announcing on `broker`.
    pub fn new(broker: Arc<dyn Broker>) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::default(),
                events: std::sync::OnceLock::new(),
                broker,
                gate: Arc::new(RwLock::new(())),
            }),
        }
    }

    /// Holds every count still until dropped: a store takes it to decide
    /// whether a receiver is online and publish the message as one step.
    /// Several stores (or batches) may hold it at once.
    pub async fn hold(&self) -> OwnedRwLockReadGuard<()> {
        Arc::clone(&self.inner.gate).read_owned().await
    }

    /// Whether `user` has a connection now.
    pub fn is_online(&self, user: &str) -> bool {
        self.lock().online.get(user).is_some_and(|c| !c.is_empty())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells `user`'s watchers. Best effort: watchers also get the current
    /// state when they (re)watch.
    async fn announce(&self, user: &str, frame: String) {
        let _ = self
            .inner
            .broker
            .publish(&channel::watch(user), envelope::text(&frame))
            .await;
    }
}

impl State {
    fn remember_seen(&mut self, user: &str, at: u64) {
        self.last_seen.insert(user.to_owned(), at);
        self.seen_order.push_back((user.to_owned(), at));
        while self.last_seen.len() > LAST_SEEN_KEPT {
            let Some((oldest, when)) = self.seen_order.pop_front() else {
                break;
            };
            // Only if that entry is still the user's latest.
            if self.last_seen.get(&oldest) == Some(&when) {
                self.last_seen.remove(&oldest);
            }
        }
        // Stale order entries (users seen again since) are dropped as they
        // reach the front; bound them too.
        if self.seen_order.len() > 2 * LAST_SEEN_KEPT {
            let last_seen = &self.last_seen;
            self.seen_order
                .retain(|(user, when)| last_seen.get(user) == Some(when));
        }
    }
}

impl Presence for MemoryPresence {
    fn connections(&self) -> BoxFuture<'static, Result<Vec<crate::NodeConnections>, StoreError>> {
        let state = self.lock();
        let open = state.online.values().filter(|c| !c.is_empty());
        let (users, connections) =
            open.fold((0, 0), |(u, c), conns| (u + 1, c + conns.len() as u64));
        let node = crate::NodeConnections {
            node: "chatd".into(),
            connections,
            users,
        };
        Box::pin(std::future::ready(Ok(vec![node])))
    }

    fn state(&self, user: &str) -> BoxFuture<'static, Result<PresenceState, StoreError>> {
        let state = self.lock();
        let answer = PresenceState {
            online: state.online.get(user).is_some_and(|c| !c.is_empty()),
            last_seen: state.last_seen.get(user).copied(),
        };
        futures_util::future::ready(Ok(answer)).boxed()
    }

    fn check(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        futures_util::future::ready(Ok(())).boxed()
    }
}

impl PresenceNode for MemoryPresence {
    fn connected(&self, user: &str, conn: ConnId) -> BoxFuture<'static, Result<bool, StoreError>> {
        let (this, user) = (self.clone(), user.to_owned());
        async move {
            let gate = this.inner.gate.write().await;
            let came_online = {
                let mut state = this.lock();
                let conns = state.online.entry(user.clone()).or_default();
                conns.insert(conn) && conns.len() == 1
            };
            if came_online {
                this.announce(&user, frames::online_frame(&user)).await;
            }
            // Queued once the gate is open: a store takes its writer lock
            // before the gate, so the queue's lock must not be taken inside it.
            drop(gate);
            if came_online {
                this.queue_event(&user, None).await;
            }
            Ok(came_online)
        }
        .boxed()
    }

    fn disconnected(
        &self,
        user: &str,
        conn: ConnId,
    ) -> BoxFuture<'static, Result<bool, StoreError>> {
        let (this, user) = (self.clone(), user.to_owned());
        async move {
            let gate = this.inner.gate.write().await;
            let went_offline = {
                let mut state = this.lock();
                let left = state
                    .online
                    .get_mut(&user)
                    .and_then(|conns| conns.remove(&conn).then_some(conns.len()));
                match left {
                    Some(0) => {
                        state.online.remove(&user);
                        let now = now_millis();
                        state.remember_seen(&user, now);
                        Some(now)
                    }
                    _ => None,
                }
            };
            if let Some(now) = went_offline {
                let (head, tail) = frames::offline_template(&user);
                this.announce(&user, format!("{head}{now}{tail}")).await;
            }
            drop(gate);
            if let Some(now) = went_offline {
                this.queue_event(&user, Some(now)).await;
            }
            Ok(went_offline.is_some())
        }
        .boxed()
    }

    fn queue_presence_events(&self, queue: Arc<dyn crate::WebhookQueue>) {
        let _ = self.inner.events.set(queue);
    }
}

impl MemoryPresence {
    /// Queues the webhook event of a change, when asked to. In the step
    /// that counts and announces (the process holds presence in memory: a
    /// crash loses both).
    async fn queue_event(&self, user: &str, last_seen: Option<u64>) {
        let Some(queue) = self.inner.events.get() else {
            return;
        };
        let event = crate::presence::presence_event(user, last_seen);
        if let Err(e) = queue.enqueue(&event).await {
            tracing::warn!(user, error = %e, "a presence event was not queued");
        }
    }
}
