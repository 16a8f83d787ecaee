//! Who is online: a user's connections are counted in and out through the
//! store, which announces a first connection anywhere and the last one
//! closing on `watch:{user}`; so is a user whose gateway died without a
//! word, once its lease lapses (the sweeper here asks the store to look).

use std::sync::{Arc, Weak};
use std::time::Duration;

use tracing::{debug, warn};

use super::upgrade::UpgradeError;
use crate::Inner;

/// A user counted online by the store while this value lives. The store
/// announces coming online (a first connection anywhere) and going offline
/// (the last one closing) to the user's watchers.
pub(crate) struct Presence {
    gw: Arc<Inner>,
    user: String,
    /// Set once [`Presence::leave`] ran, so `Drop` does not count twice.
    left: bool,
}

impl Presence {
    pub(super) async fn enter(gw: &Arc<Inner>, user: &str) -> Result<Self, UpgradeError> {
        gw.store
            .connected(user)
            .await
            .map_err(|e| UpgradeError::Unavailable(e.to_string()))?;
        Ok(Self {
            gw: Arc::clone(gw),
            user: user.to_owned(),
            left: false,
        })
    }

    /// Counts the connection out, before it unsubscribes (the mirror of
    /// opening): a message in between is kept offline and also delivered, a
    /// duplicate, never neither. Awaited inside the session's tracked task,
    /// so a draining gateway has counted everyone out before it exits.
    pub(crate) async fn leave(mut self) {
        self.left = true;
        let _ = self.gw.store.disconnected(&self.user).await;
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        if self.left {
            return;
        }
        // Only when the session ended without `leave` (a panic): best effort.
        tokio::spawn(self.gw.store.disconnected(&self.user));
    }
}

/// Has the store announce the users of gateways that died without a word,
/// every third of the presence lease, until the gateway stops or is
/// dropped. Every gateway sweeps; each such user is announced once.
pub(crate) async fn sweep_crashed(gw: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(gw) = gw.upgrade() else { return };
        if gw.shutdown.is_cancelled() {
            return;
        }
        match gw.store.sweep().await {
            Ok(swept) if !swept.is_empty() => {
                debug!(
                    users = swept.len(),
                    "announced offline: their gateway's lease lapsed"
                );
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "cannot sweep the presence of crashed gateways"),
        }
    }
}
