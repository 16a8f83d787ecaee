//! The HTTP handlers of durable rooms: listing, creating, members,
//! history, read markers. Every call acts as the caller, with the rules of
//! the room store (`chat_store::RoomStore`).

use actix_web::{HttpRequest, HttpResponse, web};
use chat_protocol::ErrorCode;
use chat_store::{Admission, Role, RoomError, RoomRead};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::routes::user_id;
use crate::{ApiError, PresenceService};

/// Largest page of a room's history.
const MAX_PAGE: usize = 200;

/// Most members one creation may add (each is a store call; more are added
/// one request at a time).
const MAX_INITIAL_MEMBERS: usize = 100;

/// A room named in a path or body, as the id it stands for.
fn room_id(name: &str) -> Result<String, ApiError> {
    chat_auth::names::room(name)
        .map_err(|e| ApiError::BadRequest(ErrorCode::InvalidName, format!("room: {e}")))
}

/// A frame kept by a room, as JSON (each has its `type`).
fn frame(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

/// One of the caller's rooms.
#[derive(Serialize, ToSchema)]
pub(crate) struct RoomEntry {
    /// The room's name.
    room: String,
    /// Only members may add members.
    private: bool,
    /// The caller's role: `owner`, `admin` or `member`.
    role: String,
    /// Entries (messages and membership changes) after the caller's read marker.
    unread: u64,
    /// The room's latest entry (a `message`, `member_joined` or
    /// `member_left` frame), if any is kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    last: Option<serde_json::Value>,
}

/// The caller's rooms.
#[derive(Serialize, ToSchema)]
pub(crate) struct RoomList {
    /// By name.
    rooms: Vec<RoomEntry>,
}

/// The caller's rooms with their unread counts and latest entries.
#[utoipa::path(
    get,
    path = "/api/v1/rooms",
    responses(
        (status = 200, description = "the caller's rooms", body = RoomList),
        (status = 401, description = "no valid credentials", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn list(
    req: HttpRequest,
    svc: web::Data<PresenceService>,
) -> Result<HttpResponse, ApiError> {
    let user = svc.auth.caller(&req).await?.id;
    let rooms = svc
        .rooms
        .room_list(&user)
        .await?
        .into_iter()
        .map(|summary| RoomEntry {
            room: summary.room,
            private: summary.private,
            role: summary.role.as_str().to_owned(),
            unread: summary.unread,
            last: summary.last.as_deref().map(frame),
        })
        .collect();
    Ok(HttpResponse::Ok().json(RoomList { rooms }))
}

/// A room to create.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRoom {
    /// Its name (the room naming rules).
    #[schema(min_length = 1, max_length = 255)]
    name: String,
    /// Only members may add members, and outsiders cannot join.
    #[serde(default)]
    private: bool,
    /// Users to add as members besides the caller (its owner).
    #[serde(default)]
    #[schema(max_items = 100)]
    members: Vec<String>,
}

/// A room and its members.
#[derive(Serialize, ToSchema)]
pub(crate) struct RoomView {
    /// Its name.
    room: String,
    /// Only members may add members.
    private: bool,
    /// Its owner, while it has members.
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    /// The `seq` of its latest entry (0 for none).
    last_seq: u64,
    /// Its members with their roles, the owner and admins first.
    members: Vec<MemberView>,
    /// At creation: users that could not be added, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    not_added: Vec<NotAdded>,
}

/// A member and their role.
#[derive(Serialize, ToSchema)]
pub(crate) struct MemberView {
    /// The user.
    user: String,
    /// `owner`, `admin` or `member`.
    role: String,
}

/// A user a creation could not add.
#[derive(Serialize, ToSchema)]
pub(crate) struct NotAdded {
    /// The user, as named in the request.
    user: String,
    /// Why: an error code (`too_many_rooms`, `room_full`, `invalid_name`).
    #[schema(value_type = String)]
    error: ErrorCode,
    /// A human-readable explanation.
    message: String,
}

async fn view(
    svc: &PresenceService,
    room: &str,
    user: &str,
    not_added: Vec<NotAdded>,
) -> Result<RoomView, ApiError> {
    let (info, members) = svc.rooms.room_info(room, Some(user)).await?;
    Ok(RoomView {
        room: info.name,
        private: info.private,
        owner: info.owner,
        last_seq: info.last_seq,
        members: members
            .into_iter()
            .map(|m| MemberView {
                user: m.user,
                role: m.role.as_str().to_owned(),
            })
            .collect(),
        not_added,
    })
}

/// Creates a room owned by the caller, with `members` added; a member who
/// cannot be added (at their limit of rooms, an invalid name) is listed in
/// `not_added` and the room is created anyway.
#[utoipa::path(
    post,
    path = "/api/v1/rooms",
    request_body = NewRoom,
    responses(
        (status = 201, description = "the room", body = RoomView),
        (status = 400, description = "an invalid room name or request", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no valid credentials", body = chat_runtime::error::ErrorBody),
        (status = 409, description = "the name is taken (`conflict`), or the caller is in as many rooms as allowed (`too_many_rooms`)", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn create(
    req: HttpRequest,
    body: web::Json<NewRoom>,
    svc: web::Data<PresenceService>,
) -> Result<HttpResponse, ApiError> {
    let owner = svc.auth.caller(&req).await?.id;
    let body = body.into_inner();
    let room = room_id(&body.name)?;
    if body.members.len() > MAX_INITIAL_MEMBERS {
        return Err(ApiError::BadRequest(
            ErrorCode::InvalidFrame,
            format!("at most {MAX_INITIAL_MEMBERS} members at creation; add more later"),
        ));
    }
    svc.rooms.create_room(&room, &owner, body.private).await?;
    let mut not_added = Vec::new();
    for name in body.members {
        let added = match user_id(&svc, &name, "member") {
            Ok(user) => svc
                .rooms
                .join_room(
                    &room,
                    &user,
                    Admission::Added {
                        by: owner.clone(),
                        role: Role::Member,
                    },
                )
                .await
                .map(drop)
                .map_err(ApiError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = added {
            if let ApiError::Unavailable(_) = e {
                return Err(e);
            }
            not_added.push(NotAdded {
                user: name,
                error: chat_runtime::error::HttpError::code(&e),
                message: e.to_string(),
            });
        }
    }
    let view = view(&svc, &room, &owner, not_added).await?;
    Ok(HttpResponse::Created().json(view))
}

/// A room and its members: anyone may look at a public room, only its
/// members at a private one.
#[utoipa::path(
    get,
    path = "/api/v1/rooms/{room}",
    params(("room" = String, Path, description = "the room")),
    responses(
        (status = 200, description = "the room", body = RoomView),
        (status = 400, description = "an invalid room name", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no valid credentials", body = chat_runtime::error::ErrorBody),
        (status = 403, description = "a private room the caller is no member of", body = chat_runtime::error::ErrorBody),
        (status = 404, description = "no such room", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn show(
    req: HttpRequest,
    path: web::Path<String>,
    svc: web::Data<PresenceService>,
) -> Result<HttpResponse, ApiError> {
    let user = svc.auth.caller(&req).await?.id;
    let room = room_id(&path.into_inner())?;
    Ok(HttpResponse::Ok().json(view(&svc, &room, &user, Vec::new()).await?))
}

/// A member to add.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewMember {
    /// The user to add (a user id: no control characters).
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$"
    )]
    user: String,
    /// `member` (the default) or `admin` (only the owner adds admins).
    #[serde(default)]
    role: Option<String>,
}

/// What adding a member did.
#[derive(Serialize, ToSchema)]
pub(crate) struct Added {
    /// The user's id.
    user: String,
    /// `false` when they were a member already (nothing changed).
    added: bool,
}

/// Adds a member (the caller must be one; only the owner adds admins).
/// The new member's connections follow the room at once.
#[utoipa::path(
    post,
    path = "/api/v1/rooms/{room}/members",
    params(("room" = String, Path, description = "the room")),
    request_body = NewMember,
    responses(
        (status = 200, description = "added, or a member already", body = Added),
        (status = 400, description = "an invalid name or role", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no valid credentials", body = chat_runtime::error::ErrorBody),
        (status = 403, description = "the caller is no member, or no owner adding an admin", body = chat_runtime::error::ErrorBody),
        (status = 404, description = "no such room", body = chat_runtime::error::ErrorBody),
        (status = 409, description = "the room is full (`room_full`) or the user in as many rooms as allowed (`too_many_rooms`)", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn add(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<NewMember>,
    svc: web::Data<PresenceService>,
) -> Result<HttpResponse, ApiError> {
    let by = svc.auth.caller(&req).await?.id;
    let room = room_id(&path.into_inner())?;
    let user = user_id(&svc, &body.user, "user")?;
    let role = match body.role.as_deref() {
        None | Some("member") => Role::Member,
        Some("admin") => Role::Admin,
        Some(other) => {
            return Err(ApiError::BadRequest(
                ErrorCode::InvalidFrame,
                format!("role must be 'member' or 'admin', not '{other}'"),
            ));
        }
    };
    let added = svc
        .rooms
        .join_room(&room, &user, Admission::Added { by, role })
        .await?
        .is_some();
    Ok(HttpResponse::Ok().json(Added { user, added }))
}

/// Removes a member: the caller themselves (leaving), or — by the owner or
/// an admin — someone else (an admin removes members only).
#[utoipa::path(
    delete,
    path = "/api/v1/rooms/{room}/members/{user}",
    params(
        ("room" = String, Path, description = "the room"),
        ("user" = String, Path, description = "the member to remove (a user id: no control characters)", min_length = 1, max_length = 255, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$"),
    ),
    responses(
        (status = 204, description = "removed"),
        (status = 400, description = "an invalid name", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no valid credentials", body = chat_runtime::error::ErrorBody),
        (status = 403, description = "the caller may not remove that member", body = chat_runtime::error::ErrorBody),
        (status = 404, description = "no such room, or no such member", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn remove(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    svc: web::Data<PresenceService>,
) -> Result<HttpResponse, ApiError> {
    let by = svc.auth.caller(&req).await?.id;
    let (room, user) = path.into_inner();
    let room = room_id(&room)?;
    let user = user_id(&svc, &user, "user")?;
    if svc
        .rooms
        .leave_room(&room, &user, Some(&by))
        .await?
        .is_some()
    {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound(format!(
            "'{user}' is not a member of room '{room}'"
        )))
    }
}

/// Paging through a room's history.
#[derive(Deserialize, IntoParams)]
pub(crate) struct Page {
    /// Entries before this `seq` (`next_before` of the previous page);
    /// `seq`s are positive and fit a signed 64-bit integer (SQLite's).
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
    before: Option<u64>,
    /// At most this many entries (default 50, at most 200).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<usize>,
}

/// A page of a room's history, newest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct RoomPage {
    /// Entries, newest first, as frames: `message`, `member_joined`,
    /// `member_left` (each with its `seq`).
    #[schema(value_type = Vec<Object>)]
    messages: Vec<serde_json::Value>,
    /// Pass as `before` for the next (older) page; absent at the start.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<u64>,
}

/// A room's history, newest first (members only).
#[utoipa::path(
    get,
    path = "/api/v1/rooms/{room}/messages",
    params(("room" = String, Path, description = "the room"), Page),
    responses(
        (status = 200, description = "a page of entries", body = RoomPage),
        (status = 400, description = "an invalid room name, cursor or limit", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no valid credentials", body = chat_runtime::error::ErrorBody),
        (status = 403, description = "the caller is no member", body = chat_runtime::error::ErrorBody),
        (status = 404, description = "no such room", body = chat_runtime::error::ErrorBody),
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
    let room = room_id(&path.into_inner())?;
    let limit = page.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(
            ErrorCode::InvalidFrame,
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    if page.before.is_some_and(|b| b == 0 || b > i64::MAX as u64) {
        return Err(ApiError::BadRequest(
            ErrorCode::InvalidFrame,
            format!("before must be a seq between 1 and {}", i64::MAX),
        ));
    }
    let entries = svc
        .rooms
        .room_history(&room, &user, page.before, limit)
        .await?;
    let next_before = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    let messages = entries.iter().map(|e| frame(&e.frame)).collect();
    Ok(HttpResponse::Ok().json(RoomPage {
        messages,
        next_before,
    }))
}

/// Marks the caller's place in a room.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoomReadRequest {
    /// The id of the last entry read.
    #[schema(min_length = 1, max_length = 64)]
    up_to: String,
}

/// The caller's count in a room after a read.
#[derive(Serialize, ToSchema)]
pub(crate) struct RoomUnreadView {
    /// The room.
    room: String,
    /// Entries after the caller's read marker.
    unread: u64,
}

/// Marks a room read up to an entry, like the `read {room, up_to}` frame:
/// the marker only moves forward; every connection of the caller gets the
/// room's new count, and a small room's members a receipt.
#[utoipa::path(
    post,
    path = "/api/v1/rooms/{room}/read",
    params(("room" = String, Path, description = "the room")),
    request_body = RoomReadRequest,
    responses(
        (status = 200, description = "the caller's count afterwards (unchanged for a stale read)", body = RoomUnreadView),
        (status = 400, description = "a malformed request", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no valid credentials", body = chat_runtime::error::ErrorBody),
        (status = 403, description = "the caller is no member", body = chat_runtime::error::ErrorBody),
        (status = 404, description = "no such room, or `up_to` is no entry of it", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn read(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<RoomReadRequest>,
    svc: web::Data<PresenceService>,
) -> Result<HttpResponse, ApiError> {
    let user = svc.auth.caller(&req).await?.id;
    let room = room_id(&path.into_inner())?;
    if body.up_to.is_empty() || body.up_to.len() > 64 {
        return Err(ApiError::BadRequest(
            ErrorCode::InvalidFrame,
            "up_to must be an entry id".into(),
        ));
    }
    let read = chat_store::read::mark_room_read(
        &*svc.store,
        &*svc.rooms,
        &svc.broker,
        &user,
        &room,
        &body.up_to,
        svc.receipts_max,
    )
    .await?;
    match read {
        RoomRead::Moved { unread, .. } | RoomRead::Stale { unread } => {
            Ok(HttpResponse::Ok().json(RoomUnreadView { room, unread }))
        }
        RoomRead::NotFound => Err(ApiError::NotFound(format!(
            "no entry '{}' in room '{room}'",
            body.up_to
        ))),
    }
}

impl From<RoomError> for ApiError {
    fn from(e: RoomError) -> Self {
        match e {
            RoomError::Store(e) => ApiError::Unavailable(e),
            other => ApiError::Room(other),
        }
    }
}
