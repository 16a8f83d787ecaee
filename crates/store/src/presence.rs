//! Who is online: the presence interface.
//!
//! A user is online while they have a connection on a live gateway node.
//! Nodes count their connections in and out ([`PresenceNode`]); anyone may
//! ask a user's state ([`Presence`]). A user's first connection anywhere
//! and their last one closing are announced to their watchers on
//! `watch:{user}` in the same step as the count, so announcements about one
//! user keep the order of the counts, whichever nodes they come from.
//!
//! Engines: [`crate::memory::MemoryPresence`] (one process: `chatd`) and
//! [`crate::redis::presence::RedisNode`] (gateways sharing a Redis: each
//! node holds a lease; a node that dies without a word has its users
//! announced offline by a sweep once its lease lapses). The same contract
//! suite (`tests/presence.rs`) runs against both.

use futures_util::future::BoxFuture;

use crate::StoreError;

/// A connection's id, unique within its node (the gateway's hub id).
pub type ConnId = u64;

/// Whether a user has a connection anywhere, and when they last had one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceState {
    /// At least one connection on a live node.
    pub online: bool,
    /// When their last connection closed (ms since the Unix epoch), if ever.
    pub last_seen: Option<u64>,
}

/// A user found offline by a sweep: their node's lease lapsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Swept {
    /// Who.
    pub user: String,
    /// Last seen (ms since the epoch): when their node last renewed its lease.
    pub last_seen: u64,
}

/// What one live gateway node holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConnections {
    /// The node's id (a ULID per gateway process; `chatd` for the embedded one).
    pub node: String,
    /// Its open user connections (the lobby's are not counted).
    pub connections: u64,
    /// The users those connections belong to.
    pub users: u64,
}

/// Reading presence: what the presence API and `watch` ask.
pub trait Presence: Send + Sync + 'static {
    /// Whether `user` is online now (on any live node), and last seen.
    fn state(&self, user: &str) -> BoxFuture<'static, Result<PresenceState, StoreError>>;

    /// Every live node and what it holds (nodes whose lease lapsed are
    /// left out).
    fn connections(&self) -> BoxFuture<'static, Result<Vec<NodeConnections>, StoreError>>;

    /// Checks the backend works (for readiness probes).
    fn check(&self) -> BoxFuture<'static, Result<(), StoreError>>;
}

/// A node holding connections: counts them in and out.
///
/// Both calls are idempotent per connection: counting a connection in
/// twice, or out twice (a retry after a timeout that had in fact landed),
/// changes nothing the second time. A connection counted out that was never
/// counted in changes nothing either.
pub trait PresenceNode: Presence {
    /// Connection `conn` of `user` opened on this node; `true` when it is
    /// the user's only connection on any live node (they just came online,
    /// which is announced to their watchers in the same step).
    fn connected(&self, user: &str, conn: ConnId) -> BoxFuture<'static, Result<bool, StoreError>>;

    /// Connection `conn` of `user` closed on this node; `true` when the
    /// user has no connection left on any live node (they just went
    /// offline: the time is their last-seen, announced in the same step).
    fn disconnected(
        &self,
        user: &str,
        conn: ConnId,
    ) -> BoxFuture<'static, Result<bool, StoreError>>;

    /// From now on, queue `user.online` / `user.offline` webhook events
    /// with the announcements (on Redis, in the same script step, on the
    /// store's `webhooks` stream; in memory, on `queue`).
    fn queue_presence_events(&self, queue: std::sync::Arc<dyn crate::WebhookQueue>);
}

/// A `user.online` (no `last_seen`) or `user.offline` webhook event.
pub(crate) fn presence_event(user: &str, last_seen: Option<u64>) -> String {
    let data = match last_seen {
        None => serde_json::json!({"user": user}),
        Some(at) => serde_json::json!({"user": user, "last_seen": at}),
    };
    let kind = if last_seen.is_some() {
        "user.offline"
    } else {
        "user.online"
    };
    serde_json::json!({"type": kind, "data": data}).to_string()
}
