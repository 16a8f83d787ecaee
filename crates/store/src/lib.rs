//! Durable direct messages and who is online: the seed's unread mechanism
//! and offline storage, done so that nothing acknowledged is lost.
//!
//! - [`MessageStore`] (`messages.rs`): inboxes, histories, unread counters,
//!   offline lists, read markers. Engines: [`redis::messages::RedisStore`]
//!   (storing a message, counting it unread — `HINCRBY unread:{receiver}
//!   {sender} 1` — and publishing it happen in one Lua script, so counters
//!   never drift from messages and nothing is published unstored) and
//!   [`sqlite::SqliteStore`] (the embedded engine for `chatd`).
//! - [`Presence`] / [`PresenceNode`] (`presence.rs`): who is online,
//!   counted by the nodes holding connections. Engines:
//!   [`redis::presence::RedisNode`] (leases and sweeps across gateways) and
//!   [`memory::MemoryPresence`] (one process).
//! - [`RoomStore`] (`rooms.rs`): durable rooms — membership, one history
//!   per room, one read marker per member (unread counts derived, never
//!   stored). Engines: the Redis store (one hash slot per room) and the
//!   SQLite store.
//! - [`read`]: marking a conversation or a room read and telling everyone
//!   concerned.
//! - `frames.rs`: the frames stores publish, cut from the protocol's types.
//!
//! The engines are features: `redis` and `sqlite` (the in-process presence
//! is always there), so a binary links only the ones it runs.
//!
//! Every user has an **inbox**: the messages they received and sent, each
//! with a per-user sequence number, the cursor clients sync from. A message
//! that arrives while the receiver has no connection anywhere is also put on
//! their **offline** list, handed over once to the next connection that does
//! not sync by itself (the seed's clients). Each conversation has a
//! **history** for paging. One contract suite per interface runs against
//! every engine (`tests/contract.rs`, `tests/presence.rs`).

mod api_keys;
mod error;
mod frames;
pub mod lifecycle;
mod limits;
mod media_refs;
pub mod memory;
mod messages;
mod presence;
pub mod push;
pub mod read;
#[cfg(feature = "redis")]
pub mod redis;
mod revocations;
mod rooms;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod webhooks;

pub use api_keys::{ApiKey, ApiKeys};
pub use error::StoreError;
pub use lifecycle::{Change, ChangeError, ChangeRequest, Changed, Conversation, Lifecycle};
pub use limits::{Limits, RoomLimits};
pub use media_refs::MediaRefs;
pub use push::{PushStore, PushSubscription};
pub use revocations::TokenRevocations;
pub use webhooks::{Queued, WebhookQueue};

/// Who the application is in what it does through the server API (the
/// sender of its messages, who adds and removes room members): a plain
/// user id, so clients need nothing new to show it.
pub const SYSTEM: &str = "system";

/// Everything one store engine keeps (Redis, or the embedded SQLite): what
/// a gateway and the services composed beside it share.
pub trait StoreEngine:
    MessageStore
    + RoomStore
    + Lifecycle
    + MediaRefs
    + ApiKeys
    + TokenRevocations
    + chat_auth::Revocations
    + WebhookQueue
    + PushStore
{
}

impl<T> StoreEngine for T where
    T: MessageStore
        + RoomStore
        + Lifecycle
        + MediaRefs
        + ApiKeys
        + TokenRevocations
        + chat_auth::Revocations
        + WebhookQueue
        + PushStore
{
}
pub use messages::{
    Appended, Appending, Direct, FrameText, HistoryEntry, InboxEntry, MessageStore, ReadMarker,
    SENT_IDS_KEPT, SENT_IDS_TTL, Unread, conversation, now_millis,
};
pub use presence::{ConnId, NodeConnections, Presence, PresenceNode, PresenceState, Swept};
pub use rooms::{
    Admission, Member, Role, RoleChange, RoomAppended, RoomError, RoomInfo, RoomRead, RoomSend,
    RoomStore, RoomSummary, RoomUnread,
};
