//! Rooms: durable group conversations. Membership belongs to the user: the
//! store tells every connection of the user when it changes (a control
//! envelope on `user:{name}`, with the `seq` of the entry that records
//! it), and each connection follows the rooms of its user on
//! `room:{name}` from its handshake on.

use std::sync::Arc;

use chat_broker::envelope::Control;
use chat_broker::{channel, envelope};
use chat_protocol::{ChatMessage, ErrorCode, ServerFrame};
use chat_store::{Admission, RoomError, RoomRead, RoomSend};

use super::handler::{Ctx, Kept, Outcome};
use super::registration::Subscriptions;
use super::sync;

impl Ctx<'_> {
    /// Answers a refused room call on frame `id`, with the code its reason has.
    pub(crate) fn room_error(&self, id: Option<&str>, e: &RoomError) -> Outcome {
        self.replies.error(id, e.code(), &e.to_string())
    }
}

/// A message to room `room`: stored at the room's next `seq` (durable)
/// before the `ack`, and published to every member's connections. A send
/// repeating one the sender already made in this room (same `id`) is
/// answered with the first send's `ack`.
pub(crate) async fn send(
    ctx: &Ctx<'_>,
    id: String,
    room: String,
    message: ChatMessage,
    reply_to: Option<u64>,
) -> (Outcome, Kept) {
    let (head, tail) = ServerFrame::Message(message.clone()).room_template();
    let send = RoomSend {
        room,
        id: message.id.clone(),
        from: message.from.clone(),
        client_id: id.clone(),
        head,
        tail,
        envelope_header: envelope::text_header(),
        reply_to,
        as_server: false,
    };
    match ctx.gw.rooms.append_room(send).await {
        Ok(appended) => {
            let message = match appended.repeated {
                None => ChatMessage {
                    seq: Some(appended.seq),
                    ..message
                },
                Some(first) => match serde_json::from_str::<ServerFrame>(&first) {
                    Ok(ServerFrame::Message(first)) => first,
                    _ => {
                        let unreadable = ctx
                            .replies
                            .unavailable(Some(&id), &"unreadable stored message");
                        return (unreadable, Kept::Unknown);
                    }
                },
            };
            let kept = Kept::As(message.id.clone());
            (ctx.replies.send(&ServerFrame::Ack { id, message }), kept)
        }
        Err(e) => {
            // A store that did not answer may have stored it.
            let kept = match e {
                RoomError::Store(_) => Kept::Unknown,
                _ => Kept::Nothing,
            };
            (ctx.room_error(Some(&id), &e), kept)
        }
    }
}

/// `join {room}`: the user becomes a member (a new public room is created
/// with them as owner). The store is asked first — a connection follows a
/// room only once its user is a member, so a refused `join` hears nothing
/// of the room — then the connection follows it, and the entries from the
/// user's `member_joined` on are written after `joined`, so nothing said
/// between the two is missed (what also comes live is dropped by the
/// session's fence, [`super::fence`]). The user's other connections follow
/// it on the store's control.
pub(crate) async fn join(ctx: &Ctx<'_>, id: Option<String>, room: String) -> Outcome {
    let room = match ctx.room_id(&room, id.as_deref()) {
        Ok(room) => room,
        Err(outcome) => return outcome,
    };
    let joined = match ctx
        .gw
        .rooms
        .join_room(&room, ctx.user, Admission::Join)
        .await
    {
        Ok(joined) => joined,
        Err(e) => return ctx.room_error(id.as_deref(), &e),
    };
    Outcome::Follow {
        id,
        room,
        seq: joined.unwrap_or(0),
    }
}

/// Makes this connection follow `room`, which its user is a member of
/// since entry `seq` (0: unknown), and answers `joined` followed by the
/// room's entries from `seq` on ([`Outcome::Followed`]: the session then
/// drops their live copies).
pub(crate) async fn follow(
    ctx: &Ctx<'_>,
    subs: &mut Subscriptions,
    id: Option<String>,
    room: String,
    seq: u64,
) -> Outcome {
    if !subs.rooms.contains_key(&room)
        && let Err(e) = subs.registration.join(channel::room(&room)).await
    {
        // The user is a member; this connection cannot follow the room
        // live. A reconnect (or `sync`) catches up.
        return ctx.replies.unavailable(id.as_deref(), &e);
    }
    let known = subs.rooms.entry(room.clone()).or_insert(0);
    *known = (*known).max(seq);
    let mut frames = vec![
        ServerFrame::Joined {
            id: id.clone(),
            room: room.clone(),
        }
        .to_json(),
    ];
    let mut until = 0;
    if seq > 0 {
        match ctx
            .gw
            .rooms
            .room_since(&room, ctx.user, seq - 1, sync::SYNC_MAX + 1)
            .await
        {
            Ok(mut entries) => {
                let more = entries.len() > sync::SYNC_MAX;
                entries.truncate(sync::SYNC_MAX);
                until = entries.last().map_or(0, |e| e.seq);
                frames.extend(entries.into_iter().map(|e| e.frame));
                if more {
                    // The rest by `sync` from `until`, as after a catch-up.
                    frames.push(
                        ServerFrame::Synced {
                            id: None,
                            room: Some(room.clone()),
                            until,
                            more,
                        }
                        .to_json(),
                    );
                }
            }
            // The user is a member and the room is followed: only its
            // entries are missing, which the client can `sync`.
            Err(RoomError::Store(e)) => frames.push(
                ServerFrame::error(
                    None,
                    ErrorCode::Unavailable,
                    format!("joined '{room}', but its entries could not be read ({e}): sync it"),
                )
                .to_json(),
            ),
            // Not a member (any more): removed while this ran, or a stale
            // control. Follow nothing.
            Err(e) => {
                subs.rooms.remove(&room);
                subs.registration.leave(&channel::room(&room));
                return match id {
                    Some(id) => ctx.room_error(Some(&id), &e),
                    None => Outcome::Continue,
                };
            }
        }
    }
    Outcome::Followed {
        frames,
        room,
        until,
    }
}

/// `leave {room}`: the user is a member no more (answered `left` also when
/// they were none); this connection stops following the room at once, the
/// user's other connections on the store's control.
pub(crate) async fn leave(
    ctx: &Ctx<'_>,
    subs: &mut Subscriptions,
    id: Option<String>,
    room: String,
) -> Outcome {
    let room = match ctx.room_id(&room, id.as_deref()) {
        Ok(room) => room,
        Err(outcome) => return outcome,
    };
    match ctx.gw.rooms.leave_room(&room, ctx.user, None).await {
        Ok(left) => {
            if let Some(seq) = left {
                subs.note_left(room.clone(), seq);
            }
            if subs.rooms.remove(&room).is_some() {
                subs.registration.leave(&channel::room(&room));
            }
            ctx.replies.send(&ServerFrame::Left { id, room })
        }
        Err(e) => ctx.room_error(id.as_deref(), &e),
    }
}

/// A membership change of this connection's user, made elsewhere (another
/// connection, a member adding or removing them): follow the room from the
/// entry that recorded it, or stop, and tell the client with `joined` /
/// `left`. A change older than what this connection knows (it left and
/// joined again meanwhile, say) is ignored.
pub(crate) async fn apply(ctx: &Ctx<'_>, subs: &mut Subscriptions, control: Control) -> Outcome {
    match control {
        Control::Joined { room, seq } => {
            let room = room.to_string();
            match subs.rooms.get_mut(&room) {
                Some(known) => {
                    *known = (*known).max(seq);
                    Outcome::Continue
                }
                // This connection left after that join (its own `join`
                // then `leave`, the controls still on their way).
                None if subs.left.get(&room).is_some_and(|&left| left > seq) => Outcome::Continue,
                None => Outcome::Follow {
                    id: None,
                    room,
                    seq,
                },
            }
        }
        // The connection's to carry out (`Connection::control`).
        Control::Disconnect => Outcome::Continue,
        Control::Left { room, seq } => {
            let room = room.to_string();
            // Controls come in the order the store made them: no join
            // older than this leave can follow it.
            if subs.left.get(&room).is_some_and(|&left| left <= seq) {
                subs.left.remove(&room);
            }
            match subs.rooms.get(&room) {
                Some(&known) if known < seq => {
                    subs.rooms.remove(&room);
                    subs.registration.leave(&channel::room(&room));
                    ctx.replies.send(&ServerFrame::Left { id: None, room })
                }
                _ => Outcome::Continue,
            }
        }
    }
}

/// `sync {room, since, limit}`: the room's entries after `since`, then
/// `synced {room, until, more}`.
pub(crate) async fn sync(
    ctx: &Ctx<'_>,
    id: Option<String>,
    room: String,
    since: u64,
    limit: Option<u32>,
) -> Outcome {
    let room = match ctx.room_id(&room, id.as_deref()) {
        Ok(room) => room,
        Err(outcome) => return outcome,
    };
    let limit = sync::page_limit(limit);
    let entries = match ctx
        .gw
        .rooms
        .room_since(&room, ctx.user, since, limit + 1)
        .await
    {
        Ok(entries) => entries,
        Err(e) => return ctx.room_error(id.as_deref(), &e),
    };
    Outcome::Write(sync::frames(entries, id, Some(room), since, limit))
}

/// `read {room, up_to}`: moves the user's marker forward (never back);
/// every connection of the user gets the room's new count, and while the
/// room is small its members get a `receipt`.
pub(crate) async fn read(
    ctx: &Ctx<'_>,
    id: Option<String>,
    room: String,
    up_to: String,
) -> Outcome {
    let id = id.as_deref();
    let room = match ctx.room_id(&room, id) {
        Ok(room) => room,
        Err(outcome) => return outcome,
    };
    let broker = match ctx.gw.hub.broker() {
        Ok(broker) => Arc::clone(broker),
        Err(e) => return ctx.replies.unavailable(id, &e),
    };
    let receipts_max = ctx.gw.room_settings.room_receipts_max;
    let read = chat_store::read::mark_room_read(
        &*ctx.gw.store,
        &*ctx.gw.rooms,
        &broker,
        ctx.user,
        &room,
        &up_to,
        receipts_max,
    )
    .await;
    match read {
        Ok(RoomRead::Moved { .. } | RoomRead::Stale { .. }) => Outcome::Continue,
        Ok(RoomRead::NotFound) => ctx.replies.error(
            id,
            ErrorCode::NotFound,
            &format!("no entry '{up_to}' in room '{room}'"),
        ),
        Err(e) => ctx.room_error(id, &e),
    }
}

/// `typing {room}`: to the other members' connections, never stored. Only
/// a member (whose connections follow the room) may.
pub(crate) async fn typing(ctx: &Ctx<'_>, subs: &Subscriptions, room: String) -> Outcome {
    let room = match ctx.room_id(&room, None) {
        Ok(room) => room,
        Err(outcome) => return outcome,
    };
    if !subs.rooms.contains_key(&room) {
        return ctx.replies.error(
            None,
            ErrorCode::Forbidden,
            &format!("not a member of room '{room}'"),
        );
    }
    let frame = ServerFrame::Typing {
        from: ctx.user.to_owned(),
        room: Some(room.clone()),
    }
    .to_json();
    // Best effort, like every typing notice.
    let _ = ctx
        .gw
        .hub
        .publish(
            &channel::room(&room),
            envelope::text_except(&frame, ctx.user),
        )
        .await;
    Outcome::Continue
}
