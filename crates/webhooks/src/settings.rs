//! The webhooks' settings.

use std::time::Duration;

use chat_auth::Secret;
use chat_runtime::settings::SettingsError;

chat_runtime::settings! {
    /// Webhook settings: `CHAT_<NAME>` in the environment, `<name>` in the file.
    #[title = "Webhooks"]
    pub struct WebhookSettings {
        /// Where events are posted (`http://` or `https://`); unset: no
        /// webhooks, nothing is queued.
        pub webhook_url: Option<String> = None => "none",
        /// The signing secret, `whsec_` and base64 (as Standard Webhooks
        /// gives them); required with a URL. Never logged.
        pub webhook_secret: Option<Secret> = None => "none",
        /// The events to send, comma-separated: message.offline,
        /// user.online, user.offline, room.member_joined, room.member_left
        /// (message.offline is sent for direct messages only, for now).
        pub webhook_events: String = "message.offline,user.online,user.offline,room.member_joined,room.member_left".to_owned(),
        /// How long the receiver has to answer 2xx before the attempt counts as failed.
        #[serde(with = "humantime_serde")]
        pub webhook_timeout: Duration = Duration::from_secs(5),
        /// The wait before the first retry; each next one doubles (±25 %), up to an hour.
        #[serde(with = "humantime_serde")]
        pub webhook_retry_min: Duration = Duration::from_secs(1),
        /// How long an event is retried before it goes to the dead letters.
        #[serde(with = "humantime_serde")]
        pub webhook_give_up: Duration = Duration::from_secs(24 * 3600),
    }
}

impl WebhookSettings {
    /// Checks values a type cannot: a URL needs a secret that Standard
    /// Webhooks can use, and names only known events.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let fail = |name: &str, why: &str| {
            Err(SettingsError::new(format!("invalid setting {name}: {why}")))
        };
        let Some(url) = &self.webhook_url else {
            return Ok(());
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return fail("CHAT_WEBHOOK_URL", "must start with http:// or https://");
        }
        let Some(secret) = &self.webhook_secret else {
            return fail("CHAT_WEBHOOK_SECRET", "required with CHAT_WEBHOOK_URL");
        };
        let secret = std::str::from_utf8(secret.expose()).unwrap_or_default();
        if !secret.starts_with("whsec_") || standardwebhooks::Webhook::new(secret).is_err() {
            return fail("CHAT_WEBHOOK_SECRET", "must be whsec_ followed by base64");
        }
        for event in self.events() {
            if !crate::EVENTS.contains(&event) {
                return fail(
                    "CHAT_WEBHOOK_EVENTS",
                    &format!(
                        "'{event}' is no event (one of {})",
                        crate::EVENTS.join(", ")
                    ),
                );
            }
        }
        if self.webhook_timeout.is_zero() || self.webhook_retry_min.is_zero() {
            return fail(
                "CHAT_WEBHOOK_TIMEOUT/CHAT_WEBHOOK_RETRY_MIN",
                "must be longer than 0s",
            );
        }
        Ok(())
    }

    /// The events asked for.
    pub fn events(&self) -> impl Iterator<Item = &str> {
        self.webhook_events
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
    }

    /// Whether webhooks are on and `event` is among those asked for.
    pub fn wants(&self, event: &str) -> bool {
        self.webhook_url.is_some() && self.events().any(|e| e == event)
    }
}
