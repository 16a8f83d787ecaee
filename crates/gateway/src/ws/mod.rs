//! WebSocket endpoints. Each module depends only on those listed after it.
//!
//! - `upgrade.rs`: the HTTP side — path checks, the connection cap, the
//!   handshake, registering the connection and counting it online before
//!   the client sees `101`; then it starts the session.
//! - `session.rs`: one task per connection: the loop that hands each client
//!   frame to the connection and writes what comes back, and the ordered
//!   goodbye (close, count out, unsubscribe).
//! - `socket.rs`: the socket and its wait for the next event — a client
//!   frame, an outbound frame (written at once, even while a frame is being
//!   handled), the heartbeat, shutdown; WebSocket protocol errors become
//!   close codes here.
//! - `connection.rs`: what one connection holds (its subscriptions, rate
//!   limit) and which handler a frame goes to.
//! - `presence.rs`: counting a user's connection online while it lives, and
//!   out again, retried until it lands.
//! - the handlers, each taking only what it needs ([`handler::Ctx`] and, to
//!   subscribe, [`registration::Subscriptions`]): `direct.rs` (direct and
//!   seed messages, read markers), `sync.rs` (catch-up and `sync` pages),
//!   `rooms.rs`, `watch.rs` (who is online, who is typing).
//! - `handler.rs`: what handlers share — the context, the reply queue, the
//!   outcome of a frame.
//! - `registration.rs`: the channels a connection is subscribed to.
//! - `fence.rs`: dropping the live copies of room entries a replay wrote.

mod connection;
mod direct;
mod fence;
mod handler;
mod lifecycle;
mod presence;
mod registration;
mod rooms;
mod session;
mod socket;
mod sync;
pub(crate) mod upgrade;
mod watch;

pub(crate) use presence::Leaver;

/// Which endpoint a connection came in on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `/ws/`: the public lobby.
    Lobby,
    /// `/ws/{user}/`: a user's personal connection, and who they are.
    User(chat_auth::Caller),
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
