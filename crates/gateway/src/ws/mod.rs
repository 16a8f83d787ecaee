//! WebSocket endpoints.
//!
//! - `upgrade.rs`: the HTTP side — path checks, the connection cap, the
//!   handshake, registering the connection before the client sees `101`.
//! - `session.rs`: one task per connection, a `select!` over client frames,
//!   hub deliveries, the heartbeat and shutdown.
//! - `frames.rs`: what a text frame on a user connection means: direct
//!   messages through the store, sync, read receipts.
//! - `rooms.rs`: join, leave, room messages.
//! - `watch.rs`: who is online (`watch`), who is typing.
//! - `presence.rs`: counting a user's connections in and out, announcing
//!   changes to watchers, sweeping up after gateways that died.

mod frames;
pub(crate) mod presence;
mod rooms;
mod watch;

mod session;
pub(crate) mod upgrade;

/// Which endpoint a connection came in on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `/ws/`: the public lobby.
    Lobby,
    /// `/ws/{user}/`: a user's personal connection.
    User(String),
}

impl Endpoint {
    /// Metric label.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Endpoint::Lobby => "lobby",
            Endpoint::User(_) => "user",
        }
    }
}
