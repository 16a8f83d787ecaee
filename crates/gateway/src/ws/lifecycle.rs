//! The message lifecycle on the WebSocket: `edit`, `delete`, `react`,
//! `unreact`, and the quote a `send` with `reply_to` carries. The rules
//! and the storage are the store's ([`chat_store::lifecycle`]); this
//! checks the frame and answers it.

use chat_broker::envelope;
use chat_protocol::{ClientFrame, ErrorCode, Quote, ServerFrame};
use chat_store::{Change, ChangeError, ChangeRequest, Conversation};

use super::direct::MAX_CLIENT_ID;
use super::handler::{Ctx, Kept, Outcome};

impl Ctx<'_> {
    /// Answers a refused change on frame `id`, with the code its reason has.
    pub(crate) fn change_error(&self, id: Option<&str>, e: &ChangeError) -> Outcome {
        self.replies.error(id, e.code(), &e.to_string())
    }

    /// The conversation `peer` xor `room` names, as ids, or the answer
    /// refusing the frame.
    pub(crate) fn conversation(
        &self,
        id: &str,
        peer: Option<String>,
        room: Option<String>,
        what: &str,
    ) -> Result<Conversation, Outcome> {
        match (peer, room) {
            (Some(peer), None) => self
                .user_id(&peer, "peer", Some(id))
                .map(Conversation::Direct),
            (None, Some(room)) => self.room_id(&room, Some(id)).map(Conversation::Room),
            _ => Err(self.replies.error(
                Some(id),
                ErrorCode::InvalidFrame,
                &format!("{what} needs exactly one of 'peer' (a user) or 'room'"),
            )),
        }
    }
}

/// After a send of a file held for message `held_by`: a refused send, or
/// a repeat answered with the first send's message, lets go of the hold
/// (an unknown outcome keeps it: a file kept too long, never one lost).
/// In the background; a failure only keeps the file.
pub(crate) fn unhold(ctx: &Ctx<'_>, media: &str, held_by: &str, kept: &Kept) {
    let stored_as_other = matches!(kept, Kept::As(stored) if stored != held_by);
    if !(stored_as_other || matches!(kept, Kept::Nothing)) {
        return;
    }
    // This message never carried the file: its note goes, and no deletion
    // follows (a release would mark an unsent upload as being deleted).
    let refs = std::sync::Arc::clone(&ctx.gw.media_refs);
    let (media, held_by) = (media.to_owned(), held_by.to_owned());
    tokio::spawn(async move {
        if let Err(e) = refs.unhold(&media, &held_by).await {
            tracing::warn!(media, error = %e, "a file stays held by a send that stored nothing");
        }
    });
}

/// `edit`, `delete`, `react`, `unreact` (any other frame is not routed
/// here): answered by `ack` with the message as it now is; everyone who
/// sees it gets an `update` from the store.
pub(crate) async fn frame(ctx: &Ctx<'_>, frame: ClientFrame) -> Outcome {
    // `None` for a change: an emoji that is not one emoji.
    let reaction = |emoji: &str| chat_store::lifecycle::emoji(emoji).map(str::to_owned);
    let (id, peer, room, message, change, what) = match frame {
        ClientFrame::Edit {
            id,
            peer,
            room,
            message,
            body,
        } => {
            let window_ms = ctx
                .gw
                .settings
                .edit_window
                .map(|w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX));
            let edit = Change::Edit { body, window_ms };
            (id, peer, room, message, Some(edit), "an edit")
        }
        ClientFrame::Delete {
            id,
            peer,
            room,
            message,
        } => (id, peer, room, message, Some(Change::Delete), "a delete"),
        ClientFrame::React {
            id,
            peer,
            room,
            message,
            emoji,
        } => {
            let react = reaction(&emoji).map(Change::React);
            (id, peer, room, message, react, "a reaction")
        }
        ClientFrame::Unreact {
            id,
            peer,
            room,
            message,
            emoji,
        } => {
            let unreact = reaction(&emoji).map(Change::Unreact);
            (id, peer, room, message, unreact, "a reaction")
        }
        _ => return Outcome::Continue,
    };
    if id.is_empty() || id.len() > MAX_CLIENT_ID {
        return ctx.replies.error(
            None,
            ErrorCode::InvalidFrame,
            "id must be 1 to 64 characters",
        );
    }
    let conversation = match ctx.conversation(&id, peer, room, what) {
        Ok(conversation) => conversation,
        Err(outcome) => return outcome,
    };
    if message.is_empty() || message.len() > MAX_CLIENT_ID {
        return ctx.replies.error(
            Some(&id),
            ErrorCode::InvalidFrame,
            "message must be a message id",
        );
    }
    let Some(change) = change else {
        return ctx.replies.error(
            Some(&id),
            ErrorCode::InvalidFrame,
            "emoji must be exactly one emoji",
        );
    };
    let request = ChangeRequest {
        actor: ctx.user.to_owned(),
        conversation,
        message,
        change,
        now: envelope::now_micros() / 1000,
        envelope_header: envelope::text_header(),
    };
    match ctx.gw.lifecycle.change(request).await {
        Ok(changed) => {
            if let Some(media) = &changed.removed_media {
                // Deleted from the media service as whoever uploaded it (the
                // sender's own, or any file the application attached).
                let m = &changed.message;
                chat_media_client::release(
                    std::sync::Arc::clone(&ctx.gw.media_refs),
                    ctx.gw.media.get().map(std::sync::Arc::clone),
                    &m.id,
                    media,
                )
                .await;
            }
            ctx.replies.send(&ServerFrame::Ack {
                id,
                message: changed.message,
            })
        }
        Err(e) => ctx.change_error(Some(&id), &e),
    }
}

/// The quote of `reply_to` for a `send` to `conversation`, and where the
/// original is (for the store's index of replies), or the answer refusing
/// the send.
pub(crate) async fn quote(
    ctx: &Ctx<'_>,
    id: &str,
    conversation: &Conversation,
    reply_to: &str,
) -> Result<(Quote, u64), Outcome> {
    if reply_to.is_empty() || reply_to.len() > MAX_CLIENT_ID {
        return Err(ctx.replies.error(
            Some(id),
            ErrorCode::InvalidFrame,
            "reply_to must be a message id",
        ));
    }
    let quoted = ctx.gw.lifecycle.quote(ctx.user, conversation, reply_to);
    quoted.await.map_err(|e| ctx.change_error(Some(id), &e))
}
