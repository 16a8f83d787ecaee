//! Webhooks: what happens in the chat, told to the application's own
//! server. Events wait in the store's durable queue
//! ([`chat_store::WebhookQueue`]); every gateway runs a [`Sender`] that
//! takes due events (each one by one sender at a time), posts them signed
//! as the Standard Webhooks specification says (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature: v1,…`, HMAC-SHA256 with the
//! `whsec_` secret), and on anything but a 2xx within the timeout tries
//! again later: exponential backoff with jitter, for up to a day, then the
//! event goes to the dead letters and is counted.
//!
//! The body is `{"type", "timestamp", "data"}` (the specification's
//! recommended shape); `webhook-id` is the event's queue id (`evt_…`), or
//! for `message.offline` one made from the message and its receiver
//! (`msg_…`), the same on every attempt, so a receiver drops duplicates
//! by it.
//!
//! The same queue and senders carry Web Push (`chat-push`): a message for
//! someone with no connection is queued as a job, which the sender that
//! takes it turns into that receiver's `message.offline` event and a push
//! to each of their browsers (`expand.rs`); a room message is one job for
//! all its members.

mod expand;
mod sender;
mod settings;

pub use sender::{Sender, SenderMetrics};

/// The `type` of a queued push: `data` is a [`chat_push::PushJob`].
pub const PUSH: &str = "push";
pub use settings::WebhookSettings;

/// The events there are, as `type` names them.
pub const EVENTS: [&str; 6] = [
    "message.offline",
    "user.online",
    "user.offline",
    "room.member_joined",
    "room.member_left",
    "room.deleted",
];
