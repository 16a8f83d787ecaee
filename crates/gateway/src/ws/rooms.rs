//! Rooms: join, leave, and messages to the members online now.

use chat_broker::{channel, envelope};
use chat_protocol::{ChatMessage, ErrorCode, ServerFrame};

use super::handler::{Ctx, Outcome};
use super::registration::Subscriptions;

/// A message to room id `room`: published to the members online now
/// (rooms keep no history).
pub(crate) async fn send(
    ctx: &Ctx<'_>,
    subs: &Subscriptions,
    id: String,
    room: String,
    message: ChatMessage,
) -> Outcome {
    if !subs.rooms.contains(&room) {
        return ctx.replies.error(
            Some(&id),
            ErrorCode::NotMember,
            &format!("join room '{room}' before sending to it"),
        );
    }
    // Serialised once here; every receiver gets these same bytes.
    let frame = ServerFrame::Message(message.clone()).to_json();
    match ctx
        .gw
        .hub
        .publish(&channel::room(&room), envelope::text(&frame))
        .await
    {
        Ok(()) => ctx.replies.send(&ServerFrame::Ack { id, message }),
        Err(e) => ctx.replies.unavailable(Some(&id), &e),
    }
}

/// `join {room}`.
pub(crate) async fn join(
    ctx: &Ctx<'_>,
    subs: &mut Subscriptions,
    id: Option<String>,
    room: String,
) -> Outcome {
    let room = match ctx.room_id(&room, id.as_deref()) {
        Ok(room) => room,
        Err(outcome) => return outcome,
    };
    if !subs.rooms.contains(&room) {
        let limit = ctx.gw.settings.max_rooms;
        if subs.rooms.len() >= limit {
            return ctx.replies.error(
                id.as_deref(),
                ErrorCode::TooManyRooms,
                &format!("a connection may join at most {limit} rooms"),
            );
        }
        if let Err(e) = subs.registration.join(channel::room(&room)).await {
            return ctx.replies.unavailable(id.as_deref(), &e);
        }
        subs.rooms.insert(room.clone());
    }
    ctx.replies.send(&ServerFrame::Joined { id, room })
}

/// `leave {room}`.
pub(crate) fn leave(
    ctx: &Ctx<'_>,
    subs: &mut Subscriptions,
    id: Option<String>,
    room: String,
) -> Outcome {
    let room = match ctx.room_id(&room, id.as_deref()) {
        Ok(room) => room,
        Err(outcome) => return outcome,
    };
    if subs.rooms.remove(&room) {
        subs.registration.leave(&channel::room(&room));
    }
    ctx.replies.send(&ServerFrame::Left { id, room })
}
