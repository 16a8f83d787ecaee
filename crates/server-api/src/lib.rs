//! The server API: what an application's own backend calls, beside its
//! users' clients. Authenticated with API keys (`Authorization: Bearer
//! <key>`, [`keys`]), never with a user's token; an API key never opens a
//! user's WebSocket either (it is no token).
//!
//! - `POST /api/v1/server/publish` — a message as the system (or as a
//!   named user) to a user or a room, or a line to the lobby: stored and
//!   delivered exactly like a user's message (`publish.rs`). Scope `publish`.
//! - `GET /api/v1/server/users/{user}` — presence and unread counts of any
//!   user (scope `read`); `POST /api/v1/server/users/{user}/disconnect` —
//!   close every connection of the user (scope `users`; `users.rs`);
//!   `GET /api/v1/server/connections` — connections per live gateway.
//! - `POST /api/v1/server/rooms`, `DELETE /api/v1/server/rooms/{room}`,
//!   `POST /api/v1/server/rooms/{room}/members`,
//!   `PATCH|DELETE /api/v1/server/rooms/{room}/members/{user}` — rooms
//!   with the application's power (scope `rooms`; `rooms.rs`);
//!   `GET /api/v1/server/rooms/{room}` and
//!   `GET /api/v1/server/users/{user}/rooms` — any room with its members,
//!   any user's rooms (scope `read`).
//! - `POST|GET /api/v1/server/api-keys`, `DELETE /api/v1/server/api-keys/{id}`
//!   — make, list and revoke keys (`admin.rs`). The bootstrap key only.
//! - `GET /api/v1/server/openapi.json` — this API as OpenAPI 3.
//!
//! Mounted by `chatd` and by the `presence` binary (which reaches the
//! gateways' Redis).

mod admin;
mod error;
pub mod keys;
mod publish;
mod rooms;
mod users;

use std::sync::Arc;

use actix_web::{HttpRequest, web};
use chat_auth::Secret;
use chat_auth::names::UserNames;
use chat_broker::Broker;
use chat_runtime::settings::SettingsError;
use chat_store::{Presence, StoreEngine};
use utoipa::OpenApi;

pub use admin::make_key;
pub use error::ApiError;
pub use keys::Scope;

chat_runtime::settings! {
    /// Server API settings.
    #[title = "Server API"]
    pub struct ServerApiSettings {
        /// The bootstrap API key (at least 32 bytes): every scope, and the
        /// power to make and revoke the other keys. Never logged. Unset:
        /// only keys made with `chatd api-key create` open the server API.
        pub server_api_key: Option<Secret> = None => "none",
    }
}

impl ServerApiSettings {
    /// Checks values a type cannot: the bootstrap key's length.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Some(key) = &self.server_api_key
            && key.expose().len() < keys::BOOTSTRAP_MIN_BYTES
        {
            return Err(SettingsError::new(format!(
                "invalid setting CHAT_SERVER_API_KEY: must be at least {} bytes",
                keys::BOOTSTRAP_MIN_BYTES
            )));
        }
        Ok(())
    }
}

/// Who called, once their key is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// The bootstrap key (`CHAT_SERVER_API_KEY`).
    Bootstrap,
    /// A key made through the API or the command line: its id.
    Key(String),
}

/// What the server API needs; cloned into every worker.
#[derive(Clone)]
pub struct ServerApi {
    /// Messages, rooms, API keys and revocations: one engine.
    store: Arc<dyn StoreEngine>,
    presence: Arc<dyn Presence>,
    broker: Arc<dyn Broker>,
    names: UserNames,
    bootstrap: Option<Secret>,
    /// Resolves the files published messages carry; unset, they carry none.
    media: Option<Arc<dyn chat_media_client::MediaDirectory>>,
}

impl ServerApi {
    /// The API over `store` (messages, rooms, keys, revocations) and
    /// `presence`, publishing lobby lines and controls through `broker`;
    /// users named in requests are read as `names` says (the identity
    /// mode's rule); `settings` give the bootstrap key.
    pub fn new(
        store: Arc<dyn StoreEngine>,
        presence: Arc<dyn Presence>,
        broker: Arc<dyn Broker>,
        names: UserNames,
        settings: &ServerApiSettings,
    ) -> Self {
        Self {
            store,
            presence,
            broker,
            names,
            bootstrap: settings.server_api_key.clone(),
            media: None,
        }
    }

    /// Published messages may carry files `directory` resolves.
    pub fn with_media(mut self, directory: Arc<dyn chat_media_client::MediaDirectory>) -> Self {
        self.media = Some(directory);
        self
    }

    /// Mounts the routes under `/api/v1/server`.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        use chat_runtime::api::resource;
        cfg.app_data(web::Data::new(self.clone()))
            .service(
                resource("/api/v1/server/publish", "POST")
                    .app_data(body_limit())
                    .route(web::post().to(publish::publish)),
            )
            .service(
                resource("/api/v1/server/api-keys", "GET, POST")
                    .app_data(body_limit())
                    .route(web::get().to(admin::list))
                    .route(web::post().to(admin::create)),
            )
            .service(
                resource("/api/v1/server/api-keys/{id}", "DELETE")
                    .route(web::delete().to(admin::revoke)),
            )
            .service(
                resource("/api/v1/server/users/{user}", "GET").route(web::get().to(users::show)),
            )
            .service(
                resource("/api/v1/server/users/{user}/rooms", "GET")
                    .route(web::get().to(rooms::of_user)),
            )
            .service(
                resource("/api/v1/server/connections", "GET")
                    .route(web::get().to(users::connections)),
            )
            .service(
                resource("/api/v1/server/users/{user}/disconnect", "POST")
                    .app_data(body_limit())
                    .route(web::post().to(users::disconnect)),
            )
            .service(
                resource("/api/v1/server/rooms", "POST")
                    .app_data(body_limit())
                    .route(web::post().to(rooms::create)),
            )
            .service(
                resource("/api/v1/server/rooms/{room}", "GET, DELETE")
                    .route(web::get().to(rooms::show))
                    .route(web::delete().to(rooms::delete)),
            )
            .service(
                resource("/api/v1/server/rooms/{room}/members", "POST")
                    .app_data(body_limit())
                    .route(web::post().to(rooms::add)),
            )
            .service(
                resource(
                    "/api/v1/server/rooms/{room}/members/{user}",
                    "PATCH, DELETE",
                )
                .app_data(body_limit())
                .route(web::patch().to(rooms::set_role))
                .route(web::delete().to(rooms::remove)),
            )
            .service(resource("/api/v1/server/openapi.json", "GET").route(web::get().to(openapi)));
    }

    /// The caller's key, if it opens the server API and has `scope`.
    ///
    /// Errors: those of [`Self::authenticate`]; [`ApiError::Forbidden`]
    /// (no `scope`).
    pub(crate) async fn authorize(
        &self,
        req: &HttpRequest,
        scope: Scope,
    ) -> Result<Caller, ApiError> {
        let (caller, scopes) = self.authenticate(req).await?;
        if !scopes.iter().any(|s| s == scope.as_str()) {
            return Err(ApiError::Forbidden(format!(
                "this API key lacks the '{}' scope",
                scope.as_str()
            )));
        }
        Ok(caller)
    }

    /// The caller's key and its scopes (the bootstrap key has them all).
    ///
    /// Errors: [`ApiError::Unauthorized`] (no key, not a key, a user's
    /// token, unknown, revoked), [`ApiError::Unavailable`] (the store).
    pub(crate) async fn authenticate(
        &self,
        req: &HttpRequest,
    ) -> Result<(Caller, Vec<String>), ApiError> {
        let unauthorized = |why: &str| ApiError::Unauthorized(why.to_owned());
        let header = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                unauthorized("the server API needs an API key: Authorization: Bearer <key>")
            })?;
        // The scheme's name is case-insensitive (RFC 9110 §11.1).
        let credential = header
            .to_str()
            .ok()
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, credential)| credential.trim())
            .ok_or_else(|| unauthorized("the Authorization header must read 'Bearer <API key>'"))?;
        if let Some(bootstrap) = &self.bootstrap
            && keys::is_bootstrap(bootstrap.expose(), credential)
        {
            let all = Scope::ALL.iter().map(|s| s.as_str().to_owned()).collect();
            return Ok((Caller::Bootstrap, all));
        }
        let (id, secret) = match keys::presented(credential) {
            keys::Presented::Key { id, secret } => (id, secret),
            keys::Presented::UserToken => {
                return Err(unauthorized(
                    "a user's token does not open the server API: use an API key",
                ));
            }
            keys::Presented::Unknown => return Err(unauthorized("not an API key")),
        };
        let key = match self.store.key(id).await? {
            Some(key) if keys::matches(&key, secret) => key,
            _ => return Err(unauthorized("unknown API key")),
        };
        if key.revoked_at.is_some() {
            return Err(unauthorized("this API key was revoked"));
        }
        Ok((Caller::Key(key.id), key.scopes))
    }
}

/// The OpenAPI document of the server API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "chat server API",
        description = "For an application's own backend: publish messages, manage API keys. \
                       Authenticated with API keys (Authorization: Bearer <key>)."
    ),
    paths(
        publish::publish,
        users::show,
        users::disconnect,
        users::connections,
        rooms::create,
        rooms::show,
        rooms::of_user,
        rooms::delete,
        rooms::add,
        rooms::remove,
        rooms::set_role,
        admin::create,
        admin::list,
        admin::revoke
    ),
    components(schemas(
        publish::Publish,
        publish::FileRef,
        publish::Published,
        users::UserView,
        users::Disconnect,
        users::Disconnected,
        users::GatewayView,
        users::ConnectionsView,
        rooms::NewRoom,
        rooms::CreatedRoom,
        rooms::NotAdded,
        rooms::NewMember,
        rooms::NewRole,
        rooms::MembershipView,
        rooms::DeletedRoom,
        rooms::RoomView,
        rooms::MemberView,
        rooms::UserRoom,
        rooms::UserRooms,
        admin::NewKey,
        admin::MadeKey,
        admin::KeyView,
        admin::KeyList,
        Scope,
        chat_runtime::error::ErrorBody
    )),
    modifiers(&BearerKey)
)]
pub struct ApiDoc;

/// Declares the bearer API key as every operation's security scheme.
struct BearerKey;

impl utoipa::Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("an API key: ck_{id}.{secret}, or CHAT_SERVER_API_KEY"))
                    .build(),
            ),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "api_key",
            Vec::<String>::new(),
        )]);
    }
}

/// The OpenAPI document as pretty JSON.
pub fn openapi_json() -> String {
    // unwrap: the document is built from static types and always serialises.
    #[allow(clippy::unwrap_used)]
    ApiDoc::openapi().to_pretty_json().unwrap()
}

async fn openapi() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("application/json")
        .body(openapi_json())
}

/// `body` as JSON of `T`. Parsed only once the caller is authorised, so
/// that an unauthorised caller is answered 401 whatever it sent.
///
/// Errors: [`ApiError::BadRequest`] (`invalid_frame`) saying what is wrong.
pub(crate) fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let bad = |why: String| ApiError::BadRequest(chat_protocol::ErrorCode::InvalidFrame, why);
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON body: {e}")))?;
    // serde would take a struct from an array too; every body here is an object.
    if !value.is_object() {
        return Err(bad("the body must be a JSON object".into()));
    }
    serde_json::from_value(value).map_err(|e| bad(format!("invalid JSON body: {e}")))
}

/// The largest request body, in bytes: a publish's 64 KiB text however it
/// is escaped (`\uXXXX` pairs for emoji: six bytes for each), and its
/// fields. Larger is refused with 413 before it is read whole.
const MAX_BODY_BYTES: usize = 512 * 1024;

fn body_limit() -> web::PayloadConfig {
    web::PayloadConfig::new(MAX_BODY_BYTES)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    chat_store::now_millis()
}
