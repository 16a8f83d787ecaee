//! The channels a connection is subscribed to.

use std::collections::{HashMap, HashSet};
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
        // Noted before the wait: if this future is dropped (the client hung
        // up mid-handshake), dropping the registration still leaves the hub.
        self.channels.insert(channel.clone());
        let joined = self.hub.join(&channel, &self.conn).await;
        if joined.is_err() {
            // The hub already took the connection out again.
            self.channels.remove(&channel);
        }
        joined
    }

    /// Joins every channel of `channels` at once (their subscriptions
    /// travel to the broker together); resolves once deliveries on all of
    /// them reach this connection. Errors: the first failure (the channels
    /// that failed are left, the others kept).
    pub(crate) async fn join_all(
        &mut self,
        channels: Vec<String>,
    ) -> Result<(), chat_broker::BrokerError> {
        let new: Vec<String> = channels
            .into_iter()
            .filter(|c| !self.channels.contains(c))
            .collect();
        // Noted before the wait, as in `join`.
        self.channels.extend(new.iter().cloned());
        let joins = new.iter().map(|channel| self.hub.join(channel, &self.conn));
        let results = futures_util::future::join_all(joins).await;
        let mut outcome = Ok(());
        for (channel, result) in new.iter().zip(results) {
            if let Err(e) = result {
                self.channels.remove(channel);
                if outcome.is_ok() {
                    outcome = Err(e);
                }
            }
        }
        outcome
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
    /// Rooms followed, each with the `seq` of the latest membership entry
    /// this connection knows (0: from before it opened).
    pub(crate) rooms: HashMap<String, u64>,
    /// Rooms this connection left, each with the `seq` of its `member_left`
    /// entry, until the store's control for that leave comes back: a join
    /// control older than it (from a `join` just before the `leave`) is
    /// stale and must not make the connection follow the room again. At
    /// most [`LEFT_KEPT`] (a control lost to a broker reconnect leaves its
    /// entry behind; past the bound they are forgotten together).
    pub(crate) left: HashMap<String, u64>,
    /// Users whose online state this connection follows.
    pub(crate) watching: HashSet<String>,
}

/// Leaves remembered by one connection at most (see [`Subscriptions::left`]).
pub(crate) const LEFT_KEPT: usize = 1_000;

impl Subscriptions {
    /// Notes that the user left `room` at entry `seq` (see [`Self::left`]).
    pub(crate) fn note_left(&mut self, room: String, seq: u64) {
        if self.left.len() >= LEFT_KEPT && !self.left.contains_key(&room) {
            self.left.clear();
        }
        let known = self.left.entry(room).or_insert(0);
        *known = (*known).max(seq);
    }

    pub(crate) fn new(registration: Registration) -> Self {
        Self {
            registration,
            rooms: HashMap::new(),
            left: HashMap::new(),
            watching: HashSet::new(),
        }
    }
}
