//! The durable queue of what goes out of the chat: webhook events until
//! the application's receiver takes them, and Web Push notifications until
//! the push service takes them (at least once). On Redis, a stream
//! (`webhooks`) with one consumer group (`senders`) shared by every
//! gateway, so each item is sent by one of them at a time; on SQLite, a
//! table.
//!
//! A message for someone with no connection is queued as a job, never
//! sent as it is: [`DIRECT_MESSAGE`], in the same atomic step as the
//! message, or [`ROOM_MESSAGE`] (the sender that takes it finds the room's
//! members with no connection). The sender turns a job into each
//! receiver's `message.offline` event, with an id of its own (the
//! payload's `id`, so a job taken twice makes events a receiver drops as
//! repeats), and their pushes.

use futures_util::future::BoxFuture;

use crate::StoreError;

/// An event taken from the queue to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// Its id in the queue: stable across attempts (the `webhook-id`).
    pub id: String,
    /// The event as queued: JSON `{"type", "data"}`.
    pub payload: String,
    /// This is its how-manyth attempt (1 for the first).
    pub attempt: u32,
    /// When it was queued, ms since the Unix epoch.
    pub queued_at: u64,
}

/// The queue of events for the webhook receiver.
pub trait WebhookQueue: Send + Sync + 'static {
    /// Queues an event (JSON `{"type", "data"}`) made outside a store step.
    ///
    /// Errors: [`StoreError::Unavailable`].
    fn enqueue(&self, payload: &str) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Up to `max` events due at `now` (ms), taken by `consumer` for
    /// `lease_ms`: new ones, and ones whose next attempt has come (or whose
    /// sender went quiet past its lease). No other consumer gets them
    /// meanwhile.
    ///
    /// Errors: [`StoreError::Unavailable`].
    fn due(
        &self,
        consumer: &str,
        max: usize,
        now: u64,
        lease_ms: u64,
    ) -> BoxFuture<'static, Result<Vec<Queued>, StoreError>>;

    /// Job `id` (taken by this sender) is replaced by `items`, in one
    /// step, unless it is no longer queued (another sender took it when
    /// this one's lease ran out, and finished first): `false` then, and
    /// nothing is queued. What a job makes is so queued once.
    ///
    /// Errors: [`StoreError::Unavailable`].
    fn replace(&self, id: &str, items: Vec<String>)
    -> BoxFuture<'static, Result<bool, StoreError>>;

    /// Event `id` was taken by the receiver: it leaves the queue.
    ///
    /// Errors: [`StoreError::Unavailable`].
    fn delivered(&self, id: &str) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Event `id` failed: its next attempt is at `at` (ms).
    ///
    /// Errors: [`StoreError::Unavailable`].
    fn retry(&self, id: &str, at: u64) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Event `id` is given up on: it moves to the dead letters
    /// (`webhooks:dead`, the `webhooks_dead` table).
    ///
    /// Errors: [`StoreError::Unavailable`].
    fn dead(&self, id: &str) -> BoxFuture<'static, Result<(), StoreError>>;

    /// From now on, queue `room.member_joined` / `room.member_left` events
    /// with each membership change, and `room.deleted` with each deletion (SQLite: in its transaction; Redis: right
    /// after the room's script, which touches the room's keys only).
    fn queue_room_events(&self);

    /// From now on, queue a [`DIRECT_MESSAGE`] job with each direct message
    /// kept for a user with no connection, in the step that stores it, and
    /// a [`ROOM_MESSAGE`] job with each room message (SQLite: in its
    /// transaction; Redis: right after the room's script). Off until
    /// called: a deployment without webhooks or pushes queues nothing.
    fn queue_offline_events(&self);
}

/// A `room.member_joined` (`joined`) or `room.member_left` event: `user`
/// in `room` at entry `seq`, added or removed by `by` when someone else.
pub(crate) fn room_event(
    joined: bool,
    room: &str,
    user: &str,
    by: Option<&str>,
    seq: u64,
) -> String {
    let kind = if joined {
        "room.member_joined"
    } else {
        "room.member_left"
    };
    let mut data = serde_json::json!({"room": room, "user": user, "seq": seq});
    if let Some(by) = by.filter(|by| *by != user) {
        data["by"] = by.into();
    }
    serde_json::json!({"type": kind, "data": data}).to_string()
}

/// The `room.deleted` event of `room`, which had `members` members: JSON
/// `{"type", "data": {"room", "members", "by": "system"}}` (only the
/// application deletes rooms).
pub(crate) fn room_deleted(room: &str, members: usize) -> String {
    serde_json::json!({
        "type": "room.deleted",
        "data": {"room": room, "members": members, "by": crate::SYSTEM},
    })
    .to_string()
}

/// The `type` of the job a direct message kept for a receiver with no
/// connection queues: a sender turns it into the receiver's
/// `message.offline` event and their pushes.
pub const DIRECT_MESSAGE: &str = "direct.message";

/// The [`DIRECT_MESSAGE`] job of a direct message kept for `user`, who has
/// `unread` direct messages in all: JSON `{"type", "data": {"user",
/// "unread", "message"}}`, `message` the frame their inbox delivers.
/// (Redis's `append.lua` writes the same shape.)
pub(crate) fn direct_message(user: &str, unread: u64, frame: &str) -> String {
    // unwrap: a string always serialises.
    #[allow(clippy::unwrap_used)]
    let user = serde_json::to_string(user).unwrap();
    format!(
        r#"{{"type":"{DIRECT_MESSAGE}","data":{{"user":{user},"unread":{unread},"message":{frame}}}}}"#
    )
}

/// The `type` of the job a room message queues: its members with no
/// connection each get a `message.offline` once a sender takes it.
pub const ROOM_MESSAGE: &str = "room.message";

/// The [`ROOM_MESSAGE`] job of message `id` from `from`, stored in `room`
/// at `seq` as `frame` (the `message` frame members get): JSON `{"type",
/// "data": {"room", "seq", "id", "from", "message"}}`.
pub(crate) fn room_message(room: &str, seq: u64, id: &str, from: &str, frame: &str) -> String {
    // unwrap: strings always serialise.
    #[allow(clippy::unwrap_used)]
    let (room, id, from) = (
        serde_json::to_string(room).unwrap(),
        serde_json::to_string(id).unwrap(),
        serde_json::to_string(from).unwrap(),
    );
    format!(
        r#"{{"type":"{ROOM_MESSAGE}","data":{{"room":{room},"seq":{seq},"id":{id},"from":{from},"message":{frame}}}}}"#
    )
}
