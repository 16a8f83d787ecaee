//! What a text frame on a user connection means.

use crate::media::MediaLookupError;
use chat_broker::envelope;
use chat_protocol::{
    ChatMessage, ClientFrame, ErrorCode, Inbound, MediaInfo, MediaRef, SeedFrame, ServerFrame,
    message_template, validate_user,
};
use chat_store::{Direct, FrameText, InboxEntry};

use super::Endpoint;
use super::session::{Flow, Session};
use super::upgrade::Replay;

/// Longest client-chosen frame id.
const MAX_CLIENT_ID: usize = 64;
/// Most frames one `sync` (or the replay after connecting) delivers.
const SYNC_MAX: usize = 500;

impl Session {
    fn user(&self) -> String {
        match &self.endpoint {
            Endpoint::User(user) => user.clone(),
            Endpoint::Lobby => String::new(),
        }
    }

    /// Handles one text frame on `/ws/{user}/`.
    pub(crate) async fn on_user_text(&mut self, text: &str) -> Flow {
        let user = self.user();
        match chat_protocol::decode(text) {
            Err(e) => self.reply_error(e.id.as_deref(), e.code, &e.message),
            Ok(Inbound::Seed(seed)) => self.on_seed(&user, &seed, text).await,
            Ok(Inbound::Typed(ClientFrame::Send {
                id,
                to,
                room,
                body,
                media,
            })) => self.on_send(user, id, to, room, body, media).await,
            Ok(Inbound::Typed(ClientFrame::Join { id, room })) => self.on_join(id, room).await,
            Ok(Inbound::Typed(ClientFrame::Leave { id, room })) => self.on_leave(id, room),
            Ok(Inbound::Typed(ClientFrame::Sync { id, since, limit })) => {
                let limit = limit.map_or(SYNC_MAX, |l| (l as usize).clamp(1, SYNC_MAX));
                self.sync_page(&user, id, since, limit).await
            }
            Ok(Inbound::Typed(ClientFrame::Read { id, peer, up_to })) => {
                self.on_read(&user, id, peer, up_to).await
            }
            Ok(Inbound::Typed(ClientFrame::Typing { to })) => self.on_typing(&user, &to).await,
            Ok(Inbound::Typed(ClientFrame::Watch { id, users })) => self.on_watch(id, users).await,
            Ok(Inbound::Typed(ClientFrame::Unwatch { users })) => self.on_unwatch(users),
        }
    }

    /// When a user connection opens: the unread counters, then the messages
    /// it missed — everything after `?since=`, or, for clients that do not
    /// sync (the seed's), what arrived while the user had no connection.
    /// Written straight to the socket, ahead of live deliveries queued meanwhile.
    pub(crate) async fn catch_up(&mut self, replay: Replay) -> Flow {
        let Endpoint::User(user) = &self.endpoint else {
            return Flow::Continue;
        };
        let user = user.clone();
        if matches!(replay, Replay::None) {
            return Flow::Continue;
        }
        // Counters first, and only then anything that consumes the offline list.
        let counts = match self.gw.store.unread(&user).await {
            Ok(counts) => counts,
            Err(e) => return self.unavailable(None, &e),
        };
        if self
            .send_now(ServerFrame::Unread { counts }.to_json())
            .await
            .is_err()
        {
            return Flow::Gone;
        }
        match replay {
            Replay::None => Flow::Continue,
            Replay::Since(since) => self.sync_page(&user, None, since, SYNC_MAX).await,
            Replay::Offline => {
                let entries = match self.gw.store.take_offline(&user).await {
                    Ok(entries) => entries,
                    Err(e) => return self.unavailable(None, &e),
                };
                for InboxEntry { frame, .. } in entries {
                    if self.send_now(frame).await.is_err() {
                        return Flow::Gone;
                    }
                }
                Flow::Continue
            }
        }
    }

    /// Writes the inbox after `since` (at most `limit` frames) and `synced`,
    /// straight to the socket: a page can be larger than the outbound queue.
    async fn sync_page(
        &mut self,
        user: &str,
        id: Option<String>,
        since: u64,
        limit: usize,
    ) -> Flow {
        let entries = match self.gw.store.inbox_since(user, since, limit + 1).await {
            Ok(entries) => entries,
            Err(e) => return self.unavailable(id.as_deref(), &e),
        };
        let more = entries.len() > limit;
        let mut until = since;
        for InboxEntry { seq, frame } in entries.into_iter().take(limit) {
            until = seq;
            if self.send_now(frame).await.is_err() {
                return Flow::Gone;
            }
        }
        match self
            .send_now(ServerFrame::Synced { id, until, more }.to_json())
            .await
        {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Gone,
        }
    }

    async fn send_now(&mut self, text: String) -> Result<(), actix_ws::Closed> {
        self.ws.text(text).await
    }

    pub(crate) fn unavailable(&self, id: Option<&str>, e: &dyn std::fmt::Display) -> Flow {
        self.reply_error(id, ErrorCode::Unavailable, &e.to_string())
    }

    /// A seed frame is stored, counted unread and delivered to every
    /// connection of its receiver, byte for byte.
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
        let body = match &seed.message {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let message = ChatMessage {
            seq: None,
            id: ulid::Ulid::new().to_string(),
            from: user.to_owned(),
            to: Some(seed.receiver.clone()),
            room: None,
            body,
            media: None,
            ts: envelope::now_micros() / 1000,
        };
        let direct = Direct {
            id: message.id.clone(),
            from: message.from.clone(),
            to: seed.receiver.clone(),
            frame: FrameText::Seed(text.to_owned()),
            history: json(&message),
            copy_to_sender: false,
            envelope_header: envelope::text_header(),
        };
        match self.gw.store.append_direct(direct).await {
            Ok(_) => Flow::Continue,
            Err(e) => self.unavailable(None, &e),
        }
    }

    async fn on_send(
        &mut self,
        from: String,
        id: String,
        to: Option<String>,
        room: Option<String>,
        body: String,
        media: Option<MediaRef>,
    ) -> Flow {
        if id.is_empty() || id.len() > MAX_CLIENT_ID {
            return self.reply_error(
                None,
                ErrorCode::InvalidFrame,
                "id must be 1 to 64 characters",
            );
        }
        if to.is_some() == room.is_some() {
            return self.reply_error(
                Some(&id),
                ErrorCode::InvalidFrame,
                "a send needs exactly one of 'to' (a user) or 'room'",
            );
        }
        if body.is_empty() && media.is_none() {
            return self.reply_error(
                Some(&id),
                ErrorCode::InvalidFrame,
                "a send needs a body, a media, or both",
            );
        }
        let media = match media {
            None => None,
            Some(reference) => match self.resolve_media(&from, &reference.id).await {
                Ok(info) => Some(info),
                Err((code, why)) => return self.reply_error(Some(&id), code, &why),
            },
        };
        let message = ChatMessage {
            seq: None,
            id: ulid::Ulid::new().to_string(),
            from,
            to,
            room,
            body,
            media,
            ts: envelope::now_micros() / 1000,
        };
        match (&message.to, &message.room) {
            (Some(to), _) => {
                let to = to.clone();
                self.send_direct(id, to, message).await
            }
            (None, Some(room)) => {
                let room = room.clone();
                self.send_to_room(id, room, message).await
            }
            (None, None) => Flow::Continue,
        }
    }

    /// The sender's file, with its metadata and a fresh link, or why not.
    async fn resolve_media(&self, owner: &str, id: &str) -> Result<MediaInfo, (ErrorCode, String)> {
        // A media id is a ULID: anything else names nothing (and never
        // reaches a URL).
        if id.len() != 26 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err((
                ErrorCode::NotFound,
                format!(
                    "'{}' is not a media id",
                    id.chars().take(40).collect::<String>()
                ),
            ));
        }
        let Some(directory) = self.gw.media.get() else {
            return Err((
                ErrorCode::Unsupported,
                "this gateway has no media service configured".into(),
            ));
        };
        directory.lookup(owner, id).await.map_err(|e| {
            let code = match e {
                MediaLookupError::NotFound(_) => ErrorCode::NotFound,
                MediaLookupError::NotOwner(_) => ErrorCode::Forbidden,
                MediaLookupError::Unavailable(_) => ErrorCode::Unavailable,
            };
            (code, e.to_string())
        })
    }

    /// A direct message: stored (durable, counted unread, published) before
    /// the `ack`, which carries the sender's inbox position.
    async fn send_direct(&mut self, id: String, to: String, message: ChatMessage) -> Flow {
        if let Err(e) = validate_user(&to) {
            return self.reply_error(Some(&id), ErrorCode::InvalidName, &format!("to: {e}"));
        }
        let (head, tail) = message_template(&message);
        let direct = Direct {
            id: message.id.clone(),
            from: message.from.clone(),
            to,
            frame: FrameText::Typed { head, tail },
            history: json(&message),
            copy_to_sender: true,
            envelope_header: envelope::text_header(),
        };
        match self.gw.store.append_direct(direct).await {
            Ok(appended) => {
                let message = ChatMessage {
                    seq: appended.sender_seq,
                    ..message
                };
                self.reply(&ServerFrame::Ack { id, message })
            }
            Err(e) => self.unavailable(Some(&id), &e),
        }
    }

    async fn on_read(
        &mut self,
        user: &str,
        id: Option<String>,
        peer: String,
        up_to: String,
    ) -> Flow {
        if let Err(e) = validate_user(&peer) {
            return self.reply_error(id.as_deref(), ErrorCode::InvalidName, &format!("peer: {e}"));
        }
        if up_to.is_empty() || up_to.len() > MAX_CLIENT_ID {
            return self.reply_error(
                id.as_deref(),
                ErrorCode::InvalidFrame,
                "up_to must be a message id",
            );
        }
        let broker = match self.registration.hub().broker() {
            Ok(broker) => std::sync::Arc::clone(broker),
            Err(e) => return self.unavailable(id.as_deref(), &e),
        };
        match chat_store::read::mark_read(&*self.gw.store, &broker, user, &peer, &up_to).await {
            Ok(_) => Flow::Continue,
            Err(e) => self.unavailable(id.as_deref(), &e),
        }
    }
}

fn json(message: &ChatMessage) -> String {
    // unwrap: a ChatMessage holds only strings and integers.
    #[allow(clippy::unwrap_used)]
    serde_json::to_string(message).unwrap()
}
