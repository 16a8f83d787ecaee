//! The channels a connection is subscribed to.

use std::collections::HashSet;
use std::sync::Arc;

use crate::hub::{Conn, Hub};

/// The channels a connection is registered on. Dropping it leaves them all,
/// so the registry is cleaned however the session ends — even by a panic.
pub(crate) struct Registration {
    hub: Arc<Hub>,
    conn: Conn,
    channels: HashSet<String>,
}

impl Registration {
    pub(crate) fn new(hub: Arc<Hub>, conn: Conn) -> Self {
        Self {
            hub,
            conn,
            channels: HashSet::new(),
        }
    }

    /// Joins `channel`; resolves once deliveries on it reach this connection.
    pub(crate) async fn join(&mut self, channel: String) -> Result<(), chat_broker::BrokerError> {
        if self.channels.contains(&channel) {
            return Ok(());
        }
        self.hub.join(&channel, &self.conn).await?;
        self.channels.insert(channel);
        Ok(())
    }

    pub(crate) fn leave(&mut self, channel: &str) {
        if self.channels.remove(channel) {
            self.hub.leave(channel, self.conn.id());
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        for channel in self.channels.drain() {
            self.hub.leave(&channel, self.conn.id());
        }
    }
}

/// What a user connection follows beyond its own channel: rooms joined and
/// users watched, counted against the connection's limits.
pub(crate) struct Subscriptions {
    pub(crate) registration: Registration,
    /// Rooms joined.
    pub(crate) rooms: HashSet<String>,
    /// Users whose online state this connection follows.
    pub(crate) watching: HashSet<String>,
}

impl Subscriptions {
    pub(crate) fn new(registration: Registration) -> Self {
        Self {
            registration,
            rooms: HashSet::new(),
            watching: HashSet::new(),
        }
    }
}
