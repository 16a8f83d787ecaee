//! Jobs of messages for someone with no connection, turned into what goes
//! out for each receiver: their `message.offline` webhook event and a push
//! to each of their browsers.
//!
//! - A direct message queues a [`chat_store::webhooks::DIRECT_MESSAGE`]
//!   job in the step that stores it, when the receiver has no connection.
//! - A room message queues one [`chat_store::webhooks::ROOM_MESSAGE`] job,
//!   whatever the room's size; its members with no connection are found
//!   here, off the message's path, when the job is taken (within the
//!   sender's poll, 200 ms, of the message).
//!
//! Events get ids of their own, `msg_{message id}_{hash of the user}`, the
//! same however often a job is expanded (a sender that died half-way), so
//! receivers drop repeats; pushes carry the conversation as their tag, so
//! a browser shows a repeat in the place of the first.

use std::sync::Arc;

use chat_push::{Conversation, PushJob};
use chat_store::push::{QUIET, mute_flag};
use chat_store::{Presence, StoreEngine};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Members looked at together (presence and counts read at once).
const CONCURRENCY: usize = 16;

/// What expanding needs, and what it makes.
#[derive(Clone)]
pub(crate) struct Expander {
    store: Arc<dyn StoreEngine>,
    presence: Arc<dyn Presence>,
    /// `message.offline` events are asked for.
    pub(crate) events: bool,
    /// Pushes are sent.
    pub(crate) pushes: bool,
}

/// A [`chat_store::webhooks::DIRECT_MESSAGE`] job's `data`.
#[derive(Deserialize)]
struct DirectMessage {
    user: String,
    unread: u64,
    message: Value,
}

/// A [`chat_store::webhooks::ROOM_MESSAGE`] job's `data`.
#[derive(Deserialize)]
struct RoomMessage {
    room: String,
    id: String,
    from: String,
    message: Value,
}

/// Why a job was not expanded.
pub(crate) enum ExpandError {
    /// It is unreadable: it never will be.
    Unreadable,
    /// The store or presence failed: try again later.
    Unavailable(String),
}

impl Expander {
    /// An expander reading `store` and `presence`, making events and/or
    /// pushes.
    pub(crate) fn new(
        store: Arc<dyn StoreEngine>,
        presence: Arc<dyn Presence>,
        events: bool,
        pushes: bool,
    ) -> Self {
        Self {
            store,
            presence,
            events,
            pushes,
        }
    }

    /// What a direct message's job, queued at `at` (ms), makes: the
    /// receiver's event and pushes (items to queue, JSON).
    pub(crate) async fn direct(&self, data: Value, at: u64) -> Result<Vec<String>, ExpandError> {
        let job = DirectMessage::deserialize(data).map_err(|_| ExpandError::Unreadable)?;
        let id = job.message["id"].as_str().unwrap_or_default().to_owned();
        let from = job.message["from"].as_str().unwrap_or_default().to_owned();
        let mut out = Vec::new();
        if self.events {
            let data = json!({"user": job.user, "unread": job.unread, "message": job.message});
            out.push(event(&id, &job.user, at, data));
        }
        if self.pushes {
            let conversation = Conversation::Peer(from);
            out.extend(
                self.pushes(&job.user, &conversation, &job.message, None)
                    .await?,
            );
        }
        Ok(out)
    }

    /// What a room message's job makes: for each member with no connection
    /// but its sender, their event and pushes. A room deleted since makes
    /// nothing.
    pub(crate) async fn room(&self, data: Value, at: u64) -> Result<Vec<String>, ExpandError> {
        let job = RoomMessage::deserialize(data).map_err(|_| ExpandError::Unreadable)?;
        let members = match self.store.room_info(&job.room, None).await {
            Ok((_, members)) => members,
            Err(chat_store::RoomError::NotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(ExpandError::Unavailable(e.to_string())),
        };
        let job = &job;
        let each: Vec<Vec<String>> =
            stream::iter(members.into_iter().filter(|m| m.user != job.from))
                .map(|member| async move { self.member(job, &member.user, at).await })
                .buffered(CONCURRENCY)
                .try_collect()
                .await?;
        Ok(each.into_iter().flatten().collect())
    }

    /// `user`'s event and pushes for room message `job`, if they have no
    /// connection. Their counts are read once, for both.
    async fn member(
        &self,
        job: &RoomMessage,
        user: &str,
        at: u64,
    ) -> Result<Vec<String>, ExpandError> {
        let state = self.presence.state(user).await.map_err(unavailable)?;
        if state.online {
            return Ok(Vec::new());
        }
        let counts = self.counts(user).await?;
        let mut out = Vec::new();
        if self.events {
            let data = json!({
                "user": user,
                "unread": counts.direct,
                "room": job.room,
                "room_unread": counts.rooms.get(&job.room).copied().unwrap_or(0),
                "message": job.message,
            });
            out.push(event(&job.id, user, at, data));
        }
        if self.pushes {
            let conversation = Conversation::Room(job.room.clone());
            out.extend(
                self.pushes(user, &conversation, &job.message, Some(counts))
                    .await?,
            );
        }
        Ok(out)
    }

    /// `user`'s unread counts: direct messages in all, and by room.
    async fn counts(&self, user: &str) -> Result<Counts, ExpandError> {
        let direct = self.store.unread(user).await.map_err(unavailable)?;
        let rooms = self.store.room_unread(user).await.map_err(unavailable)?;
        Ok(Counts {
            direct: direct.values().sum(),
            rooms,
        })
    }

    /// A push of `message` in `conversation` to each of `user`'s browsers,
    /// unless they muted it: with their unread total (direct messages and
    /// room entries), and no text when they chose the quiet preview.
    /// `counts` are the user's, when read already.
    async fn pushes(
        &self,
        user: &str,
        conversation: &Conversation,
        message: &Value,
        counts: Option<Counts>,
    ) -> Result<Vec<String>, ExpandError> {
        let subscriptions = self.store.subscriptions(user).await.map_err(unavailable)?;
        if subscriptions.is_empty() {
            return Ok(Vec::new());
        }
        let key = conversation.key();
        let flags = self.store.push_flags(user).await.map_err(unavailable)?;
        if flags.contains(&mute_flag(&key)) {
            return Ok(Vec::new());
        }
        let quiet = flags.iter().any(|f| f == QUIET);
        let counts = match counts {
            Some(counts) => counts,
            None => self.counts(user).await?,
        };
        let unread = counts.direct + counts.rooms.values().sum::<u64>();
        let notification = chat_push::notification(message, conversation, unread, quiet);
        Ok(subscriptions
            .into_iter()
            .map(|s| {
                let job = PushJob {
                    user: user.to_owned(),
                    endpoint: s.endpoint,
                    p256dh: s.p256dh,
                    auth: s.auth,
                    notification: notification.clone(),
                    topic: key.clone(),
                };
                json!({"type": crate::PUSH, "data": job}).to_string()
            })
            .collect())
    }
}

/// A user's unread counts.
struct Counts {
    /// Direct messages, in all.
    direct: u64,
    /// By room.
    rooms: chat_store::RoomUnread,
}

fn unavailable(e: impl std::fmt::Display) -> ExpandError {
    ExpandError::Unavailable(e.to_string())
}

/// The `message.offline` event of message `id` for `user`, under its own
/// id: `msg_{id}_{16 hex digits of the SHA-256 of the user}` (plain ASCII
/// whatever the name: a header carries it), timed `at` (ms: when its job
/// was queued, with the message).
fn event(id: &str, user: &str, at: u64, data: Value) -> String {
    let hash = hex::encode(&Sha256::digest(user.as_bytes())[..8]);
    json!({"id": format!("msg_{id}_{hash}"), "at": at, "type": "message.offline", "data": data})
        .to_string()
}
