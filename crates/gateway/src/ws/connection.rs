//! What one connection holds, and which handler each of its frames goes to.

use std::sync::Arc;

use actix_ws::CloseCode;
use chat_broker::envelope::Control;
use chat_broker::{channel, envelope};
use chat_protocol::{ChatMessage, ClientFrame, ErrorCode, Inbound, MediaRef};
use chat_store::Conversation;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use prometheus::IntCounter;

use super::Endpoint;
use super::handler::{Ctx, Kept, Outcome, Replies, reason};
use super::registration::Subscriptions;
use super::socket::{CLOSE_REMOVED, Message};
use super::sync::Replay;
use super::{direct, lifecycle, rooms, sync, watch};
use crate::Inner;

/// A message from the client, read ([`Connection::read`]).
pub(crate) enum Frame {
    /// A user connection's text frame, and what it decoded to.
    User(
        bytestring::ByteString,
        Result<Inbound, chat_protocol::DecodeError>,
    ),
    /// A user connection's binary frame (refused: JSON text only).
    UserBinary,
    /// A lobby frame, forwarded as it came.
    Lobby(Message),
}

impl Frame {
    /// Whether this frame may be handled while earlier ones are still
    /// queued in the store: a direct `send` without a file (its answer is
    /// an `ack` or an `error`, queued behind theirs). Anything else waits
    /// until they are answered, so frames are answered in order.
    pub(crate) fn queues(&self) -> bool {
        matches!(
            self,
            Frame::User(
                _,
                Ok(Inbound::Typed(ClientFrame::Send {
                    to: Some(_),
                    room: None,
                    media: None,
                    ..
                }))
            )
        )
    }
}

/// One connection's state between frames. Handling a frame takes it and
/// gives it back ([`Connection::handle`]), so the session can keep writing
/// to the socket while a handler waits.
pub(crate) struct Connection {
    gw: Arc<Inner>,
    endpoint: Endpoint,
    /// The user's id (empty on the lobby).
    user: String,
    /// How the user is shown, when known.
    name: Option<String>,
    subs: Subscriptions,
    replies: Replies,
    limiter: DefaultDirectRateLimiter,
    /// Frames refused by the rate limit since the last accepted one.
    strikes: u32,
    frames_in: IntCounter,
}

impl Connection {
    pub(crate) fn new(
        gw: Arc<Inner>,
        endpoint: Endpoint,
        subs: Subscriptions,
        replies: Replies,
    ) -> Self {
        let quota = Quota::per_second(gw.settings.rate_per_sec).allow_burst(gw.settings.rate_burst);
        let (user, name) = match &endpoint {
            Endpoint::User(caller) => (caller.id.clone(), caller.name.clone()),
            Endpoint::Lobby => (String::new(), None),
        };
        Self {
            frames_in: gw.metrics.frames_in.with_label_values(&[endpoint.label()]),
            limiter: RateLimiter::direct(quota),
            strikes: 0,
            gw,
            endpoint,
            user,
            name,
            subs,
            replies,
        }
    }

    /// The counters and missed messages a new connection gets first.
    pub(crate) async fn catch_up(self, replay: Replay) -> (Self, Outcome) {
        let outcome = {
            let ctx = Ctx {
                gw: &self.gw,
                replies: &self.replies,
                user: &self.user,
                name: self.name.as_deref(),
            };
            sync::catch_up(&ctx, replay).await
        };
        (self, outcome)
    }

    /// Applies a change of what this connection follows (its user joined
    /// or left a room elsewhere).
    pub(crate) async fn control(mut self, control: Control) -> (Self, Outcome) {
        let outcome = {
            let ctx = Ctx {
                gw: &self.gw,
                replies: &self.replies,
                user: &self.user,
                name: self.name.as_deref(),
            };
            match control {
                Control::Disconnect => Outcome::Close(reason(
                    CloseCode::Other(CLOSE_REMOVED),
                    "removed by the server",
                )),
                control => rooms::apply(&ctx, &mut self.subs, control).await,
            }
        };
        (self, outcome)
    }

    /// Follows `room` from entry `seq` on (see [`Outcome::Follow`]).
    pub(crate) async fn follow(
        mut self,
        id: Option<String>,
        room: String,
        seq: u64,
    ) -> (Self, Outcome) {
        let outcome = {
            let ctx = Ctx {
                gw: &self.gw,
                replies: &self.replies,
                user: &self.user,
                name: self.name.as_deref(),
            };
            rooms::follow(&ctx, &mut self.subs, id, room, seq).await
        };
        (self, outcome)
    }

    /// A message from the client, read: a user connection's text decoded
    /// (once: the session asks [`Frame::queues`] before handling it).
    pub(crate) fn read(&self, message: Message) -> Frame {
        match (&self.endpoint, message) {
            (Endpoint::User(_), Message::Text(text)) => {
                let decoded = chat_protocol::decode(&text);
                Frame::User(text, decoded)
            }
            (Endpoint::User(_), Message::Binary(_)) => Frame::UserBinary,
            (Endpoint::Lobby, message) => Frame::Lobby(message),
        }
    }

    /// Handles one message from the client. `defer`: earlier frames are
    /// still queued in the store ([`Outcome::Queued`]), so what this one
    /// answers at once is held back and goes out after their answers.
    pub(crate) async fn handle(self, frame: Frame, defer: bool) -> (Self, Outcome) {
        if !defer {
            return self.handle_now(frame).await;
        }
        self.replies.defer();
        let (this, outcome) = self.handle_now(frame).await;
        let held = this.replies.take_deferred();
        if held.is_empty() {
            return (this, outcome);
        }
        let replies = this.replies.clone();
        let outcome = match outcome {
            Outcome::Queued(rest) => Outcome::Queued(Box::pin(async move {
                replies.send_all(held);
                rest.await;
            })),
            Outcome::Continue => Outcome::Queued(Box::pin(async move { replies.send_all(held) })),
            // Only a `send` is handled while others are queued: it is
            // answered through the reply queue or closes the connection
            // (its rate limit), whose goodbye writes what is queued.
            other => {
                replies.send_all(held);
                other
            }
        };
        (this, outcome)
    }

    async fn handle_now(mut self, frame: Frame) -> (Self, Outcome) {
        self.frames_in.inc();
        if let Some(outcome) = self.rate_limit() {
            return (self, outcome);
        }
        let outcome = match frame {
            Frame::User(text, decoded) => self.user_text(&text, decoded).await,
            // The lobby speaks the seed's raw protocol: no error frames.
            Frame::Lobby(message) => {
                let payload = match message {
                    Message::Text(text) => envelope::text(&text),
                    Message::Binary(bytes) => envelope::binary(&bytes),
                };
                let _ = self.gw.hub.publish(channel::LOBBY, payload).await;
                Outcome::Continue
            }
            Frame::UserBinary => self.replies.error(
                None,
                ErrorCode::Unsupported,
                "user connections take JSON text frames",
            ),
        };
        (self, outcome)
    }

    /// `Some(outcome)` when the frame must be refused by the rate limit.
    fn rate_limit(&mut self) -> Option<Outcome> {
        if self.limiter.check().is_ok() {
            self.strikes = 0;
            return None;
        }
        self.strikes += 1;
        self.gw.metrics.rate_limited_frames.inc();
        if self.strikes > self.gw.settings.rate_strikes {
            return Some(Outcome::Close(reason(
                CloseCode::Policy,
                "rate limit exceeded",
            )));
        }
        if self.endpoint == Endpoint::Lobby {
            // The lobby speaks the seed's raw protocol: no JSON error frames.
            return Some(Outcome::Continue);
        }
        // Queued like any delivery: a flooder that does not read closes itself.
        Some(
            self.replies
                .error(None, ErrorCode::RateLimited, "too many frames; slow down"),
        )
    }

    /// One text frame on `/ws/{user}/`, to its handler.
    async fn user_text(
        &mut self,
        text: &str,
        decoded: Result<Inbound, chat_protocol::DecodeError>,
    ) -> Outcome {
        let ctx = Ctx {
            gw: &self.gw,
            replies: &self.replies,
            user: &self.user,
            name: self.name.as_deref(),
        };
        let subs = &mut self.subs;
        match decoded {
            Err(e) => ctx.replies.error(e.id.as_deref(), e.code, &e.message),
            Ok(Inbound::Seed(seed)) => direct::seed(&ctx, &seed, text).await,
            Ok(Inbound::Typed(frame)) => match frame {
                ClientFrame::Send {
                    id,
                    to,
                    room,
                    body,
                    media,
                    reply_to,
                } => send(&ctx, id, to, room, body, media, reply_to).await,
                frame @ (ClientFrame::Edit { .. }
                | ClientFrame::Delete { .. }
                | ClientFrame::React { .. }
                | ClientFrame::Unreact { .. }) => lifecycle::frame(&ctx, frame).await,
                ClientFrame::Join { id, room } => rooms::join(&ctx, id, room).await,
                ClientFrame::Leave { id, room } => rooms::leave(&ctx, subs, id, room).await,
                ClientFrame::Sync {
                    id,
                    room: None,
                    since,
                    limit,
                } => sync::sync(&ctx, id, since, limit).await,
                ClientFrame::Sync {
                    id,
                    room: Some(room),
                    since,
                    limit,
                } => rooms::sync(&ctx, id, room, since, limit).await,
                ClientFrame::Read {
                    id,
                    peer,
                    room,
                    up_to,
                } => match (peer, room) {
                    (Some(peer), None) => direct::read(&ctx, id, peer, up_to).await,
                    (None, Some(room)) => rooms::read(&ctx, id, room, up_to).await,
                    _ => ctx.replies.error(
                        id.as_deref(),
                        ErrorCode::InvalidFrame,
                        "a read needs exactly one of 'peer' (a user) or 'room'",
                    ),
                },
                ClientFrame::Typing { to, room } => match (to, room) {
                    (Some(to), None) => watch::typing(&ctx, &to).await,
                    (None, Some(room)) => rooms::typing(&ctx, subs, room).await,
                    _ => ctx.replies.error(
                        None,
                        ErrorCode::InvalidFrame,
                        "a typing needs exactly one of 'to' (a user) or 'room'",
                    ),
                },
                ClientFrame::Watch { id, users } => watch::watch(&ctx, subs, id, users).await,
                ClientFrame::Unwatch { users } => watch::unwatch(&ctx, subs, users),
            },
        }
    }
}

/// `send`: checks what every send needs, then to a user or a room.
async fn send(
    ctx: &Ctx<'_>,
    id: String,
    to: Option<String>,
    room: Option<String>,
    body: String,
    media: Option<MediaRef>,
    reply_to: Option<String>,
) -> Outcome {
    if id.is_empty() || id.len() > direct::MAX_CLIENT_ID {
        return ctx.replies.error(
            None,
            ErrorCode::InvalidFrame,
            "id must be 1 to 64 characters",
        );
    }
    if id.starts_with("api:") {
        // The server API's ids for messages in a user's name: a user's own
        // could otherwise take their place (and swallow them as repeats).
        return ctx.replies.error(
            Some(&id),
            ErrorCode::InvalidFrame,
            "ids starting with 'api:' are the server API's",
        );
    }
    if to.is_some() == room.is_some() {
        return ctx.replies.error(
            Some(&id),
            ErrorCode::InvalidFrame,
            "a send needs exactly one of 'to' (a user) or 'room'",
        );
    }
    if body.is_empty() && media.is_none() {
        return ctx.replies.error(
            Some(&id),
            ErrorCode::InvalidFrame,
            "a send needs a body, a media, or both",
        );
    }
    // Names as the ids they stand for (`Bob` is `bob` in open mode).
    let (to, room) = match (to, room) {
        (Some(to), _) => match ctx.user_id(&to, "to", Some(&id)) {
            Ok(to) => (Some(to), None),
            Err(outcome) => return outcome,
        },
        (None, Some(room)) => match ctx.room_id(&room, Some(&id)) {
            Ok(room) => (None, Some(room)),
            Err(outcome) => return outcome,
        },
        (None, None) => (None, None),
    };
    // The file is held for this message before it is looked up: once held,
    // a delete of the last other message carrying it cannot take it (that
    // release marks the file as being deleted, and a hold then refuses).
    let message_id = ulid::Ulid::new().to_string();
    let held = media.as_ref().map(|reference| reference.id.clone());
    if let Some(media_id) = &held {
        if let Err((code, why)) = direct::media_id(media_id) {
            return ctx.replies.error(Some(&id), code, &why);
        }
        match ctx.gw.media_refs.hold(media_id, &message_id).await {
            Ok(true) => {}
            Ok(false) => {
                let why = format!("media '{media_id}' was deleted");
                return ctx.replies.error(Some(&id), ErrorCode::NotFound, &why);
            }
            Err(e) => return ctx.replies.unavailable(Some(&id), &e),
        }
    }
    let draft = Draft {
        id,
        message_id: message_id.clone(),
        to,
        room,
        body,
        media,
        reply_to,
    };
    let (outcome, kept) = store(ctx, draft).await;
    if let Some(media_id) = held {
        lifecycle::unhold(ctx, &media_id, &message_id, &kept);
    }
    outcome
}

/// A checked `send`, its names resolved, before its file is looked up.
struct Draft {
    id: String,
    message_id: String,
    to: Option<String>,
    room: Option<String>,
    body: String,
    media: Option<MediaRef>,
    reply_to: Option<String>,
}

/// Looks the file up, quotes what the send answers, and stores it: what
/// the client is answered, and what was stored (for the file's hold).
async fn store(ctx: &Ctx<'_>, draft: Draft) -> (Outcome, Kept) {
    let Draft {
        id,
        message_id,
        to,
        room,
        body,
        media,
        reply_to,
    } = draft;
    let media = match media {
        None => None,
        Some(reference) => match direct::resolve_media(ctx, &reference.id).await {
            Ok(info) => Some(info),
            Err((code, why)) => return (ctx.replies.error(Some(&id), code, &why), Kept::Nothing),
        },
    };
    let mut message = ChatMessage {
        seq: None,
        id: message_id,
        from: ctx.user.to_owned(),
        from_name: ctx.name.map(str::to_owned),
        to: to.clone(),
        room: room.clone(),
        body,
        media,
        ts: envelope::now_micros() / 1000,
        ..ChatMessage::default()
    };
    let conversation = match (&to, &room) {
        (Some(to), _) => Conversation::Direct(to.clone()),
        (None, Some(room)) => Conversation::Room(room.clone()),
        (None, None) => return (Outcome::Continue, Kept::Nothing),
    };
    let reply_at = match reply_to {
        None => None,
        Some(original) => match lifecycle::quote(ctx, &id, &conversation, &original).await {
            Ok((quote, at)) => {
                message.reply_to = Some(quote);
                Some(at)
            }
            Err(outcome) => return (outcome, Kept::Nothing),
        },
    };
    match conversation {
        Conversation::Direct(_) => direct::send(ctx, id, message, reply_at).await,
        Conversation::Room(room) => rooms::send(ctx, id, room, message, reply_at).await,
    }
}
