//! Counting a user's connection online while it lives.
//!
//! The presence engine announces a user's first connection anywhere and
//! their last one closing on `watch:{user}`, in the same step as the count.
//! Counting is idempotent per connection, so both directions can be
//! retried safely: a count-out that failed (Redis away, or slow to answer)
//! is retried until it lands — otherwise the user would stay online for
//! good and get no offline storage — and a count-in that failed is undone
//! the same way in case it landed after all.

use std::sync::Arc;
use std::time::Duration;

use chat_store::{ConnId, PresenceNode, StoreError};
use tokio::sync::mpsc;
use tracing::warn;

/// First and longest wait between attempts to count a connection out.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// A user connection counted online while this value lives.
pub(crate) struct Online {
    leaver: Leaver,
    user: String,
    conn: ConnId,
    /// Set once [`Online::leave`] ran, so `Drop` does not count out twice.
    left: bool,
}

impl Online {
    /// Counts connection `conn` of `user` in. On failure the connection is
    /// refused, and counted out in the background in case the count landed;
    /// so is one whose upgrade was abandoned while counting (the client hung
    /// up mid-handshake and the future was dropped): the value exists before
    /// the count is asked for, and dropping it counts out.
    pub(crate) async fn enter(
        leaver: &Leaver,
        user: &str,
        conn: ConnId,
    ) -> Result<Self, StoreError> {
        let online = Self {
            leaver: leaver.clone(),
            user: user.to_owned(),
            conn,
            left: false,
        };
        leaver.presence.connected(user, conn).await?;
        Ok(online)
    }

    /// Counts the connection out, retrying until it lands. Awaited inside
    /// the session's tracked task, so a draining gateway waits for it (up
    /// to its grace period; past it, the lease settles what is left).
    pub(crate) async fn leave(mut self) {
        self.left = true;
        count_out(&*self.leaver.presence, &self.user, self.conn).await;
    }
}

impl Drop for Online {
    fn drop(&mut self) {
        if self.left {
            return;
        }
        // A refused or abandoned count-in, or a session that ended without
        // `leave` (a panic).
        self.leaver.later(std::mem::take(&mut self.user), self.conn);
    }
}

/// Counts connections out in the background, one at a time, each retried
/// until it lands. One queue per gateway, so an outage that refuses a
/// thousand upgrades leaves a thousand queued entries, not a thousand tasks
/// retrying at once (and all hitting Redis together when it returns).
#[derive(Clone)]
pub(crate) struct Leaver {
    presence: Arc<dyn PresenceNode>,
    queue: mpsc::UnboundedSender<(String, ConnId)>,
}

impl Leaver {
    /// Starts the queue's worker (inside a tokio runtime); it ends when the
    /// last `Leaver` is dropped and the queue is empty.
    pub(crate) fn start(presence: Arc<dyn PresenceNode>) -> Self {
        let (queue, mut pending) = mpsc::unbounded_channel::<(String, ConnId)>();
        let worker = Arc::clone(&presence);
        tokio::spawn(async move {
            while let Some((user, conn)) = pending.recv().await {
                count_out(&*worker, &user, conn).await;
            }
        });
        Self { presence, queue }
    }

    /// Queues `conn` of `user` to be counted out.
    fn later(&self, user: String, conn: ConnId) {
        let _ = self.queue.send((user, conn));
    }
}

/// Counts `conn` of `user` out, retrying with backoff until it lands.
async fn count_out(presence: &dyn PresenceNode, user: &str, conn: ConnId) {
    let mut wait = RETRY_MIN;
    loop {
        match presence.disconnected(user, conn).await {
            Ok(_) => return,
            Err(e) => {
                warn!(error = %e, ?wait, "cannot count a closed connection out yet; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
}
