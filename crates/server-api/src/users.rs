//! Users, as the application's server sees them: any user's presence and
//! unread counts (scope `read`), and throwing a user out (scope `users`).

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use chat_broker::channel;
use chat_broker::envelope::{self, Control};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::publish::user;
use crate::{ApiError, Scope, ServerApi};

/// A user's state.
#[derive(Serialize, ToSchema)]
pub(crate) struct UserView {
    /// The user id.
    user: String,
    /// Has at least one open connection now.
    online: bool,
    /// When their last connection closed (ms since the Unix epoch), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seen: Option<u64>,
    /// Unread direct messages by sender (`unread:{user}`).
    unread: BTreeMap<String, u64>,
    /// Unread entries by room, for every room of the user.
    rooms: BTreeMap<String, u64>,
}

/// A user's presence and unread counts.
#[utoipa::path(
    get,
    path = "/api/v1/server/users/{user}",
    params(("user" = String, Path, description = "the user id (a nickname in open mode)")),
    responses(
        (status = 200, description = "online state, last seen, unread counts", body = UserView),
        (status = 400, description = "a name the naming rules refuse", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no API key, or one that opens nothing", body = chat_runtime::error::ErrorBody),
        (status = 403, description = "the key lacks the read scope", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn show(
    req: HttpRequest,
    api: web::Data<ServerApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    api.authorize(&req, Scope::Read).await?;
    let id = user(&api, &path, "user")?;
    let state = api.presence.state(&id).await?;
    let unread = api.store.unread(&id).await?;
    let rooms = api.store.room_unread(&id).await?;
    Ok(HttpResponse::Ok().json(UserView {
        user: id,
        online: state.online,
        last_seen: state.last_seen,
        unread,
        rooms,
    }))
}

/// How to disconnect (the body may be empty).
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct Disconnect {
    /// Also refuse every token of the user issued before now (on every
    /// gateway and the presence API), so they stay out until the identity
    /// provider gives them a new one.
    #[serde(default)]
    revoke: bool,
}

/// Who was disconnected.
#[derive(Serialize, ToSchema)]
pub(crate) struct Disconnected {
    /// The user id.
    user: String,
    /// Tokens issued before this time (ms since the Unix epoch) are refused
    /// from now on, when `revoke` was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_before: Option<u64>,
}

/// Closes every connection of the user, on every gateway, with close code
/// 4403 ("removed by the server"); with `revoke: true`, their tokens issued
/// until now are refused from now on. Without it the user may connect
/// again at once.
#[utoipa::path(
    post,
    path = "/api/v1/server/users/{user}/disconnect",
    params(("user" = String, Path, description = "the user id (a nickname in open mode)")),
    request_body(content = Option<Disconnect>, description = "optional: `{\"revoke\": true}`"),
    responses(
        (status = 202, description = "every gateway was told: the user's connections close", body = Disconnected),
        (status = 400, description = "a name the naming rules refuse, or a body that is no Disconnect", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no API key, or one that opens nothing", body = chat_runtime::error::ErrorBody),
        (status = 403, description = "the key lacks the users scope", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store or the broker is unreachable: nobody was disconnected (a revocation may have been kept)", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn disconnect(
    req: HttpRequest,
    api: web::Data<ServerApi>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    api.authorize(&req, Scope::Users).await?;
    let id = user(&api, &path, "user")?;
    let how: Disconnect = if body.iter().all(u8::is_ascii_whitespace) {
        Disconnect::default()
    } else {
        crate::json(&body)?
    };
    // Revoked first: a connection the disconnect closes cannot come back
    // with the same token.
    if how.revoke && api.names == chat_auth::names::UserNames::Nicknames {
        return Err(ApiError::BadRequest(
            chat_protocol::ErrorCode::Unsupported,
            "open mode has no tokens to revoke (CHAT_AUTH=open)".into(),
        ));
    }
    let revoked_before = if how.revoke {
        let now = crate::now_ms();
        api.store.revoke_tokens(&id, now).await?;
        Some(now)
    } else {
        None
    };
    api.broker
        .publish(&channel::user(&id), envelope::control(&Control::Disconnect))
        .await
        .map_err(|e| ApiError::Unavailable(chat_store::StoreError::Unavailable(e.to_string())))?;
    tracing::info!(user = %id, revoked = how.revoke, "disconnected by the server API");
    Ok(HttpResponse::Accepted().json(Disconnected {
        user: id,
        revoked_before,
    }))
}

/// What one gateway holds.
#[derive(Serialize, ToSchema)]
pub(crate) struct GatewayView {
    /// The gateway's node id (`chatd` for the embedded one).
    node: String,
    /// Its open user connections (lobby connections are not counted).
    connections: u64,
    /// The users they belong to.
    users: u64,
}

/// Connections per live gateway.
#[derive(Serialize, ToSchema)]
pub(crate) struct ConnectionsView {
    /// Every live gateway.
    gateways: Vec<GatewayView>,
    /// All their connections.
    connections: u64,
}

/// How many user connections each live gateway holds.
#[utoipa::path(
    get,
    path = "/api/v1/server/connections",
    responses(
        (status = 200, description = "connections per live gateway", body = ConnectionsView),
        (status = 401, description = "no API key, or one that opens nothing", body = chat_runtime::error::ErrorBody),
        (status = 403, description = "the key lacks the read scope", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn connections(
    req: HttpRequest,
    api: web::Data<ServerApi>,
) -> Result<HttpResponse, ApiError> {
    api.authorize(&req, Scope::Read).await?;
    let gateways: Vec<GatewayView> = api
        .presence
        .connections()
        .await?
        .into_iter()
        .map(|n| GatewayView {
            node: n.node,
            connections: n.connections,
            users: n.users,
        })
        .collect();
    let connections = gateways.iter().map(|g| g.connections).sum();
    Ok(HttpResponse::Ok().json(ConnectionsView {
        gateways,
        connections,
    }))
}
