//! What a text frame on a user connection means.

use chat_protocol::{
    ChatMessage, ClientFrame, ErrorCode, Inbound, SeedFrame, ServerFrame, validate_room,
    validate_user,
};

use super::Endpoint;
use super::session::{Flow, Session};
use chat_broker::channel;
use chat_broker::envelope;

/// Longest client-chosen frame id.
const MAX_CLIENT_ID: usize = 64;

impl Session {
    /// Handles one text frame on `/ws/{user}/`.
    pub(crate) async fn on_user_text(&mut self, text: &str) -> Flow {
        let Endpoint::User(user) = &self.endpoint else {
            return Flow::Continue;
        };
        let user = user.clone();
        match chat_protocol::decode(text) {
            Err(e) => self.reply_error(e.id.as_deref(), e.code, &e.message),
            Ok(Inbound::Seed(seed)) => self.on_seed(&user, &seed, text).await,
            Ok(Inbound::Typed(ClientFrame::Send { id, to, room, body })) => {
                self.on_send(user, id, to, room, body).await
            }
            Ok(Inbound::Typed(ClientFrame::Join { id, room })) => self.on_join(id, room).await,
            Ok(Inbound::Typed(ClientFrame::Leave { id, room })) => self.on_leave(id, room),
        }
    }

    /// A seed frame goes to every connection of its receiver, byte for byte.
    async fn on_seed(&mut self, user: &str, seed: &SeedFrame, text: &str) -> Flow {
        if seed.sender != user {
            return self.reply_error(
                None,
                ErrorCode::SenderMismatch,
                &format!("this connection belongs to '{user}'; it cannot send as another user"),
            );
        }
        if let Err(e) = validate_user(&seed.receiver) {
            return self.reply_error(None, ErrorCode::InvalidName, &format!("receiver: {e}"));
        }
        self.publish(&channel::user(&seed.receiver), envelope::text(text))
            .await
    }

    async fn on_send(
        &mut self,
        from: String,
        id: String,
        to: Option<String>,
        room: Option<String>,
        body: String,
    ) -> Flow {
        if id.is_empty() || id.len() > MAX_CLIENT_ID {
            return self.reply_error(
                None,
                ErrorCode::InvalidFrame,
                "id must be 1 to 64 characters",
            );
        }
        let channel = match (&to, &room) {
            (Some(to), None) => match validate_user(to) {
                Ok(()) => channel::user(to),
                Err(e) => {
                    return self.reply_error(
                        Some(&id),
                        ErrorCode::InvalidName,
                        &format!("to: {e}"),
                    );
                }
            },
            (None, Some(room)) => {
                if let Err(e) = validate_room(room) {
                    return self.reply_error(
                        Some(&id),
                        ErrorCode::InvalidName,
                        &format!("room: {e}"),
                    );
                }
                if !self.rooms.contains(room) {
                    return self.reply_error(
                        Some(&id),
                        ErrorCode::NotMember,
                        &format!("join room '{room}' before sending to it"),
                    );
                }
                channel::room(room)
            }
            _ => {
                return self.reply_error(
                    Some(&id),
                    ErrorCode::InvalidFrame,
                    "a send needs exactly one of 'to' (a user) or 'room'",
                );
            }
        };
        if body.is_empty() {
            return self.reply_error(Some(&id), ErrorCode::InvalidFrame, "body is empty");
        }
        let message = ChatMessage {
            id: ulid::Ulid::new().to_string(),
            from,
            to,
            room,
            body,
            ts: envelope::now_micros() / 1000,
        };
        // Serialised once here; every receiver gets these same bytes.
        let frame = ServerFrame::Message(message.clone()).to_json();
        match self
            .registration
            .hub()
            .publish(&channel, envelope::text(&frame))
            .await
        {
            Ok(()) => self.reply(&ServerFrame::Ack { id, message }),
            Err(e) => self.reply_error(Some(&id), ErrorCode::Unavailable, &e.to_string()),
        }
    }

    async fn on_join(&mut self, id: Option<String>, room: String) -> Flow {
        if let Err(e) = validate_room(&room) {
            return self.reply_error(id.as_deref(), ErrorCode::InvalidName, &format!("room: {e}"));
        }
        if !self.rooms.contains(&room) {
            if self.rooms.len() >= self.gw.settings.max_rooms {
                return self.reply_error(
                    id.as_deref(),
                    ErrorCode::TooManyRooms,
                    &format!(
                        "a connection may join at most {} rooms",
                        self.gw.settings.max_rooms
                    ),
                );
            }
            if let Err(e) = self.registration.join(channel::room(&room)).await {
                return self.reply_error(id.as_deref(), ErrorCode::Unavailable, &e.to_string());
            }
            self.rooms.insert(room.clone());
        }
        self.reply(&ServerFrame::Joined { id, room })
    }

    fn on_leave(&mut self, id: Option<String>, room: String) -> Flow {
        if let Err(e) = validate_room(&room) {
            return self.reply_error(id.as_deref(), ErrorCode::InvalidName, &format!("room: {e}"));
        }
        if self.rooms.remove(&room) {
            self.registration.leave(&channel::room(&room));
        }
        self.reply(&ServerFrame::Left { id, room })
    }
}
