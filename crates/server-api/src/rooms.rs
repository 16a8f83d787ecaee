//! Rooms as the application manages them (scope `rooms`): created for a
//! user, members added (private rooms too, as admins too) and removed with
//! the application's own power, no member's rights asked. The entries
//! name the application (`system`) as who added or removed them. Any
//! room, and any user's rooms, may be read (scope `read`).

use actix_web::{HttpRequest, HttpResponse, web};
use chat_protocol::ErrorCode;
use chat_store::{Admission, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::publish::user;
use crate::{ApiError, Scope, ServerApi};

/// Most members one creation may add.
const MAX_INITIAL_MEMBERS: usize = 100;

/// A room named in a path or body, as the id it stands for.
fn room_id(name: &str) -> Result<String, ApiError> {
    chat_auth::names::room(name)
        .map_err(|e| ApiError::BadRequest(ErrorCode::InvalidName, format!("room: {e}")))
}

/// A role the application may give: `member` (the default) or `admin`.
fn role(name: Option<&str>) -> Result<Role, ApiError> {
    match name.map(Role::parse) {
        None => Ok(Role::Member),
        Some(Some(role @ (Role::Member | Role::Admin))) => Ok(role),
        Some(_) => Err(ApiError::BadRequest(
            ErrorCode::InvalidFrame,
            "role is member or admin (a room's owner is who created it)".into(),
        )),
    }
}

/// A room to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRoom {
    /// Its name (the room naming rules).
    #[schema(example = "order-1042")]
    name: String,
    /// The user who owns it (its first member).
    #[schema(example = "alice")]
    owner: String,
    /// Only members add members (the application always may).
    #[serde(default)]
    private: bool,
    /// Users added as members (at most 100).
    #[serde(default)]
    members: Vec<String>,
}

/// A user the room could not take.
#[derive(Serialize, ToSchema)]
pub(crate) struct NotAdded {
    /// The user.
    user: String,
    /// Why: the protocol's code (`room_full`, `too_many_rooms`, `invalid_name`…).
    error: String,
}

/// A room created.
#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedRoom {
    /// Its id.
    room: String,
    /// Who owns it.
    owner: String,
    /// Members added besides the owner.
    added: Vec<String>,
    /// Members that could not be added, and why.
    not_added: Vec<NotAdded>,
}

/// Creates a room owned by a user, with members.
#[utoipa::path(
    post,
    path = "/api/v1/server/rooms",
    request_body = NewRoom,
    responses(
        (status = 201, description = "created", body = CreatedRoom),
        (status = 400, description = "a name the rules refuse, too many members", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no API key, or one that opens nothing", body = chat_runtime::error::ErrorBody),
        (status = 403, description = "the key lacks the rooms scope", body = chat_runtime::error::ErrorBody),
        (status = 409, description = "the name is taken, or the owner is in too many rooms", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn create(
    req: HttpRequest,
    api: web::Data<ServerApi>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    api.authorize(&req, Scope::Rooms).await?;
    let new: NewRoom = crate::json(&body)?;
    if new.members.len() > MAX_INITIAL_MEMBERS {
        return Err(ApiError::BadRequest(
            ErrorCode::InvalidFrame,
            format!("at most {MAX_INITIAL_MEMBERS} members at creation; add more one by one"),
        ));
    }
    let room = room_id(&new.name)?;
    let owner = user(&api, &new.owner, "owner")?;
    api.store
        .create_room(&room, &owner, new.private)
        .await
        .map_err(ApiError::Room)?;
    let (mut added, mut not_added) = (Vec::new(), Vec::new());
    for name in new.members {
        let member = match user(&api, &name, "member") {
            Ok(member) => member,
            Err(e) => {
                not_added.push(NotAdded {
                    user: name,
                    error: "invalid_name".into(),
                });
                tracing::debug!(error = %e, "a member not added");
                continue;
            }
        };
        let how = Admission::Server { role: Role::Member };
        match api.store.join_room(&room, &member, how).await {
            // A member already (the owner, a name given twice): not added again.
            Ok(None) => {}
            Ok(Some(_)) => added.push(member),
            Err(e) => not_added.push(NotAdded {
                user: member,
                error: e.code().as_str().to_owned(),
            }),
        }
    }
    Ok(HttpResponse::Created().json(CreatedRoom {
        room,
        owner,
        added,
        not_added,
    }))
}

/// A member to add.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewMember {
    /// The user.
    #[schema(example = "bob")]
    user: String,
    /// `member` (the default) or `admin`.
    #[serde(default)]
    #[schema(example = "member")]
    role: Option<String>,
}

/// What a membership change did.
#[derive(Serialize, ToSchema)]
pub(crate) struct MembershipView {
    /// The user.
    user: String,
    /// Whether it changed anything (false: they were one already, or none).
    changed: bool,
}

/// Adds a member with the application's power (private rooms too).
#[utoipa::path(
    post,
    path = "/api/v1/server/rooms/{room}/members",
    params(("room" = String, Path, description = "the room")),
    request_body = NewMember,
    responses(
        (status = 200, description = "a member now (changed: false when they were one)", body = MembershipView),
        (status = 400, description = "a name the rules refuse, an unknown role", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no API key, or one that opens nothing", body = chat_runtime::error::ErrorBody),
        (status = 403, description = "the key lacks the rooms scope", body = chat_runtime::error::ErrorBody),
        (status = 404, description = "no such room", body = chat_runtime::error::ErrorBody),
        (status = 409, description = "the room is full, or the user in too many rooms", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn add(
    req: HttpRequest,
    api: web::Data<ServerApi>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    api.authorize(&req, Scope::Rooms).await?;
    let new: NewMember = crate::json(&body)?;
    let room = room_id(&path)?;
    let member = user(&api, &new.user, "user")?;
    let how = Admission::Server {
        role: role(new.role.as_deref())?,
    };
    let joined = api
        .store
        .join_room(&room, &member, how)
        .await
        .map_err(ApiError::Room)?;
    Ok(HttpResponse::Ok().json(MembershipView {
        user: member,
        changed: joined.is_some(),
    }))
}

/// Removes a member with the application's power (the owner too: the room
/// passes to the admin, else the member, who joined first).
#[utoipa::path(
    delete,
    path = "/api/v1/server/rooms/{room}/members/{user}",
    params(
        ("room" = String, Path, description = "the room"),
        ("user" = String, Path, description = "the member"),
    ),
    responses(
        (status = 200, description = "no member any more (changed: false when they were none)", body = MembershipView),
        (status = 400, description = "a name the rules refuse", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no API key, or one that opens nothing", body = chat_runtime::error::ErrorBody),
        (status = 403, description = "the key lacks the rooms scope", body = chat_runtime::error::ErrorBody),
        (status = 404, description = "no such room", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn remove(
    req: HttpRequest,
    api: web::Data<ServerApi>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    api.authorize(&req, Scope::Rooms).await?;
    let (room, name) = path.into_inner();
    let room = room_id(&room)?;
    let member = user(&api, &name, "user")?;
    let left = api
        .store
        .remove_as_server(&room, &member)
        .await
        .map_err(ApiError::Room)?;
    Ok(HttpResponse::Ok().json(MembershipView {
        user: member,
        changed: left.is_some(),
    }))
}

/// A member's new role.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRole {
    /// `member` or `admin`.
    #[schema(example = "admin")]
    role: String,
}

/// Gives a member another role (`member` or `admin`), private rooms too.
/// The owner's role does not change: remove them, and the room passes to
/// the admin, else the member, who joined first.
#[utoipa::path(
    patch,
    path = "/api/v1/server/rooms/{room}/members/{user}",
    params(
        ("room" = String, Path, description = "the room"),
        ("user" = String, Path, description = "the member"),
    ),
    request_body = NewRole,
    responses(
        (status = 200, description = "the member has the role (changed: false when they had it)", body = MembershipView),
        (status = 400, description = "a name the rules refuse, a role other than member or admin", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no API key, or one that opens nothing", body = chat_runtime::error::ErrorBody),
        (status = 403, description = "the key lacks the rooms scope", body = chat_runtime::error::ErrorBody),
        (status = 404, description = "no such room, or the user is no member", body = chat_runtime::error::ErrorBody),
        (status = 409, description = "the user owns the room", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn set_role(
    req: HttpRequest,
    api: web::Data<ServerApi>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    api.authorize(&req, Scope::Rooms).await?;
    let new: NewRole = crate::json(&body)?;
    let (room, name) = path.into_inner();
    let room = room_id(&room)?;
    let member = user(&api, &name, "user")?;
    let role = role(Some(&new.role))?;
    let change = api
        .store
        .set_role(&room, &member, role)
        .await
        .map_err(ApiError::Room)?;
    use chat_store::RoleChange;
    let changed = match change {
        RoleChange::Changed => true,
        RoleChange::Same => false,
        RoleChange::NotMember => {
            return Err(ApiError::NotFound(format!(
                "'{member}' is not a member of room '{room}'"
            )));
        }
        RoleChange::Owner => {
            return Err(ApiError::Conflict(format!(
                "'{member}' owns room '{room}': the owner's role does not change (remove them, and the room passes on)"
            )));
        }
    };
    Ok(HttpResponse::Ok().json(MembershipView {
        user: member,
        changed,
    }))
}

/// A room deleted.
#[derive(Serialize, ToSchema)]
pub(crate) struct DeletedRoom {
    /// The room.
    room: String,
    /// Who were its members (each of their connections got `left`).
    members: Vec<String>,
}

/// Deletes a room and everything it keeps (history, members, read
/// markers); every member's connections get `left`; the files its
/// messages carried are deleted from the media service once no other
/// message carries them.
#[utoipa::path(
    delete,
    path = "/api/v1/server/rooms/{room}",
    params(("room" = String, Path, description = "the room")),
    responses(
        (status = 200, description = "deleted", body = DeletedRoom),
        (status = 400, description = "a name the rules refuse", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no API key, or one that opens nothing", body = chat_runtime::error::ErrorBody),
        (status = 403, description = "the key lacks the rooms scope", body = chat_runtime::error::ErrorBody),
        (status = 404, description = "no such room", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn delete(
    req: HttpRequest,
    api: web::Data<ServerApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    api.authorize(&req, Scope::Rooms).await?;
    let room = room_id(&path)?;
    // Read first: the files its messages carry go with it. (A file sent
    // between this read and the deletion stays, held by nothing.)
    let files = api.store.room_files(&room).await.map_err(ApiError::Room)?;
    let members = api.store.delete_room(&room).await.map_err(ApiError::Room)?;
    for (message, media) in &files {
        let refs = std::sync::Arc::clone(&api.store) as std::sync::Arc<dyn chat_store::MediaRefs>;
        chat_media_client::release(refs, api.media.clone(), message, media).await;
    }
    tracing::info!(
        room,
        members = members.len(),
        "room deleted by the server API"
    );
    Ok(HttpResponse::Ok().json(DeletedRoom { room, members }))
}

/// A room and its members, as the application sees it.
#[derive(Serialize, ToSchema)]
pub(crate) struct RoomView {
    /// Its id.
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
}

/// A member and their role.
#[derive(Serialize, ToSchema)]
pub(crate) struct MemberView {
    /// The user.
    user: String,
    /// `owner`, `admin` or `member`.
    role: String,
}

/// A room and its members, private rooms too.
#[utoipa::path(
    get,
    path = "/api/v1/server/rooms/{room}",
    params(("room" = String, Path, description = "the room")),
    responses(
        (status = 200, description = "the room and its members", body = RoomView),
        (status = 400, description = "a name the rules refuse", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no API key, or one that opens nothing", body = chat_runtime::error::ErrorBody),
        (status = 403, description = "the key lacks the read scope", body = chat_runtime::error::ErrorBody),
        (status = 404, description = "no such room", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn show(
    req: HttpRequest,
    api: web::Data<ServerApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    api.authorize(&req, Scope::Read).await?;
    let room = room_id(&path)?;
    let (info, members) = api
        .store
        .room_info(&room, None)
        .await
        .map_err(ApiError::Room)?;
    Ok(HttpResponse::Ok().json(RoomView {
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
    }))
}

/// One of a user's rooms.
#[derive(Serialize, ToSchema)]
pub(crate) struct UserRoom {
    /// The room.
    room: String,
    /// Whether it is private.
    private: bool,
    /// The user's role: `owner`, `admin` or `member`.
    role: String,
    /// Entries after the user's read marker.
    unread: u64,
}

/// A user's rooms.
#[derive(Serialize, ToSchema)]
pub(crate) struct UserRooms {
    /// The user id.
    user: String,
    /// Their rooms, by name.
    rooms: Vec<UserRoom>,
}

/// The rooms a user is a member of, with their role and unread count.
#[utoipa::path(
    get,
    path = "/api/v1/server/users/{user}/rooms",
    params(("user" = String, Path, description = "the user id (a nickname in open mode)")),
    responses(
        (status = 200, description = "the user's rooms (none for a user never seen)", body = UserRooms),
        (status = 400, description = "a name the naming rules refuse", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no API key, or one that opens nothing", body = chat_runtime::error::ErrorBody),
        (status = 403, description = "the key lacks the read scope", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn of_user(
    req: HttpRequest,
    api: web::Data<ServerApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    api.authorize(&req, Scope::Read).await?;
    let member = user(&api, &path, "user")?;
    let mut rooms: Vec<UserRoom> = api
        .store
        .room_list(&member)
        .await?
        .into_iter()
        .map(|summary| UserRoom {
            room: summary.room,
            private: summary.private,
            role: summary.role.as_str().to_owned(),
            unread: summary.unread,
        })
        .collect();
    rooms.sort_by(|a, b| a.room.cmp(&b.room));
    Ok(HttpResponse::Ok().json(UserRooms {
        user: member,
        rooms,
    }))
}
