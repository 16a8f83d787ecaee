//! The HTTP handlers.

use actix_web::{HttpRequest, HttpResponse, web};
use chat_protocol::ErrorCode;
use chat_store::ReadMarker;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{ApiError, PresenceService};

/// Largest page of history.
const MAX_PAGE: usize = 200;

/// A user named in a request, as the id it stands for (a nickname mapped
/// in open mode, a provider id as it is in jwt mode).
pub(crate) fn user_id(svc: &PresenceService, name: &str, what: &str) -> Result<String, ApiError> {
    svc.auth
        .user_names()
        .id(name)
        .map_err(|e| ApiError::BadRequest(ErrorCode::InvalidName, format!("{what}: {e}")))
}

/// Who the caller is.
#[derive(Serialize, ToSchema)]
pub(crate) struct Me {
    /// The user id messages and frames name the caller by (a nickname
    /// mapped to its id in open mode; the provider's id in jwt mode).
    user: String,
    /// How the caller is shown: the token's display name, or the nickname
    /// as typed.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

/// Who the caller is, as the server names them: what a client compares the
/// `from` of messages with.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    responses(
        (status = 200, description = "the caller's id and display name", body = Me,
         example = json!({"user": "bob", "name": "Bob"})),
        (status = 400, description = "an invalid nickname (open mode)", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no valid credentials", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn me(
    req: HttpRequest,
    svc: web::Data<PresenceService>,
) -> Result<HttpResponse, ApiError> {
    let caller = svc.auth.caller(&req).await?;
    Ok(HttpResponse::Ok().json(Me {
        user: caller.id,
        name: caller.name,
    }))
}

/// What `GET /api/v1/unread` includes.
#[derive(Deserialize, IntoParams)]
pub(crate) struct UnreadQuery {
    /// `rooms`: answer `{"counts": {sender: count}, "rooms": {room:
    /// count}}` (every room of the caller, 0 included) instead of the
    /// direct counters alone.
    #[param(pattern = "^rooms$")]
    include: Option<String>,
}

/// Direct counters and room counts.
#[derive(Serialize, ToSchema)]
pub(crate) struct AllUnread {
    /// Sender → unread direct messages.
    counts: std::collections::BTreeMap<String, u64>,
    /// Room → unread entries, for every room of the caller.
    rooms: std::collections::BTreeMap<String, u64>,
}

/// The answer of `GET /api/v1/unread`: the seed's map alone, or both
/// kinds of counts when rooms were asked for.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum UnreadAnswer {
    /// Sender → unread direct messages (the seed's shape).
    Direct(std::collections::BTreeMap<String, u64>),
    /// With `include=rooms`: `{counts, rooms}`.
    All(AllUnread),
}

/// The caller's unread counters: sender → count (the seed's shape); with
/// `?include=rooms`, the rooms' counts beside them.
#[utoipa::path(
    get,
    path = "/api/v1/unread",
    params(UnreadQuery),
    responses(
        (status = 200, description = "sender → unread count; with `include=rooms`, `{counts, rooms}`", body = UnreadAnswer,
         example = json!({"alice": 3, "carol": 1})),
        (status = 400, description = "an unknown `include`", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no valid credentials", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn unread(
    req: HttpRequest,
    query: web::Query<UnreadQuery>,
    svc: web::Data<PresenceService>,
) -> Result<HttpResponse, ApiError> {
    let user = svc.auth.caller(&req).await?.id;
    let counts = svc.store.unread(&user).await?;
    match query.include.as_deref() {
        None => Ok(HttpResponse::Ok().json(UnreadAnswer::Direct(counts))),
        Some("rooms") => {
            let rooms = svc.rooms.room_unread(&user).await?;
            Ok(HttpResponse::Ok().json(UnreadAnswer::All(AllUnread { counts, rooms })))
        }
        Some(other) => Err(ApiError::BadRequest(
            ErrorCode::InvalidFrame,
            format!("include must be 'rooms', not '{other}'"),
        )),
    }
}

/// Marks the caller's conversation with `peer` read up to a message.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadRequest {
    /// The other user of the conversation (a user id: no control characters).
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$"
    )]
    peer: String,
    /// The id of the last message read.
    #[schema(min_length = 1, max_length = 64)]
    up_to: String,
}

/// Marks a conversation read up to a message: the messages from `peer`
/// after it stay counted unread; when the marker moves forward, every
/// connection of the caller gets the new counters and `peer` a receipt.
#[utoipa::path(
    post,
    path = "/api/v1/read",
    request_body = ReadRequest,
    responses(
        (status = 200, description = "the caller's counters afterwards", body = std::collections::BTreeMap<String, u64>),
        (status = 400, description = "a malformed request", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no valid credentials", body = chat_runtime::error::ErrorBody),
        (status = 404, description = "`up_to` is no message of the conversation with `peer` (`not_found`); nothing changed", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn read(
    req: HttpRequest,
    body: web::Json<ReadRequest>,
    svc: web::Data<PresenceService>,
) -> Result<HttpResponse, ApiError> {
    let user = svc.auth.caller(&req).await?.id;
    let peer = user_id(&svc, &body.peer, "peer")?;
    if body.up_to.is_empty() || body.up_to.len() > 64 {
        return Err(ApiError::BadRequest(
            ErrorCode::InvalidFrame,
            "up_to must be a message id".into(),
        ));
    }
    let marker =
        chat_store::read::mark_read(&*svc.store, &svc.broker, &user, &peer, &body.up_to).await?;
    match marker {
        ReadMarker::Moved(counts) | ReadMarker::Stale(counts) => {
            Ok(HttpResponse::Ok().json(counts))
        }
        ReadMarker::NotFound => Err(ApiError::NotFound(format!(
            "no message '{}' in the conversation with '{}'",
            body.up_to, body.peer
        ))),
    }
}

/// A user's online state.
#[derive(Serialize, ToSchema)]
pub(crate) struct PresenceView {
    /// The user asked about.
    user: String,
    /// At least one connection on a live gateway.
    online: bool,
    /// When their last connection closed, ms since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seen: Option<u64>,
}

/// Whether a user is online, and when they were last seen.
#[utoipa::path(
    get,
    path = "/api/v1/presence/{user}",
    params(("user" = String, Path, description = "the user asked about: a user id (at most 255 characters, no control characters)", min_length = 1, max_length = 255, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$")),
    responses(
        (status = 200, description = "online state", body = PresenceView),
        (status = 400, description = "an invalid user name", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no valid credentials", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn presence(
    req: HttpRequest,
    path: web::Path<String>,
    svc: web::Data<PresenceService>,
) -> Result<HttpResponse, ApiError> {
    svc.auth.caller(&req).await?;
    let user = user_id(&svc, &path.into_inner(), "user")?;
    let presence = svc.presence.state(&user).await?;
    Ok(HttpResponse::Ok().json(PresenceView {
        user,
        online: presence.online,
        last_seen: presence.last_seen,
    }))
}

/// Paging through history.
#[derive(Deserialize, IntoParams)]
pub(crate) struct Page {
    /// Continue after this cursor (`next_before` of the previous page).
    #[param(pattern = "^[0-9]{1,19}-[0-9]{1,19}$")]
    before: Option<String>,
    /// At most this many messages (default 50, at most 200).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<usize>,
}

/// A page of a conversation, newest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct HistoryPage {
    /// Messages, newest first: `{id, from, to, body, ts}`.
    #[schema(value_type = Vec<Object>)]
    messages: Vec<serde_json::Value>,
    /// Pass as `before` for the next (older) page; absent at the start.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<String>,
}

/// The caller's conversation with `peer`, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/conversations/{peer}/messages",
    params(("peer" = String, Path, description = "the other user (at most 255 characters, no control characters)", min_length = 1, max_length = 255, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$"), Page),
    responses(
        (status = 200, description = "a page of messages", body = HistoryPage),
        (status = 400, description = "an invalid user name, cursor or limit", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no valid credentials", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn history(
    req: HttpRequest,
    path: web::Path<String>,
    page: web::Query<Page>,
    svc: web::Data<PresenceService>,
) -> Result<HttpResponse, ApiError> {
    let user = svc.auth.caller(&req).await?.id;
    let peer = user_id(&svc, &path.into_inner(), "peer")?;
    // The store checks the cursor's form and answers `InvalidCursor`, a
    // 400, for any other.
    let limit = page.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(
            ErrorCode::InvalidFrame,
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let entries = svc
        .store
        .history(&user, &peer, page.before.as_deref(), limit)
        .await?;
    let next_before = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.cursor.clone()))
        .flatten();
    let messages = entries
        .iter()
        .filter_map(|e| serde_json::from_str(&e.message).ok())
        .collect();
    Ok(HttpResponse::Ok().json(HistoryPage {
        messages,
        next_before,
    }))
}

/// This service's OpenAPI document.
pub(crate) async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(crate::openapi_json())
}
