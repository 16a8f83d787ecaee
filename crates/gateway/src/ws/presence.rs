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
use tracing::warn;

/// First and longest wait between attempts to count a connection out.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// A user connection counted online while this value lives.
pub(crate) struct Online {
    presence: Arc<dyn PresenceNode>,
    user: String,
    conn: ConnId,
    /// Set once [`Online::leave`] ran, so `Drop` does not count out twice.
    left: bool,
}

impl Online {
    /// Counts connection `conn` of `user` in. On failure the connection is
    /// refused, and counted out in the background in case the count landed.
    pub(crate) async fn enter(
        presence: &Arc<dyn PresenceNode>,
        user: &str,
        conn: ConnId,
    ) -> Result<Self, StoreError> {
        match presence.connected(user, conn).await {
            Ok(_) => Ok(Self {
                presence: Arc::clone(presence),
                user: user.to_owned(),
                conn,
                left: false,
            }),
            Err(e) => {
                tokio::spawn(count_out(Arc::clone(presence), user.to_owned(), conn));
                Err(e)
            }
        }
    }

    /// Counts the connection out, retrying until it lands. Awaited inside
    /// the session's tracked task, so a draining gateway waits for it (up
    /// to its grace period; past it, the lease settles what is left).
    pub(crate) async fn leave(mut self) {
        self.left = true;
        count_out(Arc::clone(&self.presence), self.user.clone(), self.conn).await;
    }
}

impl Drop for Online {
    fn drop(&mut self) {
        if self.left {
            return;
        }
        // Only when the session ended without `leave` (a panic).
        tokio::spawn(count_out(
            Arc::clone(&self.presence),
            std::mem::take(&mut self.user),
            self.conn,
        ));
    }
}

/// Counts `conn` of `user` out, retrying with backoff until it lands.
async fn count_out(presence: Arc<dyn PresenceNode>, user: String, conn: ConnId) {
    let mut wait = RETRY_MIN;
    loop {
        match presence.disconnected(&user, conn).await {
            Ok(_) => return,
            Err(e) => {
                warn!(error = %e, ?wait, "cannot count a closed connection out yet; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
}
