//! Channel names, shared by everything that publishes or subscribes.

/// The public lobby.
pub const LOBBY: &str = "lobby";

/// Every connection of one user.
pub fn user(name: &str) -> String {
    format!("user:{name}")
}

/// Every connection watching a user's online state.
pub fn watch(name: &str) -> String {
    format!("watch:{name}")
}

/// The user a [`watch`] channel is about, or `None` for another channel.
pub fn watched(channel: &str) -> Option<&str> {
    channel.strip_prefix("watch:")
}

/// Every connection that joined a room.
pub fn room(name: &str) -> String {
    format!("room:{name}")
}
