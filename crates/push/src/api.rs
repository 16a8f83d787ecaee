//! The Web Push HTTP API, for a signed-in user (a token, or `?user=` in
//! open mode), as the page's notifications button uses it:
//!
//! - `GET /api/v1/push/vapid-public-key` — the application server key the
//!   browser's `pushManager.subscribe` needs (no sign-in needed).
//! - `POST /api/v1/push/subscriptions` — keeps the browser's
//!   `PushSubscription` JSON for the caller (one per device);
//!   `GET` lists the caller's; `DELETE ?endpoint=` forgets one.
//! - `GET|PUT /api/v1/push/settings` — the quiet preview (`{quiet}`) and
//!   the muted conversations; `PUT|DELETE /api/v1/push/muted/users/{peer}`
//!   and `/api/v1/push/muted/rooms/{room}` mute and unmute one.
//!
//! Without a VAPID key (a replica without `CHAT_VAPID_PRIVATE_KEY`) every
//! call answers 501.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chat_auth::{AuthError, Authenticator};
use chat_protocol::ErrorCode;
use chat_runtime::error::HttpError;
use chat_store::push::{QUIET, mute_flag};
use chat_store::{PushStore, PushSubscription, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::services::PushServices;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum PushApiError {
    /// Missing or wrong credentials.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The request is malformed.
    #[error("{1}")]
    BadRequest(ErrorCode, String),
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// No VAPID key here: Web Push is off.
    #[error("Web Push is not configured here (CHAT_VAPID_PRIVATE_KEY)")]
    Off,
    /// The store is unreachable.
    #[error(transparent)]
    Unavailable(#[from] StoreError),
}

impl HttpError for PushApiError {
    fn code(&self) -> ErrorCode {
        match self {
            PushApiError::Auth(e) => e.code(),
            PushApiError::BadRequest(code, _) => *code,
            PushApiError::NotFound(_) => ErrorCode::NotFound,
            PushApiError::Off => ErrorCode::Unsupported,
            PushApiError::Unavailable(_) => ErrorCode::Unavailable,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            PushApiError::Auth(e) => e.status(),
            PushApiError::BadRequest(..) => StatusCode::BAD_REQUEST,
            PushApiError::NotFound(_) => StatusCode::NOT_FOUND,
            PushApiError::Off => StatusCode::NOT_IMPLEMENTED,
            PushApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

chat_runtime::http_error!(PushApiError);

/// What the API needs; cloned into every worker.
#[derive(Clone)]
pub struct PushApi {
    store: Arc<dyn PushStore>,
    auth: Arc<Authenticator>,
    /// The public VAPID key, when Web Push is on.
    public_key: Option<String>,
    services: PushServices,
}

impl PushApi {
    /// The API over `store`, signing in callers with `auth`; `public_key`
    /// (base64url) when Web Push is on; endpoints must be on `services`.
    pub fn new(
        store: Arc<dyn PushStore>,
        auth: Arc<Authenticator>,
        public_key: Option<String>,
        services: PushServices,
    ) -> Self {
        Self {
            store,
            auth,
            public_key,
            services,
        }
    }

    /// Mounts the routes under `/api/v1/push`.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        use chat_runtime::api::resource;
        cfg.app_data(web::Data::new(self.clone()))
            .service(
                resource("/api/v1/push/vapid-public-key", "GET").route(web::get().to(public_key)),
            )
            .service(
                resource("/api/v1/push/subscriptions", "GET, POST, DELETE")
                    .route(web::get().to(list))
                    .route(web::post().to(subscribe))
                    .route(web::delete().to(unsubscribe)),
            )
            .service(
                resource("/api/v1/push/settings", "GET, PUT")
                    .route(web::get().to(settings))
                    .route(web::put().to(set_settings)),
            )
            .service(
                resource("/api/v1/push/muted/{kind}/{name}", "PUT, DELETE")
                    .route(web::put().to(mute))
                    .route(web::delete().to(unmute)),
            );
    }

    /// The caller, once Web Push is known to be on.
    async fn caller(&self, req: &HttpRequest) -> Result<String, PushApiError> {
        if self.public_key.is_none() {
            return Err(PushApiError::Off);
        }
        Ok(self.auth.caller(req).await?.id)
    }
}

/// The application server key.
#[derive(Serialize, ToSchema)]
pub(crate) struct PublicKey {
    /// The VAPID public key: the uncompressed P-256 point, base64url (the
    /// browser's `applicationServerKey`).
    key: String,
}

/// The key the browser subscribes with.
#[utoipa::path(
    get,
    path = "/api/v1/push/vapid-public-key",
    responses(
        (status = 200, description = "the VAPID public key", body = PublicKey),
        (status = 501, description = "Web Push is off here", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn public_key(api: web::Data<PushApi>) -> Result<HttpResponse, PushApiError> {
    let key = api.public_key.clone().ok_or(PushApiError::Off)?;
    Ok(HttpResponse::Ok().json(PublicKey { key }))
}

/// A subscription's keys, as the Push API gives them.
#[derive(Deserialize, ToSchema)]
pub(crate) struct SubscriptionKeys {
    /// The browser's P-256 public key (base64url).
    p256dh: String,
    /// The authentication secret (base64url, 16 bytes).
    auth: String,
}

/// A browser's `PushSubscription`, as `JSON.stringify` writes it.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NewSubscription {
    /// The push service's URL for this browser.
    endpoint: String,
    /// When the subscription ends (ms), if the browser says (not used).
    #[serde(default)]
    #[allow(dead_code)]
    expiration_time: Option<f64>,
    /// The keys to encrypt for.
    keys: SubscriptionKeys,
}

/// A kept subscription.
#[derive(Serialize, ToSchema)]
pub(crate) struct SubscriptionView {
    /// Its push service URL.
    endpoint: String,
    /// When it was kept (ms since the Unix epoch).
    created_at: u64,
}

/// The caller's subscriptions.
#[derive(Serialize, ToSchema)]
pub(crate) struct SubscriptionList {
    /// Oldest first.
    subscriptions: Vec<SubscriptionView>,
}

/// Keeps the browser's subscription for the caller (again: its new keys).
#[utoipa::path(
    post,
    path = "/api/v1/push/subscriptions",
    request_body = NewSubscription,
    responses(
        (status = 201, description = "kept", body = SubscriptionView),
        (status = 400, description = "not a subscription, keys of the wrong size, an endpoint on no known push service", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no valid credentials", body = chat_runtime::error::ErrorBody),
        (status = 501, description = "Web Push is off here", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn subscribe(
    req: HttpRequest,
    api: web::Data<PushApi>,
    body: web::Json<NewSubscription>,
) -> Result<HttpResponse, PushApiError> {
    let user = api.caller(&req).await?;
    let new = body.into_inner();
    let bad = |why: String| PushApiError::BadRequest(ErrorCode::InvalidFrame, why);
    if new.endpoint.len() > MAX_ENDPOINT_BYTES {
        return Err(bad(format!("endpoint: at most {MAX_ENDPOINT_BYTES} bytes")));
    }
    api.services.check(&new.endpoint).map_err(bad)?;
    let point = check_key(&new.keys.p256dh, 65, "keys.p256dh").map_err(bad)?;
    if p256::PublicKey::from_sec1_bytes(&point).is_err() {
        return Err(bad("keys.p256dh is not a P-256 public key".into()));
    }
    check_key(&new.keys.auth, 16, "keys.auth").map_err(bad)?;
    let subscription = PushSubscription {
        endpoint: new.endpoint,
        p256dh: new.keys.p256dh,
        auth: new.keys.auth,
        created_at: chat_store::now_millis(),
    };
    let view = SubscriptionView {
        endpoint: subscription.endpoint.clone(),
        created_at: subscription.created_at,
    };
    api.store.subscribe(&user, subscription).await?;
    tracing::info!(user, "a push subscription kept");
    Ok(HttpResponse::Created().json(view))
}

/// The longest endpoint kept, in bytes (the push services' are about 200).
const MAX_ENDPOINT_BYTES: usize = 2048;

/// The most conversations one user mutes.
const MAX_MUTED: usize = 1000;

/// The bytes of `text`, base64url of `bytes` bytes.
fn check_key(text: &str, bytes: usize, what: &str) -> Result<Vec<u8>, String> {
    match crate::base64url(text) {
        Some(key) if key.len() == bytes => Ok(key),
        _ => Err(format!("{what} must be {bytes} bytes of base64url")),
    }
}

/// The caller's subscriptions.
#[utoipa::path(
    get,
    path = "/api/v1/push/subscriptions",
    responses(
        (status = 200, description = "the caller's subscriptions", body = SubscriptionList),
        (status = 401, description = "no valid credentials", body = chat_runtime::error::ErrorBody),
        (status = 501, description = "Web Push is off here", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn list(
    req: HttpRequest,
    api: web::Data<PushApi>,
) -> Result<HttpResponse, PushApiError> {
    let user = api.caller(&req).await?;
    let subscriptions = api
        .store
        .subscriptions(&user)
        .await?
        .into_iter()
        .map(|s| SubscriptionView {
            endpoint: s.endpoint,
            created_at: s.created_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(SubscriptionList { subscriptions }))
}

/// Which subscription to forget.
#[derive(Deserialize, utoipa::IntoParams)]
pub(crate) struct Which {
    /// Its push service URL.
    endpoint: String,
}

/// Forgets one of the caller's subscriptions.
#[utoipa::path(
    delete,
    path = "/api/v1/push/subscriptions",
    params(Which),
    responses(
        (status = 204, description = "forgotten"),
        (status = 400, description = "no endpoint named", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no valid credentials", body = chat_runtime::error::ErrorBody),
        (status = 404, description = "the caller has no such subscription", body = chat_runtime::error::ErrorBody),
        (status = 501, description = "Web Push is off here", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn unsubscribe(
    req: HttpRequest,
    api: web::Data<PushApi>,
    which: web::Query<Which>,
) -> Result<HttpResponse, PushApiError> {
    let user = api.caller(&req).await?;
    if api.store.unsubscribe(&user, &which.endpoint).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(PushApiError::NotFound("no such subscription".into()))
    }
}

/// The caller's push settings.
#[derive(Serialize, ToSchema)]
pub(crate) struct SettingsView {
    /// Notifications carry no message text.
    quiet: bool,
    /// Conversations nothing is pushed for.
    muted: MutedView,
}

/// Muted conversations.
#[derive(Serialize, ToSchema)]
pub(crate) struct MutedView {
    /// Peers whose direct messages push nothing.
    users: Vec<String>,
    /// Rooms whose messages push nothing.
    rooms: Vec<String>,
}

/// New push settings.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewSettings {
    /// The quiet preview: notifications carry no message text.
    quiet: bool,
}

async fn view(api: &PushApi, user: &str) -> Result<SettingsView, PushApiError> {
    let flags = api.store.push_flags(user).await?;
    let muted = |kind: &str| {
        let prefix = format!("mute:{kind}:");
        flags
            .iter()
            .filter_map(|f| f.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    };
    Ok(SettingsView {
        quiet: flags.iter().any(|f| f == QUIET),
        muted: MutedView {
            users: muted("user"),
            rooms: muted("room"),
        },
    })
}

/// The caller's push settings.
#[utoipa::path(
    get,
    path = "/api/v1/push/settings",
    responses(
        (status = 200, description = "the quiet preview and the muted conversations", body = SettingsView),
        (status = 401, description = "no valid credentials", body = chat_runtime::error::ErrorBody),
        (status = 501, description = "Web Push is off here", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn settings(
    req: HttpRequest,
    api: web::Data<PushApi>,
) -> Result<HttpResponse, PushApiError> {
    let user = api.caller(&req).await?;
    Ok(HttpResponse::Ok().json(view(&api, &user).await?))
}

/// Sets the quiet preview.
#[utoipa::path(
    put,
    path = "/api/v1/push/settings",
    request_body = NewSettings,
    responses(
        (status = 200, description = "the settings now", body = SettingsView),
        (status = 400, description = "not settings", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no valid credentials", body = chat_runtime::error::ErrorBody),
        (status = 501, description = "Web Push is off here", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn set_settings(
    req: HttpRequest,
    api: web::Data<PushApi>,
    body: web::Json<NewSettings>,
) -> Result<HttpResponse, PushApiError> {
    let user = api.caller(&req).await?;
    api.store.set_push_flag(&user, QUIET, body.quiet).await?;
    Ok(HttpResponse::Ok().json(view(&api, &user).await?))
}

/// The conversation a mute path names: `users/{peer}` or `rooms/{room}`,
/// as the flag's conversation key.
fn conversation(api: &PushApi, kind: &str, name: &str) -> Result<String, PushApiError> {
    let invalid = |e: String| PushApiError::BadRequest(ErrorCode::InvalidName, e);
    match kind {
        "users" => Ok(format!(
            "user:{}",
            api.auth
                .user_names()
                .id(name)
                .map_err(|e| invalid(format!("peer: {e}")))?
        )),
        "rooms" => Ok(format!(
            "room:{}",
            chat_auth::names::room(name).map_err(|e| invalid(format!("room: {e}")))?
        )),
        _ => Err(PushApiError::NotFound(
            "mute users/{peer} or rooms/{room}".into(),
        )),
    }
}

/// Mutes a conversation: nothing is pushed for it.
#[utoipa::path(
    put,
    path = "/api/v1/push/muted/{kind}/{name}",
    params(
        ("kind" = String, Path, description = "`users` or `rooms`"),
        ("name" = String, Path, description = "the peer, or the room"),
    ),
    responses(
        (status = 204, description = "muted"),
        (status = 400, description = "a name the naming rules refuse", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no valid credentials", body = chat_runtime::error::ErrorBody),
        (status = 404, description = "neither users nor rooms", body = chat_runtime::error::ErrorBody),
        (status = 501, description = "Web Push is off here", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn mute(
    req: HttpRequest,
    api: web::Data<PushApi>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PushApiError> {
    set_mute(req, api, path, true).await
}

/// Unmutes a conversation.
#[utoipa::path(
    delete,
    path = "/api/v1/push/muted/{kind}/{name}",
    params(
        ("kind" = String, Path, description = "`users` or `rooms`"),
        ("name" = String, Path, description = "the peer, or the room"),
    ),
    responses(
        (status = 204, description = "unmuted (or was not muted)"),
        (status = 400, description = "a name the naming rules refuse", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no valid credentials", body = chat_runtime::error::ErrorBody),
        (status = 404, description = "neither users nor rooms", body = chat_runtime::error::ErrorBody),
        (status = 501, description = "Web Push is off here", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn unmute(
    req: HttpRequest,
    api: web::Data<PushApi>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PushApiError> {
    set_mute(req, api, path, false).await
}

async fn set_mute(
    req: HttpRequest,
    api: web::Data<PushApi>,
    path: web::Path<(String, String)>,
    on: bool,
) -> Result<HttpResponse, PushApiError> {
    let user = api.caller(&req).await?;
    let (kind, name) = path.into_inner();
    let conversation = conversation(&api, &kind, &name)?;
    let flag = mute_flag(&conversation);
    if on {
        let flags = api.store.push_flags(&user).await?;
        let muted = flags.iter().filter(|f| f.starts_with("mute:")).count();
        if muted >= MAX_MUTED && !flags.contains(&flag) {
            return Err(PushApiError::BadRequest(
                ErrorCode::InvalidFrame,
                format!("at most {MAX_MUTED} conversations are muted; unmute one first"),
            ));
        }
    }
    api.store.set_push_flag(&user, &flag, on).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The OpenAPI document of the Web Push API (merged into the presence
/// API's).
#[derive(OpenApi)]
#[openapi(
    paths(
        public_key,
        subscribe,
        list,
        unsubscribe,
        settings,
        set_settings,
        mute,
        unmute
    ),
    components(schemas(
        PublicKey,
        NewSubscription,
        SubscriptionKeys,
        SubscriptionView,
        SubscriptionList,
        SettingsView,
        MutedView,
        NewSettings
    ))
)]
pub struct PushApiDoc;
