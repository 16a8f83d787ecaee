//! The message lifecycle on the WebSocket: `edit`, `delete`, `react`,
//! `unreact`, and the quote a `send` with `reply_to` carries. The rules
//! and the storage are the store's ([`chat_store::lifecycle`]); this
//! checks the frame and answers it.

use chat_broker::envelope;
use chat_protocol::{ChatMessage, ErrorCode, ServerFrame};
use chat_store::{Change, ChangeError, ChangeRequest, Conversation};

use super::direct::MAX_CLIENT_ID;
use super::handler::{Ctx, Outcome};

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

/// `edit`, `delete`, `react`, `unreact` of message `message`: answered by
/// `ack` with the message as it now is; everyone who sees it gets an
/// `update` from the store.
pub(crate) async fn change(
    ctx: &Ctx<'_>,
    id: String,
    peer: Option<String>,
    room: Option<String>,
    message: String,
    change: Change,
) -> Outcome {
    if id.is_empty() || id.len() > MAX_CLIENT_ID {
        return ctx.replies.error(
            None,
            ErrorCode::InvalidFrame,
            "id must be 1 to 64 characters",
        );
    }
    let what = match change {
        Change::Edit { .. } => "an edit",
        Change::Delete => "a delete",
        Change::React(_) | Change::Unreact(_) => "a reaction",
    };
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
    let change = match change {
        Change::React(emoji) | Change::Unreact(emoji)
            if chat_store::lifecycle::emoji(&emoji).is_none() =>
        {
            return ctx.replies.error(
                Some(&id),
                ErrorCode::InvalidFrame,
                "emoji must be exactly one emoji",
            );
        }
        Change::React(emoji) => Change::React(
            chat_store::lifecycle::emoji(&emoji)
                .unwrap_or_default()
                .to_owned(),
        ),
        Change::Unreact(emoji) => Change::Unreact(
            chat_store::lifecycle::emoji(&emoji)
                .unwrap_or_default()
                .to_owned(),
        ),
        Change::Edit { body, .. } => Change::Edit {
            body,
            window_ms: ctx
                .gw
                .settings
                .edit_window
                .map(|w| w.as_millis().min(u64::MAX as u128) as u64),
        },
        Change::Delete => Change::Delete,
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
            if let Some(media) = changed.freed_media {
                tracing::debug!(%media, "a deleted message's file is no longer referenced by it");
            }
            ctx.replies.send(&ServerFrame::Ack {
                id,
                message: changed.message,
            })
        }
        Err(e) => ctx.change_error(Some(&id), &e),
    }
}

/// The quote of `reply_to` for a `send` to `conversation` (and where the
/// original is, for the store's index), or the answer refusing the send.
pub(crate) async fn quote(
    ctx: &Ctx<'_>,
    id: &str,
    conversation: &Conversation,
    reply_to: &str,
    message: &mut ChatMessage,
) -> Result<u64, Outcome> {
    if reply_to.is_empty() || reply_to.len() > MAX_CLIENT_ID {
        return Err(ctx.replies.error(
            Some(id),
            ErrorCode::InvalidFrame,
            "reply_to must be a message id",
        ));
    }
    match ctx
        .gw
        .lifecycle
        .quote(ctx.user, conversation, reply_to)
        .await
    {
        Ok((quote, at)) => {
            message.reply_to = Some(quote);
            Ok(at)
        }
        Err(e) => Err(ctx.change_error(Some(id), &e)),
    }
}
