//! Rooms: join, leave, and messages to the members online now.

use chat_broker::{channel, envelope};
use chat_protocol::{ChatMessage, ErrorCode, ServerFrame, validate_room};

use super::session::{Flow, Session};

impl Session {
    /// A room message: published to the members online now (rooms keep no history).
    pub(crate) async fn send_to_room(
        &mut self,
        id: String,
        room: String,
        message: ChatMessage,
    ) -> Flow {
        if let Err(e) = validate_room(&room) {
            return self.reply_error(Some(&id), ErrorCode::InvalidName, &format!("room: {e}"));
        }
        if !self.rooms.contains(&room) {
            return self.reply_error(
                Some(&id),
                ErrorCode::NotMember,
                &format!("join room '{room}' before sending to it"),
            );
        }
        // Serialised once here; every receiver gets these same bytes.
        let frame = ServerFrame::Message(message.clone()).to_json();
        match self
            .registration
            .hub()
            .publish(&channel::room(&room), envelope::text(&frame))
            .await
        {
            Ok(()) => self.reply(&ServerFrame::Ack { id, message }),
            Err(e) => self.unavailable(Some(&id), &e),
        }
    }

    pub(crate) async fn on_join(&mut self, id: Option<String>, room: String) -> Flow {
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

    pub(crate) fn on_leave(&mut self, id: Option<String>, room: String) -> Flow {
        if let Err(e) = validate_room(&room) {
            return self.reply_error(id.as_deref(), ErrorCode::InvalidName, &format!("room: {e}"));
        }
        if self.rooms.remove(&room) {
            self.registration.leave(&channel::room(&room));
        }
        self.reply(&ServerFrame::Left { id, room })
    }
}
