//! Web Push subscriptions and each user's push settings (`chat-push`).
//!
//! A subscription is what a browser's `PushManager.subscribe` gives (the
//! Push API's `PushSubscription`): the push service's endpoint and the
//! keys to encrypt for (RFC 8291). A user has one per browser or device,
//! at most [`MAX_SUBSCRIPTIONS`] (subscribing one more forgets the oldest);
//! subscribing an endpoint again replaces its keys. An endpoint is one
//! user's: subscribing it takes it from whoever had it (a browser shared
//! by two accounts notifies the one signed in last).
//!
//! Settings are flags: `quiet` (notifications carry no message text) and
//! `mute:{conversation}` (`user:{peer}`, `room:{room}`: nothing is pushed
//! for it).

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// The most subscriptions a user keeps.
pub const MAX_SUBSCRIPTIONS: usize = 10;

/// A browser's push subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushSubscription {
    /// The push service's URL for this browser (`https://…`).
    pub endpoint: String,
    /// The browser's P-256 public key (uncompressed point, base64url).
    pub p256dh: String,
    /// The browser's authentication secret (16 bytes, base64url).
    pub auth: String,
    /// When it was kept, ms since the Unix epoch.
    pub created_at: u64,
}

/// The flag of a quiet preview: notifications carry no message text.
pub const QUIET: &str = "quiet";

/// The flag muting `conversation` (`user:{peer}` or `room:{room}`).
pub fn mute_flag(conversation: &str) -> String {
    format!("mute:{conversation}")
}

/// Where subscriptions and settings are kept: on Redis the hash
/// `push_subs:{user}` (endpoint → record), the hash `push_endpoints`
/// (endpoint → user) and the set `push_flags:{user}`;
/// on SQLite the tables `push_subscriptions` and `push_flags`.
pub trait PushStore: Send + Sync + 'static {
    /// Keeps `subscription` for `user` (replacing one with its endpoint);
    /// a user over [`MAX_SUBSCRIPTIONS`] loses their oldest.
    ///
    /// Errors: [`StoreError::Unavailable`].
    fn subscribe(
        &self,
        user: &str,
        subscription: PushSubscription,
    ) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Forgets `user`'s subscription at `endpoint`: whether there was one.
    ///
    /// Errors: [`StoreError::Unavailable`].
    fn unsubscribe(
        &self,
        user: &str,
        endpoint: &str,
    ) -> BoxFuture<'static, Result<bool, StoreError>>;

    /// `user`'s subscriptions, oldest first.
    ///
    /// Errors: [`StoreError::Unavailable`].
    fn subscriptions(
        &self,
        user: &str,
    ) -> BoxFuture<'static, Result<Vec<PushSubscription>, StoreError>>;

    /// Sets or clears `flag` ([`QUIET`], [`mute_flag`]) of `user`.
    ///
    /// Errors: [`StoreError::Unavailable`].
    fn set_push_flag(
        &self,
        user: &str,
        flag: &str,
        on: bool,
    ) -> BoxFuture<'static, Result<(), StoreError>>;

    /// `user`'s flags, sorted.
    ///
    /// Errors: [`StoreError::Unavailable`].
    fn push_flags(&self, user: &str) -> BoxFuture<'static, Result<Vec<String>, StoreError>>;
}

/// A stored record as a subscription, or why it is unreadable.
pub(crate) fn parse(record: &str) -> Result<PushSubscription, StoreError> {
    serde_json::from_str(record)
        .map_err(|e| StoreError::Unavailable(format!("unreadable push subscription: {e}")))
}

/// A subscription as its stored record.
pub(crate) fn record(subscription: &PushSubscription) -> String {
    // unwrap: strings and an integer always serialise.
    #[allow(clippy::unwrap_used)]
    serde_json::to_string(subscription).unwrap()
}
