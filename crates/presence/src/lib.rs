//! The presence service: what the gateways know about users, over HTTP.
//!
//! - `GET  /api/v1/me` — who the caller is: `{"user", "name"?}`.
//! - `GET  /api/v1/unread` — the caller's unread counters, `{"alice": 3}`
//!   (with `?include=rooms`: `{"counts", "rooms"}`).
//! - `GET|POST /api/v1/rooms`, `GET /api/v1/rooms/{room}`,
//!   `POST /api/v1/rooms/{room}/members`,
//!   `DELETE /api/v1/rooms/{room}/members/{user}`,
//!   `GET /api/v1/rooms/{room}/messages`, `POST /api/v1/rooms/{room}/read`
//!   — durable rooms (`rooms.rs`).
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
mod rooms;
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
    self as layered, Described, RoomSettings, ServerSettings, SettingsError, SharedSettings,
};
use chat_server_api::{ServerApi, ServerApiSettings};
use chat_store::redis::messages::RedisStore;
use chat_store::redis::presence::RedisPresence;
use chat_store::{Limits, MessageStore, Presence, RoomLimits, RoomStore};
use chat_webhooks::WebhookSettings;
use utoipa::OpenApi;

pub use error::ApiError;

/// What the service needs; cloned into every worker.
#[derive(Clone)]
pub struct PresenceService {
    store: Arc<dyn MessageStore>,
    rooms: Arc<dyn RoomStore>,
    presence: Arc<dyn Presence>,
    broker: Arc<dyn Broker>,
    auth: Arc<Authenticator>,
    /// Rooms with at most this many members send read receipts.
    receipts_max: u64,
}

impl PresenceService {
    /// A service over `store`, `rooms` and `presence`, publishing through
    /// `broker`; rooms up to `receipts_max` members get read receipts.
    pub fn new(
        store: Arc<dyn MessageStore>,
        rooms: Arc<dyn RoomStore>,
        presence: Arc<dyn Presence>,
        broker: Arc<dyn Broker>,
        auth: Arc<Authenticator>,
        receipts_max: u64,
    ) -> Self {
        Self {
            store,
            rooms,
            presence,
            broker,
            auth,
            receipts_max,
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
            )
            .service(
                resource("/api/v1/rooms", "GET, POST")
                    .route(web::get().to(rooms::list))
                    .route(web::post().to(rooms::create)),
            )
            .service(resource("/api/v1/rooms/{room}", "GET").route(web::get().to(rooms::show)))
            .service(
                resource("/api/v1/rooms/{room}/members", "POST").route(web::post().to(rooms::add)),
            )
            .service(
                resource("/api/v1/rooms/{room}/members/{user}", "DELETE")
                    .route(web::delete().to(rooms::remove)),
            )
            .service(
                resource("/api/v1/rooms/{room}/messages", "GET")
                    .route(web::get().to(rooms::history)),
            )
            .service(
                resource("/api/v1/rooms/{room}/read", "POST").route(web::post().to(rooms::read)),
            );
    }
}

/// The OpenAPI document of this service.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "chat presence service",
        description = "Unread counters, read marks, online state, history and rooms"
    ),
    paths(
        routes::me,
        routes::unread,
        routes::read,
        routes::presence,
        routes::history,
        rooms::list,
        rooms::create,
        rooms::show,
        rooms::add,
        rooms::remove,
        rooms::history,
        rooms::read
    ),
    components(schemas(
        routes::Me,
        routes::ReadRequest,
        routes::AllUnread,
        routes::UnreadAnswer,
        routes::PresenceView,
        routes::HistoryPage,
        rooms::RoomEntry,
        rooms::RoomList,
        rooms::NewRoom,
        rooms::RoomView,
        rooms::MemberView,
        rooms::NotAdded,
        rooms::NewMember,
        rooms::Added,
        rooms::RoomPage,
        rooms::RoomReadRequest,
        rooms::RoomUnreadView,
        chat_runtime::error::ErrorBody
    ))
)]
pub struct ApiDoc;

/// The OpenAPI document as pretty JSON.
pub fn openapi_json() -> String {
    let mut doc = ApiDoc::openapi();
    // The Web Push API is served beside it (`chat-push`).
    doc.merge(chat_push::PushApiDoc::openapi());
    // unwrap: the document is built from static types and always serialises.
    #[allow(clippy::unwrap_used)]
    doc.to_pretty_json().unwrap()
}

chat_runtime::settings! {
    /// Where the files of messages published through the server API are
    /// checked.
    #[title = "Media"]
    pub struct MediaLinkSettings {
        /// The media service (`http://host:port`, as the gateways'
        /// `CHAT_MEDIA_URL`) that checks the files of messages published
        /// through the server API; unset, they carry none (501).
        pub media_url: Option<String> = None,
    }
}

/// Everything the `presence` binary reads.
pub struct Settings {
    /// The HTTP server.
    pub server: ServerSettings,
    /// The gateways' Redis (required) and prefix.
    pub shared: SharedSettings,
    /// Identity (jwt unless `CHAT_AUTH` says otherwise).
    pub auth: AuthSettings,
    /// Limits of rooms (members are added here too).
    pub rooms: RoomSettings,
    /// The server API this binary also serves (its bootstrap key).
    pub server_api: ServerApiSettings,
    /// The media service the server API checks files with.
    pub media: MediaLinkSettings,
    /// Webhooks: messages published here queue their events too (the
    /// gateways send them).
    pub webhooks: WebhookSettings,
    /// Web Push: the subscriptions API, and the jobs of messages published
    /// here (the gateways send the pushes).
    pub push: chat_push::PushSettings,
}

impl Settings {
    /// The settings table of `presence --help`.
    pub fn help() -> String {
        layered::help(&[
            (ServerSettings::TITLE, ServerSettings::describe()),
            (SharedSettings::TITLE, SharedSettings::describe()),
            (AuthSettings::TITLE, AuthSettings::describe()),
            (RoomSettings::TITLE, RoomSettings::describe()),
            (ServerApiSettings::TITLE, ServerApiSettings::describe()),
            (MediaLinkSettings::TITLE, MediaLinkSettings::describe()),
            (WebhookSettings::TITLE, WebhookSettings::describe()),
            (
                chat_push::PushSettings::TITLE,
                chat_push::PushSettings::describe(),
            ),
        ])
    }
}

impl BinarySettings for Settings {
    fn load(layers: &layered::Figment) -> Result<Self, SettingsError> {
        let this = Self {
            server: layered::extract(layers)?,
            shared: layered::extract(layers)?,
            auth: layered::extract(layers)?,
            rooms: layered::extract(layers)?,
            server_api: layered::extract(layers)?,
            media: layered::extract(layers)?,
            webhooks: layered::extract(layers)?,
            push: layered::extract(layers)?,
        };
        this.shared.validate()?;
        this.rooms.validate()?;
        this.server_api.validate()?;
        this.webhooks.validate()?;
        this.push.validate()?;
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
    // The room limits bind members added here. Histories and offline
    // lists are bounded by the gateways (CHAT_HISTORY_MAX and
    // CHAT_OFFLINE_MAX are theirs): the membership entries and the server
    // API's messages written here trim nothing, so a presence service never
    // cuts them shorter than its gateways keep them (the next gateway write
    // trims to the gateways' bound).
    let store = RedisStore::start(chat_store::redis::messages::RedisStoreOptions {
        url: url.to_owned(),
        prefix: prefix.clone(),
        limits: Limits {
            history_max: u64::MAX,
            offline_max: u64::MAX,
            rooms: RoomLimits {
                max_members: settings.rooms.room_max_members,
                rooms_per_user: settings.rooms.rooms_per_user,
            },
        },
    })?;
    let presence: Arc<dyn Presence> =
        Arc::new(RedisPresence::on(store.connection().clone(), prefix));
    let broker: Arc<dyn Broker> = Arc::new(RedisBroker::start(
        RedisOptions {
            url: url.to_owned(),
            prefix: prefix.clone(),
            errors: None,
        },
        Arc::new(|_: &str, _| {}),
    )?);
    let pusher = settings.push.pusher(None)?;
    settings.webhooks.enable_queues(&store, pusher.is_some());
    // Tokens revoked through the server API are refused here too.
    auth.set_revocations(Arc::new(store.clone()));
    let mut obs = Observability::new();
    let checked = store.clone();
    obs.check("store", move || checked.check());
    let auth = Arc::new(auth);
    let mut server_api = ServerApi::new(
        Arc::new(store.clone()),
        Arc::clone(&presence),
        Arc::clone(&broker),
        auth.user_names(),
        &settings.server_api,
    );
    if let Some(url) = &settings.media.media_url {
        let directory = chat_media_client::HttpMediaDirectory::new(url, Arc::clone(&auth))
            .map_err(|e| anyhow::anyhow!("CHAT_MEDIA_URL: {e}"))?;
        server_api = server_api.with_media(Arc::new(directory));
    }
    let push_api = chat_push::PushApi::new(
        Arc::new(store.clone()),
        Arc::clone(&auth),
        pusher.as_ref().map(|p| p.public_key().to_owned()),
        settings.push.services(),
    );
    let service = PresenceService::new(
        Arc::new(store.clone()),
        Arc::new(store),
        presence,
        broker,
        auth,
        settings.rooms.room_receipts_max,
    );
    Application::build(&settings.server, obs, move |cfg| {
        service.configure(cfg);
        server_api.configure(cfg);
        push_api.configure(cfg);
    })
}
