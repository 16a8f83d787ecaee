//! Web Push: notifications for users with no connection, through the
//! push service of each of their browsers, with no vendor account.
//!
//! - [`api`]: the HTTP API the page uses (the VAPID public key,
//!   subscriptions, settings: the quiet preview, muted conversations).
//! - [`vapid`]: the application server's key (RFC 8292).
//! - [`notification`]: what a notification says.
//! - [`pusher`]: one push, encrypted (RFC 8291) and posted (RFC 8030).
//! - [`services`]: which push services the server posts to.
//!
//! Pushes are made and sent from the store's durable queue, beside the
//! webhooks (`chat-webhooks`): one replica sends each, with retries.

pub mod api;
pub mod notification;
pub mod pusher;
pub mod services;
mod settings;
pub mod vapid;

pub use api::{PushApi, PushApiDoc};
pub use notification::{Conversation, notification};
pub use pusher::{Delivery, PushJob, Pusher};
pub use services::PushServices;
pub use settings::PushSettings;
pub use vapid::VapidKey;

/// The bytes of base64url `text` (padding allowed), or `None`.
pub(crate) fn base64url(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .ok()
}
