//! The HTTP side of a WebSocket connection.
//!
//! Everything that can refuse a connection happens before `101 Switching
//! Protocols`: name checks (400), the connection cap and shutdown (503), and
//! registering on the broker (503 if it is unreachable). So a client whose
//! handshake succeeded is already subscribed: nothing published after that
//! moment can miss it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chat_protocol::ErrorCode;
use chat_runtime::error::HttpError;

use super::Endpoint;
use super::connection::Connection;
use super::handler::Replies;
use super::presence::Online;
use super::registration::{Registration, Subscriptions};
use super::session;
use super::socket::{Socket, SocketSettings};
use super::sync::Replay;
use crate::Inner;
use crate::hub::Conn;
use chat_broker::channel;

/// Why an upgrade was refused.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// `?since=` is not a sequence number.
    #[error("since must be a sequence number, got '{0}'")]
    BadSince(String),
    /// The connection cap is reached.
    #[error("this gateway holds its maximum of {0} connections; try again or another replica")]
    OverCapacity(usize),
    /// This client address opened too many connections in the last minute.
    #[error("too many connection attempts from this address; retry in {0} s")]
    TooManyAttempts(u64),
    /// The gateway is stopping.
    #[error("this gateway is shutting down")]
    ShuttingDown,
    /// The broker could not register the connection.
    #[error("{0}")]
    Unavailable(String),
    /// Not a valid WebSocket handshake.
    #[error(transparent)]
    Handshake(actix_web::Error),
    /// Missing or wrong credentials, or a foreign page.
    #[error(transparent)]
    Auth(#[from] chat_auth::AuthError),
}

impl HttpError for UpgradeError {
    fn code(&self) -> ErrorCode {
        match self {
            UpgradeError::BadSince(_) => ErrorCode::InvalidFrame,
            UpgradeError::OverCapacity(_) => ErrorCode::OverCapacity,
            UpgradeError::TooManyAttempts(_) => ErrorCode::RateLimited,
            UpgradeError::ShuttingDown | UpgradeError::Unavailable(_) => ErrorCode::Unavailable,
            UpgradeError::Handshake(_) => ErrorCode::InvalidFrame,
            UpgradeError::Auth(e) => e.code(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            UpgradeError::BadSince(_) => StatusCode::BAD_REQUEST,
            UpgradeError::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
            // actix-web gives a handshake error its status through its
            // response only (`status_code` would say 500).
            UpgradeError::Handshake(e) => e.as_response_error().error_response().status(),
            UpgradeError::Auth(e) => e.status(),
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            UpgradeError::TooManyAttempts(seconds) => Some(*seconds),
            _ => None,
        }
    }
}

chat_runtime::http_error!(UpgradeError);

/// `GET /ws/`: the public lobby.
pub(crate) async fn lobby(
    req: HttpRequest,
    body: web::Payload,
    gw: web::Data<Arc<Inner>>,
) -> Result<HttpResponse, UpgradeError> {
    limit_attempts(&req, &gw)?;
    gw.origins.check(&req)?;
    gw.auth.anyone(&req).await?;
    upgrade(req, body, gw.get_ref(), Endpoint::Lobby, Replay::None).await
}

/// `GET /ws/{user}/`: a user's personal connection.
pub(crate) async fn user(
    req: HttpRequest,
    body: web::Payload,
    path: web::Path<String>,
    gw: web::Data<Arc<Inner>>,
) -> Result<HttpResponse, UpgradeError> {
    limit_attempts(&req, &gw)?;
    // Percent-decoded by the extractor: `/ws/%E5%BC%A0%E4%B8%89/` is 张三.
    let user = path.into_inner();
    gw.origins.check(&req)?;
    let caller = gw.auth.authorize(&req, &user).await?;
    let replay = match chat_auth::query_param(&req, "since") {
        None => Replay::Offline,
        Some(since) => Replay::Since(since.parse().map_err(|_| UpgradeError::BadSince(since))?),
    };
    upgrade(req, body, gw.get_ref(), Endpoint::User(caller), replay).await
}

/// Counts an upgrade attempt against its client address, first of all (before
/// any token is checked), so a flood of attempts costs the gateway little.
fn limit_attempts(req: &HttpRequest, gw: &Inner) -> Result<(), UpgradeError> {
    let Some(ip) = gw.proxies.client_ip(req) else {
        return Ok(());
    };
    gw.connect_limit.check(ip).map_err(|wait| {
        gw.metrics.refused_per_ip.inc();
        UpgradeError::TooManyAttempts(wait)
    })
}

/// Holds one place under the connection cap until dropped.
struct Slot(Arc<Inner>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

fn admit(gw: &Arc<Inner>) -> Result<Slot, UpgradeError> {
    if gw.shutdown.is_cancelled() {
        return Err(UpgradeError::ShuttingDown);
    }
    let cap = gw.settings.max_connections;
    if gw.open.fetch_add(1, Ordering::AcqRel) >= cap {
        gw.open.fetch_sub(1, Ordering::AcqRel);
        gw.metrics.refused_over_capacity.inc();
        return Err(UpgradeError::OverCapacity(cap));
    }
    Ok(Slot(Arc::clone(gw)))
}

async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    gw: &Arc<Inner>,
    endpoint: Endpoint,
    replay: Replay,
) -> Result<HttpResponse, UpgradeError> {
    let slot = admit(gw)?;
    let (response, ws, stream) = actix_ws::handle(&req, body).map_err(UpgradeError::Handshake)?;
    let user = match &endpoint {
        Endpoint::Lobby => None,
        Endpoint::User(caller) => Some(caller.id.as_str()),
    };
    let (conn, outbound, overflow) = Conn::new(gw.settings.outbound_queue, user);
    let mut registration = Registration::new(Arc::clone(&gw.hub), conn.clone());
    let home = match &endpoint {
        Endpoint::Lobby => channel::LOBBY.to_owned(),
        Endpoint::User(caller) => channel::user(&caller.id),
    };
    registration
        .join(home)
        .await
        .map_err(|e| UpgradeError::Unavailable(e.to_string()))?;
    if let Endpoint::User(_) = &endpoint {
        // Following the user's channel now, this connection hears any
        // disconnect from here on; one revoked while it was being set up
        // is refused here.
        gw.auth.still_valid(&req).await?;
    }
    // The user's rooms, followed before `101` like the user's own channel
    // (a membership that changes from now on comes as a control on it).
    let mut rooms = std::collections::HashMap::new();
    if let Endpoint::User(caller) = &endpoint {
        let names = gw
            .rooms
            .room_names(&caller.id)
            .await
            .map_err(|e| UpgradeError::Unavailable(e.to_string()))?;
        registration
            .join_all(names.iter().map(|room| channel::room(room)).collect())
            .await
            .map_err(|e| UpgradeError::Unavailable(e.to_string()))?;
        rooms.extend(names.into_iter().map(|room| (room, 0)));
    }
    // Subscribed first, counted online second: a message in between is both
    // delivered live and kept offline (a duplicate the client can drop by
    // id), never neither.
    let online = match &endpoint {
        Endpoint::Lobby => None,
        Endpoint::User(caller) => Some(
            Online::enter(&gw.leaver, &caller.id, conn.id())
                .await
                .map_err(|e| UpgradeError::Unavailable(e.to_string()))?,
        ),
    };
    let label = endpoint.label();
    let socket = Socket::new(
        ws,
        stream,
        outbound,
        overflow,
        gw.shutdown.clone(),
        SocketSettings {
            ping_interval: gw.settings.ping_interval,
            idle_timeout: gw.settings.idle_timeout,
            max_frame_bytes: gw.settings.max_frame_bytes,
        },
        gw.metrics.frames_out.with_label_values(&[label]),
        gw.metrics.clone(),
    );
    let replies = Replies::new(conn, gw.metrics.clone());
    let mut subscriptions = Subscriptions::new(registration);
    subscriptions.rooms = rooms;
    let connection = Connection::new(Arc::clone(gw), endpoint, subscriptions, replies);
    let metrics = gw.metrics.clone();
    actix_web::rt::spawn(gw.sessions.track_future(async move {
        session::run(socket, connection, replay, online, metrics, label).await;
        drop(slot);
    }));
    Ok(response)
}
