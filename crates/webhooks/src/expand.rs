//! Room messages for members with no connection: a room message queues one
//! job ([`chat_store::webhooks::ROOM_MESSAGE`]), and the sender that takes
//! it turns it here into one `message.offline` per member with no
//! connection. Done off the message's path, so a message costs the store
//! the same whatever the room's size; the members' presence is read when
//! the job is taken (within the sender's poll, 200 ms, of the message).

use std::sync::Arc;

use chat_store::{Presence, StoreEngine};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Members looked at together (presence and unread counts read at once).
const CONCURRENCY: usize = 16;

/// What expanding needs: the room's members and their counts (the store),
/// and whether each has a connection (presence).
#[derive(Clone)]
pub struct Expander {
    store: Arc<dyn StoreEngine>,
    presence: Arc<dyn Presence>,
}

/// A [`chat_store::webhooks::ROOM_MESSAGE`] job's `data`.
#[derive(Deserialize)]
struct RoomMessage {
    room: String,
    id: String,
    from: String,
    message: serde_json::Value,
}

impl Expander {
    /// An expander reading members and counts from `store` and
    /// connections from `presence`.
    pub fn new(store: Arc<dyn StoreEngine>, presence: Arc<dyn Presence>) -> Self {
        Self { store, presence }
    }

    /// The `message.offline` events (JSON `{"id", "type", "data": {"user",
    /// "unread", "room", "room_unread", "message"}}`) of the room message
    /// in job `data`: one per member, its sender aside, with no connection
    /// now. `id` is `msg_{message id}_{a hash of the user}`: the same
    /// however often the job is expanded. A room deleted since has none.
    ///
    /// Errors: the job is unreadable (`Err(None)`: it never will be), or
    /// the store or presence failed (`Err(Some(why))`: try again later).
    pub(crate) async fn events(
        &self,
        data: serde_json::Value,
    ) -> Result<Vec<String>, Option<String>> {
        let job = RoomMessage::deserialize(data).map_err(|_| None)?;
        let members = match self.store.room_info(&job.room, None).await {
            Ok((_, members)) => members,
            Err(chat_store::RoomError::NotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(Some(e.to_string())),
        };
        let job = &job;
        stream::iter(members.into_iter().filter(|m| m.user != job.from))
            .map(|member| async move { self.event(job, &member.user).await })
            .buffered(CONCURRENCY)
            .try_filter_map(|event| async move { Ok(event) })
            .try_collect()
            .await
            .map_err(Some)
    }

    /// `user`'s event for `job`, if they have no connection.
    async fn event(&self, job: &RoomMessage, user: &str) -> Result<Option<String>, String> {
        let state = self.presence.state(user).await.map_err(|e| e.to_string())?;
        if state.online {
            return Ok(None);
        }
        let direct = self.store.unread(user).await.map_err(|e| e.to_string())?;
        let rooms = self
            .store
            .room_unread(user)
            .await
            .map_err(|e| e.to_string())?;
        let event = serde_json::json!({
            "id": format!("msg_{}_{}", job.id, user_hash(user)),
            "type": "message.offline",
            "data": {
                "user": user,
                "unread": direct.values().sum::<u64>(),
                "room": job.room,
                "room_unread": rooms.get(&job.room).copied().unwrap_or(0),
                "message": job.message,
            },
        });
        Ok(Some(event.to_string()))
    }
}

/// 16 hex digits of the SHA-256 of `user`: an id part that is plain ASCII
/// whatever the name (a header carries it).
fn user_hash(user: &str) -> String {
    hex::encode(&Sha256::digest(user.as_bytes())[..8])
}
