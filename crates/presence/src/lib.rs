//! The presence service: what the gateways know about users, over HTTP.
//!
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
use chat_broker::Broker;
use chat_store::{MessageStore, Presence};
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
    paths(routes::unread, routes::read, routes::presence, routes::history),
    components(schemas(
        routes::ReadRequest,
        routes::PresenceView,
        routes::HistoryPage,
        error::ErrorBody
    ))
)]
pub struct ApiDoc;

/// The OpenAPI document as pretty JSON.
pub fn openapi_json() -> String {
    // unwrap: the document is built from static types and always serialises.
    #[allow(clippy::unwrap_used)]
    ApiDoc::openapi().to_pretty_json().unwrap()
}
