//! Direct messages (typed and the seed's) and read markers.

use chat_broker::envelope;
use chat_protocol::{ChatMessage, ErrorCode, MediaInfo, SeedFrame, ServerFrame};
use chat_store::{Direct, FrameText, ReadMarker};

use super::handler::{Ctx, Kept, Outcome, Replies};
use crate::media::MediaLookupError;

/// Longest client-chosen frame id.
pub(crate) const MAX_CLIENT_ID: usize = 64;

/// A seed frame is stored, counted unread and delivered to every
/// connection of its receiver, byte for byte.
pub(crate) async fn seed(ctx: &Ctx<'_>, seed: &SeedFrame, text: &str) -> Outcome {
    let user = ctx.user;
    // The seed names users as typed: `Bob` sends as `bob` in open mode.
    let sender = ctx.gw.auth.user_names().id(&seed.sender);
    if sender.as_deref() != Ok(user) {
        return ctx.replies.error(
            None,
            ErrorCode::SenderMismatch,
            &format!("this connection belongs to '{user}'; it cannot send as another user"),
        );
    }
    let receiver = match ctx.user_id(&seed.receiver, "receiver", None) {
        Ok(receiver) => receiver,
        Err(outcome) => return outcome,
    };
    let body = match &seed.message {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let message = ChatMessage {
        seq: None,
        id: ulid::Ulid::new().to_string(),
        from: user.to_owned(),
        from_name: ctx.name.map(str::to_owned),
        to: Some(receiver.clone()),
        room: None,
        body,
        media: None,
        ts: envelope::now_micros() / 1000,
        ..Default::default()
    };
    let direct = Direct {
        id: message.id.clone(),
        from: message.from.clone(),
        to: receiver,
        // The seed's frames carry no id: nothing to recognise a retry by.
        client_id: None,
        frame: FrameText::Seed(text.to_owned()),
        history: json(&message),
        copy_to_sender: false,
        envelope_header: envelope::text_header(),
        reply_to: None,
    };
    match ctx.gw.store.append_direct(direct).await {
        Ok(_) => Outcome::Continue,
        Err(e) => ctx.replies.unavailable(None, &e),
    }
}

/// A direct message to user id `to`: stored (durable, counted unread,
/// published) before the `ack`, which carries the sender's inbox position.
/// A send repeating one the sender already made (same `id`) is answered
/// with the first send's `ack` and stored nothing.
///
/// A message without a file is queued in the store and answered later
/// ([`Outcome::Queued`]), so the connection can queue its next `send`
/// meanwhile; one with a file is answered here, as what was stored decides
/// whether the file's hold is kept.
pub(crate) async fn send(
    ctx: &Ctx<'_>,
    id: String,
    message: ChatMessage,
    reply_to: Option<u64>,
) -> (Outcome, Kept) {
    let direct = Direct::typed(
        &message,
        Some(id.clone()),
        true,
        envelope::text_header(),
        reply_to,
    );
    if message.media.is_some() {
        let outcome = ctx.gw.store.append_direct(direct).await;
        return answer(ctx.replies, id, message, outcome);
    }
    let appending = ctx.gw.store.queue_direct(direct).await;
    let replies = ctx.replies.clone();
    let answered = async move {
        answer(&replies, id, message, appending.await);
    };
    (Outcome::Queued(Box::pin(answered)), Kept::Nothing)
}

/// Answers a stored `send` (its `ack`, or why not) and says what was kept.
fn answer(
    replies: &Replies,
    id: String,
    message: ChatMessage,
    outcome: Result<chat_store::Appended, chat_store::StoreError>,
) -> (Outcome, Kept) {
    match outcome {
        Ok(appended) => {
            let stored = match appended.repeated {
                None => message,
                Some(first) => match serde_json::from_str::<ChatMessage>(&first) {
                    Ok(first) => first,
                    Err(e) => return (replies.unavailable(Some(&id), &e), Kept::Unknown),
                },
            };
            let kept = Kept::As(stored.id.clone());
            // A note to oneself has one inbox copy: the receiver's is the sender's.
            let to_self = stored.to.as_deref() == Some(stored.from.as_str());
            let seq = appended
                .sender_seq
                .or(to_self.then_some(appended.receiver_seq));
            let message = ChatMessage { seq, ..stored };
            (replies.send(&ServerFrame::Ack { id, message }), kept)
        }
        Err(e) => (replies.unavailable(Some(&id), &e), Kept::Unknown),
    }
}

/// `id` if it can be a media id (a ULID); anything else names nothing
/// (and never reaches a URL or a key).
pub(crate) fn media_id(id: &str) -> Result<(), (ErrorCode, String)> {
    if !crate::media::is_media_id(id) {
        return Err((
            ErrorCode::NotFound,
            format!(
                "'{}' is not a media id",
                id.chars().take(40).collect::<String>()
            ),
        ));
    }
    Ok(())
}

/// The sender's file, with its metadata and a fresh link, or why not.
pub(crate) async fn resolve_media(
    ctx: &Ctx<'_>,
    id: &str,
) -> Result<MediaInfo, (ErrorCode, String)> {
    media_id(id)?;
    let Some(directory) = ctx.gw.media.get() else {
        return Err((
            ErrorCode::Unsupported,
            "this gateway has no media service configured".into(),
        ));
    };
    directory.lookup(Some(ctx.user), id).await.map_err(|e| {
        let code = match e {
            MediaLookupError::NotFound(_) => ErrorCode::NotFound,
            MediaLookupError::NotOwner(_) => ErrorCode::Forbidden,
            MediaLookupError::Unavailable(_) => ErrorCode::Unavailable,
        };
        (code, e.to_string())
    })
}

/// `read {peer, up_to}`: moves the read marker forward, to a message of
/// the conversation; a stale read changes nothing and tells no one.
pub(crate) async fn read(
    ctx: &Ctx<'_>,
    id: Option<String>,
    peer: String,
    up_to: String,
) -> Outcome {
    let id = id.as_deref();
    let peer = match ctx.user_id(&peer, "peer", id) {
        Ok(peer) => peer,
        Err(outcome) => return outcome,
    };
    if up_to.is_empty() || up_to.len() > MAX_CLIENT_ID {
        return ctx
            .replies
            .error(id, ErrorCode::InvalidFrame, "up_to must be a message id");
    }
    let broker = match ctx.gw.hub.broker() {
        Ok(broker) => std::sync::Arc::clone(broker),
        Err(e) => return ctx.replies.unavailable(id, &e),
    };
    match chat_store::read::mark_read(&*ctx.gw.store, &broker, ctx.user, &peer, &up_to).await {
        Ok(ReadMarker::Moved(_) | ReadMarker::Stale(_)) => Outcome::Continue,
        Ok(ReadMarker::NotFound) => ctx.replies.error(
            id,
            ErrorCode::NotFound,
            &format!("no message '{up_to}' in the conversation with '{peer}'"),
        ),
        Err(e) => ctx.replies.unavailable(id, &e),
    }
}

fn json(message: &ChatMessage) -> String {
    // unwrap: a ChatMessage holds only strings and integers.
    #[allow(clippy::unwrap_used)]
    serde_json::to_string(message).unwrap()
}
