//! `POST /api/v1/server/publish`: a message from the application, stored
//! and delivered exactly like a user's (durable, counted unread, kept
//! offline, in both inboxes when a named user sends it), to a user or a
//! room, or a line to the lobby. A message may carry an uploaded file: the
//! named sender's own, or any when the application sends it; the file is
//! held for the message as a user's send holds it.

use actix_web::{HttpRequest, HttpResponse, web};
use chat_broker::{channel, envelope};
use chat_media_client::MediaLookupError;
use chat_protocol::MediaInfo;
use chat_protocol::{ChatMessage, ErrorCode, ServerFrame};
use chat_store::{Direct, RoomSend};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ApiError, Scope, ServerApi};

/// Who a message is from when the request names nobody: the application
/// itself. A deployment whose users may be called `system` names a sender
/// in every request instead.
pub const SYSTEM_SENDER: &str = chat_store::SYSTEM;

/// The longest `body`, in bytes (a WebSocket frame's default limit).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The longest `id`, in characters (as a `send`'s).
const MAX_ID: usize = 64;

/// What to publish: a message to one user (`to`) or a room (`room`), or
/// a line to the lobby (`lobby: true`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Publish {
    /// The user the message is for (a user id, or a nickname in open mode).
    #[serde(default)]
    #[schema(example = "bob")]
    to: Option<String>,
    /// The room the message is for (as members name it). From the
    /// application, it needs no membership; from a named user, that user
    /// must be a member.
    #[serde(default)]
    #[schema(example = "ops")]
    room: Option<String>,
    /// `true`: send `body` to the lobby as it is (the seed's raw line; not stored).
    #[serde(default)]
    lobby: Option<bool>,
    /// Who the message is from: a user (who also gets it in their inbox,
    /// as if they had sent it), or absent for the application itself
    /// (`system`).
    #[serde(default)]
    #[schema(example = "shop")]
    from: Option<String>,
    /// The text (up to 64 KiB; may be empty when `media` is given).
    #[serde(default)]
    #[schema(example = "Your order has shipped.")]
    body: String,
    /// An uploaded file (the media service's id): the named sender's own;
    /// any file when the application sends.
    #[serde(default)]
    media: Option<FileRef>,
    /// The application's id for this message (1–64 characters): publishing
    /// again with the same id to the same user or room (from the same
    /// sender) stores nothing and answers the first message, so retries are
    /// safe — for as long as the id is among the sender's last 1 000 direct
    /// sends (the room's last 1 000 entries for a room).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64, example = "order-1042-shipped")]
    id: Option<String>,
}

/// A file uploaded to the media service.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRef {
    /// The id its upload answered with.
    #[schema(example = "01JD2X8Q4M5N6P7R8S9T0V1W2X")]
    id: String,
}

/// What was published.
#[derive(Serialize, ToSchema)]
pub(crate) struct Published {
    /// The stored message, as its receiver gets it (without its inbox `seq`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    message: Option<ChatMessage>,
    /// The message was published before with this `id`: nothing new was
    /// stored, `message` is the first one.
    repeated: bool,
}

/// Publishes a message as the application (or as a named user).
#[utoipa::path(
    post,
    path = "/api/v1/server/publish",
    request_body = Publish,
    responses(
        (status = 201, description = "stored and delivered", body = Published),
        (status = 200, description = "published before with this id: the first message", body = Published),
        (status = 202, description = "sent to the lobby (not stored)", body = Published),
        (status = 400, description = "no target or two, no body and no media, a too long body, a bad name or id", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no API key, or one that opens nothing", body = chat_runtime::error::ErrorBody),
        (status = 403, description = "the key lacks the publish scope, the named sender is no member of the room, or the file is someone else's", body = chat_runtime::error::ErrorBody),
        (status = 404, description = "no such room, or no such file", body = chat_runtime::error::ErrorBody),
        (status = 501, description = "a file, and no media service is configured", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store, the broker or the media service is unreachable: nothing was published", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn publish(
    req: HttpRequest,
    api: web::Data<ServerApi>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    api.authorize(&req, Scope::Publish).await?;
    let request: Publish = crate::json(&body)?;
    let bad = |why: String| ApiError::BadRequest(ErrorCode::InvalidFrame, why);
    if request.body.len() > MAX_BODY_BYTES {
        return Err(bad(format!("body must be at most {MAX_BODY_BYTES} bytes")));
    }
    if request.body.is_empty() && request.media.is_none() {
        return Err(bad("a message needs a body, a media, or both".into()));
    }
    if let Some(id) = &request.id
        && (id.is_empty() || id.chars().count() > MAX_ID)
    {
        return Err(bad(format!("id must be 1 to {MAX_ID} characters")));
    }
    let media = request.media.map(|file| file.id);
    let draft = |from, body, id| Draft {
        message_id: ulid::Ulid::new().to_string(),
        from,
        body,
        media: media.clone(),
        id,
    };
    match (request.to, request.room, request.lobby.unwrap_or(false)) {
        (Some(to), None, false) => {
            let draft = draft(request.from, request.body, request.id);
            holding(&api, draft, |draft| direct(&api, to, draft)).await
        }
        (None, Some(room), false) => {
            let draft = draft(request.from, request.body, request.id);
            holding(&api, draft, |draft| to_room(&api, room, draft)).await
        }
        (None, None, true) => {
            if request.from.is_some() || request.id.is_some() || media.is_some() {
                return Err(bad(
                    "a lobby line has no 'from', 'id' or 'media': it is the seed's raw text".into(),
                ));
            }
            api.broker
                .publish(channel::LOBBY, envelope::text(&request.body))
                .await
                .map_err(|e| {
                    ApiError::Unavailable(chat_store::StoreError::Unavailable(e.to_string()))
                })?;
            Ok(HttpResponse::Accepted().json(Published {
                message: None,
                repeated: false,
            }))
        }
        _ => Err(bad(
            "publish needs exactly one of 'to' (a user), 'room' or 'lobby': true".into(),
        )),
    }
}

/// A name in the request as the user id it stands for.
pub(crate) fn user(api: &ServerApi, name: &str, what: &str) -> Result<String, ApiError> {
    api.names
        .id(name)
        .map_err(|e| ApiError::BadRequest(ErrorCode::InvalidName, format!("{what}: {e}")))
}

/// A publish to a user or a room, checked, its target aside.
struct Draft {
    /// The new message's server id (a ULID), which holds its file.
    message_id: String,
    /// The named sender, as the request names them.
    from: Option<String>,
    body: String,
    /// The file's media id.
    media: Option<String>,
    /// The application's id for the message.
    id: Option<String>,
}

/// Publishes `draft` with `store`, its file held for it first: once held,
/// the deletion of the last other message carrying the file cannot take
/// it (the gateways' rule). When nothing new was stored under the draft's
/// id (refused, or a repeat), the hold is let go.
///
/// Errors: [`ApiError::NotFound`] (the file was deleted), those of `store`.
async fn holding<F, Fut>(api: &ServerApi, draft: Draft, store: F) -> Result<HttpResponse, ApiError>
where
    F: FnOnce(Draft) -> Fut,
    Fut: std::future::Future<Output = Result<(ChatMessage, bool), ApiError>>,
{
    let held = draft
        .media
        .clone()
        .map(|media| (media, draft.message_id.clone()));
    if let Some((media, message)) = &held {
        if !chat_media_client::is_media_id(media) {
            return Err(ApiError::NotFound(format!(
                "'{}' is not a media id",
                media.chars().take(40).collect::<String>()
            )));
        }
        if !api.store.hold(media, message).await? {
            return Err(ApiError::NotFound(format!("media '{media}' was deleted")));
        }
    }
    let stored = store(draft).await;
    if let Some((media, message)) = held {
        // Kept when stored under this id, or when the store's answer was lost
        // (it may have stored it: a hold too many is a file kept, a hold
        // too few a file deleted under a message).
        let kept = match &stored {
            Ok((stored, repeated)) => !repeated && stored.id == message,
            Err(ApiError::Unavailable(_) | ApiError::Room(chat_store::RoomError::Store(_))) => true,
            Err(_) => false,
        };
        if !kept && let Err(e) = api.store.unhold(&media, &message).await {
            tracing::warn!(media, error = %e, "a file stays held by a publish that stored nothing");
        }
    }
    let (message, repeated) = stored?;
    Ok(answer(message, repeated))
}

/// The file `media` as `from` may attach it (`None`: the application,
/// which may attach any).
///
/// Errors: [`ApiError::NotFound`], [`ApiError::Forbidden`] (someone else's
/// file), [`ApiError::NotImplemented`] (no media service here),
/// [`ApiError::Unavailable`].
async fn file(
    api: &ServerApi,
    from: Option<&str>,
    media: Option<String>,
) -> Result<Option<MediaInfo>, ApiError> {
    let Some(media) = media else {
        return Ok(None);
    };
    let Some(directory) = &api.media else {
        return Err(ApiError::NotImplemented(
            "this server has no media service configured (CHAT_MEDIA_URL)".into(),
        ));
    };
    match directory.lookup(from, &media).await {
        Ok(info) => Ok(Some(info)),
        Err(e @ MediaLookupError::NotFound(_)) => Err(ApiError::NotFound(e.to_string())),
        Err(e @ MediaLookupError::NotOwner(_)) => Err(ApiError::Forbidden(e.to_string())),
        Err(e @ MediaLookupError::Unavailable(_)) => Err(ApiError::Unavailable(
            chat_store::StoreError::Unavailable(e.to_string()),
        )),
    }
}

async fn direct(
    api: &ServerApi,
    to: String,
    draft: Draft,
) -> Result<(ChatMessage, bool), ApiError> {
    let to = user(api, &to, "to")?;
    let to_id = to.clone();
    let from = match &draft.from {
        Some(from) => user(api, from, "from")?,
        None => SYSTEM_SENDER.to_owned(),
    };
    // The application has no inbox; a named user keeps a copy of what was
    // sent in their name.
    let copy = from != SYSTEM_SENDER;
    let media = file(api, copy.then_some(from.as_str()), draft.media).await?;
    let id = draft.id;
    let message = ChatMessage {
        id: draft.message_id,
        from,
        to: Some(to),
        body: draft.body,
        media,
        ts: crate::now_ms(),
        ..ChatMessage::default()
    };
    // The application's ids live apart from the sender's own sends, and per
    // receiver: the same id for two users is two messages.
    let client_id = id.map(|id| format!("api:{}:{to_id}:{id}", to_id.len()));
    let direct = Direct::typed(&message, client_id, copy, envelope::text_header(), None);
    let appended = api.store.append_direct(direct).await?;
    let (message, repeated) = match appended.repeated {
        None => (message, false),
        Some(first) => {
            let first = serde_json::from_str::<ChatMessage>(&first).map_err(|e| {
                ApiError::Unavailable(chat_store::StoreError::Unavailable(format!(
                    "unreadable stored message: {e}"
                )))
            })?;
            (first, true)
        }
    };
    Ok((message, repeated))
}

async fn to_room(
    api: &ServerApi,
    room: String,
    draft: Draft,
) -> Result<(ChatMessage, bool), ApiError> {
    let room = chat_auth::names::room(&room)
        .map_err(|e| ApiError::BadRequest(ErrorCode::InvalidName, format!("room: {e}")))?;
    let (from, as_server) = match &draft.from {
        Some(from) => (user(api, from, "from")?, false),
        None => (SYSTEM_SENDER.to_owned(), true),
    };
    let media = file(api, (!as_server).then_some(from.as_str()), draft.media).await?;
    let id = draft.id;
    let message = ChatMessage {
        id: draft.message_id,
        from,
        room: Some(room.clone()),
        body: draft.body,
        media,
        ts: crate::now_ms(),
        ..ChatMessage::default()
    };
    let (head, tail) = ServerFrame::Message(message.clone()).room_template();
    let send = RoomSend {
        room,
        id: message.id.clone(),
        from: message.from.clone(),
        // Apart from the sender's own sends; without an id of the
        // application's, this send is its own.
        client_id: format!("api:{}", id.unwrap_or_else(|| message.id.clone())),
        head,
        tail,
        envelope_header: envelope::text_header(),
        reply_to: None,
        as_server,
    };
    let appended = api.store.append_room(send).await.map_err(ApiError::Room)?;
    let (message, repeated) = match appended.repeated {
        None => {
            let stored = ChatMessage {
                seq: Some(appended.seq),
                ..message
            };
            (stored, false)
        }
        Some(first) => match serde_json::from_str::<ServerFrame>(&first) {
            Ok(ServerFrame::Message(first)) => (first, true),
            _ => {
                return Err(ApiError::Unavailable(chat_store::StoreError::Unavailable(
                    "unreadable stored room message".into(),
                )));
            }
        },
    };
    Ok((message, repeated))
}

/// `201` with a new message, `200` with the first one a repeat stands for.
fn answer(message: ChatMessage, repeated: bool) -> HttpResponse {
    let status = if repeated {
        actix_web::http::StatusCode::OK
    } else {
        actix_web::http::StatusCode::CREATED
    };
    HttpResponse::build(status).json(Published {
        message: Some(message),
        repeated,
    })
}
