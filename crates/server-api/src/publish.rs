//! `POST /api/v1/server/publish`: a message from the application, stored
//! and delivered exactly like a user's (durable, counted unread, kept
//! offline, in both inboxes when a named user sends it), to a user or a
//! room, or a line to the lobby.

use actix_web::{HttpRequest, HttpResponse, web};
use chat_broker::{channel, envelope};
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
    /// The text (1 byte to 64 KiB).
    #[schema(min_length = 1, example = "Your order has shipped.")]
    body: String,
    /// The application's id for this message (1–64 characters): publishing
    /// again with the same id to the same user or room (from the same
    /// sender) stores nothing and answers the first message, so retries are
    /// safe — for as long as the id is among the sender's last 1 000 direct
    /// sends (the room's last 1 000 entries for a room).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64, example = "order-1042-shipped")]
    id: Option<String>,
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
        (status = 400, description = "no target or two, an empty or too long body, a bad name or id", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no API key, or one that opens nothing", body = chat_runtime::error::ErrorBody),
        (status = 403, description = "the key lacks the publish scope, or the named sender is no member of the room", body = chat_runtime::error::ErrorBody),
        (status = 404, description = "no such room", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store or the broker is unreachable: nothing was published", body = chat_runtime::error::ErrorBody),
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
    if request.body.is_empty() || request.body.len() > MAX_BODY_BYTES {
        return Err(bad(format!("body must be 1 to {MAX_BODY_BYTES} bytes")));
    }
    if let Some(id) = &request.id
        && (id.is_empty() || id.chars().count() > MAX_ID)
    {
        return Err(bad(format!("id must be 1 to {MAX_ID} characters")));
    }
    match (request.to, request.room, request.lobby.unwrap_or(false)) {
        (Some(to), None, false) => direct(&api, to, request.from, request.body, request.id).await,
        (None, Some(room), false) => {
            to_room(&api, room, request.from, request.body, request.id).await
        }
        (None, None, true) => {
            if request.from.is_some() || request.id.is_some() {
                return Err(bad(
                    "a lobby line has no 'from' or 'id': it is the seed's raw text".into(),
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

async fn direct(
    api: &ServerApi,
    to: String,
    from: Option<String>,
    body: String,
    id: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let to = user(api, &to, "to")?;
    let to_id = to.clone();
    let from = match from {
        Some(from) => user(api, &from, "from")?,
        None => SYSTEM_SENDER.to_owned(),
    };
    // The application has no inbox; a named user keeps a copy of what was
    // sent in their name.
    let copy = from != SYSTEM_SENDER;
    let message = ChatMessage {
        id: ulid::Ulid::new().to_string(),
        from,
        to: Some(to),
        body,
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
    Ok(answer(message, repeated))
}

async fn to_room(
    api: &ServerApi,
    room: String,
    from: Option<String>,
    body: String,
    id: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let room = chat_auth::names::room(&room)
        .map_err(|e| ApiError::BadRequest(ErrorCode::InvalidName, format!("room: {e}")))?;
    let (from, as_server) = match from {
        Some(from) => (user(api, &from, "from")?, false),
        None => (SYSTEM_SENDER.to_owned(), true),
    };
    let message = ChatMessage {
        id: ulid::Ulid::new().to_string(),
        from,
        room: Some(room.clone()),
        body,
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
    Ok(answer(message, repeated))
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
