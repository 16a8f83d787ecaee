//! The presence service: what the gateways know about users, over HTTP.
//!
//! - `GET  /api/v1/me` — who the caller is: `{"user", "name"?}`.
//! - `GET  /api/v1/unread` — the caller's unread counters, `{"alice": 3}`.
//! - `POST /api/v1/read` — mark a conversation read (like the `read` frame).
//! - `GET  /api/v1/presence/{user}` — online now, and last seen.
//! - `GET  /api/v1/conversations/{peer}/messages` — the caller's history
//!   with `peer`, newest first, paged with `before`/`limit`.
//! - `GET  /api/v1/presence/openapi.json` — this API as OpenAPI 3.
//!
//! Every call is authenticated like the gateway (`chat-auth`): a token in
//! jwt mode, `?user=` in open mode; it only ever answers for the caller.
//! The data is the gateways' (`chat-store`); this service reads it and
//! publishes read receipts through the broker.

mod error;
mod routes;

use std::sync::Arc;

use actix_web::web;
use chat_auth::Authenticator;
use chat_auth::settings::{AuthMode, AuthSettings};
use chat_broker::Broker;
use chat_broker::redis::{RedisBroker, RedisOptions};
use chat_runtime::app::{Application, BinarySettings};
use chat_runtime::observe::Observability;
use chat_runtime::settings::{
    self as layered, Described, ServerSettings, SettingsError, SharedSettings,
};
use chat_store::redis::messages::RedisStore;
use chat_store::redis::presence::RedisPresence;
use chat_store::{Limits, MessageStore, Presence};
use utoipa::OpenApi;

pub use error::ApiError;

/// What the service needs; cloned into every worker.
#[derive(Clone)]
pub struct PresenceService {
    store: Arc<dyn MessageStore>,
    presence: Arc<dyn Presence>,
    broker: Arc<dyn Broker>,
    auth: Arc<Authenticator>,
}

impl PresenceService {
    /// A service over `store` and `presence`, publishing through `broker`.
    pub fn new(
        store: Arc<dyn MessageStore>,
        presence: Arc<dyn Presence>,
        broker: Arc<dyn Broker>,
        auth: Arc<Authenticator>,
    ) -> Self {
        Self {
            store,
            presence,
            broker,
            auth,
        }
    }

    /// Mounts the routes under `/api/v1`.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        use chat_runtime::api::resource;
        cfg.app_data(web::Data::new(self.clone()))
            .service(resource("/api/v1/me", "GET").route(web::get().to(routes::me)))
            .service(resource("/api/v1/unread", "GET").route(web::get().to(routes::unread)))
            .service(resource("/api/v1/read", "POST").route(web::post().to(routes::read)))
            .service(
                resource("/api/v1/presence/openapi.json", "GET")
                    .route(web::get().to(routes::openapi)),
            )
            .service(
                resource("/api/v1/presence/{user}", "GET").route(web::get().to(routes::presence)),
            )
            .service(
                resource("/api/v1/conversations/{peer}/messages", "GET")
                    .route(web::get().to(routes::history)),
            );
    }
}

/// The OpenAPI document of this service.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "chat presence service",
        description = "Unread counters, read marks, online state and history"
    ),
    paths(
        routes::me,
        routes::unread,
        routes::read,
        routes::presence,
        routes::history
    ),
    components(schemas(
        routes::Me,
        routes::ReadRequest,
        routes::PresenceView,
        routes::HistoryPage,
        chat_runtime::error::ErrorBody
    ))
)]
pub struct ApiDoc;

/// The OpenAPI document as pretty JSON.
pub fn openapi_json() -> String {
    // unwrap: the document is built from static types and always serialises.
    #[allow(clippy::unwrap_used)]
    ApiDoc::openapi().to_pretty_json().unwrap()
}

/// Everything the `presence` binary reads.
pub struct Settings {
    /// The HTTP server.
    pub server: ServerSettings,
    /// The gateways' Redis (required) and prefix.
    pub shared: SharedSettings,
    /// Identity (jwt unless `CHAT_AUTH` says otherwise).
    pub auth: AuthSettings,
}

impl Settings {
    /// The settings table of `presence --help`.
    pub fn help() -> String {
        layered::help(&[
            (ServerSettings::TITLE, ServerSettings::describe()),
            (SharedSettings::TITLE, SharedSettings::describe()),
            (AuthSettings::TITLE, AuthSettings::describe()),
        ])
    }
}

impl BinarySettings for Settings {
    fn load(layers: &layered::Figment) -> Result<Self, SettingsError> {
        let this = Self {
            server: layered::extract(layers)?,
            shared: layered::extract(layers)?,
            auth: layered::extract(layers)?,
        };
        this.shared.validate()?;
        this.shared.require_redis("the presence service")?;
        Ok(this)
    }

    fn server(&self) -> &ServerSettings {
        &self.server
    }
}

/// The `presence` binary: reads what the gateways keep in Redis. It is no
/// gateway node (it holds no lease and counts no connections); it
/// publishes receipts and counters, and subscribes to nothing.
pub async fn serve(settings: Settings) -> anyhow::Result<Application> {
    let (auth, _origins) = settings.auth.build(AuthMode::Jwt, settings.server.listen)?;
    let url = settings.shared.require_redis("the presence service")?;
    let prefix = &settings.shared.redis_prefix;
    // Reads and read markers only: the limits bound writes, which the
    // gateways make.
    let store = RedisStore::start(chat_store::redis::messages::RedisStoreOptions {
        url: url.to_owned(),
        prefix: prefix.clone(),
        limits: Limits::default(),
    })?;
    let presence = RedisPresence::on(store.connection().clone(), prefix);
    let broker: Arc<dyn Broker> = Arc::new(RedisBroker::start(
        RedisOptions {
            url: url.to_owned(),
            prefix: prefix.clone(),
            errors: None,
        },
        Arc::new(|_: &str, _| {}),
    )?);
    let mut obs = Observability::new();
    let checked = store.clone();
    obs.check("store", move || checked.check());
    let service = PresenceService::new(Arc::new(store), Arc::new(presence), broker, Arc::new(auth));
    Application::build(&settings.server, obs, move |cfg| service.configure(cfg))
}
